#!/usr/bin/env bash
# Installs everything sse2kafka needs to build, test and run, from Debian bookworm packages.
# Idempotent: packages already present are skipped, so it is cheap to call before every build.
# Usage: scripts/install-deps.sh [--runtime-only | --build-only | --deploy-tests]   (needs root, or sudo)
#   (no option):    build, test and run
#   --runtime-only: what the binary needs to run (the container image's final stage)
#   --build-only:   what compiling the daemon needs, without the test tools (the image's build stage)
#   --deploy-tests: everything, plus what tests/deploy/run.sh needs (podman, debootstrap)
set -euo pipefail

# runtime: the libraries `ldd build/sse2kafka` names (the container image installs only these)
runtime=(libcurl4 librdkafka1 libyaml-cpp0.7 libspdlog1.10 libfmt9 libsimdjson14 libcpp-httplib0.11 libsystemd0
         libssl3 ca-certificates)
build=(
  build-essential cmake pkg-config
  libcurl4-openssl-dev librdkafka-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libsystemd-dev
  libcli11-dev nlohmann-json3-dev libsimdjson-dev libcpp-httplib-dev libssl-dev
)
test=(
  git libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev
  python3 python3-pytest python3-h2 curl kcat procps valgrind prometheus
  # the certificates of the secured cluster modes (cluster.sh --security)
  openssl
  # the real Kafka cluster of the real-kafka suite (tests/kafka/cluster.sh): a JRE for the
  # brokers and Maven, which fetches the Kafka jars into ~/.m2
  openjdk-17-jre-headless maven
)
deploy=(podman runc debootstrap podman-compose)

want=("${runtime[@]}")
case "${1:-}" in
  --runtime-only) ;;
  --build-only) want+=("${build[@]}") ;;
  --deploy-tests) want+=("${build[@]}" "${test[@]}" "${deploy[@]}") ;;
  "") want+=("${build[@]}" "${test[@]}") ;;
  *) echo "usage: $0 [--runtime-only | --build-only | --deploy-tests]" >&2; exit 2 ;;
esac

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
