"""End-to-end tests of per-type routing (interface.md, "Routing and record formats"): `topics`
sends each event type to its topic, "*" catches the rest, an unrouted event is dropped while its
ID still advances the checkpoint, a stream's `topics` replaces a `topic` from defaults, and
`topic` with `topics` in one mapping is a config error."""
# ctest-timeout: 200

from formats_support import Kafka, check_config, events_route, expected_sse_headers, line_of, sse_headers
from sse_upstream import Route, end, hang, send, sse_event, wait_gate

FAST = {"initial_delay": "100ms", "max_delay": "1s"}


def rows(records):
    """[(value, sse.* headers)] of records."""
    return [(r.value, sse_headers(r)) for r in records]


def expect(stream, triples):
    """[(value, event, id)] -> [(value, {sse.* headers})]"""
    return [(value, expected_sse_headers(stream, event, event_id)) for value, event, event_id in triples]


# ----------------------------------------------------------------------------- routes and "*"

ROUTED_CHUNKS = [
    sse_event("e1", event="edit", id="1"),
    sse_event("l1", event="log", id="2"),
    sse_event("m1"),                               # no event line: type "message" -> "*"
    sse_event("c1", event="custom", id="4"),       # -> "*"
    sse_event("E1", event="Edit"),                 # types are case-sensitive -> "*"
    sse_event("e2", event="edit"),
    sse_event("l2", event="log", id="7"),
    sse_event("", event="edit"),                   # empty data is still an event
]


def test_topics_route_each_type_and_star_catches_the_rest(make_broker, upstream, config_for, start_bridge):
    topics = ["t.edits", "t.logs", "t.other"]
    broker = make_broker(topics=[t + ":1" for t in topics])
    kafka = Kafka(broker.bootstrap)
    upstream.route("/feed", events_route(ROUTED_CHUNKS))
    bridge = start_bridge(config_for(broker, [{
        "name": "router", "url": upstream.url("/feed"),
        "topics": {"edit": "t.edits", "log": "t.logs", "*": "t.other"}}]))

    for topic, n in (("t.edits", 3), ("t.logs", 2), ("t.other", 3)):
        kafka.wait_for_records(topic, n, timeout=20, bridge=bridge)
    assert bridge.stop() == 0, bridge.describe()

    got = {topic: rows(kafka.all_records(topic)) for topic in topics}
    assert got == {
        "t.edits": expect("router", [("e1", "edit", "1"), ("e2", "edit", "4"), ("", "edit", "7")]),
        "t.logs": expect("router", [("l1", "log", "2"), ("l2", "log", "7")]),
        "t.other": expect("router", [("m1", "message", "2"), ("c1", "custom", "4"), ("E1", "Edit", "4")]),
    }, bridge.describe()
    # The key stays the default (the stream name) whatever the route.
    assert {r.key for t in topics for r in kafka.all_records(t)} == {"router"}


# ----------------------------------------------------------------------------- no "*"

FIRST_CONNECTION = [
    sse_event("e1", event="edit", id="1"),
    sse_event("l2", event="log", id="2"),
    sse_event("dropped 3", event="other", id="3"),   # no route: dropped, the stream goes on
    sse_event("e4", event="edit", id="4"),
    sse_event("dropped 5", id="5"),                  # "message" has no route either
]


def test_unrouted_type_is_dropped_and_its_id_advances_the_checkpoint(make_broker, upstream, config_for,
                                                                    start_bridge):
    broker = make_broker(topics=["t.edits:1", "t.logs:1"])
    kafka = Kafka(broker.bootstrap)
    upstream.route("/feed", [
        # The connection ends after a dropped event, once the routed ones are in Kafka.
        Route(body=[send(c) for c in FIRST_CONNECTION] + [wait_gate("drop"), end()]),
        Route(body=[hang()]),
    ])
    config = config_for(broker, [{"name": "strict", "url": upstream.url("/feed"), "reconnect": FAST,
                                  "topics": {"edit": "t.edits", "log": "t.logs"}}])
    first_run = start_bridge(config)
    kafka.wait_for_records("t.edits", 2, timeout=20, bridge=first_run)
    kafka.wait_for_records("t.logs", 1, timeout=20, bridge=first_run)
    upstream.open_gate("drop")

    # The reconnect resumes after the dropped event 5: its ID counted once 1..4 were acknowledged.
    requests = upstream.wait_for_requests(2, timeout=15, path="/feed")
    assert [r.last_event_id for r in requests] == [None, "5"], first_run.describe()
    assert first_run.stop() == 0, first_run.describe()

    assert rows(kafka.all_records("t.edits")) == expect("strict", [("e1", "edit", "1"), ("e4", "edit", "4")])
    assert rows(kafka.all_records("t.logs")) == expect("strict", [("l2", "log", "2")])

    # The checkpoint written at the stop holds it too: a restart resumes after event 5.
    second_run = start_bridge(config)
    requests = upstream.wait_for_requests(3, timeout=15, path="/feed")
    assert requests[2].last_event_id == "5", second_run.describe()
    assert second_run.stop() == 0, second_run.describe()
    assert kafka.count(["t.edits", "t.logs"]) == 3


# ----------------------------------------------------------------------------- defaults

def test_stream_topics_replace_the_topic_from_defaults(make_broker, upstream, config_for, start_bridge):
    topics = ["t.default", "t.edits"]
    broker = make_broker(topics=[t + ":1" for t in topics])
    kafka = Kafka(broker.bootstrap)
    chunks = [sse_event("e1", event="edit", id="1"), sse_event("m2", id="2"), sse_event("e3", event="edit", id="3")]
    upstream.route("/routed", events_route(chunks))
    upstream.route("/plain", events_route(chunks))
    bridge = start_bridge(config_for(broker, [
        {"name": "routed", "url": upstream.url("/routed"), "topics": {"edit": "t.edits"}},
        {"name": "plain", "url": upstream.url("/plain")},
    ], defaults={"reconnect": FAST, "topic": "t.default"}))

    kafka.wait_for_records("t.edits", 2, timeout=20, bridge=bridge)
    kafka.wait_for_records("t.default", 3, timeout=20, bridge=bridge)
    upstream.wait_for_requests(1, timeout=10, path="/routed")
    assert bridge.stop() == 0, bridge.describe()

    # "routed" uses only its own routes: its message event is dropped, not sent to t.default.
    assert rows(kafka.all_records("t.edits")) == expect("routed", [("e1", "edit", "1"), ("e3", "edit", "3")])
    assert rows(kafka.all_records("t.default")) == expect(
        "plain", [("e1", "edit", "1"), ("m2", "message", "2"), ("e3", "edit", "3")]), bridge.describe()


def test_stream_topic_replaces_topics_from_defaults(make_broker, upstream, config_for, start_bridge):
    broker = make_broker(topics=["t.single:1", "t.edits:1", "t.other:1"])
    kafka = Kafka(broker.bootstrap)
    upstream.route("/feed", events_route([sse_event("e1", event="edit", id="1"), sse_event("m2", id="2")]))
    bridge = start_bridge(config_for(broker, [
        {"name": "single", "url": upstream.url("/feed"), "topic": "t.single"},
    ], defaults={"reconnect": FAST, "topics": {"edit": "t.edits", "*": "t.other"}}))

    kafka.wait_for_records("t.single", 2, timeout=20, bridge=bridge)
    assert bridge.stop() == 0, bridge.describe()
    assert rows(kafka.all_records("t.single")) == expect("single", [("e1", "edit", "1"), ("m2", "message", "2")])
    assert kafka.count(["t.edits", "t.other"]) == 0


# ----------------------------------------------------------------------------- --check

BOTH_IN_A_STREAM = """\
kafka:
  brokers: "127.0.0.1:9092"
state:
  dir: {state}
defaults:
  topic: t.default
streams:
  - name: fine
    url: http://127.0.0.1:9/fine
    topics: {{ edit: t.edits, "*": t.other }}
  - name: both
    url: http://127.0.0.1:9/both
    topic: t.one
    topics:
      edit: t.edits
"""

BOTH_IN_DEFAULTS = """\
kafka:
  brokers: "127.0.0.1:9092"
state:
  dir: {state}
defaults:
  topics: {{ edit: t.edits }}
  topic: t.default
streams:
  - name: one
    url: http://127.0.0.1:9/one
"""


def test_topic_and_topics_in_one_stream_is_a_config_error(tmp_path):
    text = BOTH_IN_A_STREAM.format(state=tmp_path / "state")
    status, output, problems, path = check_config(tmp_path, text)
    assert status == 2, output
    assert len(problems) == 1, output
    problem = problems[0]
    assert problem.file in (str(path), path.name, str(path.resolve())), output
    # Reported at the second of the two keys, `topics` of the second stream (line 14, column 5);
    # the first of the two would do as well.
    assert (problem.line, problem.col) in ((line_of(text, "topics:", 2), 5), (line_of(text, "topic: t.one"), 5)), output
    assert problem.path in ("streams[1].topics", "streams[1].topic"), output
    assert "topic" in problem.message, output

    # The same mistake in defaults is caught there.
    text = BOTH_IN_DEFAULTS.format(state=tmp_path / "state")
    status, output, problems, _ = check_config(tmp_path, text, name="defaults.yaml")
    assert status == 2, output
    assert [(p.line, p.col, p.path) for p in problems] in (
        [(line_of(text, "topic: t.default"), 3, "defaults.topic")],
        [(line_of(text, "topics:"), 3, "defaults.topics")]), output

    # Without the clash the file is valid: a stream's topics replaces the topic from defaults.
    text = BOTH_IN_A_STREAM.format(state=tmp_path / "state").replace("    topic: t.one\n", "")
    status, output, problems, _ = check_config(tmp_path, text, name="valid.yaml")
    assert status == 0 and problems == [], output


ROUTING_MISTAKES = """\
kafka:
  brokers: "127.0.0.1:9092"
state:
  dir: {state}
streams:
  - name: empty-routes
    url: http://127.0.0.1:9/a
    topics: {{}}
  - name: no-route
    url: http://127.0.0.1:9/b
"""


def test_routing_mistakes_are_reported_with_their_location(tmp_path):
    text = ROUTING_MISTAKES.format(state=tmp_path / "state")
    status, output, problems, _ = check_config(tmp_path, text)
    assert status == 2, output
    by_path = {p.path: p for p in problems}
    assert "streams[0].topics" in by_path and by_path["streams[0].topics"].line == line_of(text, "topics: {}"), output
    # A stream with neither topic nor topics (and none in defaults) is reported at the stream.
    missing = [p for p in problems if p.path.startswith("streams[1]")]
    assert missing and "topic" in missing[0].message, output
    assert line_of(text, "name: no-route") <= missing[0].line <= line_of(text, "url: http://127.0.0.1:9/b"), output
