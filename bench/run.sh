#!/usr/bin/env bash
# The end-to-end benchmark suite of sse2kafka (see bench/README.md): builds what it needs, runs
# S1..S6 against the real binary, the mock broker and the loopback source, and prints a Markdown
# table of median and min–max per figure with the budgets.
#
# Usage: bench/run.sh [--smoke] [--runs N] [--only "S1 S3"] [--build-dir DIR] [--out DIR]
#                     [--check-budgets]
#   --smoke          tiny sizes and one run per scenario (tens of seconds): proves every scenario
#                    runs and verifies its records; figures are not meaningful and no budget is
#                    checked. This is what CI runs.
#   --runs N         measured runs per figure (default 3)
#   --only LIST      scenarios to run (default "S1 S2 S3 S4 S5 S6")
#   --build-dir DIR  build tree (default build-bench; configured as Release when new). An existing
#                    tree is used with its own build type.
#   --out DIR        where results (JSON per scenario, report.md) and logs go
#                    (default DIR/bench-results/<date-time>)
#   --check-budgets  exit 1 when a budget is missed (default: only void runs fail)
# Environment: SSE2KAFKA_JOBS (build jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
# Debian's interpreter, which scripts/install-deps.sh provides: `python3` on PATH may be another.
py=/usr/bin/python3

smoke=0
runs=3
only="S1 S2 S3 S4 S5 S6"
build_dir=build-bench
out=""
check_budgets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --runs) runs="$2"; shift ;;
    --only) only="$2"; shift ;;
    --build-dir) build_dir="$2"; shift ;;
    --out) out="$2"; shift ;;
    --check-budgets) check_budgets=(--check-budgets) ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

build_dir=$(realpath -m "$build_dir")
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  # Release as users build it; no -Werror: GCC 12 at -O3 reports false positives that are not
  # this suite's business.
  cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSSE2KAFKA_BENCH=ON >/dev/null
fi
echo "== building in $build_dir ($(grep -m1 '^CMAKE_BUILD_TYPE:' "$build_dir/CMakeCache.txt" | cut -d= -f2))"
cmake --build "$build_dir" -j "${SSE2KAFKA_JOBS:-2}" \
  --target sse2kafka mock_broker sse_source kafka_probe floor_producer

# Ten thousand streams need ten thousand sockets in the bridge and in the source.
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true

out=${out:-$build_dir/bench-results/$(date +%Y%m%d-%H%M%S)$([[ $smoke == 1 ]] && echo -smoke || true)}
mkdir -p "$out"
common=(--build-dir "$build_dir" --runs "$runs")
[[ $smoke == 1 ]] && common+=(--smoke)
scenarios="$repo/bench/scenarios"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the source tree
failed=()
for s in $only; do
  echo "== $s $([[ $smoke == 1 ]] && echo '(smoke)')"
  case "$s" in
    S1|S2) cmd=("$scenarios/throughput.py" --scenario "$s") ;;
    S3) cmd=("$scenarios/many_streams.py") ;;
    S4) cmd=("$scenarios/latency.py") ;;
    S5) cmd=("$scenarios/restart.py") ;;
    S6) cmd=("$scenarios/exactly_once.py") ;;
    *) echo "run.sh: unknown scenario $s" >&2; exit 2 ;;
  esac
  if ! "$py" "${cmd[@]}" "${common[@]}" --out "$out/$s.json" --work-dir "$out/$s-work"; then
    failed+=("$s")
  fi
done

shopt -s nullglob
results=("$out"/S?.json)
status=0
if [[ ${#results[@]} -gt 0 ]]; then
  echo
  if [[ $smoke == 1 ]]; then
    "$py" "$scenarios/report.py" --no-budgets "${results[@]}" | tee "$out/report.md" || status=1
  else
    "$py" "$scenarios/report.py" "${check_budgets[@]}" "${results[@]}" | tee "$out/report.md" || status=1
  fi
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "run.sh: scenarios with void runs or errors: ${failed[*]} (logs in $out)" >&2
  exit 1
fi
# Logs of verified scenarios are not needed.
for s in $only; do rm -rf "$out/$s-work"; done
echo "results in $out"
exit $status
