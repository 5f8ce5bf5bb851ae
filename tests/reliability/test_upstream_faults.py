"""Scenario 4: broken upstreams. The bridge stays up, its memory stays bounded, and every valid
event arrives without a gap.

Stream "faulty" is served by FaultyFeed: events 1..N with fixed content per ID, in slices of
SLICE events per connection, each connection ending with the next fault of the cycle:
  FIN after the slice | half an event then RST | a stall (no bytes: idle_timeout, 1 s, fires) |
  a normal end of the response | garbage bytes (invalid UTF-8, NULs) then FIN.
Inside the events: every 97th event carries invalid UTF-8 and a NUL in its data (delivered,
with U+FFFD) after a garbage line that has no colon (ignored), and two events carry a 10 MB data
line (larger than max_event_size: dropped by design, so their IDs are not expected).
Stream "choppy" is a plain numbered feed at full speed that closes every 777 events.
Asserted: the bridge runs throughout and stops with 0, its peak RSS grows by less than
OVERSIZE_GROWTH_MIB over its size before the first 10 MB line (a bridge that buffered one would
grow by 10 MB), the oversized events were dropped and logged, every other ID arrived (gaps = 0).
"""
# ctest-timeout: 200

import threading

from gap_check import Expected
from harness import Kafka, wait_until
from reliability_support import (MemoryWatch, RecordTail, fault_text, log_lines, mib, reliability_config,
                                 scaled, scenario_random, seconds, summary_line, wait_for_delivery)
from sse_upstream import NumberedRoute, Route, close, end, hang, raw, send

EVENTS = scaled(20_000, 8_000)
SLICE = scaled(1_000, 500)
GARBAGE_EVERY = 97
OVERSIZED_BYTES = 10 * 1024 * 1024
OVERSIZE_GROWTH_MIB = scaled(8, 64)
FAULTS = ("fin", "half-event-rst", "stall", "normal-end", "garbage-fin")


class FaultyFeed:
    """A route (callable per request): resumes after Last-Event-ID, serves one slice, then the next
    fault of FAULTS. Thread-safe counters say what it did."""

    def __init__(self, total, slice_size, oversized_ids):
        self.total = total
        self.slice_size = slice_size
        self.oversized_ids = frozenset(oversized_ids)
        self.connections = 0
        self.faults = dict.fromkeys(FAULTS, 0)
        self.oversized_sent = 0
        self._lock = threading.Lock()

    def event(self, n):
        if n in self.oversized_ids:
            return b"id: %d\ndata: " % n + b"A" * OVERSIZED_BYTES + b"\n\n"
        if n % GARBAGE_EVERY == 0:
            return (b"id: %d\n\xff\xfe garbage field without a colon \x00\n" % n
                    + b"data: bad \xff\xfe\x00 nul \xc3\x28 end %d\n\n" % n)
        return b"id: %d\ndata: event %d\n\n" % (n, n)

    def __call__(self, request):
        with self._lock:
            index = self.connections
            self.connections += 1
        last = (request.last_event_id or "").strip()
        first = int(last) + 1 if last.isdigit() else 1
        if first > self.total:
            return Route(body=[hang()])
        stop = min(first + self.slice_size - 1, self.total)
        body, chunk = [], bytearray()
        for n in range(first, stop + 1):
            if n in self.oversized_ids:
                if chunk:
                    body.append(send(bytes(chunk)))
                    chunk = bytearray()
                body.append(send(self.event(n)))
                with self._lock:
                    self.oversized_sent += 1
                continue
            chunk += self.event(n)
            if len(chunk) >= 32768:
                body.append(send(bytes(chunk)))
                chunk = bytearray()
        if chunk:
            body.append(send(bytes(chunk)))
        if stop == self.total:
            return Route(body=body + [hang()])
        fault = FAULTS[index % len(FAULTS)]
        with self._lock:
            self.faults[fault] += 1
        if fault == "fin":
            body.append(close())
        elif fault == "half-event-rst":
            body += [send(self.event(stop + 1)[:9]), close(rst=True)]
        elif fault == "stall":
            body.append(hang())
        elif fault == "normal-end":
            body.append(end())
        else:
            body += [raw(b"\x00\xff\xfe\x00garbage\xc0\xaf"), close()]
        return Route(body=body)


def test_upstream_faults_keep_the_bridge_up_bounded_and_gapless(make_broker, upstream, state_dir, tmp_path,
                                                               processes, start_bridge, scenario_summary):
    seed, rng = scenario_random("upstream_faults")
    oversized = sorted(rng.sample(range(EVENTS // 5, EVENTS * 4 // 5), 2))
    feed = FaultyFeed(EVENTS, SLICE, oversized)
    topics = ["rel.upstream.faulty", "rel.upstream.choppy"]
    broker = make_broker(topics=[t + ":1" for t in topics])
    kafka = Kafka(broker.bootstrap)
    tail = RecordTail(processes, broker.bootstrap, topics, tmp_path)
    upstream.route("/faulty", feed)
    upstream.route("/choppy", NumberedRoute(end=EVENTS, disconnect_every=777, at_end="hang"))
    config = reliability_config(broker, state_dir, [
        {"name": "faulty", "url": upstream.url("/faulty"), "topic": topics[0]},
        {"name": "choppy", "url": upstream.url("/choppy"), "topic": topics[1]}],
        defaults={"idle_timeout": "1s"})
    expected = {"faulty": Expected(last=EVENTS, excluded=frozenset(oversized)),
                "choppy": Expected(last=EVENTS)}

    memory = MemoryWatch(interval=0.05)
    bridge = start_bridge(config)
    memory.watch(bridge.pid)
    try:
        # Where the bridge stands before the first 10 MB line reaches it.
        def oversized_started():
            bridge.assert_running()
            return feed.oversized_sent > 0
        wait_until(oversized_started, seconds(60), interval=0.01,
                   message=lambda: "the feed never reached event %d\n%s" % (oversized[0], bridge.describe()))
        before_oversized_kib = memory.sample().get("VmHWM", 0)
        wait_for_delivery(tail, kafka, expected, seconds(120), bridges=[bridge], context="seed %d" % seed)
        memory.sample()
        bridge.assert_running()
        assert bridge.stop() == 0, bridge.describe()
        tail.wait_caught_up(kafka, seconds(30))
    finally:
        memory.stop()
        tail.stop()

    report = tail.checker.report(expected)
    growth_kib = memory.peak_kib - before_oversized_kib
    scenario_summary(summary_line(
        "upstream_faults", report, memory.peak_kib, seed,
        "connections=%d faults=%s oversized_sent=%d rss_growth_over_oversized=%s %s" % (
            feed.connections, feed.faults, feed.oversized_sent, mib(growth_kib),
            fault_text([bridge]))))

    assert all(feed.faults[f] > 0 for f in FAULTS), "not every fault was served: %s" % feed.faults
    idle = log_lines(bridge, r"reconnecting.*idle_timeout")
    assert idle, "no reconnect after idle_timeout although connections stalled\n" + bridge.describe(100)
    dropped = log_lines(bridge, r"event larger than max_event_size dropped")
    assert dropped, "no oversized event was logged as dropped\n" + bridge.describe(100)
    assert growth_kib < OVERSIZE_GROWTH_MIB * 1024, \
        "RSS grew by %s while 10 MB lines streamed past (bound %d MiB): an oversized event was buffered" % (
            mib(growth_kib), OVERSIZE_GROWTH_MIB)
    assert report.complete(), "the reader missed records: %s" % report.text()
    assert report.gaps == 0, "DATA LOSS under upstream faults (seed %d, oversized %s)\n%s\n%s" % (
        seed, oversized, report.text(), bridge.describe(100))
    assert report.unexpected == 0, "unexpected records (an oversized event produced?)\n" + report.text()
    assert report.order_violations == 0, report.text()
