"""Shared pieces of the reliability suite: a consumer that reads every record as it lands, the
bridge's memory from /proc, checkpoint files, size scaling for sanitizer builds, seeds, configs.

The e2e harness (tests/e2e/harness.py, fixtures.py) starts the processes; this module adds what
fault tests need on top of it. Sizes: SSE2KAFKA_SANITIZED=1 (ASan+UBSan build, ~3x slower)
selects the smaller sizes passed to scaled() and multiplies timeouts by TIME_SCALE.
SSE2KAFKA_RELIABILITY_SEED fixes the random fault schedule (every scenario prints its seed).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterable, Optional

from gap_check import Expected, GapChecker, Report
from harness import (Bridge, Kafka, MockBroker, ProcessRegistry, bridge_config, fast_reconnect, reader_properties, tool,
                     wait_until)

SANITIZED = os.environ.get("SSE2KAFKA_SANITIZED", "") not in ("", "0")
TIME_SCALE = 3.0 if SANITIZED else 1.0


def scaled(normal, sanitized):
    """`sanitized` under SSE2KAFKA_SANITIZED=1, else `normal`."""
    return sanitized if SANITIZED else normal


def seconds(normal: float) -> float:
    """A timeout scaled for sanitizer builds."""
    return normal * TIME_SCALE


def scenario_random(name: str) -> tuple:
    """(seed, random.Random) for a scenario: SSE2KAFKA_RELIABILITY_SEED when set, else fresh.
    Print the seed with every result so that a failing schedule can be replayed."""
    text = os.environ.get("SSE2KAFKA_RELIABILITY_SEED")
    seed = int(text) if text else random.SystemRandom().randrange(1, 2 ** 31)
    return seed, random.Random("%s:%d" % (name, seed))


# ----------------------------------------------------------------------------- reading Kafka

class RecordTail:
    """A kafka_dump process that follows the topics from offset 0 for the whole scenario and
    feeds every record to a GapChecker as it arrives. Reading while records land lets a scenario
    produce more than the mock broker's ~5 MB per partition retains, as long as the reader stays
    within that much of the bridge; should it fall further behind, the checker reports the
    offsets it never saw (Report.complete() is false) instead of calling them gaps."""

    def __init__(self, registry: ProcessRegistry, bootstrap: str, topics: Iterable[str], log_dir: Path,
                 checker: Optional[GapChecker] = None, name: str = "record_tail",
                 isolation: Optional[str] = None) -> None:
        """`isolation` ("read_committed"): offsets of aborted records and transaction markers are
        never read then, so the checker's offset skips are expected and say nothing."""
        self.topics = list(topics)
        self.checker = checker or GapChecker()
        self.errors: list = []
        self.stderr_path = Path(log_dir) / ("%s.stderr" % name)
        # Should the mock drop records before they were read, "earliest" makes the reader jump
        # forward, which the checker reports as skipped offsets (the default, "latest", would
        # silently wait at the end of the partition).
        cmd = ["stdbuf", "-oL", str(tool("kafka_dump")), "--brokers", bootstrap,
               "--timeout-ms", str(6 * 3600 * 1000), "-X", "auto.offset.reset=earliest"]
        if isolation:
            cmd += ["--isolation", isolation]
        for name, value in reader_properties(bootstrap).items():
            cmd += ["-X", "%s=%s" % (name, value)]
        for topic in self.topics:
            cmd += ["--topic", topic]
        env = dict(os.environ)
        # stdbuf preloads a library; a sanitizer runtime refuses to start behind one by default.
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
        self._stderr = open(self.stderr_path, "wb")
        self.process = registry.add(subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
            text=True, encoding="utf-8", errors="replace", bufsize=1 << 16))
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in self.process.stdout:
            if not line.strip():
                continue
            try:
                self.checker.add_line(line)
            except (ValueError, KeyError) as exc:
                if len(self.errors) < 20:
                    self.errors.append("%s: %r" % (exc, line[:200]))

    def wait_caught_up(self, kafka: Kafka, timeout: float) -> None:
        """Waits until every record the partitions hold now has been read."""
        marks = kafka.watermarks(self.topics)

        def behind() -> dict:
            read = self.checker.next_offsets()
            return {k: (read.get(k, 0), high) for k, (low, high) in marks.items() if read.get(k, 0) < high}

        def caught_up() -> bool:
            self.check_alive()
            return not behind()
        wait_until(caught_up, timeout, interval=0.1,
                   message=lambda: "the reader is behind the high watermarks {partition: (read, high)}: %s"
                   % behind())

    def check_alive(self) -> None:
        """Raises when the reader died or got lines it cannot parse."""
        if self.errors:
            raise AssertionError("the record reader got lines it cannot parse: %s" % self.errors)
        if self.process.poll() is not None:
            raise AssertionError("the record reader (kafka_dump) exited with %s: %s" % (
                self.process.returncode, self.stderr()[-2000:]))

    def position(self, kafka: Kafka) -> dict:
        """{(topic, partition): (offset read up to, low watermark, high watermark)}."""
        try:
            marks = kafka.watermarks(self.topics, timeout=5)
        except (AssertionError, subprocess.TimeoutExpired) as exc:
            return {"error": str(exc)}
        read = self.checker.next_offsets()
        return {k: (read.get(k, 0), low, high) for k, (low, high) in sorted(marks.items())}

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._thread.join(10)
        self._stderr.close()


def observe_for(duration: float, bridge: Bridge) -> None:
    """Lets `duration` seconds pass (a measurement window, not a synchronisation), failing at
    once if the bridge exits meanwhile."""
    end = time.monotonic() + duration

    def elapsed() -> bool:
        bridge.assert_running()
        return time.monotonic() >= end
    wait_until(elapsed, duration + 5, interval=0.05)


def wait_for_delivery(tail: RecordTail, kafka: Kafka, expected: dict, timeout: float,
                      bridges: Iterable[Bridge] = (), context: str = "") -> None:
    """Waits until the tail read every expected ID of every stream. On timeout fails with the
    report (gaps named), where the reader stands against the partitions' high watermarks (tells
    a stuck bridge from a slow reader) and the last log lines of the bridges."""
    bridges = list(bridges)
    checker = tail.checker

    def done() -> bool:
        for bridge in bridges:
            if not bridge.running():
                raise AssertionError("the bridge exited while delivering\n%s\n%s" % (
                    checker.report(expected).text(), bridge.describe(80)))
        return checker.has_all(expected)

    def message() -> str:
        logs = "\n".join(b.describe(150) for b in bridges[-1:])
        position = "\nreader {partition: (offset read up to, low, high watermark)}: %s" % tail.position(kafka)
        return "not every event arrived. %s\n%s%s\n%s" % (
            context, checker.report(expected).text(), position, logs)
    wait_until(done, timeout, interval=0.25, message=message)


# ----------------------------------------------------------------------------- memory

def memory_kib(pid: int) -> dict:
    """{"VmRSS": KiB, "VmHWM": KiB} of a running process; {} once it is gone."""
    out = {}
    try:
        with open("/proc/%d/status" % pid, encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    out[name] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return out


class MemoryWatch:
    """Samples the bridge's VmRSS and VmHWM every `interval` seconds in a thread; watch() moves
    it to a new process (after a restart). peak_kib is the highest VmHWM seen over all of them."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.samples: list = []          # (time.monotonic(), pid, VmRSS KiB)
        self.peak_kib = 0
        self._pid: Optional[int] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-watch", daemon=True)
        self._thread.start()

    def watch(self, pid: int) -> None:
        with self._lock:
            self._pid = pid
        self.sample()

    def sample(self) -> dict:
        """Takes one sample now; returns it ({} when no process is watched or it is gone)."""
        with self._lock:
            pid = self._pid
            if pid is None:
                return {}
            mem = memory_kib(pid)
            if mem:
                self.samples.append((time.monotonic(), pid, mem.get("VmRSS", 0)))
                self.peak_kib = max(self.peak_kib, mem.get("VmHWM", 0), mem.get("VmRSS", 0))
            return mem

    def rss_between(self, start: float, end: float) -> list:
        """VmRSS samples (KiB) taken in [start, end] (time.monotonic())."""
        with self._lock:
            return [rss for t, _, rss in self.samples if start <= t <= end]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def mib(kib: int) -> str:
    return "%.1f MiB" % (kib / 1024.0)


# ----------------------------------------------------------------------------- bridge state

def read_checkpoints(state_dir: Path) -> dict:
    """{stream: last_event_id} from the bridge's checkpoint file ({} when there is none yet).
    Format (daemon/state/checkpoint_store.h): a version line, one JSON object per stream, a CRC line."""
    path = Path(state_dir) / "checkpoints"
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            obj = json.loads(line)
            out[obj["stream"]] = obj["last_event_id"]
    return out


def log_lines(bridge: Bridge, pattern: str) -> list:
    """The bridge's log lines that match the regex."""
    regex = re.compile(pattern)
    return [line for line in bridge.logs().splitlines() if regex.search(line)]


FAULT_LOG_PATTERNS = {
    "rewinds": r"rewinding to the checkpoint",
    "delivery_failures": r"delivery failed",
    "disconnects": r"\] disconnected",
    "producer_resets": r"Kafka producer failed fatally",
}


def fault_counts(bridges: Iterable[Bridge]) -> dict:
    """How often the bridges logged each kind of fault handling (FAULT_LOG_PATTERNS). Lines the
    bridge's log rate limit held back are not counted, so these are lower bounds."""
    counts = dict.fromkeys(FAULT_LOG_PATTERNS, 0)
    for bridge in bridges:
        text = bridge.logs()
        for name, pattern in FAULT_LOG_PATTERNS.items():
            counts[name] += len(re.findall(pattern, text))
    return counts


def fault_text(bridges: Iterable[Bridge]) -> str:
    """fault_counts() as "rewinds=N delivery_failures=N ..." for a summary line."""
    return " ".join("%s=%d" % item for item in fault_counts(bridges).items())


# ----------------------------------------------------------------------------- configs

def reliability_config(broker: MockBroker, state_dir: Path, streams: list, *,
                       properties: Optional[dict] = None, kafka: Optional[dict] = None,
                       state: Optional[dict] = None, defaults: Optional[dict] = None,
                       log_level: str = "info") -> dict:
    """The suite's bridge config: fast reconnects towards upstreams and brokers, checkpoints
    written often (so that kills land between and during writes), info logs without the periodic
    summary. `properties` are librdkafka properties added to (or replacing) the defaults."""
    props = {"linger.ms": "5", "reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "1000"}
    props.update(properties or {})
    # The periodic per-stream summary (state, delivered, in flight, checkpoint) explains a
    # failure from the log alone.
    config = bridge_config(broker.bootstrap, state_dir, streams,
                           log={"level": log_level, "stats_interval": "5s"})
    config["kafka"].update({"flush_timeout": "5s", "properties": props})
    config["kafka"].update(kafka or {})
    config["state"].update({"flush_interval": "50ms"})
    config["state"].update(state or {})
    config["defaults"] = {"reconnect": fast_reconnect()}
    config["defaults"].update(defaults or {})
    return config


def numbered_event_bytes(n: int, payload: str = "event {n}") -> int:
    """Bytes of one NumberedRoute event: "id: N\\ndata: <payload>\\n\\n"."""
    return len("id: %d\ndata: %s\n\n" % (n, payload.replace("{n}", str(n))))


# ----------------------------------------------------------------------------- reporting

def summary_line(scenario: str, report: Report, peak_kib: int, seed: Optional[int] = None,
                 extra: str = "") -> str:
    """The one line a scenario prints: events sent, delivered, duplicates, gaps, peak RSS."""
    text = "%s: events sent=%d delivered=%d duplicates=%d gaps=%d order_violations=%d peak_rss=%s" % (
        scenario, report.sent, report.delivered, report.duplicates, report.gaps,
        report.order_violations, mib(peak_kib))
    if seed is not None:
        text += " seed=%d" % seed
    if extra:
        text += " " + extra
    return text


def expected_all(names: Iterable[str], last: int, excluded: Iterable[int] = ()) -> dict:
    return {name: Expected(last=last, excluded=frozenset(excluded)) for name in names}
