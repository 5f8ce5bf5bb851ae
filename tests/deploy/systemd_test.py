#!/usr/bin/env python3
"""deploy/systemd/sse2kafka.service under a real systemd: PID 1 of a podman container.

The image (systemd.Containerfile) holds the project's .deb, installed by apt, and the drop-in
systemd-test.conf (WatchdogSec=2s, a quick restart, a credential). Against the demo upstream on
the host (host network) and the embedded Kafka, the test starts the unit and checks:
- Type=notify: `systemctl start` returns with the unit active (READY=1 arrived);
- the sandbox: a dynamic non-root uid, NoNewPrivs 1, Seccomp 2, no capabilities, its own mount
  namespace with / read-only and only the state directory writable; LoadCredential= readable;
- reload: ExecReload (config check + SIGHUP) succeeds and the daemon logs the reload;
- stop and resume: `systemctl stop` exits 0 with a checkpoint in $STATE_DIRECTORY; the next
  start connects with that Last-Event-ID, and the new embedded Kafka's first record is the event
  right after it (no gap, no duplicate);
- the watchdog: a SIGSTOPped daemon is killed and restarted by systemd, and resumes;
- RestartPreventExitStatus=2: a broken config fails the unit with status 2 and no restart loop.

Usage: systemd_test.py IMAGE
"""

from __future__ import annotations

import socket
import sys
import time
import urllib.request

from common import (Upstream, checkpoint_from_text, connected_lines, demo_config, embedded_bootstrap, json_lines,
                    main_guard, podman, poll, proved, require, run)

CONTAINER = "sse2kafka-deploy-systemd"
UNIT = "sse2kafka.service"
CREDENTIAL_STREAM = """    headers_from_files:
      Authorization: ${CREDENTIALS_DIRECTORY}/upstream-token
"""


class Machine:
    """The booted container; every call runs inside it as root."""

    def sh(self, script: str, check: bool = True, stdin: str | None = None, timeout: float = 60) -> str:
        cmd = ["podman", "exec", "-i", CONTAINER, "sh", "-c", script]
        result = run(cmd, check=check, timeout=timeout, input=stdin)
        return result.stdout

    def write(self, path: str, content: str, mode: str = "0644") -> None:
        self.sh("cat > %s && chmod %s %s" % (path, mode, path), stdin=content)

    def show(self, *props: str) -> dict:
        out = self.sh("systemctl show %s %s" % (UNIT, " ".join("-p " + p for p in props)))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> str:
        return self.sh("journalctl -u %s -o cat --no-pager" % UNIT)

    def checkpoint(self) -> str | None:
        text = self.sh("cat /var/lib/sse2kafka/checkpoints 2>/dev/null || true")
        return checkpoint_from_text(text, "ticker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> str | None:
    """The body of a 200 answer, or None (error status, refused, timeout)."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with direct.open(url, timeout=3) as response:
            return response.read().decode() if response.status == 200 else None
    except OSError:
        return None


def records_min_key(bootstrap: str) -> int | None:
    """The smallest key (the event id) of everything in demo.ticker, all partitions, or None."""
    result = run(["kcat", "-b", bootstrap, "-C", "-t", "demo.ticker", "-o", "beginning", "-e", "-q",
                  "-f", "%k\n"], check=False, timeout=20)
    keys = [int(k) for k in result.stdout.split() if k.isdigit()]
    return min(keys) if keys else None


def test(image: str) -> None:
    podman("rm", "-f", "--time", "0", CONTAINER, check=False)
    podman("run", "-d", "--name", CONTAINER, "--systemd=always", "--network=host", image)
    try:
        with Upstream() as upstream:
            body(Machine(), upstream)
    finally:
        podman("rm", "-f", "--time", "5", CONTAINER, check=False, timeout=60)


def body(m: Machine, upstream: Upstream) -> None:
    state = poll(lambda: m.sh("systemctl is-system-running 2>/dev/null || true").strip() in ("running", "degraded")
                 and m.sh("systemctl is-system-running || true").strip(), 60, "systemd to finish booting")
    proved("systemd booted as PID 1 (%s)" % state)

    admin = "127.0.0.1:%d" % free_port()
    m.write("/etc/sse2kafka/sse2kafka.yaml", demo_config("${TICKER_URL}", extra_stream=CREDENTIAL_STREAM)
            + "admin:\n  listen: ${ADMIN_LISTEN}\n")
    m.write("/etc/default/sse2kafka", "TICKER_URL=%s\nADMIN_LISTEN=%s\n" % (upstream.url("/ticker"), admin))
    m.write("/etc/sse2kafka/test-token", "Bearer deploy-test-token\n", mode="0600")

    started = time.monotonic()
    m.sh("systemctl start %s" % UNIT, timeout=60)
    s = m.show("ActiveState", "SubState", "Type", "MainPID", "WatchdogUSec", "NRestarts", "StatusText")
    require(s["ActiveState"] == "active" and s["SubState"] == "running", "after start: %r" % s)
    proved("Type=%s: `systemctl start` returned after %.2fs with the unit running, STATUS=%r"
           % (s["Type"], time.monotonic() - started, s["StatusText"]))

    pid = s["MainPID"]
    status = dict(line.split(":", 1) for line in m.sh("cat /proc/%s/status" % pid).splitlines() if ":" in line)
    field = {k: v.split() for k, v in status.items()}
    uid = field["Uid"][0]
    require(uid != "0", "runs as root")
    require(field["NoNewPrivs"][0] == "1", "NoNewPrivs=%s" % field["NoNewPrivs"])
    require(field["Seccomp"][0] == "2", "Seccomp=%s (2 is a filter)" % field["Seccomp"])
    for cap in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        require(int(field[cap][0], 16) == 0, "%s=%s" % (cap, field[cap][0]))
    proved("sandbox in force: dynamic uid %s, NoNewPrivs 1, Seccomp 2, CapEff/CapPrm/CapBnd/CapAmb 0" % uid)

    own_ns = m.sh("readlink /proc/1/ns/mnt /proc/%s/ns/mnt" % pid).split()
    require(len(own_ns) == 2 and own_ns[0] != own_ns[1], "the daemon shares PID 1's mount namespace")
    mounts = {}
    for line in m.sh("cat /proc/%s/mountinfo" % pid).splitlines():
        parts = line.split()
        mounts[parts[4]] = parts[5].split(",")
    require("ro" in mounts.get("/", []), "/ is not read-only for the daemon: %r" % mounts.get("/"))
    require("rw" in mounts.get("/var/lib/private/sse2kafka", []), "the state directory is not a writable mount")
    writable = sorted(p for p, o in mounts.items() if "rw" in o and p.startswith(("/usr", "/etc", "/var")))
    require(writable == ["/etc/sse2kafka", "/var/lib/private/sse2kafka", "/var/tmp"],
            "unexpected writable mounts under /usr /etc /var: %r" % writable)
    owner = m.sh("stat -c %u /var/lib/private/sse2kafka").strip()
    require(owner == uid, "the state directory belongs to uid %s, the daemon is %s" % (owner, uid))
    proved("ProtectSystem=strict: own mount namespace, / read-only; writable only the StateDirectory "
           "(owned by the dynamic uid), PrivateTmp's /var/tmp and the root-owned 0755 ConfigurationDirectory")

    poll(lambda: connected_lines(m.journal(), "ticker"), 15, "the stream to connect")
    require(connected_lines(m.journal(), "ticker")[0].get("last_event_id") == "",
            "the first start already had a checkpoint")
    require("cannot read the file for header" not in m.journal(), "the credential was not readable")
    proved("connected with no Last-Event-ID on first start; the Authorization header came from "
           "$CREDENTIALS_DIRECTORY (LoadCredential=)")
    health = poll(lambda: http_get("http://%s/healthz" % admin), 10, "/healthz to answer 200")
    metrics = http_get("http://%s/metrics" % admin) or ""
    require("sse2kafka_build_info" in metrics, "/metrics lacks sse2kafka_build_info")
    proved("admin endpoint works inside the sandbox: /healthz %r, /metrics %d bytes" % (health.strip(), len(metrics)))
    poll(lambda: (m.checkpoint() or "0").isdigit() and int(m.checkpoint() or "0") >= 3, 15,
         "a checkpoint of 3 or more in $STATE_DIRECTORY")
    proved("checkpoints advance in /var/lib/sse2kafka (-> /var/lib/private/sse2kafka): %s" % m.checkpoint())

    m.sh("systemctl reload %s" % UNIT, timeout=30)
    poll(lambda: any(e.get("msg") == "config reloaded" for e in json_lines(m.journal())), 10, "the reload in the log")
    after = m.show("ActiveState", "MainPID", "NRestarts")
    require(after["ActiveState"] == "active" and after["MainPID"] == pid, "reload changed the process: %r" % after)
    proved("systemctl reload: ExecReload checked the config and sent SIGHUP; same PID %s, still active" % pid)

    m.sh("systemctl stop %s" % UNIT, timeout=60)
    stopped = m.show("ExecMainStatus", "Result", "ActiveState")
    require(stopped["ExecMainStatus"] == "0" and stopped["Result"] == "success", "stop: %r" % stopped)
    checkpoint = m.checkpoint()
    require(checkpoint is not None and checkpoint.isdigit(), "no checkpoint after stop: %r" % checkpoint)
    proved("systemctl stop: exit status 0, checkpoint %s persisted" % checkpoint)

    connects_before = len(connected_lines(m.journal(), "ticker"))
    m.sh("systemctl start %s" % UNIT, timeout=60)
    resumed = poll(lambda: connected_lines(m.journal(), "ticker")[connects_before:], 15, "the stream to reconnect")
    require(resumed[0].get("last_event_id") == checkpoint,
            "after restart the stream connected with last_event_id=%r, the checkpoint was %r"
            % (resumed[0].get("last_event_id"), checkpoint))
    bootstrap = embedded_bootstrap(m.journal())
    require(bootstrap is not None, "no embedded Kafka address in the journal")
    first = poll(lambda: records_min_key(bootstrap), 20, "records in the new embedded Kafka (%s)" % bootstrap)
    require(first == int(checkpoint) + 1, "the first record after the restart is event %d, expected %d"
            % (first, int(checkpoint) + 1))
    proved("restart resumed from the checkpoint: Last-Event-ID %s, first record in Kafka is event %d"
           % (checkpoint, first))

    s = m.show("MainPID", "NRestarts")
    stopped_at = time.monotonic()
    m.sh("kill -STOP %s" % s["MainPID"])
    def restarted():
        now = m.show("MainPID", "NRestarts", "ActiveState")
        return (now["ActiveState"] == "active" and now["MainPID"] not in ("0", s["MainPID"])
                and int(now["NRestarts"]) == int(s["NRestarts"]) + 1 and now)
    connects_before = len(connected_lines(m.journal(), "ticker"))
    now = poll(restarted, 30, "systemd's watchdog to restart the stopped daemon")
    require("Watchdog timeout" in m.journal(), "no watchdog timeout in the journal")
    resumed = poll(lambda: connected_lines(m.journal(), "ticker")[connects_before:], 15,
                   "the restarted daemon to reconnect")
    require(resumed[0].get("last_event_id", "").isdigit(),
            "after the watchdog restart the stream connected without a checkpoint: %r" % resumed[0])
    proved("watchdog: a SIGSTOPped daemon was killed and restarted after %.1fs (NRestarts %s, new PID %s), "
           "and resumed from its checkpoint %s" % (time.monotonic() - stopped_at, now["NRestarts"], now["MainPID"],
                                                   resumed[0]["last_event_id"]))

    m.sh("systemctl stop %s" % UNIT, timeout=60)
    m.write("/etc/sse2kafka/sse2kafka.yaml",
            demo_config("${TICKER_URL}").replace("brokers: embedded", "brokers: ${UNSET_FOR_THE_TEST}"))
    m.sh("systemctl start %s" % UNIT, check=False, timeout=60)
    def failed_unit():
        now = m.show("ActiveState", "ExecMainStatus", "NRestarts")
        return now["ActiveState"] == "failed" and now
    failed = poll(failed_unit, 10, "the unit to fail on the broken config")
    require(failed["ExecMainStatus"] == "2", "a config error exited %s, not 2" % failed["ExecMainStatus"])
    # A restart would come RestartSec (500 ms) later: watch for three times that.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        s = m.show("ActiveState", "NRestarts")
        require(s["ActiveState"] == "failed" and s["NRestarts"] == failed["NRestarts"],
                "the unit was restarted after a config error: %r" % s)
        time.sleep(0.1)
    proved("a config error fails the unit with status 2; RestartPreventExitStatus=2 keeps it from "
           "restarting (NRestarts stays %s)" % failed["NRestarts"])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main_guard(lambda: test(sys.argv[1]), "systemd boot test: " + sys.argv[1]))
