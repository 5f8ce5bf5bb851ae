"""1,000 streams in one bridge process against one loopback upstream: every stream connects, stays
connected, and delivers all of its events (counted per stream key in Kafka)."""
# ctest-timeout: 240
# ctest-run-serial

import time

from connection_support import per_key_counts, raise_open_file_limit, tail, timeout
from harness import Kafka, wait_until
from sse_upstream import NumberedRoute, SSEUpstream

STREAMS = 1000
EVENTS = 20
TOPIC = "e2e.many"


def test_a_thousand_streams_connect_and_deliver(make_broker, config_for, start_bridge):
    # Both ends hold a socket per stream; the bridge raises its own limit, this process may not have.
    raise_open_file_limit(4 * STREAMS + 1024)
    # A few partitions keep each under the mock broker's ~5 MB; the stream name is the key.
    broker = make_broker(topics=[TOPIC + ":4"])
    kafka = Kafka(broker.bootstrap)
    names = ["s%04d" % i for i in range(STREAMS)]
    with SSEUpstream() as upstream:
        upstream.route("*", NumberedRoute(end=EVENTS, at_end="hang", payload="{n} of a small feed"))
        config = config_for(broker, [{"name": name, "url": upstream.url("/feeds/" + name), "topic": TOPIC}
                                     for name in names])
        config["log"] = {"level": "info"}
        started = time.monotonic()
        bridge = start_bridge(config)

        def every_stream_connected():
            bridge.assert_running()
            return upstream.open_connections() >= STREAMS
        wait_until(every_stream_connected, timeout(60), interval=0.2,
                   message=lambda: "%d of %d streams connected\n%s" % (upstream.open_connections(), STREAMS,
                                                                       tail(bridge)))
        connected_after = time.monotonic() - started

        def delivered():
            bridge.assert_running()
            return kafka.count(TOPIC) >= STREAMS * EVENTS
        wait_until(delivered, timeout(90), interval=0.5,
                   message=lambda: "%d of %d records in Kafka\n%s" % (kafka.count(TOPIC), STREAMS * EVENTS,
                                                                      tail(bridge)))
        # Still one connection per stream, each opened once: nothing reconnected.
        assert upstream.open_connections() == STREAMS, tail(bridge)
        paths = {}
        for request in upstream.requests():
            paths[request.path] = paths.get(request.path, 0) + 1
        assert paths == {"/feeds/" + name: 1 for name in names}, \
            "streams that connected more than once: %r\n%s" % (
                {p: n for p, n in paths.items() if n != 1}, tail(bridge))
        assert bridge.stop(timeout(30)) == 0, tail(bridge)

    records = kafka.all_records(TOPIC, timeout=timeout(60))
    counts = per_key_counts(records)
    wrong = {name: counts.get(name, 0) for name in names if counts.get(name, 0) != EVENTS}
    assert not wrong, "streams without exactly %d records: %r" % (EVENTS, dict(list(wrong.items())[:20]))
    assert set(counts) == set(names)
    # Each stream's records are in stream order (one key, one partition).
    by_key = {}
    for r in records:
        by_key.setdefault(r.key, []).append(r.value)
    expected = ["%d of a small feed" % n for n in range(1, EVENTS + 1)]
    out_of_order = [k for k, values in by_key.items() if values != expected]
    assert not out_of_order, (out_of_order[:10], by_key[out_of_order[0]] if out_of_order else None)
    print("1000 streams connected in %.1f s" % connected_after)
