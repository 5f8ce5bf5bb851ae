"""Fleet (issue 8): `delivery: exactly-once` under faults, proved from a read_committed consumer.

Every Kafka client goes through tests/tools/kafka_txn_proxy.py in front of mock_broker: the 2.0.2
mock alone neither fences an older producer of a transactional.id nor hides aborted or open
transactions from read_committed readers, so against it an exactly-once claim proves nothing.
Four numbered streams (ids 1..N, resuming after Last-Event-ID) go to one topic; the state topic
(pre-created: the mock has no CreateTopics) has 4 partitions. Faults:
  (a) Produce requests fail (API key 0, TOPIC_AUTHORIZATION_FAILED): the transactions in flight
      abort ("transaction aborted"), their streams rewind to the committed checkpoint and replay;
  (b) EndTxn (API key 26) fails: once with an abortable error (REQUEST_TIMED_OUT, which
      librdkafka treats as "abort the transaction"), later with a retriable one
      (CONCURRENT_TRANSACTIONS, retried by librdkafka or the daemon, no abort needed);
  (c) kill -9 at random moments (seeded) while transactions are open, restart each time: the new
      producer of each partition fences the old one and aborts its open transaction.
Asserted each time: the read_committed reader (a follower during the run, and a fresh read after
a graceful stop) sees every ID of every stream exactly once (gaps = 0 AND duplicates = 0), the
committed checkpoints name the last ID; and the faults really happened: the abort and rewind log
lines, the proxy's abort decisions, and aborted copies that only a read_uncommitted read of the
mock shows (raw duplicates > 0).
"""
# ctest-timeout: 300

import re

from fleet_support import (fleet_config, free_port, log_records, metric_value,
                           newest_checkpoints, read_all_checker, read_state, scrape_metrics, state_partition)
from gap_check import Expected
from harness import Kafka, wait_until
from reliability_support import RecordTail, observe_for, scaled, scenario_random, seconds
from sse_upstream import NumberedRoute
from txn_proxy_support import txn_cluster  # noqa: F401  (fixture)

STREAMS = 4
STATE_PARTITIONS = 4
EVENTS = scaled(6_000, 2_000)        # per stream
RATE = scaled(600, 200)              # events per second per stream: ~10 s of streaming


class ExactlyOnceRun:
    """Four numbered streams through the proxy with delivery: exactly-once, a read_committed
    follower through the proxy, and the checks of the verdict."""

    def __init__(self, case, txn_cluster, upstream, processes, tmp_path, start_bridge, properties=None,
                 log_level="info"):
        self.case = case
        self.names = ["eos-%s-%d" % (case, i) for i in range(STREAMS)]
        self.topic = "rel.eos.%s" % case
        self.state_topic = "_eos_state_%s" % case
        self.cluster = txn_cluster(topics=["%s:%d" % (self.topic, STREAMS)])
        self.cluster.broker.create_topic(self.state_topic, STATE_PARTITIONS)
        self.kafka = Kafka(self.cluster.bootstrap)              # through the proxy
        self.raw = Kafka(self.cluster.broker.bootstrap)         # the mock itself
        for name in self.names:
            upstream.route("/" + name, NumberedRoute(end=EVENTS, rate_per_s=RATE, at_end="hang"))
        self.admin_port = free_port()
        self.config = fleet_config(
            self.cluster.bootstrap, [{"name": n, "url": upstream.url("/" + n), "topic": self.topic}
                                     for n in self.names],
            partitions=STATE_PARTITIONS, topic=self.state_topic, delivery="exactly-once",
            transaction={"interval": "100ms", "max_events": 10000}, admin_port=self.admin_port,
            properties=properties, log_level=log_level, stats_interval="5s")
        self.expected = {n: Expected(last=EVENTS) for n in self.names}
        self.tail = RecordTail(processes, self.cluster.bootstrap, [self.topic], tmp_path,
                                name="committed_tail", isolation="read_committed")
        self.start_bridge = start_bridge
        self.bridges = []
        self.metrics = []

    @property
    def bridge(self):
        return self.bridges[-1]

    def start(self):
        bridge = self.start_bridge(self.config)
        self.bridges.append(bridge)
        return bridge

    def wait_for_progress(self, fraction):
        """Waits until the committed reader holds `fraction` of all events."""
        want = fraction * EVENTS * STREAMS

        def progressed():
            self.bridge.assert_running()
            self.tail.check_alive()
            return self.tail.checker.records >= want
        wait_until(progressed, seconds(60), interval=0.05,
                   message=lambda: "no committed progress to %d records (have %d)\n%s" % (
                       want, self.tail.checker.records, self.bridge.describe(80)))

    def finish(self):
        """Waits until the committed reader holds every ID, scrapes the metrics and stops the
        bridge gracefully (exit 0)."""
        def done():
            self.bridge.assert_running()
            self.tail.check_alive()
            return self.tail.checker.has_all(self.expected)
        wait_until(done, seconds(90), interval=0.25, message=lambda: "not every event was committed (%s)\n%s\n%s" % (
            self.case, self.tail.checker.report(self.expected).text(), self.bridge.describe(120)))
        self.metrics = wait_until(lambda: scrape_metrics(self.admin_port), seconds(10), interval=0.2,
                                  message="no /metrics on 127.0.0.1:%d" % self.admin_port)
        assert self.bridge.stop() == 0, self.bridge.describe()

    def verdict(self):
        """Checks exactly-once from the committed side; returns (committed report, raw report)."""
        try:
            committed_checker, _ = read_all_checker(self.kafka, [self.topic], isolation="read_committed",
                                                    timeout=seconds(30))
            raw_checker, _ = read_all_checker(self.raw, [self.topic], isolation="read_uncommitted",
                                              timeout=seconds(30))
        finally:
            self.tail.stop()
        followed = self.tail.checker.report(self.expected)
        committed = committed_checker.report(self.expected)
        raw = raw_checker.report(self.expected)
        logs = self.bridge.describe(80)
        for what, report in (("fresh read_committed read", committed), ("read_committed follower", followed)):
            assert report.gaps == 0, "DATA LOSS in the %s (%s)\n%s\n%s" % (what, self.case, report.text(), logs)
            assert report.duplicates == 0, "DUPLICATES in the %s under exactly-once (%s)\n%s\n" \
                "raw (read_uncommitted, mock): %s\nproxy: %s\n%s" % (
                    what, self.case, report.text(), raw.summary(), self.cluster.proxy.describe()[-3000:], logs)
            assert report.order_violations == 0, "%s out of stream order (%s)\n%s" % (what, self.case, report.text())
            assert report.unexpected == 0, report.text()
        state = newest_checkpoints(read_state(self.kafka, self.state_topic, isolation="read_committed"))
        assert {n: state[n].last_event_id if n in state else None for n in self.names} == \
            {n: str(EVENTS) for n in self.names}, "committed checkpoints after the stop: %s" % (
                {n: c.last_event_id for n, c in state.items()})
        return committed, raw

    def aborts_logged(self):
        return sum(len(log_records(b, "transaction aborted")) for b in self.bridges)

    def rewinds_logged(self):
        return sum(len(re.findall(r"rewinding to the checkpoint", b.logs())) for b in self.bridges)

    def summary(self, committed, raw, seed, extra=""):
        return ("fleet_exactly_once/%s: events sent=%d committed=%d committed_duplicates=%d gaps=%d "
                "raw_records=%d raw_duplicates=%d aborts_logged=%d rewinds_logged=%d proxy_aborts=%d "
                "committed_txns=%s aborted_txns=%s seed=%d partitions=%s%s" % (
                    self.case, committed.sent, committed.delivered, committed.duplicates, committed.gaps,
                    raw.total("records"), raw.duplicates, self.aborts_logged(), self.rewinds_logged(),
                    len(self.cluster.proxy.decisions("abort")),
                    metric_value(self.metrics, "sse2kafka_transactions_total", outcome="committed"),
                    metric_value(self.metrics, "sse2kafka_transactions_total", outcome="aborted"), seed,
                    {n: state_partition(n, STATE_PARTITIONS) for n in self.names}, extra))


def test_produce_errors_abort_and_replay_exactly_once(txn_cluster, upstream, processes, tmp_path, start_bridge,
                                                      scenario_summary):
    seed, _ = scenario_random("eos-produce")
    run = ExactlyOnceRun("produce", txn_cluster, upstream, processes, tmp_path, start_bridge)
    run.start()
    run.wait_for_progress(0.25)
    run.cluster.broker.command("request-errors 0 3 TOPIC_AUTHORIZATION_FAILED")
    run.bridge.wait_for_log(r"^\S+\s+\w+\s+transaction aborted ", timeout=seconds(20))
    run.wait_for_progress(0.5)
    run.cluster.broker.command("request-errors 0 2 TOPIC_AUTHORIZATION_FAILED")
    run.finish()
    committed, raw = run.verdict()
    scenario_summary(run.summary(committed, raw, seed))
    aborted = log_records(run.bridge, "transaction aborted")
    assert aborted and run.rewinds_logged() > 0, \
        "the produce errors caused no abort and rewind\n" + run.bridge.describe(100)
    assert all(r.fields.get("partition", "").isdigit() for r in aborted), [r.line for r in aborted]
    assert run.cluster.proxy.decisions("abort"), "the proxy saw no aborted transaction\n" + run.cluster.proxy.describe()
    assert (metric_value(run.metrics, "sse2kafka_transactions_total", outcome="aborted") or 0) > 0, \
        "sse2kafka_transactions_total{outcome=\"aborted\"} is not counted: %s" % [
            s for s in run.metrics if s[0].startswith("sse2kafka_transactions")]
    assert (metric_value(run.metrics, "sse2kafka_transactions_total", outcome="committed") or 0) > 0


def test_end_txn_errors_abort_or_retry_exactly_once(txn_cluster, upstream, processes, tmp_path, start_bridge,
                                                    scenario_summary):
    seed, _ = scenario_random("eos-endtxn")
    # librdkafka's transaction debug lines show the EndTxn answers, so the retriable errors can be
    # seen to have been served (they cause no abort by design).
    run = ExactlyOnceRun("endtxn", txn_cluster, upstream, processes, tmp_path, start_bridge,
                         properties={"debug": "eos"}, log_level="debug")
    run.start()
    run.wait_for_progress(0.2)
    run.cluster.broker.command("request-errors 26 1 REQUEST_TIMED_OUT")
    run.bridge.wait_for_log(r"^\S+\s+\w+\s+transaction aborted ", timeout=seconds(20))
    run.wait_for_progress(0.5)
    aborts_before = run.aborts_logged()
    run.cluster.broker.command("request-errors 26 3 CONCURRENT_TRANSACTIONS")
    run.bridge.wait_for_log(r"EndTxn .*CONCURRENT_TRANSACTIONS", timeout=seconds(20))
    run.finish()
    committed, raw = run.verdict()
    scenario_summary(run.summary(committed, raw, seed, " aborts_after_retriable=%d" % (
        run.aborts_logged() - aborts_before)))
    assert aborts_before > 0, "the failed commit did not abort\n" + run.bridge.describe(100)
    assert run.rewinds_logged() > 0, "the aborted commit did not rewind its streams\n" + run.bridge.describe(100)


def test_kill9_during_transactions_loses_and_repeats_nothing(txn_cluster, upstream, processes, tmp_path,
                                                             start_bridge, scenario_summary):
    seed, rng = scenario_random("eos-kill9")
    kills = scaled(5, 3)
    run = ExactlyOnceRun("kill9", txn_cluster, upstream, processes, tmp_path, start_bridge)
    delays = []
    for index in range(kills):
        before = {n: len(upstream.requests("/" + n)) for n in run.names}
        bridge = run.start()
        for name in run.names:
            upstream.wait_for_requests(before[name] + 1, timeout=seconds(30), path="/" + name)
        # Past the first commits of this run, then a random moment: transactions are open
        # about all the time (one commit per 100 ms per partition, events arriving all along).
        run.wait_for_progress((index + 1) / (kills + 3))
        delay = rng.uniform(0.05, 0.8)
        delays.append(round(delay, 3))
        observe_for(delay, bridge)
        bridge.kill9()
    run.start()
    run.finish()
    committed, raw = run.verdict()
    fences = run.cluster.proxy.decisions("fence")
    aborts = run.cluster.proxy.decisions("abort")
    scenario_summary(run.summary(committed, raw, seed, " kills=%d delays=%s fences=%d" % (kills, delays, len(fences))))
    assert fences, "no restart fenced the killed producer (the proxy logged no fence)\n" + run.cluster.proxy.describe()
    assert aborts and raw.duplicates > 0, \
        "the kills left no open transaction behind (no aborted copies in the mock): the test proved nothing\n" \
        "raw: %s\n%s" % (raw.text(), run.cluster.proxy.describe())


def test_a_second_instance_fences_the_first_which_exits(txn_cluster, upstream, processes, tmp_path, start_bridge,
                                                         scenario_summary):
    """Two instances with the same config and no cluster (a duplicated deployment): the second one's
    init_transactions fences the first, which must stop writing and exit 1 ("partition fenced");
    the read_committed side still holds every ID exactly once."""
    seed, _ = scenario_random("eos-duplicate")
    run = ExactlyOnceRun("duplicate", txn_cluster, upstream, processes, tmp_path, start_bridge)
    first = run.start()
    run.wait_for_progress(0.3)
    # The same config but for its own admin port (both run on this host).
    run.admin_port = free_port()
    run.config = dict(run.config, admin={"listen": "127.0.0.1:%d" % run.admin_port})
    run.start()
    rc = first.wait_for_exit(seconds(30))
    assert rc == 1, "the fenced instance did not exit 1 (rc %s)\n%s" % (rc, first.describe(60))
    fenced = log_records(first, "partition fenced")
    assert fenced, "the fenced instance did not say so\n" + first.describe(60)
    run.finish()
    committed, raw = run.verdict()
    scenario_summary(run.summary(committed, raw, seed, " fenced_partitions=%s" % sorted(
        r.fields.get("partition") for r in fenced)))
    assert run.cluster.proxy.decisions("fence"), "the proxy fenced nothing\n" + run.cluster.proxy.describe()
