"""Shared pieces of the broker-failure suites (tests/realkafka/test_broker_*.py): numbered feeds
at a steady rate, the bridge's admin endpoints sampled in a thread, topics whose partitions all
have one leader, a single-version cluster for suites that need only one Kafka line, and the
bridge config these suites use.

What they check comes from the reliability suite (tests/reliability): RecordTail follows the
topics from offset 0 as records land and feeds a GapChecker; MemoryWatch samples the bridge's
RSS; the summary line is reliability_support.summary_line.

- Feeds: one SSEUpstream per stream (bound on 127.0.0.1, port 0), each serving a NumberedRoute
  forever at `rate` events/s until finish() sets its end; sent() and last_ids() are the
  upstreams' own counters (what they wrote, not what the bridge read).
- AdminSampler: GET /metrics and /readyz of the bridge's admin.listen every `interval` seconds,
  kept as Samples (time, readyz status and body, the metrics the suites look at); window()
  selects a time range, first_where() the first sample that satisfies a predicate.
- create_topic_one_leader(): a topic whose partitions all list the same broker first, so that
  one broker leads all of them and its loss stalls the whole topic. Elections pick the first
  live in-sync replica of the list, so they stay together after a failover too.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Optional

import pytest

from gap_check import Expected
from harness import fast_reconnect, wait_until
from kafka_cluster import ClusterError, KafkaCluster
from sse_upstream import NumberedRoute, SSEUpstream

__all__ = ["AdminSampler", "Feeds", "Sample", "bridge_faults_config", "create_topic_one_leader",
           "feeds", "http_get", "partition_leaders", "Timeline"]


# ----------------------------------------------------------------------------- the cluster

def partition_leaders(cluster: KafkaCluster, topic: str) -> dict:
    """{partition: leader broker id (-1: none)} as metadata shows it now."""
    return {p["partition"]: int(p.get("leader", -1)) for p in cluster.partitions(topic)}


def partition_isrs(cluster: KafkaCluster, topic: str) -> dict:
    """{partition: sorted ISR broker ids}."""
    return {p["partition"]: sorted(r["id"] for r in p.get("isrs", [])) for p in cluster.partitions(topic)}


def create_topic_one_leader(cluster: KafkaCluster, topic: str, partitions: int, leader: int = 1,
                            configs: Optional[dict] = None) -> None:
    """Creates the topic with RF 3 and every partition's replica list starting with `leader`
    (then the other brokers in id order), waits until every partition has a full ISR, and checks
    that `leader` leads them all."""
    others = [b for b in cluster.broker_ids if b != leader]
    replicas = ":".join(str(b) for b in [leader] + others[:2])
    args = ["--bootstrap-server", cluster.bootstrap, "--create", "--topic", topic,
            "--replica-assignment", ",".join([replicas] * partitions)]
    for key, value in (configs or {}).items():
        args += ["--config", "%s=%s" % (key, value)]
    cluster.cli("org.apache.kafka.tools.TopicCommand", *args)
    cluster.wait_in_sync(topic)
    leaders = wait_until(lambda: (lambda got: got if set(got.values()) == {leader} else None)(
        partition_leaders(cluster, topic)), 30, interval=0.3,
        message=lambda: "%s: not every partition is led by %d: %s" % (topic, leader,
                                                                     partition_leaders(cluster, topic)))
    assert len(leaders) == partitions, leaders


def wait_one_leader(cluster: KafkaCluster, topic: str, not_on: Iterable[int] = (), timeout: float = 60) -> dict:
    """Waits until every partition has a leader outside `not_on`; returns {partition: leader}."""
    excluded = set(not_on)

    def led() -> Optional[dict]:
        try:
            leaders = partition_leaders(cluster, topic)
        except (ClusterError, Exception):  # kcat may fail while brokers move
            return None
        return leaders if leaders and all(b > 0 and b not in excluded for b in leaders.values()) else None
    return wait_until(led, timeout, interval=0.2,
                      message=lambda: "%s: some partition has no leader outside %s\n%s" % (
                          topic, sorted(excluded), cluster.describe(10)))


# ----------------------------------------------------------------------------- the bridge

def bridge_faults_config(bootstrap: str, state_dir: Path, streams: list, admin_port: int, *,
                         max_in_flight_events: int = 10_000, properties: Optional[dict] = None) -> dict:
    """The suites' bridge config: the daemon's producer defaults (enable.idempotence=true,
    acks=all, message.timeout.ms=0) left as they are; a small linger, quick reconnects to brokers
    that come back, a low in-flight limit so that backpressure starts within seconds, checkpoints
    written often, info logs with the per-stream summary every 5 s, and the admin endpoints."""
    props = {"linger.ms": "5", "reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "1000"}
    props.update(properties or {})
    return {
        "kafka": {"brokers": bootstrap, "flush_timeout": "10s", "properties": props,
                  "max_in_flight_events": max_in_flight_events},
        "state": {"dir": str(state_dir), "flush_interval": "50ms"},
        "log": {"level": "info", "stats_interval": "5s"},
        "admin": {"listen": "127.0.0.1:%d" % admin_port},
        "defaults": {"reconnect": fast_reconnect()},
        "streams": streams,
    }


# ----------------------------------------------------------------------------- feeds

class Feeds:
    """Numbered SSE feeds, one server per stream, each at `rate` events/s until finish()."""

    def __init__(self, names: Iterable[str], rate: float, payload_size: Optional[int] = None) -> None:
        self.names = list(names)
        self.rate = rate
        self.routes: dict = {}
        self.servers: dict = {}
        for name in self.names:
            self.routes[name] = NumberedRoute(end=None, at_end="hang", rate_per_s=rate, payload_size=payload_size)
            self.servers[name] = SSEUpstream().start()
            self.servers[name].route("/" + name, self.routes[name])

    def url(self, name: str) -> str:
        return self.servers[name].url("/" + name)

    def sent(self) -> int:
        """Events the upstreams wrote so far, repeats after reconnects included."""
        return sum(self.servers[n].events_sent("/" + n) for n in self.names)

    def sent_by_stream(self) -> dict:
        return {n: self.servers[n].events_sent("/" + n) for n in self.names}

    def counters(self) -> dict:
        """For AdminSampler(extra=...): {"sent": {stream: events written}}."""
        return {"sent": self.sent_by_stream()}

    def last_ids(self) -> dict:
        return {n: self.servers[n].last_sent_id("/" + n) or 0 for n in self.names}

    def requests(self, name: str) -> list:
        return self.servers[name].requests("/" + name)

    def connects(self) -> int:
        return sum(len(self.requests(n)) for n in self.names)

    def wait_connected(self, timeout: float) -> None:
        for name in self.names:
            self.servers[name].wait_for_requests(1, timeout=timeout, path="/" + name)

    def finish(self, at_least: int, margin: int = 500) -> dict:
        """Ends every feed at max(at_least, its last sent ID + margin): nothing past that is ever
        generated. Returns {stream: Expected} for the GapChecker."""
        ends = {n: max(at_least, last + margin) for n, last in self.last_ids().items()}
        for name, end in ends.items():
            self.routes[name].end = end
        return {n: Expected(last=end) for n, end in ends.items()}

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def feeds():
    """feeds(names, rate, payload_size=None) -> Feeds; every server stopped at teardown."""
    made = []

    def make(names: Iterable[str], rate: float, payload_size: Optional[int] = None) -> Feeds:
        made.append(Feeds(names, rate, payload_size))
        return made[-1]
    yield make
    for one in made:
        one.stop()


# ----------------------------------------------------------------------------- admin endpoints

def http_get(port: int, path: str, timeout: float = 2) -> tuple:
    """(status, body) of GET http://127.0.0.1:PORT/PATH; (0, error text) when unreachable."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as reply:
            return reply.status, reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except OSError as exc:
        return 0, str(exc)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')

# The process-wide metrics a Sample keeps, and the per-stream ones it sums over the streams.
PROCESS_METRICS = ("sse2kafka_backpressured", "sse2kafka_streams_paused", "sse2kafka_in_flight_events",
                   "sse2kafka_in_flight_bytes", "sse2kafka_backpressure_episodes_total",
                   "sse2kafka_fatal_producer_resets_total", "sse2kafka_kafka_brokers_up",
                   "sse2kafka_kafka_brokers", "sse2kafka_producer_queue_depth")
STREAM_SUMS = ("sse2kafka_stream_events_total", "sse2kafka_stream_records_delivered_total",
               "sse2kafka_stream_delivery_errors_total", "sse2kafka_stream_connected",
               "sse2kafka_stream_reconnects_total")
# The per-stream metrics a Sample also keeps by stream name.
PER_STREAM = ("sse2kafka_stream_events_total", "sse2kafka_stream_paused", "sse2kafka_stream_connected",
              "sse2kafka_stream_records_delivered_total", "sse2kafka_stream_in_flight_events")
_STREAM_LABEL = re.compile(r'stream="((?:[^"\\]|\\.)*)"')


@dataclasses.dataclass
class Sample:
    at: float                 # time.monotonic()
    ready_status: int         # 0: unreachable
    ready_body: str
    metrics: dict             # name -> value (process metrics; sums of the stream ones)
    streams: dict             # stream -> {per-stream metric name -> value}
    extra: dict               # what the sampler's `extra` callable returned (e.g. upstream counters)

    def get(self, name: str, default: float = -1) -> float:
        return self.metrics.get(name, default)

    def stream(self, stream: str, name: str, default: float = -1) -> float:
        return self.streams.get(stream, {}).get(name, default)


def parse_metrics(text: str) -> tuple:
    """({process metric or per-stream sum: value}, {stream: {per-stream metric: value}})."""
    out: dict = {}
    per_stream: dict = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        name = match.group(1)
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if name in PROCESS_METRICS:
            out[name] = value
        elif name in STREAM_SUMS:
            out[name] = out.get(name, 0.0) + value
        if name in PER_STREAM:
            label = _STREAM_LABEL.search(match.group(2) or "")
            if label:
                per_stream.setdefault(label.group(1), {})[name] = value
    return out, per_stream


class AdminSampler:
    """Samples /readyz and /metrics of one bridge every `interval` seconds in a thread."""

    def __init__(self, port: int, interval: float = 0.25, extra: Optional[Callable[[], dict]] = None) -> None:
        self.port = port
        self.interval = interval
        self.extra = extra
        self.samples: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="admin-sampler", daemon=True)
        self._thread.start()

    def sample(self) -> Sample:
        status, body = http_get(self.port, "/readyz")
        code, text = http_get(self.port, "/metrics")
        metrics, streams = parse_metrics(text) if code == 200 else ({}, {})
        one = Sample(time.monotonic(), status, body.strip(), metrics, streams, self.extra() if self.extra else {})
        with self._lock:
            self.samples.append(one)
        return one

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def window(self, start: float, end: float) -> list:
        with self._lock:
            return [s for s in self.samples if start <= s.at <= end]

    def first_where(self, predicate: Callable[[Sample], bool], start: float = 0.0) -> Optional[Sample]:
        with self._lock:
            for one in self.samples:
                if one.at >= start and predicate(one):
                    return one
        return None

    def latest(self) -> Optional[Sample]:
        with self._lock:
            return self.samples[-1] if self.samples else None

    def delivered(self) -> float:
        """records_delivered_total over every stream, scraped now."""
        return self.sample().get("sse2kafka_stream_records_delivered_total", 0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def read_stalls(samples: list, names: Iterable[str], start: float) -> dict:
    """{stream: (seconds, from, to, behind)}: the longest run of samples after `start` in which the
    bridge was not backpressured, the stream's read counter (sse2kafka_stream_events_total) did
    not move, and its upstream had written more events than the bridge had read (extra["sent"],
    the upstream's own counter; `behind` is how many more, at the end of the run). A stream
    that stalls so is not reading its socket although data waits there and nothing holds it."""
    out = {}
    chosen = [s for s in samples if s.at >= start and s.streams and "sent" in s.extra]
    for name in names:
        best = (0.0, 0.0, 0.0, 0)
        run_start = None
        previous = None
        for one in chosen:
            events = one.stream(name, "sse2kafka_stream_events_total")
            stalled = (previous is not None and events == previous and events >= 0 and
                       one.get("sse2kafka_backpressured") == 0 and one.extra["sent"].get(name, 0) > events)
            if stalled:
                run_start = run_start if run_start is not None else prev_at
                if one.at - run_start > best[0]:
                    best = (one.at - run_start, run_start, one.at, int(one.extra["sent"].get(name, 0) - events))
            else:
                run_start = None
            previous, prev_at = events, one.at
        out[name] = best
    return out


def ready_text(sample: Optional[Sample]) -> str:
    if sample is None:
        return "no sample"
    return "%d %r" % (sample.ready_status, sample.ready_body[:300])


# ----------------------------------------------------------------------------- the story

class Timeline:
    """Labelled moments of a scenario, relative to its start, for the summary and failure messages."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.marks: list = []

    def mark(self, label: str) -> float:
        now = time.monotonic()
        self.marks.append((now, label))
        return now

    def rel(self, at: float) -> float:
        return at - self.t0

    def text(self) -> str:
        return "; ".join("%.1fs %s" % (t - self.t0, label) for t, label in self.marks)


# ----------------------------------------------------------------------------- a run under load

def longest_delivery_stall(samples: list, start: float, end: float) -> tuple:
    """(seconds, from) of the longest time in [start, end] in which the bridge's delivered counter
    (sse2kafka_stream_records_delivered_total over every stream) did not grow."""
    chosen = [s for s in samples if start <= s.at <= end and "sse2kafka_stream_records_delivered_total" in s.metrics]
    best = (0.0, start)
    since = None
    previous = None
    for one in chosen:
        value = one.get("sse2kafka_stream_records_delivered_total")
        if previous is not None and value <= previous:
            since = since if since is not None else prev_at
            if one.at - since > best[0]:
                best = (one.at - since, since)
        else:
            since = None
        previous, prev_at = value, one.at
    return best


class LoadRun:
    """A bridge under steady load for a fault scenario: numbered feeds into one topic, the record
    tail, the admin sampler and the memory watch. close() stops the watchers (the fixtures stop
    the processes)."""

    def __init__(self, cluster: KafkaCluster, topic: str, names: list, feeds_factory, rate: float,
                 processes, tmp_path: Path, state_dir: Path, start_bridge, payload_size: Optional[int] = None,
                 max_in_flight_events: int = 10_000) -> None:
        from fleet_support import free_port
        from reliability_support import MemoryWatch, RecordTail
        self.cluster = cluster
        self.topic = topic
        self.names = names
        self.state_dir = state_dir
        self.kafka = cluster.reader()
        self.feed = feeds_factory(names, rate, payload_size)
        self.port = free_port()
        self.config = bridge_faults_config(cluster.bootstrap, state_dir,
                                           [{"name": n, "url": self.feed.url(n), "topic": topic} for n in names],
                                           self.port, max_in_flight_events=max_in_flight_events)
        self.tail = RecordTail(processes, cluster.bootstrap, [topic], tmp_path, name="tail-" + topic)
        self.memory = MemoryWatch()
        self.bridge = start_bridge(self.config)
        self.pid = self.bridge.pid
        self.memory.watch(self.pid)
        self.sampler = AdminSampler(self.port, extra=self.feed.counters)
        self.timeline = Timeline()
        self.expected: dict = {}

    def wait_read(self, count: int, timeout: float, what: str = "") -> None:
        """Waits until the tail has read `count` records (the bridge running all along)."""
        wait_until(lambda: self.bridge.assert_running() or self.tail.checker.records >= count, timeout,
                   interval=0.2, message=lambda: "%s: %d of %d records read\n%s\n%s" % (
                       what, self.tail.checker.records, count, self.timeline.text(), self.bridge.describe(80)))

    def finish(self, at_least: int, timeout: float) -> None:
        """Ends the feeds (at least `at_least` events each), waits for every event, stops the
        bridge (SIGTERM, exit 0) and lets the tail catch up."""
        from reliability_support import wait_for_delivery
        self.expected = self.feed.finish(at_least=at_least)
        self.timeline.mark("feeds end at %s" % {n: e.last for n, e in self.expected.items()})
        wait_for_delivery(self.tail, self.kafka, self.expected, timeout, bridges=[self.bridge],
                          context=self.timeline.text())
        self.timeline.mark("every event delivered")
        assert self.bridge.pid == self.pid and self.bridge.running(), self.bridge.describe()
        assert self.bridge.stop() == 0, self.bridge.describe()
        self.timeline.mark("bridge stopped")
        self.tail.wait_caught_up(self.kafka, 60)

    def last_metrics(self) -> dict:
        for one in reversed(self.sampler.samples):
            if one.metrics:
                return one.metrics
        return {}

    def close(self) -> None:
        self.sampler.stop()
        self.memory.stop()
        self.tail.stop()


# ----------------------------------------------------------------------------- socket evidence

def _tcp_sockets() -> dict:
    """{inode: (local port, remote port, rx_queue bytes, tx_queue bytes, "timer:when:retransmits")}
    of the IPv4 TCP sockets (/proc/net/tcp; timer 1 = retransmit, 2 = keepalive, 4 = zero-window
    probe; `when` in jiffies)."""
    out = {}
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, queues, inode = fields[1], fields[2], fields[4], int(fields[9])
            tx, rx = queues.split(":")
            out[inode] = (int(local.split(":")[1], 16), int(remote.split(":")[1], 16), int(rx, 16), int(tx, 16),
                          "%s:%d" % (fields[5], int(fields[6], 16)))
    return out


def socket_evidence(pid: int, upstream_ports: dict) -> dict:
    """For each stream {name: upstream port}: the bridge's fd of its connection, the bytes waiting
    in that socket's receive queue, and the events the bridge's epoll instance watches on it
    (/proc/PID/fdinfo of the epoll fd; None: not watched at all). A paused transfer is not
    watched for input; one the bridge reads must be."""
    try:
        sockets = _tcp_sockets()
        fds = {}
        epolls = []
        for entry in Path("/proc/%d/fd" % pid).iterdir():
            try:
                target = entry.readlink().as_posix()
            except OSError:
                continue
            if target.startswith("socket:["):
                fds[int(target[8:-1])] = int(entry.name)
            elif target == "anon_inode:[eventpoll]":
                epolls.append(int(entry.name))
        watched = {}
        for epfd in epolls:
            for line in Path("/proc/%d/fdinfo/%d" % (pid, epfd)).read_text().splitlines():
                match = re.match(r"tfd:\s+(\d+)\s+events:\s+([0-9a-f]+)", line)
                if match:
                    watched[int(match.group(1))] = "%s:0x%s" % (epfd, match.group(2))
        out = {}
        for name, port in upstream_ports.items():
            found = [(fd, sockets[inode]) for inode, fd in fds.items()
                     if inode in sockets and sockets[inode][1] == port]
            entries = []
            for fd, (local, _, rx, _, _) in found:
                # The upstream's end of the same connection: its send queue and TCP timer.
                peer = [v for v in sockets.values() if v[0] == port and v[1] == local]
                entries.append({"fd": fd, "recv_q": rx, "epoll": watched.get(fd),
                                "upstream_send_q": peer[0][3] if peer else None,
                                "upstream_timer": peer[0][4] if peer else None})
            out[name] = entries
        return out
    except OSError as exc:
        return {"error": str(exc)}
