"""SIGHUP reloads the config (interface.md "The executable"): unchanged streams keep their
connections, changed streams restart after their in-flight events are delivered, new ones
start, removed ones stop; an invalid config is logged and ignored."""
# ctest-timeout: 200

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from fleet_support import free_port, metric_value, scrape_metrics  # noqa: E402
from harness import Kafka, wait_until, write_config  # noqa: E402
from sse_upstream import NumberedRoute, Route, hang, send, sse_event  # noqa: E402


def numbered(prefix):
    """Events <prefix>-N for N after Last-Event-ID, 1..3, then an open, silent connection."""
    def route(request):
        first = int(request.last_event_id) + 1 if request.last_event_id else 1
        return Route(body=[send(sse_event("%s-%d" % (prefix, n), id=str(n))) for n in range(first, 4)]
                     + [hang()])
    return route


def stream(upstream, name, path, topic, **extra):
    return dict({"name": name, "url": upstream.url(path), "topic": topic}, **extra)


def test_reload_keeps_restarts_adds_and_removes_streams(broker, kafka, upstream, config_for, start_bridge,
                                                        tmp_path):
    for topic in ("reload.keep", "reload.change", "reload.gone", "reload.new"):
        broker.create_topic(topic, 1)
    for path in ("/keep", "/change", "/gone", "/new"):
        upstream.route(path, numbered(path[1:]))
    config = config_for(broker, [
        stream(upstream, "keep", "/keep", "reload.keep"),
        stream(upstream, "change", "/change", "reload.change"),
        stream(upstream, "gone", "/gone", "reload.gone"),
    ])
    path = write_config(tmp_path, config, name="reload.yaml")
    bridge = start_bridge(path)
    for topic in ("reload.keep", "reload.change", "reload.gone"):
        kafka.wait_for_records(topic, 3, timeout=20, bridge=bridge)

    # An invalid file is logged and ignored: the bridge runs on as it was.
    path.write_text("kafka: {brokers: [unterminated\n")
    bridge.signal(signal.SIGHUP)
    bridge.wait_for_log(r"reload ignored", timeout=10)
    bridge.assert_running()
    assert len(upstream.requests("/keep")) == 1

    # keep: unchanged; change: a new header; gone: removed; new: added.
    config["streams"] = [
        stream(upstream, "keep", "/keep", "reload.keep"),
        stream(upstream, "change", "/change", "reload.change", headers={"X-Version": "2"}),
        stream(upstream, "new", "/new", "reload.new"),
    ]
    write_config(tmp_path, config, name="reload.yaml")
    bridge.signal(signal.SIGHUP)
    bridge.wait_for_log(r"config reloaded.*added=1.*removed=1.*restarted=1.*unchanged=1", timeout=10)

    kafka.wait_for_records("reload.new", 3, timeout=20, bridge=bridge)
    changed = upstream.wait_for_requests(2, timeout=15, path="/change")
    # The changed stream restarts from its checkpoint, with its new settings.
    assert changed[1].headers.get("X-Version") == "2"
    assert changed[1].last_event_id == "3", bridge.describe()
    upstream.wait_for_open_connections(0, timeout=10, path="/gone")
    # The unchanged stream kept its one connection throughout.
    assert len(upstream.requests("/keep")) == 1
    assert upstream.open_connections("/keep") == 1
    assert bridge.stop() == 0, bridge.describe()
    # Nothing was lost or replayed by the restart.
    assert [r.value for r in kafka.all_records("reload.change")] == ["change-1", "change-2", "change-3"]
    assert [r.value for r in kafka.all_records("reload.gone")] == ["gone-1", "gone-2", "gone-3"]


def test_a_second_reload_replaces_a_restart_still_waiting_for_its_deliveries(make_broker, upstream, config_for,
                                                                           start_bridge, tmp_path):
    """A changed stream restarts only once its in-flight events are confirmed. A reload that
    comes meanwhile decides how it restarts: with the newest settings, or not at all."""
    port = free_port()
    broker = make_broker(topics=["reload.twice:1", "reload.dropped:1"])
    kafka = Kafka(broker.bootstrap)
    upstream.route("/twice", NumberedRoute(end=None, rate_per_s=100))
    upstream.route("/dropped", NumberedRoute(end=None, rate_per_s=100))
    config = config_for(broker, [stream(upstream, "twice", "/twice", "reload.twice"),
                                 stream(upstream, "dropped", "/dropped", "reload.dropped")],
                        admin={"listen": "127.0.0.1:%d" % port})
    path = write_config(tmp_path, config, name="reload.yaml")
    bridge = start_bridge(path)
    kafka.wait_for_records("reload.twice", 20, timeout=20, bridge=bridge)
    kafka.wait_for_records("reload.dropped", 20, timeout=20, bridge=bridge)
    # Slow acknowledgements keep the streams' events in flight for seconds.
    broker.rtt(1, 4000)

    def in_flight(name):
        return metric_value(scrape_metrics(port), "sse2kafka_stream_in_flight_events", stream=name) or 0
    wait_until(lambda: bridge.assert_running() or (in_flight("twice") >= 5 and in_flight("dropped") >= 5), 10,
               message=lambda: "no events in flight behind the slow broker\n" + bridge.describe(40))

    def reload(streams, count):
        config["streams"] = streams
        write_config(tmp_path, config, name="reload.yaml")
        bridge.signal(signal.SIGHUP)
        wait_until(lambda: bridge.logs().count("config reloaded") >= count, 10,
                   message=lambda: "reload %d not logged\n%s" % (count, bridge.describe(40)))

    reload([stream(upstream, "twice", "/twice", "reload.twice", headers={"X-Version": "2"}),
            stream(upstream, "dropped", "/dropped", "reload.dropped", headers={"X-Version": "2"})], 1)
    reload([stream(upstream, "twice", "/twice", "reload.twice", headers={"X-Version": "3"})], 2)
    assert len(upstream.requests("/twice")) == 1 and len(upstream.requests("/dropped")) == 1, \
        "a stream restarted before its deliveries were confirmed\n" + bridge.describe(40)
    bridge.wait_for_log(r"\[dropped\] stream removed by reload: it will not restart after draining", timeout=5)
    broker.rtt(1, 0)

    restarted = upstream.wait_for_requests(2, timeout=20, path="/twice")
    assert restarted[1].headers.get("X-Version") == "3", \
        "the restart should carry the second reload's settings\n" + bridge.describe(40)
    # "dropped" drained with "twice" (same broker, same acknowledgements); a third stream added
    # now starts after both, so by its first request a wrongful restart would have been made.
    upstream.route("/marker", NumberedRoute(end=None, rate_per_s=10))
    reload([stream(upstream, "twice", "/twice", "reload.twice", headers={"X-Version": "3"}),
            stream(upstream, "marker", "/marker", "reload.twice")], 3)
    upstream.wait_for_requests(1, timeout=20, path="/marker")
    kafka.wait_for_records("reload.twice", 1, timeout=20, bridge=bridge)
    assert len(upstream.requests("/dropped")) == 1, \
        "a stream removed while it drained was started again\n" + bridge.describe(40)
    assert bridge.stop() == 0, bridge.describe()


# ----------------------------------------------------------------------------- log and admin settings

def _cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat."""
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lines_after(bridge, marker_count, marker="config reloaded"):
    """The log lines written after the marker_count-th line containing `marker`."""
    lines = bridge.logs().splitlines()
    seen = 0
    for i, line in enumerate(lines):
        if marker in line:
            seen += 1
            if seen == marker_count:
                return lines[i + 1:]
    raise AssertionError("fewer than %d %r lines\n%s" % (marker_count, marker, bridge.describe(40)))


def _reload(bridge, config, tmp_path, count, marker="config reloaded"):
    """Writes the config, sends SIGHUP and waits for the count-th line containing `marker`."""
    write_config(tmp_path, config, name="reload.yaml")
    bridge.signal(signal.SIGHUP)
    wait_until(lambda: bridge.assert_running() or bridge.logs().count(marker) >= count, 10,
               message=lambda: "reload %d not logged\n%s" % (count, bridge.describe(40)))


def test_reload_turns_the_summary_off_and_on_without_a_busy_loop(broker, kafka, upstream, config_for,
                                                                start_bridge, tmp_path):
    """log.stats_interval 1s -> 0 stops the summary (before, the timer re-armed itself at 0 and
    logged on every loop turn); 0 -> 1s starts it again."""
    upstream.route("/feed", numbered("feed"))
    config = config_for(broker, [stream(upstream, "feed", "/feed", "reload.summary")],
                        log={"level": "info", "stats_interval": "1s"})
    path = write_config(tmp_path, config, name="reload.yaml")
    bridge = start_bridge(path)
    kafka.wait_for_records("reload.summary", 3, timeout=20, bridge=bridge)
    bridge.wait_for_log(r"\[feed\] summary", timeout=10)

    config["log"] = {"level": "info", "stats_interval": "0"}
    _reload(bridge, config, tmp_path, 1)
    cpu_before = _cpu_seconds(bridge.pid)
    # A window of several old intervals: long enough for a summary (or a flood) to show.
    window_end = time.monotonic() + 3.5
    wait_until(lambda: bridge.assert_running() or time.monotonic() >= window_end, 10)
    after_off = _lines_after(bridge, 1)
    cpu_used = _cpu_seconds(bridge.pid) - cpu_before
    assert not [l for l in after_off if "summary" in l], bridge.describe(40)
    assert len(after_off) < 20, "the log kept growing after the summary was turned off\n" + bridge.describe(40)
    assert cpu_used < 1.0, "%.2f s of CPU in 3.5 s of an idle bridge\n%s" % (cpu_used, bridge.describe(40))

    config["log"] = {"level": "info", "stats_interval": "1s"}
    _reload(bridge, config, tmp_path, 2)
    wait_until(lambda: bridge.assert_running() or [l for l in _lines_after(bridge, 2) if "[feed] summary" in l],
               10, message=lambda: "the summary did not start again\n" + bridge.describe(40))
    assert bridge.stop() == 0, bridge.describe()


def test_reload_applies_log_level_and_keeps_admin_listen_with_a_warning(broker, kafka, upstream, config_for,
                                                                         start_bridge, tmp_path):
    old_port, new_port = free_port(), free_port()
    upstream.route("/feed", numbered("feed"))
    config = config_for(broker, [stream(upstream, "feed", "/feed", "reload.level")],
                        log={"level": "info", "stats_interval": "300ms"},
                        admin={"listen": "127.0.0.1:%d" % old_port})
    path = write_config(tmp_path, config, name="reload.yaml")
    bridge = start_bridge(path)
    kafka.wait_for_records("reload.level", 3, timeout=20, bridge=bridge)
    bridge.wait_for_log(r"\[feed\] summary", timeout=10)

    # warn: the info-level summary stops; the admin address stays where it was, with a warning.
    config["log"] = {"level": "warn", "stats_interval": "300ms"}
    config["admin"] = {"listen": "127.0.0.1:%d" % new_port}
    # At warn, "config reloaded" (info) is not written: the warning marks the reload.
    _reload(bridge, config, tmp_path, 1, marker="admin.listen changed: kept as it was; it applies at the next start")
    assert scrape_metrics(old_port), "the old admin address stopped serving\n" + bridge.describe(40)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", new_port), timeout=2).close()
    window_end = time.monotonic() + 1.5
    wait_until(lambda: bridge.assert_running() or time.monotonic() >= window_end, 10)
    assert not [l for l in _lines_after(bridge, 1, "admin.listen changed") if "summary" in l], \
        "info lines still written at log.level warn\n" + bridge.describe(40)

    # info again: the summary comes back.
    config["log"] = {"level": "info", "stats_interval": "300ms"}
    config["admin"] = {"listen": "127.0.0.1:%d" % old_port}
    _reload(bridge, config, tmp_path, 1)
    wait_until(lambda: bridge.assert_running() or [l for l in _lines_after(bridge, 1) if "[feed] summary" in l],
               10, message=lambda: "log.level info did not apply\n" + bridge.describe(40))
    assert bridge.stop() == 0, bridge.describe()
