#!/usr/bin/env bash
# The deploy stage: the artefacts that run sse2kafka in production, exercised for real.
#   1. deploy/systemd/sse2kafka.service: `systemd-analyze verify` prints nothing, `security` <= 2.0
#   2. the sd_notify protocol of BUILD_DIR/sse2kafka, with this test as the service manager
#   3. deploy/compose.yaml and the shipped configs (they cannot run here: no registry)
#   4. the Debian package (cpack) installed by apt into a container booted with systemd as PID 1:
#      Type=notify, the sandbox, reload, stop/resume from the checkpoint, the watchdog
#   5. the Dockerfile's image: metadata, no compiler, read-only run, records, stop, resume
# Podman runs with tests/deploy/containers.conf (CONTAINERS_CONF; /etc is left alone); the
# base images are made with debootstrap once (tests/deploy/base-images.sh). The image builds in
# the background while 1-4 run. Every container started here is removed on exit.
# Usage: tests/deploy/run.sh [BUILD_DIR]   (root; BUILD_DIR defaults to build, made by
#        scripts/build.sh release, configured with cmake/packaging.cmake included)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
here=tests/deploy
image=localhost/sse2kafka:deploy-test
systemd_image=localhost/sse2kafka-systemd:deploy-test
containers=(sse2kafka-deploy-systemd sse2kafka-deploy-image)
py=/usr/bin/python3   # Debian's, with python3-yaml (a dependency of podman-compose)
export CONTAINERS_CONF=$PWD/$here/containers.conf
started=$(date +%s)

step() { printf '\n--- %s (%ds)\n' "$*" $(( $(date +%s) - started )); }
fail() { echo "deploy: FAIL: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || { echo "deploy: needs root (rootful podman, debootstrap)" >&2; exit 2; }
[[ -x $build/sse2kafka ]] || { echo "deploy: no $build/sse2kafka: run scripts/build.sh release" >&2; exit 2; }
[[ -f $build/CPackConfig.cmake ]] ||
  { echo "deploy: $build has no CPackConfig.cmake: CMakeLists.txt must include(cmake/packaging.cmake)" >&2; exit 2; }

scripts/install-deps.sh --deploy-tests

work=$(mktemp -d /var/tmp/sse2kafka-deploy.XXXXXX)
image_build_pid=""
cleanup() {
  if [[ -n $image_build_pid ]] && kill -0 "$image_build_pid" 2>/dev/null; then
    pkill -TERM -P "$image_build_pid" 2>/dev/null || true   # the podman build it runs
    kill "$image_build_pid" 2>/dev/null || true
    wait "$image_build_pid" 2>/dev/null || true
  fi
  podman rm -f --time 5 "${containers[@]}" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step "base images (debootstrap, only when the tags are missing)"
$here/base-images.sh

step "container image: podman build in the background (log: $work/image-build.log)"
image_build_started=$(date +%s)
(
  podman build --pull=never --network=host --format docker -t "$image" . >"$work/image-build.log" 2>&1
  status=$?
  date +%s >"$work/image-build.end"
  exit $status
) &
image_build_pid=$!

step "1. systemd unit"
unit=deploy/systemd/sse2kafka.service
for key in Type=notify WatchdogSec= Restart=on-failure RestartPreventExitStatus=2 DynamicUser=yes \
           StateDirectory=sse2kafka ConfigurationDirectory=sse2kafka ProtectSystem=strict ProtectHome=yes \
           NoNewPrivileges=yes PrivateTmp=yes PrivateDevices=yes SystemCallFilter=@system-service \
           SystemCallArchitectures=native RestrictAddressFamilies= MemoryDenyWriteExecute=yes \
           LockPersonality=yes RestrictRealtime=yes RestrictNamespaces=yes ProtectKernelTunables=yes \
           ProtectKernelModules=yes ProtectKernelLogs=yes ProtectControlGroups=yes ProtectClock=yes \
           ProtectHostname=yes ProtectProc=invisible ProcSubset=pid UMask=0077; do
  grep -q "^$key" "$unit" || fail "$unit lacks $key"
done
for line in 'ExecReload=/bin/kill -HUP $MAINPID' CapabilityBoundingSet= AmbientCapabilities=; do
  grep -qxF "$line" "$unit" || fail "$unit lacks the line $line"
done
grep -q '^#\?LoadCredential=' "$unit" || fail "$unit has no LoadCredential= example"
echo "  ok: the unit sets every required directive"
# verify checks that ExecStart exists: point it at the built binary, change nothing else.
mkdir "$work/unit"
sed "s#/usr/bin/sse2kafka#$PWD/$build/sse2kafka#g" "$unit" >"$work/unit/sse2kafka.service"
out=$(cd "$work/unit" && systemd-analyze verify "$work/unit/sse2kafka.service" 2>&1) || fail "systemd-analyze verify: $out"
[[ -z $out ]] || fail "systemd-analyze verify printed: $out"
sed 's/^ProtectSystem=/ProtectSytem=/' "$work/unit/sse2kafka.service" >"$work/unit/typo.service"
typo=$(cd "$work/unit" && systemd-analyze verify "$work/unit/typo.service" 2>&1 || true)
[[ -n $typo ]] || fail "systemd-analyze verify does not notice a misspelt key: the check above proves nothing"
echo "  ok: systemd-analyze verify prints nothing (and does print for a misspelt key)"
out=$(systemd-analyze security --offline=yes --threshold=20 "$unit" 2>&1) ||
  fail "systemd-analyze security: exposure above 2.0: $(tail -n 1 <<<"$out")"
echo "  ok: $(grep -o 'Overall exposure level.*' <<<"$out") (threshold 2.0)"

step "2. sd_notify protocol"
$py $here/notify_test.py "$build/sse2kafka"

step "3. compose file and shipped configs"
$py $here/compose_check.py "$build/sse2kafka"

step "4. Debian package and systemd boot test"
cpack -G DEB -B "$work/deb" --config "$build/CPackConfig.cmake" >"$work/cpack.log" 2>&1 ||
  { tail -n 30 "$work/cpack.log"; fail "cpack"; }
deb=$(ls "$work"/deb/sse2kafka_*.deb)
contents=$(dpkg-deb -c "$deb")
for path in ./usr/bin/sse2kafka ./usr/lib/systemd/system/sse2kafka.service ./etc/sse2kafka/sse2kafka.yaml; do
  grep -q " $path\$" <<<"$contents" || fail "$deb lacks $path"
done
depends=$(dpkg-deb -f "$deb" Depends)
for package in libcurl4 librdkafka1 libyaml-cpp0.7 libspdlog1.10 libsystemd0 libfmt9 procps; do
  [[ $depends == *"$package"* ]] || fail "the package's Depends lacks $package: $depends"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/sse2kafka/sse2kafka.yaml ||
  fail "the config is not a conffile"
echo "  ok: $(basename "$deb") ($(stat -c %s "$deb") bytes): binary, unit, conffile /etc/sse2kafka/sse2kafka.yaml"
echo "      Depends: $depends"
mkdir "$work/systemd-context"
cp "$deb" "$work/systemd-context/sse2kafka.deb"
cp $here/systemd-test.conf $here/systemd.Containerfile "$work/systemd-context/"
podman build --pull=never --network=host --format docker -f "$work/systemd-context/systemd.Containerfile" \
  -t "$systemd_image" "$work/systemd-context" >"$work/systemd-build.log" 2>&1 ||
  { tail -n 30 "$work/systemd-build.log"; fail "building the systemd test image"; }
echo "  ok: apt installed the package and its Depends; the binary finds every library"
$py $here/systemd_test.py "$systemd_image"

step "5. container image"
wait "$image_build_pid" || { image_build_pid=""; tail -n 40 "$work/image-build.log"; fail "podman build"; }
image_build_pid=""
echo "  ok: built in $(( $(<"$work/image-build.end") - image_build_started ))s, in parallel with the steps above"
$py $here/image_test.py "$image"

size=$(podman image inspect --format '{{.Size}}' "$image")
step "deploy stage passed: image $image $(( size / 1000000 )) MB, $(( $(date +%s) - started ))s in all"
