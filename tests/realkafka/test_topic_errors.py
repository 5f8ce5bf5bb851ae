"""Kafka refusing one stream's records, on a real cluster with topic auto-creation off (one
Kafka version: the newest; what is proven here does not differ between versions):

- A stream routed to a topic that does not exist: one clear line names the stream, the topic and
  the cause; the stream's checkpoint never moves (nothing was written) and it replays from its
  checkpoint with backoff, so once the topic is created every event lands, none lost; a stream
  to another topic goes on meanwhile.
- An event larger than the topic's max.message.bytes, with the default `oversize: fail`: the
  events before it land, the checkpoint stops before it, the stream stalls on it loudly (line
  naming stream, topic, cause) while the other stream goes on; raising the topic's limit lets it
  through with everything after it, in order. Events behind it that were already handed to
  Kafka when the refusal came back may land before it too (then again after it: duplicates,
  never gaps). (`oversize: skip` is test_foundation.py's.)
"""
# ctest-timeout: 600

import pytest

from harness import wait_until
from kafka_cluster import running_cluster, single_version
from reliability_support import read_checkpoints
from sse_upstream import NumberedRoute, Route, hang, send, sse_event

FAST = {"initial_delay": "200ms", "max_delay": "1s", "min_delay": "200ms"}
GOOD = "errs.good"


@pytest.fixture(scope="module")
def strict_cluster():
    """A 3-node cluster of the newest version that creates no topic by itself."""
    clusters = running_cluster(single_version(), auto_create=False)
    cluster = next(clusters)
    try:
        cluster.create_topic(GOOD, partitions=1)
        yield cluster
    finally:
        clusters.close()  # stops it


def lines_with(bridge, *words):
    return [line for line in bridge.logs().splitlines() if all(w in line for w in words)]


def test_a_missing_topic_stops_only_its_stream_and_nothing_is_lost(strict_cluster, upstream, config_for,
                                                                    start_bridge, state_dir):
    missing = "errs.missing"
    upstream.route("/good", NumberedRoute(end=None, rate_per_s=20))
    upstream.route("/lost", NumberedRoute(end=30, at_end="hang"))
    config = config_for(strict_cluster.bootstrap, [
        {"name": "good", "url": upstream.url("/good"), "topic": GOOD, "reconnect": FAST},
        {"name": "lost", "url": upstream.url("/lost"), "topic": missing, "reconnect": FAST}])
    # How long librdkafka waits for a topic to appear before it fails the records (default 30 s).
    config["kafka"]["properties"]["topic.metadata.propagation.max.ms"] = "3000"
    bridge = start_bridge(config)
    wait_until(lambda: bridge.assert_running() or lines_with(bridge, "[lost]", "delivery failed", missing), 60,
               message=lambda: "no line names the stream, the topic and the cause\n" + bridge.describe(40))
    line = lines_with(bridge, "[lost]", "delivery failed", missing)[0]
    assert "Unknown topic" in line or "UNKNOWN_TOPIC" in line, line
    # Replayed from its (empty) checkpoint: several requests, none with a Last-Event-ID.
    requests = upstream.wait_for_requests(2, timeout=30, path="/lost")
    assert all(r.last_event_id is None for r in requests), [r.last_event_id for r in requests]
    assert read_checkpoints(state_dir).get("lost", "") == "", read_checkpoints(state_dir)
    # The other stream went on all the while.
    strict_cluster.reader().wait_for_records(GOOD, 20, timeout=30, bridge=bridge)
    print("missing topic: %d requests of the stalled stream before the topic existed" % len(requests))

    strict_cluster.create_topic(missing, partitions=1)
    wait_until(lambda: bridge.assert_running() or read_checkpoints(state_dir).get("lost") == "30", 90,
               interval=0.2, message=lambda: "the stream did not recover\n" + bridge.describe(40))
    assert bridge.stop() == 0, bridge.describe()
    ids = [int(r.header("sse.id")) for r in strict_cluster.reader().all_records(missing)]
    first_copies = sorted(set(ids))
    assert first_copies == list(range(1, 31)), ids
    print("missing topic: after it was created, %d records for 30 events" % len(ids))


def test_an_event_over_the_topic_limit_stalls_its_stream_until_the_limit_is_raised(
        strict_cluster, upstream, config_for, start_bridge, state_dir):
    limited = "errs.limited"
    strict_cluster.create_topic(limited, partitions=1, configs={"max.message.bytes": "2000"})
    def event(n):
        return sse_event(("big " + "y" * 5000) if n == 6 else ("e%d " % n + "x" * 200), id=str(n))

    def resuming(request):  # events 1..10 after the request's Last-Event-ID
        first = int(request.last_event_id) + 1 if request.last_event_id else 1
        return Route(body=[send(event(n)) for n in range(first, 11)] + [hang()])
    upstream.route("/limit", resuming)
    upstream.route("/good", NumberedRoute(end=None, rate_per_s=20))
    bridge = start_bridge(config_for(strict_cluster.bootstrap, [
        {"name": "limited", "url": upstream.url("/limit"), "topic": limited, "reconnect": FAST},
        {"name": "good2", "url": upstream.url("/good"), "topic": GOOD, "reconnect": FAST}]))
    wait_until(lambda: bridge.assert_running() or lines_with(bridge, "[limited]", limited, "MSG_SIZE_TOO_LARGE"), 60,
               message=lambda: "no line names the stream, the topic and the cause\n" + bridge.describe(40))
    # It stalls on event 6: the checkpoint stays at 5 while the stream replays from it.
    requests = upstream.wait_for_requests(3, timeout=30, path="/limit")
    assert [r.last_event_id for r in requests[1:3]] == ["5", "5"], [r.last_event_id for r in requests]
    wait_until(lambda: read_checkpoints(state_dir).get("limited") == "5", 10,
               message=lambda: "checkpoint %r\n%s" % (read_checkpoints(state_dir), bridge.describe(20)))
    # Nothing of event 6. Events behind it that were handed to Kafka before its refusal came
    # back may have landed (they fit); they land again with the replay.
    before = [int(r.header("sse.id")) for r in strict_cluster.reader().all_records(limited)]
    assert 6 not in before and set(range(1, 6)) <= set(before) <= set(range(1, 11)) - {6}, before
    good_before = strict_cluster.reader().count(GOOD)
    strict_cluster.reader().wait_for_records(GOOD, good_before + 20, timeout=30, bridge=bridge)

    strict_cluster.alter_topic_configs(limited, {"max.message.bytes": "20000"})
    wait_until(lambda: bridge.assert_running() or read_checkpoints(state_dir).get("limited") == "10", 90,
               interval=0.2, message=lambda: "the stream did not get past the event\n" + bridge.describe(40))
    assert bridge.stop() == 0, bridge.describe()
    ids = [int(r.header("sse.id")) for r in strict_cluster.reader().all_records(limited)]
    assert sorted(set(ids)) == list(range(1, 11)), ids
    # The replay after the limit was raised is whole and in order: 6, 7, ..., 10.
    replay = ids[ids.index(6):]
    assert replay == list(range(6, 11)), ids
    print("over the limit: %d records for 10 events; before the limit was raised %d records, %d of them "
          "behind the refused event" % (len(ids), len(before), len([i for i in before if i > 6])))
