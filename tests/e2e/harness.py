"""End-to-end harness: drives the real sse2kafka binary, a mock Kafka broker and SSE upstreams.

Paths: the bridge binary is $SSE2KAFKA_BIN (default <repo>/build/sse2kafka); mock_broker and
kafka_dump are in $SSE2KAFKA_TOOLS_DIR (default <repo>/build/tests/tools).

Pieces, each usable alone (fixtures.py wires them into pytest with guaranteed cleanup):
- MockBroker: the mock_broker process; .bootstrap, .command("down 1") and helpers.
- Kafka: reads records back with kafka_dump (records(), wait_for_records(), watermarks()).
- Bridge: one sse2kafka process with stdout/stderr in files; stop() (SIGTERM), kill9(), logs.
- write_config()/to_yaml(): a config file from a dict (or text); bridge_config() builds the
  usual test config; run_cli() runs `sse2kafka ARGS` (e.g. -c FILE --check) and captures it.
- wait_until(): polls a predicate with a deadline.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "tools"))


def bridge_binary() -> Path:
    return Path(os.environ.get("SSE2KAFKA_BIN", REPO / "build" / "sse2kafka"))


def tools_dir() -> Path:
    return Path(os.environ.get("SSE2KAFKA_TOOLS_DIR", REPO / "build" / "tests" / "tools"))


def tool(name: str) -> Path:
    """The path of a built test tool; fails the test with a hint when it is missing."""
    path = tools_dir() / name
    if not path.exists():
        raise AssertionError("%s not found: build the tools (cmake --build build --target %s) "
                             "or set SSE2KAFKA_TOOLS_DIR" % (path, name))
    return path


# ----------------------------------------------------------------------------- waiting

def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02,
               message: Union[str, Callable[[], str], None] = None) -> Any:
    """Calls predicate until it returns something truthy, and returns that. Raises AssertionError
    (with `message`, or the last value) when `timeout` seconds pass first. The predicate always
    runs at least once, and once more at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        now = time.monotonic()
        if now >= deadline:
            text = message() if callable(message) else message
            raise AssertionError("timed out after %.1fs: %s" % (timeout, text or "last value %r" % (value,)))
        time.sleep(min(interval, max(deadline - now, 0.001)))


# ----------------------------------------------------------------------------- processes

class ProcessRegistry:
    """Every process a test starts; cleanup() kills those still running (SIGKILL), in reverse order."""

    def __init__(self) -> None:
        self._processes: list = []

    def add(self, process: subprocess.Popen) -> subprocess.Popen:
        self._processes.append(process)
        return process

    def cleanup(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                try:
                    process.kill()
                except ProcessLookupError:
                    pass
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        self._processes.clear()


class _LineReader:
    """Reads a pipe's lines in a thread so that they can be awaited with a timeout."""

    def __init__(self, stream) -> None:
        self._lines: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next(self, timeout: float) -> Optional[str]:
        """The next line; None at end of output. Raises TimeoutError."""
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no line within %.1fs" % timeout) from None


# ----------------------------------------------------------------------------- the broker

class BrokerCommandError(AssertionError):
    pass


class MockBroker:
    """The mock_broker process. Topics are "name" or "name:partitions"; topics clients ask for
    that were not pre-created get the mock's default of 4 partitions."""

    def __init__(self, registry: ProcessRegistry, log_dir: Path, brokers: int = 1,
                 topics: Iterable[str] = (), default_partitions: Optional[int] = None) -> None:
        self.brokers = brokers
        self.log_path = Path(log_dir) / "mock_broker.stderr"
        args = [str(tool("mock_broker")), "--brokers", str(brokers)]
        for topic in topics:
            args += ["--topic", topic]
        if default_partitions is not None:
            args += ["--default-partitions", str(default_partitions)]
        self._stderr = open(self.log_path, "wb")
        self.process = registry.add(subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1))
        self._replies = _LineReader(self.process.stdout)
        self._lock = threading.Lock()
        first = self._replies.next(timeout=15)
        if first is None or not first.startswith("BOOTSTRAP "):
            raise AssertionError("mock_broker did not start: %r; stderr: %s" % (first, self.stderr()))
        self.bootstrap = first.split(" ", 1)[1]

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def command(self, line: str, timeout: float = 15) -> str:
        """Sends one command and returns the "ok" reply; raises BrokerCommandError on "error ..."."""
        with self._lock:
            if self.process.poll() is not None:
                raise BrokerCommandError("mock_broker exited with %s" % self.process.returncode)
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
            reply = self._replies.next(timeout)
        if reply is None:
            raise BrokerCommandError("mock_broker closed its output; stderr: %s" % self.stderr())
        if reply != "ok":
            raise BrokerCommandError("mock_broker %r: %s" % (line, reply))
        return reply

    def ping(self) -> None:
        self.command("ping")

    def down(self, broker_id: int) -> None:
        self.command("down %d" % broker_id)

    def up(self, broker_id: int) -> None:
        self.command("up %d" % broker_id)

    def down_all(self) -> None:
        self.command("down-all")

    def up_all(self) -> None:
        self.command("up-all")

    def rtt(self, broker_id: int, ms: int) -> None:
        self.command("rtt %d %d" % (broker_id, ms))

    def produce_errors(self, count: int, *errors: Union[int, str]) -> None:
        """The next `count` Produce requests fail: with one error repeated, or with `count` errors."""
        self.command("produce-errors %d %s" % (count, " ".join(str(e) for e in errors)))

    def create_topic(self, name: str, partitions: Optional[int] = None) -> None:
        self.command("create-topic %s%s" % (name, "" if partitions is None else " %d" % partitions))

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, then waits; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._stderr.close()


# ----------------------------------------------------------------------------- reading Kafka

@dataclasses.dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: Optional[str]
    value: Optional[str]
    headers: list                       # [(name, value-or-None)], in record order
    timestamp_ms: int
    timestamp_type: str
    key_b64: Optional[str] = None       # set instead of key when the key is not UTF-8
    value_b64: Optional[str] = None

    @classmethod
    def from_json(cls, obj: dict) -> "Record":
        return cls(topic=obj["topic"], partition=obj["partition"], offset=obj["offset"],
                   key=obj.get("key"), value=obj.get("value"),
                   headers=[(h[0], h[1]) for h in obj["headers"]],
                   timestamp_ms=obj["timestamp_ms"], timestamp_type=obj["timestamp_type"],
                   key_b64=obj.get("key_b64"), value_b64=obj.get("value_b64"))

    def header(self, name: str, default: Any = None) -> Any:
        """The value of the first header called `name` (exact name), or default."""
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_values(self, name: str) -> list:
        return [v for k, v in self.headers if k == name]

    def headers_with_prefix(self, prefix: str) -> dict:
        """{name: value} of the headers whose name starts with prefix; fails on a repeated name."""
        out: dict = {}
        for k, v in self.headers:
            if k.startswith(prefix):
                assert k not in out, "header %s appears twice in %r" % (k, self)
                out[k] = v
        return out


# Secured real clusters this process runs (kafka_cluster.KafkaCluster with security), by
# bootstrap list: a config written for one gets the bridge's credentials and ACLs
# (write_config), and a reader of one logs in as its admin (Kafka, reader_properties), so that
# a suite written for a plaintext cluster runs unchanged over a secured one.
SECURED_CLUSTERS: dict = {}
# Strings no log of a test may hold (passwords, private key lines) of the secured clusters and
# of what tests hand out; see assert_no_secrets.
LOG_SECRETS: set = set()

# Files a test writes on purpose that hold secrets (they are the secrets' source, not logs).
_SECRET_FILE_SUFFIXES = (".password", ".key", ".pem", ".csr", ".p12", ".yaml")


def assert_no_secrets(directory: Path) -> None:
    """Fails when a file under `directory` (bridge logs, captured output; not the secret,
    key, certificate and config files themselves) holds one of LOG_SECRETS."""
    leaks = []
    for path in Path(directory).rglob("*"):
        if not path.is_file() or path.suffix in _SECRET_FILE_SUFFIXES:
            continue
        text = path.read_text(errors="replace")
        leaks += ["%s holds a secret starting %r" % (path, secret[:3]) for secret in LOG_SECRETS if secret in text]
    assert not leaks, "secrets in logs:\n" + "\n".join(leaks)


def reader_properties(bootstrap: str) -> dict:
    """The librdkafka properties a test's reader needs for this cluster ({} unless secured)."""
    cluster = SECURED_CLUSTERS.get(bootstrap)
    return cluster.admin_rdkafka_properties() if cluster is not None else {}


class Kafka:
    """Reads a cluster with kafka_dump (no consumer group; partitions from their beginning).
    `properties`: librdkafka properties for every kafka_dump run (-X name=value), e.g. the
    security.protocol, SASL and TLS settings of a secured cluster; by default those of
    reader_properties(bootstrap)."""

    def __init__(self, bootstrap: str, properties: Optional[dict] = None) -> None:
        self.bootstrap = bootstrap
        self.properties = dict(properties if properties is not None else reader_properties(bootstrap))

    def _run(self, args: list, timeout: float) -> list:
        cmd = [str(tool("kafka_dump")), "--brokers", self.bootstrap] + args
        for name, value in self.properties.items():
            cmd += ["-X", "%s=%s" % (name, value)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 15)
        if done.returncode != 0:
            raise AssertionError("kafka_dump failed (%d): %s" % (done.returncode, done.stderr))
        # split("\n"), not splitlines(): JSON strings may hold U+2028/U+2029/U+0085 raw.
        return [json.loads(line) for line in done.stdout.split("\n") if line.strip()]

    def records(self, topics: Union[str, Iterable[str]], *, count: Optional[int] = None,
                timeout: float = 10, idle_ms: Optional[int] = None, min_records: Optional[int] = None,
                eof: bool = False, isolation: Optional[str] = None) -> list:
        """Records of the topics, sorted by (topic, partition, offset); stops as kafka_dump does
        (count reached, timeout, idle, or eof = everything up to the current end)."""
        args = []
        for topic in [topics] if isinstance(topics, str) else topics:
            args += ["--topic", topic]
        if count is not None:
            args += ["--count", str(count)]
        if idle_ms is not None:
            args += ["--idle-ms", str(idle_ms)]
        if min_records is not None:
            args += ["--min", str(min_records)]
        if eof:
            args.append("--eof")
        if isolation is not None:
            args += ["--isolation", isolation]
        args += ["--timeout-ms", str(int(timeout * 1000))]
        records = [Record.from_json(obj) for obj in self._run(args, timeout)]
        return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))

    def all_records(self, topics: Union[str, Iterable[str]], timeout: float = 10) -> list:
        """Everything in the topics now (reads each partition up to its end)."""
        return self.records(topics, eof=True, timeout=timeout)

    def wait_for_records(self, topics: Union[str, Iterable[str]], n: int, timeout: float = 15,
                         bridge: Optional["Bridge"] = None) -> list:
        """Waits until the topics hold at least n records; returns the first n read. Raises
        AssertionError listing what did arrive, at once if `bridge` is given and has exited."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            # With a bridge to watch, read in short rounds so that its exit fails the wait early.
            records = self.records(topics, count=n, timeout=max(0.1, min(left, 2.0) if bridge else left))
            if len(records) >= n:
                return records
            if bridge is not None and not bridge.running():
                raise AssertionError("the bridge exited while waiting for %d records in %s (got %d)\n%s" % (
                    n, topics, len(records), bridge.describe()))
            if time.monotonic() >= deadline:
                raise AssertionError("waited %.1fs for %d records in %s, got %d: %s" % (
                    timeout, n, topics, len(records), [(r.key, r.value) for r in records]))

    def watermarks(self, topics: Union[str, Iterable[str]], timeout: float = 10) -> dict:
        """{(topic, partition): (low, high)} for the topics that exist."""
        args = ["--watermarks", "--timeout-ms", str(int(timeout * 1000))]
        for topic in [topics] if isinstance(topics, str) else topics:
            args += ["--topic", topic]
        return {(o["topic"], o["partition"]): (o["low"], o["high"]) for o in self._run(args, timeout)}

    def count(self, topics: Union[str, Iterable[str]]) -> int:
        """How many records the topics hold (sum of high - low watermarks)."""
        return sum(high - low for low, high in self.watermarks(topics).values())


# ----------------------------------------------------------------------------- config files

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid YAML double-quoted scalar.
        return json.dumps(value, ensure_ascii=False)
    raise TypeError("cannot write %r as YAML" % (value,))


def _yaml_key(key: Any) -> str:
    key = str(key)
    return key if _PLAIN_KEY.fullmatch(key) and key not in ("true", "false", "null", "yes", "no", "on", "off") \
        else json.dumps(key, ensure_ascii=False)


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars (strings always double-quoted)."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:\n%s" % (pad, _yaml_key(k), to_yaml(v, indent + 2)))
            elif isinstance(v, (dict, list)):
                out.append("%s%s: %s\n" % (pad, _yaml_key(k), "{}" if isinstance(v, dict) else "[]"))
            else:
                out.append("%s%s: %s\n" % (pad, _yaml_key(k), _yaml_scalar(v)))
        return "".join(out)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        out = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                block = to_yaml(item, indent + 2)
                out.append(pad + "- " + block[indent + 2:])
            else:
                out.append("%s- %s" % (pad, to_yaml(item, 0) if isinstance(item, (dict, list)) else
                                       _yaml_scalar(item) + "\n"))
        return "".join(out)
    return pad + _yaml_scalar(value) + "\n"


def write_config(directory: Path, config: Union[dict, str], name: str = "sse2kafka.yaml") -> Path:
    """Writes the config (a dict, written as YAML, or YAML text as is) and returns its path."""
    path = Path(directory) / name
    if isinstance(config, dict):
        cluster = SECURED_CLUSTERS.get((config.get("kafka") or {}).get("brokers"))
        if cluster is not None:
            config = cluster.secure_config(config)
    path.write_text(to_yaml(config) if isinstance(config, dict) else config, encoding="utf-8")
    return path


# Reconnects for tests: a 100ms floor below the 500ms default keeps reconnect tests fast; the
# floor's own tests (test_polite_reconnects.py) use the default. A fresh dict per call.
def fast_reconnect() -> dict:
    return {"min_delay": "100ms", "initial_delay": "100ms", "max_delay": "1s"}


def bridge_config(brokers: str, state_dir: Path, streams: list, **sections: Any) -> dict:
    """The usual test config: fast reconnects (a 100ms floor), small linger, a short flush timeout, debug logs.
    Keyword arguments replace or add top-level sections (e.g. defaults={...}, log={...})."""
    config = {
        "kafka": {"brokers": brokers, "flush_timeout": "5s", "properties": {"linger.ms": "5"}},
        "state": {"dir": str(state_dir)},
        "log": {"level": "debug"},
        "defaults": {"reconnect": fast_reconnect()},
        "streams": streams,
    }
    config.update(sections)
    return config


# ----------------------------------------------------------------------------- the bridge

def environment(changes: Optional[dict]) -> dict:
    """This process's environment with `changes` applied; a None value removes the variable."""
    env = dict(os.environ)
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class Bridge:
    """One sse2kafka process started with `-c CONFIG`; stdout and stderr go to files in log_dir."""

    _counter = 0

    def __init__(self, registry: ProcessRegistry, config_path: Path, log_dir: Path,
                 args: Iterable[str] = (), env: Optional[dict] = None) -> None:
        binary = bridge_binary()
        if not binary.exists():
            raise AssertionError("sse2kafka binary not found at %s: build it (cmake --build build) "
                                 "or set SSE2KAFKA_BIN" % binary)
        Bridge._counter += 1
        self.name = "bridge%d" % Bridge._counter
        self.config_path = Path(config_path)
        self.stdout_path = Path(log_dir) / ("%s.stdout" % self.name)
        self.stderr_path = Path(log_dir) / ("%s.stderr" % self.name)
        self.command = [str(binary), "-c", str(config_path)] + list(args)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = registry.add(subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=environment(env)))
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def logs(self) -> str:
        """stdout then stderr, as written so far."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def describe(self, tail_lines: int = 200) -> str:
        """A failure message block: command, status and the last log lines."""
        status = "running" if self.running() else "exited with %s" % self.process.returncode
        lines = self.logs().splitlines()
        return "%s: %s (%s)\n--- last %d log lines ---\n%s" % (
            self.name, " ".join(self.command), status, min(tail_lines, len(lines)),
            "\n".join(lines[-tail_lines:]))

    def assert_running(self) -> None:
        if not self.running():
            raise AssertionError("the bridge is not running\n" + self.describe())

    def wait_for_log(self, pattern: str, timeout: float = 10, flags: int = re.IGNORECASE) -> re.Match:
        """Waits until a log line matches the regex; returns the match. Fails early if the bridge exits."""
        regex = re.compile(pattern, flags)

        def find():
            for line in self.logs().splitlines():
                match = regex.search(line)
                if match:
                    return match
            if not self.running():
                raise AssertionError("the bridge exited before logging /%s/\n%s" % (pattern, self.describe()))
            return None
        return wait_until(find, timeout, interval=0.05,
                          message=lambda: "no log line matches /%s/\n%s" % (pattern, self.describe()))

    def wait_for_exit(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the bridge did not exit within %.1fs\n%s" % (timeout, self.describe())) from None

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait; returns the exit status (kills it and fails if it does not exit)."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError("the bridge ignored SIGTERM for %.1fs\n%s" % (timeout, self.describe())) from None

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def kill9(self) -> int:
        """SIGKILL and wait; returns the (negative) status."""
        if self.running():
            self.process.kill()
        return self.process.wait(10)


def run_cli(args: Iterable[str], timeout: float = 30, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Runs `sse2kafka ARGS` to completion (e.g. ["-c", path, "--check"]) and captures its output.
    env: changes to this process's environment (None removes a variable)."""
    binary = bridge_binary()
    if not binary.exists():
        raise AssertionError("sse2kafka binary not found at %s: build it or set SSE2KAFKA_BIN" % binary)
    return subprocess.run([str(binary)] + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=environment(env))


# ----------------------------------------------------------------------------- --check output

CHECK_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<path>[^:\s]+): (?P<message>.+)$")


@dataclasses.dataclass
class CheckProblem:
    file: str
    line: int
    col: int
    path: str
    message: str


def parse_check_output(text: str) -> list:
    """The `FILE:LINE:COL: KEY.PATH: message` lines of `--check` output, as CheckProblems."""
    problems = []
    for line in text.splitlines():
        match = CHECK_LINE.match(line.strip())
        if match:
            problems.append(CheckProblem(match["file"], int(match["line"]), int(match["col"]),
                                         match["path"], match["message"]))
    return problems
