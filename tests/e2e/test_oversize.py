"""A record Kafka refuses as too large: `oversize: fail` (default) never lets the checkpoint
pass it; `oversize: skip` logs it, counts it and goes on (README "Delivery guarantee")."""
# ctest-timeout: 200

from sse_upstream import Route, hang, send, sse_event

# The producer refuses records over message.max.bytes (librdkafka's minimum is 1000).
SMALL_LIMIT = {"linger.ms": "5", "message.max.bytes": "1000"}


def three_events(request):
    """Events 1 (small), 2 (3,000 bytes: too large for Kafka), 3 (small), resuming after Last-Event-ID."""
    first = int(request.last_event_id) + 1 if request.last_event_id else 1
    events = {1: "one", 2: "x" * 3000, 3: "three"}
    return Route(body=[send(sse_event(events[n], id=str(n))) for n in range(first, 4)] + [hang()])


def test_skip_passes_over_a_record_kafka_refuses(broker, kafka, upstream, config_for, start_bridge):
    broker.create_topic("e2e.oversize.skip", 1)
    upstream.route("/feed", three_events)
    config = config_for(broker, [{"name": "skipper", "url": upstream.url("/feed"),
                                  "topic": "e2e.oversize.skip", "oversize": "skip"}])
    config["kafka"]["properties"] = SMALL_LIMIT
    bridge = start_bridge(config)
    kafka.wait_for_records("e2e.oversize.skip", 2, timeout=20, bridge=bridge)
    bridge.wait_for_log(r"record too large for Kafka skipped", timeout=10)
    assert bridge.stop() == 0, bridge.describe()
    assert [r.value for r in kafka.all_records("e2e.oversize.skip")] == ["one", "three"]

    # The skipped event counts as handled: a restart resumes after event 3.
    second = start_bridge(config)
    requests = upstream.wait_for_requests(2, timeout=15, path="/feed")
    assert requests[1].last_event_id == "3", second.describe()
    assert second.stop() == 0, second.describe()


def test_fail_never_lets_the_checkpoint_pass_a_refused_record(broker, kafka, upstream, config_for,
                                                              start_bridge):
    broker.create_topic("e2e.oversize.fail", 1)
    upstream.route("/feed", three_events)
    config = config_for(broker, [{"name": "stalled", "url": upstream.url("/feed"),
                                  "topic": "e2e.oversize.fail"}])
    config["kafka"]["properties"] = SMALL_LIMIT
    bridge = start_bridge(config)
    kafka.wait_for_records("e2e.oversize.fail", 1, timeout=20, bridge=bridge)
    # The stream replays from its checkpoint (event 1) instead of skipping event 2.
    requests = upstream.wait_for_requests(3, timeout=20, path="/feed")
    assert all(r.last_event_id == "1" for r in requests[1:]), [r.last_event_id for r in requests]
    bridge.wait_for_log(r"Kafka refused a record", timeout=10)
    assert bridge.stop() == 0, bridge.describe()
    assert [r.value for r in kafka.all_records("e2e.oversize.fail")] == ["one"]
