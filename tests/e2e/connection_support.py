"""Helpers for the stream-connection end-to-end tests (test_reconnect, test_http_status,
test_redirects, test_stream_end, test_requests, test_many_streams, test_http2).

- Timing: `timeout()` scales waits under sanitizers, `SLACK` is the tolerance added to upper
  timing bounds (scheduling noise on 2 shared cores), `backoff_window()` is the spec's formula.
- JsonLog: the bridge's `--log-format json` lines as dicts, with waits on them.
- assert_gap(): a measured interval against a [low, high] window, with the bridge's log tail.
- UnacceptingListener: a loopback listener whose accept queue is full, so that connects to it
  time out (SYNs are dropped), for connect_timeout.
- ThrowawayCertificates: a throwaway CA and server certificate made with openssl at test time.
- H2SSEServer: a small HTTP/2 SSE server built on python3-h2, cleartext with prior knowledge
  (h2c) or over TLS with ALPN, which counts the TCP connections it accepts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import os
import re
import resource
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from harness import wait_until

# Under ASan+UBSan the daemon is about 3x slower: waits grow, behaviour bounds do not.
SANITIZED = bool(os.environ.get("SSE2KAFKA_SANITIZED"))
SLOW = 3.0 if SANITIZED else 1.0
# How much later than due a timer-driven request may arrive (seconds): the daemon's loop, the
# upstream's asyncio thread and pytest share two noisy cores.
SLACK = 0.35 * SLOW
# How much earlier than due: the daemon's timers are in whole milliseconds and the upstream stamps
# a request when its head is parsed, after the daemon's clock started the wait.
EARLY = 0.015

JSON_LOG = ["--log-format", "json"]


def timeout(seconds: float) -> float:
    """A wait of `seconds` in a normal build, scaled for a sanitized one."""
    return seconds * SLOW


def backoff_window(base_ms: int, max_delay_ms: int, failures: int) -> tuple:
    """(low, high) in ms of the wait after `failures` consecutive failed attempts:
    d = min(base * 2^(n-1), max(max_delay, base)) drawn from [d/2, d] (low rounded up)."""
    d = min(base_ms * 2 ** (failures - 1), max(max_delay_ms, base_ms))
    return (d + 1) // 2, d


def http_date(unix_seconds: float) -> str:
    """An IMF-fixdate such as "Sun, 06 Nov 1994 08:49:37 GMT" (whole seconds, rounded down)."""
    return email.utils.formatdate(int(unix_seconds), usegmt=True)


def raise_open_file_limit(wanted: int) -> None:
    """Raises this process's soft RLIMIT_NOFILE towards `wanted` (bounded by the hard limit);
    children started afterwards inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def tail(bridge, lines: int = 60) -> str:
    """The bridge's last log lines, for assertion messages."""
    return bridge.describe(tail_lines=lines)


def assert_gap(seconds: float, low_ms: float, high_ms: float, what: str, bridge, early: float = EARLY,
               slack: float = SLACK) -> None:
    """Fails unless low_ms - early <= seconds * 1000 <= high_ms + slack, saying what was measured."""
    ms = seconds * 1000.0
    if not (low_ms - early * 1000.0 <= ms <= high_ms + slack * 1000.0):
        raise AssertionError("%s: %.0f ms, expected within [%d, %d] ms (tolerance -%d/+%d ms)\n%s" % (
            what, ms, low_ms, high_ms, early * 1000, slack * 1000, tail(bridge)))


def request_gaps(requests: list) -> list:
    """Seconds between the arrivals of successive requests."""
    return [b.monotonic - a.monotonic for a, b in zip(requests, requests[1:])]


def describe_requests(requests: list) -> str:
    start = requests[0].monotonic if requests else 0.0
    return "\n".join("  +%7.3fs %s %s Last-Event-ID=%r conn=%d" % (
        r.monotonic - start, r.method, r.target, r.last_event_id, r.connection.id) for r in requests)


# ----------------------------------------------------------------------------- JSON logs

class JsonLog:
    """The JSON log lines of a bridge started with `--log-format json`."""

    def __init__(self, bridge) -> None:
        self.bridge = bridge

    def lines(self, msg: Optional[str] = None, stream: Optional[str] = None) -> list:
        """Every parsed line (in order), optionally only those whose "msg" matches the regex
        `msg` (searched, case-insensitive) and whose "stream" is `stream`."""
        out = []
        regex = re.compile(msg, re.IGNORECASE) if msg is not None else None
        for text in self.bridge.logs().splitlines():
            text = text.strip()
            if not text.startswith("{"):
                continue
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if stream is not None and line.get("stream") != stream:
                continue
            if regex is not None and not regex.search(str(line.get("msg", ""))):
                continue
            out.append(line)
        return out

    def wait_for(self, msg: str, stream: Optional[str] = None, count: int = 1, timeout_s: float = 10,
                 where: Optional[Callable[[dict], bool]] = None) -> list:
        """Waits until at least `count` lines match (and satisfy `where`); returns them all."""
        def found():
            got = [l for l in self.lines(msg, stream) if where is None or where(l)]
            if len(got) >= count:
                return got
            if not self.bridge.running():
                raise AssertionError("the bridge exited before logging %d x /%s/ for %s\n%s" % (
                    count, msg, stream, tail(self.bridge)))
            return None
        return wait_until(found, timeout(timeout_s), interval=0.05,
                          message=lambda: "fewer than %d log lines /%s/ for stream %s\n%s" % (
                              count, msg, stream, tail(self.bridge)))

    def reconnect_delays(self, stream: str) -> list:
        """delay_ms of the stream's "reconnecting" lines, in order."""
        return [int(l["delay_ms"]) for l in self.lines(r"^reconnecting$", stream)]


def wait_requests(upstream, n: int, path: str, timeout_s: float, bridge) -> list:
    """upstream.wait_for_requests with the bridge's log tail in the failure message."""
    try:
        return upstream.wait_for_requests(n, timeout=timeout(timeout_s), path=path)
    except TimeoutError as error:
        raise AssertionError("%s\n%s\n%s" % (error, describe_requests(upstream.requests(path)),
                                             tail(bridge))) from None


# ----------------------------------------------------------------------------- connect timeouts

class UnacceptingListener:
    """A listening TCP socket on 127.0.0.1 that never accepts, with its accept queue filled by
    idle connections of its own: Linux then drops further SYNs (ListenOverflows), so a client's
    connect neither succeeds nor is refused and only its connect timeout ends it. Reliable on
    loopback, unlike a blackhole address, which needs routing that a container may not have."""

    def __init__(self, fillers: int = 2) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        self._fillers = []
        for _ in range(fillers):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self._fillers.append(s)
        # The first filler completes its handshake and sits in the queue, which is then full.
        wait_until(self._queue_full, 5, message="the accept queue of the test listener did not fill")

    def _queue_full(self) -> bool:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(0.2)
        try:
            probe.connect(("127.0.0.1", self.port))
        except (socket.timeout, OSError):
            return True
        finally:
            probe.close()
        return False

    def url(self, path: str = "/") -> str:
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def close(self) -> None:
        for s in self._fillers:
            s.close()
        self._listener.close()

    def __enter__(self) -> "UnacceptingListener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------- TLS

class ThrowawayCertificates:
    """A throwaway CA and a server certificate for 127.0.0.1 (and localhost), made with the
    openssl command line in `directory` at test time: ca_file for the bridge's tls.ca_file,
    cert_file and key_file for the server."""

    def __init__(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = directory / "ca.pem"
        ca_key = directory / "ca.key"
        self.cert_file = directory / "server.pem"
        self.key_file = directory / "server.key"
        request = directory / "server.csr"
        extensions = directory / "server.ext"
        extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                              "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                              "extendedKeyUsage=serverAuth\n")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", ca_key, "-out", self.ca_file, "-days", "2", "-subj", "/CN=sse2kafka e2e test CA")
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", self.key_file, "-out", request, "-subj", "/CN=127.0.0.1")
        self._openssl("x509", "-req", "-in", request, "-CA", self.ca_file, "-CAkey", ca_key, "-CAcreateserial",
                      "-out", self.cert_file, "-days", "2", "-extfile", extensions)

    @staticmethod
    def _openssl(*args) -> None:
        done = subprocess.run(["openssl"] + [str(a) for a in args], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError("openssl %s failed: %s" % (args[0], done.stderr))

    def server_context(self, alpn: list) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        context.set_alpn_protocols(alpn)
        return context


# ----------------------------------------------------------------------------- HTTP/2

@dataclasses.dataclass
class H2Request:
    connection: int          # index of the TCP connection it came on, from 0
    stream_id: int
    headers: dict            # lower-case names (pseudo-headers included) -> value
    monotonic: float

    @property
    def path(self) -> str:
        return self.headers.get(":path", "")


@dataclasses.dataclass
class H2Response:
    """What the server answers on one HTTP/2 stream: a 200 text/event-stream with `body`, then
    the stream stays open, or ends normally when end_stream is true."""
    body: bytes
    end_stream: bool = False


class H2SSEServer:
    """An HTTP/2 server on 127.0.0.1, port 0: cleartext with prior knowledge (no upgrade), or TLS
    with ALPN h2 when `tls` is given.
    `respond(request)` gives each request's H2Response. Counts accepted TCP connections and
    records every request. start()/stop(), or use as a context manager."""

    def __init__(self, respond: Callable[[H2Request], H2Response],
                 tls: Optional["ThrowawayCertificates"] = None) -> None:
        import h2.config  # noqa: F401  (fails early when python3-h2 is missing)
        self._respond = respond
        self._ssl = tls.server_context(["h2"]) if tls is not None else None
        self._lock = threading.Lock()
        self._requests: list = []
        self._accepted = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server = None
        self._stopping: Optional[asyncio.Event] = None
        self._writers: list = []
        self.port = 0

    # -- lifecycle

    def start(self) -> "H2SSEServer":
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._bind())
            ready.set()
            loop.run_until_complete(self._stopping.wait())
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="h2-sse", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the HTTP/2 test server did not start")
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> "H2SSEServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return "%s://127.0.0.1:%d%s" % ("https" if self._ssl else "http", self.port, path)

    # -- observation

    @property
    def connections_accepted(self) -> int:
        with self._lock:
            return self._accepted

    def requests(self, path: Optional[str] = None) -> list:
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    # -- internals (loop thread)

    async def _bind(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h2.config
        import h2.connection
        import h2.events

        with self._lock:
            index = self._accepted
            self._accepted += 1
        self._writers.append(writer)
        if self._ssl is not None and writer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
            self._writers.remove(writer)
            writer.transport.abort()
            return
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        try:
            writer.write(conn.data_to_send())
            await writer.drain()
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        request = H2Request(connection=index, stream_id=event.stream_id,
                                            headers={k.lower(): v for k, v in event.headers},
                                            monotonic=time.monotonic())
                        with self._lock:
                            self._requests.append(request)
                        response = self._respond(request)
                        conn.send_headers(event.stream_id, [(":status", "200"),
                                                            ("content-type", "text/event-stream")])
                        conn.send_data(event.stream_id, response.body, end_stream=response.end_stream)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        writer.write(conn.data_to_send())
                        return
                writer.write(conn.data_to_send())
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.remove(writer)
            writer.transport.abort()


def per_key_counts(records: Iterable) -> dict:
    """{key: number of records} of Kafka records."""
    counts: dict = {}
    for r in records:
        counts[r.key] = counts.get(r.key, 0) + 1
    return counts
