"""Scenario 3: Kafka refuses or loses produce requests while events flow.

Two numbered streams at a steady rate (one single-partition topic each); about a quarter of the
way through, the mock broker is told to fail Produce requests:
- retriable (NOT_LEADER_FOR_PARTITION): librdkafka retries them itself; the idempotent producer
  writes each record once, so nothing is replayed: no gap, no duplicate, no rewind;
- non-retriable (TOPIC_AUTHORIZATION_FAILED): the deliveries fail for good; the bridge must not let
  the checkpoint pass them but rewind ("rewinding to the checkpoint") and replay from the upstream;
- fatal (OUT_OF_ORDER_SEQUENCE_NUMBER: the idempotent producer's sequence is broken, librdkafka
  raises a fatal error): the bridge must rewind every stream, purge and recreate the producer,
  and replay;
- message timeouts: with message.timeout.ms at 1.5 s, the broker goes down for 5 s; the records in
  flight time out, the streams rewind and replay once the broker is back.
Not injected: DUPLICATE_SEQUENCE_NUMBER. librdkafka rightly counts it as a success (a real broker
sends it only for a batch it already holds), so an injected one, for a batch the mock never
wrote, loses that batch in any client: a property of the fault, not of the bridge.
Every case ends with every ID delivered (gaps = 0); duplicates are reported. Order violations are
asserted absent except for the timeouts: a message timeout fails the oldest queued records
of a pass while the younger ones of the same pass are still written when the broker returns, so
the replay of the failed ones lands after them (a finite message.timeout.ms trades stream order
for a bound on how long a record waits; reported in the summary line, not asserted).
"""
# ctest-timeout: 420

import time

from gap_check import Expected
from harness import Kafka, wait_until
from reliability_support import (MemoryWatch, RecordTail, fault_counts, fault_text, log_lines, observe_for,
                                 reliability_config, scaled, scenario_random, seconds, summary_line,
                                 wait_for_delivery)
from sse_upstream import NumberedRoute

STREAMS = 2
EVENTS = scaled(40_000, 16_000)      # per stream
RATE = scaled(4_000, 1_600)          # events per second per stream: the run lasts ~10 s


class ProduceRun:
    """Two numbered streams into their own topics, read back by a RecordTail."""

    def __init__(self, case, make_broker, upstream, state_dir, tmp_path, processes, start_bridge,
                 properties=None):
        self.case = case
        self.names = ["%s%d" % (case, i) for i in range(STREAMS)]
        self.topics = ["rel.%s.%d" % (case, i) for i in range(STREAMS)]
        self.broker = make_broker(topics=[t + ":1" for t in self.topics])
        self.kafka = Kafka(self.broker.bootstrap)
        self.tail = RecordTail(processes, self.broker.bootstrap, self.topics, tmp_path)
        for name in self.names:
            upstream.route("/" + name, NumberedRoute(end=EVENTS, rate_per_s=RATE, at_end="hang"))
        self.config = reliability_config(self.broker, state_dir, [
            {"name": n, "url": upstream.url("/" + n), "topic": t} for n, t in zip(self.names, self.topics)],
            properties=properties)
        self.expected = {name: Expected(last=EVENTS) for name in self.names}
        self.memory = MemoryWatch()
        self.bridge = start_bridge(self.config)
        self.memory.watch(self.bridge.pid)

    def wait_for_progress(self, fraction):
        """Waits until the streams delivered `fraction` of their events."""
        wait_until(lambda: self.tail.checker.records >= fraction * EVENTS * STREAMS, seconds(60),
                   interval=0.05, message=lambda: "no progress\n" + self.bridge.describe(60))

    def finish(self, seed):
        """Waits for every event, stops the bridge (exit 0) and returns the report."""
        try:
            wait_for_delivery(self.tail, self.kafka, self.expected, seconds(90), bridges=[self.bridge],
                              context="case %s, seed %d" % (self.case, seed))
            self.memory.sample()
            assert self.bridge.stop() == 0, self.bridge.describe()
            self.tail.wait_caught_up(self.kafka, seconds(30))
        finally:
            self.memory.stop()
            self.tail.stop()
        return self.tail.checker.report(self.expected)

    def summary(self, report, seed):
        counts = fault_counts([self.bridge])
        return summary_line("produce_errors/" + self.case, report, self.memory.peak_kib, seed,
                            fault_text([self.bridge])), counts

    def assert_no_loss(self, report, seed):
        assert report.complete(), "the reader missed records: %s" % report.text()
        assert report.gaps == 0, "DATA LOSS under produce errors (case %s, seed %d)\n%s\n%s" % (
            self.case, seed, report.text(), self.bridge.describe(100))
        assert report.unexpected == 0, report.text()


def test_retriable_produce_errors_are_retried_without_replay(make_broker, upstream, state_dir, tmp_path,
                                                             processes, start_bridge, scenario_summary):
    seed, _ = scenario_random("retriable")
    run = ProduceRun("notleader", make_broker, upstream, state_dir, tmp_path, processes, start_bridge)
    run.wait_for_progress(0.25)
    run.broker.produce_errors(10, "NOT_LEADER_FOR_PARTITION")
    report = run.finish(seed)
    line, counts = run.summary(report, seed)
    scenario_summary(line)
    run.assert_no_loss(report, seed)
    assert counts["delivery_failures"] == 0 and counts["rewinds"] == 0, \
        "a retriable error reached the bridge as a failed delivery: librdkafka should retry it\n%s" % (
            run.bridge.describe(100))
    assert report.duplicates == 0, "retried produce requests wrote duplicates\n%s" % report.text()
    assert report.order_violations == 0, report.text()


def test_authorization_failures_rewind_and_replay(make_broker, upstream, state_dir, tmp_path, processes,
                                                  start_bridge, scenario_summary):
    seed, _ = scenario_random("authorization")
    run = ProduceRun("authz", make_broker, upstream, state_dir, tmp_path, processes, start_bridge)
    run.wait_for_progress(0.25)
    run.broker.produce_errors(3, "TOPIC_AUTHORIZATION_FAILED")
    run.bridge.wait_for_log(r"rewinding to the checkpoint", timeout=seconds(20))
    report = run.finish(seed)
    line, counts = run.summary(report, seed)
    scenario_summary(line)
    assert report.order_violations == 0, report.text()
    failures = log_lines(run.bridge, r"delivery failed")
    assert any("TOPIC_AUTHORIZATION_FAILED" in f for f in failures), \
        "no delivery failed with TOPIC_AUTHORIZATION_FAILED\n%s" % run.bridge.describe(100)
    run.assert_no_loss(report, seed)


def test_fatal_producer_errors_recreate_the_producer_and_replay(make_broker, upstream, state_dir, tmp_path,
                                                               processes, start_bridge, scenario_summary):
    seed, _ = scenario_random("fatal")
    run = ProduceRun("fatal", make_broker, upstream, state_dir, tmp_path, processes, start_bridge)
    run.wait_for_progress(0.25)
    run.broker.produce_errors(2, "OUT_OF_ORDER_SEQUENCE_NUMBER")
    run.bridge.wait_for_log(r"Kafka producer failed fatally", timeout=seconds(20))
    report = run.finish(seed)
    line, counts = run.summary(report, seed)
    scenario_summary(line)
    assert counts["producer_resets"] >= 1 and counts["rewinds"] >= 1, run.bridge.describe(100)
    assert report.order_violations == 0, report.text()
    run.assert_no_loss(report, seed)


def test_message_timeouts_while_the_broker_is_down_rewind_and_replay(make_broker, upstream, state_dir,
                                                                    tmp_path, processes, start_bridge,
                                                                    scenario_summary):
    seed, _ = scenario_random("timeouts")
    run = ProduceRun("timeout", make_broker, upstream, state_dir, tmp_path, processes, start_bridge,
                     properties={"message.timeout.ms": "1500"})
    run.wait_for_progress(0.25)
    run.broker.down(1)
    down_at = time.monotonic()
    run.bridge.wait_for_log(r"delivery failed.*(MSG_TIMED_OUT|TIMED_OUT)", timeout=seconds(20))
    observe_for(max(0.0, down_at + 5 - time.monotonic()), run.bridge)
    run.broker.up(1)
    report = run.finish(seed)
    line, counts = run.summary(report, seed)
    scenario_summary(line)
    print(report.text())        # the order examples show which records of the failed pass came first
    # Not asserted: order. The records of the failed pass that had not timed out yet are written
    # when the broker returns, before the replay of the ones that had (see the module docstring).
    assert counts["rewinds"] >= 1, "timed-out deliveries did not rewind\n%s" % run.bridge.describe(100)
    run.assert_no_loss(report, seed)
