#!/usr/bin/env bash
# Installs what is needed, builds sse2kafka, and runs it on the embedded demo: the project's
# loopback SSE source (a ticker and an LLM-style chat completion) into an in-process Kafka
# cluster. Prints the records as they land in Kafka, then stops the bridge with SIGTERM.
#   DEMO_SECONDS   how long to run (default 20; 0 = until Ctrl-C)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${DEMO_SECONDS:-20}"
# Debian's interpreter, which install-deps.sh provides: `python3` on PATH may be another one.
py=/usr/bin/python3
scripts/install-deps.sh
echo "demo: building (first time: a few minutes)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSSE2KAFKA_WERROR=ON >/dev/null
cmake --build build -j "$(nproc)" --target sse2kafka kafka_dump >/dev/null

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$py" tests/tools/sse_upstream.py --demo --port 0 >"$work/upstream.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q LISTENING "$work/upstream.log" && break; sleep 0.1; done
port=$(sed -n 's/^LISTENING \([0-9]*\).*/\1/p' "$work/upstream.log")
[ -n "$port" ] || { echo "demo: the upstream did not start"; cat "$work/upstream.log"; exit 1; }
echo "demo: SSE source on http://127.0.0.1:$port (/ticker, /chat)"

DEMO_PORT=$port DEMO_STATE_DIR="$work/state" build/sse2kafka -c config/demo.yaml 2>"$work/bridge.log" &
bridge=$!
pids+=("$bridge")
brokers=""
for _ in $(seq 100); do
  brokers=$(grep -o 'bootstrap_servers=[0-9.:,]*' "$work/bridge.log" | head -1 | cut -d= -f2 || true)
  [ -n "$brokers" ] && break
  sleep 0.1
done
[ -n "$brokers" ] || { echo "demo: the bridge did not start"; cat "$work/bridge.log"; exit 1; }
echo "demo: bridge running; embedded Kafka at $brokers (try: kcat -C -b $brokers -t demo.ticker)"
echo "demo: records as they land in Kafka (topic  key  value):"

timeout_ms=$(( seconds > 0 ? seconds * 1000 : 2147483647 ))
build/tests/tools/kafka_dump --brokers "$brokers" --topic demo.ticker --topic demo.chat \
    --timeout-ms "$timeout_ms" --count 1000000 |
  "$py" -u -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print("  %-12s %-6s %s" % (r["topic"], r.get("key") or "-", r.get("value")), flush=True)
' || true

echo "demo: stopping the bridge (SIGTERM)"
kill -TERM "$bridge"
rc=0; wait "$bridge" || rc=$?
echo "demo: bridge exited with status $rc; its log:"
sed 's/^/  /' "$work/bridge.log" | grep -v "kafka producer .* created" | tail -n 15
exit "$rc"
