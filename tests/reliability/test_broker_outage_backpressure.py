"""Scenario 2: every broker down for 20 s while the upstreams produce at full speed.

Four numbered streams (one single-partition topic each) run at full speed; then `down-all` takes
every mock broker away for 20 s. With kafka.max_in_flight_events at 20,000 the bridge must stop
reading (interface.md "Delivery and resume": backpressure instead of unbounded memory or drops):
- the bridge's peak RSS (VmHWM) stays under RSS_BOUND_MIB (a stated bound; see below),
- the upstreams are throttled: their writes block. Nothing at all gets through once the pipes
  are full (after SETTLE_S seconds), and what got through before fits in the kernel's socket
  buffers (tcp_wmem + tcp_rmem maximum per connection) plus the in-flight limit: nothing else
  absorbed it. The summary compares it with what full speed would have sent meanwhile,
- after `up-all` every event arrives, in stream order, with no gap.
Events carry 256 bytes of padding, so the TCP buffers fill with fewer events (the reader keeps up).
The RSS bound: the bridge idles at ~20 MiB; 20,000 records of ~300 bytes in flight in librdkafka
plus curl's paused transfers add ~15 MiB (peaks of ~38 MiB seen). 96 MiB leaves room for
allocator slack while still failing a bridge that buffers what the upstreams send at full speed
(20-30 MiB per second).
Under SSE2KAFKA_SANITIZED=1 the bound is 640 MiB (ASan's shadow memory and quarantine).
"""
# ctest-timeout: 200

import time

from harness import Kafka
from gap_check import Expected
from reliability_support import (MemoryWatch, RecordTail, fault_text, log_lines, mib, numbered_event_bytes,
                                 observe_for, reliability_config, scaled, scenario_random, seconds,
                                 summary_line, wait_for_delivery)
from sse_upstream import NumberedRoute

STREAMS = 4
OUTAGE_S = 20
SETTLE_S = 5                 # after this much of the outage the pipes must be full
FULL_SPEED_S = 1.0
MAX_IN_FLIGHT = 20_000
PAYLOAD_BYTES = 256
RSS_BOUND_MIB = scaled(96, 640)


def test_broker_outage_throttles_upstreams_and_loses_nothing(make_broker, make_upstream, state_dir, tmp_path,
                                                              processes, start_bridge, scenario_summary):
    seed, _ = scenario_random("outage")
    names = ["outage%d" % i for i in range(STREAMS)]
    topics = ["rel.outage.%d" % i for i in range(STREAMS)]
    broker = make_broker(topics=[t + ":1" for t in topics])
    kafka = Kafka(broker.bootstrap)
    tail = RecordTail(processes, broker.bootstrap, topics, tmp_path)
    routes, feeds = {}, {}
    for name in names:
        # Forever, until the test sets `end`. The padding keeps the event count (what the reader
        # must keep up with) low for the bytes that fill the TCP buffers. One server per stream:
        # a full-speed route holds its server's loop, and every stream must run at full speed.
        routes[name] = NumberedRoute(end=None, at_end="hang", payload_size=PAYLOAD_BYTES)
        feeds[name] = make_upstream()
        feeds[name].route("/" + name, routes[name])
    config = reliability_config(broker, state_dir, [
        {"name": name, "url": feeds[name].url("/" + name), "topic": topic} for name, topic in zip(names, topics)],
        kafka={"max_in_flight_events": MAX_IN_FLIGHT}, properties={"compression.type": "lz4"})

    def sent() -> int:
        return sum(feeds[name].events_sent("/" + name) for name in names)

    memory = MemoryWatch()
    bridge = start_bridge(config)
    memory.watch(bridge.pid)
    try:
        for name in names:
            feeds[name].wait_for_requests(1, timeout=seconds(20), path="/" + name)
        # Full speed, Kafka up: how much the upstreams send in FULL_SPEED_S seconds. (Not waiting
        # for the reader here: every second at full speed adds ~100 MB the mock must retain
        # until the reader, slower than the bridge, got to it.)
        t0, sent0 = time.monotonic(), sent()
        observe_for(FULL_SPEED_S, bridge)
        before = sent() - sent0
        before_rate = before / (time.monotonic() - t0)
        rss_before = memory.sample().get("VmRSS", 0)

        broker.down_all()
        down_at, sent_at_down = time.monotonic(), sent()
        bridge.wait_for_log(r"Kafka is behind: pausing upstream reads", timeout=seconds(30))
        observe_for(max(0.0, down_at + SETTLE_S - time.monotonic()), bridge)
        sent_at_settle = sent()
        observe_for(max(0.0, down_at + OUTAGE_S - time.monotonic()), bridge)
        sent_at_end = sent()
        outage_s = time.monotonic() - down_at
        rss_outage = max(memory.rss_between(down_at, time.monotonic()) or [0])
        bridge.assert_running()

        # Stop the feeds a little past where they stand: nothing beyond `end` is ever generated.
        ends = {name: (feeds[name].last_sent_id("/" + name) or 0) + 5_000 for name in names}
        for name in names:
            routes[name].end = ends[name]
        broker.up_all()
        expected = {name: Expected(last=ends[name]) for name in names}
        wait_for_delivery(tail, kafka, expected, seconds(90), bridges=[bridge], context="seed %d" % seed)
        memory.sample()
        assert bridge.stop() == 0, bridge.describe()
        tail.wait_caught_up(kafka, seconds(30))
    finally:
        memory.stop()
        tail.stop()

    report = tail.checker.report(expected)
    during = sent_at_end - sent_at_down
    late = sent_at_end - sent_at_settle
    unthrottled = before_rate * outage_s
    mib_per_event = (numbered_event_bytes(max(ends.values()), "") + PAYLOAD_BYTES) / 1048576.0
    scenario_summary(summary_line(
        "broker_outage", report, memory.peak_kib, seed,
        "before: %.0f ev/s (%.1f MiB/s); outage %.0f s: sent %d ev (%.1f MiB; unthrottled ~%.0f MiB), "
        "%d ev after its first %d s; rss before %s, during %s; %s" % (
            before_rate, before_rate * mib_per_event, outage_s, during, during * mib_per_event,
            unthrottled * mib_per_event, late, SETTLE_S, mib(rss_before), mib(rss_outage), fault_text([bridge]))))

    resumed = log_lines(bridge, r"Kafka caught up: resuming upstream reads")
    assert resumed, "the bridge never resumed reading after the outage\n" + bridge.describe()
    assert before_rate > 1000, "the upstreams were slow before the outage (%.0f ev/s): the test proves " \
        "nothing\n%s" % (before_rate, bridge.describe())
    capacity_mib = STREAMS * _socket_buffer_mib() + MAX_IN_FLIGHT * mib_per_event + 1
    assert during * mib_per_event <= capacity_mib, \
        "the upstreams were not throttled: %.1f MiB sent during the %.0f s outage, more than the socket " \
        "buffers and the in-flight limit hold (%.1f MiB)\n%s" % (
            during * mib_per_event, outage_s, capacity_mib, bridge.describe())
    assert late <= 0.01 * before_rate * (outage_s - SETTLE_S), \
        "the upstreams' writes did not block: %d events sent in the last %.0f s of the outage\n%s" % (
            late, outage_s - SETTLE_S, bridge.describe())
    assert memory.peak_kib <= RSS_BOUND_MIB * 1024, "peak RSS %s exceeds the bound of %d MiB" % (
        mib(memory.peak_kib), RSS_BOUND_MIB)
    assert report.complete(), "the reader missed records: %s" % report.text()
    assert report.gaps == 0, "DATA LOSS after a broker outage (seed %d)\n%s\n%s" % (
        seed, report.text(), bridge.describe(80))
    assert report.order_violations == 0, "records out of stream order\n%s" % report.text()
    assert report.unexpected == 0, report.text()


def _socket_buffer_mib() -> float:
    """The most one loopback TCP connection can hold in flight: the sender's and the receiver's
    maximum buffer (net.ipv4.tcp_wmem and tcp_rmem, third field)."""
    total = 0
    for name in ("tcp_wmem", "tcp_rmem"):
        with open("/proc/sys/net/ipv4/" + name, encoding="ascii") as limits:
            total += int(limits.read().split()[2])
    return total / 1048576.0
