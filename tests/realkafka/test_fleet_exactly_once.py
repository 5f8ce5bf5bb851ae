"""Fleet, `delivery: exactly-once`, against the real transaction coordinator of a 3-node Apache
Kafka cluster (each version of SSE2KAFKA_KAFKA_VERSIONS), where the broker itself fences
producers, writes transaction markers and hides aborted records from read_committed consumers
(librdkafka's mock cluster does none of that; tests/reliability/test_fleet_exactly_once.py keeps
only what the mock can show: injected errors, aborts and rewinds).

- kill -9 five times while transactions are open (a random moment past each run's first
  commits, seeded), restart each time: the new producer of every state partition
  (transactional.id sse2kafka-<partition>) aborts the killed one's open transaction. A
  read_committed follower and a fresh read_committed read after a graceful stop hold every ID
  of every stream exactly once (gaps 0, duplicates 0, stream order), the committed checkpoints
  name the last ID; a read_uncommitted read shows the aborted records (what a consumer with the
  default isolation level would have seen twice).
- A replacement takes over from a SIGSTOPped instance (same config, no cluster: a duplicated
  deployment, a frozen VM): the replacement's initialisation fences the stopped one. The
  upstream keeps writing into the stopped instance's connections after the takeover (the bait);
  after SIGCONT the old instance logs "partition fenced" and exits 1, and no record it read
  after the takeover is visible read_committed; every ID up to the final checkpoints is there
  exactly once.
"""
# ctest-timeout: 600
# ctest-secured: sasl_ssl 4 -k kill9

import re
import signal
import time

from fleet_real import (Reads, late_records, open_connection_ids, resume_times, stale_connections, summary)
from fleet_support import (TaggedFeeds, fleet_config, free_port, log_records, metric_value, newest_checkpoints,
                           read_state, scrape_metrics)
from gap_check import Expected
from harness import wait_until, write_config
from reliability_support import RecordTail, observe_for, scenario_random
from sse_upstream import NumberedRoute

STREAMS = 4
STATE_PARTITIONS = 4
TXN = {"interval": "100ms", "max_events": 10000}


def committed_checkpoints(kafka, state_topic):
    return newest_checkpoints(read_state(kafka, state_topic, isolation="read_committed", timeout=30))


def assert_exactly_once(report, what, logs):
    assert report.gaps == 0, "DATA LOSS in the %s\n%s\n%s" % (what, report.text(), logs)
    assert report.duplicates == 0, "DUPLICATES in the %s under exactly-once\n%s\n%s" % (what, report.text(), logs)
    assert report.order_violations == 0, "%s out of stream order\n%s" % (what, report.text())
    assert report.unexpected == 0, "%s holds IDs never sent\n%s" % (what, report.text())


# ----------------------------------------------------------------------------- kill -9

EVENTS = 2500          # per stream
RATE = 250             # events per second per stream: ~10 s of streaming without faults
KILLS = 5


def test_kill9_during_transactions_five_times_loses_and_repeats_nothing(
        healthy_cluster, upstream, processes, tmp_path, start_bridge):
    cluster = healthy_cluster
    seed, rng = scenario_random("real-eos-kill9")
    topic, state_topic = "eos.kill9", "_eos_state_kill9"
    names = ["eos-kill-%d" % i for i in range(STREAMS)]
    cluster.create_topic(topic, partitions=STREAMS)
    kafka = cluster.reader()
    for name in names:
        upstream.route("/" + name, NumberedRoute(end=EVENTS, rate_per_s=RATE, at_end="hang"))
    admin_port = free_port()
    # The state topic is not created here: the bridge creates it (compacted, RF 3).
    config = fleet_config(cluster.bootstrap, [{"name": n, "url": upstream.url("/" + n), "topic": topic}
                                              for n in names],
                          partitions=STATE_PARTITIONS, topic=state_topic, delivery="exactly-once",
                          transaction=TXN, admin_port=admin_port, stats_interval="5s")
    expected = {n: Expected(last=EVENTS) for n in names}
    tail = RecordTail(processes, cluster.bootstrap, [topic], tmp_path, name="committed_tail",
                      isolation="read_committed")
    bridges, delays, resumed_from = [], [], []

    def wait_committed(want, bridge, timeout=90):
        def progressed():
            bridge.assert_running()
            tail.check_alive()
            return tail.checker.records >= want
        wait_until(progressed, timeout, interval=0.05, message=lambda: "no committed progress to %d records "
                   "(have %d)\n%s" % (want, tail.checker.records, bridge.describe(80)))

    began = time.monotonic()
    try:
        for index in range(KILLS):
            before = {n: len(upstream.requests("/" + n)) for n in names}
            bridge = start_bridge(config)
            bridges.append(bridge)
            requests = {n: upstream.wait_for_requests(before[n] + 1, timeout=60, path="/" + n)[before[n]]
                        for n in names}
            resumed_from.append({n: requests[n].last_event_id for n in names})
            # Past this run's first commits, then a random moment: with a commit per partition
            # every 100 ms and events arriving all along, a transaction is open about always.
            wait_committed(int((index + 1) / (KILLS + 3) * EVENTS * STREAMS), bridge)
            delay = rng.uniform(0.05, 0.8)
            delays.append(round(delay, 3))
            observe_for(delay, bridge)
            bridge.kill9()
        before = {n: len(upstream.requests("/" + n)) for n in names}
        final = start_bridge(config)
        bridges.append(final)
        requests = {n: upstream.wait_for_requests(before[n] + 1, timeout=60, path="/" + n)[before[n]]
                    for n in names}
        resumed_from.append({n: requests[n].last_event_id for n in names})

        def done():
            final.assert_running()
            tail.check_alive()
            return tail.checker.has_all(expected)
        wait_until(done, 120, interval=0.25, message=lambda: "not every event was committed\n%s\n%s" % (
            tail.checker.report(expected).text(), final.describe(120)))
        metrics = wait_until(lambda: scrape_metrics(admin_port), 10, interval=0.2,
                             message="no /metrics on 127.0.0.1:%d" % admin_port)
        assert final.stop() == 0, final.describe()
        reads = Reads(kafka, [topic], expected)
    finally:
        tail.stop()
    elapsed = time.monotonic() - began
    followed = tail.checker.report(expected)
    logs = final.describe(60)
    assert_exactly_once(reads.committed, "fresh read_committed read", logs)
    assert_exactly_once(followed, "read_committed follower", logs)
    checkpoints = committed_checkpoints(kafka, state_topic)
    assert {n: checkpoints[n].last_event_id if n in checkpoints else None for n in names} == \
        {n: str(EVENTS) for n in names}, {n: c.last_event_id for n, c in checkpoints.items()}
    aborts_logged = sum(len(log_records(b, "transaction aborted")) for b in bridges)
    rewinds = sum(len(re.findall(r"rewinding to the checkpoint", b.logs())) for b in bridges)
    summary("fleet_exactly_once/kill9 (Kafka %s): events sent=%d committed=%d committed_duplicates=%d gaps=%d "
            "order_violations=%d kills=%d delays=%s read_uncommitted: records=%d duplicates=%d aborted_records=%d "
            "offsets=%d committed_txns_last_run=%s aborts_logged=%d rewinds_logged=%d resumed_from=%s "
            "seed=%d %.0fs" % (
                cluster.kafka_version, reads.committed.sent, reads.committed.delivered,
                reads.committed.duplicates, reads.committed.gaps, reads.committed.order_violations, KILLS, delays,
                len(reads.raw_records), reads.raw.duplicates, reads.aborted_records, reads.offsets,
                metric_value(metrics, "sse2kafka_transactions_total", outcome="committed"), aborts_logged, rewinds,
                [sorted(r.values(), key=lambda v: int(v or 0)) for r in resumed_from], seed, elapsed))
    # The kills really left open transactions behind: their records are in the log, aborted.
    assert reads.aborted_records > 0 and reads.raw.duplicates > 0, \
        "no aborted records: the kills did not hit open transactions, the test proved nothing\n%s" % \
        reads.raw.text()
    assert reads.raw.gaps == 0, reads.raw.text()
    # Every restart resumed at a committed ID (none past the end, none repeated by the reader).
    for run in resumed_from[1:]:
        assert all(v is not None and v.isdigit() for v in run.values()), resumed_from


# ----------------------------------------------------------------------------- SIGSTOP, then fenced

FENCE_RATE = 20.0      # events per second per stream


def test_stopped_instance_is_fenced_by_its_replacement_and_writes_nothing_visible(
        healthy_cluster, upstream, tmp_path, start_bridge):
    cluster = healthy_cluster
    topic, state_topic = "eos.fence", "_eos_state_fence"
    names = ["eos-fence-%d" % i for i in range(STREAMS)]
    paths = ["/" + n for n in names]
    cluster.create_topic(topic, partitions=STREAMS)
    kafka = cluster.reader()
    feeds = TaggedFeeds(upstream, paths, FENCE_RATE)
    config = fleet_config(cluster.bootstrap, [{"name": n, "url": upstream.url("/" + n), "topic": topic}
                                              for n in names],
                          partitions=STATE_PARTITIONS, topic=state_topic, delivery="exactly-once", transaction=TXN,
                          defaults={"headers": {"X-Instance": "${INSTANCE}"}})
    config["admin"] = {"listen": "127.0.0.1:${ADMIN_PORT}"}
    path = write_config(tmp_path, config, name="fence.yaml")
    ports = {"old": free_port(), "new": free_port()}

    def start(instance):
        return start_bridge(path, env={"INSTANCE": instance, "ADMIN_PORT": str(ports[instance])})

    def highest_committed():
        """{stream: highest sse.id} visible read_committed now."""
        highest = {}
        for record in kafka.records(topic, eof=True, timeout=20, isolation="read_committed"):
            sid = record.header("sse.stream")
            highest[sid] = max(highest.get(sid, 0), int(record.header("sse.id")))
        return highest

    old = start("old")
    wait_until(lambda: old.assert_running() or min(highest_committed().get(n, 0) for n in names) >= 20, 90,
               interval=0.5, message=lambda: "the first instance committed too little\n" + old.describe(60))
    stale = stale_connections(feeds, "old")
    assert sorted(stale.values()) == sorted(paths), (stale, feeds.open_by_path())

    stopped_at = time.monotonic()
    old.signal(signal.SIGSTOP)
    try:
        new = start("new")
        takeover = {}

        def taken_over():
            new.assert_running()
            takeover.update({p: stopped_at + d for p, d in resume_times(feeds, paths, stopped_at, {"old"}).items()})
            return len(takeover) == len(paths)
        wait_until(taken_over, 60, interval=0.1, message=lambda: "the replacement did not open every stream: %s\n%s" % (
            sorted(takeover), new.describe(60)))
        # A stream of the replacement connects only after its partition's transactional.id was
        # initialised (which bumped the epoch and aborted the old instance's open transaction).
        new.wait_for_log(r"stream acquired", timeout=10)

        # Events written into the stopped instance's connections after the takeover: what it
        # reads when it wakes up and must not make visible.
        def baited():
            assert set(stale) <= open_connection_ids(feeds), "stale connections closed while stopped"
            return all((feeds.last_on_connection(c) or (0, 0))[1] > takeover[p] + 1.0 for c, p in stale.items())
        wait_until(baited, 20, interval=0.1, message="the upstream wrote nothing after the takeover")
        bait = {p: (feeds.last_on_connection(c) or (0, 0))[0] for c, p in stale.items()}
    finally:
        old.signal(signal.SIGCONT)
    continued_at = time.monotonic()
    status = None
    try:
        status = old.wait_for_exit(30)
    except AssertionError:
        pass
    exited_after = time.monotonic() - continued_at
    fenced = log_records(old, "partition fenced")
    stale_open = set(stale) & open_connection_ids(feeds)

    # The replacement goes on past everything the old instance was baited with, then stops.
    def past_bait():
        new.assert_running()
        highest = highest_committed()
        return all(highest.get(n, 0) > bait["/" + n] + 5 for n in names)
    wait_until(past_bait, 60, interval=0.5, message=lambda: "the replacement did not go past the bait %s\n%s" % (
        bait, new.describe(60)))
    metrics = scrape_metrics(ports["new"])
    assert new.stop() == 0, new.describe()

    checkpoints = committed_checkpoints(kafka, state_topic)
    missing = [n for n in names if n not in checkpoints or not (checkpoints[n].last_event_id or "").isdigit()]
    assert not missing, "streams without a committed checkpoint: %s" % missing
    expected = {n: Expected(last=int(checkpoints[n].last_event_id)) for n in names}
    reads = Reads(kafka, [topic], expected)
    late_committed = late_records(reads.committed_records, feeds, stale, takeover)
    late_raw = late_records(reads.raw_records, feeds, stale, takeover)
    summary("fleet_exactly_once/sigstop-fenced (Kafka %s): events=%d committed=%d duplicates=%d gaps=%d "
            "stale_connections=%d stopped_for=%.1fs takeover_after=%.1fs old_exit=%s exit_after_sigcont=%.1fs "
            "fenced_lines=%d late_committed=%d late_read_uncommitted=%d aborted_records=%d "
            "committed_txns_new=%s" % (
                cluster.kafka_version, reads.committed.sent, reads.committed.delivered, reads.committed.duplicates,
                reads.committed.gaps, len(stale), continued_at - stopped_at,
                max(takeover.values()) - stopped_at, status, exited_after, len(fenced), len(late_committed),
                len(late_raw), reads.aborted_records,
                metric_value(metrics, "sse2kafka_transactions_total", outcome="committed")))
    assert not late_committed, \
        "the fenced instance made events visible that it read after the takeover " \
        "(partition, offset, value, seconds after takeover): %s\n%s" % (late_committed[:10], old.describe(80))
    assert fenced, "the stopped instance did not log \"partition fenced\" after SIGCONT\n" + old.describe(80)
    assert status == 1, "the fenced instance did not exit 1 within 30 s of SIGCONT (status %s)\n%s" % (
        status, old.describe(80))
    assert not stale_open, "the fenced instance's stale connections stayed open"
    assert_exactly_once(reads.committed, "read_committed read after the takeover", new.describe(60))
