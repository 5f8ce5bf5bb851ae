"""A real Apache Kafka cluster for pytest suites, run through tests/kafka/cluster.sh.

    with KafkaCluster(version="4") as cluster:          # start() ... stop(), also on errors
        cluster.create_topic("events", partitions=3, configs={"max.message.bytes": "2000"})
        bridge_config(cluster.bootstrap, ...)
        leader = cluster.leader("events", 0)
        cluster.kill_broker(leader)                      # kill -9; stop_broker(): SIGTERM
        cluster.start_broker(leader)
        cluster.wait_in_sync("events")
        records = cluster.reader().all_records("events")  # harness.Kafka (kafka_dump)

Contract:
- start() runs `cluster.sh start` (jars from Maven, N KRaft nodes on free loopback ports, waits
  until they serve) and raises ClusterError with the script's message and log tail when it
  cannot; it never skips. The cluster is owned by this process: cluster.sh's watcher stops it
  when the process is gone (even after kill -9), atexit stops it at a normal or ^C exit, and
  stop() stops it at once. stop() is idempotent.
- Broker ids are 1..N. kill_broker / stop_broker / start_broker act on one node; stop_all /
  start_all on every node (the data stays: a full outage and recovery).
- Metadata (leaders, ISR, broker list) is read with kcat (no JVM start); topic admin (create,
  configs) runs the Kafka CLI classes from the fetched jars (a JVM start, ~2-5 s on 2 cores).
- Records are read with kafka_dump from the build (harness.Kafka) or, where the test needs a
  group consumer, with kcat.
- security="sasl_ssl" or "ssl" (cluster.sh start --security): the EXTERNAL listener (the
  bootstrap list) wants SASL (SCRAM-SHA-512 or PLAIN) over TLS, or a TLS client certificate;
  ACLs apply (User:bridge gets cluster.sh's default grants; acl() adds more). Every method here
  authenticates as the super user admin: cli() adds --command-config admin_java_config, kcat()
  and metadata() add -F with the admin's librdkafka config, reader() passes its properties to
  kafka_dump. The bridge's credentials: bridge_password_file (user "bridge"), bridge_cert_file
  and bridge_key_file (CN=bridge), ca_file. librdkafka before 2.6.1 (Debian's 2.0.2) cannot log
  in with SCRAM to Kafka 4.x (confluentinc/librdkafka#4895): the admin's librdkafka config uses
  PLAIN there (state()["rdkafka_sasl_mechanism"]).
Every wait is bounded and fails with what it saw.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLUSTER_SH = HERE / "cluster.sh"
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import harness  # noqa: E402
from harness import Kafka, wait_until  # noqa: E402

__all__ = ["ClusterError", "KafkaCluster", "running_cluster", "single_version", "versions"]

SECURITY_MODES = ("plaintext", "sasl_ssl", "ssl")

# The versions a suite runs on unless SSE2KAFKA_KAFKA_VERSIONS (space separated) says otherwise.
DEFAULT_VERSIONS = ("3.9", "4")


def versions() -> list:
    """The Kafka versions to test: $SSE2KAFKA_KAFKA_VERSIONS ("3.9 4" by default)."""
    text = os.environ.get("SSE2KAFKA_KAFKA_VERSIONS", "").strip()
    return text.split() if text else list(DEFAULT_VERSIONS)


def single_version() -> str:
    """The Kafka line for a suite that runs on one version: "4" when SSE2KAFKA_KAFKA_VERSIONS
    lists it (the default does), else the first version listed."""
    chosen = versions()
    return "4" if "4" in chosen else chosen[0]


class ClusterError(AssertionError):
    """The cluster could not be started, changed or read; the message says why."""


class KafkaCluster:
    def __init__(self, version: str = "4", brokers: int = 3, auto_create: bool = True,
                 directory: Optional[Path] = None, start_timeout: float = 150,
                 release: Optional[str] = None, security: str = "plaintext") -> None:
        """version: "3.9" or "4" (the pom's pinned release of that line); release: another
        release of the line (e.g. "4.0.0"), for comparisons; security: "plaintext" (default),
        "sasl_ssl" or "ssl" (see cluster.sh)."""
        if security not in SECURITY_MODES:
            raise ValueError("security must be one of %s, not %r" % (SECURITY_MODES, security))
        self.version = version
        self.security = security
        self.release = release
        self.brokers = brokers
        self.auto_create = auto_create
        self.start_timeout = start_timeout
        self._own_dir = directory is None
        self.dir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="sse2kafka-kafka-%s-" % version))
        self.bootstrap = ""
        self.start_seconds = 0.0
        self._running = False

    # ------------------------------------------------------------------------- life cycle

    def _script(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        # --dir right after the command: after `java CLASS` every word goes to the class.
        cmd = [str(CLUSTER_SH), args[0], "--dir", str(self.dir)] + list(args[1:])
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise ClusterError("%s did not finish within %.0fs: %s" % (" ".join(cmd), timeout, exc.stderr)) from None
        if check and done.returncode != 0:
            raise ClusterError("%s failed (%d):\n%s%s" % (" ".join(cmd), done.returncode, done.stdout, done.stderr))
        return done

    def start(self) -> "KafkaCluster":
        """Starts every node and waits until the cluster serves; returns self."""
        began = time.monotonic()
        atexit.register(self.stop)
        done = self._script("start", "--version", self.version, "--brokers", str(self.brokers),
                            "--auto-create", "true" if self.auto_create else "false",
                            "--owner-pid", str(os.getpid()), "--timeout", str(int(self.start_timeout)),
                            *(["--release", self.release] if self.release else []),
                            "--security", self.security,
                            timeout=self.start_timeout + 300)  # + the first mvn fetch
        self._running = True
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        if not lines or not re.fullmatch(r"127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+)*", lines[-1]):
            raise ClusterError("cluster.sh start printed no bootstrap list: %r %s" % (done.stdout, done.stderr))
        self.bootstrap = lines[-1]
        self.start_seconds = time.monotonic() - began
        if self.secure:
            harness.SECURED_CLUSTERS[self.bootstrap] = self
            harness.LOG_SECRETS.update(self._secrets())
        return self

    def _secrets(self) -> set:
        """The users' passwords and the lines of every private key of the cluster."""
        found = set()
        for path in (Path(self.dir) / "secrets").glob("*.password"):
            found.add(path.read_text())
        for path in (Path(self.dir) / "tls").glob("*.key"):
            found.update(line for line in path.read_text().splitlines() if line and not line.startswith("-----"))
        return {secret for secret in found if len(secret) >= 8}

    def stop(self, keep: bool = False) -> None:
        """Stops every node (SIGTERM, SIGKILL after a bound) and removes the cluster dir unless
        `keep`. Safe to call more than once."""
        if not self._running:
            return
        self._running = False
        harness.SECURED_CLUSTERS.pop(getattr(self, "bootstrap", None), None)
        self._script("stop", *(["--keep"] if keep else []), timeout=120, check=False)
        if self._own_dir and not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------------- state

    def state(self) -> dict:
        """cluster.env as a dict (pids, ports, dirs, versions)."""
        path = self.dir / "cluster.env"
        if not path.exists():
            raise ClusterError("no cluster state in %s" % self.dir)
        out = {}
        for line in path.read_text().splitlines():
            if "=" in line:
                key, value = line.split("=", 1)
                out[key] = value
        return out

    @property
    def kafka_version(self) -> str:
        """The exact Apache Kafka release (e.g. 4.4.0)."""
        return self.state().get("kafka_version", "?")

    @property
    def secure(self) -> bool:
        return self.security != "plaintext"

    def _state_path(self, key: str) -> Optional[Path]:
        value = self.state().get(key, "") if self.secure else ""
        return Path(value) if value else None

    @property
    def ca_file(self) -> Optional[Path]:
        """The CA certificate (PEM) that signed the brokers' and clients' certificates; None
        on a plaintext cluster."""
        return self._state_path("ca_file")

    @property
    def bridge_password_file(self) -> Optional[Path]:
        """The password of user "bridge" (SCRAM-SHA-512 and PLAIN), no trailing newline."""
        return self._state_path("bridge_password_file")

    @property
    def bridge_cert_file(self) -> Optional[Path]:
        """The bridge's client certificate (PEM, CN=bridge: principal User:bridge)."""
        return self._state_path("bridge_cert_file")

    @property
    def bridge_key_file(self) -> Optional[Path]:
        """The bridge's private key (PEM, unencrypted)."""
        return self._state_path("bridge_key_file")

    @property
    def admin_java_config(self) -> Optional[Path]:
        """The admin's Java client properties (a CLI's --command-config)."""
        return self._state_path("admin_java_config")

    def admin_rdkafka_properties(self) -> dict:
        """The admin's librdkafka properties ({} on a plaintext cluster)."""
        path = self._state_path("admin_rdkafka_config")
        if path is None:
            return {}
        props = {}
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                props[key.strip()] = value.strip()
        return props

    def _kcat_auth(self) -> list:
        path = self._state_path("admin_rdkafka_config")
        return ["-F", str(path)] if path else []

    def _cli_auth(self, args) -> list:
        """--command-config <admin's Java config> for a CLI talking to the cluster."""
        if not self.secure or "--bootstrap-server" not in args or "--command-config" in args:
            return []
        return ["--command-config", str(self.admin_java_config)]

    @property
    def broker_ids(self) -> list:
        return list(range(1, self.brokers + 1))

    def pid(self, broker: int) -> int:
        return int(self.state()["node_%d_pid" % broker])

    def port(self, broker: int) -> int:
        return int(self.state()["node_%d_port" % broker])

    def running(self, broker: int) -> bool:
        try:
            os.kill(self.pid(broker), 0)
        except (ProcessLookupError, KeyError, ValueError):
            return False
        return True

    def log_path(self, broker: int) -> Path:
        return self.dir / ("node-%d" % broker) / "logs" / "server.log"

    def log_tail(self, broker: int, lines: int = 40) -> str:
        path = self.log_path(broker)
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def describe(self, lines: int = 20) -> str:
        """Status and the last log lines of every node, for a failure message."""
        parts = ["Kafka %s in %s, bootstrap %s" % (self.kafka_version, self.dir, self.bootstrap)]
        for broker in self.broker_ids:
            parts.append("--- node %d (%s) ---\n%s" % (
                broker, "running" if self.running(broker) else "stopped", self.log_tail(broker, lines)))
        return "\n".join(parts)

    # ------------------------------------------------------------------------- faults

    def kill_broker(self, broker: int) -> None:
        """kill -9 one node (no controlled shutdown: its leaderships move after the session timeout)."""
        self._script("stop-broker", str(broker), "--kill", timeout=30)

    def stop_broker(self, broker: int) -> None:
        """SIGTERM one node and wait until it exited (a controlled shutdown moves leadership first)."""
        self._script("stop-broker", str(broker), timeout=60)

    def start_broker(self, broker: int, timeout: float = 90) -> None:
        """Starts a stopped node again (same id, ports and data) and waits until it logged its start."""
        self._script("start-broker", str(broker), "--timeout", str(int(timeout)), timeout=timeout + 15)

    def restart_broker(self, broker: int, kill: bool = False) -> None:
        (self.kill_broker if kill else self.stop_broker)(broker)
        self.start_broker(broker)

    def stop_all(self, kill: bool = False) -> None:
        """Every node down together (the data stays): a full outage. Together, because a node
        stopped last has no quorum left for its controlled shutdown."""
        procs = [subprocess.Popen([str(CLUSTER_SH), "stop-broker", "--dir", str(self.dir), str(b)] +
                                  (["--kill"] if kill else []),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for b in self.broker_ids]
        for proc in procs:
            try:
                proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        still = [b for b in self.broker_ids if self.running(b)]
        if still:
            raise ClusterError("nodes %s still run after stop_all\n%s" % (still, self.describe(10)))

    def start_all(self, timeout: float = 120) -> None:
        """Starts every stopped node, together (a KRaft quorum needs a majority before any of them
        finishes its start), and waits until metadata lists every broker."""
        procs = [subprocess.Popen([str(CLUSTER_SH), "start-broker", "--dir", str(self.dir), str(b),
                                   "--timeout", str(int(timeout))],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for b in self.broker_ids if not self.running(b)]
        failures = []
        for proc in procs:
            try:
                out, _ = proc.communicate(timeout=timeout + 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if proc.returncode != 0:
                failures.append(out)
        if failures:
            raise ClusterError("nodes did not start again:\n%s" % "\n".join(failures))
        self.wait_brokers(self.brokers, timeout)

    # ------------------------------------------------------------------------- metadata (kcat)

    def metadata(self, topic: Optional[str] = None, timeout: float = 10) -> dict:
        """kcat -L -J: {"brokers": [...], "topics": [{"topic", "partitions": [{"partition",
        "leader", "replicas": [{"id"}], "isrs": [{"id"}]}]}]}. With `topic`, a broker that
        auto-creates topics creates a missing one: pass None (all topics) to look one up."""
        cmd = ["kcat"] + self._kcat_auth() + ["-L", "-J", "-b", self.bootstrap, "-m", str(int(timeout))]
        if topic:
            cmd += ["-t", topic]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10)
        if done.returncode != 0 or not done.stdout.strip():
            raise ClusterError("kcat -L failed (%d): %s" % (done.returncode, done.stderr[-2000:]))
        return json.loads(done.stdout)

    def partitions(self, topic: str) -> list:
        """The topic's partitions as kcat lists them ([] when it does not exist). Read from the
        metadata of all topics: asking for the one topic would make a broker with
        auto.create.topics.enable create it."""
        for entry in self.metadata().get("topics", []):
            if entry.get("topic") == topic and not entry.get("error"):
                return sorted(entry.get("partitions", []), key=lambda p: p["partition"])
        return []

    def leader(self, topic: str, partition: int = 0) -> int:
        """The broker id that leads the partition now (-1 when it has none)."""
        for p in self.partitions(topic):
            if p["partition"] == partition:
                return int(p.get("leader", -1))
        raise ClusterError("%s has no partition %d: %s" % (topic, partition, self.partitions(topic)))

    def wait_for_leader(self, topic: str, partition: int = 0, not_on: Iterable[int] = (),
                        timeout: float = 60) -> int:
        """Waits until the partition has a leader that is not one of `not_on`; returns its id."""
        excluded = set(not_on)

        def found():
            try:
                leader = self.leader(topic, partition)
            except (ClusterError, subprocess.TimeoutExpired):
                return None
            return leader if leader > 0 and leader not in excluded else None
        return wait_until(found, timeout, interval=0.3,
                          message=lambda: "%s[%d] has no leader outside %s\n%s" % (
                              topic, partition, sorted(excluded), self.describe(10)))

    def wait_brokers(self, count: int, timeout: float = 60) -> None:
        """Waits until metadata lists `count` brokers."""
        def listed():
            try:
                return len(self.metadata(timeout=5).get("brokers", [])) == count
            except (ClusterError, subprocess.TimeoutExpired, ValueError):
                return False
        wait_until(listed, timeout, interval=0.3,
                   message=lambda: "metadata does not list %d brokers\n%s" % (count, self.describe(10)))

    def wait_in_sync(self, topic: str, timeout: float = 90) -> None:
        """Waits until every partition of the topic has a leader and its ISR holds every replica
        (e.g. after a node came back)."""
        def in_sync():
            try:
                parts = self.partitions(topic)
            except (ClusterError, subprocess.TimeoutExpired, ValueError):
                return False
            return bool(parts) and all(
                p.get("leader", -1) > 0 and
                sorted(r["id"] for r in p.get("isrs", [])) == sorted(r["id"] for r in p.get("replicas", []))
                for p in parts)
        wait_until(in_sync, timeout, interval=0.5,
                   message=lambda: "%s is not fully in sync: %s\n%s" % (topic, self._safe_partitions(topic),
                                                                       self.describe(10)))

    def _safe_partitions(self, topic: str):
        try:
            return self.partitions(topic)
        except Exception as exc:  # only for a message
            return "unreadable: %s" % exc

    # ------------------------------------------------------------------------- admin (Kafka CLIs)

    def cli(self, java_class: str, *args: str, timeout: float = 90) -> str:
        """Runs a Kafka CLI class (e.g. org.apache.kafka.tools.TopicCommand) against this cluster
        and returns its stdout; raises ClusterError when it fails. On a secure cluster, args with
        --bootstrap-server get --command-config <admin_java_config> (the CLI acts as admin)."""
        args = tuple(args) + tuple(self._cli_auth(args))
        done = self._script("java", java_class, *args, timeout=timeout, check=False)
        if done.returncode != 0:
            raise ClusterError("%s %s failed (%d):\n%s%s" % (java_class, " ".join(args), done.returncode,
                                                             done.stdout[-3000:], done.stderr[-3000:]))
        return done.stdout

    def create_topic(self, name: str, partitions: int = 1, replication_factor: Optional[int] = None,
                     configs: Optional[dict] = None, timeout: float = 60) -> None:
        """Creates the topic (RF: the cluster's, 3 by default) with topic configs, and waits until
        every partition has a leader and a full ISR."""
        rf = replication_factor if replication_factor is not None else min(self.brokers, 3)
        args = ["--bootstrap-server", self.bootstrap, "--create", "--topic", name,
                "--partitions", str(partitions), "--replication-factor", str(rf)]
        for key, value in (configs or {}).items():
            args += ["--config", "%s=%s" % (key, value)]
        self.cli("org.apache.kafka.tools.TopicCommand", *args)
        self.wait_in_sync(name, timeout)

    def create_topics(self, topics: dict) -> None:
        """{name: {"partitions": N, "replication_factor": R, "configs": {...}}}: creates them in
        parallel (one JVM each, started together)."""
        procs = {}
        for name, spec in topics.items():
            rf = spec.get("replication_factor") or min(self.brokers, 3)
            args = [str(CLUSTER_SH), "java", "--dir", str(self.dir), "org.apache.kafka.tools.TopicCommand",
                    "--bootstrap-server", self.bootstrap, "--create", "--topic", name,
                    "--partitions", str(spec.get("partitions", 1)), "--replication-factor", str(rf)]
            for key, value in spec.get("configs", {}).items():
                args += ["--config", "%s=%s" % (key, value)]
            args += self._cli_auth(args)
            procs[name] = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        failures = []
        for name, proc in procs.items():
            try:
                out, _ = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if proc.returncode != 0:
                failures.append("%s: %s" % (name, out[-2000:]))
        if failures:
            raise ClusterError("creating topics failed:\n%s" % "\n".join(failures))
        for name in topics:
            self.wait_in_sync(name)

    def _configs(self, *args: str) -> str:
        """ConfigCommand ARGS. The class moved from core (kafka.admin, Scala) to the tools module
        during the 4.x line (4.0.0 still has the core one): the first that exists is used."""
        for java_class in ("org.apache.kafka.tools.ConfigCommand", "kafka.admin.ConfigCommand"):
            try:
                return self.cli(java_class, "--bootstrap-server", self.bootstrap, *args)
            except ClusterError as exc:
                if "ClassNotFoundException: %s" % java_class not in str(exc):
                    raise
        raise ClusterError("no ConfigCommand class in the Kafka %s jars" % self.kafka_version)

    def describe_topic_configs(self, name: str) -> dict:
        """{config name: value} of every config of the topic (defaults included), from
        ConfigCommand --describe --all."""
        out = self._configs("--describe", "--entity-type", "topics", "--entity-name", name, "--all")
        configs = {}
        for line in out.splitlines():
            match = re.match(r"^\s+([a-z0-9.\-]+)=(.*?) sensitive=", line)
            if match:
                configs[match.group(1)] = match.group(2)
        if not configs:
            raise ClusterError("no configs in the description of %s:\n%s" % (name, out))
        return configs

    def alter_topic_configs(self, name: str, configs: dict) -> None:
        """Sets topic configs (ConfigCommand --alter --add-config)."""
        self._configs("--alter", "--entity-type", "topics", "--entity-name", name,
                      "--add-config", ",".join("%s=%s" % kv for kv in configs.items()))

    def add_scram_user(self, name: str, password: str) -> None:
        """Creates or changes user NAME's SCRAM-SHA-512 credential (ConfigCommand --alter
        --entity-type users, as admin). The password does not appear in an error."""
        try:
            self._configs("--alter", "--entity-type", "users", "--entity-name", name,
                          "--add-config", "SCRAM-SHA-512=[password=%s]" % password)
        except ClusterError as exc:
            message = str(exc).replace(password, "<redacted>") if password else str(exc)
            raise ClusterError(message) from None

    # ------------------------------------------------------------------------- the bridge's side

    @property
    def bridge_mechanism(self) -> str:
        """The SASL mechanism the bridge (librdkafka) uses on a sasl_ssl cluster: SCRAM-SHA-512 on
        3.9; PLAIN on 4.x, where librdkafka before 2.6.1 cannot log in with SCRAM (see above)."""
        return self.state().get("rdkafka_sasl_mechanism", "SCRAM-SHA-512")

    def bridge_security(self, **changes) -> dict:
        """The `kafka.security` block that logs the bridge in as User:bridge: SASL (password_file)
        over TLS, or its client certificate; `changes` replace or add keys ({} on plaintext)."""
        if not self.secure:
            return {}
        if self.security == "sasl_ssl":
            block = {"mechanism": self.bridge_mechanism, "username": "bridge",
                     "password_file": str(self.bridge_password_file), "ca_file": str(self.ca_file)}
        else:
            block = {"ca_file": str(self.ca_file), "cert_file": str(self.bridge_cert_file),
                     "key_file": str(self.bridge_key_file)}
        block.update(changes)
        return block

    def grant_bridge(self, topics: Iterable[str] = (), group: Optional[str] = None,
                     state_topic: Optional[str] = None) -> None:
        """Grants User:bridge what a bridge config needs beyond cluster.sh's defaults: Write,
        Describe, DescribeConfigs and Create on each topic (literal); Read, Write, Describe,
        DescribeConfigs and Create on the state topic; Read and Describe on the group, and Write
        and Describe on the transactional ids it prefixes. Each resource is granted once per
        cluster (one AclCommand run per kind)."""
        granted = self.__dict__.setdefault("_granted", set())
        topics = sorted({t for t in topics if ("topic", t) not in granted})
        if topics:
            self.acl("--add", "--allow-principal", "User:bridge", *[a for t in topics for a in ("--topic", t)],
                     "--operation", "Write", "--operation", "Describe", "--operation", "DescribeConfigs",
                     "--operation", "Create")
            granted.update(("topic", t) for t in topics)
        if state_topic and ("state", state_topic) not in granted:
            self.acl("--add", "--allow-principal", "User:bridge", "--topic", state_topic, "--operation", "Read",
                     "--operation", "Write", "--operation", "Describe", "--operation", "DescribeConfigs",
                     "--operation", "Create")
            granted.add(("state", state_topic))
        if group and ("group", group) not in granted:
            self.acl("--add", "--allow-principal", "User:bridge", "--group", group, "--operation", "Read",
                     "--operation", "Describe")
            self.acl("--add", "--allow-principal", "User:bridge", "--transactional-id", group,
                     "--resource-pattern-type", "prefixed", "--operation", "Write", "--operation", "Describe")
            granted.add(("group", group))

    def secure_config(self, config: dict) -> dict:
        """A bridge config for this cluster as written for a plaintext one, made to work here: the
        bridge's kafka.security added (unless it has one), and its topics, state topic and group
        granted (grant_bridge). Used by harness.write_config for every config naming this
        cluster's bootstrap list, so that suites run unchanged over a secured cluster."""
        kafka = dict(config.get("kafka") or {})
        if "security" in kafka or not self.secure:
            return config
        kafka["security"] = self.bridge_security()
        topics = set()
        for stream in config.get("streams") or []:
            if not isinstance(stream, dict):
                continue
            if stream.get("topic"):
                topics.add(stream["topic"])
            routes = stream.get("topics") or {}
            if isinstance(routes, dict):
                topics.update(v for v in routes.values() if isinstance(v, str))
        defaults = config.get("defaults") or {}
        if isinstance(defaults, dict) and defaults.get("topic"):
            topics.add(defaults["topic"])
        state = config.get("state") or {}
        state_topic = state.get("topic", "_sse2kafka_state") if state.get("backend") == "kafka" else None
        group = (config.get("cluster") or {}).get("group")
        if config.get("delivery") == "exactly-once" and not group:
            group = "sse2kafka"
        self.grant_bridge(topics, group=group, state_topic=state_topic)
        out = dict(config)
        out["kafka"] = kafka
        return out

    # ------------------------------------------------------------------------- ACLs

    def acl(self, *args: str, timeout: float = 90) -> str:
        """Runs AclCommand ARGS as admin (cluster.sh acl: --bootstrap-server and --command-config
        filled in), e.g. acl("--add", "--allow-principal", "User:bridge", "--operation", "Read",
        "--topic", "t"); returns its stdout, raises ClusterError when it fails."""
        if not args:
            raise ClusterError("acl() needs AclCommand arguments")
        done = self._script("acl", *args, timeout=timeout, check=False)
        if done.returncode != 0:
            raise ClusterError("AclCommand %s failed (%d):\n%s%s" % (" ".join(args), done.returncode,
                                                                   done.stdout[-3000:], done.stderr[-3000:]))
        return done.stdout

    # ------------------------------------------------------------------------- reading

    def reader(self) -> Kafka:
        """harness.Kafka on this cluster: records(), all_records(), wait_for_records(), watermarks()."""
        return Kafka(self.bootstrap, properties=self.admin_rdkafka_properties() or None)

    def kcat(self, *args: str, timeout: float = 30, input: Optional[str] = None) -> subprocess.CompletedProcess:
        """Runs kcat -b <bootstrap> ARGS (librdkafka's client, e.g. -G for a group consumer); on a
        secure cluster as admin (-F <admin's librdkafka config>)."""
        return subprocess.run(["kcat"] + self._kcat_auth() + ["-b", self.bootstrap] + list(args), capture_output=True, text=True,
                              timeout=timeout, input=input)


def running_cluster(version: str, **options):
    """The body of a module-scoped pytest fixture (a generator): one fresh cluster of `version`
    (KafkaCluster options, e.g. auto_create=False), stopped at the end also when the module
    failed."""
    cluster = KafkaCluster(version=version, **options)
    try:
        cluster.start()
        print("cluster: Kafka %s up in %.1fs at %s" % (cluster.kafka_version, cluster.start_seconds,
                                                       cluster.bootstrap))
        yield cluster
    finally:
        cluster.stop()
