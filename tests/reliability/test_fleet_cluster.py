"""Fleet (issue 8): cluster mode. Three instances with one config (cluster.group, backend kafka,
session_timeout 6 s; each process gets its own INSTANCE and ADMIN_PORT through the environment)
share 300 numbered streams of one upstream. The upstream (TaggedFeeds, fleet_support.py) serves
"i=<instance> c=<connection> n=<N>" events, resuming after Last-Event-ID, 2 per second per stream
forever, and knows which instance opened each connection (the X-Instance request header). The
state topic (12 partitions) is created beforehand: the 2.0.2 mock broker has no CreateTopics.
Each librdkafka 2.0.2 mock rebalance waits about the session timeout (see
/work/shared/notes/kafka-mock-cluster.md), which sets the pace of these tests.

test_three_instances_share_streams_and_survive_kill9 (at-least-once, plain mock broker):
- once stable, every stream has exactly one open connection, held by the instance whose
  "partitions assigned"/"revoked" log lines say it owns the stream's state partition
  (murmur2(name) mod 12), every instance owns some, and /metrics agrees
  (sse2kafka_owned_streams sums to 300, sse2kafka_owned_partitions to 12);
- a sampler (every 50 ms, for the whole test) never sees a stream with two open connections: a
  graceful handoff closes before the new owner opens, and a killed process's sockets close with it;
- kill -9 of one instance: its streams resume on the others within session timeout + rebalance +
  reconnect margin; started again, it gets partitions back ("partitions assigned");
- after a graceful stop of all: every stream holds every ID up to its newest checkpoint in the
  state topic (gaps = 0; duplicates allowed and reported), nothing after it, and no checkpoint of
  a stream ever went backwards in the topic.

test_stalled_instance_writes_nothing_after_takeover (at-least-once, plain mock broker): nothing
fences the stalled instance, so only the instance itself (its membership check before writing,
librdkafka noticing the expired session) keeps it from writing what it read while stopped. (With
exactly-once, Kafka's producer fencing also stops it; the mock cannot fence, so that case is
proven against real Apache Kafka in tests/realkafka.)
- SIGSTOP one instance for half the session timeout: it logs "membership confirmed" after the
  check and keeps its streams and connections; no partition moves;
- SIGSTOP it again; once the others took over all its streams, and the upstream has written
  events past the takeover into its still-open (stale) connections, SIGCONT it;
- its log shows "suspended: checking group membership before writing", its stale connections
  close, it rejoins and gets partitions again;
- no record carried by one of its stale connections holds an event the upstream wrote after the
  new owner of that stream connected; every stream holds every ID up to its newest checkpoint
  (gaps = 0; duplicates allowed and reported).
"""
# ctest-timeout: 360
# ctest-run-serial

import signal
import time

from fleet_support import (FleetInstances, checkpoint_regressions, log_records, newest_checkpoints, parse_tag,
                           read_all_checker, read_state)
from gap_check import Expected
from harness import Kafka, wait_until
from reliability_support import TIME_SCALE, RecordTail, observe_for, scaled, seconds

STREAMS = scaled(300, 120)
PARTITIONS = 12
RATE = 2.0                      # events per second per stream
SESSION_TIMEOUT = 6.0           # seconds (cluster.session_timeout)
# kill -9 -> the coordinator notices after the session timeout, the next rebalance waits about
# another session timeout in the 2.0.2 mock, the members learn of it at their next heartbeat
# (session/3), then the streams reconnect (100 ms initial delay) and get through the load.
RESUME_BOUND = (SESSION_TIMEOUT + SESSION_TIMEOUT + SESSION_TIMEOUT / 3 + 5.0) * TIME_SCALE
INSTANCES = ["a", "b", "c"]
GROUP = "fleet-reliability"



class Fleet(FleetInstances):
    """The upstream feeds, the shared config and the instances (by name) of one test."""

    def __init__(self, upstream, tmp_path, start_bridge, bootstrap, topic, state_topic, delivery=None):
        super().__init__(upstream, tmp_path, start_bridge, bootstrap, topic, state_topic, streams=STREAMS,
                         partitions=PARTITIONS, rate=RATE, group=GROUP, session_timeout=SESSION_TIMEOUT,
                         delivery=delivery, stop_timeout=seconds(40))


def resume_times(fleet, paths, since, exclude):
    """{path: seconds after `since` of the first request by an instance not in `exclude`}."""
    out = {}
    for path in paths:
        times = [r.monotonic for r in fleet.feeds.requests_after(path, since)
                 if r.headers.get("X-Instance") not in exclude]
        if times:
            out[path] = min(times) - since
    return out


def test_three_instances_share_streams_and_survive_kill9(make_broker, upstream, tmp_path, processes, start_bridge,
                                                         scenario_summary):
    topic, state_topic = "rel.fleet.cluster", "_fleet_state_cluster"
    broker = make_broker(topics=["%s:%d" % (topic, PARTITIONS)])
    broker.create_topic(state_topic, PARTITIONS)
    kafka = Kafka(broker.bootstrap)
    fleet = Fleet(upstream, tmp_path, start_bridge, broker.bootstrap, topic, state_topic)
    tail = RecordTail(processes, broker.bootstrap, [topic], tmp_path, name="cluster_tail")
    try:
        for instance in INSTANCES:
            fleet.start(instance)
        owned = fleet.wait_stable(INSTANCES, seconds(90), "three instances starting")
        fleet.metrics_agree(INSTANCES, seconds(10))

        victim = "b"
        victim_paths = [p for p, i in fleet.holders().items() if i == victim]
        assert victim_paths, "instance %s holds no stream: %s" % (victim, owned)
        killed_at = time.monotonic()
        fleet.bridges[victim].kill9()
        survivors = [i for i in INSTANCES if i != victim]

        def resumed():
            for instance in survivors:
                fleet.bridges[instance].assert_running()
            return len(resume_times(fleet, victim_paths, killed_at, {victim})) == len(victim_paths)
        wait_until(resumed, RESUME_BOUND + seconds(30), interval=0.2, message=lambda: (
            "%d of %d streams of the killed instance never resumed\n%s" % (
                len(victim_paths) - len(resume_times(fleet, victim_paths, killed_at, {victim})),
                len(victim_paths), fleet.describe())))
        delays = resume_times(fleet, victim_paths, killed_at, {victim})
        slowest = max(delays.values())
        assert slowest <= RESUME_BOUND, \
            "the killed instance's streams resumed after %.1fs (bound %.1fs = 2 x session timeout + heartbeat " \
            "+ margin)\n%s" % (slowest, RESUME_BOUND, fleet.describe())
        fleet.wait_stable(survivors, seconds(60), "after kill -9 of %s" % victim)

        restarted = fleet.start(victim)
        restarted.wait_for_log(r"partitions assigned partitions=\d", timeout=seconds(60))
        fleet.wait_stable(INSTANCES, seconds(60), "after %s restarted" % victim)
        # Every stream goes on past what the upstream had sent when the restart settled.
        marks = {fleet.name_of[p]: (fleet.feeds.upstream.last_sent_id(p) or 0) for p in fleet.path_of.values()}

        def past_marks():
            tail.check_alive()
            return all((tail.checker.highest_id(n) or 0) >= m for n, m in marks.items())
        wait_until(past_marks, seconds(30), interval=0.3, message=lambda: "streams stalled after restart: %s\n%s" % (
            [n for n, m in marks.items() if (tail.checker.highest_id(n) or 0) < m][:10], fleet.describe()))
        fleet.stop_all()
    finally:
        fleet.sampler.stop()
        tail.stop()

    state_records = read_state(kafka, state_topic, timeout=seconds(30))
    checkpoints = newest_checkpoints(state_records)
    missing = [n for n in fleet.names if n not in checkpoints or not (checkpoints[n].last_event_id or "").isdigit()]
    assert not missing, "streams without a checkpoint in the state topic: %s" % missing[:20]
    expected = {n: Expected(last=int(checkpoints[n].last_event_id)) for n in fleet.names}
    checker, _ = read_all_checker(kafka, [topic], timeout=seconds(60))
    report = checker.report(expected)
    scenario_summary("fleet_cluster/kill9: streams=%d events=%d delivered=%d duplicates=%d gaps=%d "
                     "unexpected=%d resume_slowest=%.1fs (bound %.1fs) victim_streams=%d samples=%d doubles=%d" % (
                         STREAMS, report.sent, report.delivered, report.duplicates, report.gaps, report.unexpected,
                         slowest, RESUME_BOUND, len(victim_paths), fleet.sampler.samples, len(fleet.sampler.doubles)))
    assert not fleet.sampler.doubles, "a stream was held by two open connections at once:\n" + fleet.sampler.text()
    assert report.complete(), "the reader missed records: %s" % report.text()
    assert report.gaps == 0, "DATA LOSS in cluster mode (kill -9 of %s)\n%s\n%s" % (
        victim, report.text(), fleet.describe(60))
    assert report.unexpected == 0, \
        "records after the newest checkpoint of their stream although every instance stopped " \
        "gracefully\n%s" % report.text()
    assert checkpoint_regressions(state_records) == [], \
        "checkpoints went backwards in the state topic: %s" % checkpoint_regressions(state_records)[:10]


def test_stalled_instance_writes_nothing_after_takeover(make_broker, upstream, tmp_path, processes, start_bridge,
                                                         scenario_summary):
    topic, state_topic = "rel.fleet.stall", "_fleet_state_stall"
    delivery = "at-least-once"
    broker = make_broker(topics=["%s:%d" % (topic, PARTITIONS)])
    broker.create_topic(state_topic, PARTITIONS)
    kafka = Kafka(broker.bootstrap)
    fleet = Fleet(upstream, tmp_path, start_bridge, broker.bootstrap, topic, state_topic, delivery=delivery)
    try:
        for instance in INSTANCES:
            fleet.start(instance)
        fleet.wait_stable(INSTANCES, seconds(90), "three instances starting")

        victim = "b"
        stale = {}                                        # connection id -> path
        for path, conns in fleet.feeds.open_by_path().items():
            stale.update({c: path for c, i in conns if i == victim})
        assert stale, "instance %s holds no stream" % victim

        # First a stall shorter than the session timeout: the membership survives, so the check
        # confirms it and the instance goes on with the same connections (nothing moves).
        victim_bridge = fleet.bridges[victim]
        revoked_before = sum(len(log_records(b, "partitions revoked")) for b in fleet.bridges.values())
        victim_bridge.signal(signal.SIGSTOP)
        observe_for(SESSION_TIMEOUT / 2, victim_bridge)
        victim_bridge.signal(signal.SIGCONT)
        victim_bridge.wait_for_log(r"membership confirmed", timeout=seconds(20))
        assert not log_records(victim_bridge, "membership lost: dropping streams"), victim_bridge.describe(60)
        assert sum(len(log_records(b, "partitions revoked")) for b in fleet.bridges.values()) == revoked_before, \
            "a stall shorter than the session timeout moved partitions\n" + fleet.describe()
        open_now = {c for conns in fleet.feeds.open_by_path().values() for c, _ in conns}
        assert set(stale) <= open_now, \
            "the short stall closed the instance's connections\n" + victim_bridge.describe(60)
        short_checks = len(log_records(victim_bridge, "suspended: checking group membership before writing"))

        # Then one past it: the others take its streams over.
        fleet.sampler.exclude(victim)                     # its sockets stay open while it is stopped
        stopped_at = time.monotonic()
        fleet.bridges[victim].signal(signal.SIGSTOP)
        survivors = [i for i in INSTANCES if i != victim]
        takeover = {}

        def taken_over():
            for instance in survivors:
                fleet.bridges[instance].assert_running()
            takeover.clear()
            takeover.update({p: stopped_at + d for p, d in
                             resume_times(fleet, set(stale.values()), stopped_at, {victim}).items()})
            return len(takeover) == len(set(stale.values()))
        wait_until(taken_over, RESUME_BOUND + seconds(30), interval=0.2, message=lambda: (
            "the stopped instance's streams were not taken over: %d of %d\n%s" % (
                len(takeover), len(set(stale.values())), fleet.describe())))

        # The stale connections stay open and receive events written after the takeover: those
        # sit in the stopped process's socket buffers, the bait it must not write.
        def baited():
            open_now = {c for conns in fleet.feeds.open_by_path().values() for c, _ in conns}
            assert set(stale) <= open_now, "stale connections closed while the instance was stopped"
            return all((fleet.feeds.last_on_connection(c) or (0, 0))[1] > takeover[p] for c, p in stale.items())
        wait_until(baited, seconds(10), interval=0.1, message="the upstream wrote nothing after the takeover")
        continued_at = time.monotonic()
        fleet.bridges[victim].signal(signal.SIGCONT)

        wait_until(lambda: len(log_records(victim_bridge, "suspended: checking group membership before writing"))
                   > short_checks, seconds(20), interval=0.1,
                   message=lambda: "no membership check after the long stall\n" + victim_bridge.describe(60))

        def stale_closed():
            open_now = {c for conns in fleet.feeds.open_by_path().values() for c, _ in conns}
            return not (set(stale) & open_now)
        wait_until(stale_closed, seconds(20), interval=0.1, message=lambda: "the resumed instance kept its stale "
                   "connections open\n" + fleet.bridges[victim].describe(60))
        fleet.sampler.include(victim)
        fleet.wait_stable(INSTANCES, seconds(90), "after SIGCONT of %s" % victim)
        fleet.stop_all()
    finally:
        fleet.sampler.stop()

    victim_log = fleet.bridges[victim]
    suspended = log_records(victim_log, "suspended: checking group membership before writing")
    lost = log_records(victim_log, "membership lost: dropping streams")
    fenced = log_records(victim_log, "partition fenced")
    state = newest_checkpoints(read_state(kafka, state_topic, timeout=seconds(30)))
    missing = [n for n in fleet.names if n not in state or not (state[n].last_event_id or "").isdigit()]
    assert not missing, "streams without a checkpoint in the state topic: %s" % missing[:20]
    expected = {n: Expected(last=int(state[n].last_event_id)) for n in fleet.names}
    checker, records = read_all_checker(kafka, [topic], timeout=seconds(60))

    def late(records):
        """Records carried by a stale connection whose event was written after the takeover."""
        out = []
        for record in records:
            tag = parse_tag(record.value)
            if tag is None or tag[1] not in stale:
                continue
            sent = fleet.feeds.sent_at(tag[1], tag[2])
            if sent is not None and sent > takeover[stale[tag[1]]]:
                out.append((record.partition, record.offset, record.value, round(sent - takeover[stale[tag[1]]], 3)))
        return out
    late_records = late(records)
    report = checker.report(expected)
    scenario_summary(
        "fleet_cluster/sigstop (%s): streams=%d events=%d delivered=%d "
        "duplicates=%d gaps=%d stale_connections=%d stopped_for=%.1fs late=%d "
        "suspended=%d membership_lost=%d fenced=%d stalled_ms=%s" % (
            delivery, STREAMS, report.sent, report.delivered,
            report.duplicates, report.gaps, len(stale), continued_at - stopped_at, len(late_records),
            len(suspended), len(lost), len(fenced), [r.fields.get("stalled_ms") for r in suspended]))
    assert suspended, "the resumed instance did not check its membership\n" + victim_log.describe(80)
    assert not late_records, \
        "the stalled instance wrote events it read on stale connections after the takeover " \
        "(partition, offset, value, seconds after takeover): %s\n%s" % (late_records[:10], victim_log.describe(80))
    assert not fleet.sampler.doubles, "a stream was held by two live connections at once:\n" + fleet.sampler.text()
    assert report.gaps == 0, "DATA LOSS in cluster mode (SIGSTOP of %s)\n%s\n%s" % (
        victim, report.text(), fleet.describe(60))
