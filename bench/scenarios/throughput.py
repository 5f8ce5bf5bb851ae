#!/usr/bin/env python3
"""S1 and S2: one stream at full speed, the bridge against the raw reference.

S1: 1,000,000 events of 100 B. S2: 100,000 events of 2 KiB (2048 B of data).
Each run starts a fresh mock broker with two one-partition topics and measures, over the same
data from the same source:
- the reference `curl -sN URL | kcat -P -b BROKERS -t TOPIC -D '\\n\\n' -X ...` (one record per
  event block, no parsing, no headers, no key, no acknowledgement tracking: strictly less work);
- the bridge with one stream.
A side's time runs from the HTTP request reaching the source to the poll of the topic's high
watermark that sees all N records (kafka_probe wait, every 10 ms). A side is void unless the topic
ends with exactly N records and its last record is event N.
"""

from __future__ import annotations

from benchlib import (BridgeProcess, Probe, Profiler, Results, Source, bridge_config, check, parse_args,
                      run_scenario, start_broker, timed_reference)

CASES = {
    "S1": {"title": "one stream, 100 B events", "events": 1_000_000, "size": 100, "smoke_events": 20_000},
    "S2": {"title": "one stream, 2 KiB events", "events": 100_000, "size": 2048, "smoke_events": 5_000},
}


def measure_reference(ws, source, probe, broker, topic, n, size, tag):
    problems = []
    source.reset()
    waiter = probe.start_wait(topic, n, timeout_s=600)
    ref = timed_reference(ws, source.url("/" + topic, events=n, size=size), broker.bootstrap, topic, tag)
    reached = Probe.result(waiter, 660)
    stats = source.stats()
    check(problems, ref["rc"] == 0, "reference pipeline exited %s" % ref["rc"])
    check(problems, reached["reached"], "reference: %d of %d records arrived" % (reached["records"], n))
    last = probe.last(topic)
    check(problems, len(last) == 1 and last[0]["high"] == n,
          "reference: topic holds %s records, expected exactly %d" % ([p["high"] for p in last], n))
    check(problems, bool(last) and last[0]["value_head"].startswith("id: %d\n" % n),
          "reference: last record is not event %d: %r" % (n, last[-1]["value_head"][:40] if last else None))
    seconds = (reached["at_unix_ns"] - stats["first_request_unix_ns"]) / 1e9
    return {"seconds": seconds, "cpu_s": ref["cpu_s"], "rss_kib": ref["max_rss_kib"]}, problems


def measure_bridge(ws, source, probe, broker, topic, n, size, tag):
    problems = []
    source.reset()
    waiter = probe.start_wait(topic, n, timeout_s=600)
    state = ws.subdir(tag + "-state")
    config = bridge_config(broker.bootstrap, state, [
        {"name": "bench", "url": source.url("/" + topic, events=n, size=size, at_end="hang"), "topic": topic}])
    bridge = BridgeProcess(ws, config, tag)
    profiler = Profiler(ws, bridge.pid, tag)
    reached = Probe.result(waiter, 660)
    profiler.stop()
    stats = source.stats()
    cpu = bridge.cpu_seconds() if bridge.running() else None
    memory = bridge.memory_kib() if bridge.running() else {}
    rc = bridge.stop()
    check(problems, rc == 0, "bridge exited %s:\n%s" % (rc, bridge.log_tail()))
    check(problems, reached["reached"], "bridge: %d of %d records arrived" % (reached["records"], n))
    check(problems, stats["requests"] == 1, "bridge connected %d times (expected once)" % stats["requests"])
    last = probe.last(topic)
    check(problems, len(last) == 1 and last[0]["high"] == n,
          "bridge: topic holds %s records, expected exactly %d" % ([p["high"] for p in last], n))
    check(problems, bool(last) and last[0]["sse_id"] == str(n) and last[0]["value_head"].startswith('{"n":%d,' % n),
          "bridge: last record is not event %d: %r" % (n, last[-1] if last else None))
    seconds = (reached["at_unix_ns"] - stats["first_request_unix_ns"]) / 1e9
    return {"seconds": seconds, "cpu_s": cpu, "rss_kib": memory.get("VmHWM")}, problems


def scenario(ws, args):
    case = CASES[args.scenario]
    n = case["smoke_events"] if args.smoke else case["events"]
    size = case["size"]
    results = Results(args.scenario, case["title"], {"events": n, "data_bytes": size, "runs": args.runs})
    results.metric("bridge_events_per_s", "bridge throughput", "events/s", "%.0f")
    results.metric("reference_events_per_s", "reference throughput (curl + kcat)", "events/s", "%.0f")
    results.metric("ratio", "bridge / reference", "×", "%.2f")
    results.metric("bridge_mib_per_s", "bridge data rate", "MiB/s", "%.1f")
    results.metric("bridge_cpu_s", "bridge CPU user+sys", "s", "%.2f")
    results.metric("bridge_cpu_us_per_event", "bridge CPU per event", "µs", "%.2f")
    results.metric("bridge_peak_rss_mib", "bridge peak RSS (VmHWM)", "MiB", "%.1f")
    results.metric("reference_cpu_s", "reference CPU user+sys (curl + kcat)", "s", "%.2f")
    source = Source(ws)
    for run in range(1, args.runs + 1):
        tag = "%s-r%d" % (args.scenario.lower(), run)
        ref_topic, bridge_topic = "ref-" + tag, "bridge-" + tag
        broker = start_broker(ws, [ref_topic + ":1", bridge_topic + ":1"])
        probe = Probe(ws, broker.bootstrap)
        # Alternate the order so that a drift of the machine does not always favour one side.
        if run % 2:
            ref, ref_problems = measure_reference(ws, source, probe, broker, ref_topic, n, size, tag + "-ref")
            got, bridge_problems = measure_bridge(ws, source, probe, broker, bridge_topic, n, size, tag + "-bridge")
        else:
            got, bridge_problems = measure_bridge(ws, source, probe, broker, bridge_topic, n, size, tag + "-bridge")
            ref, ref_problems = measure_reference(ws, source, probe, broker, ref_topic, n, size, tag + "-ref")
        broker.stop()
        values = {
            "bridge_events_per_s": n / got["seconds"],
            "reference_events_per_s": n / ref["seconds"],
            "ratio": ref["seconds"] / got["seconds"],
            "bridge_mib_per_s": n * size / got["seconds"] / 2**20,
            "bridge_cpu_s": got["cpu_s"],
            "bridge_cpu_us_per_event": got["cpu_s"] * 1e6 / n if got["cpu_s"] is not None else None,
            "bridge_peak_rss_mib": got["rss_kib"] / 1024 if got["rss_kib"] else None,
            "reference_cpu_s": ref["cpu_s"],
        }
        results.add_run(values, ref_problems + bridge_problems)
    source.stop()
    return results


def add_args(parser):
    parser.add_argument("--scenario", choices=sorted(CASES), required=True)


if __name__ == "__main__":
    raise SystemExit(run_scenario(scenario, parse_args(__doc__.splitlines()[0], add_args)))
