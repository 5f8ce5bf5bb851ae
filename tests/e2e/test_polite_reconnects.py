"""A daemon that reads other people's feeds must be the politest client they have
(interface.md "Reconnection"): a floor under every wait between two connection attempts
(reconnect.min_delay, 500ms by default), short connections counted as failures so that a server
that hangs up at once is retried with growing waits, repeated log lines summarised, and a
starting Last-Event-ID for a stream that has no checkpoint yet.

These tests use the shipped defaults (no min_delay in the config), unlike the rest of the suite,
whose harness lowers the floor to 100ms to keep reconnect tests fast."""
# ctest-timeout: 240

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from fleet_support import free_port, metric_value, scrape_metrics  # noqa: E402
from harness import parse_check_output, run_cli, wait_until, write_config  # noqa: E402
from sse_upstream import NumberedRoute, Route, end, hang, send, sse_event  # noqa: E402

TOPIC = "e2e.polite"


def stream(name, url, **settings):
    return dict({"name": name, "url": url, "topic": TOPIC}, **settings)


def stream_lines(bridge, name):
    return [line for line in bridge.logs().splitlines() if "[%s]" % name in line]


def attempts(port, name):
    return metric_value(scrape_metrics(port), "sse2kafka_stream_reconnects_total", stream=name) or 0


def run_for(bridge, seconds):
    """Lets the bridge run for a measuring window (the point of these tests is what happens over
    time), failing early if it exits."""
    deadline = time.monotonic() + seconds
    wait_until(lambda: bridge.assert_running() or time.monotonic() >= deadline, seconds + 5)


def test_refused_connections_wait_at_least_the_floor_and_log_a_bounded_number_of_lines(broker, config_for,
                                                                                       start_bridge):
    """initial_delay 0 and max_delay 0 against a port nobody listens on: before the floor this
    made ~31,000 attempts a second, each logged. Now: at most 2 a second (500ms floor), and after
    the first 5 lines of a kind one a minute, while the metrics count every attempt."""
    admin = free_port()
    dead = "http://127.0.0.1:%d/feed" % free_port()
    bridge = start_bridge(config_for(broker, [stream("refused", dead)],
                                     defaults={"reconnect": {"initial_delay": "0ms", "max_delay": "0ms"}},
                                     admin={"listen": "127.0.0.1:%d" % admin}))
    wait_until(lambda: bridge.assert_running() or attempts(admin, "refused") >= 1, 15,
               message=lambda: "no attempt counted\n" + bridge.describe(40))
    first = attempts(admin, "refused")
    started = time.monotonic()
    run_for(bridge, 30)
    made = attempts(admin, "refused") - first
    rate = made / (time.monotonic() - started)
    print("refused: %d attempts in 30 s (%.2f/s), %d log lines" % (made, rate, len(stream_lines(bridge, "refused"))))
    assert made >= 30, "the stream stopped retrying\n" + bridge.describe(40)
    assert rate <= 2.2, "%.2f attempts a second: the 500ms floor does not hold\n%s" % (rate, bridge.describe(40))
    lines = stream_lines(bridge, "refused")
    # connecting (debug), disconnected, reconnecting: 5 each at most, then one a minute.
    assert len(lines) <= 3 * 6 + 2, "%d lines for one failing stream in 30 s\n%s" % (len(lines), "\n".join(lines))
    assert bridge.stop() == 0, bridge.describe()


def test_retry_zero_and_short_responses_are_retried_with_growing_waits(broker, kafka, upstream, config_for,
                                                                      start_bridge):
    """`retry: 0`, one event, end of response (a misbehaving proxy or a polling-style server):
    before, 505 requests in 3 s. Now the server's retry is clamped to the floor (logged once) and
    each short connection counts as a failure."""
    def polling(request):
        n = int(request.last_event_id) + 1 if request.last_event_id else 1
        return Route(body=[send(sse_event("poll-%d" % n, id=str(n), retry=0)), end()])
    upstream.route("/poll", polling)
    bridge = start_bridge(config_for(broker, [stream("poll", upstream.url("/poll"))], defaults={}))
    upstream.wait_for_requests(1, timeout=15, path="/poll")
    run_for(bridge, 8)
    requests = upstream.requests("/poll")
    gaps = [b.monotonic - a.monotonic for a, b in zip(requests, requests[1:])]
    print("retry: 0 polling: %d requests in 8 s, gaps %s" % (len(requests), ["%.2f" % g for g in gaps]))
    # Waits after n failures lie in [d/2, d], d = 500ms * 2^(n-1): at most 6 requests in 8 s.
    assert len(requests) <= 6, "%d requests in 8 s\n%s" % (len(requests), bridge.describe(40))
    assert all(g >= 0.45 for g in gaps), "a wait under the 500ms floor: %r" % gaps
    assert len(gaps) >= 3 and gaps[-1] >= 1.0, "waits do not grow: %r\n%s" % (gaps, bridge.describe(40))
    # Each reconnect resumes after the last event: nothing is lost or replayed.
    assert [r.last_event_id for r in requests] == [None] + [str(n) for n in range(1, len(requests))]
    assert bridge.logs().count("below reconnect.min_delay") == 1, bridge.describe(40)
    kafka.wait_for_records(TOPIC, len(requests), timeout=15, bridge=bridge)
    assert bridge.stop() == 0, bridge.describe()


def test_a_server_that_hangs_up_at_once_is_retried_with_growing_waits(broker, upstream, config_for, start_bridge):
    upstream.route("/bye", Route(body=[end()]))
    bridge = start_bridge(config_for(broker, [stream("bye", upstream.url("/bye"))],
                                     defaults={"reconnect": {"initial_delay": "0ms"}}))
    upstream.wait_for_requests(1, timeout=15, path="/bye")
    run_for(bridge, 8)
    requests = upstream.requests("/bye")
    gaps = [b.monotonic - a.monotonic for a, b in zip(requests, requests[1:])]
    print("hang-up server: %d requests in 8 s, gaps %s" % (len(requests), ["%.2f" % g for g in gaps]))
    assert 3 <= len(requests) <= 6, "%d requests in 8 s, gaps %r\n%s" % (len(requests), gaps, bridge.describe(40))
    assert all(g >= 0.45 for g in gaps), gaps
    assert gaps[-1] > gaps[0], "waits do not grow: %r" % gaps
    assert bridge.stop() == 0, bridge.describe()


def test_start_from_is_sent_on_the_first_start_and_the_checkpoint_after(broker, kafka, upstream, config_for,
                                                                         start_bridge):
    upstream.route("/wiki", NumberedRoute(start=1, end=1005, at_end="hang"))
    config = config_for(broker, [stream("wiki", upstream.url("/wiki"), start_from={"last_event_id": "1000"})])
    bridge = start_bridge(config)
    kafka.wait_for_records(TOPIC, 5, timeout=20, bridge=bridge)
    first = upstream.requests("/wiki")[0]
    assert first.last_event_id == "1000", bridge.describe(40)
    bridge.wait_for_log(r"\[wiki\] no checkpoint to resume from: starting from start_from\.last_event_id", timeout=5)
    assert [r.value for r in kafka.all_records(TOPIC)] == ["event %d" % n for n in range(1001, 1006)]
    assert bridge.stop() == 0, bridge.describe()

    again = start_bridge(config)
    requests = upstream.wait_for_requests(2, timeout=15, path="/wiki")
    assert requests[1].last_event_id == "1005", again.describe(40)
    again.wait_for_log(r"\[wiki\] start_from\.last_event_id ignored: the stream resumes from its checkpoint",
                       timeout=5)
    assert again.stop() == 0, again.describe()


def test_check_refuses_a_zero_floor_unless_asked_and_warns_below_it(tmp_path, broker, config_for):
    def check(reconnect):
        config = config_for(broker, [stream("s", "http://127.0.0.1:1/feed", reconnect=reconnect)], defaults={})
        return run_cli(["-c", str(write_config(tmp_path, config, name="check.yaml")), "--check"])

    refused = check({"min_delay": "0"})
    assert refused.returncode == 2, refused
    assert re.search(r"check\.yaml:\d+:\d+: streams\[0\]\.reconnect\.min_delay: 0 takes away the floor",
                     refused.stderr), refused.stderr
    allowed = check({"min_delay": "0", "allow_zero_min_delay": True})
    assert allowed.returncode == 0, allowed
    warned = check({"initial_delay": "100ms"})
    assert warned.returncode == 0, warned
    assert re.search(r"^warning: \S*check\.yaml line \d+ col \d+: streams\[0\]\.reconnect\.initial_delay: "
                     r"initial_delay 100ms is below reconnect\.min_delay 500ms", warned.stderr, re.M), warned.stderr
    assert not parse_check_output(warned.stdout + warned.stderr), "a warning must not read as a problem line"
    quiet = check({"initial_delay": "1s"})
    assert quiet.returncode == 0 and "warning" not in quiet.stderr, quiet
