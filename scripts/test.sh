#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test of sse2kafka.
#   1. release build: unit tests, end-to-end and reliability tests (ctest)
#   1b. real-kafka: the real-kafka suites (tests/realkafka) on the release build, against 3-node
#      Apache Kafka clusters of each version (tests/kafka/cluster.sh; jars from Maven)
#   2. ASan+UBSan build: the same suites again
#   3. deploy: the systemd unit (verify, security, sd_notify), the .deb under systemd as PID 1
#      in a container, and the container image (podman), all for real
#   4. libFuzzer targets for the parser, the config loader and the JSON writers, on the
#      corpus kept in tests/fuzz/corpus, for a bounded time each
# Choose stages with SSE2KAFKA_TEST_STAGES (default: "release real-kafka deploy asan fuzz"), fuzz time
# per target with SSE2KAFKA_FUZZ_SECONDS (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
stages="${SSE2KAFKA_TEST_STAGES:-release real-kafka deploy asan fuzz}"
fuzz_seconds="${SSE2KAFKA_FUZZ_SECONDS:-60}"
started=$(date +%s)

stage() { printf '\n=== %s (%ds elapsed)\n' "$*" $(( $(date +%s) - started )); }

stage "dependencies"
scripts/install-deps.sh

# Unit tests run in parallel, and so do the end-to-end and reliability suites, four files at a
# time (SSE2KAFKA_SCENARIO_JOBS): each starts its own broker and upstream on ports the kernel
# picks, and they spend most of their time waiting on paced upstreams and broker round trips
# (a serial run keeps a 2-core machine about 20% busy). The suites that load both cores
# themselves are marked "# ctest-run-serial" and run alone (tests/pytest_suites.cmake).
run_ctest() {
  local dir="$1"
  (cd "$dir" && ctest --output-on-failure --timeout 900 -L unit -j "${SSE2KAFKA_TEST_JOBS:-2}" &&
                ctest --output-on-failure --timeout 900 -LE '^(unit|real-kafka)$' -j "${SSE2KAFKA_SCENARIO_JOBS:-4}")
}

for s in $stages; do
  case "$s" in
    release)
      stage "release build"
      scripts/build.sh release
      stage "release tests"
      run_ctest build
      stage "benchmark smoke (proves each scenario runs and lands its records; no timing asserted)"
      bench/run.sh --smoke --build-dir build
      ;;
    real-kafka)
      # Uses build/ (the release stage's binary and tools). One file at a time: each starts a
      # 3-node cluster (three JVMs) per Kafka version, which is all two cores take.
      [ -x build/sse2kafka ] || { echo "the real-kafka stage needs the release build (build/sse2kafka)" >&2; exit 1; }
      stage "real-kafka: the bridge against Apache Kafka ${SSE2KAFKA_KAFKA_VERSIONS:-3.9 4} clusters"
      (cd build && ctest --output-on-failure --timeout 1200 -L '^real-kafka$' -j 1)
      ;;
    deploy)
      # Uses build/ (the release stage's tree and its CPack config).
      stage "deploy: systemd unit, sd_notify, .deb under systemd, container image"
      tests/deploy/run.sh build
      ;;
    asan)
      stage "ASan+UBSan build"
      scripts/build.sh asan
      stage "ASan+UBSan tests"
      ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:halt_on_error=1" \
      UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
      SSE2KAFKA_SANITIZED=1 run_ctest build-asan
      ;;
    fuzz)
      stage "fuzz build"
      scripts/build.sh fuzz --targets parser_fuzz config_fuzz json_writer_fuzz
      for target in build-fuzz/tests/fuzz/*_fuzz; do
        [ -x "$target" ] || continue
        name=$(basename "$target" _fuzz)
        corpus="tests/fuzz/corpus/$name"
        stage "fuzz $name for ${fuzz_seconds}s"
        work=$(mktemp -d)
        # New inputs go to a scratch corpus; a crash is kept in build-fuzz/artifacts.
        mkdir -p build-fuzz/artifacts
        "$target" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
          -artifact_prefix="build-fuzz/artifacts/$name-" "$work" "$corpus" 2>&1 | tail -n 3
        rm -rf "$work"
      done
      ;;
    *) echo "unknown stage $s" >&2; exit 2 ;;
  esac
done
stage "all stages passed: $stages"
