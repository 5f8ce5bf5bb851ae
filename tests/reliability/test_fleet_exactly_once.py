"""Fleet (issue 8): `delivery: exactly-once` under Kafka errors that only the mock broker can
inject: the daemon's side of a failed transaction (abort, rewind, replay).

librdkafka 2.0.2's mock cluster (tests/tools/mock_broker) runs the transaction protocol but writes
no commit or abort markers, so its read_committed readers see aborted records too, and it never
fences an older producer. Exactly-once itself (read_committed sees every ID once), fencing and
kill -9 during transactions are proven against real Apache Kafka in tests/realkafka; a real
broker has no error injection, so these two faults are tested here:
  (a) Produce requests fail (API key 0, TOPIC_AUTHORIZATION_FAILED): the transactions in flight
      abort ("transaction aborted"), their streams rewind to the committed checkpoint and replay;
  (b) EndTxn (API key 26) fails: once with an abortable error (REQUEST_TIMED_OUT, which
      librdkafka treats as "abort the transaction"), later with a retriable one
      (CONCURRENT_TRANSACTIONS, retried by librdkafka or the daemon, no abort needed).
Four numbered streams (ids 1..N, resuming after Last-Event-ID) go to one topic; the state topic
(pre-created: the mock has no CreateTopics) has 4 partitions. Asserted each time, only what the
mock can show: the abort and rewind log lines; sse2kafka_transactions_total counts aborted
transactions (no more than were logged) and committed ones; after a graceful stop the newest
checkpoint of every stream in the state topic names its last ID; and everything the topic holds
(read_uncommitted, by a follower during the run and by a fresh read afterwards, each reading
every offset) has every ID of every stream (gaps = 0). The copies written by aborted
transactions stay readable on the mock, so duplicates are expected and only reported.
"""
# ctest-timeout: 300

import re

from fleet_support import (fleet_config, free_port, log_records, metric_value,
                           newest_checkpoints, read_all_checker, read_state, scrape_metrics, state_partition)
from gap_check import Expected
from harness import Kafka, wait_until
from reliability_support import RecordTail, scaled, scenario_random, seconds
from sse_upstream import NumberedRoute

STREAMS = 4
STATE_PARTITIONS = 4
EVENTS = scaled(6_000, 2_000)        # per stream
RATE = scaled(600, 200)              # events per second per stream: ~10 s of streaming


class ExactlyOnceRun:
    """Four numbered streams with delivery: exactly-once on the plain mock broker, a follower of
    the topic (read_uncommitted: the mock writes no transaction markers), and the checks of the
    verdict."""

    def __init__(self, case, make_broker, upstream, processes, tmp_path, start_bridge, properties=None,
                 log_level="info"):
        self.case = case
        self.names = ["eos-%s-%d" % (case, i) for i in range(STREAMS)]
        self.topic = "rel.eos.%s" % case
        self.state_topic = "_eos_state_%s" % case
        self.broker = make_broker(topics=["%s:%d" % (self.topic, STREAMS)])
        self.broker.create_topic(self.state_topic, STATE_PARTITIONS)
        self.kafka = Kafka(self.broker.bootstrap)
        for name in self.names:
            upstream.route("/" + name, NumberedRoute(end=EVENTS, rate_per_s=RATE, at_end="hang"))
        self.admin_port = free_port()
        self.config = fleet_config(
            self.broker.bootstrap, [{"name": n, "url": upstream.url("/" + n), "topic": self.topic}
                                    for n in self.names],
            partitions=STATE_PARTITIONS, topic=self.state_topic, delivery="exactly-once",
            transaction={"interval": "100ms", "max_events": 10000}, admin_port=self.admin_port,
            properties=properties, log_level=log_level, stats_interval="5s")
        self.expected = {n: Expected(last=EVENTS) for n in self.names}
        self.tail = RecordTail(processes, self.broker.bootstrap, [self.topic], tmp_path,
                               name="topic_tail", isolation="read_uncommitted")
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
        """Waits until the follower holds `fraction` of all events (copies included)."""
        want = fraction * EVENTS * STREAMS

        def progressed():
            self.bridge.assert_running()
            self.tail.check_alive()
            return self.tail.checker.records >= want
        wait_until(progressed, seconds(60), interval=0.05,
                   message=lambda: "no progress to %d records (have %d)\n%s" % (
                       want, self.tail.checker.records, self.bridge.describe(80)))

    def finish(self):
        """Waits until the follower holds every ID, scrapes the metrics and stops the bridge
        gracefully (exit 0)."""
        def done():
            self.bridge.assert_running()
            self.tail.check_alive()
            return self.tail.checker.has_all(self.expected)
        wait_until(done, seconds(90), interval=0.25, message=lambda: "not every event reached the topic (%s)\n%s\n%s" % (
            self.case, self.tail.checker.report(self.expected).text(), self.bridge.describe(120)))
        self.metrics = wait_until(lambda: scrape_metrics(self.admin_port), seconds(10), interval=0.2,
                                  message="no /metrics on 127.0.0.1:%d" % self.admin_port)
        assert self.bridge.stop() == 0, self.bridge.describe()

    def verdict(self):
        """Checks that nothing is missing from the topic and that the newest checkpoints name the
        last IDs; returns the report of the fresh read."""
        try:
            checker, _ = read_all_checker(self.kafka, [self.topic], isolation="read_uncommitted",
                                          timeout=seconds(30))
        finally:
            self.tail.stop()
        followed = self.tail.checker.report(self.expected)
        fresh = checker.report(self.expected)
        logs = self.bridge.describe(80)
        for what, report in (("fresh read", fresh), ("follower", followed)):
            assert report.complete(), "the %s skipped offsets (%s): its gap count proves nothing\n%s" % (
                what, self.case, report.text())
            assert report.gaps == 0, "DATA LOSS in the %s (%s)\n%s\n%s" % (what, self.case, report.text(), logs)
        state = newest_checkpoints(read_state(self.kafka, self.state_topic, isolation="read_uncommitted"))
        assert {n: state[n].last_event_id if n in state else None for n in self.names} == \
            {n: str(EVENTS) for n in self.names}, "newest checkpoints after the stop: %s" % (
                {n: c.last_event_id for n, c in state.items()})
        return fresh

    def aborts_logged(self):
        return sum(len(log_records(b, "transaction aborted")) for b in self.bridges)

    def rewinds_logged(self):
        return sum(len(re.findall(r"rewinding to the checkpoint", b.logs())) for b in self.bridges)

    def transactions(self, outcome):
        return metric_value(self.metrics, "sse2kafka_transactions_total", outcome=outcome) or 0

    def assert_transactions_counted(self):
        """sse2kafka_transactions_total counted the aborts (at most one per "transaction aborted"
        line: the metric counts aborts that completed) and commits."""
        aborted, logged = self.transactions("aborted"), self.aborts_logged()
        assert 0 < aborted <= logged, \
            "sse2kafka_transactions_total{outcome=\"aborted\"} = %s with %d aborts logged: %s" % (
                aborted, logged, [s for s in self.metrics if s[0].startswith("sse2kafka_transactions")])
        assert self.transactions("committed") > 0, \
            [s for s in self.metrics if s[0].startswith("sse2kafka_transactions")]

    def summary(self, report, seed, extra=""):
        return ("fleet_exactly_once/%s (mock, read_uncommitted): events sent=%d delivered=%d duplicates=%d "
                "gaps=%d records=%d aborts_logged=%d rewinds_logged=%d committed_txns=%s aborted_txns=%s "
                "seed=%d partitions=%s%s" % (
                    self.case, report.sent, report.delivered, report.duplicates, report.gaps,
                    report.total("records"), self.aborts_logged(), self.rewinds_logged(),
                    self.transactions("committed"), self.transactions("aborted"), seed,
                    {n: state_partition(n, STATE_PARTITIONS) for n in self.names}, extra))


def test_produce_errors_abort_rewind_and_replay_without_gaps(make_broker, upstream, processes, tmp_path,
                                                             start_bridge, scenario_summary):
    seed, _ = scenario_random("eos-produce")
    run = ExactlyOnceRun("produce", make_broker, upstream, processes, tmp_path, start_bridge)
    run.start()
    run.wait_for_progress(0.25)
    run.broker.command("request-errors 0 3 TOPIC_AUTHORIZATION_FAILED")
    run.bridge.wait_for_log(r"^\S+\s+\w+\s+transaction aborted ", timeout=seconds(20))
    run.wait_for_progress(0.5)
    run.broker.command("request-errors 0 2 TOPIC_AUTHORIZATION_FAILED")
    run.finish()
    report = run.verdict()
    scenario_summary(run.summary(report, seed))
    aborted = log_records(run.bridge, "transaction aborted")
    assert aborted and run.rewinds_logged() > 0, \
        "the produce errors caused no abort and rewind\n" + run.bridge.describe(100)
    assert all(r.fields.get("partition", "").isdigit() for r in aborted), [r.line for r in aborted]
    run.assert_transactions_counted()


def test_end_txn_errors_abort_or_retry_without_gaps(make_broker, upstream, processes, tmp_path, start_bridge,
                                                    scenario_summary):
    seed, _ = scenario_random("eos-endtxn")
    # librdkafka's transaction debug lines show the EndTxn answers, so the retriable errors can be
    # seen to have been served (they cause no abort by design).
    run = ExactlyOnceRun("endtxn", make_broker, upstream, processes, tmp_path, start_bridge,
                         properties={"debug": "eos"}, log_level="debug")
    run.start()
    run.wait_for_progress(0.2)
    run.broker.command("request-errors 26 1 REQUEST_TIMED_OUT")
    run.bridge.wait_for_log(r"^\S+\s+\w+\s+transaction aborted ", timeout=seconds(20))
    run.wait_for_progress(0.5)
    aborts_before = run.aborts_logged()
    run.broker.command("request-errors 26 3 CONCURRENT_TRANSACTIONS")
    run.bridge.wait_for_log(r"EndTxn .*CONCURRENT_TRANSACTIONS", timeout=seconds(20))
    run.finish()
    report = run.verdict()
    scenario_summary(run.summary(report, seed, " aborts_after_retriable=%d" % (
        run.aborts_logged() - aborts_before)))
    assert aborts_before > 0, "the failed commit did not abort\n" + run.bridge.describe(100)
    assert run.rewinds_logged() > 0, "the aborted commit did not rewind its streams\n" + run.bridge.describe(100)
    run.assert_transactions_counted()
