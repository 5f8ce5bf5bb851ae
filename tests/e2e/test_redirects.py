"""Redirects (interface.md "Reconnection"): 301/302/303/307/308 are followed up to 10 hops;
307/308 keep method and body, 301/302/303 turn a POST into a GET; a loop or an 11th hop fails the
attempt, which is retried with backoff; a missing or empty Location is an error, not a loop; every
reconnect starts again at the configured URL; configured headers are not sent to another origin
(another host or another port) unless `redirect_headers: keep`."""
# ctest-timeout: 200

import pytest

from connection_support import (JSON_LOG, SLACK, JsonLog, assert_gap, backoff_window, describe_requests,
                                tail, timeout, wait_requests)
from harness import Kafka
from sse_upstream import Route, SSEUpstream, close, hang, redirect, send, sse_event

TOPIC = "e2e.redirects"
STATUSES = (301, 302, 303, 307, 308)


def stream(name, url, **settings):
    return dict({"name": name, "url": url, "topic": TOPIC}, **settings)


def open_route(*chunks):
    return Route(body=[send(c) for c in chunks] + [hang()])


@pytest.fixture
def other_upstream():
    server = SSEUpstream().start()
    yield server
    server.stop()


def test_every_redirect_status_is_followed(make_broker, upstream, config_for, start_bridge):
    broker = make_broker(topics=[TOPIC + ":1"])
    kafka = Kafka(broker.bootstrap)
    for status in STATUSES:
        upstream.route("/from-%d" % status, redirect("/to-%d" % status, status))
        upstream.route("/to-%d" % status, open_route(sse_event("via %d" % status, id=str(status))))
    bridge = start_bridge(config_for(broker, [stream("r%d" % s, upstream.url("/from-%d" % s))
                                              for s in STATUSES]), args=JSON_LOG)
    records = kafka.wait_for_records(TOPIC, len(STATUSES), timeout=timeout(20), bridge=bridge)
    assert sorted((r.key, r.value) for r in records) == [("r%d" % s, "via %d" % s) for s in STATUSES]
    log = JsonLog(bridge)
    for status in STATUSES:
        connected = log.wait_for(r"^connected$", "r%d" % status)[0]
        assert connected["redirects"] == 1, connected
        assert [r.method for r in upstream.requests("/from-%d" % status)] == ["GET"]
        assert [r.method for r in upstream.requests("/to-%d" % status)] == ["GET"]


def test_post_keeps_method_and_body_on_307_308_and_becomes_get_on_301_302_303(broker, upstream, config_for,
                                                                             start_bridge):
    body = '{"prompt":"hello","stream":true}'
    for status in STATUSES:
        upstream.route("/post-%d" % status, redirect("/landed-%d" % status, status))
        upstream.route("/landed-%d" % status, open_route(b": open\n\n"))
    bridge = start_bridge(config_for(broker, [
        stream("p%d" % s, upstream.url("/post-%d" % s), method="POST", body=body) for s in STATUSES]),
        args=JSON_LOG)
    for status in STATUSES:
        first = wait_requests(upstream, 1, "/post-%d" % status, 10, bridge)[0]
        assert (first.method, first.body) == ("POST", body.encode()), (status, first)
        landed = wait_requests(upstream, 1, "/landed-%d" % status, 10, bridge)[0]
        if status in (307, 308):
            assert (landed.method, landed.body) == ("POST", body.encode()), (status, landed, tail(bridge))
        else:
            assert (landed.method, landed.body) == ("GET", b""), (status, landed, tail(bridge))
            assert int(landed.headers.get("Content-Length", "0")) == 0, (status, landed.headers)
            assert "Transfer-Encoding" not in landed.headers, (status, landed.headers)
    log = JsonLog(bridge)
    for status in STATUSES:
        log.wait_for(r"^connected$", "p%d" % status)


def test_ten_hops_are_followed_and_an_eleventh_fails_the_attempt(make_broker, upstream, config_for,
                                                                 start_bridge):
    broker = make_broker(topics=[TOPIC + ":1"])
    kafka = Kafka(broker.bootstrap)
    for chain, hops in (("c10", 10), ("c11", 11)):
        for i in range(hops):
            # Absolute and relative Locations alternate.
            target = "/%s/%d" % (chain, i + 1)
            upstream.route("/%s/%d" % (chain, i), redirect(upstream.url(target) if i % 2 else target, 307))
        upstream.route("/%s/%d" % (chain, hops), open_route(sse_event("after %d hops" % hops, id="1")))
    backoff = {"initial_delay": "200ms", "max_delay": "800ms"}
    bridge = start_bridge(config_for(broker, [stream("c10", upstream.url("/c10/0"), reconnect=backoff),
                                              stream("c11", upstream.url("/c11/0"), reconnect=backoff)]),
                          args=JSON_LOG)
    records = kafka.wait_for_records(TOPIC, 1, timeout=timeout(20), bridge=bridge)
    assert [(r.key, r.value) for r in records] == [("c10", "after 10 hops")]
    log = JsonLog(bridge)
    assert log.wait_for(r"^connected$", "c10")[0]["redirects"] == 10

    starts = wait_requests(upstream, 3, "/c11/0", 0.6 + 2 * SLACK + 5, bridge)
    failed = log.wait_for(r"request failed|disconnected", "c11")[0]
    assert "redirect" in failed.get("error", "").lower(), failed
    assert upstream.requests("/c11/11") == [], "the 12th URL must never be asked for\n" + tail(bridge)
    assert len(upstream.requests("/c11/10")) >= 2, describe_requests(upstream.requests())
    check_attempt_waits(log, "c11", starts, upstream, "/c11/", [(100, 200), (200, 400)], bridge)


def check_attempt_waits(log, name, starts, upstream, prefix, expected, bridge):
    """The wait between an attempt's last request (any path under prefix) and the next attempt's
    first, against the logged delay and its window."""
    delays = log.reconnect_delays(name)
    every = [r for r in upstream.requests() if r.path.startswith(prefix)]
    history = describe_requests(every)
    for i, ((low, high), delay) in enumerate(zip(expected, delays)):
        assert low <= delay <= high, "%s wait %d: logged %d, expected [%d, %d]\n%s" % (
            name, i + 1, delay, low, high, tail(bridge))
        nxt = starts[i + 1]
        last_before = max((r for r in every if r.monotonic < nxt.monotonic), key=lambda r: r.monotonic)
        assert_gap(nxt.monotonic - last_before.monotonic, delay, delay,
                   "%s: wait %d between attempts\n%s" % (name, i + 1, history), bridge)


def test_a_redirect_loop_fails_the_attempt_and_is_retried_with_backoff(broker, upstream, config_for,
                                                                       start_bridge):
    upstream.route("/loop/a", redirect("/loop/b", 302))
    upstream.route("/loop/b", redirect("/loop/a", 302))
    bridge = start_bridge(config_for(broker, [stream("looper", upstream.url("/loop/a"), reconnect={
        "initial_delay": "200ms", "max_delay": "800ms"})]), args=JSON_LOG)
    log = JsonLog(bridge)
    log.wait_for(r"^reconnecting$", "looper", count=3, timeout_s=0.2 + 0.4 + 3 * SLACK + 5)
    # Each attempt is the start URL and 10 hops: 11 requests, then the wait.
    every = wait_requests(upstream, 33, None, 5, bridge)
    every = [r for r in every if r.path.startswith("/loop/")]
    starts = [every[i] for i in range(0, 33, 11)]
    assert all(r.path == "/loop/a" for r in starts), describe_requests(every)
    check_attempt_waits(log, "looper", starts, upstream, "/loop/", [(100, 200), (200, 400)], bridge)
    failed = log.lines(r"request failed|disconnected", "looper")[0]
    assert "redirect" in failed.get("error", "").lower(), failed


def test_a_missing_or_empty_location_is_an_error_not_a_loop(broker, upstream, config_for, start_bridge):
    upstream.route("/no-location", redirect(None, 302))
    upstream.route("/empty-location", redirect("", 301))
    backoff = {"initial_delay": "200ms", "max_delay": "800ms"}
    bridge = start_bridge(config_for(broker, [
        stream("noloc", upstream.url("/no-location"), reconnect=backoff),
        stream("emptyloc", upstream.url("/empty-location"), reconnect=backoff)]), args=JSON_LOG)
    log = JsonLog(bridge)
    for name, path, status in (("noloc", "/no-location", 302), ("emptyloc", "/empty-location", 301)):
        requests = wait_requests(upstream, 3, path, 0.6 + 2 * SLACK + 5, bridge)
        delays = log.reconnect_delays(name)
        for i, (low, high) in enumerate([backoff_window(200, 800, 1), backoff_window(200, 800, 2)]):
            assert low <= delays[i] <= high, (name, delays, tail(bridge))
            assert_gap(requests[i + 1].monotonic - requests[i].monotonic, delays[i], delays[i],
                       "%s wait %d\n%s" % (name, i + 1, describe_requests(requests)), bridge)
        failed = log.wait_for(r"request failed", name)[0]
        assert failed["status"] == status and "location" in failed.get("error", "").lower(), failed
    # Nothing but the configured paths was asked for: the missing Location went nowhere.
    assert {r.path for r in upstream.requests()} == {"/no-location", "/empty-location"}


def test_every_reconnect_starts_again_at_the_configured_url(make_broker, upstream, config_for, start_bridge):
    broker = make_broker(topics=[TOPIC + ":1"])
    kafka = Kafka(broker.bootstrap)
    upstream.route("/start", redirect("/moved", 307))
    upstream.route("/moved", [Route(body=[send(sse_event("one", id="1")), close()]),
                              Route(body=[send(sse_event("two", id="2")), close()]),
                              open_route(sse_event("three", id="3"))])
    bridge = start_bridge(config_for(broker, [stream("restarts", upstream.url("/start"))]), args=JSON_LOG)
    kafka.wait_for_records(TOPIC, 3, timeout=timeout(20), bridge=bridge)
    every = [r for r in upstream.requests() if r.path in ("/start", "/moved")]
    assert [r.path for r in every] == ["/start", "/moved"] * 3, describe_requests(every)
    # The resume ID goes to the configured URL and along the redirect.
    assert [r.last_event_id for r in every] == [None, None, "1", "1", "2", "2"], describe_requests(every)
    assert bridge.stop() == 0, tail(bridge)
    assert [r.value for r in kafka.all_records(TOPIC)] == ["one", "two", "three"]


def test_configured_headers_stay_with_their_origin_unless_kept(broker, upstream, other_upstream, config_for,
                                                               start_bridge):
    port = upstream.port
    cases = {
        # name: (Location, path it lands on, upstream that serves it, configured headers expected)
        "same-origin": ("/landed/same", "/landed/same", upstream, True),
        "other-host": ("http://localhost:%d/landed/host" % port, "/landed/host", upstream, False),
        "other-port": (other_upstream.url("/landed/port"), "/landed/port", other_upstream, False),
        "kept": ("http://localhost:%d/landed/kept" % port, "/landed/kept", upstream, True),
    }
    streams = []
    for name, (location, landing, server, _) in cases.items():
        upstream.route("/go/" + name, redirect(location, 302))
        server.route(landing, open_route(b": open\n\n"))
        settings = {"headers": {"X-Api-Key": "k-s3cret", "Authorization": "Bearer t0ken"}}
        if name == "kept":
            settings["redirect_headers"] = "keep"
        streams.append(stream(name, upstream.url("/go/" + name), **settings))
    bridge = start_bridge(config_for(broker, streams), args=JSON_LOG)
    log = JsonLog(bridge)
    for name, (location, landing, server, keeps) in cases.items():
        first = wait_requests(upstream, 1, "/go/" + name, 10, bridge)[0]
        assert first.headers.get("X-Api-Key") == "k-s3cret", (name, first.headers)
        landed = wait_requests(server, 1, landing, 10, bridge)[0]
        log.wait_for(r"^connected$", name)
        got = (landed.headers.get("X-Api-Key"), landed.headers.get("Authorization"))
        want = ("k-s3cret", "Bearer t0ken") if keeps else (None, None)
        assert got == want, "%s: redirected to %s, configured headers %r, expected %r\n%s" % (
            name, location, got, want, tail(bridge))
        # Protocol headers go everywhere.
        assert landed.headers.get("Accept") == "text/event-stream", (name, landed.headers)
    assert "k-s3cret" not in bridge.logs() and "t0ken" not in bridge.logs()
