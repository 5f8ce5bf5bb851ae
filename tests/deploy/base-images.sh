#!/usr/bin/env bash
# Makes the local stand-ins for docker.io/library/debian:bookworm and :bookworm-slim with
# debootstrap, because no registry can be reached from the test machines. An image whose tag
# already exists is kept, so this costs about 2 minutes once and nothing afterwards.
# The images follow the official ones where the Dockerfile can tell: deb822 sources for
# bookworm, -updates and -security, no apt lists or caches, a policy-rc.d that keeps package
# scripts from starting services, and (slim only) the official dpkg path excludes.
# Usage: tests/deploy/base-images.sh   (root; CONTAINERS_CONF as tests/deploy/run.sh sets it)
set -euo pipefail

full=docker.io/library/debian:bookworm
slim=docker.io/library/debian:bookworm-slim

have() { podman image exists "$1"; }
if have "$full" && have "$slim"; then
  echo "base-images: $full and $slim present"
  exit 0
fi

# The mirror this machine's apt uses (the first URIs: line), so the build works where only it is reachable.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
security=${mirror%/debian}/debian-security

work=$(mktemp -d /var/tmp/sse2kafka-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

echo "base-images: debootstrap bookworm from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }

rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* "$rootfs"/tmp/*
: >"$rootfs/etc/machine-id"   # empty, as in the official image: each container gets its own
echo "debian" >"$rootfs/etc/hostname"

import() {  # import ROOTFS TAG
  tar --numeric-owner -C "$1" -c . | podman import --change 'CMD ["bash"]' - "$2" >/dev/null
  echo "base-images: made $2 ($(podman image inspect --format '{{.Size}}' "$2") bytes)"
}
have "$full" || import "$rootfs" "$full"

if ! have "$slim"; then
  # The path excludes of the official slim variant: no docs (copyright kept), man pages or locales.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  import "$rootfs" "$slim"
fi
