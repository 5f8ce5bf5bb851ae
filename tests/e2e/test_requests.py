"""What the bridge sends and accepts on every (re)connect: method, body and configured headers
(defaults merged, the stream winning), the protocol headers (Accept, Cache-Control, User-Agent),
compressed responses, header values read from rotated files, and event IDs treated as opaque
bytes (Last-Event-ID, `last_event_id_param`, the checkpoint across a restart)."""
# ctest-timeout: 200

import json
import os
import re
import urllib.parse

from connection_support import JSON_LOG, JsonLog, describe_requests, tail, timeout, wait_requests
from harness import Kafka, run_cli
from sse_upstream import Route, close, hang, send, sse_event, wait_gate

TOPIC = "e2e.requests"
FAST = {"initial_delay": "100ms", "max_delay": "200ms"}


def stream(name, url, **settings):
    return dict({"name": name, "url": url, "topic": TOPIC, "reconnect": FAST}, **settings)


def bridge_version():
    done = run_cli(["--version"])
    match = re.search(r"sse2kafka (\d+\.\d+\.\d+\S*)", done.stdout + done.stderr)
    assert done.returncode == 0 and match, done
    return match.group(1)


def test_protocol_headers_and_user_agent(broker, upstream, config_for, start_bridge):
    upstream.route("/default", Route(body=[send(b": open\n\n"), hang()]))
    upstream.route("/own-agent", Route(body=[send(b": open\n\n"), hang()]))
    bridge = start_bridge(config_for(broker, [
        stream("default", upstream.url("/default")),
        stream("own-agent", upstream.url("/own-agent"), headers={"user-agent": "feed-reader/2.0 (ops@example.org)"}),
    ]))
    default = wait_requests(upstream, 1, "/default", 10, bridge)[0]
    own = wait_requests(upstream, 1, "/own-agent", 10, bridge)[0]
    for request in (default, own):
        assert request.headers.get_all("Accept") == ["text/event-stream"], request.headers
        assert request.headers.get_all("Cache-Control") == ["no-cache"], request.headers
        # Compressed responses are welcome.
        encodings = [e.strip() for e in request.headers.get("Accept-Encoding", "").split(",")]
        assert "gzip" in encodings and "deflate" in encodings, request.headers
        assert "Last-Event-ID" not in request.headers, request.headers
    assert default.headers.get_all("User-Agent") == ["sse2kafka/" + bridge_version()], default.headers
    assert own.headers.get_all("User-Agent") == ["feed-reader/2.0 (ops@example.org)"], own.headers


def test_method_body_and_merged_headers_on_every_reconnect(make_broker, upstream, config_for, start_bridge):
    broker = make_broker(topics=[TOPIC + ":1"])
    kafka = Kafka(broker.bootstrap)
    body = '{"subscribe":["a","b"],"n":1}'

    def serve(request):
        n = int(request.last_event_id or 0) + 1
        return Route(body=[send(sse_event("event %d" % n, id=str(n)))] + ([hang()] if n >= 3 else [close()]))
    upstream.route("/subscribe", serve)
    config = config_for(broker, [stream("put", upstream.url("/subscribe?client=e2e&v=2"), method="PUT", body=body,
                                        headers={"X-Api-Key": "stream-key", "X-Trace": "on"})])
    config["defaults"]["headers"] = {"x-api-key": "default-key", "X-Team": "core"}
    bridge = start_bridge(config)
    requests = wait_requests(upstream, 3, "/subscribe", 10, bridge)
    history = describe_requests(requests)
    for request in requests:
        assert (request.method, request.target, request.body) == ("PUT", "/subscribe?client=e2e&v=2",
                                                                 body.encode()), history
        assert request.headers.get_all("X-Api-Key") == ["stream-key"], request.headers
        assert request.headers.get_all("X-Team") == ["core"], request.headers
        assert request.headers.get_all("X-Trace") == ["on"], request.headers
        assert "Expect" not in request.headers, request.headers
    assert [r.last_event_id for r in requests] == [None, "1", "2"], history
    kafka.wait_for_records(TOPIC, 3, timeout=timeout(20), bridge=bridge)
    assert bridge.stop() == 0, tail(bridge)
    assert [r.value for r in kafka.all_records(TOPIC)] == ["event 1", "event 2", "event 3"]


def test_compressed_responses_are_decoded(make_broker, upstream, config_for, start_bridge):
    topics = ["e2e.gzip", "e2e.deflate"]
    broker = make_broker(topics=[t + ":1" for t in topics])
    kafka = Kafka(broker.bootstrap)
    events = [sse_event("compressed %d " % n + "x" * 200 * n, id=str(n)) for n in range(1, 6)]
    # One event split across two compressed pieces, too.
    pieces = [send(events[0]), send(events[1][:50]), send(events[1][50:])] + [send(e) for e in events[2:]]
    for encoding in ("gzip", "deflate"):
        upstream.route("/" + encoding, Route(encoding=encoding, body=pieces + [hang()]))
    bridge = start_bridge(config_for(broker, [
        dict(stream(e, upstream.url("/" + e)), topic="e2e." + e) for e in ("gzip", "deflate")]))
    for topic in topics:
        kafka.wait_for_records(topic, 5, timeout=timeout(20), bridge=bridge)
    assert bridge.stop() == 0, tail(bridge)
    for topic in topics:
        assert [r.value for r in kafka.all_records(topic)] == \
            ["compressed %d " % n + "x" * 200 * n for n in range(1, 6)], topic
    for encoding in ("gzip", "deflate"):
        assert len(upstream.requests("/" + encoding)) == 1, tail(bridge)


def write_atomically(path, text):
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_headers_from_files_are_read_on_every_attempt(broker, upstream, config_for, start_bridge, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("Bearer first-s3cret\n")

    def serve(request):
        n = len(upstream.requests("/rotating"))
        if n >= 3:
            return Route(body=[send(b": open\n\n"), hang()])
        return Route(body=[send(b": open\n\n"), wait_gate("rotate-%d" % n), close()])
    upstream.route("/rotating", serve)
    bridge = start_bridge(config_for(broker, [stream("rotating", upstream.url("/rotating"),
                                                     headers_from_files={"Authorization": str(token_file)})]),
                          args=JSON_LOG)
    first = wait_requests(upstream, 1, "/rotating", 10, bridge)[0]
    assert first.headers.get_all("Authorization") == ["Bearer first-s3cret"], first.headers

    write_atomically(token_file, "Bearer second-s3cret\n")
    upstream.open_gate("rotate-1")
    second = wait_requests(upstream, 2, "/rotating", 10, bridge)[1]
    assert second.headers.get_all("Authorization") == ["Bearer second-s3cret"], second.headers

    # A missing file fails the attempt (logged, retried with backoff); once it is back, the next
    # attempt sends its new value.
    token_file.unlink()
    upstream.open_gate("rotate-2")
    log = JsonLog(bridge)
    failed = log.wait_for(r"disconnected", "rotating",
                          where=lambda l: str(token_file) in l.get("error", ""), count=2)
    assert len(upstream.requests("/rotating")) == 2, tail(bridge)
    write_atomically(token_file, "Bearer third-s3cret")
    third = wait_requests(upstream, 3, "/rotating", 10, bridge)[2]
    assert third.headers.get_all("Authorization") == ["Bearer third-s3cret"], (third.headers, failed)
    assert "s3cret" not in bridge.logs(), tail(bridge)


# A Wikimedia EventStreams ID: a JSON array of Kafka positions.
WIKI_ID = ('[{"topic":"eqiad.mediawiki.recentchange","partition":0,"offset":5048372581},'
           '{"topic":"codfw.mediawiki.recentchange","partition":0,"timestamp":1700000000001}]')


def big_id(size=4096):
    """A JSON-array ID of exactly `size` bytes, with characters that need care in a query string."""
    positions = [{"topic": "dc%d.feed & more/+=?" % i, "partition": i, "offset": 10 ** 12 + i} for i in range(40)]
    text = json.dumps(positions, separators=(",", ":"))
    assert len(text) < size
    positions.append({"pad": ""})
    text = json.dumps(positions, separators=(",", ":"))
    positions[-1]["pad"] = "p" * (size - len(text))
    text = json.dumps(positions, separators=(",", ":"))
    assert len(text) == size
    return text


def test_event_ids_are_opaque_and_resent_byte_for_byte(make_broker, upstream, config_for, start_bridge):
    broker = make_broker(topics=[TOPIC + ":1"])
    kafka = Kafka(broker.bootstrap)
    large = big_id()
    upstream.route("/wiki", [Route(body=[send(sse_event("change 1", id=WIKI_ID)), close()]),
                             Route(body=[send(sse_event("change 2", id=large)), close()]),
                             Route(body=[send(b": open\n\n"), hang()])])
    config = config_for(broker, [stream("wiki", upstream.url("/wiki?since=now&lastEventId=stale"),
                                        last_event_id_param="lastEventId", key="id")])
    bridge = start_bridge(config)
    requests = wait_requests(upstream, 3, "/wiki", 10, bridge)
    history = describe_requests(requests)
    assert [r.last_event_id for r in requests] == [None, WIKI_ID, large], history

    def query(request):
        return urllib.parse.parse_qs(request.query, keep_blank_values=True)
    # Without an ID the configured URL goes as it is; with one, the parameter carries it too.
    assert requests[0].target == "/wiki?since=now&lastEventId=stale", history
    for request, expected in zip(requests[1:], (WIKI_ID, large)):
        assert query(request) == {"since": ["now"], "lastEventId": [expected]}, (request.target, history)

    kafka.wait_for_records(TOPIC, 2, timeout=timeout(20), bridge=bridge)
    assert bridge.stop() == 0, tail(bridge)
    records = kafka.all_records(TOPIC)
    assert [(r.value, r.header("sse.id"), r.key) for r in records] == [
        ("change 1", WIKI_ID, WIKI_ID), ("change 2", large, large)]

    # The checkpoint keeps it byte for byte across a restart.
    upstream.route("/wiki", Route(body=[send(b": open\n\n"), hang()]))
    second_run = start_bridge(config)
    resumed = wait_requests(upstream, 4, "/wiki", 10, second_run)[3]
    assert resumed.last_event_id == large, describe_requests(upstream.requests("/wiki"))
    assert query(resumed)["lastEventId"] == [large]
