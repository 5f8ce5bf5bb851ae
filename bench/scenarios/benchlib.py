"""Shared pieces of the end-to-end benchmark scenarios (bench/run.sh runs them; bench/README.md
explains what each measures).

Every scenario drives the real sse2kafka binary against the mock_broker process and the C++
loopback source (bench/tools/sse_source.cpp), verifies that exactly the expected records landed
(high watermarks, last record), and writes its runs as JSON for report.py. A figure whose
verification failed is void: it is kept out of the medians and the report says why.

Reused from the e2e harness (tests/e2e/harness.py): MockBroker, ProcessRegistry, to_yaml,
wait_until.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from harness import MockBroker, ProcessRegistry, to_yaml, wait_until  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# librdkafka producer properties that the bridge applies by default (sink/producer_properties.cpp)
# for the default kafka.max_in_flight_events (100000) and max_in_flight_bytes (64 MiB). The raw
# reference gets the same, so that both sides talk to Kafka alike.
BRIDGE_DEFAULT_PRODUCER_PROPERTIES = {
    "enable.idempotence": "true",
    "acks": "all",
    "queue.buffering.max.messages": str(2 * 100000 + 1000),
    "queue.buffering.max.kbytes": str(2 * (64 * 1024 + 1) + 16384),
}
# The one setting every side of a comparison states explicitly (librdkafka 2.0.2's default).
LINGER_MS = "5"


# ----------------------------------------------------------------------------- command line

def parse_args(description: str, extra: Optional[Callable[[argparse.ArgumentParser], None]] = None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--build-dir", default=os.environ.get("SSE2KAFKA_BENCH_BUILD", str(REPO / "build-bench")),
                        help="build tree holding sse2kafka, tests/tools and bench/tools")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per figure (default 3)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run: proves the scenario works")
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument("--work-dir", help="keep logs and state here (default: a temp dir, removed on success)")
    if extra:
        extra(parser)
    args = parser.parse_args()
    if args.smoke:
        args.runs = 1
    return args


class Workspace:
    """Paths of the build and a scratch directory for logs, configs and state; cleans up processes."""

    def __init__(self, args) -> None:
        self.build = Path(args.build_dir).resolve()
        self.bridge_bin = self.build / "sse2kafka"
        self.tools = self.build / "tests" / "tools"
        self.bench_tools = self.build / "bench" / "tools"
        for path in (self.bridge_bin, self.tools / "mock_broker", self.bench_tools / "sse_source",
                     self.bench_tools / "kafka_probe", self.bench_tools / "floor_producer"):
            if not path.exists():
                raise SystemExit("%s is missing: run bench/run.sh (it builds what the suite needs)" % path)
        os.environ["SSE2KAFKA_TOOLS_DIR"] = str(self.tools)
        self.keep = args.work_dir is not None
        self.dir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="sse2kafka-bench-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.registry = ProcessRegistry()
        self._count = 0

    def subdir(self, name: str) -> Path:
        self._count += 1
        path = self.dir / ("%02d-%s" % (self._count, name))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self, ok: bool) -> None:
        self.registry.cleanup()
        if ok and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif not ok:
            print("logs kept in %s" % self.dir, file=sys.stderr)


# ----------------------------------------------------------------------------- the SSE source

class Source:
    """The sse_source process (bench/tools/sse_source.cpp) and its control paths."""

    def __init__(self, ws: Workspace) -> None:
        self._log = open(ws.dir / "sse_source.stderr", "wb")
        self.process = ws.registry.add(subprocess.Popen(
            [str(ws.bench_tools / "sse_source")], stdout=subprocess.PIPE, stderr=self._log, text=True))
        line = self.process.stdout.readline()
        if not line.startswith("LISTENING "):
            raise RuntimeError("sse_source did not start: %r" % line)
        self.port = int(line.split()[1])

    def url(self, path: str, **query: Any) -> str:
        q = "&".join("%s=%s" % (k, v) for k, v in query.items())
        return "http://127.0.0.1:%d%s%s" % (self.port, path, "?" + q if q else "")

    def _get(self, path: str) -> str:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode()
            if response.status != 200:
                raise RuntimeError("sse_source %s: %d %s" % (path, response.status, body))
            return body
        finally:
            conn.close()

    def stats(self) -> dict:
        return json.loads(self._get("/_stats"))

    def reset(self) -> None:
        self._get("/_reset")

    def pause(self) -> None:
        self._get("/_pause")

    def resume(self) -> None:
        self._get("/_resume")

    def last_ids(self) -> dict:
        out = {}
        for line in self._get("/_last_ids").splitlines():
            path, _, number = line.rpartition(" ")
            out[path] = number
        return out

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)


# ----------------------------------------------------------------------------- Kafka side

class Probe:
    """kafka_probe (bench/tools/kafka_probe.cpp) against one broker."""

    def __init__(self, ws: Workspace, bootstrap: str) -> None:
        self.binary = str(ws.bench_tools / "kafka_probe")
        self.bootstrap = bootstrap
        self.ws = ws

    def _cmd(self, mode: str, topic: str, *args: str) -> list:
        return [self.binary, mode, "--brokers", self.bootstrap, "--topic", topic] + list(args)

    def start_wait(self, topic: str, count: int, timeout_s: float) -> subprocess.Popen:
        """Starts polling the watermarks in the background; finish with result()."""
        return self.ws.registry.add(subprocess.Popen(
            self._cmd("wait", topic, "--count", str(count), "--timeout-ms", str(int(timeout_s * 1000))),
            stdout=subprocess.PIPE, text=True))

    def start_latency(self, topic: str, count: int, skip: int, timeout_s: float) -> subprocess.Popen:
        return self.ws.registry.add(subprocess.Popen(
            self._cmd("latency", topic, "--count", str(count), "--skip", str(skip),
                      "--timeout-ms", str(int(timeout_s * 1000))),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))

    @staticmethod
    def result(process: subprocess.Popen, timeout_s: float) -> dict:
        out, _ = process.communicate(timeout=timeout_s)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError("kafka_probe printed nothing (exit %s)" % process.returncode)
        return json.loads(lines[-1])

    def wait(self, topic: str, count: int, timeout_s: float) -> dict:
        return self.result(self.start_wait(topic, count, timeout_s), timeout_s + 30)

    def last(self, topic: str) -> list:
        done = subprocess.run(self._cmd("last", topic), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError("kafka_probe last %s: %s" % (topic, done.stderr))
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]

    def total(self, topic: str) -> int:
        """Records ever appended to the topic (sum of high watermarks)."""
        return self.wait(topic, 0, 30)["records"]


def start_broker(ws: Workspace, topics: list) -> MockBroker:
    return MockBroker(ws.registry, ws.subdir("broker"), topics=topics)


# ----------------------------------------------------------------------------- the bridge

def bridge_config(brokers: str, state_dir: Path, streams: list, properties: Optional[dict] = None,
                  defaults: Optional[dict] = None) -> dict:
    """A config as a user would write it: the bridge's defaults except linger.ms stated."""
    props = {"linger.ms": LINGER_MS}
    props.update(properties or {})
    config = {"kafka": {"brokers": brokers, "properties": props},
              "state": {"dir": str(state_dir)},
              "streams": streams}
    if defaults:
        config["defaults"] = defaults
    return config


def bridge_environment() -> dict:
    """This process's environment plus SSE2KAFKA_BENCH_BRIDGE_ENV ("NAME=VALUE NAME=VALUE"), which
    reaches only the bridge: for trying an allocator or a glibc tunable without touching the
    broker, the source or the reference."""
    env = dict(os.environ)
    for item in os.environ.get("SSE2KAFKA_BENCH_BRIDGE_ENV", "").split():
        name, _, value = item.partition("=")
        env[name] = value
    return env


class BridgeProcess:
    """One sse2kafka process; /proc gives its CPU time and memory."""

    def __init__(self, ws: Workspace, config: dict, name: str) -> None:
        self.dir = ws.subdir(name)
        self.config_path = self.dir / "sse2kafka.yaml"
        self.config_path.write_text(to_yaml(config))
        self.log_path = self.dir / "bridge.log"
        self.started_unix_ns = time.time_ns()
        with open(self.log_path, "wb") as log:
            self.process = ws.registry.add(subprocess.Popen(
                [str(ws.bridge_bin), "-c", str(self.config_path)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, env=bridge_environment()))

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def cpu_seconds(self) -> float:
        """user + system CPU time so far (all threads)."""
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): utime is field 14, stime 15.
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def memory_kib(self) -> dict:
        """{"VmRSS": KiB, "VmHWM": KiB}."""
        out = {}
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    out[name] = int(value.split()[0])
        return out

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit status (SIGKILL and -9 after the timeout)."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return -9


class Profiler:
    """With SSE2KAFKA_BENCH_PERF=1, samples the bridge with `perf record -e cpu-clock` (call graphs
    by DWARF unwinding) from start() to stop(), into <work dir>/<tag>.perf; otherwise does nothing.
    The sampling costs the bridge CPU: a profiled run's figures are not comparable with others."""

    def __init__(self, ws: Workspace, pid: int, tag: str) -> None:
        self.process = None
        if os.environ.get("SSE2KAFKA_BENCH_PERF") != "1":
            return
        self.path = ws.dir / ("%s.perf" % tag)
        self.process = ws.registry.add(subprocess.Popen(
            ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "--call-graph", "dwarf,16384",
             "-p", str(pid), "-o", str(self.path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(120)
            print("  profile: %s (perf report -i %s --no-children --sort comm,symbol)" % (self.path, self.path),
                  flush=True)


def read_checkpoints(state_dir: Path) -> dict:
    """{stream: last_event_id} from the bridge's checkpoint file (format: state/checkpoint_store.h)."""
    lines = (Path(state_dir) / "checkpoints").read_text(encoding="utf-8").splitlines()
    out = {}
    for line in lines[1:-1]:
        obj = json.loads(line)
        out[obj["stream"]] = obj["last_event_id"]
    return out


# ----------------------------------------------------------------------------- timing

def timed_reference(ws: Workspace, url: str, bootstrap: str, topic: str, name: str) -> dict:
    """Runs `curl -sN URL | kcat -P -b BROKERS -t TOPIC -D '\\n\\n' -X ...` under /usr/bin/time.
    kcat gets the bridge's default producer properties and linger.ms; -D '\\n\\n' makes one record
    per SSE event block ("id: N\\ndata: ..."), so both sides write the same number of records.
    Returns {"rc", "wall_s", "cpu_s" (curl + kcat), "max_rss_kib" (the larger of the two)}."""
    props = dict(BRIDGE_DEFAULT_PRODUCER_PROPERTIES, **{"linger.ms": LINGER_MS})
    kcat = "kcat -P -b %s -t %s -D '\\n\\n' %s" % (bootstrap, topic, " ".join(
        "-X %s=%s" % (k, v) for k, v in props.items()))
    pipeline = "curl -sN '%s' | %s" % (url, kcat)
    log = ws.subdir(name) / "reference.log"
    time_file = log.with_suffix(".time")
    started = time.monotonic()
    with open(log, "wb") as out:
        rc = subprocess.run(["/usr/bin/time", "-o", str(time_file), "-f", "%U %S %M", "sh", "-c", pipeline],
                            stdout=out, stderr=subprocess.STDOUT, timeout=600).returncode
    wall = time.monotonic() - started
    user, system, rss = time_file.read_text().split()[-3:]
    return {"rc": rc, "wall_s": wall, "cpu_s": float(user) + float(system), "max_rss_kib": int(rss),
            "command": pipeline}


def sleep_for(seconds: float) -> None:
    """A measurement window: the scenario wants the bridge to run this long, nothing to poll for."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 1.0))


# ----------------------------------------------------------------------------- results

@dataclasses.dataclass
class Metric:
    key: str
    label: str
    unit: str
    fmt: str = "%.2f"


class Results:
    """The runs of one scenario; void runs carry the reason and stay out of the figures."""

    def __init__(self, scenario: str, title: str, params: dict) -> None:
        self.doc = {"scenario": scenario, "title": title, "params": params, "metrics": [], "runs": []}

    def metric(self, key: str, label: str, unit: str, fmt: str = "%.2f") -> None:
        self.doc["metrics"].append(dataclasses.asdict(Metric(key, label, unit, fmt)))

    def add_run(self, values: dict, problems: list) -> None:
        run = {"values": values, "void": problems}
        self.doc["runs"].append(run)
        status = "VOID: " + "; ".join(problems) if problems else "ok"
        shown = ", ".join("%s=%s" % (k, ("%.4g" % v) if isinstance(v, float) else v) for k, v in values.items())
        print("  [%s run %d] %s -- %s" % (self.doc["scenario"], len(self.doc["runs"]), shown, status), flush=True)

    def ok(self) -> bool:
        return bool(self.doc["runs"]) and all(not r["void"] for r in self.doc["runs"])

    def write(self, path: Optional[str]) -> None:
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(json.dumps(self.doc, indent=1))


def check(problems: list, condition: bool, message: str) -> bool:
    """Records `message` as a verification failure when condition is false."""
    if not condition:
        problems.append(message)
    return condition


def run_scenario(body: Callable[[Workspace, Any], Results], args) -> int:
    """Runs body(ws, args), writes its results, cleans up; exit status 0 when every run verified."""
    ws = Workspace(args)
    ok = False
    try:
        results = body(ws, args)
        results.write(args.out)
        ok = results.ok()
        if not ok:
            print("%s: some runs are void (see above)" % results.doc["scenario"], file=sys.stderr)
    finally:
        ws.close(ok)
    return 0 if ok else 1


__all__ = ["REPO", "parse_args", "Workspace", "Source", "Probe", "start_broker", "bridge_config",
           "BridgeProcess", "Profiler", "read_checkpoints", "timed_reference", "sleep_for", "Results", "check", "run_scenario",
           "wait_until", "BRIDGE_DEFAULT_PRODUCER_PROPERTIES", "LINGER_MS"]
