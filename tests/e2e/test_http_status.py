"""What the bridge does with each class of HTTP answer (interface.md "Reconnection"):
200 + text/event-stream (parameters and case ignored) opens the stream; 204 stops it; other
statuses and a wrong or missing Content-Type are failed attempts with backoff (the first bytes of
the body logged, bounded); 401/403 wait max_delay and log an authentication error; 429/503 wait
Retry-After (seconds or HTTP date), capped by reconnect.max_retry_after."""
# ctest-timeout: 200

import time

from connection_support import (JSON_LOG, SLACK, JsonLog, assert_gap, backoff_window, describe_requests,
                                http_date, request_gaps, tail, timeout, wait_requests)
from harness import Kafka
from sse_upstream import Route, hang, send, sleep, sse_event, status_route

TOPIC = "e2e.status"
FAST = {"initial_delay": "100ms", "max_delay": "100ms"}


def stream(name, url, **settings):
    return dict({"name": name, "url": url, "topic": TOPIC}, **settings)


def open_route(*chunks):
    return Route(body=[send(c) for c in chunks] + [hang()])


def check_waits(log, name, requests, expected, bridge):
    """expected: (low_ms, high_ms) per wait; the logged delays lie in them and the upstream saw
    the requests that far apart."""
    delays = log.reconnect_delays(name)
    history = describe_requests(requests)
    assert len(delays) >= len(expected), "%s: logged delays %r\n%s" % (name, delays, tail(bridge))
    for i, ((low, high), delay, gap) in enumerate(zip(expected, delays, request_gaps(requests)), start=1):
        assert low <= delay <= high, "%s wait %d: logged %d ms, expected [%d, %d]; all %r\n%s\n%s" % (
            name, i, delay, low, high, delays, history, tail(bridge))
        assert_gap(gap, delay, delay, "%s wait %d measured at the upstream\n%s" % (name, i, history), bridge)


def test_200_with_event_stream_content_type_opens_the_stream(make_broker, upstream, config_for, start_bridge):
    broker = make_broker(topics=[TOPIC + ":1"])
    kafka = Kafka(broker.bootstrap)
    content_types = {"charset": "text/event-stream; charset=utf-8",
                     "mixedcase": "Text/Event-Stream ;Charset=UTF-8"}
    streams = []
    for name, content_type in content_types.items():
        upstream.route("/" + name, Route(headers={"Content-Type": content_type},
                                         body=[send(sse_event("hello from " + name, id="1")), hang()]))
        streams.append(stream(name, upstream.url("/" + name)))
    bridge = start_bridge(config_for(broker, streams), args=JSON_LOG)
    records = kafka.wait_for_records(TOPIC, 2, timeout=timeout(20), bridge=bridge)
    assert sorted(r.value for r in records) == ["hello from charset", "hello from mixedcase"]
    log = JsonLog(bridge)
    for name in content_types:
        connected = log.wait_for(r"^connected$", name)
        assert connected[0]["status"] == 200, connected
        assert len(upstream.requests("/" + name)) == 1, tail(bridge)
        assert not log.lines(r"request failed|reconnecting", name), tail(bridge)


def test_204_stops_the_stream_for_good(broker, upstream, config_for, start_bridge):
    upstream.route("/gone", Route(status=204, headers={"Content-Type": None}))
    upstream.route("/control", status_route(500))
    bridge = start_bridge(config_for(broker, [stream("nocontent", upstream.url("/gone"), reconnect=FAST),
                                              stream("control", upstream.url("/control"), reconnect=FAST)]),
                          args=JSON_LOG)
    log = JsonLog(bridge)
    stopped = log.wait_for(r"204", "nocontent")
    assert stopped[0]["level"] in ("warn", "warning", "info", "error"), stopped
    # The control stream has the same backoff: while it makes 12 attempts (>= 550 ms), a 204
    # stream that retried would have made several too.
    wait_requests(upstream, 12, "/control", 12 * (0.1 + SLACK) + 5, bridge)
    assert len(upstream.requests("/gone")) == 1, describe_requests(upstream.requests("/gone")) + tail(bridge)
    assert not log.lines(r"^reconnecting$", "nocontent"), tail(bridge)
    bridge.assert_running()


def test_500_and_404_are_failed_attempts_with_backoff(broker, upstream, config_for, start_bridge):
    upstream.route("/500", status_route(500, body="server on fire\n"))
    upstream.route("/404", status_route(404, body="no such feed\n"))
    backoff = {"initial_delay": "200ms", "max_delay": "800ms"}
    bridge = start_bridge(config_for(broker, [stream("s500", upstream.url("/500"), reconnect=backoff),
                                              stream("s404", upstream.url("/404"), reconnect=backoff)]),
                          args=JSON_LOG)
    log = JsonLog(bridge)
    expected = [backoff_window(200, 800, n) for n in (1, 2, 3)]
    for name, path, said in (("s500", "/500", "server on fire"), ("s404", "/404", "no such feed")):
        requests = wait_requests(upstream, 4, path, 1.4 + 3 * SLACK + 5, bridge)
        check_waits(log, name, requests[:4], expected, bridge)
        failed = log.wait_for(r"request failed", name)[0]
        assert failed["status"] == int(path[1:]), failed
        assert said in failed.get("body", ""), failed


def test_401_and_403_are_retried_at_max_delay_with_an_authentication_error(broker, upstream, config_for,
                                                                            start_bridge):
    upstream.route("/401", status_route(401, body="who are you\n"))
    upstream.route("/403", status_route(403, body="not you\n"))
    backoff = {"initial_delay": "100ms", "max_delay": "700ms"}
    bridge = start_bridge(config_for(broker, [stream("s401", upstream.url("/401"), reconnect=backoff),
                                              stream("s403", upstream.url("/403"), reconnect=backoff)]),
                          args=JSON_LOG)
    log = JsonLog(bridge)
    for name, path in (("s401", "/401"), ("s403", "/403")):
        requests = wait_requests(upstream, 4, path, 2.1 + 3 * SLACK + 5, bridge)
        # max_delay itself each time: no jitter, no growth, not initial_delay.
        check_waits(log, name, requests[:4], [(700, 700)] * 3, bridge)
        failed = log.wait_for(r"request failed", name)[0]
        assert failed["level"] == "error", failed
        assert "authentication" in failed.get("error", "").lower(), failed
        assert failed["status"] == int(path[1:]), failed


def test_429_and_503_wait_retry_after_in_seconds_or_as_a_date_capped(broker, upstream, config_for,
                                                                      start_bridge):
    def dated(seconds_ahead, status):
        # The date is computed when the request arrives, so the wait it asks for is known.
        return lambda request: status_route(status, retry_after=http_date(time.time() + seconds_ahead))

    upstream.route("/seconds", [status_route(429, retry_after="1"), status_route(503, retry_after=" 1 "),
                                open_route(b": open\n\n")])
    upstream.route("/date", [dated(3, 503), open_route(b": open\n\n")])
    upstream.route("/capped", [status_route(503, retry_after="100"), dated(60, 429), open_route(b": open\n\n")])
    upstream.route("/plain", [status_route(503), open_route(b": open\n\n")])
    fast = {"initial_delay": "100ms", "max_delay": "5s"}
    bridge = start_bridge(config_for(broker, [
        stream("seconds", upstream.url("/seconds"), reconnect=fast),
        stream("date", upstream.url("/date"), reconnect=fast),
        stream("capped", upstream.url("/capped"), reconnect=dict(fast, max_retry_after="700ms")),
        stream("plain", upstream.url("/plain"), reconnect=fast),
    ]), args=JSON_LOG)
    log = JsonLog(bridge)
    check_waits(log, "seconds", wait_requests(upstream, 3, "/seconds", 2 + 2 * SLACK + 5, bridge),
                [(1000, 1000), (1000, 1000)], bridge)
    # A date whole seconds ahead: floor(now + 3) - now is in (2 s, 3 s].
    check_waits(log, "date", wait_requests(upstream, 2, "/date", 3 + SLACK + 5, bridge), [(1900, 3000)], bridge)
    check_waits(log, "capped", wait_requests(upstream, 3, "/capped", 1.4 + 2 * SLACK + 5, bridge),
                [(700, 700), (700, 700)], bridge)
    # Without Retry-After, 503 is an ordinary failed attempt.
    check_waits(log, "plain", wait_requests(upstream, 2, "/plain", 0.1 + SLACK + 5, bridge),
                [backoff_window(100, 5000, 1)], bridge)


def test_wrong_or_missing_content_type_is_a_failed_attempt(make_broker, upstream, config_for, start_bridge):
    broker = make_broker(topics=[TOPIC + ":1"])
    kafka = Kafka(broker.bootstrap)
    # SSE-looking bodies: none of it may become a record.
    head = "<html>data: not an event\n\n"
    html_body = head + "A" * (600 - len(head)) + "TAIL-BEYOND-512"
    upstream.route("/html", status_route(200, body=html_body, content_type="text/html; charset=utf-8"))
    upstream.route("/untyped", Route(headers={"Content-Type": None}, framing="length",
                                     body=[send(sse_event("not an event either", id="9"))]))
    # A streaming server with the wrong type: the body never ends, heartbeats keep it busy.
    upstream.route("/plain-stream", Route(headers={"Content-Type": "text/plain"},
                                          body=[send(sse_event("streamed, not an event", id="5"))] +
                                          [send(b":\n"), sleep(100)] * 600))
    upstream.route("/good", open_route(sse_event("the control stream's event", id="1")))
    backoff = {"initial_delay": "200ms", "max_delay": "800ms"}
    bridge = start_bridge(config_for(broker, [stream("html", upstream.url("/html"), reconnect=backoff),
                                              stream("untyped", upstream.url("/untyped"), reconnect=backoff),
                                              stream("plain-stream", upstream.url("/plain-stream"),
                                                     reconnect=backoff),
                                              stream("good", upstream.url("/good"))]), args=JSON_LOG)
    log = JsonLog(bridge)
    for name, path in (("html", "/html"), ("untyped", "/untyped")):
        requests = wait_requests(upstream, 3, path, 0.6 + 2 * SLACK + 5, bridge)
        check_waits(log, name, requests[:3], [(100, 200), (200, 400)], bridge)

    failed = log.wait_for(r"request failed", "html")[0]
    assert "text/html" in failed.get("error", "") and "Content-Type" in failed.get("error", ""), failed
    body = failed.get("body", "")
    # The start of what the server said is there, bounded: nothing past the first 512 bytes.
    assert body.startswith("<html>data: not an event"), failed
    assert 100 <= len(body) <= 512 and "TAIL-BEYOND-512" not in body, failed
    assert log.wait_for(r"request failed", "untyped")[0].get("status") == 200

    # The attempt fails as soon as the head is known to be wrong (with at most a short wait for
    # the body's first bytes), not when the never-ending body stops or idle_timeout (5 min) fires.
    try:
        failed = log.wait_for(r"request failed", "plain-stream", timeout_s=3)[0]
    except AssertionError as error:
        raise AssertionError("a 200 text/plain response whose body does not end was not failed within 3 s "
                             "(requests: %d): %s" % (len(upstream.requests("/plain-stream")), error)) from None
    assert "streamed, not an event" in failed.get("body", ""), failed
    wait_requests(upstream, 2, "/plain-stream", 3 + SLACK, bridge)

    kafka.wait_for_records(TOPIC, 1, timeout=timeout(20), bridge=bridge)
    assert bridge.stop() == 0, tail(bridge)
    records = kafka.all_records(TOPIC)
    assert [(r.key, r.value) for r in records] == [("good", "the control stream's event")], records
