"""HTTP/2: several streams to one server share one TCP connection (multiplexed), each delivers its
events, and a stream the server ends is reopened with its Last-Event-ID.

Two servers, both connection_support.H2SSEServer (python3-h2), which counts the TCP connections it
accepts:
- h2c with prior knowledge (`http_version: "2"` on http://).
- TLS with ALPN h2 (`http_version: auto` on https://, the default, with a CA made by openssl at test
  time), the usual production case.

libcurl before 8.0.0 (Debian bookworm has 7.88.1) cannot reuse an h2c prior-knowledge connection
for a second transfer: the second one fails at once with "Error in the HTTP2 framing layer"
(curl issue #10634, fixed by curl PR #10643 in 8.0.0). With such a libcurl the h2c test asks only
that every stream works (one connection each is fine); with a newer one, it asks for one
connection."""
# ctest-timeout: 120

import re

import pytest

from connection_support import H2Response, JSON_LOG, JsonLog, ThrowawayCertificates, tail, timeout
from harness import Kafka, run_cli, wait_until
from sse_upstream import sse_event

pytest.importorskip("h2", reason="python3-h2 is needed for the HTTP/2 server (scripts/install-deps.sh)")

from connection_support import H2SSEServer  # noqa: E402

TOPIC = "e2e.http2"
NAMES = ["m0", "m1", "m2", "m3", "ends"]


def libcurl_version():
    done = run_cli(["--version"])
    match = re.search(r"libcurl/(\d+)\.(\d+)\.(\d+)", done.stdout + done.stderr)
    assert match, done
    return tuple(int(part) for part in match.groups())


def respond(request):
    name = request.path.rsplit("/", 1)[-1]
    if name == "ends" and "last-event-id" not in request.headers:
        # The first response ends normally: the stream is reopened after the base delay.
        return H2Response(sse_event("ends 1", id="e1"), end_stream=True)
    if name == "ends":
        return H2Response(sse_event("ends 2 after " + request.headers["last-event-id"], id="e2"))
    return H2Response(b"".join(sse_event("%s %d" % (name, n), id=str(n)) for n in (1, 2, 3)))


def run_streams(broker, server, config_for, start_bridge, hint="", **settings):
    """Runs the five streams against `server`; returns (bridge, requests) once every event is in
    Kafka and checks the records after a clean stop."""
    kafka = Kafka(broker.bootstrap)
    config = config_for(broker, [dict({"name": name, "url": server.url("/h2/" + name), "topic": TOPIC}, **settings)
                                 for name in NAMES])
    bridge = start_bridge(config, args=JSON_LOG)
    try:
        kafka.wait_for_records(TOPIC, 3 * 4 + 2, timeout=timeout(20), bridge=bridge)
    except AssertionError as error:
        raise AssertionError("%s\n%s%s" % (error, describe(server, server.requests()), hint)) from None
    wait_until(lambda: len(server.requests()) >= len(NAMES) + 1, timeout(10),
               message=lambda: "requests %r\n%s" % (server.requests(), tail(bridge)))
    requests = server.requests()
    for request in requests:
        assert request.headers.get(":method") == "GET", request
        assert request.headers.get("accept") == "text/event-stream", request
    log = JsonLog(bridge)
    for name in NAMES:
        assert log.wait_for(r"^connected$", name)[0]["status"] == 200
    assert bridge.stop() == 0, tail(bridge)
    got = sorted((r.header("sse.stream"), r.value) for r in kafka.all_records(TOPIC))
    want = sorted([(n, "%s %d" % (n, i)) for n in NAMES[:-1] for i in (1, 2, 3)] +
                  [("ends", "ends 1"), ("ends", "ends 2 after e1")])
    assert got == want, got
    return bridge, requests


def describe(server, requests):
    return "TCP connections accepted: %d; requests (connection, stream id, path): %r" % (
        server.connections_accepted, [(r.connection, r.stream_id, r.path) for r in requests])


def test_h2_over_tls_streams_share_one_connection(make_broker, config_for, start_bridge, tmp_path):
    broker = make_broker(topics=[TOPIC + ":1"])
    certificates = ThrowawayCertificates(tmp_path / "tls")
    with H2SSEServer(respond, tls=certificates) as server:
        bridge, requests = run_streams(broker, server, config_for, start_bridge,
                                       tls={"ca_file": str(certificates.ca_file)})
        assert server.connections_accepted == 1, describe(server, requests) + "\n" + tail(bridge)
        # One connection, so every request has its own HTTP/2 stream on it, the reopened one too.
        assert len({r.stream_id for r in requests}) == len(requests), describe(server, requests)


def test_h2c_prior_knowledge_streams(make_broker, config_for, start_bridge):
    broker = make_broker(topics=[TOPIC + ":1"])
    with H2SSEServer(respond) as server:
        hint = ""
        if libcurl_version() < (8, 0, 0):
            hint = ("\nlibcurl %d.%d.%d fails a second transfer on a reused h2c prior-knowledge connection "
                    "(curl issue #10634, fixed in 8.0.0): each h2c stream needs its own connection "
                    "(CURLOPT_FRESH_CONNECT, no CURLOPT_PIPEWAIT) with this libcurl." % libcurl_version())
        bridge, requests = run_streams(broker, server, config_for, start_bridge, hint=hint, http_version="2")
        if libcurl_version() >= (8, 0, 0):
            assert server.connections_accepted == 1, describe(server, requests) + "\n" + tail(bridge)
        else:
            assert server.connections_accepted <= len(requests), describe(server, requests)
