"""Scenario 5: SIGTERM with deliveries in flight, then a restart that resumes exactly.

A numbered stream runs at a steady rate while the broker answers slowly (`rtt 1 400`: each
produce request takes 0.4 s, so hundreds of records are always in flight). SIGTERM must
(interface.md "The executable"): stop reading, wait for the in-flight deliveries, write the
checkpoint and exit 0 within kafka.flush_timeout. The restart's first request must carry
Last-Event-ID = the newest ID in Kafka (the checkpoint covers everything acknowledged), so the
second run replays nothing: the topic ends with every ID once (gaps = 0, duplicates = 0).
"""
# ctest-timeout: 120

import re
import signal
import time

from gap_check import Expected
from harness import Kafka, wait_until
from reliability_support import (MemoryWatch, RecordTail, log_lines, read_checkpoints, reliability_config,
                                 scaled, scenario_random, seconds, summary_line, wait_for_delivery)
from sse_upstream import NumberedRoute

TOPIC = "rel.stop"
STREAM = "stop"
RATE = scaled(3_000, 1_000)
EVENTS = scaled(30_000, 10_000)
FLUSH_TIMEOUT_S = 8
RTT_MS = 400


def test_sigterm_flushes_in_flight_events_and_restart_resumes_exactly(make_broker, upstream, state_dir,
                                                                       tmp_path, processes, start_bridge,
                                                                       scenario_summary):
    seed, _ = scenario_random("graceful_stop")
    broker = make_broker(topics=[TOPIC + ":1"])
    kafka = Kafka(broker.bootstrap)
    tail = RecordTail(processes, broker.bootstrap, [TOPIC], tmp_path)
    upstream.route("/stop", NumberedRoute(end=EVENTS, rate_per_s=RATE, at_end="hang"))
    config = reliability_config(broker, state_dir,
                                [{"name": STREAM, "url": upstream.url("/stop"), "topic": TOPIC}],
                                kafka={"flush_timeout": "%ds" % FLUSH_TIMEOUT_S})
    memory = MemoryWatch()
    first = start_bridge(config)
    memory.watch(first.pid)
    try:
        wait_until(lambda: tail.checker.records >= EVENTS // 10, seconds(30), interval=0.05,
                   message=lambda: "no progress\n" + first.describe(60))
        broker.rtt(1, RTT_MS)
        # Let the slow answers build up a backlog of in-flight records, then stop.
        wait_until(lambda: tail.checker.records >= EVENTS // 5, seconds(30), interval=0.05,
                   message=lambda: "no progress with rtt %d ms\n%s" % (RTT_MS, first.describe(60)))
        memory.sample()
        signalled_at = time.monotonic()
        first.signal(signal.SIGTERM)
        status = first.wait_for_exit(FLUSH_TIMEOUT_S + seconds(5))
        stop_seconds = time.monotonic() - signalled_at
        assert status == 0, "SIGTERM: exit status %s\n%s" % (status, first.describe())
        tail.wait_caught_up(kafka, seconds(30))
        newest = tail.checker.highest_id(STREAM)
        missing_at_stop = tail.checker.missing(STREAM, Expected(last=newest or 0), limit=20)
        checkpoint = read_checkpoints(state_dir).get(STREAM)

        broker.rtt(1, 0)
        requests_before = len(upstream.requests("/stop"))
        second = start_bridge(config)
        memory.watch(second.pid)
        requests = upstream.wait_for_requests(requests_before + 1, timeout=seconds(20), path="/stop")
        resumed = requests[requests_before]
        expected = {STREAM: Expected(last=EVENTS)}
        wait_for_delivery(tail, kafka, expected, seconds(60), bridges=[second], context="seed %d" % seed)
        memory.sample()
        assert second.stop() == 0, second.describe()
        tail.wait_caught_up(kafka, seconds(30))
    finally:
        memory.stop()
        tail.stop()

    stopping = log_lines(first, r"stopping: upstream reads stopped")
    in_flight = int(re.search(r"in_flight_events=(\d+)", stopping[0]).group(1)) if stopping else -1
    report = tail.checker.report(expected)
    scenario_summary(summary_line(
        "graceful_stop", report, memory.peak_kib, seed,
        "in_flight_at_sigterm=%d stop_took=%.2fs newest_before_restart=%s checkpoint=%s resumed_with=%s" % (
            in_flight, stop_seconds, newest, checkpoint, resumed.last_event_id)))

    assert stopping, "no 'stopping' line after SIGTERM\n" + first.describe()
    assert in_flight > 0, "nothing was in flight at SIGTERM: the test proves nothing\n" + first.describe()
    assert not log_lines(first, r"flush timeout"), "the flush timed out\n" + first.describe()
    assert stop_seconds <= FLUSH_TIMEOUT_S + 1, "stopping took %.1f s (flush_timeout %d s)" % (
        stop_seconds, FLUSH_TIMEOUT_S)
    assert newest is not None and not missing_at_stop, \
        "after SIGTERM Kafka holds up to %s but misses %s" % (newest, missing_at_stop)
    assert checkpoint == str(newest), "the checkpoint after SIGTERM is %r, the newest record in Kafka %s\n%s" % (
        checkpoint, newest, first.describe())
    assert resumed.last_event_id == str(newest), \
        "the restart asked for Last-Event-ID %r, the last delivered ID is %s" % (resumed.last_event_id, newest)
    assert report.complete(), "the reader missed records: %s" % report.text()
    assert report.gaps == 0, "DATA LOSS across a graceful stop (seed %d)\n%s" % (seed, report.text())
    assert report.duplicates == 0, "a graceful stop and restart replayed events\n" + report.text()
    assert report.order_violations == 0, report.text()



def test_sigterm_while_the_broker_is_down_stops_at_the_flush_timeout_and_loses_nothing(
        make_broker, upstream, state_dir, tmp_path, processes, start_bridge, scenario_summary):
    """Deliveries that cannot finish: the stop waits kafka.flush_timeout, exits 0, and the
    checkpoint only covers what Kafka acknowledged, so the restart replays the rest."""
    seed, _ = scenario_random("stop_broker_down")
    flush_timeout_s = 3
    broker = make_broker(topics=[TOPIC + ":1"])
    kafka = Kafka(broker.bootstrap)
    tail = RecordTail(processes, broker.bootstrap, [TOPIC], tmp_path)
    upstream.route("/stop", NumberedRoute(end=EVENTS, rate_per_s=RATE, at_end="hang"))
    config = reliability_config(broker, state_dir,
                                [{"name": STREAM, "url": upstream.url("/stop"), "topic": TOPIC}],
                                kafka={"flush_timeout": "%ds" % flush_timeout_s})
    memory = MemoryWatch()
    first = start_bridge(config)
    memory.watch(first.pid)
    try:
        wait_until(lambda: tail.checker.records >= EVENTS // 5, seconds(30), interval=0.05,
                   message=lambda: "no progress\n" + first.describe(60))
        broker.down(1)
        # Records keep arriving from the upstream and now pile up unacknowledged.
        def piled_up():
            return (upstream.last_sent_id("/stop") or 0) >= (tail.checker.highest_id(STREAM) or 0) + RATE // 2
        wait_until(piled_up, seconds(20), interval=0.05, message=lambda: first.describe(60))
        signalled_at = time.monotonic()
        first.signal(signal.SIGTERM)
        status = first.wait_for_exit(flush_timeout_s + seconds(10))
        stop_seconds = time.monotonic() - signalled_at
        assert status == 0, "SIGTERM with the broker down: exit status %s\n%s" % (status, first.describe())
        checkpoint = read_checkpoints(state_dir).get(STREAM)

        broker.up(1)
        requests_before = len(upstream.requests("/stop"))
        second = start_bridge(config)
        memory.watch(second.pid)
        requests = upstream.wait_for_requests(requests_before + 1, timeout=seconds(20), path="/stop")
        resumed = requests[requests_before]
        expected = {STREAM: Expected(last=EVENTS)}
        wait_for_delivery(tail, kafka, expected, seconds(60), bridges=[second], context="seed %d" % seed)
        assert second.stop() == 0, second.describe()
        tail.wait_caught_up(kafka, seconds(30))
    finally:
        memory.stop()
        tail.stop()

    report = tail.checker.report(expected)
    scenario_summary(summary_line(
        "stop_with_broker_down", report, memory.peak_kib, seed,
        "stop_took=%.2fs checkpoint=%s resumed_with=%s" % (stop_seconds, checkpoint, resumed.last_event_id)))
    assert log_lines(first, r"flush timeout"), "no flush timeout was logged\n" + first.describe()
    assert flush_timeout_s - 0.5 <= stop_seconds <= flush_timeout_s + 2, \
        "stopping took %.1f s with flush_timeout %d s" % (stop_seconds, flush_timeout_s)
    assert resumed.last_event_id == checkpoint, "the restart asked for %r, the checkpoint on disk is %r" % (
        resumed.last_event_id, checkpoint)
    assert report.complete(), "the reader missed records: %s" % report.text()
    assert report.gaps == 0, "DATA LOSS after a stop with unacknowledged events (seed %d)\n%s\n%s" % (
        seed, report.text(), second.describe(80))

