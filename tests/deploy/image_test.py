#!/usr/bin/env python3
"""The container image built from the Dockerfile, run the way the Dockerfile's header says.

Checks the image's metadata (numeric non-root USER whose group exists, exec-form ENTRYPOINT
and CMD, VOLUME, STOPSIGNAL, HEALTHCHECK), that it holds no compiler, that the default config
refuses to start without KAFKA_BROKERS (exit 2) and passes --check with it; then runs it
read-only with every capability dropped against the demo upstream on the host (host network)
and the embedded Kafka: records reach Kafka (read back with kcat), checkpoints advance in the
mounted state volume, `podman stop` ends it with exit status 0 within the flush timeout, and a
second start resumes from the checkpoint. When the daemon has its admin endpoint, the image's
HEALTHCHECK must report healthy.

Usage: image_test.py IMAGE
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from common import (Upstream, connected_lines, demo_config, embedded_bootstrap, main_guard, podman, poll,
                    proved, read_checkpoint, require, run)

CONTAINER = "sse2kafka-deploy-image"
USER_ID = "10001"
FLUSH_TIMEOUT_S = 5  # demo_config's kafka.flush_timeout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_admin_endpoint(image: str) -> bool:
    """Whether the image's daemon serves /healthz: the admin endpoint is newer than this test, and
    its code is linked into the binary only once the daemon uses it."""
    found = podman("run", "--rm", "--entrypoint", "/bin/grep", image, "-c", "/healthz", "/usr/bin/sse2kafka",
                   check=False)
    return found.returncode == 0


def check_metadata(image: str) -> None:
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    config = info["Config"]
    user = config.get("User", "")
    uid, _, gid = user.partition(":")
    require(uid.isdigit() and uid != "0" and gid.isdigit(), "USER is %r, not numeric uid:gid, non-root" % user)
    group = podman("run", "--rm", "--entrypoint", "/usr/bin/getent", image, "group", gid).stdout.strip()
    require(group.split(":")[2:3] == [gid], "group %s does not exist in the image" % gid)
    require(config.get("Entrypoint") == ["/usr/bin/sse2kafka"], "ENTRYPOINT %r" % config.get("Entrypoint"))
    require(config.get("Cmd") == ["-c", "/etc/sse2kafka/sse2kafka.yaml"], "CMD %r" % config.get("Cmd"))
    require("/var/lib/sse2kafka" in (config.get("Volumes") or {}), "no VOLUME /var/lib/sse2kafka")
    require(config.get("StopSignal") == "SIGTERM", "STOPSIGNAL %r" % config.get("StopSignal"))
    health = (info.get("Healthcheck") or config.get("Healthcheck") or {}).get("Test") or []
    require(health[:1] == ["CMD"], "HEALTHCHECK missing or not exec form: %r (build with --format docker)" % health)
    proved("image config: USER %s (group %s exists), exec-form ENTRYPOINT/CMD, VOLUME /var/lib/sse2kafka, "
           "STOPSIGNAL SIGTERM, exec-form HEALTHCHECK" % (user, group.split(":")[0]))

    found = podman("run", "--rm", "--entrypoint", "/bin/sh", image, "-c",
                   "for c in gcc cc c++ g++ cpp clang as ld make cmake; do command -v $c; done; "
                   "dpkg-query -W -f '${Package}\\n' | grep -E '^(gcc|g\\+\\+|cpp|clang)(-[0-9]+)?$|^(binutils|libc6-dev|make|cmake)$' "
                   "|| true").stdout.split()
    require(not found, "the image holds build tools: %s" % found)
    size = info["Size"]
    proved("no compiler, linker, make or cmake in the image; size %.1f MB" % (size / 1e6))


def check_default_config(image: str) -> None:
    bare = podman("run", "--rm", image, check=False)
    require(bare.returncode == 2 and "KAFKA_BROKERS" in bare.stderr,
            "without KAFKA_BROKERS: exit %d, stderr %r" % (bare.returncode, bare.stderr[-500:]))
    ok = podman("run", "--rm", "-e", "KAFKA_BROKERS=kafka:9092", image, "-c", "/etc/sse2kafka/sse2kafka.yaml",
                "--check", check=False)
    require(ok.returncode == 0, "--check of the default config with KAFKA_BROKERS: %d %s" % (ok.returncode, ok.stderr))
    proved("default config: exit 2 naming KAFKA_BROKERS when it is unset; --check passes when it is set")


def logs() -> str:
    out = podman("logs", CONTAINER, check=False)
    return out.stdout + out.stderr


def check_run(image: str, work: Path, upstream: Upstream) -> None:
    state = work / "state"
    state.mkdir(mode=0o700)
    os.chown(state, int(USER_ID), int(USER_ID))
    admin = "127.0.0.1:%d" % free_port()
    config = work / "sse2kafka.yaml"
    config.write_text(demo_config("${TICKER_URL}") + "admin:\n  listen: ${SSE2KAFKA_ADMIN_LISTEN}\n")
    config.chmod(0o644)
    podman("run", "-d", "--name", CONTAINER, "--network=host", "--read-only", "--cap-drop=ALL",
           "--security-opt=no-new-privileges", "-e", "TICKER_URL=" + upstream.url("/ticker"),
           "-e", "SSE2KAFKA_ADMIN_LISTEN=" + admin, "-v", "%s:/var/lib/sse2kafka" % state,
           "-v", "%s:/etc/sse2kafka/sse2kafka.yaml:ro" % config, image)

    poll(lambda: connected_lines(logs(), "ticker"), 20, "the stream to connect (log: see podman logs)")
    uid = podman("exec", CONTAINER, "id", "-u").stdout.strip()
    require(uid == USER_ID, "the daemon runs as uid %s" % uid)
    caps = podman("exec", CONTAINER, "grep", "^CapEff", "/proc/1/status").stdout.split()
    require(caps[1:] == ["0000000000000000"], "CapEff %r" % caps)
    proved("runs read-only with --cap-drop=ALL as uid %s (CapEff 0); the stream connected" % uid)

    bootstrap = embedded_bootstrap(logs())
    require(bootstrap is not None, "no embedded Kafka address in the log")

    def records():
        out = run(["kcat", "-b", bootstrap, "-C", "-t", "demo.ticker", "-o", "beginning", "-e", "-q",
                   "-f", "%k %s\n"], check=False, timeout=20).stdout.splitlines()
        return len(out) >= 3 and out
    got = poll(records, 20, "three records in the embedded Kafka at %s" % bootstrap)
    sample = got[0].split(" ", 1)
    require(sample[0].isdigit() and '"symbol": "DEMO"' in sample[1], "unexpected record %r" % got[0])
    proved("records flow: %d read back from the embedded Kafka at %s with kcat" % (len(got), bootstrap))

    checkpoints = state / "checkpoints"
    first = int(poll(lambda: read_checkpoint(checkpoints, "ticker"), 15, "a checkpoint in the state volume"))
    later = poll(lambda: int(read_checkpoint(checkpoints, "ticker") or 0) > first
                 and read_checkpoint(checkpoints, "ticker"), 10, "the checkpoint to advance")
    proved("checkpoints advance in the mounted volume: %d -> %s" % (first, later))

    if has_admin_endpoint(image):
        poll(lambda: podman("healthcheck", "run", CONTAINER, check=False).returncode == 0, 20,
             "the HEALTHCHECK to pass")
        proved("HEALTHCHECK (bash /dev/tcp GET /healthz at $SSE2KAFKA_ADMIN_LISTEN) reports healthy")
    else:
        print("  skipped: HEALTHCHECK run (this daemon has no /healthz yet)", flush=True)

    started = time.monotonic()
    podman("stop", "--time", "30", CONTAINER, timeout=60)
    took = time.monotonic() - started
    exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", CONTAINER).stdout.strip()
    require(exit_code == "0", "exit code %s after podman stop; log tail:\n%s" % (exit_code, logs()[-2000:]))
    require(took < FLUSH_TIMEOUT_S + 2, "podman stop took %.1fs (flush timeout %ds)" % (took, FLUSH_TIMEOUT_S))
    stopped_at = read_checkpoint(checkpoints, "ticker")
    proved("podman stop: exit code 0 after %.2fs (flush timeout %ds), checkpoint %s persisted"
           % (took, FLUSH_TIMEOUT_S, stopped_at))

    before = len(connected_lines(logs(), "ticker"))
    podman("start", CONTAINER)
    resumed = poll(lambda: connected_lines(logs(), "ticker")[before:], 20, "the stream to reconnect after start")
    require(resumed[0].get("last_event_id") == stopped_at,
            "restarted with last_event_id %r, checkpoint was %r" % (resumed[0].get("last_event_id"), stopped_at))
    podman("stop", "--time", "30", CONTAINER, timeout=60)
    proved("second start resumed from the volume's checkpoint (Last-Event-ID %s)" % stopped_at)


def test(image: str) -> None:
    check_metadata(image)
    check_default_config(image)
    podman("rm", "-f", "--time", "0", CONTAINER, check=False)
    work = Path(tempfile.mkdtemp(prefix="sse2kafka-image-"))
    try:
        with Upstream() as upstream:
            check_run(image, work, upstream)
    finally:
        podman("rm", "-f", "--time", "5", CONTAINER, check=False, timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main_guard(lambda: test(sys.argv[1]), "container image: " + sys.argv[1]))
