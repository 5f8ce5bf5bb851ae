#!/usr/bin/env bash
# Installs everything sse2kafka needs to build, test and run, from Debian bookworm packages.
# Idempotent: packages already present are skipped, so it is cheap to call before every build.
# Usage: scripts/install-deps.sh [--runtime-only]   (needs root, or sudo)
set -euo pipefail

runtime=(libcurl4 librdkafka1 libyaml-cpp0.7 libspdlog1.10 libsystemd0 ca-certificates)
build=(
  build-essential cmake pkg-config git
  libcurl4-openssl-dev librdkafka-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libsystemd-dev
  libcli11-dev nlohmann-json3-dev libsimdjson-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev
  python3 python3-pytest curl kcat procps valgrind
)

want=("${runtime[@]}")
[[ "${1:-}" == "--runtime-only" ]] || want+=("${build[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
