"""The test tools themselves: mock_broker, kafka_dump, sse_upstream and the harness helpers.
These need no sse2kafka binary."""

import base64
import gzip
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zlib

import pytest

from harness import REPO, BrokerCommandError, Kafka, MockBroker, to_yaml, tool, wait_until
from sse_upstream import (NumberedRoute, Route, close, end, hang, raw, redirect, send, sleep,
                          sse_event, status_route, wait_gate)


def kcat_produce(bootstrap, topic, lines: bytes, *extra):
    """Produces one record per line "key<TAB>value" with kcat."""
    done = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t", *extra],
                          input=lines, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------- broker + kafka_dump

def test_records_round_trip_with_keys_values_and_headers(make_broker):
    broker = make_broker(topics=["smoke:1"])
    kafka = Kafka(broker.bootstrap)
    kcat_produce(broker.bootstrap, "smoke", b"k1\tv1\n\tno key\n\xff\xfe\t\xc3\x28\nk4\t\xc3\xa9t\xc3\xa9\n",
                 "-H", "h1=a", "-H", "h2=", "-H", "h3", "-H", "h1=b")
    kcat_produce(broker.bootstrap, "smoke", b"null-value\t\n", "-Z")
    kcat_produce(broker.bootstrap, "smoke", b"empty-value\t\n")

    records = kafka.wait_for_records("smoke", 6, timeout=15)
    assert [r.offset for r in records] == [0, 1, 2, 3, 4, 5]
    assert records[0].key == "k1" and records[0].value == "v1"
    assert records[0].headers == [("h1", "a"), ("h2", ""), ("h3", None), ("h1", "b")]
    assert records[0].header("h1") == "a" and records[0].header_values("h1") == ["a", "b"]
    assert records[1].key == "" and records[1].value == "no key"
    assert records[2].key is None and base64.b64decode(records[2].key_b64) == b"\xff\xfe"
    assert records[2].value is None and base64.b64decode(records[2].value_b64) == b"\xc3\x28"
    assert records[3].value == "été"
    assert records[4].key == "null-value" and records[4].value is None and records[4].value_b64 is None
    assert records[5].key == "empty-value" and records[5].value == ""
    now_ms = time.time() * 1000
    assert all(now_ms - 60_000 < r.timestamp_ms <= now_ms + 1000 for r in records)
    assert {r.timestamp_type for r in records} == {"create_time"}

    # eof mode reads exactly what is there, and watermarks agree.
    assert len(kafka.all_records("smoke")) == 6
    assert kafka.watermarks("smoke") == {("smoke", 0): (0, 6)}
    assert kafka.count("smoke") == 6


def test_dump_spreads_over_partitions_and_stops_on_count_idle_and_timeout(make_broker):
    broker = make_broker(topics=["multi:3", "other:1"])
    kafka = Kafka(broker.bootstrap)
    kcat_produce(broker.bootstrap, "multi", b"".join(b"k%d\tv%d\n" % (i, i) for i in range(30)))
    kcat_produce(broker.bootstrap, "other", b"x\ty\n")
    records = kafka.all_records(["multi", "other"])
    assert sorted(r.value for r in records if r.topic == "multi") == sorted("v%d" % i for i in range(30))
    assert [r.value for r in records if r.topic == "other"] == ["y"]
    assert len({r.partition for r in records if r.topic == "multi"}) > 1
    assert len(kafka.watermarks("multi")) == 3

    assert len(kafka.records("multi", count=5)) == 5
    started = time.monotonic()
    assert len(kafka.records("multi", idle_ms=300, timeout=20)) == 30
    assert time.monotonic() - started < 10
    started = time.monotonic()
    assert len(kafka.records("multi", count=31, timeout=1.5)) == 30
    assert 1.2 < time.monotonic() - started < 10


def test_dump_of_a_topic_that_receives_records_later(make_broker):
    broker = make_broker()
    kafka = Kafka(broker.bootstrap)
    result = {}

    def read():
        result["records"] = kafka.records("late", count=2, timeout=15)

    reader = threading.Thread(target=read)
    reader.start()
    kcat_produce(broker.bootstrap, "late", b"k\t1\nk\t2\n")  # one key: one partition, in order
    reader.join(30)
    assert [r.value for r in result["records"]] == ["1", "2"]


def test_broker_commands_answer_ok_or_error(make_broker):
    broker = make_broker(brokers=3, default_partitions=2)
    broker.ping()
    broker.down(2)
    broker.up(2)
    broker.down_all()
    broker.up_all()
    broker.rtt(1, 5)
    broker.rtt(1, 0)
    broker.produce_errors(2, "NOT_LEADER_FOR_PARTITION")
    broker.produce_errors(2, "MSG_SIZE_TOO_LARGE", 29)
    broker.command("clear-errors 0")
    broker.create_topic("made", 3)
    broker.create_topic("made-default")
    broker.command("leader made 0 3")
    with pytest.raises(BrokerCommandError, match="TOPIC_ALREADY_EXISTS"):
        broker.create_topic("made", 3)
    with pytest.raises(BrokerCommandError):
        broker.down(9)
    with pytest.raises(BrokerCommandError, match="unknown error"):
        broker.produce_errors(1, "NO_SUCH_ERROR")
    with pytest.raises(BrokerCommandError):
        broker.command("no-such-command")
    kafka = Kafka(broker.bootstrap)
    assert len(kafka.watermarks("made")) == 3
    assert len(kafka.watermarks("made-default")) == 2
    assert broker.stop() == 0


def test_produce_errors_reach_a_producer(make_broker):
    broker = make_broker(topics=["errs:1"])
    # Two failures of a retriable error: the producer retries and the record still lands once.
    broker.produce_errors(2, "NOT_LEADER_FOR_PARTITION")
    kcat_produce(broker.bootstrap, "errs", b"k\tv\n")
    assert [r.value for r in Kafka(broker.bootstrap).all_records("errs")] == ["v"]
    # A permanent error: kcat reports the failed delivery and nothing lands.
    broker.produce_errors(1, "TOPIC_AUTHORIZATION_FAILED")
    done = subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "errs"], input=b"never\n",
                          capture_output=True, timeout=30)
    assert b"authoriz" in done.stderr.lower()
    assert [r.value for r in Kafka(broker.bootstrap).all_records("errs")] == ["v"]


def test_broker_down_and_up_is_seen_by_clients(make_broker):
    broker = make_broker(topics=["du:1"])
    kafka = Kafka(broker.bootstrap)
    broker.down(1)
    done = subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "du", "-X", "message.timeout.ms=1500"],
                          input=b"lost\n", capture_output=True, timeout=30)
    assert done.returncode != 0 or done.stderr
    broker.up(1)
    kcat_produce(broker.bootstrap, "du", b"k\tback\n")
    assert [r.value for r in kafka.all_records("du")] == ["back"]


def test_broker_keeps_running_after_stdin_closes_and_exits_0_on_sigterm(processes, tmp_path):
    broker = MockBroker(processes, tmp_path)
    broker.process.stdin.close()
    kcat_produce(broker.bootstrap, "after-eof", b"k\tv\n")
    assert broker.process.poll() is None
    assert [r.value for r in Kafka(broker.bootstrap).all_records("after-eof")] == ["v"]
    broker.process.send_signal(signal.SIGINT)
    assert broker.process.wait(10) == 0


def test_mock_broker_rejects_bad_arguments():
    done = subprocess.run([str(tool("mock_broker")), "--brokers", "zero"], capture_output=True, timeout=10)
    assert done.returncode == 2 and b"--brokers" in done.stderr
    done = subprocess.run([str(tool("kafka_dump")), "--topic", "t"], capture_output=True, timeout=10)
    assert done.returncode == 2 and b"--brokers" in done.stderr


# ----------------------------------------------------------------------------- sse_upstream

def read_http(sock: socket.socket, until: bytes, timeout: float = 5) -> bytes:
    """Reads from the socket until `until` was received or the peer closed; bounded by timeout."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while until not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_scripted_bytes_arrive_exactly_with_chunk_boundaries(upstream):
    upstream.route("/feed", Route(body=[send(b"data: a\n"), send(b"\n"), send(b"id: 1\r\ndata: b\r\n\r\n")]))
    with socket.create_connection(("127.0.0.1", upstream.port)) as sock:
        sock.sendall(b"GET /feed HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 41\r\nX-Multi: 1\r\nx-multi: 2\r\n\r\n")
        data = read_http(sock, b"0\r\n\r\n")
    assert data == (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"8\r\ndata: a\n\r\n1\r\n\n\r\n12\r\nid: 1\r\ndata: b\r\n\r\n\r\n0\r\n\r\n")
    (request,) = upstream.wait_for_requests(1, timeout=5, path="/feed")
    assert request.method == "GET" and request.target == "/feed"
    assert request.last_event_id == "41"
    assert request.headers.get_all("X-MULTI") == ["1", "2"]
    assert "last-event-id" in request.headers and "nope" not in request.headers


def test_close_framing_raw_bytes_and_rst(upstream):
    upstream.route("/close", Route(framing="close", headers={"Content-Type": "text/event-stream; charset=utf-8"},
                                   body=[send("data: x\n\n"), raw(b"RAW"), end()]))
    upstream.route("/rst", Route(body=[send("data: x\n\n"), close(rst=True)]))
    upstream.route("/fin", Route(body=[send("data: x\n\n"), close()]))
    with socket.create_connection(("127.0.0.1", upstream.port)) as sock:
        sock.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_http(sock, b"never")
    assert data.endswith(b"Connection: close\r\n\r\ndata: x\n\nRAW")
    assert b"charset=utf-8" in data
    with socket.create_connection(("127.0.0.1", upstream.port)) as sock:
        sock.sendall(b"GET /rst HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            read_http(sock, b"never")
    with socket.create_connection(("127.0.0.1", upstream.port)) as sock:
        sock.sendall(b"GET /fin HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_http(sock, b"never")
    assert data.endswith(b"data: x\n\n\r\n")  # the last chunk, and no terminating 0-chunk


def test_urllib_client_gets_gzip_deflate_redirects_and_statuses(upstream):
    body = [send(sse_event("one", id="1")), send(sse_event("two", event="e"))]
    upstream.route("/gz", Route(encoding="gzip", body=body))
    upstream.route("/df", Route(encoding="deflate", framing="length", body=body))
    upstream.route("/moved", redirect("/gz", 307))
    upstream.route("/nowhere", redirect(None))
    upstream.route("/busy", status_route(503, retry_after="3"))
    expected = b"id: 1\ndata: one\n\nevent: e\ndata: two\n\n"
    with urllib.request.urlopen(upstream.url("/gz"), timeout=5) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(resp.read()) == expected
    with urllib.request.urlopen(upstream.url("/df"), timeout=5) as resp:
        assert zlib.decompress(resp.read()) == expected
    with urllib.request.urlopen(upstream.url("/moved"), timeout=5) as resp:
        assert resp.url.endswith("/gz")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(upstream.url("/nowhere"), timeout=5)
    assert err.value.code == 302 and err.value.headers.get("Location") is None
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(upstream.url("/busy"), timeout=5)
    assert err.value.code == 503 and err.value.headers["Retry-After"] == "3"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(upstream.url("/unknown"), timeout=5)
    assert err.value.code == 404


def test_post_body_route_sequence_and_callable_routes(upstream):
    upstream.route("/seq", [status_route(500), Route(body=[send("data: second\n\n")])])
    upstream.route("/echo", lambda req: Route(body=[send("data: %s %s\n\n" % (req.method, req.body.decode()))]))
    statuses = []
    for _ in range(3):
        try:
            with urllib.request.urlopen(upstream.url("/seq"), timeout=5) as resp:
                statuses.append(resp.status)
        except urllib.error.HTTPError as err:
            statuses.append(err.code)
    assert statuses == [500, 200, 200]
    req = urllib.request.Request(upstream.url("/echo?x=1"), data=b'{"a":1}', method="POST",
                                 headers={"Authorization": "Bearer t", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.read() == b'data: POST {"a":1}\n\n'
    (echo,) = upstream.requests("/echo")
    assert echo.query == "x=1" and echo.body == b'{"a":1}' and echo.headers["authorization"] == "Bearer t"


def test_chunked_request_body_and_expect_continue(upstream):
    upstream.route("/up", Route(body=[send("data: ok\n\n")]))
    with socket.create_connection(("127.0.0.1", upstream.port)) as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        assert read_http(sock, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        assert read_http(sock, b"0\r\n\r\n").endswith(b"0\r\n\r\n")
        # keep-alive: a second request on the same connection
        sock.sendall(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_http(sock, b"0\r\n\r\n").endswith(b"0\r\n\r\n")
    first, second = upstream.wait_for_requests(2, timeout=5, path="/up")
    assert first.body == b"abcde" and second.body == b""
    assert first.connection is second.connection


def test_open_connections_hang_gate_and_drop(upstream):
    upstream.route("/hang", Route(body=[send("data: 1\n\n"), hang()]))
    upstream.route("/gate", Route(body=[send("data: 1\n\n"), wait_gate("go"), send("data: 2\n\n")]))
    a = socket.create_connection(("127.0.0.1", upstream.port))
    b = socket.create_connection(("127.0.0.1", upstream.port))
    try:
        a.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        b.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        upstream.wait_for_open_connections(2, timeout=5, path="/hang")
        assert read_http(a, b"data: 1\n\n").endswith(b"data: 1\n\n\r\n")
        a.close()
        upstream.wait_for_open_connections(1, timeout=5, path="/hang")
        assert upstream.drop_connections("/hang") == 1
        assert read_http(b, b"never").endswith(b"data: 1\n\n\r\n")
        upstream.wait_for_open_connections(0, timeout=5, path="/hang")
    finally:
        a.close()
        b.close()
    with socket.create_connection(("127.0.0.1", upstream.port)) as c:
        c.sendall(b"GET /gate HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"data: 1" in read_http(c, b"data: 1\n\n")
        upstream.open_gate("go")
        assert read_http(c, b"0\r\n\r\n").endswith(b"data: 2\n\n\r\n0\r\n\r\n")
    conns = upstream.connections()
    assert len(conns) == 3
    assert all(c.closed_at is None or c.closed_at >= c.opened_at for c in conns)


def test_sleep_steps_pace_the_stream(upstream):
    upstream.route("/slow", Route(body=[send("data: 1\n\n"), sleep(300), send("data: 2\n\n")]))
    with socket.create_connection(("127.0.0.1", upstream.port)) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        read_http(sock, b"data: 1\n\n")
        started = time.monotonic()
        read_http(sock, b"data: 2\n\n")
        assert time.monotonic() - started >= 0.25


def test_numbered_route_resumes_after_last_event_id_and_disconnects(upstream):
    upstream.route("/n", NumberedRoute(end=12, disconnect_every=5, event="tick", payload=lambda n: '{"n":%d}' % n))
    with socket.create_connection(("127.0.0.1", upstream.port)) as sock:
        sock.sendall(b"GET /n HTTP/1.1\r\nHost: x\r\n\r\n")
        first = read_http(sock, b"never")
    assert first.count(b"data: ") == 5 and b"id: 5\nevent: tick\ndata: {\"n\":5}\n\n" in first
    with socket.create_connection(("127.0.0.1", upstream.port)) as sock:
        sock.sendall(b"GET /n HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 10\r\n\r\n")
        rest = read_http(sock, b"0\r\n\r\n")
    assert b"id: 11\n" in rest and b"id: 12\n" in rest and b"id: 10\n" not in rest and b"id: 13" not in rest
    assert upstream.last_sent_id("/n") == 12
    assert upstream.events_sent("/n") == 7


def test_numbered_route_rate(upstream):
    upstream.route("/r", NumberedRoute(end=6, rate_per_s=20))
    started = time.monotonic()
    with urllib.request.urlopen(upstream.url("/r"), timeout=10) as resp:
        body = resp.read()
    elapsed = time.monotonic() - started
    assert body.count(b"data: event ") == 6
    assert 0.2 <= elapsed < 5  # 5 intervals of 50 ms after the first event


def test_full_speed_numbered_route_is_fast(upstream):
    upstream.route("/fast", NumberedRoute(end=20000, payload_size=100))
    started = time.monotonic()
    with urllib.request.urlopen(upstream.url("/fast"), timeout=30) as resp:
        body = resp.read()
    assert body.count(b"\n\n") == 20000
    assert time.monotonic() - started < 10


def test_cli_numbered_mode_prints_listening_and_stops_on_sigterm(processes):
    proc = processes.add(subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "tools" / "sse_upstream.py"), "--port", "0", "--mode", "numbered",
         "--end", "3"], stdout=subprocess.PIPE, text=True))
    line = proc.stdout.readline()
    assert line.startswith("LISTENING ")
    port = int(line.split()[1])
    with urllib.request.urlopen("http://127.0.0.1:%d/any/path" % port, timeout=5) as resp:
        assert resp.read() == b"id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_cli_demo_mode_serves_ticker_and_chat(processes):
    proc = processes.add(subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "tools" / "sse_upstream.py"), "--port", "0", "--demo"],
        stdout=subprocess.PIPE, text=True))
    port = int(proc.stdout.readline().split()[1])
    with urllib.request.urlopen("http://127.0.0.1:%d/chat" % port, timeout=10) as resp:
        chat = resp.read().decode()
    assert chat.rstrip().endswith("data: [DONE]") and chat.count("data: ") == 11
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /ticker HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 41\r\n\r\n")
        assert b"id: 42\nevent: tick\ndata: {" in read_http(sock, b"id: 42\n", timeout=5) + read_http(sock, b"\n\n")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0


# ----------------------------------------------------------------------------- harness helpers

def test_wait_until_returns_the_value_or_fails_with_the_message():
    values = iter([0, None, "ready"])
    assert wait_until(lambda: next(values), timeout=5, interval=0.001) == "ready"
    with pytest.raises(AssertionError, match="never"):
        wait_until(lambda: False, timeout=0.05, message="never")


def test_to_yaml_writes_block_yaml():
    text = to_yaml({"kafka": {"brokers": "a:1", "properties": {"linger.ms": "5"}},
                    "streams": [{"name": "s", "events": ["a", "b"], "headers": {"X-A": "v: \"q\""}}],
                    "topics": {"*": "other"}, "flag": True, "n": 3, "empty": []})
    assert text == ('kafka:\n  brokers: "a:1"\n  properties:\n    linger.ms: "5"\n'
                    'streams:\n  - name: "s"\n    events:\n      - "a"\n      - "b"\n'
                    '    headers:\n      X-A: "v: \\"q\\""\n'
                    'topics:\n  "*": "other"\nflag: true\nn: 3\nempty: []\n')
