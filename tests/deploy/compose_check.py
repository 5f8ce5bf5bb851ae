#!/usr/bin/env python3
"""deploy/compose.yaml cannot run here (apache/kafka cannot be pulled), so this checks what can
be checked without it: the file parses as YAML with the shape the Compose spec requires, every
named volume it mounts is declared, every file it mounts or reads exists (the env file through
its .example), and the sse2kafka config it mounts passes `sse2kafka --check` with the
environment compose would give the container.
(podman-compose 1.0.3 has no `config` command, and its --dry-run still creates volumes.)

Usage: compose_check.py BINARY
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from common import REPO, main_guard, proved, require, run

COMPOSE = REPO / "deploy" / "compose.yaml"


def env_file_values(path: Path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test(binary: str) -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    require(isinstance(doc, dict) and isinstance(doc.get("services"), dict), "no services mapping")
    services = doc["services"]
    require(set(services) == {"kafka", "sse2kafka"}, "services: %s" % sorted(services))
    declared = set(doc.get("volumes") or {})
    base = COMPOSE.parent
    for name, service in services.items():
        require("image" in service or "build" in service, "%s has neither image nor build" % name)
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                require((base / source).exists(), "%s mounts %s, which does not exist" % (name, source))
            else:
                require(source in declared, "%s mounts the undeclared volume %s" % (name, source))
    kafka = services["kafka"]["environment"]
    require(kafka.get("KAFKA_PROCESS_ROLES") == "broker,controller", "kafka is not a KRaft combined node")
    bridge = services["sse2kafka"]
    require((base / bridge["build"]["context"] / bridge["build"]["dockerfile"]).is_file(), "build context")
    require(bridge.get("read_only") is True and bridge.get("cap_drop") == ["ALL"], "sse2kafka is not locked down")
    require("sse2kafka-state:/var/lib/sse2kafka" in bridge["volumes"], "no named state volume")
    env = {}
    for entry in bridge["env_file"]:
        example = base / (entry + ".example")
        require(example.is_file(), "env_file %s has no %s.example" % (entry, entry))
        env.update(env_file_values(example))
    env.update({k: str(v) for k, v in bridge["environment"].items()})
    proved("compose.yaml: KRaft kafka + sse2kafka, declared named volumes, mounted files exist, env file "
           "documented by its .example")

    config = next(m.split(":")[0] for m in bridge["volumes"] if m.endswith("/etc/sse2kafka/sse2kafka.yaml:ro"))
    check = run([binary, "-c", str(base / config), "--check"], check=False, env={"PATH": "/usr/bin:/bin", **env})
    require(check.returncode == 0, "the compose config fails --check: %s%s" % (check.stdout, check.stderr))
    proved("%s passes sse2kafka --check with the compose environment" % config)

    default = REPO / "deploy" / "sse2kafka.yaml"
    check = run([binary, "-c", str(default), "--check"], check=False,
                env={"PATH": "/usr/bin:/bin", "KAFKA_BROKERS": "kafka-1:9092,kafka-2:9092"})
    require(check.returncode == 0, "deploy/sse2kafka.yaml fails --check: %s%s" % (check.stdout, check.stderr))
    proved("deploy/sse2kafka.yaml (the installed default) passes --check with KAFKA_BROKERS set")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main_guard(lambda: test(sys.argv[1]), "compose file and configs"))
