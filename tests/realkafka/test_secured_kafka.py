"""The bridge against secured Apache Kafka clusters (cluster.sh --security: 3 KRaft nodes, TLS
between them, StandardAuthorizer with allow.everyone.if.no.acl.found=false, User:bridge granted
the default ACLs of cluster.sh): what works, and how each way of failing is told.

Clusters: SASL_SSL on 3.9 (SCRAM-SHA-512 and PLAIN), SASL_SSL on 4.x (PLAIN; SCRAM needs
librdkafka >= 2.6.1 there, and the bridge links Debian's 2.0.2: that failure is shown too),
and SSL with client certificates (mutual TLS) on 4.x.

Works:
- SCRAM-SHA-512 over TLS with the password from a file; PLAIN over TLS with it from ${ENV};
  mutual TLS with a client certificate: every event lands, the checkpoint follows.
Fails, each with one clear line, a /readyz reason and a metric, never a secret in any log:
- a wrong password or an unknown user (the bridge keeps retrying with librdkafka's backoff and
  loses nothing: the events land after the credential file is fixed and the bridge restarted);
- a CA that did not sign the brokers' certificates; a broker name the certificate is not for;
  an expired client certificate (the broker refuses it); an expired broker certificate (a TLS
  listener serving one: the bridge's own check refuses it);
- plaintext spoken to a TLS listener and TLS spoken to a plaintext one (not a hang);
- Write denied on one topic: only that stream pauses, its refusal in /streams, its checkpoint
  still; the others go on; once the ACL is added, everything lands, nothing lost;
- fleet modes without the ACL they need (TransactionalId, Group, the state topic): the start
  fails with a line naming the missing ACL; with a wrong password, naming the refused login.
"""
# ctest-timeout: 1500

import json
import os
import re
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from broker_faults import http_get
from fleet_support import free_port
from harness import LOG_SECRETS, to_yaml, wait_until
from kafka_cluster import KafkaCluster
from reliability_support import read_checkpoints
from sse_upstream import NumberedRoute

FAST = {"initial_delay": "200ms", "max_delay": "1s", "min_delay": "200ms"}
# ----------------------------------------------------------------------------- clusters

def _cluster(version, security):
    cluster = KafkaCluster(version=version, security=security)
    try:
        cluster.start()  # adds its passwords and keys to LOG_SECRETS, checked after every test
        print("cluster: Kafka %s %s up in %.1fs at %s" % (cluster.kafka_version, security, cluster.start_seconds,
                                                         cluster.bootstrap))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def sasl39():
    """SASL_SSL on Kafka 3.9: the bridge logs in with SCRAM-SHA-512."""
    yield from _cluster("3.9", "sasl_ssl")


@pytest.fixture(scope="module")
def sasl4():
    """SASL_SSL on Kafka 4.x: the bridge logs in with PLAIN."""
    yield from _cluster("4", "sasl_ssl")


@pytest.fixture(scope="module")
def mtls4():
    """SSL with client certificates on Kafka 4.x."""
    yield from _cluster("4", "ssl")


def key_body(path):
    """The base64 lines of a PEM private key: no log may show any of them."""
    return {line for line in Path(path).read_text().splitlines() if line and not line.startswith("-----")}


# ----------------------------------------------------------------------------- helpers

def secret_file(directory, name, text):
    path = Path(directory) / name
    path.write_text(text)
    path.chmod(0o600)
    LOG_SECRETS.add(text)
    return path


def bridge_config(on, state_dir, streams, security, admin_port, **sections):
    """The test config for cluster `on` (None: `brokers=` names them), as YAML text."""
    config = {
        "kafka": {"brokers": on.bootstrap if on else sections.pop("brokers"), "flush_timeout": "5s",
                  "properties": {"linger.ms": "5", "reconnect.backoff.max.ms": "2000"}},
        "state": {"dir": str(state_dir)},
        "log": {"level": "debug"},
        "admin": {"listen": "127.0.0.1:%d" % admin_port},
        "defaults": {"reconnect": FAST},
        "streams": streams,
    }
    if security is not None:
        config["kafka"]["security"] = security
    config.update(sections)
    # As YAML text: harness.write_config adds the cluster's own security block to a dict.
    return to_yaml(config)


def lines_with(bridge, *words):
    return [line for line in bridge.logs().splitlines() if all(w in line for w in words)]


def metric(port, name, **labels):
    """The value of one sample of /metrics, or None."""
    status, body = http_get(port, "/metrics")
    if status != 200:
        return None
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in body.splitlines():
        match = re.match(r'^([a-zA-Z0-9_:]+)(?:\{([^}]*)\})?\s+(\S+)$', line)
        if match and match.group(1) == name:
            have = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
            if have == want:
                return float(match.group(3))
    return None


def streams_json(port):
    status, body = http_get(port, "/streams")
    return {s["name"]: s for s in json.loads(body)} if status == 200 else {}


def wait_not_ready(bridge, port, text, timeout=60):
    """Waits until /readyz answers 503 with a line holding `text`; returns the body."""
    seen = {}

    def check():
        bridge.assert_running()
        seen["reply"] = http_get(port, "/readyz")
        return seen["reply"][0] == 503 and text in seen["reply"][1]
    wait_until(check, timeout, message=lambda: "/readyz never said %r: %r\n%s" % (text, seen.get("reply"),
                                                                              bridge.describe(40)))
    return seen["reply"][1]


def assert_one_connection_line(bridge, port, cause, *words, timeout=60):
    """The classified line appears once although librdkafka failed at least twice (the
    counter), /readyz names it and the cause's gauge is 1. Returns the line."""
    wait_until(lambda: bridge.assert_running() or lines_with(bridge, *words), timeout,
               message=lambda: "no line with %s\n%s" % (words, bridge.describe(60)))
    wait_until(lambda: (metric(port, "sse2kafka_kafka_connection_errors_total", cause=cause) or 0) >= 2, 60,
               message=lambda: "the %s errors were not counted twice\n%s" % (cause, http_get(port, "/metrics")[1]))
    # The line itself, not the debug lines that count its repeats.
    lines = [line for line in lines_with(bridge, *words) if " error " in line[:40]]
    assert len(lines) == 1, "expected one line, found %d:\n%s" % (len(lines), "\n".join(lines))
    assert metric(port, "sse2kafka_kafka_connection_problem", cause=cause) == 1
    body = wait_not_ready(bridge, port, words[0])
    assert body.count(words[0]) == 1, body
    return lines[0]


def numbered(upstream, path, end, **kwargs):
    upstream.route(path, NumberedRoute(end=end, at_end="hang", **kwargs))
    return upstream.url(path)


def values(records):
    return [r.value for r in records]


def check_config(bridge_bin, path):
    return subprocess.run([bridge_bin, "--check", "-c", str(path)], capture_output=True, text=True, timeout=30)


# ----------------------------------------------------------------------------- --check (no cluster)

def test_check_names_each_problem_of_the_security_block_and_warns_of_an_inline_password(tmp_path):
    bridge_bin = os.environ["SSE2KAFKA_BIN"]
    base = {"streams": [{"name": "s", "url": "http://127.0.0.1:1/", "topic": "events.s"}]}
    bad = dict(base, kafka={"brokers": "127.0.0.1:9093", "security": {
        "mechanism": "SCRAM-SHA-1", "username": "bridge", "password_file": str(tmp_path / "absent"),
        "ca_file": str(tmp_path / "no-ca.pem")}})
    path = tmp_path / "bad.yaml"
    path.write_text(to_yaml(bad))
    done = check_config(bridge_bin, path)
    assert done.returncode == 2, done
    assert re.search(r"bad\.yaml:\d+:\d+: kafka\.security\.mechanism: unknown SASL mechanism `SCRAM-SHA-1`",
                     done.stderr), done.stderr
    assert re.search(r"bad\.yaml:\d+:\d+: kafka\.security\.password_file: cannot read `.*absent`: No such file",
                     done.stderr), done.stderr
    assert re.search(r"kafka\.security\.ca_file: cannot read `.*no-ca\.pem`", done.stderr), done.stderr

    inline = dict(base, kafka={"brokers": "127.0.0.1:9093", "security": {
        "mechanism": "PLAIN", "username": "bridge", "password": "inline-secret-123"}})
    LOG_SECRETS.add("inline-secret-123")
    path = tmp_path / "inline.yaml"
    path.write_text(to_yaml(inline))
    path.chmod(0o644)
    done = check_config(bridge_bin, path)
    assert done.returncode == 0, done
    assert "kafka.security.password: the secret is written in a config file every local user can read" in done.stderr
    assert "inline-secret-123" not in done.stderr + done.stdout
    path.chmod(0o600)
    assert "every local user" not in check_config(bridge_bin, path).stderr


# ----------------------------------------------------------------------------- what works

def test_scram_over_tls_with_a_password_file_delivers_every_event(sasl39, upstream, start_bridge, tmp_path, state_dir):
    port = free_port()
    url = numbered(upstream, "/scram", 40)
    config = bridge_config(sasl39, state_dir, [{"name": "scram", "url": url, "topic": "events.scram"}],
                           sasl39.bridge_security(mechanism="SCRAM-SHA-512"), port)
    bridge = start_bridge(config)
    records = sasl39.reader().wait_for_records("events.scram", 40, timeout=60)
    assert values(records) == ["event %d" % n for n in range(1, 41)]
    wait_until(lambda: read_checkpoints(state_dir).get("scram") == "40", 30,
               message=lambda: "checkpoint %r" % read_checkpoints(state_dir))
    assert lines_with(bridge, "SASL_SSL", "sasl.mechanisms=SCRAM-SHA-512", "sasl.password=***")
    assert bridge.stop() == 0


def test_plain_over_tls_with_the_password_from_the_environment(sasl4, upstream, start_bridge, state_dir):
    port = free_port()
    url = numbered(upstream, "/plain", 30)
    password = sasl4.bridge_password_file.read_text()
    security = sasl4.bridge_security(mechanism="PLAIN", password="${KAFKA_PASSWORD}")
    del security["password_file"]
    config = bridge_config(sasl4, state_dir, [{"name": "plain", "url": url, "topic": "events.plain"}], security, port)
    bridge = start_bridge(config, env={"KAFKA_PASSWORD": password})
    records = sasl4.reader().wait_for_records("events.plain", 30, timeout=60)
    assert values(records) == ["event %d" % n for n in range(1, 31)]
    wait_until(lambda: read_checkpoints(state_dir).get("plain") == "30", 30)
    status, body = http_get(port, "/readyz")
    assert status == 200, body
    assert bridge.stop() == 0


def test_mutual_tls_with_a_client_certificate_delivers_every_event(mtls4, upstream, start_bridge, state_dir):
    port = free_port()
    url = numbered(upstream, "/mtls", 30)
    config = bridge_config(mtls4, state_dir, [{"name": "mtls", "url": url, "topic": "events.mtls"}],
                           mtls4.bridge_security(), port)
    bridge = start_bridge(config)
    records = mtls4.reader().wait_for_records("events.mtls", 30, timeout=60)
    assert values(records) == ["event %d" % n for n in range(1, 31)]
    wait_until(lambda: read_checkpoints(state_dir).get("mtls") == "30", 30)
    assert bridge.stop() == 0


# ----------------------------------------------------------------------------- authentication

def test_a_wrong_password_is_one_line_and_nothing_is_lost_once_it_is_fixed(sasl39, upstream, start_bridge,
                                                                           tmp_path, state_dir):
    port = free_port()
    url = numbered(upstream, "/wrongpw", 25)
    password_file = secret_file(tmp_path, "bridge.password", "not-the-password-42")
    security = sasl39.bridge_security(mechanism="SCRAM-SHA-512", password_file=str(password_file))
    config = bridge_config(sasl39, state_dir, [{"name": "wrongpw", "url": url, "topic": "events.wrongpw"}],
                           security, port)
    bridge = start_bridge(config)
    line = assert_one_connection_line(bridge, port, "authentication",
                                      "authentication failed for user bridge with SASL mechanism SCRAM-SHA-512")
    print("wrong password:", line)
    assert read_checkpoints(state_dir).get("wrongpw") in (None, ""), "a checkpoint moved without a delivery"
    assert sasl39.reader().records("events.wrongpw", timeout=3, eof=True) == []
    assert bridge.stop() == 0
    # The fix: the right password in the file, then the next start.
    password_file.write_text(sasl39.bridge_password_file.read_text())
    bridge = start_bridge(config)
    records = sasl39.reader().wait_for_records("events.wrongpw", 25, timeout=60)
    assert values(records) == ["event %d" % n for n in range(1, 26)]
    wait_until(lambda: read_checkpoints(state_dir).get("wrongpw") == "25", 30)
    wait_until(lambda: http_get(port, "/readyz")[0] == 200, 30)
    assert metric(port, "sse2kafka_kafka_connection_problem", cause="authentication") == 0
    assert bridge.stop() == 0


def test_an_unknown_user_is_told_by_name(sasl4, upstream, start_bridge, state_dir):
    port = free_port()
    url = numbered(upstream, "/nobody", 5)
    config = bridge_config(sasl4, state_dir, [{"name": "nobody", "url": url, "topic": "events.nobody"}],
                           sasl4.bridge_security(username="nobody"), port)
    bridge = start_bridge(config)
    line = assert_one_connection_line(bridge, port, "authentication",
                                      "authentication failed for user nobody with SASL mechanism PLAIN")
    print("unknown user:", line)
    assert bridge.stop() == 0


def test_scram_against_kafka_4_fails_and_says_which_librdkafka_fixes_it(sasl4, upstream, start_bridge, state_dir):
    port = free_port()
    url = numbered(upstream, "/scram4", 5)
    config = bridge_config(sasl4, state_dir, [{"name": "scram4", "url": url, "topic": "events.scram4"}],
                           sasl4.bridge_security(mechanism="SCRAM-SHA-512"), port)
    bridge = start_bridge(config)
    assert bridge.wait_for_log(r"kafka: librdkafka 2\.\d+\.\d+ repeats the client nonce in SCRAM logins", 20)
    line = assert_one_connection_line(bridge, port, "authentication",
                                      "authentication failed for user bridge with SASL mechanism SCRAM-SHA-512")
    assert "fixed in librdkafka 2.6.1" in line, line
    assert bridge.stop() == 0


# ----------------------------------------------------------------------------- TLS

def make_ca(directory, name):
    key, cert = Path(directory) / (name + ".key"), Path(directory) / (name + ".pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=" + name, "-days", "2"],
                   check=True, capture_output=True)
    return cert


def test_a_ca_that_did_not_sign_the_brokers_is_told(mtls4, upstream, start_bridge, tmp_path, state_dir):
    port = free_port()
    url = numbered(upstream, "/otherca", 5)
    other_ca = make_ca(tmp_path, "other-ca")
    config = bridge_config(mtls4, state_dir, [{"name": "otherca", "url": url, "topic": "events.otherca"}],
                           mtls4.bridge_security(ca_file=str(other_ca)), port)
    bridge = start_bridge(config)
    line = assert_one_connection_line(bridge, port, "tls", "the broker's certificate was not accepted")
    print("other CA:", line)
    assert "self-signed certificate in certificate chain" in line or "unable to get local issuer" in line, line
    assert bridge.stop() == 0


def test_a_broker_name_the_certificate_is_not_for_is_told(mtls4, upstream, start_bridge, state_dir):
    port = free_port()
    url = numbered(upstream, "/wronghost", 5)
    brokers = mtls4.bootstrap.replace("127.0.0.1", "localhost")
    config = bridge_config(None, state_dir, [{"name": "wronghost", "url": url, "topic": "events.wronghost"}],
                           mtls4.bridge_security(), port, brokers=brokers)
    bridge = start_bridge(config)
    line = assert_one_connection_line(bridge, port, "tls", "the broker's certificate was not accepted")
    print("wrong host:", line)
    assert "hostname mismatch" in line.lower(), line
    assert bridge.stop() == 0


def test_an_expired_client_certificate_is_refused_by_the_broker(mtls4, upstream, start_bridge, tmp_path, state_dir):
    port = free_port()
    url = numbered(upstream, "/expired", 5)
    ca_dir = Path(mtls4.ca_file).parent
    key, csr, cert = tmp_path / "expired.key", tmp_path / "expired.csr", tmp_path / "expired.pem"
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    str(key), "-out", str(csr), "-subj", "/CN=bridge"], check=True, capture_output=True)
    # -days -1: valid until yesterday.
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(mtls4.ca_file), "-CAkey",
                    str(ca_dir / "ca.key"), "-set_serial", "4242", "-days", "-1", "-out", str(cert)],
                   check=True, capture_output=True)
    key.chmod(0o600)
    LOG_SECRETS.update(key_body(key))
    config = bridge_config(mtls4, state_dir, [{"name": "expired", "url": url, "topic": "events.expired"}],
                           mtls4.bridge_security(cert_file=str(cert), key_file=str(key)), port)
    bridge = start_bridge(config)
    line = assert_one_connection_line(bridge, port, "tls", "TLS handshake failed: the broker refused the client "
                                                           "certificate")
    print("expired client certificate:", line)
    assert bridge.stop() == 0


def test_an_expired_broker_certificate_is_told(upstream, start_bridge, tmp_path, state_dir):
    """The broker side of expiry: the bridge's own certificate check (OpenSSL's, before any Kafka
    byte) refuses a listener whose certificate has expired. A TLS listener on loopback serves
    one, signed by a CA the bridge trusts: a broker's expired certificate looks the same to the
    client, and a real broker with one could not talk to its own controller."""
    ca = make_ca(tmp_path, "expiry-ca")
    key, csr, cert = tmp_path / "listener.key", tmp_path / "listener.csr", tmp_path / "listener.pem"
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                    str(key), "-out", str(csr), "-subj", "/CN=broker"], check=True, capture_output=True)
    extensions = tmp_path / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(tmp_path / "expiry-ca.key"),
                    "-set_serial", "77", "-days", "-1", "-extfile", str(extensions), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        port = free_port()
        url = numbered(upstream, "/expiredbroker", 5)
        config = bridge_config(None, state_dir, [{"name": "expiredbroker", "url": url, "topic": "events.x"}],
                               {"protocol": "ssl", "ca_file": str(ca)}, port,
                               brokers="127.0.0.1:%d" % listener.getsockname()[1])
        bridge = start_bridge(config)
        line = assert_one_connection_line(bridge, port, "tls", "the broker's certificate was not accepted")
        print("expired broker certificate:", line)
        assert "certificate has expired" in line, line
        assert bridge.stop(timeout=20) == 0
    finally:
        done.set()
        listener.close()
        thread.join(5)


# ----------------------------------------------------------------------------- protocol mismatches

def test_plaintext_to_a_tls_listener_is_told_not_hung(mtls4, upstream, start_bridge, state_dir):
    port = free_port()
    url = numbered(upstream, "/plain2tls", 5)
    config = bridge_config(mtls4, state_dir, [{"name": "plain2tls", "url": url, "topic": "events.plain2tls"}],
                           None, port)
    bridge = start_bridge(config)
    line = assert_one_connection_line(bridge, port, "security_protocol", "the listener probably expects TLS")
    print("plaintext to TLS:", line)
    assert bridge.stop(timeout=20) == 0


def test_tls_to_a_plaintext_listener_is_told_not_hung(make_broker, mtls4, upstream, start_bridge, state_dir):
    plaintext = make_broker(1, topics=["events.tls2plain"])
    port = free_port()
    url = numbered(upstream, "/tls2plain", 5)
    config = bridge_config(None, state_dir, [{"name": "tls2plain", "url": url, "topic": "events.tls2plain"}],
                           mtls4.bridge_security(), port, brokers=plaintext.bootstrap)
    bridge = start_bridge(config)
    line = assert_one_connection_line(bridge, port, "security_protocol", "the listener probably speaks plaintext")
    print("TLS to plaintext:", line)
    assert bridge.stop(timeout=20) == 0


# ----------------------------------------------------------------------------- ACLs

def test_write_denied_on_one_topic_pauses_only_its_stream_until_the_acl_is_added(sasl39, upstream, start_bridge,
                                                                                 state_dir):
    port = free_port()
    denied_topic = "denied.orders"
    sasl39.create_topic(denied_topic, partitions=1)  # as admin; the bridge has no ACL on it
    good_url = numbered(upstream, "/granted", None, rate_per_s=20)
    denied_url = numbered(upstream, "/denied", 30)
    config = bridge_config(sasl39, state_dir, [
        {"name": "granted", "url": good_url, "topic": "events.granted"},
        {"name": "denied", "url": denied_url, "topic": denied_topic}], sasl39.bridge_security(), port)
    bridge = start_bridge(config)
    # Refused at once when the metadata already says so, else in the delivery report.
    wait_until(lambda: bridge.assert_running() or lines_with(bridge, "[denied]", "refused a record", denied_topic,
                                                             "TOPIC_AUTHORIZATION_FAILED")
               or lines_with(bridge, "[denied]", "delivery failed", denied_topic, "TOPIC_AUTHORIZATION_FAILED"), 60,
               message=lambda: "no line names the stream, topic and cause\n" + bridge.describe(60))
    refusal = {}

    def refused():
        refusal.update(streams_json(port).get("denied") or {})
        return "TOPIC_AUTHORIZATION_FAILED" in (refusal.get("kafka_refusal") or "")
    wait_until(refused, 30, message=lambda: "/streams shows no refusal: %r" % refusal)
    assert (streams_json(port)["granted"]["kafka_refusal"]) is None
    assert metric(port, "sse2kafka_stream_kafka_refused", stream="denied") == 1
    assert metric(port, "sse2kafka_stream_kafka_refused", stream="granted") == 0
    wait_not_ready(bridge, port, "stream denied: Kafka refuses its records: topic denied.orders")
    # The other stream goes on meanwhile; the denied one's checkpoint does not move.
    before = len(sasl39.reader().records("events.granted", timeout=5, eof=True))
    wait_until(lambda: len(sasl39.reader().records("events.granted", timeout=5, eof=True)) >= before + 20, 60)
    assert read_checkpoints(state_dir).get("denied") in (None, "")
    sasl39.grant_bridge([denied_topic])
    records = sasl39.reader().wait_for_records(denied_topic, 30, timeout=90)
    assert values(records)[:30] == ["event %d" % n for n in range(1, 31)] or \
        sorted(set(values(records)), key=lambda v: int(v.split()[1])) == ["event %d" % n for n in range(1, 31)]
    wait_until(lambda: read_checkpoints(state_dir).get("denied") == "30", 60)
    wait_until(lambda: (streams_json(port).get("denied") or {}).get("kafka_refusal", "x") is None, 30)
    assert metric(port, "sse2kafka_stream_kafka_refused", stream="denied") == 0
    assert bridge.stop() == 0


def fleet_sections(group, delivery, state_topic="_sse2kafka_state"):
    sections = {"state": {"backend": "kafka", "topic": state_topic, "partitions": 3}, "delivery": delivery}
    if group:
        sections["cluster"] = {"group": group, "session_timeout": "6s"}
    return sections


def test_fleet_modes_without_their_acls_fail_at_start_naming_the_acl(sasl39, upstream, start_bridge, tmp_path,
                                                                      state_dir):
    url = numbered(upstream, "/fleet", 5)
    streams = [{"name": "fleet", "url": url, "topic": "events.fleet"}]
    wrong = secret_file(tmp_path, "fleet.password", "wrong-fleet-password-7")
    lacks = "the principal lacks the ACL "
    cases = [
        # exactly-once: the group may be joined, but its transactional ids are not granted
        (lacks + "Write on TransactionalId 'limited-fleet-", fleet_sections("limited-fleet", "exactly-once"), {}),
        # cluster mode: no ACL on the group
        (lacks + "Read on Group 'ungranted-fleet'", fleet_sections("ungranted-fleet", "at-least-once"), {}),
        # a state topic the bridge may not use
        (lacks + "Create on Topic '_other_state'",
         fleet_sections(None, "at-least-once", state_topic="_other_state"), {}),
        # and a wrong password: the state topic cannot be reached, and the start says why
        ("authentication failed for user bridge with SASL mechanism SCRAM-SHA-512",
         fleet_sections("sse2kafka-fleet", "at-least-once"), {"password_file": str(wrong)}),
    ]
    sasl39.acl("--add", "--allow-principal", "User:bridge", "--group", "limited-fleet", "--operation", "Read",
               "--operation", "Describe")
    for expected, sections, security in cases:
        config = bridge_config(sasl39, state_dir, streams, sasl39.bridge_security(**security), free_port(),
                               **sections)
        bridge = start_bridge(config)
        code = bridge.wait_for_exit(90)
        lines = [line for line in lines_with(bridge, expected) if " error " in line[:40]]
        assert code == 1 and lines, "exit %s, no error line with %r:\n%s" % (code, expected, bridge.describe(60))
        print("fails at start:", lines[-1])
