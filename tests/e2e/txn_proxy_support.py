"""Test helpers for transactions whose outcome means something: kafka_txn_proxy.py in front of
mock_broker, and txn_probe, a scripted producer.

librdkafka 2.0.2's mock neither fences an older producer of a transactional.id nor hides aborted
or open transactions from read_committed consumers; tests/tools/kafka_txn_proxy.py adds both (see
its docstring). Use:

    from txn_proxy_support import txn_cluster, probes  # noqa: F401  (pytest fixtures)

    def test_x(txn_cluster, probes):
        cluster = txn_cluster(topics=["t:1"])            # mock_broker + proxy
        probes.run(cluster.bootstrap, "t", ["init", "begin", "produce:a,b", "commit"],
                   transactional_id="tx").assert_ok()
        assert cluster.values("t") == ["a", "b"]           # read_committed, through the proxy

- TxnProxy: the proxy process; .bootstrap (give this to clients), .decisions() (its JSON decision
  log: init/fence/commit/abort/reject events), .wait_for_decision(), .stop().
- TxnCluster: a MockBroker with a TxnProxy in front; .read() / .values() / .watermarks() through
  the proxy (read_committed by default), .read_direct() straight from the mock.
- probes.run(...) runs txn_probe to its end; probes.start(...) runs it in the background, for
  scripts with a "wait" step: .wait_for_step("wait"), then .resume(), then .finish().
Every process is registered with the `processes` fixture and killed at teardown.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import pytest

from harness import REPO, MockBroker, ProcessRegistry, Record, tool, wait_until

__all__ = ["PROXY_SCRIPT", "TxnProxy", "TxnCluster", "DumpResult", "ProbeRun", "ProbeProcess", "Probes", "watermarks",
           "dump", "txn_cluster", "probes"]

PROXY_SCRIPT = REPO / "tests" / "tools" / "kafka_txn_proxy.py"


class _Lines:
    """Reads a text pipe's lines in a thread so that they can be awaited with a timeout."""

    def __init__(self, stream) -> None:
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._run, args=(stream,), daemon=True).start()

    def _run(self, stream) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next(self, timeout: float) -> Optional[str]:
        """The next line; None at end of output. Raises TimeoutError."""
        try:
            return self._lines.get(timeout=max(timeout, 0))
        except queue.Empty:
            raise TimeoutError("no line within %.1fs" % timeout) from None


# ----------------------------------------------------------------------------- the proxy

class TxnProxy:
    """kafka_txn_proxy.py in front of `upstream` (a mock_broker BOOTSTRAP list); stderr and the
    decision log go to files in log_dir."""

    _counter = 0

    def __init__(self, registry: ProcessRegistry, upstream: str, log_dir: Path) -> None:
        TxnProxy._counter += 1
        name = "txn_proxy%d" % TxnProxy._counter
        self.decision_path = Path(log_dir) / ("%s.decisions.jsonl" % name)
        self.stderr_path = Path(log_dir) / ("%s.stderr" % name)
        self.command = [sys.executable, str(PROXY_SCRIPT), "--upstream", upstream, "--log", str(self.decision_path)]
        with open(self.stderr_path, "wb") as err:
            self.process = registry.add(subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True))
        self._lines = _Lines(self.process.stdout)
        try:
            first = self._lines.next(timeout=15)
        except TimeoutError:
            first = None
        if first is None or not first.startswith("BOOTSTRAP "):
            raise AssertionError("kafka_txn_proxy did not start: %r; stderr: %s" % (first, self.stderr()))
        self.bootstrap = first.split(" ", 1)[1]

    def running(self) -> bool:
        return self.process.poll() is None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def decisions(self, event: Optional[str] = None) -> list:
        """The decision log so far (optionally only one kind of event), oldest first."""
        if not self.decision_path.exists():
            return []
        entries = [json.loads(line) for line in self.decision_path.read_text().splitlines() if line.strip()]
        return [e for e in entries if event is None or e["event"] == event]

    def wait_for_decision(self, predicate: Callable[[dict], bool], timeout: float = 10) -> dict:
        """The first decision matching predicate, waiting for it up to timeout."""
        def find():
            return next((d for d in self.decisions() if predicate(d)), None)
        return wait_until(find, timeout, interval=0.05,
                          message=lambda: "no such decision; log: %s" % self.decisions())

    def describe(self) -> str:
        return "kafka_txn_proxy (%s)\n--- stderr ---\n%s\n--- decisions ---\n%s" % (
            "running" if self.running() else "exited with %s" % self.process.returncode,
            self.stderr()[-4000:], "\n".join(json.dumps(d) for d in self.decisions()[-50:]))

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, then waits; returns the exit status."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


# ----------------------------------------------------------------------------- reading

@dataclasses.dataclass
class DumpResult:
    records: list          # harness.Record, sorted by (topic, partition, offset)
    stderr: str
    elapsed: float         # seconds kafka_dump ran

    @property
    def values(self) -> list:
        return [r.value for r in self.records]


def dump(bootstrap: str, topic: str, isolation: str = "read_committed", timeout: float = 10) -> DumpResult:
    """Everything kafka_dump --eof reads from the topic at that isolation level."""
    cmd = [str(tool("kafka_dump")), "--brokers", bootstrap, "--topic", topic, "--eof",
           "--isolation", isolation, "--timeout-ms", str(int(timeout * 1000))]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 15)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise AssertionError("kafka_dump failed (%d): %s" % (done.returncode, done.stderr))
    records = [Record.from_json(json.loads(line)) for line in done.stdout.split("\n") if line.strip()]
    return DumpResult(sorted(records, key=lambda r: (r.topic, r.partition, r.offset)), done.stderr, elapsed)


def watermarks(bootstrap: str, topic: str, isolation: str = "read_committed", timeout: float = 10) -> dict:
    """{partition: (low, high)}; with read_committed, high is the last stable offset."""
    cmd = [str(tool("kafka_dump")), "--brokers", bootstrap, "--topic", topic, "--watermarks",
           "--isolation", isolation, "--timeout-ms", str(int(timeout * 1000))]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 15)
    if done.returncode != 0:
        raise AssertionError("kafka_dump --watermarks failed (%d): %s" % (done.returncode, done.stderr))
    rows = [json.loads(line) for line in done.stdout.split("\n") if line.strip()]
    return {row["partition"]: (row["low"], row["high"]) for row in rows}


class TxnCluster:
    """A mock_broker with a kafka_txn_proxy in front. Clients use .bootstrap (the proxy's)."""

    def __init__(self, broker: MockBroker, proxy: TxnProxy) -> None:
        self.broker = broker
        self.proxy = proxy
        self.bootstrap = proxy.bootstrap

    def read(self, topic: str, isolation: str = "read_committed", timeout: float = 10) -> DumpResult:
        return dump(self.bootstrap, topic, isolation, timeout)

    def values(self, topic: str, isolation: str = "read_committed") -> list:
        return self.read(topic, isolation).values

    def read_direct(self, topic: str, isolation: str = "read_committed", timeout: float = 10) -> DumpResult:
        """Straight from the mock, bypassing the proxy (which shows what the mock alone does)."""
        return dump(self.broker.bootstrap, topic, isolation, timeout)

    def watermarks(self, topic: str, isolation: str = "read_committed") -> dict:
        return watermarks(self.bootstrap, topic, isolation)


# ----------------------------------------------------------------------------- txn_probe

@dataclasses.dataclass
class ProbeRun:
    returncode: int
    steps: list            # one dict per printed step line
    stderr: str

    def step(self, name: str, index: int = -1) -> dict:
        """The index-th (default: last) printed line of that step."""
        matching = [s for s in self.steps if s.get("step") == name]
        if not matching:
            raise AssertionError("probe printed no %r step: %s" % (name, self.describe()))
        return matching[index]

    @property
    def last(self) -> dict:
        if not self.steps:
            raise AssertionError("probe printed nothing: %s" % self.describe())
        return self.steps[-1]

    def assert_ok(self) -> "ProbeRun":
        if self.returncode != 0 or not all(s.get("ok") for s in self.steps):
            raise AssertionError("probe failed: %s" % self.describe())
        return self

    def describe(self) -> str:
        return "exit %s\n%s\n--- stderr (tail) ---\n%s" % (
            self.returncode, "\n".join(json.dumps(s) for s in self.steps), self.stderr[-3000:])


def _probe_command(bootstrap: str, topic: str, steps: Iterable[str], transactional_id: Optional[str],
                   properties: Optional[dict], timeout_ms: int) -> list:
    cmd = [str(tool("txn_probe")), "--brokers", bootstrap, "--topic", topic, "--timeout-ms", str(timeout_ms)]
    if transactional_id is not None:
        cmd += ["--transactional-id", transactional_id]
    for name, value in (properties or {}).items():
        cmd += ["-X", "%s=%s" % (name, value)]
    return cmd + list(steps)


class ProbeProcess:
    """A txn_probe running in the background (for scripts with "wait" steps)."""

    def __init__(self, registry: ProcessRegistry, command: list, stderr_path: Path) -> None:
        self.command = command
        self.stderr_path = stderr_path
        with open(stderr_path, "wb") as err:
            self.process = registry.add(subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1))
        self._lines = _Lines(self.process.stdout)
        self.steps: list = []
        self._ended = False

    def _stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def wait_for_step(self, name: str, timeout: float = 30) -> dict:
        """Reads step lines until one of step `name` (returned); fails if the probe ends first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.next(deadline - time.monotonic())
            except TimeoutError:
                raise AssertionError("probe printed no %r step within %.0fs: %s" % (
                    name, timeout, self._describe())) from None
            if line is None:
                self._ended = True
                raise AssertionError("probe ended before a %r step: %s" % (name, self._describe()))
            step = json.loads(line)
            self.steps.append(step)
            if step.get("step") == name:
                return step

    def resume(self) -> None:
        """Lets a probe blocked in a "wait" step go on."""
        self.process.stdin.write("\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 60) -> ProbeRun:
        """Waits for the probe to end by itself and returns everything it printed."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError("probe did not end within %.0fs: %s" % (timeout, self._describe())) from None
        while not self._ended:
            line = self._lines.next(10)
            if line is None:
                self._ended = True
            else:
                self.steps.append(json.loads(line))
        self.process.stdin.close()
        return ProbeRun(self.process.returncode, self.steps, self._stderr())

    def _describe(self) -> str:
        return "%s\n%s\n--- stderr (tail) ---\n%s" % (
            " ".join(self.command), "\n".join(json.dumps(s) for s in self.steps), self._stderr()[-3000:])


class Probes:
    """Starts txn_probe runs; logs go to the test's directory."""

    def __init__(self, registry: ProcessRegistry, log_dir: Path) -> None:
        self._registry = registry
        self._log_dir = Path(log_dir)
        self._count = 0

    def _stderr_path(self) -> Path:
        self._count += 1
        return self._log_dir / ("txn_probe%d.stderr" % self._count)

    def run(self, bootstrap: str, topic: str, steps: Iterable[str], transactional_id: Optional[str] = None,
            properties: Optional[dict] = None, timeout_ms: int = 10000) -> ProbeRun:
        """Runs the probe to its end (bounded by timeout_ms per step) and returns what it printed."""
        steps = list(steps)
        probe = ProbeProcess(self._registry, _probe_command(bootstrap, topic, steps, transactional_id, properties,
                                                            timeout_ms), self._stderr_path())
        return probe.finish(timeout=len(steps) * (timeout_ms / 1000 + 5) + 10)

    def start(self, bootstrap: str, topic: str, steps: Iterable[str], transactional_id: Optional[str] = None,
              properties: Optional[dict] = None, timeout_ms: int = 10000) -> ProbeProcess:
        return ProbeProcess(self._registry, _probe_command(bootstrap, topic, steps, transactional_id, properties,
                                                           timeout_ms), self._stderr_path())


# ----------------------------------------------------------------------------- fixtures

def _failed(request) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


@pytest.fixture
def txn_cluster(make_broker, processes, tmp_path, request):
    """txn_cluster(brokers=1, topics=["name:partitions", ...]) -> TxnCluster (mock + proxy).
    A failed test prints each proxy's stderr and decision log."""
    started = []

    def make(brokers: int = 1, topics: Iterable[str] = ()) -> TxnCluster:
        broker = make_broker(brokers=brokers, topics=topics)
        cluster = TxnCluster(broker, TxnProxy(processes, broker.bootstrap, tmp_path))
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        if _failed(request):
            print(cluster.proxy.describe())
        try:
            cluster.proxy.stop(5)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def probes(processes, tmp_path):
    """Probes: .run(bootstrap, topic, steps, transactional_id=...) and .start(...)."""
    return Probes(processes, tmp_path)
