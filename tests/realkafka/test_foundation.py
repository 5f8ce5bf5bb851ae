"""The bridge against a real 3-node Apache Kafka cluster (RF 3, min.insync.replicas 2), on each
version of SSE2KAFKA_KAFKA_VERSIONS: what tests/e2e proves against the mock broker, proven on
real brokers with the daemon's default producer settings (idempotent, acks=all).

- GET and POST streams with configured request headers, routed by event type to two topics
  created up front with RF 3: every event arrives exactly once, in stream order per partition,
  with its key, value and sse.* headers.
- Resume: after SIGTERM the restart asks for exactly the last delivered ID (no gap, no
  duplicate); after kill -9 the restart resumes at or before it (duplicates allowed, no gap).
- A topic's max.message.bytes refuses only the event over it: the producer's batch.size is capped
  below it at start (a refused batch used to be taken for refused records; tests/kafka/README.md).
- A start with one node just killed reads the state topic and streams: the offsets lookup asks
  in short attempts with fresh metadata (it used to retry the dead leader for 30 s).
"""
# ctest-timeout: 900
# ctest-secured: sasl_ssl 4

import json

import pytest

from harness import fast_reconnect, wait_until
from sse_upstream import NumberedRoute, Route, hang, send, sse_event

FAST = fast_reconnect()
EDITS, OTHER = "found.edits", "found.other"
ROUTES = {"edit": EDITS, "*": OTHER}


def sse_headers(record):
    return record.headers_with_prefix("sse.")


def expected_headers(stream, event, event_id):
    headers = {"sse.stream": stream, "sse.event": event}
    if event_id:
        headers["sse.id"] = event_id
    return headers


def feed(prefix, count):
    """[(event id, type, data)]: edits and logs alternate, every fifth event has two data lines."""
    out = []
    for n in range(1, count + 1):
        event = "edit" if n % 2 else "log"
        data = "%s %d" % (prefix, n) + ("\nsecond line of %d" % n if n % 5 == 0 else "")
        out.append(("%s-%d" % (prefix, n), event, data))
    return out


def sse_chunks(events):
    return [sse_event(data, id=event_id, event=event) for event_id, event, data in events]


@pytest.fixture(scope="module")
def topics(cluster):
    """The two routing topics, created once per cluster with RF 3 (auto-creation is not relied on)."""
    cluster.create_topics({EDITS: {"partitions": 3}, OTHER: {"partitions": 3}})
    for topic in (EDITS, OTHER):
        for p in cluster.partitions(topic):
            assert len(p["replicas"]) == 3, (topic, p)
    return cluster


def test_topics_are_created_with_replication_factor_3_and_min_isr_2(topics):
    configs = topics.describe_topic_configs(EDITS)
    assert configs["min.insync.replicas"] == "2", configs
    assert len(topics.metadata()["brokers"]) == 3


def test_get_and_post_streams_land_exactly_once_in_order_on_two_topics(
        topics, healthy_cluster, upstream, config_for, start_bridge):
    get_events = feed("g", 60)
    post_events = feed("p", 40)
    upstream.route("/get", Route(body=[send(c) for c in sse_chunks(get_events)] + [hang()]))
    upstream.route("/post", Route(body=[send(c) for c in sse_chunks(post_events)] + [hang()]))
    body = json.dumps({"subscribe": ["edits", "logs"]})
    config = config_for(healthy_cluster.bootstrap, [
        {"name": "getter", "url": upstream.url("/get?since=now"), "reconnect": FAST, "topics": ROUTES,
         "headers": {"X-Api-Key": "get-key", "X-Trace": "on"}},
        # key: id spreads the stream over the partitions: order then holds per partition.
        {"name": "poster", "url": upstream.url("/post"), "reconnect": FAST, "topics": ROUTES, "key": "id",
         "method": "POST", "body": body, "headers": {"X-Api-Key": "post-key", "Content-Type": "application/json"}},
    ])
    # The daemon's producer defaults (enable.idempotence=true, acks=all) stay as they are.
    assert set(config["kafka"]["properties"]) <= {"linger.ms"}, config["kafka"]
    bridge = start_bridge(config)
    kafka = healthy_cluster.reader()
    kafka.wait_for_records([EDITS, OTHER], len(get_events) + len(post_events), timeout=90, bridge=bridge)
    assert bridge.stop() == 0, bridge.describe()

    (get_request,) = upstream.requests("/get")
    assert (get_request.method, get_request.target, get_request.body) == ("GET", "/get?since=now", b""), get_request
    assert get_request.headers.get_all("X-Api-Key") == ["get-key"], get_request.headers
    assert get_request.headers.get_all("X-Trace") == ["on"], get_request.headers
    (post_request,) = upstream.requests("/post")
    assert (post_request.method, post_request.body) == ("POST", body.encode()), post_request
    assert post_request.headers.get_all("X-Api-Key") == ["post-key"], post_request.headers
    assert post_request.headers.get_all("Content-Type") == ["application/json"], post_request.headers

    records = kafka.all_records([EDITS, OTHER], timeout=30)
    for stream, events, key_of in (("getter", get_events, lambda e: "getter"),
                                   ("poster", post_events, lambda e: e[0])):
        mine = [r for r in records if r.header("sse.stream") == stream]
        want = {e[0]: e for e in events}
        # Exactly once: every ID once, nothing else.
        ids = sorted(r.header("sse.id") for r in mine)
        assert ids == sorted(want), (stream, ids)
        for r in mine:
            event_id, event, data = want[r.header("sse.id")]
            assert r.topic == (EDITS if event == "edit" else OTHER), r
            assert (r.key, r.value, sse_headers(r)) == (key_of(want[event_id]), data,
                                                        expected_headers(stream, event, event_id)), r
        # Stream order within every partition (records() sorts by topic, partition, offset).
        position = {e[0]: i for i, e in enumerate(events)}
        for topic in (EDITS, OTHER):
            for partition in {r.partition for r in mine if r.topic == topic}:
                order = [position[r.header("sse.id")] for r in mine
                         if r.topic == topic and r.partition == partition]
                assert order == sorted(order), (stream, topic, partition, order)
    # The stream-name key keeps all of getter's events of a topic in one partition.
    for topic in (EDITS, OTHER):
        assert len({r.partition for r in records if r.topic == topic and r.key == "getter"}) == 1


RESUME_TOPIC = "found.resume"
RESUME_LAST = 900


def delivered_ids(kafka):
    """[sse.id as int] of the resume topic, in offset order of its one partition."""
    return [int(r.header("sse.id")) for r in kafka.all_records(RESUME_TOPIC, timeout=30)]


def test_resume_after_sigterm_and_kill9_leaves_no_gap(healthy_cluster, upstream, config_for, start_bridge):
    cluster = healthy_cluster
    cluster.create_topic(RESUME_TOPIC, partitions=1)
    kafka = cluster.reader()
    upstream.route("/n", NumberedRoute(end=RESUME_LAST, rate_per_s=150, at_end="hang"))
    config = config_for(cluster.bootstrap, [{"name": "counter", "url": upstream.url("/n"), "reconnect": FAST,
                                             "topic": RESUME_TOPIC}])
    config["state"]["flush_interval"] = "50ms"

    # 1. SIGTERM: every in-flight event is acknowledged before the exit, and the checkpoint is
    #    exactly the last of them.
    first = start_bridge(config)
    kafka.wait_for_records(RESUME_TOPIC, 150, timeout=60, bridge=first)
    assert first.stop() == 0, first.describe()
    after_term = delivered_ids(kafka)
    assert after_term == list(range(1, len(after_term) + 1)), after_term
    second = start_bridge(config)
    requests = upstream.wait_for_requests(2, timeout=30, path="/n")
    assert requests[1].last_event_id == str(after_term[-1]), (requests[1].headers, after_term[-1])

    # 2. kill -9 while events stream: the restart resumes at or before the last delivered ID.
    kafka.wait_for_records(RESUME_TOPIC, len(after_term) + 200, timeout=60, bridge=second)
    second.kill9()
    before_kill = delivered_ids(kafka)
    third = start_bridge(config)
    requests = upstream.wait_for_requests(3, timeout=30, path="/n")
    resumed_from = int(requests[2].last_event_id)
    assert after_term[-1] <= resumed_from <= max(before_kill), (resumed_from, max(before_kill))

    def all_delivered():
        third.assert_running()
        return RESUME_LAST in set(delivered_ids(kafka))
    wait_until(all_delivered, 90, interval=0.5, message=lambda: third.describe(60))
    assert third.stop() == 0, third.describe()

    ids = delivered_ids(kafka)
    assert set(ids) == set(range(1, RESUME_LAST + 1)), sorted(set(range(1, RESUME_LAST + 1)) - set(ids))
    # Nothing before the SIGTERM stop came twice; replays after kill -9 are the IDs after the
    # checkpoint it resumed from, up to what had landed, and nothing is out of order.
    assert ids[:len(after_term)] == after_term
    duplicates = len(ids) - len(set(ids))
    assert duplicates <= max(before_kill) - resumed_from, (duplicates, resumed_from, max(before_kill))
    first_copies = []
    seen = set()
    for n in ids:
        if n not in seen:
            seen.add(n)
            first_copies.append(n)
    assert first_copies == sorted(first_copies), "first copies out of order"
    print("resume: sigterm at %d, kill -9 after %d landed, resumed from %d, duplicates %d" % (
        after_term[-1], max(before_kill), resumed_from, duplicates))


# ----------------------------------------------------------------------------- a topic's size limit

LIMIT_TOPIC = "found.limit"


def test_topic_max_message_bytes_refuses_only_the_event_over_it(healthy_cluster, upstream, config_for,
                                                                start_bridge, state_dir):
    """Events of ~310 bytes on a topic with max.message.bytes=2000 and one event of 5,000 bytes,
    oversize: skip: only the large one may be skipped. The small ones arrive in one chunk, so the
    producer batches them past 2,000 bytes (batch.size is librdkafka's default, 1,000,000)."""
    from reliability_support import read_checkpoints
    healthy_cluster.create_topic(LIMIT_TOPIC, partitions=1, configs={"max.message.bytes": "2000"})
    small = lambda n: sse_event("e%d " % n + "x" * 300, id=str(n))  # noqa: E731
    upstream.route("/limit", Route(body=[send(b"".join(small(n) for n in range(1, 41))),
                                         send(sse_event("big " + "y" * 5000, id="41")),
                                         send(b"".join(small(n) for n in range(42, 52))), hang()]))
    bridge = start_bridge(config_for(healthy_cluster.bootstrap, [
        {"name": "limited", "url": upstream.url("/limit"), "reconnect": FAST, "topic": LIMIT_TOPIC,
         "oversize": "skip"}]))
    # The checkpoint passes 51 once every event was delivered or skipped.
    wait_until(lambda: bridge.assert_running() or read_checkpoints(state_dir).get("limited") == "51", 60,
               interval=0.2, message=lambda: bridge.describe(40))
    assert bridge.stop() == 0, bridge.describe()
    skipped = len([line for line in bridge.logs().splitlines() if "record too large for Kafka skipped" in line])
    ids = [r.header("sse.id") for r in healthy_cluster.reader().all_records(LIMIT_TOPIC)]
    assert ids == [str(n) for n in range(1, 52) if n != 41], "delivered %s; %d records skipped as too large" % (
        ids, skipped)


# ----------------------------------------------------------------------------- a node down at start

START_STATE_TOPIC = "found.state"
START_TOPIC = "found.start"


def test_start_while_a_state_partition_leader_is_down(healthy_cluster, upstream, start_bridge):
    """state.backend: kafka, one of three nodes killed a moment before the start: RF 3 and two
    nodes left must be enough to read the checkpoints and start streaming."""
    from fleet_support import fleet_config
    cluster = healthy_cluster
    cluster.create_topic(START_TOPIC, partitions=1)
    upstream.route("/start", NumberedRoute(end=None, rate_per_s=50))
    config = fleet_config(cluster.bootstrap, [{"name": "starter", "url": upstream.url("/start"),
                                               "reconnect": FAST, "topic": START_TOPIC}],
                          partitions=3, topic=START_STATE_TOPIC)
    first = start_bridge(config)
    cluster.reader().wait_for_records(START_TOPIC, 20, timeout=60, bridge=first)
    assert first.stop() == 0, first.describe()
    cluster.wait_in_sync(START_STATE_TOPIC)
    victim = cluster.leader(START_STATE_TOPIC, 0)
    cluster.kill_broker(victim)
    try:
        second = start_bridge(config)
        # Leadership moves within broker.session.timeout.ms (6 s); the start may take that long.
        second.wait_for_log(r"bridge started", timeout=20)
        upstream.wait_for_requests(2, timeout=20, path="/start")
    finally:
        cluster.start_broker(victim)
        cluster.wait_in_sync(START_STATE_TOPIC)
