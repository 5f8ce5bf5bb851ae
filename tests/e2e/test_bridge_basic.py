"""Foundation acceptance tests of sse2kafka, written against /work/shared/spec/interface.md:
the records an event stream produces, reconnect and restart with Last-Event-ID, the request
shape, the embedded cluster and the command line (--check, --version, --help)."""
# ctest-timeout: 400

import re
import time

from harness import Kafka, parse_check_output, run_cli, write_config
from sse_upstream import Route, close, hang, send, sse_event, wait_gate

FAST = {"initial_delay": "100ms", "max_delay": "1s"}


def sse_headers(record):
    """The record's sse.* headers as a dict (each must appear once)."""
    return record.headers_with_prefix("sse.")


def expect(values_events_ids, stream):
    """[(value, event, id)] -> [(value, {sse.* headers})] as the spec defines the headers."""
    out = []
    for value, event, event_id in values_events_ids:
        headers = {"sse.stream": stream, "sse.event": event}
        if event_id:
            headers["sse.id"] = event_id
        out.append((value, headers))
    return out


def numbered_event(n):
    return sse_event("event %d" % n, id=str(n))


def resuming_route(last, first_connection_end=None, gate=None, then_close=False):
    """A route serving events N = Last-Event-ID + 1 .. last (1.. without the header), one chunk
    each; the first connection stops after first_connection_end and waits at `gate` before it
    closes (then_close) or hangs; later connections serve to `last` and hang."""
    def route(request):
        lei = request.last_event_id
        first = int(lei) + 1 if lei else 1
        stop = last if (lei is not None or first_connection_end is None) else first_connection_end
        body = [send(numbered_event(n)) for n in range(first, stop + 1)]
        if gate is not None and lei is None:
            body.append(wait_gate(gate))
        body.append(close() if (then_close and lei is None) else hang())
        return Route(body=body)
    return route


# ----------------------------------------------------------------------------- (a) records

ALPHA_CHUNKS = [
    b": a comment line is ignored\n",
    b"data: first\n\n",
    b"event: update\ndata: line one\ndata: line two\nid: 7\n\n",
    b"data: crlf\r\nid: 8\r\n\r\n",
    b"data:\n\n",                                # empty data: an empty, non-null value
    b"da", b"ta: spl", b"it\n", b"\n",           # one event split over four chunks
    b"id: 9\n\n",                                # sets the ID, dispatches nothing
    b"data: after id-only block\n\n",
    b"data: cr only\r\r",
    b"data:nospace\n\ndata:  two spaces\n\ndata: with: colon\n\n",
    "data: héllo ✓\n\n".encode("utf-8"),
    b"retry: 100\n\n",                           # no data: nothing dispatched
]
ALPHA_EXPECTED = [
    ("first", "message", ""),
    ("line one\nline two", "update", "7"),
    ("crlf", "message", "8"),
    ("", "message", "8"),
    ("split", "message", "8"),
    ("after id-only block", "message", "9"),
    ("cr only", "message", "9"),
    ("nospace", "message", "9"),
    (" two spaces", "message", "9"),
    ("with: colon", "message", "9"),
    ("héllo ✓", "message", "9"),
]

BETA_CHUNKS = [
    b"id: b1\ndata: one\n\n",
    b"data: two\n\n",                # the last event ID carries over
    b"id:\ndata: three\n\n",         # an empty id resets it: no key, no sse.id
    b"id: b4\nevent: custom\ndata: four\n\n",
]
BETA_EXPECTED = [("one", "message", "b1"), ("two", "message", "b1"), ("three", "message", ""),
                 ("four", "custom", "b4")]

GAMMA_CHUNKS = [
    b"event: keep\ndata: k1\nid: g1\n\n",
    b"event: drop\ndata: d1\nid: g2\n\n",   # filtered out, but its ID counts as seen
    b"data: m1\n\n",
    b"event: drop\ndata: d2\n\n",
    b"event: keep\ndata: k2\nid: g5\n\n",
]
GAMMA_EXPECTED = [("k1", "keep", "g1"), ("m1", "message", "g2"), ("k2", "keep", "g5")]

DELTA_CHUNKS = [b"id: d1\ndata: n1\n\n", b"data: n2\n\n"]
DELTA_EXPECTED = [("n1", "message", "d1"), ("n2", "message", "d1")]


def test_streams_deliver_exactly_the_expected_records(make_broker, upstream, config_for, start_bridge):
    topics = ["e2e.alpha", "e2e.beta", "e2e.gamma", "e2e.delta"]
    # One partition each, so that the order of records is the stream order.
    broker = make_broker(topics=[t + ":1" for t in topics])
    kafka = Kafka(broker.bootstrap)
    for path, chunks in (("/alpha", ALPHA_CHUNKS), ("/beta", BETA_CHUNKS), ("/gamma", GAMMA_CHUNKS),
                         ("/delta", DELTA_CHUNKS)):
        upstream.route(path, Route(body=[send(c) for c in chunks] + [hang()]))
    config = config_for(broker, [
        {"name": "alpha", "url": upstream.url("/alpha"), "topic": "e2e.alpha"},  # key: stream by default
        {"name": "beta", "url": upstream.url("/beta"), "topic": "e2e.beta", "key": "id"},
        {"name": "gamma", "url": upstream.url("/gamma"), "topic": "e2e.gamma", "key": "event",
         "events": ["keep", "message"]},
        {"name": "delta", "url": upstream.url("/delta"), "topic": "e2e.delta", "key": "none"},
    ])
    window_start_ms = time.time() * 1000
    bridge = start_bridge(config)

    expected = {
        "e2e.alpha": ("alpha", ALPHA_EXPECTED, lambda v, e, i: "alpha"),
        "e2e.beta": ("beta", BETA_EXPECTED, lambda v, e, i: i or None),
        "e2e.gamma": ("gamma", GAMMA_EXPECTED, lambda v, e, i: e),
        "e2e.delta": ("delta", DELTA_EXPECTED, lambda v, e, i: None),
    }
    # Every stream connects on its own, although they share one upstream host and port.
    for path in ("/alpha", "/beta", "/gamma", "/delta"):
        upstream.wait_for_requests(1, timeout=10, path=path)
    for topic, (_, rows, _) in expected.items():
        kafka.wait_for_records(topic, len(rows), timeout=20, bridge=bridge)
    window_end_ms = time.time() * 1000
    assert bridge.stop() == 0, bridge.describe()

    for topic, (stream, rows, key_of) in expected.items():
        records = kafka.all_records(topic)
        got = [(r.value, sse_headers(r)) for r in records]
        assert got == expect(rows, stream), "records of %s" % topic
        assert [r.key for r in records] == [key_of(*row) for row in rows], "keys of %s" % topic
        assert all(r.value_b64 is None and r.key_b64 is None for r in records)
        for r in records:
            assert window_start_ms - 5 <= r.timestamp_ms <= window_end_ms + 5, (topic, r)
    # One connection per stream: nothing made the bridge reconnect.
    for path in ("/alpha", "/beta", "/gamma", "/delta"):
        assert len(upstream.requests(path)) == 1, path


# ----------------------------------------------------------------------------- (b) reconnect

def test_reconnect_after_a_drop_carries_last_event_id(broker, kafka, upstream, config_for, start_bridge):
    broker.create_topic("e2e.drop", 1)
    upstream.route("/feed", resuming_route(last=10, first_connection_end=5, gate="drop", then_close=True))
    bridge = start_bridge(config_for(broker, [
        {"name": "dropper", "url": upstream.url("/feed"), "topic": "e2e.drop", "reconnect": FAST}]))

    # Events 1..5 are in Kafka (so acknowledged and checkpointed) before the upstream drops.
    kafka.wait_for_records("e2e.drop", 5, timeout=20, bridge=bridge)
    upstream.open_gate("drop")
    first, second = upstream.wait_for_requests(2, timeout=15, path="/feed")
    assert first.last_event_id is None
    assert second.last_event_id == "5"
    # n = 1 failed attempt: the wait is drawn from [initial_delay / 2, initial_delay].
    gap = second.monotonic - first.connection.closed_at
    assert 0.045 <= gap < 5, gap

    kafka.wait_for_records("e2e.drop", 10, timeout=20, bridge=bridge)
    assert bridge.stop() == 0, bridge.describe()
    assert [r.value for r in kafka.all_records("e2e.drop")] == ["event %d" % n for n in range(1, 11)]
    assert [r.header("sse.id") for r in kafka.all_records("e2e.drop")] == [str(n) for n in range(1, 11)]
    assert len(upstream.requests("/feed")) == 2


# ----------------------------------------------------------------------------- (c), (d) restart

def test_restart_resumes_from_the_checkpoint(broker, kafka, upstream, config_for, start_bridge):
    broker.create_topic("e2e.restart", 1)
    upstream.route("/feed", resuming_route(last=10, first_connection_end=6))
    config = config_for(broker, [{"name": "restarter", "url": upstream.url("/feed"), "topic": "e2e.restart"}])

    first_run = start_bridge(config)
    kafka.wait_for_records("e2e.restart", 6, timeout=20, bridge=first_run)
    assert first_run.stop() == 0, first_run.describe()
    assert upstream.requests("/feed")[0].last_event_id is None

    second_run = start_bridge(config)
    requests = upstream.wait_for_requests(2, timeout=15, path="/feed")
    assert requests[1].last_event_id == "6"
    kafka.wait_for_records("e2e.restart", 10, timeout=20, bridge=second_run)
    assert second_run.stop() == 0, second_run.describe()
    assert [r.value for r in kafka.all_records("e2e.restart")] == ["event %d" % n for n in range(1, 11)]


def test_resume_false_starts_from_the_live_edge_then_reconnects_as_usual(broker, kafka, upstream, config_for,
                                                                        start_bridge):
    broker.create_topic("e2e.live", 1)
    upstream.route("/feed", resuming_route(last=100, first_connection_end=3))
    config = config_for(broker, [{"name": "live", "url": upstream.url("/feed"), "topic": "e2e.live",
                                  "resume": False, "reconnect": FAST}])

    first_run = start_bridge(config)
    kafka.wait_for_records("e2e.live", 3, timeout=20, bridge=first_run)
    assert first_run.stop() == 0, first_run.describe()

    # After the restart: no Last-Event-ID although a checkpoint (3) exists; the upstream's live
    # edge is 11..13, then it drops and the reconnect carries this run's checkpoint.
    upstream.route("/feed", [Route(body=[send(numbered_event(n)) for n in (11, 12, 13)] +
                                   [wait_gate("drop"), close()]),
                             resuming_route(last=15)])
    second_run = start_bridge(config)
    requests = upstream.wait_for_requests(2, timeout=15, path="/feed")
    assert requests[1].last_event_id is None
    kafka.wait_for_records("e2e.live", 6, timeout=20, bridge=second_run)
    upstream.open_gate("drop")
    requests = upstream.wait_for_requests(3, timeout=15, path="/feed")
    assert requests[2].last_event_id == "13"
    kafka.wait_for_records("e2e.live", 8, timeout=20, bridge=second_run)
    assert second_run.stop() == 0, second_run.describe()
    assert [r.value for r in kafka.all_records("e2e.live")] == \
        ["event %d" % n for n in (1, 2, 3, 11, 12, 13, 14, 15)]


# ----------------------------------------------------------------------------- (e) request shape

def test_method_body_and_headers_on_every_connect(broker, kafka, upstream, config_for, start_bridge):
    broker.create_topic("e2e.post", 1)
    body = '{"model":"x","stream":true}'
    # Each connection serves the event after Last-Event-ID, waits for the test, and closes;
    # the third one stays open.
    def one_event(request):
        n = int(request.last_event_id or 0) + 1
        return Route(body=[send(numbered_event(n)), hang() if n >= 3 else wait_gate("close-%d" % n), close()])
    upstream.route("/chat", one_event)
    bridge = start_bridge(config_for(broker, [{
        "name": "poster", "url": upstream.url("/chat?session=1"), "topic": "e2e.post", "method": "POST",
        "body": body, "reconnect": FAST,
        "headers": {"Authorization": "Bearer ${E2E_TOKEN}", "X-Custom": "custom value"},
    }]), env={"E2E_TOKEN": "s3cret-t0ken"})

    for n in (1, 2):
        # The event is in Kafka, so it is acknowledged and checkpointed before the drop.
        kafka.wait_for_records("e2e.post", n, timeout=20, bridge=bridge)
        upstream.open_gate("close-%d" % n)
    requests = upstream.wait_for_requests(3, timeout=20, path="/chat")
    for request in requests:
        assert request.method == "POST"
        assert request.target == "/chat?session=1"
        assert request.body == body.encode()
        assert request.headers.get("Authorization") == "Bearer s3cret-t0ken"
        assert request.headers.get("X-Custom") == "custom value"
    assert [r.last_event_id for r in requests] == [None, "1", "2"]
    kafka.wait_for_records("e2e.post", 3, timeout=20, bridge=bridge)
    assert bridge.stop() == 0, bridge.describe()
    assert [r.value for r in kafka.all_records("e2e.post")] == ["event 1", "event 2", "event 3"]
    # Header values from the config are secrets: they never appear in the logs.
    assert "s3cret-t0ken" not in bridge.logs()


# ----------------------------------------------------------------------------- (f) embedded

def test_embedded_cluster(upstream, tmp_path, start_bridge):
    upstream.route("/feed", Route(body=[send(numbered_event(n)) for n in (1, 2, 3)] + [hang()]))
    config = {
        "kafka": {"brokers": "embedded", "flush_timeout": "5s", "properties": {"linger.ms": "5"}},
        "state": {"dir": str(tmp_path / "state")},
        "log": {"level": "info"},
        "streams": [{"name": "emb", "url": upstream.url("/feed"), "topic": "e2e.embedded",
                     "reconnect": FAST}],
    }
    bridge = start_bridge(config)
    match = bridge.wait_for_log(r"embedded.*?((?:127\.0\.0\.1|localhost):\d+(?:,(?:127\.0\.0\.1|localhost):\d+)*)",
                                timeout=15)
    kafka = Kafka(match.group(1))
    records = kafka.wait_for_records("e2e.embedded", 3, timeout=20, bridge=bridge)
    assert sorted(r.value for r in records) == ["event 1", "event 2", "event 3"]
    assert {r.header("sse.stream") for r in records} == {"emb"}
    assert bridge.stop() == 0, bridge.describe()


# ----------------------------------------------------------------------------- (g) command line

VALID_CONFIG = """\
kafka:
  brokers: "127.0.0.1:9092"
  properties:
    linger.ms: 5
state:
  dir: {state}
defaults:
  topic: e2e.defaults
  reconnect: {{ initial_delay: 100ms, max_delay: 1s }}
streams:
  - name: one
    url: http://127.0.0.1:9/one
  - name: two
    url: http://127.0.0.1:9/two
    topic: e2e.two
    key: id
    method: POST
    body: '{{"a":1}}'
    headers:
      X-Token: "${{E2E_CHECK_TOKEN:-fallback}}"
    events: [message, edit]
    resume: false
    idle_timeout: 0
"""

# Line and column (1-based) of each planted problem.
INVALID_CONFIG = """\
kafka:
  brokers: "127.0.0.1:9092"
state:
  dir: {state}
streams:
  - name: one
    url: http://127.0.0.1:9/one
    topic: e2e.one
    key: sideways
    bogus_setting: 1
"""


def test_check_accepts_a_valid_config(tmp_path):
    path = write_config(tmp_path, VALID_CONFIG.format(state=tmp_path / "state"))
    done = run_cli(["-c", str(path), "--check"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert parse_check_output(done.stdout + done.stderr) == []


def test_check_reports_every_problem_with_its_location(tmp_path):
    path = write_config(tmp_path, INVALID_CONFIG.format(state=tmp_path / "state"))
    done = run_cli(["-c", str(path), "--check"])
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    problems = parse_check_output(output)
    assert problems, output
    for problem in problems:
        assert problem.file in (str(path), path.name, str(path.resolve())), problem
    key_problem = [p for p in problems if p.line == 9]
    assert key_problem and key_problem[0].col in (5, 10), problems
    assert key_problem[0].path.endswith("key"), problems
    bogus = [p for p in problems if p.line == 10]
    assert bogus and bogus[0].col == 5, problems
    assert "bogus_setting" in bogus[0].path, problems


def test_check_reports_yaml_syntax_errors(tmp_path):
    broken = write_config(tmp_path, "kafka:\n  brokers: [unclosed\nstreams: []\n", name="broken.yaml")
    done = run_cli(["-c", str(broken), "--check"])
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert re.search(r"broken\.yaml:\d+:\d+: ", output), output


def test_check_reports_unset_environment_variables(tmp_path):
    text = VALID_CONFIG.format(state=tmp_path / "state").replace("topic: e2e.two",
                                                                 'topic: "e2e.two${E2E_CHECK_UNSET}"')
    path = write_config(tmp_path, text)
    # Set, even to an empty string, is a value.
    done = run_cli(["-c", str(path), "--check"], env={"E2E_CHECK_UNSET": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    done = run_cli(["-c", str(path), "--check"], env={"E2E_CHECK_UNSET": None})
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    problems = parse_check_output(output)
    assert any(p.line == 15 and "E2E_CHECK_UNSET" in p.message for p in problems), output


def test_version_help_and_usage_errors(tmp_path):
    done = run_cli(["--version"])
    assert done.returncode == 0 and re.search(r"\d+\.\d+\.\d+", done.stdout + done.stderr), done
    done = run_cli(["--help"])
    assert done.returncode == 0 and "--config" in done.stdout + done.stderr, done
    done = run_cli(["--no-such-option"])
    assert done.returncode == 2, done
    done = run_cli(["-c", str(tmp_path / "missing.yaml"), "--check"])
    assert done.returncode == 2, done
    assert "missing.yaml" in done.stdout + done.stderr
