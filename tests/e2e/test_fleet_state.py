"""Fleet (issue 8), part 1: checkpoints in a Kafka state topic (interface.md "Fleet: Kafka state,
exactly-once, cluster mode"), against the plain mock broker, at-least-once.

- `--check` accepts the fleet keys (state.backend/topic/partitions/replication_factor, delivery,
  transaction, cluster) and rejects exactly-once with the file backend (exit 2, FILE:LINE:COL and
  the key path);
- `backend: kafka` creates a missing state topic with the configured partition count (the 2.0.2
  mock broker has no CreateTopics: there the daemon must warn and use the auto-created topic's
  real partition count) and writes
  checkpoint records keyed by stream name, in partition murmur2(name) mod partitions, with the
  value {"last_event_id", "instance": "<host>/<pid>", "written_at": RFC 3339 UTC ms};
- a restart with a new, empty state dir, or with no state.dir at all, resumes from the topic:
  the upstream sees Last-Event-ID = the last delivered ID after a graceful stop (no gap, no
  duplicate), or the checkpoint in the topic after kill -9 (no gap, duplicates only after it);
  state.dir is not used;
- a state topic that exists already is used as it is (its own partition count).
Helpers live in tests/reliability/fleet_support.py (murmur2, config, state topic reading).
"""
# ctest-timeout: 240

import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from fleet_support import (CREATE_TOPICS_API, broker_api_keys, checkpoint_regressions,  # noqa: E402
                           fleet_config, log_records, newest_checkpoints, read_state, state_partition)
from gap_check import Expected, GapChecker  # noqa: E402
from harness import Kafka, parse_check_output, run_cli, wait_until, write_config  # noqa: E402
from reliability_support import seconds  # noqa: E402
from sse_upstream import NumberedRoute  # noqa: E402

WRITTEN_AT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

FLEET_CONFIG = """\
kafka:
  brokers: "127.0.0.1:9092"
state:
  backend: kafka
  topic: _sse2kafka_state
  partitions: 24
  replication_factor: -1
{extra}delivery: {delivery}
transaction: {{ interval: 100ms, max_events: 10000 }}
cluster: {{ group: ingest-e2e, session_timeout: 10s }}
streams:
  - name: one
    url: http://127.0.0.1:9/one
    topic: e2e.one
"""

# `delivery` is on line 5 (implicit file backend) or 6 (explicit), its value at column 11.
EXACTLY_ONCE_ON_FILES = """\
kafka:
  brokers: "127.0.0.1:9092"
state:
  dir: {state}
{backend}delivery: exactly-once
streams:
  - name: one
    url: http://127.0.0.1:9/one
    topic: e2e.one
"""


# ----------------------------------------------------------------------------- --check

@pytest.mark.parametrize("delivery,extra", [
    ("exactly-once", ""),
    ("at-least-once", "  dir: /tmp/sse2kafka-e2e-unused\n"),
])
def test_check_accepts_the_fleet_config(tmp_path, delivery, extra):
    text = FLEET_CONFIG.format(delivery=delivery, extra=extra)
    path = write_config(tmp_path, text)
    done = run_cli(["-c", str(path), "--check"])
    assert done.returncode == 0, "--check refused the fleet config:\n%s\n%s" % (text, done.stdout + done.stderr)
    assert parse_check_output(done.stdout + done.stderr) == []


@pytest.mark.parametrize("backend", ["", "  backend: file\n"])
def test_check_rejects_exactly_once_with_the_file_backend(tmp_path, backend):
    text = EXACTLY_ONCE_ON_FILES.format(state=tmp_path / "state", backend=backend)
    path = write_config(tmp_path, text)
    done = run_cli(["-c", str(path), "--check"])
    output = done.stdout + done.stderr
    assert done.returncode == 2, "exactly-once with the file backend was accepted:\n%s\n%s" % (text, output)
    problems = parse_check_output(output)
    line = 6 if backend else 5
    located = [p for p in problems if p.path.endswith("delivery") and p.line == line]
    assert located, "no problem located at delivery (line %d): %s\n%s" % (line, problems, output)
    assert located[0].col in (1, 11), located
    assert located[0].file in (str(path), path.name, str(path.resolve())), located
    assert "kafka" in located[0].message.lower(), \
        "the message should say that exactly-once needs the Kafka backend: %r" % located[0].message


# ----------------------------------------------------------------------------- the state topic

def state_topic_ready(bridge, timeout):
    """The fields of the bridge's "state topic ready" line (waits for it)."""
    bridge.wait_for_log(r"state topic ready", timeout=timeout)
    return log_records(bridge, "state topic ready")[0].fields


def wait_for_checkpoints(kafka, topic, wanted, bridge, timeout):
    """Waits until the newest checkpoint of each stream in `wanted` ({stream: id}) is that id;
    returns the state topic's records."""
    seen = {}

    def reached():
        bridge.assert_running()
        records = read_state(kafka, topic, timeout=5)
        newest = newest_checkpoints(records)
        seen.clear()
        seen.update({s: cp.last_event_id for s, cp in newest.items()})
        return records if all(seen.get(s) == w for s, w in wanted.items()) else None
    return wait_until(reached, timeout, interval=0.3, message=lambda: "checkpoints in %s are %s, want %s\n%s" % (
        topic, seen, wanted, bridge.describe(60)))


def assert_checkpoint_shape(records, names, partitions, pid):
    now = datetime.now(timezone.utc)
    for record in records:
        where = "%s/%d@%d %r=%r" % (record.topic, record.partition, record.offset, record.key, record.value)
        assert record.key in names, "a state record with an unknown key: " + where
        assert record.partition == state_partition(record.key, partitions), \
            "checkpoint of %s in partition %d, want murmur2 %% %d = %d: %s" % (
                record.key, record.partition, partitions, state_partition(record.key, partitions), where)
    for cp in newest_checkpoints(records).values():
        value = cp.value
        assert value is not None, "tombstone as the newest checkpoint of %s" % cp.stream
        assert {"last_event_id", "instance", "written_at"} <= set(value), "checkpoint shape: %r" % value
        assert isinstance(value["last_event_id"], str) and value["last_event_id"].isdigit(), value
        assert re.fullmatch(r".+/%d" % pid, value["instance"]), \
            "instance should be <host>/<pid> with pid %d: %r" % (pid, value)
        assert WRITTEN_AT.match(value["written_at"]), "written_at is not RFC 3339 UTC ms: %r" % value
        written = datetime.strptime(value["written_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        assert abs((now - written).total_seconds()) < 300, "written_at far from now (%s): %r" % (now, value)
    assert checkpoint_regressions(records) == [], "a checkpoint went backwards: %s" % checkpoint_regressions(records)


def test_missing_state_topic_is_created_with_the_configured_partitions(make_broker, upstream, start_bridge,
                                                                      tmp_path):
    """Against a broker with CreateTopics the topic gets the configured partition count. The
    2.0.2 mock broker has no CreateTopics: there the daemon lets the broker auto-create it (with
    the mock's 4 partitions), says so in a warning, and uses the count the topic really has."""
    topic, state_topic, partitions = "e2e.fleet.create", "_e2e_state_create", 6
    broker = make_broker(topics=[topic + ":1"])
    kafka = Kafka(broker.bootstrap)
    upstream.route("/create", NumberedRoute(end=5, at_end="hang"))
    config = fleet_config(broker.bootstrap, [{"name": "create", "url": upstream.url("/create"), "topic": topic}],
                          partitions=partitions, topic=state_topic)
    can_create = CREATE_TOPICS_API in broker_api_keys(broker.bootstrap)
    bridge = start_bridge(config)
    fields = state_topic_ready(bridge, seconds(20))
    marks = kafka.watermarks(state_topic)
    actual = len(marks)
    assert sorted(p for (t, p) in marks) == list(range(actual)), marks
    assert fields.get("partitions") == str(actual), \
        "\"state topic ready\" should give the topic's real partition count %d: %s" % (actual, fields)
    if can_create:
        assert actual == partitions, "the state topic should have %d partitions: %s" % (partitions, marks)
    else:
        warned = [line for line in bridge.logs().splitlines()
                  if state_topic in line and re.search(r"warn", line) and re.search(r"creat", line)]
        assert warned, "the broker cannot create topics: the daemon should warn that %s was not created " \
                       "as configured\n%s" % (state_topic, bridge.describe(40))
    records = wait_for_checkpoints(kafka, state_topic, {"create": "5"}, bridge, seconds(20))
    assert_checkpoint_shape(records, ["create"], actual, bridge.pid)
    assert bridge.stop() == 0, bridge.describe()


def test_checkpoint_records_have_the_documented_shape(make_broker, upstream, start_bridge, tmp_path):
    topic, state_topic, partitions, last = "e2e.fleet.shape", "_e2e_state_shape", 6, 20
    names = ["shape-a", "shape-b", "shape-c", "shape-d"]
    broker = make_broker(topics=[topic + ":1"])
    broker.create_topic(state_topic, partitions)     # the mock broker cannot create it on request
    kafka = Kafka(broker.bootstrap)
    for name in names:
        upstream.route("/" + name, NumberedRoute(end=last, at_end="hang"))
    unused = tmp_path / "state-directory-env"
    config = fleet_config(broker.bootstrap, [{"name": n, "url": upstream.url("/" + n), "topic": topic}
                                             for n in names], partitions=partitions, topic=state_topic)
    # No state.dir: the default would be $STATE_DIRECTORY, which must stay untouched.
    bridge = start_bridge(config, env={"STATE_DIRECTORY": str(unused)})
    fields = state_topic_ready(bridge, seconds(20))
    assert fields.get("topic") == state_topic and fields.get("partitions") == str(partitions), fields

    kafka.wait_for_records(topic, last * len(names), timeout=seconds(20), bridge=bridge)
    records = wait_for_checkpoints(kafka, state_topic, {n: str(last) for n in names}, bridge, seconds(20))
    assert_checkpoint_shape(records, names, partitions, bridge.pid)
    acquired = {r.stream: r.fields.get("partition") for r in log_records(bridge, "stream acquired")}
    assert acquired == {n: str(state_partition(n, partitions)) for n in names}, \
        "\"stream acquired\" should name each stream's murmur2 partition: %s" % acquired
    assert bridge.stop() == 0, bridge.describe()

    final = newest_checkpoints(read_state(kafka, state_topic))
    assert {n: final[n].last_event_id for n in names} == {n: str(last) for n in names}
    assert not unused.exists(), "backend kafka used the state directory %s" % unused


@pytest.mark.parametrize("mode", ["new_state_dir", "no_state_dir", "kill9_new_state_dir"])
def test_restart_resumes_from_the_state_topic(make_broker, upstream, start_bridge, tmp_path, mode):
    topic, state_topic, partitions = "e2e.fleet.resume", "_e2e_state_resume", 4
    names = ["resume-x", "resume-y"]
    broker = make_broker(topics=[topic + ":1"])
    broker.create_topic(state_topic, partitions)
    kafka = Kafka(broker.bootstrap)
    for name in names:
        upstream.route("/" + name, NumberedRoute(end=None, rate_per_s=200))
    streams = [{"name": n, "url": upstream.url("/" + n), "topic": topic} for n in names]
    with_dir = mode != "no_state_dir"
    first_dir, second_dir = tmp_path / "state-first", tmp_path / "state-second"
    unused = tmp_path / "state-directory-env"
    env = {"STATE_DIRECTORY": str(unused)}

    first = start_bridge(fleet_config(broker.bootstrap, streams, partitions=partitions, topic=state_topic,
                                      state_dir=first_dir if with_dir else None), env=env)
    state_topic_ready(first, seconds(20))

    def delivered_each(n):
        checker = GapChecker()
        for record in kafka.records(topic, eof=True, timeout=5):
            checker.add_record({"topic": record.topic, "partition": record.partition, "offset": record.offset,
                                "headers": [[k, v] for k, v in record.headers]})
        return checker if all((checker.highest_id(s) or 0) >= n for s in names) else None
    wait_until(lambda: first.assert_running() or delivered_each(150), seconds(30), interval=0.3,
               message=lambda: "the first bridge did not deliver 150 events per stream\n" + first.describe(60))

    if mode.startswith("kill9"):
        # Killed once the topic holds a checkpoint of every stream (written every flush_interval).
        def checkpointed():
            first.assert_running()
            newest = newest_checkpoints(read_state(kafka, state_topic, timeout=5))
            return all(s in newest and newest[s].last_event_id for s in names)
        wait_until(checkpointed, seconds(20), interval=0.2,
                   message=lambda: "no checkpoint in the state topic\n" + first.describe(60))
        first.kill9()
    else:
        assert first.stop() == 0, first.describe()
    checker = delivered_each(0)
    highest = {s: checker.highest_id(s) for s in names}
    checkpoints = {s: cp.last_event_id for s, cp in newest_checkpoints(read_state(kafka, state_topic)).items()}
    for s in names:
        assert checkpoints.get(s) and checkpoints[s].isdigit(), "no checkpoint of %s in the topic: %s\n%s" % (
            s, checkpoints, first.describe(60))
        if mode.startswith("kill9"):
            assert int(checkpoints[s]) <= highest[s], (checkpoints, highest)
            assert not checker.missing(s, Expected(last=int(checkpoints[s])), limit=1), \
                "the checkpoint %s of %s names events Kafka does not hold" % (checkpoints[s], s)
        else:
            assert int(checkpoints[s]) == highest[s], \
                "after a graceful stop the checkpoint should be the newest ID in Kafka: %s vs %s\n%s" % (
                    checkpoints, highest, first.describe(60))

    before = {s: len(upstream.requests("/" + s)) for s in names}
    if with_dir:
        second_dir.mkdir()
    second = start_bridge(fleet_config(broker.bootstrap, streams, partitions=partitions, topic=state_topic,
                                       state_dir=second_dir if with_dir else None), env=env)
    for s in names:
        requests = upstream.wait_for_requests(before[s] + 1, timeout=seconds(20), path="/" + s)
        sent = requests[before[s]].last_event_id
        assert sent == checkpoints[s], \
            "%s: the restart sent Last-Event-ID %r, the state topic holds %r (last in Kafka %s)\n%s" % (
                s, sent, checkpoints[s], highest[s], second.describe(60))
    wait_until(lambda: second.assert_running() or delivered_each(max(highest.values()) + 100), seconds(30),
               interval=0.3, message=lambda: "the second bridge did not go on\n" + second.describe(60))
    assert second.stop() == 0, second.describe()

    final = delivered_each(0)
    last = {s: final.highest_id(s) for s in names}
    report = final.report({s: Expected(last=last[s]) for s in names})
    assert report.gaps == 0, "DATA LOSS across the restart (%s)\n%s\n%s" % (mode, report.text(), second.describe(60))
    assert report.order_violations == 0, report.text()
    allowed = sum(highest[s] - int(checkpoints[s]) for s in names) if mode.startswith("kill9") else 0
    assert report.duplicates <= allowed, \
        "%d duplicates, at most %d allowed (events after the checkpoint, %s): %s" % (
            report.duplicates, allowed, mode, report.text())
    for directory in (first_dir, second_dir):
        assert not (directory / "checkpoints").exists(), "backend kafka wrote checkpoints to %s" % directory
    assert not unused.exists(), "backend kafka used the state directory %s" % unused


def test_existing_state_topic_is_used_as_it_is(make_broker, upstream, start_bridge):
    topic, state_topic, existing, configured, last = "e2e.fleet.pre", "_e2e_state_pre", 3, 8, 10
    names = ["pre-1", "pre-2", "pre-3", "pre-4", "pre-5"]
    broker = make_broker(topics=[topic + ":1"])
    broker.create_topic(state_topic, existing)
    kafka = Kafka(broker.bootstrap)
    for name in names:
        upstream.route("/" + name, NumberedRoute(end=last, at_end="hang"))
    config = fleet_config(broker.bootstrap, [{"name": n, "url": upstream.url("/" + n), "topic": topic}
                                             for n in names], partitions=configured, topic=state_topic)
    bridge = start_bridge(config)
    fields = state_topic_ready(bridge, seconds(20))
    assert fields.get("partitions") in (None, str(existing)), \
        "the existing topic has %d partitions: %s" % (existing, fields)
    records = wait_for_checkpoints(kafka, state_topic, {n: str(last) for n in names}, bridge, seconds(20))
    marks = kafka.watermarks(state_topic)
    assert sorted(p for (t, p) in marks) == list(range(existing)), \
        "the existing state topic should keep its %d partitions: %s" % (existing, marks)
    assert_checkpoint_shape(records, names, existing, bridge.pid)
    assert bridge.stop() == 0, bridge.describe()


def test_stop_waiting_for_the_state_topic_keeps_serving_metrics(make_broker, upstream, start_bridge):
    """A graceful stop drains the streams first and then waits for the state topic to confirm
    their final checkpoints. With the broker answering slowly, the once-a-second metrics snapshot
    runs inside that wait, after the streams are gone: it must not look them up."""
    topic, state_topic, rtt_ms = "e2e.fleet.slowstop", "_e2e_state_slowstop", 2500
    names = ["slowstop-a", "slowstop-b"]
    broker = make_broker(topics=[topic + ":1"])
    broker.create_topic(state_topic, 2)
    kafka = Kafka(broker.bootstrap)
    for name in names:
        upstream.route("/" + name, NumberedRoute(end=None, rate_per_s=100))
    bridge = start_bridge(fleet_config(broker.bootstrap,
                                       [{"name": n, "url": upstream.url("/" + n), "topic": topic} for n in names],
                                       partitions=2, topic=state_topic))
    state_topic_ready(bridge, seconds(20))
    wait_until(lambda: bridge.assert_running() or kafka.count(topic) >= 50, seconds(30), interval=0.2,
               message=lambda: "no events delivered\n" + bridge.describe(60))
    broker.rtt(1, rtt_ms)
    status = bridge.stop(timeout=seconds(20))
    broker.rtt(1, 0)
    assert status == 0, "a stop behind a slow state topic exited %s\n%s" % (status, bridge.describe(80))
    assert log_records(bridge, "stream released"), bridge.describe(60)

    checker = GapChecker()
    for record in kafka.records(topic, eof=True, timeout=5):
        checker.add_record({"topic": record.topic, "partition": record.partition, "offset": record.offset,
                            "headers": [[k, v] for k, v in record.headers]})
    final = newest_checkpoints(read_state(kafka, state_topic))
    assert {n: final[n].last_event_id for n in names if n in final} == \
        {n: str(checker.highest_id(n)) for n in names}, \
        "the final checkpoints should name the newest events in Kafka\n" + bridge.describe(60)
