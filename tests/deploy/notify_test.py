#!/usr/bin/env python3
"""The sd_notify protocol of the daemon, without systemd: this test plays the service manager.

It binds an AF_UNIX datagram socket, starts the daemon with NOTIFY_SOCKET, WATCHDOG_USEC and
WATCHDOG_PID (its own pid: a shell sets it and execs the daemon) against the demo upstream and
the embedded Kafka, and checks what Type=notify, WatchdogSec= and ExecReload= rely on: READY=1
once the bridge runs, WATCHDOG=1 at a cadence below WATCHDOG_USEC, RELOADING=1 (with
MONOTONIC_USEC) then READY=1 around SIGHUP, STOPPING=1 on SIGTERM and exit status 0.

Usage: notify_test.py BINARY
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (Failure, Upstream, connected_lines, demo_config, env_without, main_guard, poll,
                    proved, require, stop_process)

WATCHDOG_USEC = 2_000_000


class Manager:
    """The receiving end of $NOTIFY_SOCKET: every datagram, parsed, with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list = []   # (time.monotonic(), {name: value})

    def pump(self) -> None:
        """Reads every datagram waiting now (for at most 50 ms when there is none)."""
        for _ in range(1000):
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def first(self, name: str, value: str, after: float = 0.0):
        """The first message at or after `after` that sets name=value, as (time, fields), or None."""
        self.pump()
        for t, fields in self.messages:
            if t >= after and fields.get(name) == value:
                return t, fields
        return None

    def times(self, name: str, value: str, after: float, before: float) -> list:
        self.pump()
        return [t for t, f in self.messages if after <= t <= before and f.get(name) == value]

    def close(self) -> None:
        self.sock.close()


def test(binary: str) -> None:
    with tempfile.TemporaryDirectory(prefix="sse2kafka-notify-") as tmp, Upstream() as upstream:
        work = Path(tmp)
        config = work / "sse2kafka.yaml"
        config.write_text(demo_config(upstream.url("/ticker"), state_dir=str(work / "state")))
        manager = Manager(work / "notify.sock")
        env = env_without("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "STATE_DIRECTORY")
        env.update(NOTIFY_SOCKET=str(work / "notify.sock"), WATCHDOG_USEC=str(WATCHDOG_USEC))
        log = work / "daemon.log"
        with open(log, "w") as log_file:
            # WATCHDOG_PID must be the daemon's own pid: the shell's pid survives its exec.
            proc = subprocess.Popen(["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@"',
                                     binary, "--config", str(config)],
                                    env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            started = time.monotonic()
            def ready_probe():
                hit = manager.first("READY", "1")
                if not hit and proc.poll() is not None:
                    raise Failure("daemon exited %s before READY=1:\n%s" % (proc.returncode, log.read_text()))
                return hit

            ready_at, ready = poll(ready_probe, 30, "READY=1")
            require(bool(ready.get("STATUS")), "READY=1 came without STATUS=: %r" % ready)
            proved("READY=1 after %.2fs, with STATUS=%r" % (ready_at - started, ready["STATUS"]))
            poll(lambda: connected_lines(log.read_text(), "ticker"), 15, "the ticker stream to connect")
            proved("the stream connected to the demo upstream (embedded Kafka running)")

            window_end = poll(lambda: (len(manager.times("WATCHDOG", "1", ready_at, time.monotonic())) >= 4
                                       and time.monotonic()), 15, "four WATCHDOG=1 pings")
            pings = manager.times("WATCHDOG", "1", ready_at, window_end)
            gaps = [b - a for a, b in zip([ready_at] + pings, pings)]
            limit = WATCHDOG_USEC / 1e6
            require(max(gaps) < limit, "a watchdog gap of %.2fs is not below WATCHDOG_USEC (%.1fs): %s"
                    % (max(gaps), limit, ["%.2f" % g for g in gaps]))
            require(min(gaps[1:]) > limit / 8, "pings %.3fs apart: far more often than half the timeout"
                    % min(gaps[1:]))
            proved("WATCHDOG=1 every %.2f-%.2fs, below WATCHDOG_USEC=%.1fs (first %.2fs after READY)"
                   % (min(gaps[1:]), max(gaps[1:]), limit, gaps[0]))

            hup_at = time.monotonic()
            proc.send_signal(signal.SIGHUP)
            reloading_at, reloading = poll(lambda: manager.first("RELOADING", "1", hup_at), 5, "RELOADING=1")
            monotonic_usec = int(reloading.get("MONOTONIC_USEC", "0"))
            now_usec = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
            require(abs(now_usec - monotonic_usec) < 5e6,
                    "RELOADING=1 carries MONOTONIC_USEC=%d, %.1fs from CLOCK_MONOTONIC"
                    % (monotonic_usec, abs(now_usec - monotonic_usec) / 1e6))
            again_at, _ = poll(lambda: manager.first("READY", "1", reloading_at), 10, "READY=1 after RELOADING=1")
            proved("SIGHUP: RELOADING=1 (MONOTONIC_USEC current) then READY=1 %.0f ms later"
                   % ((again_at - reloading_at) * 1000))
            poll(lambda: manager.times("WATCHDOG", "1", again_at, time.monotonic()), 3, "a ping after the reload")
            require(proc.poll() is None, "the daemon exited after SIGHUP")
            proved("still running and pinging after the reload")

            term_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            stopping_at, _ = poll(lambda: manager.first("STOPPING", "1", term_at), 3, "STOPPING=1")
            try:
                rc = proc.wait(15)
            except subprocess.TimeoutExpired:
                raise Failure("the daemon did not exit within 15s of SIGTERM")
            exited = time.monotonic() - term_at
            require(rc == 0, "exit status %d after SIGTERM:\n%s" % (rc, log.read_text()[-3000:]))
            proved("SIGTERM: STOPPING=1 after %.0f ms, exit status 0 after %.2fs"
                   % ((stopping_at - term_at) * 1000, exited))
        finally:
            stop_process(proc)
            manager.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main_guard(lambda: test(sys.argv[1]), "sd_notify protocol (no systemd): " + sys.argv[1]))
