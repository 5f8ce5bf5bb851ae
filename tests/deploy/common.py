"""Helpers shared by the deploy tests (stdlib only): the demo upstream, polling with deadlines,
podman calls, the daemon's JSON log lines, and one line of output per thing proved."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional, TypeVar

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = REPO / "tests" / "tools" / "sse_upstream.py"

T = TypeVar("T")


class Failure(Exception):
    """A check that did not hold; the message says what was expected and what was seen."""


def proved(what: str) -> None:
    """Reports one thing the test established."""
    print("  ok: " + what, flush=True)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def poll(probe: Callable[[], Optional[T]], timeout: float, what: str, interval: float = 0.1) -> T:
    """Calls probe until it returns something truthy and returns that; raises Failure naming
    `what` when the deadline passes first. Bounded in time and in calls."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise Failure("timed out after %.0fs waiting for %s" % (timeout, what))


def run(cmd: list, timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Runs cmd, capturing text output; with check, a non-zero exit raises Failure with its output."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise Failure("%s exited %d\nstdout: %s\nstderr: %s"
                      % (" ".join(map(str, cmd)), result.returncode, result.stdout[-2000:], result.stderr[-2000:]))
    return result


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return run(["podman", *args], timeout=timeout, check=check)


def json_lines(text: str) -> list:
    """The JSON objects among the lines of a log (the daemon's --log-format json output)."""
    out = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            value = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def connected_lines(log_text: str, stream: str) -> list:
    """The bridge's `connected` lines for one stream, oldest first."""
    return [e for e in json_lines(log_text) if e.get("msg") == "connected" and e.get("stream") == stream]


def embedded_bootstrap(log_text: str) -> Optional[str]:
    """The embedded Kafka's bootstrap address from the daemon's latest start-up warning, or None."""
    found = [e["bootstrap_servers"] for e in json_lines(log_text) if "bootstrap_servers" in e]
    return found[-1] if found else None


def read_checkpoint(path: Path, stream: str) -> Optional[str]:
    """The stream's last_event_id in a checkpoint file (state/checkpoint_store.h), or None."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return checkpoint_from_text(text, stream)


def checkpoint_from_text(text: str, stream: str) -> Optional[str]:
    for e in json_lines(text):
        if e.get("stream") == stream:
            return e.get("last_event_id")
    return None


def demo_config(url: str, state_dir: Optional[str] = None, extra_stream: str = "") -> str:
    """A config with the embedded Kafka and one stream `ticker` (the demo upstream's /ticker:
    one event every 500 ms, numbered ids). Without state_dir, state.dir takes its default."""
    state = "state:\n  flush_interval: 200ms\n" + ("  dir: %s\n" % state_dir if state_dir else "")
    return ("kafka:\n  brokers: embedded\n  flush_timeout: 5s\n" + state +
            "log:\n  level: info\n  format: json\n  stats_interval: 0\n"
            "streams:\n"
            "  - name: ticker\n"
            "    url: %s\n"
            "    topic: demo.ticker\n"
            "    key: id\n"
            "    reconnect: { initial_delay: 200ms, max_delay: 1s }\n" % url + extra_stream)


class Upstream:
    """The project's demo SSE upstream (tests/tools/sse_upstream.py --demo) on 127.0.0.1."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0

    def __enter__(self) -> "Upstream":
        self.proc = subprocess.Popen([sys.executable, str(UPSTREAM), "--demo", "--port", "0"],
                                     stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("LISTENING "):
            self.__exit__()
            raise Failure("the demo upstream did not start: %r" % line)
        self.port = int(line.split()[1])
        return self

    def url(self, path: str) -> str:
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def __exit__(self, *exc) -> None:
        stop_process(self.proc)


def stop_process(proc: Optional[subprocess.Popen], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after timeout; waits for it. No-op when already gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def main_guard(body: Callable[[], None], title: str) -> int:
    """Runs a test body; prints FAIL with the reason and returns 1 on Failure."""
    print("== " + title, flush=True)
    started = time.monotonic()
    try:
        body()
    except Failure as e:
        print("  FAIL: %s" % e, flush=True)
        return 1
    print("  passed in %.1fs" % (time.monotonic() - started), flush=True)
    return 0


def env_without(*names: str) -> dict:
    env = dict(os.environ)
    for n in names:
        env.pop(n, None)
    return env
