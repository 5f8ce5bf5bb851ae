"""How connections end: idle_timeout (no bytes at all; comments count), a server that closes right
after the headers, connect_timeout against a listener that never completes a handshake, and the
ends of finite streams (`on_end: stop`, `stop_on_data`)."""
# ctest-timeout: 200

import datetime

from connection_support import (JSON_LOG, SLACK, JsonLog, UnacceptingListener, assert_gap, describe_requests,
                                tail, timeout, wait_requests)
from harness import Kafka, wait_until
from sse_upstream import Route, close, end, hang, send, sleep, sse_event

TOPIC = "e2e.streamend"
FAST = {"initial_delay": "100ms", "max_delay": "100ms"}


def stream(name, url, **settings):
    return dict({"name": name, "url": url, "topic": TOPIC, "reconnect": FAST}, **settings)


def heartbeats(interval_ms, count):
    return [step for _ in range(count) for step in (send(b":\n"), sleep(interval_ms))]


def test_silence_after_the_headers_reconnects_after_idle_timeout(broker, upstream, config_for, start_bridge):
    upstream.route("/silent", Route(body=[hang()]))
    bridge = start_bridge(config_for(broker, [stream("silent", upstream.url("/silent"), idle_timeout="600ms")]),
                          args=JSON_LOG)
    requests = wait_requests(upstream, 3, "/silent", 2 * (0.7 + SLACK) + 5, bridge)
    history = describe_requests(requests)
    for i, request in enumerate(requests[:2]):
        closed_at = wait_until(lambda: request.connection.closed_at, timeout(5),
                               message="connection %d not closed\n%s" % (i, tail(bridge)))
        # The bridge gave up on the silent connection idle_timeout after it opened it.
        assert_gap(closed_at - request.monotonic, 600, 600, "silent connection %d held open\n%s" % (i, history),
                   bridge)
        # ... and came back after a failed attempt's wait: [50, 100] ms.
        assert_gap(requests[i + 1].monotonic - closed_at, 50, 100, "wait %d after the idle close" % (i + 1), bridge)
    line = JsonLog(bridge).wait_for(r"disconnected", "silent")[0]
    assert "idle" in line.get("error", ""), line


def test_comments_count_as_bytes_for_idle_timeout(broker, upstream, config_for, start_bridge):
    upstream.route("/heartbeat", Route(body=heartbeats(150, 200) + [hang()]))
    upstream.route("/silent", Route(body=[hang()]))
    bridge = start_bridge(config_for(broker, [
        stream("heartbeat", upstream.url("/heartbeat"), idle_timeout="500ms"),
        stream("control", upstream.url("/silent"), idle_timeout="500ms")]), args=JSON_LOG)
    # While the silent control stream times out three times (>= 1.5 s), heartbeats every 150 ms
    # keep the other one open.
    wait_requests(upstream, 4, "/silent", 4 * (0.6 + SLACK) + 5, bridge)
    assert len(upstream.requests("/heartbeat")) == 1, describe_requests(upstream.requests("/heartbeat")) + \
        tail(bridge)
    assert upstream.open_connections("/heartbeat") == 1
    assert not JsonLog(bridge).lines(r"disconnected|reconnecting", "heartbeat"), tail(bridge)


def test_a_server_that_closes_after_the_headers_is_a_failed_attempt(broker, upstream, config_for, start_bridge):
    upstream.route("/fin", Route(body=[close()]))
    upstream.route("/rst", Route(body=[close(rst=True)]))
    backoff = {"initial_delay": "200ms", "max_delay": "800ms"}
    bridge = start_bridge(config_for(broker, [stream("fin", upstream.url("/fin"), reconnect=backoff),
                                              stream("rst", upstream.url("/rst"), reconnect=backoff)]),
                          args=JSON_LOG)
    log = JsonLog(bridge)
    for name, path in (("fin", "/fin"), ("rst", "/rst")):
        requests = wait_requests(upstream, 3, path, 0.6 + 2 * SLACK + 5, bridge)
        delays = log.reconnect_delays(name)
        # Failures, so the wait grows: [100, 200] then [200, 400].
        for i, (low, high) in enumerate([(100, 200), (200, 400)]):
            assert low <= delays[i] <= high, (name, delays, tail(bridge))
            assert_gap(requests[i + 1].monotonic - requests[i].connection.closed_at, delays[i], delays[i],
                       "%s wait %d\n%s" % (name, i + 1, describe_requests(requests)), bridge)
        assert log.lines(r"^disconnected$", name), tail(bridge)


def test_connect_timeout_against_a_listener_that_never_completes_a_handshake(broker, config_for, start_bridge):
    with UnacceptingListener() as listener:
        bridge = start_bridge(config_for(broker, [stream("unreachable", listener.url("/feed"),
                                                         connect_timeout="400ms")]), args=JSON_LOG)
        log = JsonLog(bridge)
        lines = log.wait_for(r"^disconnected$", "unreachable", count=3, timeout_s=3 * (0.5 + SLACK) + 5)
        connects = log.lines(r"^connecting$", "unreachable")
    for line in lines[:3]:
        assert "timed out" in line.get("error", "").lower() or "timeout" in line.get("error", "").lower(), line
    # Each attempt lasted connect_timeout: from its "connecting" line to its "disconnected" line.
    for i, (started, ended) in enumerate(zip(connects, lines[:3])):
        assert_gap(log_seconds(ended) - log_seconds(started), 400, 400,
                   "attempt %d from connecting to disconnected" % (i + 1), bridge, early=0.005)


def log_seconds(line):
    """The UNIX time (with ms) of a JSON log line's ts, e.g. 2026-11-23T21:40:54.967Z."""
    when = datetime.datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return when.replace(tzinfo=datetime.timezone.utc).timestamp()


def test_on_end_stop_keeps_a_finite_stream_stopped(make_broker, upstream, config_for, start_bridge):
    broker = make_broker(topics=[TOPIC + ":1"])
    kafka = Kafka(broker.bootstrap)
    events = [sse_event("token %d" % n, id=str(n)) for n in (1, 2, 3)]
    upstream.route("/finite", Route(body=[send(e) for e in events] + [end()]))
    upstream.route("/control", Route(body=[send(b": nothing\n\n"), end()]))
    bridge = start_bridge(config_for(broker, [stream("finite", upstream.url("/finite"), on_end="stop"),
                                              stream("control", upstream.url("/control"))]), args=JSON_LOG)
    kafka.wait_for_records(TOPIC, 3, timeout=timeout(20), bridge=bridge)
    JsonLog(bridge).wait_for(r"on_end", "finite")
    # The control stream ends the same way and reopens after its 100 ms base delay: 6 requests
    # (>= 0.5 s) in which the stopped stream would have come back too.
    wait_requests(upstream, 6, "/control", 6 * (0.1 + SLACK) + 5, bridge)
    assert len(upstream.requests("/finite")) == 1, describe_requests(upstream.requests("/finite")) + tail(bridge)
    assert bridge.stop() == 0, tail(bridge)
    assert [r.value for r in kafka.all_records(TOPIC)] == ["token 1", "token 2", "token 3"]


def test_stop_on_data_ends_the_response_without_producing_the_marker(make_broker, upstream, config_for,
                                                                     start_bridge):
    broker = make_broker(topics=[TOPIC + ":1"])
    kafka = Kafka(broker.bootstrap)
    completion = [send(sse_event('{"token":"%s"}' % t, id=str(i))) for i, t in enumerate(["Hel", "lo", "!"], 1)]
    marker = send(sse_event("[DONE]", id="4"))
    after = send(sse_event("after the marker", id="5"))
    # The LLM style: stop_on_data with on_end: stop; the server keeps the response open.
    upstream.route("/chat", Route(body=completion + [marker, after, hang()]))
    # Without on_end: stop the marker is a normal end: reopened with the marker's ID as
    # Last-Event-ID (it is not produced, but it was seen).
    upstream.route("/again", [Route(body=[send(sse_event("first", id="a1")), send(sse_event("[DONE]", id="a2")),
                                          send(sse_event("ignored", id="a3")), hang()]),
                              Route(body=[send(sse_event("second", id="a4")), hang()])])
    bridge = start_bridge(config_for(broker, [
        stream("chat", upstream.url("/chat"), stop_on_data="[DONE]", on_end="stop", key="id"),
        stream("again", upstream.url("/again"), stop_on_data="[DONE]", key="id",
               reconnect={"initial_delay": "300ms", "max_delay": "5s"})]), args=JSON_LOG)
    kafka.wait_for_records(TOPIC, 5, timeout=timeout(20), bridge=bridge)
    requests = wait_requests(upstream, 2, "/again", 5, bridge)
    assert requests[1].last_event_id == "a2", describe_requests(requests)
    # The marker ends the response: the bridge closes it although the server holds it open.
    wait_until(lambda: requests[0].connection.closed_at, timeout(5), message=lambda: tail(bridge))
    chat = wait_requests(upstream, 1, "/chat", 5, bridge)[0]
    wait_until(lambda: chat.connection.closed_at, timeout(5),
               message=lambda: "the [DONE] response is still open\n" + tail(bridge))
    JsonLog(bridge).wait_for(r"on_end", "chat")
    # A short connection, so the normal end counts as a failed attempt: [d/2, d], d = 300.
    assert_gap(requests[1].monotonic - requests[0].connection.closed_at, 150, 300,
               "reopen after the marker (a short normal end: the first failure's wait)", bridge)
    assert len(upstream.requests("/chat")) == 1, tail(bridge)
    assert bridge.stop() == 0, tail(bridge)
    got = [(r.key, r.value) for r in kafka.all_records(TOPIC)]
    assert sorted(got) == sorted([("1", '{"token":"Hel"}'), ("2", '{"token":"lo"}'), ("3", '{"token":"!"}'),
                                  ("a1", "first"), ("a4", "second")]), got
    assert [v for k, v in got if k in ("1", "2", "3")] == ['{"token":"Hel"}', '{"token":"lo"}', '{"token":"!"}']
