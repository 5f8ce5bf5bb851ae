#!/usr/bin/env bash
# Configures and builds one flavour of sse2kafka.
# Usage: scripts/build.sh [release|asan|fuzz] [--targets T...]   (default: every target)
#   release (default): build/         the binary the README runs: build/sse2kafka
#   asan:              build-asan/    AddressSanitizer + UndefinedBehaviorSanitizer
#   fuzz:              build-fuzz/    clang-14 libFuzzer targets
set -euo pipefail
cd "$(dirname "$0")/.."
flavour="${1:-release}"
shift || true
jobs="${SSE2KAFKA_JOBS:-$(nproc)}"
case "$flavour" in
  release) dir=build; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSSE2KAFKA_WERROR=ON) ;;
  asan) dir=build-asan; opts=(-DCMAKE_BUILD_TYPE=Debug -DSSE2KAFKA_WERROR=ON -DSSE2KAFKA_SANITIZE=ON -DSSE2KAFKA_BENCH=OFF) ;;
  # Only the fuzz targets are meant to be built here; they compile the sources they fuzz
  # themselves, with instrumentation.
  fuzz) dir=build-fuzz; opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSSE2KAFKA_FUZZ=ON -DSSE2KAFKA_BENCH=OFF
                              -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14) ;;
  *) echo "usage: $0 [release|asan|fuzz]" >&2; exit 2 ;;
esac
targets=()
if [[ "${1:-}" == "--targets" ]]; then
  shift
  for t in "$@"; do targets+=(--target "$t"); done
fi
cmake -S . -B "$dir" "${opts[@]}" >/dev/null
cmake --build "$dir" -j "$jobs" "${targets[@]}"
