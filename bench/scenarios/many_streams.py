#!/usr/bin/env python3
"""S3: thousands of slow streams: 1,000 and 10,000 concurrent streams, one event per second each.

For each stream count N every run (and once one stream at 1/s, the memory baseline):
1. starts the bridge with N streams (each its own path on the source, 100 B events, rate 1/s,
   first events spread over one second) on a fresh 8-partition topic and waits until the source
   serves all N responses (that time is reported as the cold connect time);
2. lets it settle, then measures a window (60 s; --duration): the bridge's CPU user+sys in the
   window, the events the source sent in it, and at its end VmRSS and VmHWM;
3. pauses the source, waits until the topic holds exactly the events the source sent, stops the
   bridge (SIGTERM, exit 0) and checks that every stream's checkpoint is the last ID sent on it.
RSS per stream = (VmHWM with N streams − VmHWM with one stream) / (N − 1). CPU per event is the
window's CPU over the window's events. Each run also measures ONE stream paced at N events/s (a
shorter window, same checks): the same event rate and the same small writes, without the many
connections. report.py sets the CPU per event against that and against S1's bulk figure.
Check `ulimit -n` first: the bridge and the source each need N sockets (both raise their soft limit
to the hard one).
"""

from __future__ import annotations

import resource
import time

from benchlib import (BridgeProcess, Probe, Profiler, Results, Source, bridge_config, check, parse_args,
                      read_checkpoints, run_scenario, sleep_for, start_broker, wait_until)

PARTITIONS = 8
EVENT_SIZE = 100


def stream_list(source, n, rate):
    return [{"name": "s%05d" % i, "url": source.url("/t/%05d" % i, rate=rate, size=EVENT_SIZE)} for i in range(n)]


def one_run(ws, source, n, duration, settle, tag, rate=1):
    """N streams of `rate` events/s each. Returns (values, problems)."""
    problems = []
    topic = "s3-" + tag
    broker = start_broker(ws, ["%s:%d" % (topic, PARTITIONS)])
    probe = Probe(ws, broker.bootstrap)
    state = ws.subdir(tag + "-state")
    source.resume()
    source.reset()
    config = bridge_config(broker.bootstrap, state, stream_list(source, n, rate), defaults={"topic": topic})
    bridge = BridgeProcess(ws, config, tag)
    values = {}
    try:
        wait_until(lambda: not bridge.running() or source.stats()["streams_open"] >= n, timeout=300, interval=0.1,
                   message=lambda: "%d of %d streams connected\n%s" % (
                       source.stats()["streams_open"], n, bridge.log_tail()))
        if not bridge.running():
            raise RuntimeError("the bridge exited:\n" + bridge.log_tail())
        stats = source.stats()
        values["connect_s"] = (stats["last_stream_open_unix_ns"] - bridge.started_unix_ns) / 1e9
        values["first_request_s"] = (stats["first_request_unix_ns"] - bridge.started_unix_ns) / 1e9
        sleep_for(settle)
        profiler = Profiler(ws, bridge.pid, tag)
        cpu0, sent0, t0 = bridge.cpu_seconds(), source.stats()["events_sent"], time.monotonic()
        sleep_for(duration)
        cpu1, sent1, t1 = bridge.cpu_seconds(), source.stats()["events_sent"], time.monotonic()
        profiler.stop()
        memory = bridge.memory_kib()
        events = sent1 - sent0
        values.update({
            "events_per_s": events / (t1 - t0),
            "cpu_s": cpu1 - cpu0,
            "cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
            "cpu_us_per_event": (cpu1 - cpu0) * 1e6 / events if events else None,
            "rss_mib": memory["VmRSS"] / 1024,
            "peak_rss_mib": memory["VmHWM"] / 1024,
            "peak_rss_kib": memory["VmHWM"],
        })
        source.pause()
        sent = source.stats()["events_sent"]
        reached = probe.wait(topic, sent, timeout_s=120)
        check(problems, reached["reached"], "%d of %d records arrived" % (reached["records"], sent))
    finally:
        rc = bridge.stop()
    check(problems, rc == 0, "bridge exited %s:\n%s" % (rc, bridge.log_tail()))
    stats = source.stats()
    total = probe.total(topic)
    check(problems, total == stats["events_sent"],
          "topic holds %d records, the source sent %d" % (total, stats["events_sent"]))
    check(problems, stats["requests"] == n, "%d requests for %d streams (reconnects?)" % (stats["requests"], n))
    sent_ids = source.last_ids()
    checkpoints = read_checkpoints(state)
    wrong = [i for i in range(n) if checkpoints.get("s%05d" % i) != sent_ids.get("/t/%05d" % i)]
    check(problems, not wrong, "%d streams' checkpoints differ from the last ID sent, e.g. s%05d: %r vs %r" % (
        len(wrong), wrong[0], checkpoints.get("s%05d" % wrong[0]), sent_ids.get("/t/%05d" % wrong[0]))
        if wrong else "")
    broker.stop()
    return values, problems


def scenario(ws, args):
    counts = [100] if args.smoke else args.streams
    duration = 3 if args.smoke else args.duration
    single_duration = 3 if args.smoke else min(args.duration, 20)
    settle = 1 if args.smoke else 5
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max(counts) + 200
    if hard < needed:
        raise SystemExit("ulimit -n: hard limit %d is below the %d sockets %d streams need" % (hard, needed, max(counts)))
    results = Results("S3", "many slow streams (1 event/s each)",
                      {"streams": counts, "window_s": duration, "single_stream_window_s": single_duration,
                       "event_bytes": EVENT_SIZE, "runs": args.runs, "nofile_soft": soft, "nofile_hard": hard})
    source = Source(ws)
    baseline, problems = one_run(ws, source, 1, min(duration, 10), settle, "s3-n1")
    results.metric("baseline_peak_rss_mib", "peak RSS with one stream", "MiB", "%.1f")
    results.add_run({"streams": 1, "baseline_peak_rss_mib": baseline.get("peak_rss_mib")}, problems)
    for n in counts:
        for key, label, unit, fmt in [
                ("first_request_s", "cold start until the first request", "s", "%.2f"),
                ("connect_s", "cold start until all connected", "s", "%.2f"),
                ("events_per_s", "events per second", "events/s", "%.0f"),
                ("cpu_percent", "bridge CPU (of one core)", "%", "%.1f"),
                ("cpu_us_per_event", "bridge CPU per event", "µs", "%.1f"),
                ("single_cpu_us_per_event", "CPU per event of ONE stream at the same total rate", "µs", "%.1f"),
                ("cpu_vs_single", "CPU per event / one stream at the same rate", "×", "%.2f"),
                ("peak_rss_mib", "peak RSS (VmHWM)", "MiB", "%.1f"),
                ("rss_kib_per_stream", "RSS per stream (marginal over one stream)", "KiB", "%.1f")]:
            results.metric("%s@%d" % (key, n), "%s, %d streams" % (label, n), unit, fmt)
        for run in range(1, args.runs + 1):
            values, problems = one_run(ws, source, n, duration, settle, "s3-n%d-r%d" % (n, run))
            # The same events per second on one connection: what the per-event cost is without the
            # many connections (each event still a write of its own, as paced streams are).
            single, single_problems = one_run(ws, source, 1, single_duration, settle, "s3-one-at-%d-r%d" % (n, run),
                                              rate=n)
            problems += ["one stream at %d/s: %s" % (n, p) for p in single_problems]
            if "peak_rss_kib" in values and "peak_rss_kib" in baseline:
                values["rss_kib_per_stream"] = (values["peak_rss_kib"] - baseline["peak_rss_kib"]) / (n - 1)
            values["single_cpu_us_per_event"] = single.get("cpu_us_per_event")
            if values.get("cpu_us_per_event") and single.get("cpu_us_per_event"):
                values["cpu_vs_single"] = values["cpu_us_per_event"] / single["cpu_us_per_event"]
            results.add_run({"streams": n, **{"%s@%d" % (k, n): v for k, v in values.items()}}, problems)
    source.stop()
    return results


def add_args(parser):
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--duration", type=float, default=60, help="measurement window in seconds")


if __name__ == "__main__":
    raise SystemExit(run_scenario(scenario, parse_args(__doc__.splitlines()[0], add_args)))
