"""Reconnect timing (interface.md "Reconnection"), measured against a scripted loopback upstream.

After n consecutive failed attempts the bridge waits d = min(base * 2^(n-1), max(max_delay, base)),
drawn from [d/2, d]; base is the server's last `retry:` (kept across reconnects) or
reconnect.initial_delay; a connection open for reset_after resets n; a normal end waits base.

Each test checks two things: the wait the bridge logged ("reconnecting" delay_ms, JSON logs)
obeys the formula exactly, and the upstream's clock agrees that the next request came that much
later (tolerant bounds: EARLY before, SLACK after)."""
# ctest-timeout: 200

from connection_support import (JSON_LOG, SLACK, JsonLog, assert_gap, backoff_window, describe_requests,
                                request_gaps, tail, wait_requests)
from harness import wait_until
from sse_upstream import Route, close, end, hang, send, sleep, status_route


def stream(name, url, **settings):
    return dict({"name": name, "url": url, "topic": "e2e.reconnect"}, **settings)


def check_waits(log, name, requests, expected, bridge, gaps=None):
    """expected: one (low_ms, high_ms) per wait. The logged delays lie in the windows, and each
    measured gap (default: between request arrivals) matches its logged delay."""
    delays = log.reconnect_delays(name)
    assert len(delays) >= len(expected), "logged delays %r\n%s" % (delays, tail(bridge))
    gaps = request_gaps(requests) if gaps is None else gaps
    history = describe_requests(requests)
    for i, ((low, high), delay, gap) in enumerate(zip(expected, delays, gaps), start=1):
        assert low <= delay <= high, "wait %d: logged delay_ms %d outside [%d, %d]; all: %r\n%s\n%s" % (
            i, delay, low, high, delays, history, tail(bridge))
        assert_gap(gap, delay, delay, "wait %d (logged %d ms) measured at the upstream\n%s" % (i, delay, history),
                   bridge)


def test_failed_attempts_back_off_exponentially_up_to_max_delay(broker, upstream, config_for, start_bridge):
    upstream.route("/fail", status_route(500, body="try later\n"))
    bridge = start_bridge(config_for(broker, [stream("fails", upstream.url("/fail"), reconnect={
        "initial_delay": "200ms", "max_delay": "1600ms"})]), args=JSON_LOG)
    # Waits after n = 1..5 failures: d = 200, 400, 800, 1600, 1600 (capped).
    expected = [backoff_window(200, 1600, n) for n in range(1, 6)]
    assert expected == [(100, 200), (200, 400), (400, 800), (800, 1600), (800, 1600)]
    requests = wait_requests(upstream, 6, "/fail", 4.6 + 6 * SLACK + 5, bridge)
    check_waits(JsonLog(bridge), "fails", requests[:6], expected, bridge)
    # Not retried in between: exactly one request per attempt.
    assert bridge.running(), tail(bridge)


def test_jitter_spreads_streams_that_failed_together(broker, upstream, config_for, start_bridge):
    upstream.route("/fail", status_route(503))
    names = ["jitter-%02d" % i for i in range(12)]
    bridge = start_bridge(config_for(broker, [
        stream(name, upstream.url("/fail"), reconnect={"initial_delay": "2s", "max_delay": "2s"})
        for name in names]), args=JSON_LOG)
    log = JsonLog(bridge)
    firsts = []
    for name in names:
        log.wait_for(r"^reconnecting$", name, timeout_s=15)
        firsts.append(log.reconnect_delays(name)[0])
    assert all(1000 <= d <= 2000 for d in firsts), firsts
    # 12 draws from 1001 values: fewer than 6 distinct ones would mean there is no real jitter.
    assert len(set(firsts)) >= 6, "first waits of 12 streams: %r\n%s" % (firsts, tail(bridge))


def test_server_retry_becomes_the_base_and_persists_across_reconnects(broker, upstream, config_for,
                                                                      start_bridge):
    upstream.route("/feed", [
        Route(body=[send(b"retry: 200\n\n"), close()]),      # n=1: base 200 -> [100, 200]
        status_route(500),                                   # n=2: [200, 400]  (no retry: here)
        status_route(500),                                   # n=3: [400, 800]
        Route(body=[send(b"retry: 400\n\n"), end()]),        # short normal end: n=4, newest base 400
        Route(body=[send(b": open\n\n"), hang()]),
    ])
    # initial_delay is far from every expected wait, so a forgotten retry: shows at once.
    bridge = start_bridge(config_for(broker, [stream("retry", upstream.url("/feed"), reconnect={
        "initial_delay": "3s", "max_delay": "5s"})]), args=JSON_LOG)
    requests = wait_requests(upstream, 5, "/feed", 0.2 + 0.4 + 0.8 + 3.2 + 4 * SLACK + 5, bridge)
    check_waits(JsonLog(bridge), "retry", requests,
                [backoff_window(200, 5000, 1), backoff_window(200, 5000, 2), backoff_window(200, 5000, 3),
                 backoff_window(400, 5000, 4)], bridge)


def test_a_connection_open_for_reset_after_resets_the_failure_count(broker, upstream, config_for, start_bridge):
    upstream.route("/feed", [
        status_route(500),                                   # n=1: [100, 200]
        status_route(500),                                   # n=2: [200, 400]
        status_route(500),                                   # n=3: [400, 800]
        Route(body=[send(b": open\n\n"), sleep(900), close()]),  # open 900 ms >= reset_after: n=1
        Route(body=[send(b": open\n\n"), sleep(100), close()]),  # open 100 ms: n=2
        Route(body=[send(b": open\n\n"), hang()]),
    ])
    bridge = start_bridge(config_for(broker, [stream("resets", upstream.url("/feed"), reconnect={
        "initial_delay": "200ms", "max_delay": "3200ms", "reset_after": "500ms"})]), args=JSON_LOG)
    requests = wait_requests(upstream, 6, "/feed", 0.2 + 0.4 + 0.8 + 0.9 + 0.2 + 0.1 + 0.4 + 6 * SLACK + 5, bridge)
    # Gaps after the open connections are measured from when the upstream closed them.
    gaps = request_gaps(requests)
    gaps[3] = requests[4].monotonic - requests[3].connection.closed_at
    gaps[4] = requests[5].monotonic - requests[4].connection.closed_at
    # Without the reset, the fourth wait would be n=4: [800, 1600].
    check_waits(JsonLog(bridge), "resets", requests,
                [(100, 200), (200, 400), (400, 800), (100, 200), (200, 400)], bridge, gaps=gaps)


def test_a_normal_end_after_reset_after_reopens_after_the_base_delay_without_growing(broker, upstream, config_for,
                                                                                     start_bridge):
    # Close framing: the end of each response closes its connection, which the upstream times.
    ends = [Route(body=[send(b": served\n\n"), sleep(400), end()], framing="close") for _ in range(4)]
    upstream.route("/feed", ends + [Route(body=[send(b": open\n\n"), hang()])])
    bridge = start_bridge(config_for(broker, [stream("ends", upstream.url("/feed"), reconnect={
        "initial_delay": "300ms", "max_delay": "5s", "reset_after": "300ms"})]), args=JSON_LOG)
    requests = wait_requests(upstream, 5, "/feed", 4 * (0.7 + SLACK) + 5, bridge)
    # Each connection stayed open for reset_after: exactly the base each time, measured from the
    # end of the response; no jitter, no doubling.
    wait_until(lambda: requests[3].connection.closed_at, 5, message=lambda: tail(bridge))
    gaps = [b.monotonic - a.connection.closed_at for a, b in zip(requests, requests[1:])]
    check_waits(JsonLog(bridge), "ends", requests, [(300, 300)] * 4, bridge, gaps=gaps)
    assert not JsonLog(bridge).lines(r"request failed|disconnected", "ends"), tail(bridge)


def test_a_short_normal_end_counts_as_a_failed_attempt(broker, upstream, config_for, start_bridge):
    """A server that answers and hangs up at once is retried with growing waits (not at the
    base delay forever, as before)."""
    ends = [Route(body=[send(b": served\n\n"), end()]) for _ in range(4)]
    upstream.route("/feed", ends + [Route(body=[send(b": open\n\n"), hang()])])
    bridge = start_bridge(config_for(broker, [stream("ends", upstream.url("/feed"), reconnect={
        "initial_delay": "200ms", "max_delay": "5s"})]), args=JSON_LOG)
    requests = wait_requests(upstream, 5, "/feed", 0.2 + 0.4 + 0.8 + 1.6 + 4 * SLACK + 5, bridge)
    check_waits(JsonLog(bridge), "ends", requests, [backoff_window(200, 5000, n) for n in range(1, 5)], bridge)