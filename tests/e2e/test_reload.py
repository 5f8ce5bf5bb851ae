"""SIGHUP reloads the config (interface.md "The executable"): unchanged streams keep their
connections, changed streams restart after their in-flight events are delivered, new ones
start, removed ones stop; an invalid config is logged and ignored."""
# ctest-timeout: 200

import signal

from harness import write_config
from sse_upstream import Route, hang, send, sse_event


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
