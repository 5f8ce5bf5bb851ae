"""Support for the fleet tests (issue 8: Kafka state, exactly-once, cluster mode).

Used by tests/reliability/test_fleet_*.py and tests/e2e/test_fleet_state.py (which puts this
folder on sys.path). What it adds to the e2e harness and reliability_support:

- murmur2() / state_partition(): Kafka's default partitioner for keyed records, to know which
  state partition (and so which instance) owns a stream.
- fleet_config(): the daemon config with `state.backend: kafka` and the fleet sections.
- State topic reading: newest_checkpoints() over the records of the state topic.
- Log reading: log_fields(), log_records(), owned_partitions() (replays "partitions assigned" /
  "partitions revoked" lines).
- Metrics: scrape_metrics() for admin.listen.
- read_all_checker(): a GapChecker over everything the topics hold now (following a topic as
  records land is reliability_support.RecordTail, optionally read_committed).
- TaggedFeeds: numbered SSE feeds on many paths whose event data names the instance and the
  connection that carried it ("i=<instance> c=<connection> n=<N>"), with the moment each event
  was written; ConnectionSampler: open connections per path, sampled in a thread.
- FleetInstances: the instances of one cluster-mode scenario over TaggedFeeds (start, the
  ownership checks from their logs and the upstream's connections, /metrics, a stop of all);
  the mock-based and the real-Kafka cluster suites share it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import socket
import struct
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Optional

from gap_check import GapChecker
from harness import Bridge, Kafka, Record, fast_reconnect, wait_until, write_config
from sse_upstream import NumberedRoute, SSEUpstream

STATE_TOPIC = "_sse2kafka_state"
INSTANCE_HEADER = "X-Instance"


# ----------------------------------------------------------------------------- partitioning

def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (Java Utils.murmur2, librdkafka's murmur2 partitioners) as unsigned 32 bits."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def state_partition(name: str, partitions: int) -> int:
    """The state partition that owns stream `name`: toPositive(murmur2(name)) % partitions."""
    return (murmur2(name.encode("utf-8")) & 0x7FFFFFFF) % partitions


# ----------------------------------------------------------------------------- config

CREATE_TOPICS_API = 19


def broker_api_keys(bootstrap: str, timeout: float = 5) -> set:
    """The API keys the first broker of `bootstrap` announces (an ApiVersions v0 request).
    librdkafka 2.0.2's mock cluster has no CreateTopics (19) nor DescribeConfigs (32)."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    client_id = b"fleet-test"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)

        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk:
                    raise AssertionError("the broker at %s closed the ApiVersions exchange" % bootstrap)
                data += chunk
            return data
        size = struct.unpack(">i", read(4))[0]
        reply = read(size)
    _, error, count = struct.unpack(">ihi", reply[:10])
    assert error == 0, "ApiVersions failed with error %d at %s" % (error, bootstrap)
    return {struct.unpack(">h", reply[10 + 6 * i:12 + 6 * i])[0] for i in range(count)}


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (for admin.listen, which logs only the
    configured address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fleet_config(bootstrap: str, streams: list, *, partitions: int = 6, topic: str = STATE_TOPIC,
                 state_dir: Optional[Path] = None, delivery: Optional[str] = None,
                 transaction: Optional[dict] = None, group: Optional[str] = None,
                 session_timeout: str = "6s", admin_port: Optional[int] = None,
                 properties: Optional[dict] = None, defaults: Optional[dict] = None,
                 log_level: str = "info", stats_interval: str = "0") -> dict:
    """A config with `state.backend: kafka` (no state.dir unless given), fast reconnects towards
    upstreams and brokers, and the fleet sections that are given."""
    props = {"linger.ms": "5", "reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "1000"}
    props.update(properties or {})
    state = {"backend": "kafka", "topic": topic, "partitions": partitions, "replication_factor": -1}
    if state_dir is not None:
        state["dir"] = str(state_dir)
    config = {
        "kafka": {"brokers": bootstrap, "flush_timeout": "5s", "properties": props},
        "state": state,
        "log": {"level": log_level, "stats_interval": stats_interval},
        "defaults": {"reconnect": fast_reconnect()},
        "streams": streams,
    }
    config["defaults"].update(defaults or {})
    if delivery is not None:
        config["delivery"] = delivery
    if transaction is not None:
        config["transaction"] = transaction
    if group is not None:
        config["cluster"] = {"group": group, "session_timeout": session_timeout}
    if admin_port is not None:
        config["admin"] = {"listen": "127.0.0.1:%d" % admin_port}
    return config


# ----------------------------------------------------------------------------- the state topic

@dataclasses.dataclass
class Checkpoint:
    stream: str
    partition: int
    offset: int
    value: Optional[dict]          # None for a tombstone
    raw: Optional[str]

    @property
    def last_event_id(self) -> Optional[str]:
        return None if self.value is None else self.value.get("last_event_id")


def checkpoint_records(records: Iterable[Record]) -> list:
    """Checkpoints of state topic records, in (partition, offset) order. A value that is not a
    JSON object fails the test (it is part of the interface)."""
    out = []
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        value = None
        if record.value is not None:
            try:
                value = json.loads(record.value)
            except ValueError:
                raise AssertionError("state topic record %s/%d@%d is not JSON: %r" % (
                    record.topic, record.partition, record.offset, record.value)) from None
            assert isinstance(value, dict), "state topic value is not an object: %r" % record.value
        out.append(Checkpoint(stream=record.key, partition=record.partition, offset=record.offset,
                              value=value, raw=record.value))
    return out


def newest_checkpoints(records: Iterable[Record]) -> dict:
    """{stream: its newest Checkpoint} (the newest record of a key; every record of a key is in
    one partition, so offset order is write order)."""
    newest: dict = {}
    for cp in checkpoint_records(records):
        newest[cp.stream] = cp
    return newest


def read_state(kafka: Kafka, topic: str = STATE_TOPIC, isolation: Optional[str] = None,
               timeout: float = 20) -> list:
    """Every record of the state topic now (kafka_dump --eof)."""
    return kafka.records(topic, eof=True, timeout=timeout, isolation=isolation)


def checkpoint_regressions(records: Iterable[Record]) -> list:
    """[(stream, older value, newer value, partition, offset)] where a key's numeric checkpoint
    went backwards from one record to the next ("never moves a checkpoint backwards")."""
    last: dict = {}
    out = []
    for cp in checkpoint_records(records):
        lei = cp.last_event_id
        if lei is None or not str(lei).isdigit():
            continue
        value = int(lei)
        before = last.get(cp.stream)
        if before is not None and value < before:
            out.append((cp.stream, before, value, cp.partition, cp.offset))
        last[cp.stream] = value if before is None else max(before, value)
    return out


# ----------------------------------------------------------------------------- logs

_FIELD = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S*)')


def log_fields(text: str) -> dict:
    """{key: value} of the `key=value` fields of a text-format log line (quoted values unquoted)."""
    out = {}
    for key, value in _FIELD.findall(text):
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value[1:-1]
        out[key] = value
    return out


@dataclasses.dataclass
class LogRecord:
    index: int          # line number in the bridge's log
    line: str
    stream: Optional[str]
    fields: dict


def _message_line(message: str):
    # "<ts> <level> [<stream>] <message> key=value ...": the message right after the level (and
    # the stream), so that a field quoting the message (reason="transaction aborted: ...") does
    # not count.
    return re.compile(r"^\S+\s+[a-z]+\s+(?:\[([A-Za-z0-9._-]{1,200})\] )?%s(?= |$)" % re.escape(message))


def log_records(bridge: Bridge, message: str) -> list:
    """LogRecords of the lines whose message is `message` (fields read after the message)."""
    regex = _message_line(message)
    out = []
    for index, line in enumerate(bridge.logs().splitlines()):
        match = regex.match(line)
        if match:
            out.append(LogRecord(index, line, match.group(1), log_fields(line[match.end():])))
    return out


def owned_partitions(bridge: Bridge) -> set:
    """The state partitions the bridge owns according to its log: every "partitions assigned"
    adds its partitions, every "partitions revoked" removes them, in log order."""
    owned: set = set()
    assigned, revoked = _message_line("partitions assigned"), _message_line("partitions revoked")
    for line in bridge.logs().splitlines():
        for regex, add in ((assigned, True), (revoked, False)):
            match = regex.match(line)
            if match:
                parts = set(int_list(log_fields(line[match.end():]).get("partitions", "")))
                owned = owned | parts if add else owned - parts
    return owned


def int_list(text: str) -> list:
    """"0,3,5" / "[0, 3, 5]" / "" -> [0, 3, 5]."""
    return [int(x) for x in re.findall(r"-?\d+", text or "")]


# ----------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape_metrics(port: int, timeout: float = 3) -> list:
    """[(name, {label: value}, float)] from http://127.0.0.1:PORT/metrics; [] when unreachable."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=timeout) as reply:
            text = reply.read().decode("utf-8", "replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or line.startswith("#"):
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        try:
            out.append((match.group(1), labels, float(match.group(3))))
        except ValueError:
            continue
    return out


def metric_value(samples: list, name: str, **labels) -> Optional[float]:
    """The sum of the samples called `name` whose labels include `labels`; None when none is."""
    values = [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]
    return sum(values) if values else None


# ----------------------------------------------------------------------------- reading records

def read_all_checker(kafka: Kafka, topics: Iterable[str], isolation: Optional[str] = None,
                     timeout: float = 30) -> tuple:
    """(GapChecker, records) over everything the topics hold now, read afresh."""
    records = kafka.records(list(topics), eof=True, timeout=timeout, isolation=isolation)
    checker = GapChecker()
    for record in records:
        checker.add_record({"topic": record.topic, "partition": record.partition, "offset": record.offset,
                            "headers": [[k, v] for k, v in record.headers]})
    return checker, records


# ----------------------------------------------------------------------------- tagged feeds

_TAG = re.compile(r"^i=(\S*) c=(\d+) n=(\d+)$")


def parse_tag(value: Optional[str]) -> Optional[tuple]:
    """(instance, connection id, N) from a TaggedFeeds event's data, else None."""
    match = _TAG.match(value or "")
    return (match.group(1), int(match.group(2)), int(match.group(3))) if match else None


class TaggedFeeds:
    """Numbered feeds (resuming after Last-Event-ID, forever, at rate_per_s) on many paths of one
    SSEUpstream. Each event's data is "i=<instance> c=<connection id> n=<N>", where the instance
    is the request's X-Instance header (the config sends "${INSTANCE}", set per process), so a
    record tells which connection of which instance carried it. sent_at() is when an event was
    built for a connection, just before it was written."""

    def __init__(self, upstream: SSEUpstream, paths: Iterable[str], rate_per_s: float) -> None:
        self.upstream = upstream
        self.paths = list(paths)
        self._lock = threading.Lock()
        self._sent_at: dict = {}           # (connection id, N) -> time.monotonic()
        self._last_on_connection: dict = {}   # connection id -> (N, time.monotonic())
        for path in self.paths:
            upstream.route(path, self._route(rate_per_s))

    def _route(self, rate_per_s: float) -> Callable:
        def make(request):
            instance = request.headers.get(INSTANCE_HEADER, "")
            conn = request.connection.id

            def payload(n: int) -> str:
                now = time.monotonic()
                with self._lock:
                    self._sent_at[(conn, n)] = now
                    self._last_on_connection[conn] = (n, now)
                return "i=%s c=%d n=%d" % (instance, conn, n)
            return NumberedRoute(end=None, rate_per_s=rate_per_s, payload=payload, at_end="hang")
        return make

    def sent_at(self, conn: int, n: int) -> Optional[float]:
        with self._lock:
            return self._sent_at.get((conn, n))

    def last_on_connection(self, conn: int) -> Optional[tuple]:
        """(N, time) of the newest event built for the connection."""
        with self._lock:
            return self._last_on_connection.get(conn)

    def open_by_path(self) -> dict:
        """{path: [(connection id, instance)]} of the open connections with a request on a feed path."""
        out: dict = {path: [] for path in self.paths}
        seen = set()
        for request in self.upstream.requests():
            conn = request.connection
            if conn.closed_at is not None or request.path not in out or conn.id in seen:
                continue
            seen.add(conn.id)
            out[request.path].append((conn.id, request.headers.get(INSTANCE_HEADER, "")))
        return out

    def requests_after(self, path: str, since: float) -> list:
        """Requests on `path` that arrived after time.monotonic() `since`."""
        return [r for r in self.upstream.requests(path) if r.monotonic > since]


class ConnectionSampler:
    """Samples TaggedFeeds.open_by_path() every `interval` seconds in a thread and keeps every
    sample in which a path had more than one open connection (ignoring connections of the
    instances in `excluded`, e.g. a stopped process whose sockets stay open)."""

    def __init__(self, feeds: TaggedFeeds, interval: float = 0.05) -> None:
        self.feeds = feeds
        self.interval = interval
        self.samples = 0
        self.doubles: list = []          # (time.monotonic(), path, [(conn, instance)])
        self.excluded: set = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connection-sampler", daemon=True)
        self._thread.start()

    def exclude(self, instance: str) -> None:
        with self._lock:
            self.excluded.add(instance)

    def include(self, instance: str) -> None:
        with self._lock:
            self.excluded.discard(instance)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            by_path = self.feeds.open_by_path()
            now = time.monotonic()
            with self._lock:
                self.samples += 1
                for path, conns in by_path.items():
                    live = [c for c in conns if c[1] not in self.excluded]
                    if len(live) > 1 and len(self.doubles) < 10000:
                        self.doubles.append((now, path, live))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def text(self, limit: int = 30) -> str:
        with self._lock:
            doubles = list(self.doubles)
        lines = ["%d samples, %d with a path held by two connections" % (self.samples, len(doubles))]
        lines += ["  t=%.3f %s open=%s" % (t, p, c) for t, p, c in doubles[:limit]]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- a cluster of instances

class FleetInstances:
    """The feeds, the shared config and the instances (by name) of one cluster-mode scenario:
    `streams` numbered TaggedFeeds (names name_format % i) over `partitions` state partitions, each
    instance started with INSTANCE (sent as the X-Instance header) and its own admin port."""

    def __init__(self, upstream, tmp_path, start_bridge, bootstrap: str, topic: str, state_topic: str, *,
                 streams: int, partitions: int, rate: float, group: str, session_timeout: float,
                 delivery: Optional[str] = None, name_format: str = "fleet-%03d", stop_timeout: float = 40,
                 **sections) -> None:
        self.streams, self.partitions, self.stop_timeout = streams, partitions, stop_timeout
        self.names = [name_format % i for i in range(streams)]
        self.path_of = {n: "/" + n for n in self.names}
        self.name_of = {p: n for n, p in self.path_of.items()}
        self.partition_of = {n: state_partition(n, partitions) for n in self.names}
        self.feeds = TaggedFeeds(upstream, self.path_of.values(), rate)
        self.topic, self.state_topic = topic, state_topic
        config = fleet_config(
            bootstrap, [{"name": n, "url": upstream.url(self.path_of[n]), "topic": topic} for n in self.names],
            partitions=partitions, topic=state_topic, delivery=delivery, group=group,
            session_timeout="%ds" % session_timeout, defaults={"headers": {INSTANCE_HEADER: "${INSTANCE}"}},
            **sections)
        config["admin"] = {"listen": "127.0.0.1:${ADMIN_PORT}"}
        self.config_path = write_config(tmp_path, config, name="fleet.yaml")
        self.start_bridge = start_bridge
        self.bridges = {}      # instance -> its current Bridge
        self.all_bridges = []  # [(instance, Bridge)] of every process started, in order
        self.ports = {}
        self.sampler = ConnectionSampler(self.feeds)

    def start(self, instance: str) -> Bridge:
        self.ports[instance] = free_port()
        bridge = self.start_bridge(self.config_path, env={"INSTANCE": instance,
                                                          "ADMIN_PORT": str(self.ports[instance])})
        self.bridges[instance] = bridge
        self.all_bridges.append((instance, bridge))
        return bridge

    def describe(self, lines: int = 40) -> str:
        return "\n".join("[instance %s] %s" % (i, b.describe(lines)) for i, b in self.bridges.items())

    def unstable_reason(self, live) -> Optional[str]:
        """None when the instances in `live` own all partitions between them (by their logs),
        each some, and every stream has exactly one open connection, from its partition's owner."""
        for instance in live:
            self.bridges[instance].assert_running()
        owned = {i: owned_partitions(self.bridges[i]) for i in live}
        owner = {}
        for instance, parts in owned.items():
            if not parts:
                return "instance %s owns no partition (logs: %s)" % (instance, owned)
            for part in parts:
                if part in owner:
                    return "partition %d owned by %s and %s" % (part, owner[part], instance)
                owner[part] = instance
        if set(owner) != set(range(self.partitions)):
            return "partitions owned by nobody: %s" % sorted(set(range(self.partitions)) - set(owner))
        wrong = []
        for path, conns in self.feeds.open_by_path().items():
            name = self.name_of[path]
            expected = owner[self.partition_of[name]]
            if len(conns) != 1 or conns[0][1] != expected:
                wrong.append((name, self.partition_of[name], expected, conns))
        if wrong:
            return "%d streams not held by exactly one connection of their owner, e.g. " \
                   "(stream, partition, owner, [(connection, instance)]): %s" % (len(wrong), wrong[:5])
        return None

    def wait_stable(self, live, timeout: float, context: str) -> dict:
        """Waits until unstable_reason(live) is None; returns {instance: sorted owned partitions}."""
        reason = [None]

        def stable():
            reason[0] = self.unstable_reason(live)
            return reason[0] is None
        wait_until(stable, timeout, interval=0.2, message=lambda: "not stable (%s): %s\n%s" % (
            context, reason[0], self.describe()))
        return {i: sorted(owned_partitions(self.bridges[i])) for i in live}

    def holders(self) -> dict:
        """{path: instance} of the paths with exactly one open connection."""
        return {p: c[0][1] for p, c in self.feeds.open_by_path().items() if len(c) == 1}

    def metrics_agree(self, live, timeout: float) -> None:
        """Waits until the instances' /metrics count all streams and partitions between them."""
        seen = {}

        def agree():
            streams = partitions = 0
            for instance in live:
                samples = scrape_metrics(self.ports[instance])
                seen[instance] = (metric_value(samples, "sse2kafka_owned_streams"),
                                  metric_value(samples, "sse2kafka_owned_partitions"))
                streams += seen[instance][0] or 0
                partitions += seen[instance][1] or 0
            return streams == self.streams and partitions == self.partitions and all(v[0] for v in seen.values())
        wait_until(agree, timeout, interval=0.3, message=lambda: "/metrics owned (streams, partitions) per instance: "
                   "%s, want %d streams and %d partitions in all" % (seen, self.streams, self.partitions))

    def stop_all(self) -> None:
        """SIGTERM to every running instance at once, then each must exit 0."""
        running = [(i, b) for i, b in self.bridges.items() if b.running()]
        for _, bridge in running:
            bridge.signal(signal.SIGTERM)
        for instance, bridge in running:
            status = bridge.wait_for_exit(self.stop_timeout)
            assert status == 0, "instance %s did not stop cleanly\n%s" % (instance, bridge.describe(80))
