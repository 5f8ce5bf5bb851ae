"""Fleet, cluster mode, against the real group coordinator of a 3-node Apache Kafka cluster (each
version of SSE2KAFKA_KAFKA_VERSIONS): what tests/reliability/test_fleet_cluster.py proves
against the mock broker (whose every rebalance waits about a session timeout), proven with
the broker's own group coordinator and transaction coordinator.

Three instances with one config (cluster.group, state.backend kafka, session_timeout 6 s;
delivery exactly-once, and again at-least-once; INSTANCE and ADMIN_PORT per process from the environment) share 300
numbered streams of one upstream (TaggedFeeds: "i=<instance> c=<connection> n=<N>", resuming
after Last-Event-ID, 1 event per second per stream). The state topic (12 partitions) is created
by the instances themselves.

- Once stable, every stream has exactly one open connection, held by the owner of its state
  partition by the "partitions assigned"/"revoked" lines, every instance owns some, /metrics
  agrees; a sampler (every 50 ms, the whole test) never sees a stream with two open connections.
- kill -9 of one instance: each of its streams resumes on the others within session timeout +
  one heartbeat + 3 s (the reconnect, the transactional init and the checkpoint read), at the
  checkpoint the new owner logged; restarted, it gets partitions back through graceful
  handoffs.
- From the logs of every process, "stream acquired" / "stream released" (a killed process's
  streams end at the kill): no stream is owned by two instances at any moment.
- After a graceful stop of all, every stream holds every ID up to its newest checkpoint (gaps 0)
  and nothing after it, no checkpoint went backwards; with exactly-once, read_committed, each
  exactly once (duplicates 0), while read_uncommitted shows the aborted records of the killed
  instance's open transactions; with at-least-once the kill's duplicates are counted.
- SIGSTOP (exactly-once): half a session timeout changes nothing ("membership confirmed");
  past it the others take over, and after SIGCONT the stalled instance makes nothing it read
  after the takeover visible, drops its streams without writing and rejoins (or exits 1).
"""
# ctest-timeout: 900
# ctest-secured: sasl_ssl 4 -k 'three_instances and exactly'
# ctest-run-serial

import signal
import time
from datetime import datetime, timezone

import pytest

from fleet_real import Reads, late_records, open_connection_ids, resume_times, stale_connections, summary
from fleet_support import FleetInstances, checkpoint_regressions, log_records, newest_checkpoints, read_state
from gap_check import Expected
from harness import wait_until
from reliability_support import observe_for

STREAMS = 300
PARTITIONS = 12
RATE = 1.0                      # events per second per stream
SESSION_TIMEOUT = 6.0           # seconds (cluster.session_timeout)
# kill -9 -> the coordinator expires the member after the session timeout, the survivors learn
# of the rebalance at their next heartbeat (librdkafka: heartbeat.interval.ms, at most a third
# of the session), then the new owner initialises the partition's transactional.id (aborting
# the killed owner's open transaction), reads the checkpoints and reconnects (100 ms).
RESUME_BOUND = SESSION_TIMEOUT + SESSION_TIMEOUT / 3 + 3.0
INSTANCES = ["a", "b", "c"]



def log_time(line):
    """The wall-clock time (seconds since the epoch) of a text log line."""
    stamp = line.split(" ", 1)[0]
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


class Fleet(FleetInstances):
    """The shared cluster-mode scenario (fleet_support.FleetInstances) on a real cluster, with
    the wall-clock moment each killed process ended, for the ownership intervals."""

    def __init__(self, cluster, upstream, tmp_path, start_bridge, topic, state_topic, group, delivery):
        super().__init__(upstream, tmp_path, start_bridge, cluster.bootstrap, topic, state_topic, streams=STREAMS,
                         partitions=PARTITIONS, rate=RATE, group=group, session_timeout=SESSION_TIMEOUT,
                         delivery=delivery, name_format="cl-%03d", stop_timeout=60,
                         transaction={"interval": "200ms", "max_events": 10000} if delivery == "exactly-once" else None)
        self.cluster = cluster
        self.ends = {}  # Bridge name -> wall-clock time it was killed

    def kill9(self, instance):
        bridge = self.bridges[instance]
        self.ends[bridge.name] = time.time()
        bridge.kill9()

    def ownership_overlaps(self):
        """[(stream, (instance, process, start, end), (instance, process, start, end))] where two
        processes' ownership intervals of a stream overlap, by their "stream acquired" and
        "stream released" lines (a killed process's open intervals end at the kill), and the
        number of intervals."""
        intervals = {}
        for instance, bridge in self.all_bridges:
            open_since = {}
            lines = bridge.logs().splitlines()
            for message in ("stream acquired", "stream released"):
                for record in log_records(bridge, message):
                    at = log_time(record.line)
                    if message == "stream acquired":
                        open_since.setdefault(record.stream, []).append((record.index, at, "acquired"))
                    else:
                        open_since.setdefault(record.stream, []).append((record.index, at, "released"))
            end_of_process = self.ends.get(bridge.name)
            if end_of_process is None and lines:
                end_of_process = log_time(lines[-1]) if lines[-1][:4].isdigit() else time.time()
            for stream, events in open_since.items():
                start = None
                for _, at, kind in sorted(events):
                    if kind == "acquired":
                        start = at
                    elif start is not None:
                        intervals.setdefault(stream, []).append((instance, bridge.name, start, at))
                        start = None
                if start is not None:
                    intervals.setdefault(stream, []).append((instance, bridge.name, start, end_of_process))
        overlaps = []
        for stream, spans in intervals.items():
            spans.sort(key=lambda s: s[2])
            for before, after in zip(spans, spans[1:]):
                if after[2] < before[3]:
                    overlaps.append((stream, before, after))
        return overlaps, sum(len(v) for v in intervals.values())


@pytest.mark.parametrize("delivery", ["exactly-once", "at-least-once"])
def test_three_instances_own_each_stream_once_and_survive_kill9(delivery, healthy_cluster, upstream, tmp_path,
                                                                 start_bridge):
    cluster = healthy_cluster
    exactly_once = delivery == "exactly-once"
    short = "eos" if exactly_once else "alo"
    topic, state_topic, group = "cl.events.%s" % short, "_cl_state_%s" % short, "real-fleet-%s" % short
    cluster.create_topic(topic, partitions=PARTITIONS)
    kafka = cluster.reader()
    fleet = Fleet(cluster, upstream, tmp_path, start_bridge, topic, state_topic, group, delivery)
    began = time.monotonic()
    try:
        for instance in INSTANCES:
            fleet.start(instance)
        owned = fleet.wait_stable(INSTANCES, 150, "three instances starting")
        stable_after = time.monotonic() - began
        fleet.metrics_agree(INSTANCES, 15)

        victim = "b"
        victim_paths = [p for p, i in fleet.holders().items() if i == victim]
        assert victim_paths, "instance %s holds no stream: %s" % (victim, owned)
        killed_at = time.monotonic()
        killed_wall = time.time()
        fleet.kill9(victim)
        survivors = [i for i in INSTANCES if i != victim]

        def resumed():
            for instance in survivors:
                fleet.bridges[instance].assert_running()
            return len(resume_times(fleet.feeds, victim_paths, killed_at, {victim})) == len(victim_paths)
        wait_until(resumed, RESUME_BOUND + 60, interval=0.2, message=lambda: (
            "%d of %d streams of the killed instance never resumed\n%s" % (
                len(victim_paths) - len(resume_times(fleet.feeds, victim_paths, killed_at, {victim})),
                len(victim_paths), fleet.describe())))
        delays = resume_times(fleet.feeds, victim_paths, killed_at, {victim})
        slowest, fastest = max(delays.values()), min(delays.values())
        fleet.wait_stable(survivors, 60, "after kill -9 of %s" % victim)
        # The new owners resumed each stream at the checkpoint they logged when they acquired it
        # after the kill (a survivor may have held the stream earlier, before a rebalance moved it
        # to the victim: that older line says nothing about the resume).
        acquired = {}
        for instance in survivors:
            for record in log_records(fleet.bridges[instance], "stream acquired"):
                if log_time(record.line) >= killed_wall - 0.5:
                    acquired[record.stream] = record.fields.get("checkpoint")
        mismatched = []
        for path in victim_paths:
            first = min((r for r in fleet.feeds.requests_after(path, killed_at)
                         if r.headers.get("X-Instance") != victim), key=lambda r: r.monotonic)
            if (first.last_event_id or "") != (acquired.get(fleet.name_of[path]) or ""):
                mismatched.append((fleet.name_of[path], first.last_event_id, acquired.get(fleet.name_of[path])))

        restarted_at = time.monotonic()
        fleet.start(victim)
        fleet.wait_stable(INSTANCES, 90, "after %s restarted" % victim)
        rejoined_after = time.monotonic() - restarted_at
        # Every stream goes on past what the upstream had sent when the restart settled.
        marks = {fleet.name_of[p]: (upstream.last_sent_id(p) or 0) for p in fleet.path_of.values()}

        def past_marks():
            for instance in INSTANCES:
                fleet.bridges[instance].assert_running()
            highest = {}
            for record in kafka.records(topic, eof=True, timeout=30,
                                        isolation="read_committed" if exactly_once else None):
                s = record.header("sse.stream")
                highest[s] = max(highest.get(s, 0), int(record.header("sse.id")))
            return all(highest.get(n, 0) >= m for n, m in marks.items())
        wait_until(past_marks, 60, interval=1.0, message=lambda: "streams stalled after the restart\n" +
                   fleet.describe())
        fleet.stop_all()
    finally:
        fleet.sampler.stop()
    elapsed = time.monotonic() - began

    state_records = read_state(kafka, state_topic, isolation="read_committed" if exactly_once else None, timeout=60)
    checkpoints = newest_checkpoints(state_records)
    missing = [n for n in fleet.names if n not in checkpoints or not (checkpoints[n].last_event_id or "").isdigit()]
    assert not missing, "streams without a committed checkpoint: %s" % missing[:20]
    expected = {n: Expected(last=int(checkpoints[n].last_event_id)) for n in fleet.names}
    reads = Reads(kafka, [topic], expected, timeout=120)
    report = reads.committed
    overlaps, intervals = fleet.ownership_overlaps()
    summary("fleet_cluster/kill9 %s (Kafka %s): streams=%d events=%d committed=%d duplicates=%d gaps=%d "
            "order_violations=%d unexpected=%d aborted_records=%d stable_after=%.1fs victim_streams=%d "
            "resume_fastest=%.1fs resume_slowest=%.1fs (bound %.1fs) rejoined_after=%.1fs ownership_intervals=%d "
            "overlaps=%d connection_samples=%d doubles=%d resume_checkpoint_mismatches=%d %.0fs" % (
                delivery, cluster.kafka_version, STREAMS, report.sent, report.delivered, report.duplicates, report.gaps,
                report.order_violations, report.unexpected, reads.aborted_records, stable_after, len(victim_paths),
                fastest, slowest, RESUME_BOUND, rejoined_after, intervals, len(overlaps), fleet.sampler.samples,
                len(fleet.sampler.doubles), len(mismatched), elapsed))
    assert not fleet.sampler.doubles, "a stream was held by two open connections at once:\n" + fleet.sampler.text()
    assert not overlaps, "streams owned by two instances at once (stream, (instance, process, from, to) x2): %s" % (
        overlaps[:10])
    assert report.gaps == 0, "DATA LOSS in cluster mode (kill -9 of %s)\n%s" % (victim, report.text())
    if exactly_once:
        assert report.duplicates == 0, "DUPLICATES under exactly-once (kill -9 of %s)\n%s" % (victim, report.text())
    # After a graceful stop of all, nothing lies beyond the newest checkpoint of its stream, and
    # no checkpoint went backwards in the topic.
    assert report.order_violations == 0 and report.unexpected == 0, report.text()
    assert checkpoint_regressions(state_records) == [], checkpoint_regressions(state_records)[:10]
    assert not mismatched, "resumed at another ID than the checkpoint logged (stream, Last-Event-ID, logged): %s" % (
        mismatched[:10])
    assert slowest <= RESUME_BOUND, \
        "the killed instance's streams resumed after up to %.1fs (bound %.1fs = session timeout + heartbeat + 3 s)" % (
            slowest, RESUME_BOUND)


def test_stalled_instance_writes_nothing_after_takeover(healthy_cluster, upstream, tmp_path, start_bridge):
    """exactly-once: SIGSTOP one instance for half the session timeout (it confirms its membership
    and keeps its streams), then past it: the real coordinator expires it, the others take its
    partitions (initialising their transactional.ids, which fences its producers) and its
    streams; the upstream writes events into its stale connections after the takeover. After
    SIGCONT it must make none of them visible: it checks its membership ("suspended: ..."), learns
    that it lost it (its own check, or librdkafka's "lost" revocation) or is fenced, and drops its
    streams without writing (and rejoins) or exits 1."""
    cluster = healthy_cluster
    topic, state_topic, group = "cl.stall", "_cl_state_stall", "real-fleet-stall"
    cluster.create_topic(topic, partitions=PARTITIONS)
    kafka = cluster.reader()
    fleet = Fleet(cluster, upstream, tmp_path, start_bridge, topic, state_topic, group, "exactly-once")
    victim = "b"
    try:
        for instance in INSTANCES:
            fleet.start(instance)
        fleet.wait_stable(INSTANCES, 150, "three instances starting")
        stale = stale_connections(fleet.feeds, victim)
        assert stale, "instance %s holds no stream" % victim
        victim_bridge = fleet.bridges[victim]

        revoked_before = sum(len(log_records(b, "partitions revoked")) for b in fleet.bridges.values())
        victim_bridge.signal(signal.SIGSTOP)
        observe_for(SESSION_TIMEOUT / 2, fleet.bridges["a"])
        victim_bridge.signal(signal.SIGCONT)
        victim_bridge.wait_for_log(r"membership confirmed", timeout=20)
        short_moved = sum(len(log_records(b, "partitions revoked")) for b in fleet.bridges.values()) - revoked_before
        assert set(stale) <= open_connection_ids(fleet.feeds), "the short stall closed the instance's connections"
        short_checks = len(log_records(victim_bridge, "suspended: checking group membership before writing"))

        fleet.sampler.exclude(victim)                     # its sockets stay open while it is stopped
        stopped_at = time.monotonic()
        victim_bridge.signal(signal.SIGSTOP)
        survivors = [i for i in INSTANCES if i != victim]
        paths = set(stale.values())
        takeover = {}
        try:
            def taken_over():
                for instance in survivors:
                    fleet.bridges[instance].assert_running()
                takeover.update({p: stopped_at + d for p, d in
                                 resume_times(fleet.feeds, paths, stopped_at, {victim}).items()})
                return len(takeover) == len(paths)
            wait_until(taken_over, RESUME_BOUND + 60, interval=0.2, message=lambda: (
                "the stopped instance's streams were not taken over: %d of %d\n%s" % (
                    len(takeover), len(paths), fleet.describe())))

            def baited():
                assert set(stale) <= open_connection_ids(fleet.feeds), "stale connections closed while stopped"
                return all((fleet.feeds.last_on_connection(c) or (0, 0))[1] > takeover[p] + 1.0
                           for c, p in stale.items())
            wait_until(baited, 20, interval=0.1, message="the upstream wrote nothing after the takeover")
        finally:
            victim_bridge.signal(signal.SIGCONT)
        continued_at = time.monotonic()
        takeover_slowest = max(takeover.values()) - stopped_at

        def reacted():
            if not victim_bridge.running():
                return True
            return len(log_records(victim_bridge, "suspended: checking group membership before writing")) > \
                short_checks and not (set(stale) & open_connection_ids(fleet.feeds))
        wait_until(reacted, 30, interval=0.1, message=lambda: "the resumed instance neither exited nor dropped its "
                   "stale connections\n" + victim_bridge.describe(60))
        reacted_after = time.monotonic() - continued_at
        fleet.sampler.include(victim)
        exited = None if victim_bridge.running() else victim_bridge.process.returncode
        if exited is not None:
            fleet.start(victim)                           # what systemd or Docker would do
        fleet.wait_stable(INSTANCES, 90, "after SIGCONT of %s" % victim)
        fleet.stop_all()
    finally:
        fleet.sampler.stop()

    suspended = log_records(victim_bridge, "suspended: checking group membership before writing")
    lost = log_records(victim_bridge, "membership lost: dropping streams")
    fenced = log_records(victim_bridge, "partition fenced")
    revoked_lost = [r for r in log_records(victim_bridge, "partitions revoked") if r.fields.get("lost") == "true"]
    producers_fenced = len([line for line in victim_bridge.logs().splitlines()
                            if "failed for good: _FENCED" in line])
    state = newest_checkpoints(read_state(kafka, state_topic, isolation="read_committed", timeout=60))
    missing = [n for n in fleet.names if n not in state or not (state[n].last_event_id or "").isdigit()]
    assert not missing, "streams without a committed checkpoint: %s" % missing[:20]
    reads = Reads(kafka, [topic], {n: Expected(last=int(state[n].last_event_id)) for n in fleet.names}, timeout=120)
    late_committed = late_records(reads.committed_records, fleet.feeds, stale, takeover)
    late_raw = late_records(reads.raw_records, fleet.feeds, stale, takeover)
    report = reads.committed
    summary("fleet_cluster/sigstop exactly-once (Kafka %s): streams=%d events=%d committed=%d duplicates=%d gaps=%d "
            "stale_connections=%d short_stall_revocations=%d stopped_for=%.1fs takeover_slowest=%.1fs "
            "reacted_after=%.1fs exit=%s suspended=%d membership_lost=%d revoked_lost=%d partition_fenced=%d "
            "producers_fenced=%d late_committed=%d "
            "late_read_uncommitted=%d aborted_records=%d doubles=%d" % (
                cluster.kafka_version, STREAMS, report.sent, report.delivered, report.duplicates, report.gaps,
                len(stale), short_moved, continued_at - stopped_at, takeover_slowest, reacted_after, exited,
                len(suspended), len(lost), len(revoked_lost), len(fenced), producers_fenced, len(late_committed),
                len(late_raw), reads.aborted_records, len(fleet.sampler.doubles)))
    assert short_moved == 0, "a stall shorter than the session timeout moved partitions"
    assert not late_committed, \
        "the stalled instance made events visible that it read on stale connections after the takeover " \
        "(partition, offset, value, seconds after takeover): %s\n%s" % (late_committed[:10], victim_bridge.describe(80))
    assert exited in (None, 1), "the stalled instance exited %s\n%s" % (exited, victim_bridge.describe(80))
    # It dropped the partitions (its own membership check, librdkafka's lost revocation, or a
    # fenced producer) and rejoined, or exited 1.
    assert exited == 1 or lost or fenced or revoked_lost, victim_bridge.describe(80)
    assert not fleet.sampler.doubles, "a stream was held by two live connections at once:\n" + fleet.sampler.text()
    assert report.gaps == 0, "DATA LOSS after the stall\n%s" % report.text()
    assert report.duplicates == 0, "DUPLICATES under exactly-once after the stall\n%s" % report.text()
    assert report.order_violations == 0 and report.unexpected == 0, report.text()
