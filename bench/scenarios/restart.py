#!/usr/bin/env python3
"""S5: restart with 10,000 streams and their checkpoints: time until every stream is connected.

Set-up: the bridge runs N streams (1 event/s each, as in S3) until each has sent events, the
source pauses, the topic catches up with what the source sent, and a SIGTERM leaves a checkpoint
for every stream. Each run then resumes the source, starts the bridge on the same state and
measures from the exec to the moment the source has served the N-th response head (counted at
the source). It verifies that every request carried Last-Event-ID equal to the last ID sent on
that path (so the restart resumes exactly, no gap and no replay), and, after pausing and
stopping again, that the topic holds exactly the events the source ever sent.
"""

from __future__ import annotations

from benchlib import (BridgeProcess, Probe, Profiler, Results, Source, bridge_config, check, parse_args,
                      run_scenario, sleep_for, start_broker, wait_until)

PARTITIONS = 8


def streams(source, n):
    return [{"name": "s%05d" % i, "url": source.url("/r/%05d" % i, rate=1, size=100)} for i in range(n)]


class Fleet:
    """The bridge on one state dir and config, started and stopped repeatedly; keeps count of every
    event the source sent across the source's counter resets."""

    def __init__(self, ws, source, broker, topic, n):
        self.ws, self.source, self.topic, self.n = ws, source, topic, n
        self.state = ws.subdir("s5-state")
        self.config = bridge_config(broker.bootstrap, self.state, streams(source, n), defaults={"topic": topic})
        self.probe = Probe(ws, broker.bootstrap)
        self.sent_before_reset = 0
        self.runs = 0

    def start(self):
        """Resets the source's counters, resumes it and starts the bridge."""
        self.sent_before_reset += self.source.stats()["events_sent"]
        self.source.reset()
        self.source.resume()
        self.runs += 1
        return BridgeProcess(self.ws, self.config, "s5-bridge%d" % self.runs)

    def wait_connected(self, bridge, timeout):
        wait_until(lambda: not bridge.running() or self.source.stats()["streams_open"] >= self.n, timeout=timeout,
                   interval=0.05, message=lambda: "%d of %d streams connected\n%s" % (
                       self.source.stats()["streams_open"], self.n, bridge.log_tail()))
        if not bridge.running():
            raise RuntimeError("the bridge exited:\n" + bridge.log_tail())
        return self.source.stats()

    def drain_and_stop(self, bridge, problems):
        """Pauses the source, waits until the topic holds everything sent, stops the bridge."""
        self.source.pause()
        expected = self.sent_before_reset + self.source.stats()["events_sent"]
        reached = self.probe.wait(self.topic, expected, timeout_s=120)
        check(problems, reached["reached"], "%d of %d records arrived" % (reached["records"], expected))
        rc = bridge.stop()
        check(problems, rc == 0, "bridge exited %s:\n%s" % (rc, bridge.log_tail()))
        total = self.probe.total(self.topic)
        check(problems, total == expected, "topic holds %d records, the source sent %d" % (total, expected))


def scenario(ws, args):
    n = 200 if args.smoke else args.streams
    results = Results("S5", "restart with checkpoints", {"streams": n, "runs": args.runs})
    results.metric("restart_s", "restart until all %d streams connected" % n, "s", "%.2f")
    results.metric("first_request_s", "restart until the first request reached the source", "s", "%.2f")
    results.metric("restart_cpu_s", "bridge CPU until all connected", "s", "%.2f")
    results.metric("restart_peak_rss_mib", "bridge peak RSS at that point", "MiB", "%.1f")
    topic = "s5"
    source = Source(ws)
    broker = start_broker(ws, ["%s:%d" % (topic, PARTITIONS)])
    fleet = Fleet(ws, source, broker, topic, n)

    setup_problems = []
    bridge = fleet.start()
    fleet.wait_connected(bridge, timeout=300)
    sleep_for(2)  # every stream's first event is due within a second of its connect
    fleet.drain_and_stop(bridge, setup_problems)
    if setup_problems:
        results.add_run({}, ["set-up: " + p for p in setup_problems])
        return results

    for _ in range(args.runs):
        problems = []
        bridge = fleet.start()
        profiler = Profiler(ws, bridge.pid, "s5-restart%d" % fleet.runs)
        stats = fleet.wait_connected(bridge, timeout=300)
        profiler.stop()
        values = {"restart_s": (stats["last_stream_open_unix_ns"] - bridge.started_unix_ns) / 1e9,
                  "first_request_s": (stats["first_request_unix_ns"] - bridge.started_unix_ns) / 1e9,
                  "restart_cpu_s": bridge.cpu_seconds(),
                  "restart_peak_rss_mib": bridge.memory_kib()["VmHWM"] / 1024}
        check(problems, stats["requests"] == n, "%d requests for %d streams" % (stats["requests"], n))
        check(problems, stats["resumed_exact"] == n,
              "%d of %d requests resumed from the last ID sent (%d carried Last-Event-ID)" % (
                  stats["resumed_exact"], n, stats["requests_with_last_event_id"]))
        sleep_for(1)
        fleet.drain_and_stop(bridge, problems)
        results.add_run(values, problems)
    broker.stop()
    source.stop()
    return results


def add_args(parser):
    parser.add_argument("--streams", type=int, default=10000)


if __name__ == "__main__":
    raise SystemExit(run_scenario(scenario, parse_args(__doc__.splitlines()[0], add_args)))
