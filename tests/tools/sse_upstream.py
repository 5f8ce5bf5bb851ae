#!/usr/bin/env python3
"""A scriptable loopback SSE/HTTP upstream for tests, the demo and benchmarks (stdlib only).

As a module (from pytest):

    with SSEUpstream() as up:
        up.route("/feed", Route(body=[send(sse_event("a", id="1")), sleep(50), close(rst=True)]))
        up.route("/numbers", NumberedRoute(end=100, disconnect_every=10))
        ... point the bridge at up.url("/feed") ...
        reqs = up.wait_for_requests(2, timeout=5, path="/feed")
        assert reqs[1].headers.get("Last-Event-ID") == "1"

The server runs its asyncio loop in a background thread and binds 127.0.0.1 on a free port. Every
public method may be called from any thread. Each path has a route:

- Route: status, headers (Content-Type defaults to text/event-stream; a header set to None is
  left out), and a body script of steps run in order: send() (one chunk, one write, drained),
  raw() (bytes written verbatim, outside framing and encoding), sleep(), close(rst=...) (abrupt:
  FIN without the terminating chunk, or RST), hang() (keep the connection open, send nothing),
  wait_gate() (pause until the test calls open_gate), end() (normal end). A script that runs out
  ends normally. framing is "chunked" (default), "close" (body ends when the connection closes)
  or "length" (Content-Length). encoding "gzip" or "deflate" compresses the send() steps, each
  flushed so that the client can decode it at once.
- NumberedRoute: serves "id: N\\ndata: <payload with N>\\n\\n" for N from Last-Event-ID + 1 (or
  `start` without one) to `end` (None: forever), at full speed or at `rate_per_s`, optionally
  closing the connection after every `disconnect_every` events. trickle() is a NumberedRoute with
  one event per interval forever.
- A list of routes: the i-th request on the path gets the i-th route; the last one repeats.
- A callable taking the Request and returning a route.
Helpers: redirect(), status_route() (with Retry-After), sse_event() builds event bytes.

Unknown paths get 404 unless a route is set for "*". Every request is recorded (Request: times,
method, target, headers as a case-insensitive multi-dict, body, connection) and open connections
are counted per path.

As a CLI: `sse_upstream.py --port 0 --mode numbered|trickle [...]` or `--demo` prints
`LISTENING <port>` on stdout once it accepts connections and serves until SIGTERM/SIGINT (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from typing import Callable, Iterable, Optional, Union

__all__ = [
    "Headers", "Request", "Connection", "Route", "NumberedRoute", "SSEUpstream",
    "send", "raw", "sleep", "close", "hang", "end", "wait_gate",
    "sse_event", "redirect", "status_route", "trickle",
]


# ----------------------------------------------------------------------------- body script steps

@dataclasses.dataclass(frozen=True)
class Send:
    data: bytes


@dataclasses.dataclass(frozen=True)
class Raw:
    data: bytes


@dataclasses.dataclass(frozen=True)
class Sleep:
    ms: float


@dataclasses.dataclass(frozen=True)
class Close:
    rst: bool = False


@dataclasses.dataclass(frozen=True)
class Hang:
    pass


@dataclasses.dataclass(frozen=True)
class End:
    pass


@dataclasses.dataclass(frozen=True)
class WaitGate:
    name: str


Step = Union[Send, Raw, Sleep, Close, Hang, End, WaitGate]


def _bytes(data: Union[bytes, str]) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def send(data: Union[bytes, str]) -> Send:
    """One piece of body: one chunk with chunked framing, one write, drained before the next step."""
    return Send(_bytes(data))


def raw(data: Union[bytes, str]) -> Raw:
    """Bytes written to the socket as they are, bypassing chunk framing and content encoding."""
    return Raw(_bytes(data))


def sleep(ms: float) -> Sleep:
    return Sleep(ms)


def close(rst: bool = False) -> Close:
    """Ends the connection abruptly: FIN without finishing the body, or RST when rst is true."""
    return Close(rst)


def hang() -> Hang:
    """Sends nothing more and keeps the connection open until the client closes it or the server stops."""
    return Hang()


def end() -> End:
    """Ends the response normally (terminating chunk, or close with close framing)."""
    return End()


def wait_gate(name: str) -> WaitGate:
    """Pauses the script until SSEUpstream.open_gate(name) is called (or the client leaves)."""
    return WaitGate(name)


def sse_event(data: Optional[str] = None, *, id: Optional[str] = None, event: Optional[str] = None,
              retry: Optional[int] = None, comment: Optional[str] = None, eol: str = "\n") -> bytes:
    """The bytes of one event block ending with a blank line. data is split into data: lines
    (None: no data line at all; "": one empty data line)."""
    lines = []
    if comment is not None:
        lines.append(":" + comment)
    if event is not None:
        lines.append("event: " + event)
    if id is not None:
        lines.append("id: " + id)
    if retry is not None:
        lines.append("retry: %d" % retry)
    if data is not None:
        lines.extend("data: " + line for line in data.split("\n"))
    return (eol.join(lines) + eol + eol).encode("utf-8")


# ----------------------------------------------------------------------------- routes

HeaderSpec = Union[dict, Iterable]


@dataclasses.dataclass
class Route:
    status: int = 200
    headers: HeaderSpec = dataclasses.field(default_factory=dict)
    body: list = dataclasses.field(default_factory=list)
    framing: str = "chunked"          # chunked | close | length
    encoding: Optional[str] = None    # None | gzip | deflate
    reason: Optional[str] = None


@dataclasses.dataclass
class NumberedRoute:
    end: Optional[int] = None          # last N served; None: forever
    start: int = 1                     # first N when the request has no (numeric) Last-Event-ID
    payload: Union[str, Callable[[int], str]] = "event {n}"   # "{n}" is replaced by N
    payload_size: Optional[int] = None  # pad the data with "x" up to this many bytes
    event: Optional[str] = None        # event: line for every event
    rate_per_s: Optional[float] = None  # None: full speed
    disconnect_every: Optional[int] = None   # close (FIN) after this many events per connection
    retry_ms: Optional[int] = None     # a retry: line at the start of every response
    at_end: str = "end"                # after `end`: end | hang | close
    headers: HeaderSpec = dataclasses.field(default_factory=dict)
    framing: str = "chunked"           # chunked | close

    def data_for(self, n: int) -> str:
        data = self.payload(n) if callable(self.payload) else self.payload.replace("{n}", str(n))
        if self.payload_size is not None and len(data) < self.payload_size:
            data += "x" * (self.payload_size - len(data))
        return data


def trickle(interval_ms: float, payload: Union[str, Callable[[int], str]] = "event {n}",
            **kwargs) -> NumberedRoute:
    """One numbered event every interval_ms, forever, resuming after Last-Event-ID."""
    return NumberedRoute(end=None, payload=payload, rate_per_s=1000.0 / interval_ms, **kwargs)


def redirect(location: Optional[str], status: int = 302) -> Route:
    """A redirect; location None leaves the Location header out, "" sends it empty."""
    headers = {"Content-Type": "text/plain"}
    if location is not None:
        headers["Location"] = location
    return Route(status=status, headers=headers, body=[], framing="length")


def status_route(status: int, retry_after: Optional[str] = None, body: str = "",
                 content_type: str = "text/plain") -> Route:
    """A non-stream answer, e.g. status_route(503, retry_after="2")."""
    headers = {"Content-Type": content_type}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return Route(status=status, headers=headers, body=[send(body)] if body else [], framing="length")


RouteSpec = Union[Route, NumberedRoute, list, Callable]

_REASONS = {200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found", 303: "See Other",
            304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
            400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


# ----------------------------------------------------------------------------- recorded requests

class Headers:
    """An ordered, case-insensitive multi-dict of header fields."""

    def __init__(self, items: Iterable = ()):
        self._items = [(str(k), str(v)) for k, v in items]

    def get(self, name: str, default=None):
        """The first value of the field, or default."""
        lower = name.lower()
        for k, v in self._items:
            if k.lower() == lower:
                return v
        return default

    def get_all(self, name: str) -> list:
        lower = name.lower()
        return [v for k, v in self._items if k.lower() == lower]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def items(self) -> list:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return "Headers(%r)" % (self._items,)


@dataclasses.dataclass
class Connection:
    id: int
    peer: tuple
    opened_at: float                   # time.monotonic()
    closed_at: Optional[float] = None  # time.monotonic() once closed
    path: Optional[str] = None         # path of its latest request


@dataclasses.dataclass
class Request:
    index: int            # order of arrival over the whole server, from 0
    time: float           # time.time() when the request head was complete
    monotonic: float      # time.monotonic() at the same moment
    method: str
    target: str           # path and query as sent
    path: str
    query: str
    version: str
    headers: Headers
    body: bytes
    connection: Connection

    @property
    def last_event_id(self) -> Optional[str]:
        return self.headers.get("Last-Event-ID")


# ----------------------------------------------------------------------------- the server

class _ClientGone(Exception):
    """The client closed or reset the connection."""


class _ConnReader:
    """Buffered reads over a StreamReader that also notices the client leaving while we write."""

    def __init__(self, reader: asyncio.StreamReader):
        self._reader = reader
        self._buffer = bytearray()
        self.eof = False
        self.gone = asyncio.Event()

    async def _fill(self) -> None:
        try:
            chunk = await self._reader.read(65536)
        except (ConnectionError, OSError):
            chunk = b""
        if not chunk:
            self.eof = True
            self.gone.set()
            raise _ClientGone()
        self._buffer += chunk

    async def read_until(self, sep: bytes, limit: int = 1 << 20) -> bytes:
        while True:
            i = self._buffer.find(sep)
            if i >= 0:
                out = bytes(self._buffer[:i + len(sep)])
                del self._buffer[:i + len(sep)]
                return out
            if len(self._buffer) > limit:
                raise _ClientGone()
            await self._fill()

    async def read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            await self._fill()
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    async def watch(self) -> None:
        """Reads ahead until EOF while a response is being written (sets `gone` at EOF)."""
        try:
            while not self.eof:
                await self._fill()
        except _ClientGone:
            pass


class SSEUpstream:
    """The scriptable server. start() (or `with`) binds; stop() closes everything."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self._routes: dict = {}
        self._route_hits: dict = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list = []
        self._connections: list = []
        self._open: dict = {}               # connection id -> (Connection, writer)
        self._last_sent_id: dict = {}
        self._events_sent: dict = {}
        self._gates: dict = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._server = None
        self._tasks: set = set()
        self._stopping = None

    # -- lifecycle

    def start(self) -> "SSEUpstream":
        """Binds and starts serving in a background thread; returns self. Raises on bind failure."""
        ready = threading.Event()
        failure: list = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._bind())
            except Exception as exc:  # reported to the caller of start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_until_complete(self._stopping.wait())
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="sse-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        if self._server is None:
            raise RuntimeError("sse upstream did not start within 10 s")
        return self

    def stop(self) -> None:
        """Closes the listener and every connection, and joins the thread. Safe to call twice."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> "SSEUpstream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return "http://%s:%d" % (self.host, self.port)

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    # -- configuration

    def route(self, path: str, spec: RouteSpec) -> None:
        """Sets (or replaces) what `path` serves; "*" is the route for every other path.
        Replacing a route restarts its list position at the first element."""
        with self._lock:
            self._routes[path] = spec
            self._route_hits[path] = 0

    def open_gate(self, name: str) -> None:
        """Lets every script waiting at wait_gate(name), now or later, go on."""
        self._call(lambda: self._gate(name).set())

    def close_gate(self, name: str) -> None:
        self._call(lambda: self._gate(name).clear())

    def drop_connections(self, path: Optional[str] = None, rst: bool = False) -> int:
        """Closes the open connections (of one path, or all) from the server side; returns how many."""
        def drop() -> int:
            count = 0
            for conn, writer in list(self._open.values()):
                if path is None or conn.path == path:
                    _abort(writer, rst)
                    count += 1
            return count
        return self._call(drop)

    # -- observation

    def requests(self, path: Optional[str] = None) -> list:
        """The requests received so far (on one path, or all), oldest first."""
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def wait_for_requests(self, n: int, timeout: float, path: Optional[str] = None) -> list:
        """Waits until at least n requests (on the path, or in all) arrived; returns them all.
        Raises TimeoutError saying what did arrive."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                got = [r for r in self._requests if path is None or r.path == path]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("waited %.1fs for %d requests on %s, got %d: %s" % (
                        timeout, n, path or "any path", len(got),
                        [(r.method, r.target, r.last_event_id) for r in got]))
                self._changed.wait(left)

    def open_connections(self, path: Optional[str] = None) -> int:
        """How many connections are open now (whose latest request was on `path`, when given)."""
        with self._lock:
            return sum(1 for c in self._connections if c.closed_at is None and (path is None or c.path == path))

    def wait_for_open_connections(self, n: int, timeout: float, path: Optional[str] = None) -> None:
        """Waits until exactly n connections are open (on the path); raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                count = sum(1 for c in self._connections
                            if c.closed_at is None and (path is None or c.path == path))
                if count == n:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("waited %.1fs for %d open connections on %s, have %d" % (
                        timeout, n, path or "any path", count))
                self._changed.wait(left)

    def connections(self) -> list:
        with self._lock:
            return list(self._connections)

    def last_sent_id(self, path: str) -> Optional[int]:
        """The highest N a NumberedRoute on `path` has written so far (None before any)."""
        with self._lock:
            return self._last_sent_id.get(path)

    def events_sent(self, path: str) -> int:
        """How many events NumberedRoutes on `path` have written (repeats after reconnects count)."""
        with self._lock:
            return self._events_sent.get(path, 0)

    # -- internals (loop thread unless said otherwise)

    def _call(self, fn):
        """Runs fn in the loop thread and returns its result (any thread)."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("sse upstream is not running")

        async def wrapper():
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    def _gate(self, name: str) -> asyncio.Event:
        if name not in self._gates:
            self._gates[name] = asyncio.Event()
        return self._gates[name]

    async def _bind(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._server.close()
        for conn, writer in list(self._open.values()):
            _abort(writer, rst=False)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self._server.wait_closed()

    def _resolve(self, request: Request):
        with self._lock:
            key = request.path if request.path in self._routes else "*"
            spec = self._routes.get(key)
            hit = self._route_hits.get(key, 0)
            self._route_hits[key] = hit + 1
        if isinstance(spec, list):
            spec = spec[min(hit, len(spec) - 1)] if spec else None
        if callable(spec) and not isinstance(spec, (Route, NumberedRoute)):
            spec = spec(request)
        if spec is None:
            return status_route(404, body="no route for %s\n" % request.path)
        return spec

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        sock = writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self._lock:
            conn = Connection(id=len(self._connections), peer=writer.get_extra_info("peername"),
                              opened_at=time.monotonic())
            self._connections.append(conn)
            self._changed.notify_all()
        self._open[conn.id] = (conn, writer)
        creader = _ConnReader(reader)
        try:
            while True:
                request = await self._read_request(creader, conn, writer)
                if request is None:
                    break
                spec = self._resolve(request)
                watcher = asyncio.ensure_future(creader.watch())
                try:
                    if isinstance(spec, NumberedRoute):
                        keep = await self._serve_numbered(request, spec, writer, creader)
                    else:
                        keep = await self._serve_route(request, spec, writer, creader)
                finally:
                    # Let the read-ahead finish cancelling before the next request is read.
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
                if not keep or creader.eof:
                    break
        except (_ClientGone, ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self._open.pop(conn.id, None)
            if not writer.is_closing():
                writer.close()
            with self._lock:
                conn.closed_at = time.monotonic()
                self._changed.notify_all()
            self._tasks.discard(task)

    async def _read_request(self, creader: _ConnReader, conn: Connection,
                            writer: asyncio.StreamWriter) -> Optional[Request]:
        try:
            head = await creader.read_until(b"\r\n\r\n", limit=256 * 1024)
        except _ClientGone:
            return None
        received_wall, received_mono = time.time(), time.monotonic()
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return None
        method, target, version = parts
        fields = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields.append((name.strip(), value.strip(" \t")))
        headers = Headers(fields)
        if headers.get("Expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = b""
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            pieces = []
            while True:
                size_line = await creader.read_until(b"\r\n")
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (await creader.read_until(b"\r\n")) != b"\r\n":
                        pass
                    break
                pieces.append(await creader.read_exactly(size))
                await creader.read_exactly(2)
            body = b"".join(pieces)
        elif headers.get("Content-Length"):
            body = await creader.read_exactly(int(headers["Content-Length"]))
        path, _, query = target.partition("?")
        with self._lock:
            conn.path = path
            request = Request(index=len(self._requests), time=received_wall, monotonic=received_mono,
                              method=method, target=target, path=path, query=query, version=version,
                              headers=headers, body=body, connection=conn)
            self._requests.append(request)
            self._changed.notify_all()
        return request

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if not data:
            return
        if writer.is_closing():
            raise _ClientGone()
        writer.write(data)
        await writer.drain()

    async def _pause(self, seconds: float, creader: _ConnReader) -> None:
        """Sleeps, but returns early (raising _ClientGone) when the client leaves."""
        try:
            await asyncio.wait_for(creader.gone.wait(), timeout=max(seconds, 0))
        except asyncio.TimeoutError:
            return
        raise _ClientGone()

    def _head(self, status: int, reason: Optional[str], header_spec: HeaderSpec, extra: list) -> bytes:
        items = list(header_spec.items()) if isinstance(header_spec, dict) else list(header_spec)
        names = {k.lower() for k, _ in items}
        if "content-type" not in names:
            items.insert(0, ("Content-Type", "text/event-stream"))
        items.extend(extra)
        lines = ["HTTP/1.1 %d %s" % (status, reason if reason is not None else _REASONS.get(status, "Status"))]
        lines += ["%s: %s" % (k, v) for k, v in items if v is not None]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _serve_route(self, request: Request, route: Route, writer: asyncio.StreamWriter,
                           creader: _ConnReader) -> bool:
        client_wants_close = request.headers.get("Connection", "").lower() == "close"
        bodyless = route.status in (204, 304) or 100 <= route.status < 200 or request.method == "HEAD"
        encoder = _encoder(route.encoding)
        pieces = []   # the body steps with send() data encoded up front, so Content-Length is known
        for step in route.body:
            if isinstance(step, Send) and encoder is not None:
                pieces.append(Send(encoder.compress(step.data) + encoder.flush(zlib.Z_SYNC_FLUSH)))
            else:
                pieces.append(step)
        tail = encoder.flush() if encoder is not None else b""
        extra = []
        if route.encoding:
            extra.append(("Content-Encoding", route.encoding))
        framing = route.framing
        if bodyless:
            framing = "none"
        elif framing == "chunked":
            extra.append(("Transfer-Encoding", "chunked"))
        elif framing == "length":
            total = sum(len(p.data) for p in pieces if isinstance(p, Send)) + len(tail)
            extra.append(("Content-Length", str(total)))
        elif framing == "close":
            extra.append(("Connection", "close"))
        else:
            raise ValueError("unknown framing %r" % framing)
        await self._write(writer, self._head(route.status, route.reason, route.headers, extra))

        for step in pieces:
            if isinstance(step, Send):
                if framing == "chunked":
                    if step.data:
                        await self._write(writer, b"%x\r\n%s\r\n" % (len(step.data), step.data))
                elif framing != "none":
                    await self._write(writer, step.data)
            elif isinstance(step, Raw):
                await self._write(writer, step.data)
            elif isinstance(step, Sleep):
                await self._pause(step.ms / 1000.0, creader)
            elif isinstance(step, Close):
                _abort(writer, step.rst)
                return False
            elif isinstance(step, Hang):
                await creader.gone.wait()
                return False
            elif isinstance(step, WaitGate):
                gate = asyncio.ensure_future(self._gate(step.name).wait())
                gone = asyncio.ensure_future(creader.gone.wait())
                await asyncio.wait([gate, gone], return_when=asyncio.FIRST_COMPLETED)
                gate.cancel()
                gone.cancel()
                if creader.gone.is_set():
                    raise _ClientGone()
            elif isinstance(step, End):
                break
            else:
                raise TypeError("unknown step %r" % (step,))

        if framing == "chunked":
            if tail:
                await self._write(writer, b"%x\r\n%s\r\n" % (len(tail), tail))
            await self._write(writer, b"0\r\n\r\n")
        elif framing in ("length", "close"):
            await self._write(writer, tail)
        if framing == "close" or client_wants_close:
            writer.close()
            return False
        return True

    async def _serve_numbered(self, request: Request, spec: NumberedRoute, writer: asyncio.StreamWriter,
                              creader: _ConnReader) -> bool:
        lei = (request.last_event_id or "").strip()
        n = int(lei) + 1 if lei.isdigit() else spec.start
        extra = [("Transfer-Encoding", "chunked")] if spec.framing == "chunked" else [("Connection", "close")]
        extra.append(("Cache-Control", "no-cache"))
        await self._write(writer, self._head(200, None, spec.headers, extra))

        def frame(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data) if spec.framing == "chunked" else data

        if spec.retry_ms is not None:
            await self._write(writer, frame(b"retry: %d\n\n" % spec.retry_ms))
        event_line = ("event: %s\n" % spec.event).encode() if spec.event else b""
        started = time.monotonic()
        sent_here = 0
        batch = bytearray()
        batch_first = n

        async def flush() -> None:
            nonlocal batch, batch_first
            if batch:
                await self._write(writer, frame(bytes(batch)))
                with self._lock:
                    self._last_sent_id[request.path] = n - 1
                    self._events_sent[request.path] = self._events_sent.get(request.path, 0) + (n - batch_first)
                batch = bytearray()
                # A client that keeps up never makes drain() wait: yield, or this connection
                # would hold the loop and starve every other one.
                await asyncio.sleep(0)
            batch_first = n

        while spec.end is None or n <= spec.end:
            if creader.gone.is_set():
                raise _ClientGone()
            if spec.rate_per_s:
                due = started + sent_here / spec.rate_per_s
                wait = due - time.monotonic()
                if wait > 0:
                    await flush()
                    await self._pause(wait, creader)
            data = spec.data_for(n)
            batch += b"id: %d\n" % n + event_line
            batch += b"".join(b"data: " + line.encode("utf-8") + b"\n" for line in data.split("\n")) + b"\n"
            n += 1
            sent_here += 1
            if spec.disconnect_every and sent_here % spec.disconnect_every == 0 and \
                    (spec.end is None or n <= spec.end):
                await flush()
                writer.close()
                return False
            if len(batch) >= 65536:
                await flush()
        await flush()
        if spec.at_end == "hang":
            await creader.gone.wait()
            return False
        if spec.at_end == "close" or spec.framing == "close":
            writer.close()
            return False
        await self._write(writer, b"0\r\n\r\n")
        return request.headers.get("Connection", "").lower() != "close"


def _encoder(encoding: Optional[str]):
    if encoding is None:
        return None
    if encoding == "gzip":
        return zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.compressobj(wbits=zlib.MAX_WBITS)
    raise ValueError("unsupported encoding %r (gzip and deflate only)" % encoding)


def _abort(writer: asyncio.StreamWriter, rst: bool) -> None:
    """Closes at once: with rst, SO_LINGER 0 makes the kernel send RST instead of FIN."""
    if rst:
        sock = writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


# ----------------------------------------------------------------------------- demo and CLI

def _demo_routes(server: SSEUpstream) -> None:
    def tick(n: int) -> str:
        return json.dumps({"n": n, "symbol": "DEMO", "price": round(100 + (n * 37 % 200) / 10.0, 2),
                           "ts": int(time.time() * 1000)})
    server.route("/ticker", trickle(500, payload=tick, event="tick"))
    words = ["Server-Sent", " Events", " become", " Kafka", " records", ",", " one", " per", " event", "."]
    chat = [send(sse_event(json.dumps({"token": w, "index": i}))) for i, w in enumerate(words)]
    body = []
    for piece in chat:
        body += [piece, sleep(200)]
    body += [send(sse_event("[DONE]")), end()]
    server.route("/chat", Route(body=body))


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description="Loopback SSE upstream for tests, demos and benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--demo", action="store_true", help="serve /ticker and /chat")
    parser.add_argument("--mode", choices=["numbered", "trickle"], help="serve this on every path")
    parser.add_argument("--end", type=int, help="numbered: last event number (default: forever)")
    parser.add_argument("--start", type=int, default=1)
    parser.add_argument("--disconnect-every", type=int)
    parser.add_argument("--rate", type=float, help="events per second (default: full speed)")
    parser.add_argument("--interval-ms", type=float, default=500, help="trickle: ms between events")
    parser.add_argument("--payload", default="event {n}", help='data template; "{n}" becomes the number')
    parser.add_argument("--payload-size", type=int, help="pad data to this many bytes")
    parser.add_argument("--event", help="event type for every event")
    parser.add_argument("--at-end", choices=["end", "hang", "close"], default="end")
    args = parser.parse_args(argv)
    if not args.demo and not args.mode:
        parser.error("give --demo or --mode")

    server = SSEUpstream(args.host, args.port)
    if args.demo:
        _demo_routes(server)
    else:
        rate = args.rate if args.mode == "numbered" else 1000.0 / args.interval_ms
        server.route("*", NumberedRoute(end=args.end if args.mode == "numbered" else None, start=args.start,
                                        payload=args.payload, payload_size=args.payload_size,
                                        event=args.event, rate_per_s=rate,
                                        disconnect_every=args.disconnect_every, at_end=args.at_end))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print("LISTENING %d" % server.port, flush=True)
    while not stop.wait(1.0):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
