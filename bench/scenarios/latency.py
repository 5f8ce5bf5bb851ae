#!/usr/bin/env python3
"""S4: latency of one stream at 1,000 events/s, against a producer-only floor.

Every event's data carries the source's send time (Unix ns, taken just before the write that
carries it). kafka_probe consumes the topic from the beginning (fetch.wait.max.ms=2: the mock
broker holds an empty fetch for the whole wait) and takes receipt time minus send time. The first
second of records is skipped (connection set-up, first produce requests).
- bridge: the source serves /lat?events=N&rate=1000&size=100; the bridge produces them.
- floor: floor_producer sends N records of the same shape at 1,000/s to the same broker with the
  same producer settings (linger.ms=5, idempotence, acks=all), stamping each right before
  rd_kafka_producev: what librdkafka and the broker alone cost.
Each side gets a fresh one-partition topic; runs are short because the mock broker's fetch walks
every stored message set. A side is void unless its topic holds exactly N records (and, for the
bridge, the last one is event N).
"""

from __future__ import annotations

import subprocess

from benchlib import (BRIDGE_DEFAULT_PRODUCER_PROPERTIES, LINGER_MS, BridgeProcess, Probe, Results, Source,
                      bridge_config, check, parse_args, run_scenario, start_broker)

RATE = 1000
SIZE = 100


def measure_bridge(ws, source, broker, probe, topic, n, skip, tag):
    problems = []
    consumer = probe.start_latency(topic, n, skip, timeout_s=n / RATE + 60)
    state = ws.subdir(tag + "-state")
    config = bridge_config(broker.bootstrap, state, [
        {"name": "lat", "url": source.url("/" + topic, events=n, rate=RATE, size=SIZE, at_end="hang"),
         "topic": topic}])
    bridge = BridgeProcess(ws, config, tag)
    latency = Probe.result(consumer, n / RATE + 120)
    cpu = bridge.cpu_seconds() if bridge.running() else None
    memory = bridge.memory_kib() if bridge.running() else {}
    rc = bridge.stop()
    check(problems, rc == 0, "bridge exited %s:\n%s" % (rc, bridge.log_tail()))
    check(problems, latency["records"] == n, "bridge: consumer saw %d of %d records" % (latency["records"], n))
    last = probe.last(topic)
    check(problems, len(last) == 1 and last[0]["high"] == n and last[0]["sse_id"] == str(n),
          "bridge: expected exactly %d records ending with event %d, got %r" % (n, n, last))
    return dict(latency, cpu_s=cpu, rss_kib=memory.get("VmHWM")), problems


def measure_floor(ws, broker, probe, topic, n, skip):
    problems = []
    consumer = probe.start_latency(topic, n, skip, timeout_s=n / RATE + 60)
    props = dict(BRIDGE_DEFAULT_PRODUCER_PROPERTIES, **{"linger.ms": LINGER_MS})
    args = [str(ws.bench_tools / "floor_producer"), "--brokers", broker.bootstrap, "--topic", topic,
            "--count", str(n), "--rate", str(RATE), "--size", str(SIZE)]
    for name, value in props.items():
        args += ["-X", "%s=%s" % (name, value)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=n / RATE + 120)
    latency = Probe.result(consumer, n / RATE + 120)
    check(problems, done.returncode == 0, "floor_producer exited %d: %s %s" % (done.returncode, done.stdout,
                                                                              done.stderr))
    check(problems, latency["records"] == n, "floor: consumer saw %d of %d records" % (latency["records"], n))
    check(problems, probe.total(topic) == n, "floor: topic does not hold exactly %d records" % n)
    return latency, problems


def scenario(ws, args):
    seconds = 2 if args.smoke else args.seconds
    skip = RATE // 2 if args.smoke else RATE
    n = int(seconds * RATE) + skip
    results = Results("S4", "latency at 1,000 events/s", {"rate": RATE, "events": n, "skipped": skip,
                                                          "data_bytes": SIZE, "runs": args.runs})
    for side in ("bridge", "floor"):
        for q in ("p50", "p99", "p999"):
            results.metric("%s_%s_ms" % (side, q), "%s %s latency" % (side, q.replace("p999", "p99.9")), "ms", "%.2f")
    results.metric("p99_ratio", "bridge p99 / floor p99", "×", "%.2f")
    results.metric("bridge_cpu_s", "bridge CPU user+sys", "s", "%.2f")
    results.metric("bridge_peak_rss_mib", "bridge peak RSS (VmHWM)", "MiB", "%.1f")
    source = Source(ws)
    for run in range(1, args.runs + 1):
        tag = "s4-r%d" % run
        broker = start_broker(ws, ["lat-%s:1" % tag, "floor-%s:1" % tag])
        probe = Probe(ws, broker.bootstrap)
        bridge, bridge_problems = measure_bridge(ws, source, broker, probe, "lat-" + tag, n, skip, tag + "-bridge")
        floor, floor_problems = measure_floor(ws, broker, probe, "floor-" + tag, n, skip)
        broker.stop()
        values = {}
        for side, figures in (("bridge", bridge), ("floor", floor)):
            for q in ("p50", "p99", "p999"):
                values["%s_%s_ms" % (side, q)] = figures["%s_ms" % q]
        values["p99_ratio"] = bridge["p99_ms"] / floor["p99_ms"] if floor["p99_ms"] > 0 else None
        values["bridge_cpu_s"] = bridge["cpu_s"]
        values["bridge_peak_rss_mib"] = bridge["rss_kib"] / 1024 if bridge["rss_kib"] else None
        results.add_run(values, bridge_problems + floor_problems)
    source.stop()
    return results


def add_args(parser):
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per side (default 10)")


if __name__ == "__main__":
    raise SystemExit(run_scenario(scenario, parse_args(__doc__.splitlines()[0], add_args)))
