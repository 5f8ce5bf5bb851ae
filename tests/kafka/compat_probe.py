#!/usr/bin/env python3
"""Measures which Kafka features work with the librdkafka the build links, on a real cluster of
each version: the table of tests/kafka/README.md comes from this script.

Usage: /usr/bin/python3 tests/kafka/compat_probe.py [--versions 3.9 4] [--release X.Y.Z] [--out FILE]
  (needs build/sse2kafka and build/tests/tools; SSE2KAFKA_BIN / SSE2KAFKA_TOOLS_DIR as for the suites)

Per version it starts a 3-node cluster (cluster.sh) and runs, each bounded in time:
  idempotent   kcat -P -X enable.idempotence=true -X acks=all; the records read back
  transactions txn_probe: init, a committed and an aborted transaction; read_committed sees only
               the committed records, read_uncommitted both
  protocol     the API version ranges the brokers announce, and the librdkafka features they leave on
  group        kcat -G (balanced consumer): reads the topic, commits; a second member of the group
               starts at the committed offsets (reads nothing); ConsumerGroupCommand shows the offsets
  state-kafka  sse2kafka with state.backend: kafka: events land, the state topic holds the
               checkpoint, a restart resumes from it
  exactly-once sse2kafka with delivery: exactly-once: events visible read_committed, checkpoint
  cluster      sse2kafka with cluster.group: the instance is assigned every state partition and
               delivers
It prints one line per probe: version, probe, ok|FAIL (info for the protocol probe), what was seen, and the warning and error
lines of librdkafka or the daemon (exactly as logged). Exit 0 whatever the outcome (it measures).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent / "e2e", HERE.parent / "tools", HERE.parent / "reliability"):
    sys.path.insert(0, str(path))

from fleet_support import STATE_TOPIC, fleet_config  # noqa: E402
from harness import Bridge, ProcessRegistry, tool, wait_until, write_config  # noqa: E402
from kafka_cluster import KafkaCluster  # noqa: E402
from sse_upstream import NumberedRoute, SSEUpstream  # noqa: E402

# librdkafka log lines (kcat prints "%LEVEL|time|FAC|..."; levels 0-4 are emerg..warning) and
# the daemon's warn/error lines.
PROBLEM = re.compile(r"^%[0-4]\||\b(warn|warning|error|err|critical)\b|ERROR|FAIL", re.IGNORECASE)


def problems(text: str, limit: int = 8) -> list:
    seen, out = set(), []
    for line in text.splitlines():
        line = line.strip()
        if PROBLEM.search(line):
            # The same message repeats with new timestamps: keep the first of each.
            key = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z?|\|\d+\.\d+\||\d+ms", "", line)
            if key not in seen:
                seen.add(key)
                out.append(line[:400])
        if len(out) >= limit:
            break
    return out


def run(cmd: list, timeout: float, input: str = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(cmd, -1, exc.stdout or "", (exc.stderr or "") + "\n(timed out)")


def dump(cluster, topic: str, isolation: str = None) -> list:
    cmd = [str(tool("kafka_dump")), "--brokers", cluster.bootstrap, "--topic", topic, "--eof",
           "--timeout-ms", "20000"]
    if isolation:
        cmd += ["--isolation", isolation]
    done = run(cmd, 40)
    return [json.loads(line) for line in done.stdout.split("\n") if line.strip()]


# ----------------------------------------------------------------------------- client probes

# The APIs whose removed old versions (KIP-896) could turn a librdkafka feature off.
APIS = ("Produce", "Fetch", "ListOffsets", "Metadata", "OffsetCommit", "OffsetFetch", "FindCoordinator",
        "JoinGroup", "SyncGroup", "Heartbeat", "LeaveGroup", "InitProducerId", "AddPartitionsToTxn",
        "EndTxn", "TxnOffsetCommit", "CreateTopics", "DescribeConfigs", "SaslHandshake")


def probe_api_versions(cluster) -> tuple:
    """What the broker announces and which librdkafka features that leaves on (kcat -L with
    -d feature,protocol): the mechanism of librdkafka issue #4948."""
    done = run(["kcat", "-L", "-b", cluster.bootstrap, "-d", "feature,protocol", "-m", "10"], 30)
    text = done.stderr
    ranges = {m.group(1): m.group(2) for m in re.finditer(r"ApiKey (\w+) \(\d+\) Versions (\d+\.\.\d+)", text)}
    disabled = sorted(set(re.findall(r"Disabling feature (\w+)", text)))
    enabled = sorted(set(re.findall(r"Enabling feature (\w+)", text)))
    # Information, not a verdict: librdkafka 2.0.2 goes on using some features whose flag is
    # off (the consumer group probe says whether groups work).
    ok = None
    detail = "features disabled: %s; enabled: %s; broker versions: %s" % (
        disabled, enabled, " ".join("%s %s" % (a, ranges.get(a, "-")) for a in APIS))
    return ok, detail, []

def probe_idempotent(cluster) -> tuple:
    topic = "probe.idempotent"
    cluster.create_topic(topic, partitions=3)
    done = run(["kcat", "-P", "-b", cluster.bootstrap, "-t", topic, "-X", "enable.idempotence=true",
                "-X", "acks=all", "-X", "message.timeout.ms=20000"], 60,
               input="".join("record %d\n" % i for i in range(100)))
    got = len(dump(cluster, topic))
    return got == 100 and done.returncode == 0, "produced 100, read back %d (kcat exit %d)" % (
        got, done.returncode), problems(done.stderr)


def probe_transactions(cluster) -> tuple:
    topic = "probe.txn"
    cluster.create_topic(topic, partitions=1)
    done = run([str(tool("txn_probe")), "--brokers", cluster.bootstrap, "--topic", topic,
                "--transactional-id", "probe-txn", "--timeout-ms", "30000",
                "init", "begin", "produce:c1,c2,c3", "commit", "begin", "produce:a1,a2", "abort"], 120)
    steps = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    failed = [s for s in steps if not s.get("ok")]
    committed = [r.get("value") for r in dump(cluster, topic, "read_committed")]
    uncommitted = [r.get("value") for r in dump(cluster, topic, "read_uncommitted")]
    ok = not failed and done.returncode == 0 and committed == ["c1", "c2", "c3"] and \
        uncommitted == ["c1", "c2", "c3", "a1", "a2"]
    detail = "steps ok=%d failed=%s; read_committed=%s read_uncommitted=%s" % (
        len(steps) - len(failed), [(s["step"], s.get("error"), s.get("message")) for s in failed],
        committed, uncommitted)
    return ok, detail, problems(done.stderr)


def probe_group(cluster) -> tuple:
    topic, group = "probe.group", "probe-group"
    cluster.create_topic(topic, partitions=3)
    run(["kcat", "-P", "-b", cluster.bootstrap, "-t", topic, "-X", "acks=all"], 60,
        input="".join("g%d\n" % i for i in range(30)))
    first = run(["kcat", "-b", cluster.bootstrap, "-G", group, topic, "-o", "beginning", "-e",
                 "-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=200"], 90)
    second = run(["kcat", "-b", cluster.bootstrap, "-G", group, topic, "-e"], 90)
    read_first = len([l for l in first.stdout.splitlines() if l.startswith("g")])
    read_second = len([l for l in second.stdout.splitlines() if l.startswith("g")])
    try:
        described = cluster.cli("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                                "--bootstrap-server", cluster.bootstrap, "--describe", "--group", group)
        committed = sum(int(m.group(1)) for m in re.finditer(
            r"^\S+\s+%s\s+\d+\s+(\d+)\s" % re.escape(topic), described, re.MULTILINE))
    except AssertionError as exc:
        committed, described = -1, str(exc)
    ok = read_first == 30 and read_second == 0 and committed == 30
    return ok, "first member read %d/30, second read %d (0 = resumed at commits), committed offsets sum %d" % (
        read_first, read_second, committed), problems(first.stderr + second.stderr)


# ----------------------------------------------------------------------------- daemon probes

def bridge_run(cluster, work: Path, name: str, config: dict, last: int, isolation: str = None,
               expect_log: str = None) -> tuple:
    """Runs the daemon on a numbered feed of `last` events into topic probe.<name> until every
    event landed (or 60 s), stops it, restarts it and checks that it resumes after `last`.
    Returns (ok, detail, problem lines)."""
    topic = "probe." + name
    cluster.create_topic(topic, partitions=3)
    registry = ProcessRegistry()
    upstream = SSEUpstream().start()
    logs = ""
    try:
        upstream.route("/n", NumberedRoute(end=last, rate_per_s=200, at_end="hang"))
        config["streams"] = [{"name": name, "url": upstream.url("/n"), "topic": topic}]
        path = write_config(work, config, name="%s.yaml" % name)
        bridge = Bridge(registry, path, work)
        landed = []

        def all_landed():
            nonlocal landed
            landed = dump(cluster, topic, isolation)
            return len(landed) >= last or not bridge.running()
        try:
            wait_until(all_landed, 60, interval=0.5)
        except AssertionError:
            pass
        seen_log = True
        if expect_log:
            seen_log = re.search(expect_log, bridge.logs(), re.IGNORECASE) is not None
        status = bridge.stop(30) if bridge.running() else bridge.process.returncode
        logs += bridge.logs()
        ids = sorted({int(h[1]) for r in landed for h in r["headers"] if h[0] == "sse.id"})
        state = [r for r in dump(cluster, STATE_TOPIC, "read_committed") if r.get("key") == name]
        checkpoint = json.loads(state[-1]["value"]).get("last_event_id") if state else None
        # The restart must resume from the checkpoint in Kafka (no state dir is configured).
        again = Bridge(registry, path, work)
        try:
            requests = upstream.wait_for_requests(2, timeout=30, path="/n")
            resumed = requests[1].last_event_id
        except TimeoutError:
            resumed = "no request"
        again.stop(30)
        logs += again.logs()
        ok = ids == list(range(1, last + 1)) and status == 0 and checkpoint == str(last) and \
            resumed == str(last) and seen_log
        detail = "delivered %d/%d%s, exit %s, state topic checkpoint %s, restart sent Last-Event-ID %s%s" % (
            len(ids), last, " (read_committed)" if isolation else "", status, checkpoint, resumed,
            "" if seen_log else ", no log line /%s/" % expect_log)
        return ok, detail, problems(logs)
    finally:
        upstream.stop()
        registry.cleanup()


def probe_state_kafka(cluster, work: Path) -> tuple:
    config = fleet_config(cluster.bootstrap, [], partitions=6, log_level="info")
    ok, detail, errors = bridge_run(cluster, work, "state", config, 100, expect_log=r"state topic ready")
    # The state topic the daemon created (replication_factor -1: the broker's default).
    configs = cluster.describe_topic_configs(STATE_TOPIC)
    parts = cluster.partitions(STATE_TOPIC)
    rfs = sorted({len(p["replicas"]) for p in parts})
    detail += "; state topic: %d partitions, RF %s, cleanup.policy=%s, min.insync.replicas=%s" % (
        len(parts), rfs, configs.get("cleanup.policy"), configs.get("min.insync.replicas"))
    ok = ok and rfs == [3] and configs.get("cleanup.policy") == "compact"
    return ok, detail, errors


def probe_exactly_once(cluster, work: Path) -> tuple:
    config = fleet_config(cluster.bootstrap, [], partitions=6, delivery="exactly-once",
                          transaction={"interval": "100ms", "max_events": 1000}, log_level="info")
    return bridge_run(cluster, work, "eos", config, 100, isolation="read_committed",
                      expect_log=r"state topic ready")


def probe_cluster(cluster, work: Path) -> tuple:
    config = fleet_config(cluster.bootstrap, [], partitions=6, delivery="exactly-once",
                          transaction={"interval": "100ms", "max_events": 1000},
                          group="probe-fleet", session_timeout="6s", log_level="info")
    return bridge_run(cluster, work, "fleet", config, 100, isolation="read_committed",
                      expect_log=r"partitions assigned")


PROBES = [
    ("protocol versions and librdkafka features (kcat -L)", lambda c, w: probe_api_versions(c)),
    ("idempotent producer, acks=all (kcat)", lambda c, w: probe_idempotent(c)),
    ("transactions (txn_probe)", lambda c, w: probe_transactions(c)),
    ("consumer group, commits (kcat -G)", lambda c, w: probe_group(c)),
    ("sse2kafka state.backend: kafka", probe_state_kafka),
    ("sse2kafka delivery: exactly-once", probe_exactly_once),
    ("sse2kafka cluster.group (exactly-once)", probe_cluster),
]


def librdkafka_version() -> str:
    done = run(["kcat", "-V"], 10)
    match = re.search(r"librdkafka (\S+)", done.stdout + done.stderr)
    return match.group(1) if match else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--versions", nargs="+", default=["3.9", "4"])
    parser.add_argument("--release", help="another release of the line (e.g. 4.0.0) than the pinned one")
    parser.add_argument("--out", help="also write the lines to this file")
    args = parser.parse_args()
    lines = ["librdkafka %s (kcat, txn_probe and sse2kafka link the same system library)" % librdkafka_version()]
    print(lines[0], flush=True)
    for version in args.versions:
        cluster = KafkaCluster(version=version, release=args.release)
        try:
            cluster.start()
            lines.append("Kafka %s: cluster up in %.1fs" % (cluster.kafka_version, cluster.start_seconds))
            print(lines[-1], flush=True)
            with tempfile.TemporaryDirectory(prefix="compat-probe-") as work:
                for name, probe in PROBES:
                    began = time.monotonic()
                    try:
                        ok, detail, errors = probe(cluster, Path(work))
                    except Exception as exc:  # a probe that breaks is a finding too
                        ok, detail, errors = False, "probe raised %s: %s" % (type(exc).__name__, exc), []
                    verdict = "info" if ok is None else "ok" if ok else "FAIL"
                    lines.append("Kafka %s | %s | %s | %s (%.1fs)" % (
                        cluster.kafka_version, name, verdict, detail, time.monotonic() - began))
                    lines.extend("    " + e for e in errors)
                    print("\n".join(lines[-1 - len(errors):]), flush=True)
        finally:
            cluster.stop()
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
