"""Fleet, `state.backend: kafka`: the state topic on a real 3-node Apache Kafka cluster, on one
version (SSE2KAFKA_KAFKA_VERSIONS; "4" when selected: what is measured here is the broker's
topic admin and log cleaner, which 3.9 and 4.x share). tests/e2e/test_fleet_state.py proves the
checkpoint records against the mock broker, which has no CreateTopics, no DescribeConfigs and
never compacts.

- A missing state topic is created by the bridge with the configured partitions, RF 3 (the
  broker's default through replication_factor: -1) and cleanup.policy=compact, as the broker
  describes it (DescribeConfigs via ConfigCommand) and lists it (metadata: replicas, ISR).
- An existing state topic with cleanup.policy=delete: the daemon names the problem at start
  (topic and policy) and refuses to start (exit 1, a clear message naming the fix, no stream
  opened, no checkpoint written).
- Compaction: a state topic created up front so that the log cleaner runs within seconds
  (segment.ms 100, min.cleanable.dirty.ratio 0.01, min.compaction.lag.ms 0,
  delete.retention.ms 100), exactly-once, checkpoints every 100 ms: committed checkpoint
  records that a read_committed reader saw earlier are gone later (the broker compacted them
  away; its log shows the cleaner at work); kill -9 then resumes every stream at its newest
  committed checkpoint, a SIGTERM stop and restart at exactly the last delivered ID, and the
  read_committed side holds every ID exactly once.
"""
# ctest-timeout: 420

import re
import time

import pytest

from fleet_real import Reads, summary
from fleet_support import fleet_config, log_records, newest_checkpoints, read_state
from gap_check import Expected
from harness import wait_until
from kafka_cluster import running_cluster, single_version
from sse_upstream import NumberedRoute


@pytest.fixture(scope="module")
def cluster():
    """One cluster for this file, of one version (overrides the conftest's parametrised one)."""
    yield from running_cluster(single_version())


def numbered_streams(upstream, names, topic, rate, end=None):
    for name in names:
        upstream.route("/" + name, NumberedRoute(end=end, rate_per_s=rate, at_end="hang"))
    return [{"name": n, "url": upstream.url("/" + n), "topic": topic} for n in names]


# ----------------------------------------------------------------------------- creation

def test_missing_state_topic_is_created_compacted_with_rf3(healthy_cluster, upstream, start_bridge):
    cluster = healthy_cluster
    topic, state_topic, partitions = "st.created", "_st_created", 6
    cluster.create_topic(topic, partitions=1)
    # Listed among all topics (naming it in a metadata request would auto-create it).
    assert state_topic not in [t["topic"] for t in cluster.metadata()["topics"]]
    names = ["created-a", "created-b"]
    config = fleet_config(cluster.bootstrap, numbered_streams(upstream, names, topic, 50, end=30),
                          partitions=partitions, topic=state_topic)
    assert config["state"]["replication_factor"] == -1
    bridge = start_bridge(config)
    bridge.wait_for_log(r"state topic ready", timeout=60)
    created = log_records(bridge, "created state topic %s" % state_topic)
    ready = log_records(bridge, "state topic ready")[0].fields
    assert ready.get("partitions") == str(partitions), ready
    warnings = [line for line in bridge.logs().splitlines() if re.match(r"^\S+\s+warn", line)]

    configs = cluster.describe_topic_configs(state_topic)
    layout = cluster.partitions(state_topic)
    replicas = sorted({len(p["replicas"]) for p in layout})
    isr = sorted({len(p["isrs"]) for p in layout})

    def checkpointed():
        bridge.assert_running()
        newest = newest_checkpoints(read_state(cluster.reader(), state_topic, timeout=10))
        return all(n in newest and newest[n].last_event_id == "30" for n in names)
    wait_until(checkpointed, 60, interval=0.5, message=lambda: bridge.describe(60))
    assert bridge.stop() == 0, bridge.describe()
    summary("fleet_state_topic/created (Kafka %s): partitions=%d replicas=%s isr=%s cleanup.policy=%s "
            "min.insync.replicas=%s created_logged=%d warnings=%d" % (
                cluster.kafka_version, len(layout), replicas, isr, configs.get("cleanup.policy"),
                configs.get("min.insync.replicas"), len(created), len(warnings)))
    assert created, "no \"created state topic\" line\n" + bridge.describe(40)
    assert configs.get("cleanup.policy") == "compact", configs
    assert len(layout) == partitions, layout
    assert replicas == [3] and isr == [3], layout
    assert configs.get("min.insync.replicas") == "2", configs
    assert not warnings, "warnings while creating the state topic:\n%s" % "\n".join(warnings)


# ----------------------------------------------------------------------------- a topic that is not compacted

def start_on_delete_policy_topic(cluster, upstream, start_bridge, state_topic, topic):
    """Creates the state topic with cleanup.policy=delete and starts a bridge on it; returns
    (bridge, exit status or None when still running after 30 s)."""
    cluster.create_topics({topic: {"partitions": 1},
                           state_topic: {"partitions": 3, "configs": {"cleanup.policy": "delete"}}})
    assert cluster.describe_topic_configs(state_topic)["cleanup.policy"] == "delete"
    names = ["delete-policy-a"]
    bridge = start_bridge(fleet_config(cluster.bootstrap, numbered_streams(upstream, names, topic, 50, end=20),
                                       partitions=3, topic=state_topic))
    status = None

    def settled():
        # Either it exits, or it runs and has opened its stream.
        nonlocal status
        if not bridge.running():
            status = bridge.process.returncode
            return True
        return bool(upstream.requests("/delete-policy-a")) and bool(log_records(bridge, "state topic ready"))
    wait_until(settled, 60, interval=0.2, message=lambda: bridge.describe(40))
    if status is None:
        # A running bridge: does it stay up? (a 5 s observation window)
        end = time.monotonic() + 5
        wait_until(lambda: not bridge.running() or time.monotonic() >= end, 10, interval=0.2)
        status = None if bridge.running() else bridge.process.returncode
    return bridge, status


def policy_lines(bridge, state_topic):
    return [line for line in bridge.logs().splitlines()
            if state_topic in line and "cleanup.policy=delete" in line]


def test_state_topic_with_delete_policy_is_named_at_start(healthy_cluster, upstream, start_bridge):
    """Whatever the daemon does with it, it must say at start that the state topic is not
    compacted, naming the topic and its policy."""
    state_topic = "_st_delete_named"
    bridge, status = start_on_delete_policy_topic(healthy_cluster, upstream, start_bridge, state_topic,
                                                  "st.delete.named")
    lines = policy_lines(bridge, state_topic)
    summary("fleet_state_topic/delete-policy (Kafka %s): exit=%s stream_connections=%d lines=%s" % (
        healthy_cluster.kafka_version, status, len(upstream.requests("/delete-policy-a")), lines))
    if status is None:
        assert bridge.stop() == 0, bridge.describe()
    assert lines, "nothing said that %s has cleanup.policy=delete\n%s" % (state_topic, bridge.describe(40))


def test_state_topic_with_delete_policy_refuses_to_start(healthy_cluster, upstream, start_bridge):
    """The behaviour the issue asks for: "a clear startup error". A start-up problem exits 1
    with a clear message (interface.md); no stream is opened, no checkpoint written."""
    state_topic = "_st_delete_refused"
    bridge, status = start_on_delete_policy_topic(healthy_cluster, upstream, start_bridge, state_topic,
                                                  "st.delete.refused")
    lines = policy_lines(bridge, state_topic)
    errors = [line for line in lines if re.match(r"^\S+\s+(error|critical)", line)]
    if status is None:
        bridge.stop()
    assert status == 1, "the bridge runs on a state topic with cleanup.policy=delete (exit %s): %s" % (
        status, lines)
    assert errors and "compact" in errors[0], "no clear error naming the fix: %s" % lines
    assert not upstream.requests("/delete-policy-a"), "a stream was opened"
    assert read_state(healthy_cluster.reader(), state_topic, timeout=10) == [], "checkpoints were written"


# ----------------------------------------------------------------------------- compaction

COMPACT_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.ms": "100",                   # every checkpoint batch after 100 ms starts a new segment
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",          # tombstones and transaction markers go soon, too
}
STATE_PARTITIONS = 2
RATE = 40.0


def committed_offsets(kafka, state_topic):
    """{(partition, offset): (key, last_event_id)} of the committed checkpoint records now."""
    out = {}
    for record in read_state(kafka, state_topic, isolation="read_committed", timeout=30):
        out[(record.partition, record.offset)] = (record.key, record.value)
    return out


def cleaner_lines(cluster, state_topic):
    """Lines of the brokers' logs in which the log cleaner names the state topic."""
    out = []
    for broker in cluster.broker_ids:
        path = cluster.log_path(broker)
        if path.exists():
            out += [line for line in path.read_text(errors="replace").splitlines()
                    if state_topic in line and re.search(r"Cleaner \d+:|kafka.log.LogCleaner", line)]
    return out


def test_compacted_state_topic_resumes_every_stream_at_its_checkpoint(healthy_cluster, upstream, start_bridge):
    cluster = healthy_cluster
    kafka = cluster.reader()
    topic, state_topic = "st.compact", "_st_compact"
    names = ["compact-%d" % i for i in range(3)]
    cluster.create_topics({topic: {"partitions": 3},
                           state_topic: {"partitions": STATE_PARTITIONS, "configs": COMPACT_CONFIGS}})
    config = fleet_config(cluster.bootstrap, numbered_streams(upstream, names, topic, RATE),
                          partitions=STATE_PARTITIONS, topic=state_topic, delivery="exactly-once",
                          transaction={"interval": "100ms", "max_events": 10000})
    began = time.monotonic()

    # 1. Run until committed checkpoints seen once are gone: the cleaner compacted them away.
    first = start_bridge(config)
    first.wait_for_log(r"state topic ready", timeout=60)
    seen = {}
    removed = {}

    def compacted():
        first.assert_running()
        now = committed_offsets(kafka, state_topic)
        high = max((o for (_, o) in seen), default=-1)
        gone = {k: v for k, v in seen.items() if k not in now and k[1] <= high}
        seen.update(now)
        removed.update(gone)
        return len(removed) >= 50
    wait_until(compacted, 120, interval=1.0, message=lambda: "no compaction: %d committed checkpoint records seen, "
               "%d removed\ncleaner: %s\n%s" % (len(seen), len(removed), cleaner_lines(cluster, state_topic)[-5:],
                                                first.describe(40)))
    compacted_after = time.monotonic() - began
    written = len(seen)
    in_topic = len(committed_offsets(kafka, state_topic))
    marks = kafka.watermarks(state_topic)

    # 2. kill -9: every stream resumes at its newest committed checkpoint in the compacted topic.
    first.kill9()

    previous = [None]

    def stable_checkpoints():
        # Two reads in a row agree: a commit that was in flight at the kill has completed.
        now = {n: c.last_event_id for n, c in newest_checkpoints(
            read_state(kafka, state_topic, isolation="read_committed", timeout=20)).items()}
        agreed = now == previous[0] and all(n in now for n in names)
        previous[0] = now
        return now if agreed else None
    after_kill = wait_until(stable_checkpoints, 30, interval=0.3)
    before = {n: len(upstream.requests("/" + n)) for n in names}
    second = start_bridge(config)
    resumed_kill = {n: upstream.wait_for_requests(before[n] + 1, timeout=60, path="/" + n)[before[n]].last_event_id
                    for n in names}
    wait_until(lambda: second.assert_running() or all(
        int(c.last_event_id) > int(after_kill[n]) + 40 for n, c in newest_checkpoints(
            read_state(kafka, state_topic, isolation="read_committed", timeout=20)).items() if n in names),
        60, interval=0.5, message=lambda: second.describe(40))

    # 3. SIGTERM: the restart asks for exactly the last delivered ID.
    assert second.stop() == 0, second.describe()
    after_stop = {n: c.last_event_id for n, c in newest_checkpoints(
        read_state(kafka, state_topic, isolation="read_committed", timeout=20)).items()}
    highest = {}
    for record in Reads(kafka, [topic], {}).committed_records:
        stream = record.header("sse.stream")
        highest[stream] = max(highest.get(stream, 0), int(record.header("sse.id")))
    before = {n: len(upstream.requests("/" + n)) for n in names}
    third = start_bridge(config)
    resumed_stop = {n: upstream.wait_for_requests(before[n] + 1, timeout=60, path="/" + n)[before[n]].last_event_id
                    for n in names}
    wait_until(lambda: third.assert_running() or all(
        int(c.last_event_id) > int(after_stop[n]) + 40 for n, c in newest_checkpoints(
            read_state(kafka, state_topic, isolation="read_committed", timeout=20)).items() if n in names),
        60, interval=0.5, message=lambda: third.describe(40))
    assert third.stop() == 0, third.describe()

    final = {n: c.last_event_id for n, c in newest_checkpoints(
        read_state(kafka, state_topic, isolation="read_committed", timeout=20)).items()}
    reads = Reads(kafka, [topic], {n: Expected(last=int(final[n])) for n in names})
    cleaner = cleaner_lines(cluster, state_topic)
    summary("fleet_state_topic/compaction (Kafka %s): compacted_after=%.0fs committed_checkpoints_seen=%d "
            "removed_by_compaction=%d in_topic_then=%d watermarks=%s cleaner_log_lines=%d "
            "after_kill=%s resumed_after_kill=%s after_stop=%s resumed_after_stop=%s events=%d committed=%d "
            "duplicates=%d gaps=%d aborted_records=%d" % (
                cluster.kafka_version, compacted_after, written, len(removed), in_topic, marks, len(cleaner),
                after_kill, resumed_kill, after_stop, resumed_stop, reads.committed.sent, reads.committed.delivered,
                reads.committed.duplicates, reads.committed.gaps, reads.aborted_records))
    assert in_topic < written, (in_topic, written)
    assert resumed_kill == {n: after_kill[n] for n in names}, \
        "after kill -9 the restart did not resume at the committed checkpoints %s: %s" % (after_kill, resumed_kill)
    assert resumed_stop == {n: after_stop[n] for n in names} == {n: str(highest[n]) for n in names}, \
        "after SIGTERM the restart did not resume at the last delivered IDs %s (checkpoints %s): %s" % (
            highest, after_stop, resumed_stop)
    report = reads.committed
    assert report.gaps == 0 and report.duplicates == 0 and report.order_violations == 0 and \
        report.unexpected == 0, report.text()
