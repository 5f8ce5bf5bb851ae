"""Scenario 1: kill -9 at random moments of a long numbered stream loses nothing.

The upstream serves events 1..N (N = 200,000 at 40,000/s; 50,000 at 15,000/s under
SSE2KAFKA_SANITIZED=1) and resumes after any Last-Event-ID. The bridge is killed with SIGKILL at
10 random points of the stream (seeded; the seed is printed): a random 0-60 ms after its
checkpoint on disk passed the point. Checkpoints are written every 50 ms, so kills land before,
between and during checkpoint writes, with records in flight.
Asserted (interface.md "Delivery and resume"): every restart asks for the event after the
checkpoint it found on disk; that checkpoint only ever names an event Kafka holds; the topic ends
with every ID 1..N (gaps = 0) in stream order; duplicates are reported, not limited.
"""
# ctest-timeout: 240

from harness import Kafka, wait_until
from reliability_support import (MemoryWatch, RecordTail, expected_all, observe_for, read_checkpoints,
                                 reliability_config, scaled, scenario_random, seconds, summary_line,
                                 wait_for_delivery)
from sse_upstream import NumberedRoute

TOPIC = "rel.kill9"
STREAM = "kill9"
KILLS = 10
# Fast, but paced: at full speed the whole stream sits in the TCP buffers at once and whole tens
# of thousands of events are acknowledged between two checkpoint writes, so the kills could not
# be spread over it.
RATE = scaled(40_000, 15_000)


def test_kill9_at_random_moments_leaves_no_gap(make_broker, upstream, state_dir, tmp_path, processes,
                                                start_bridge, scenario_summary):
    total = scaled(200_000, 50_000)
    seed, rng = scenario_random("kill9")
    broker = make_broker(topics=[TOPIC + ":1"])      # one partition: the topic order is the stream order
    kafka = Kafka(broker.bootstrap)
    tail = RecordTail(processes, broker.bootstrap, [TOPIC], tmp_path)
    memory = MemoryWatch()
    upstream.route("/kill9", NumberedRoute(end=total, rate_per_s=RATE, at_end="hang"))
    config = reliability_config(broker, state_dir, [
        {"name": STREAM, "url": upstream.url("/kill9"), "topic": TOPIC}],
        properties={"compression.type": "lz4"})     # keeps the whole topic inside the mock's retention
    expected = expected_all([STREAM], total)

    # Kill points: checkpoint values spread over the stream; each kill comes a random 0-60 ms
    # after the checkpoint on disk reached its point, so it lands anywhere between two writes.
    points = sorted(rng.sample(range(total // 50, total * 19 // 20), KILLS))
    on_disk_at_kill = []        # the checkpoint file's value right after each kill
    first_requests = []         # index of each bridge's first upstream request
    bridges = []
    try:
        for point in points:
            requests_before = len(upstream.requests("/kill9"))
            first_requests.append(requests_before)
            bridge = start_bridge(config)
            bridges.append(bridge)
            memory.watch(bridge.pid)
            upstream.wait_for_requests(requests_before + 1, timeout=seconds(20), path="/kill9")

            def reached(target=point, running=bridge):
                running.assert_running()
                return int(read_checkpoints(state_dir).get(STREAM) or 0) >= target
            wait_until(reached, seconds(60), interval=0.002,
                       message=lambda: "the checkpoint did not reach %d (seed %d)\n%s" % (
                           point, seed, bridges[-1].describe()))
            observe_for(rng.uniform(0, 0.06), bridge)
            memory.sample()
            bridge.kill9()
            on_disk_at_kill.append(read_checkpoints(state_dir).get(STREAM))

        first_requests.append(len(upstream.requests("/kill9")))
        final = start_bridge(config)
        bridges.append(final)
        memory.watch(final.pid)
        upstream.wait_for_requests(first_requests[-1] + 1, timeout=seconds(20), path="/kill9")
        wait_for_delivery(tail, kafka, expected, seconds(120), bridges=[final],
                          context="seed %d, kill points %s" % (seed, points))
        memory.sample()
        assert final.stop() == 0, final.describe()
        tail.wait_caught_up(kafka, seconds(30))
    finally:
        memory.stop()
        tail.stop()

    report = tail.checker.report(expected)
    requests = upstream.requests("/kill9")
    resumed_from = [requests[i].last_event_id for i in first_requests[1:]]
    scenario_summary(summary_line("kill9", report, memory.peak_kib, seed,
                                  "kills=%d checkpoints_at_kills=%s" % (len(points), on_disk_at_kill)))
    # Each restart's first request names the checkpoint the killed bridge left on disk, and that
    # checkpoint names only events that Kafka holds, with everything before them.
    assert resumed_from == on_disk_at_kill, \
        "restarts did not resume from the checkpoint on disk (seed %d): on disk %s, Last-Event-ID sent %s" % (
            seed, on_disk_at_kill, resumed_from)
    for index, on_disk in enumerate(on_disk_at_kill):
        if on_disk:
            assert not tail.checker.missing(STREAM, expected_all([STREAM], int(on_disk))[STREAM], limit=1), \
                "kill %d: the checkpoint %s names events Kafka does not hold (seed %d)\n%s" % (
                    index + 1, on_disk, seed, report.text())

    assert report.complete(), "the reader missed records: %s" % report.text()
    assert report.gaps == 0, "DATA LOSS after kill -9 (seed %d, kill points %s)\n%s\n%s" % (
        seed, points, report.text(), bridges[-1].describe(60))
    assert report.order_violations == 0, "records out of stream order (seed %d)\n%s" % (seed, report.text())
    assert report.unexpected == 0, report.text()
