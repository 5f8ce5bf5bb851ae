#!/usr/bin/env python3
"""S6: what exactly-once costs: one stream at full speed, exactly-once against at-least-once.

200,000 events of 100 B, one stream. Each run starts a fresh mock broker and measures, over the
same data from the same source, the bridge with the file backend and `delivery: at-least-once`
(the reference) and the bridge with `state.backend: kafka` and `delivery: exactly-once`
(transactions every 100 ms, the default). A side's time runs from the HTTP request reaching the
source to the poll of the topic's high watermark that sees all N records. A side is void unless
the topic ends with exactly N records and its last record is event N; the exactly-once side must
also have committed a checkpoint naming event N in the state topic before it stops.
The mock writes no transaction markers, so the figure leaves out what markers cost a real broker
(one small record per partition per transaction).
"""

from __future__ import annotations

from benchlib import (BridgeProcess, Probe, Results, Source, bridge_config, check, parse_args, run_scenario,
                      start_broker)

EVENTS, SMOKE_EVENTS, SIZE = 200_000, 10_000, 100
STATE_TOPIC = "_bench_state"


def measure(ws, source, probe, broker, topic, n, tag, exactly_once):
    problems = []
    source.reset()
    waiter = probe.start_wait(topic, n, timeout_s=600)
    config = bridge_config(broker.bootstrap, ws.subdir(tag + "-state"), [
        {"name": "bench-" + tag, "url": source.url("/" + topic, events=n, size=SIZE, at_end="hang"),
         "topic": topic}])
    if exactly_once:
        config["state"] = {"backend": "kafka", "topic": STATE_TOPIC}
        config["delivery"] = "exactly-once"
    bridge = BridgeProcess(ws, config, tag)
    reached = Probe.result(waiter, 660)
    stats = source.stats()
    cpu = bridge.cpu_seconds() if bridge.running() else None
    rc = bridge.stop()
    check(problems, rc == 0, "%s: bridge exited %s:\n%s" % (tag, rc, bridge.log_tail()))
    check(problems, reached["reached"], "%s: %d of %d records arrived" % (tag, reached["records"], n))
    last = probe.last(topic)
    check(problems, len(last) == 1 and last[0]["high"] == n,
          "%s: topic holds %s records, expected exactly %d" % (tag, [p["high"] for p in last], n))
    check(problems, bool(last) and last[0]["sse_id"] == str(n),
          "%s: last record is not event %d: %r" % (tag, n, last[-1] if last else None))
    if exactly_once:
        check(problems, probe.total(STATE_TOPIC) > 0, "%s: no checkpoint record was committed" % tag)
    seconds = (reached["at_unix_ns"] - stats["first_request_unix_ns"]) / 1e9
    return {"seconds": seconds, "cpu_s": cpu}, problems


def scenario(ws, args):
    n = SMOKE_EVENTS if args.smoke else EVENTS
    results = Results("S6", "exactly-once against at-least-once, one stream, 100 B events",
                      {"events": n, "data_bytes": SIZE, "runs": args.runs})
    results.metric("eos_events_per_s", "exactly-once throughput", "events/s", "%.0f")
    results.metric("alo_events_per_s", "at-least-once throughput (reference)", "events/s", "%.0f")
    results.metric("ratio", "exactly-once / at-least-once", "×", "%.2f")
    results.metric("eos_cpu_us_per_event", "exactly-once CPU per event", "µs", "%.2f")
    results.metric("alo_cpu_us_per_event", "at-least-once CPU per event", "µs", "%.2f")
    source = Source(ws)
    for run in range(1, args.runs + 1):
        tag = "s6-r%d" % run
        alo_topic, eos_topic = "alo-" + tag, "eos-" + tag
        broker = start_broker(ws, [alo_topic + ":1", eos_topic + ":1", STATE_TOPIC + ":4"])
        probe = Probe(ws, broker.bootstrap)
        sides = [(False, alo_topic), (True, eos_topic)]
        if run % 2 == 0:
            sides.reverse()  # so that a drift of the machine does not always favour one side
        got, problems = {}, []
        for exactly_once, topic in sides:
            got[exactly_once], side_problems = measure(ws, source, probe, broker, topic, n,
                                                       topic, exactly_once)
            problems += side_problems
        broker.stop()
        eos, alo = got[True], got[False]
        results.add_run({
            "eos_events_per_s": n / eos["seconds"],
            "alo_events_per_s": n / alo["seconds"],
            "ratio": alo["seconds"] / eos["seconds"],
            "eos_cpu_us_per_event": eos["cpu_s"] * 1e6 / n if eos["cpu_s"] is not None else None,
            "alo_cpu_us_per_event": alo["cpu_s"] * 1e6 / n if alo["cpu_s"] is not None else None,
        }, problems)
    source.stop()
    return results


if __name__ == "__main__":
    raise SystemExit(run_scenario(scenario, parse_args(__doc__.splitlines()[0])))
