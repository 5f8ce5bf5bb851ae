"""kafka_txn_proxy.py (tests/tools) in front of mock_broker gives transactions their meaning:
committed records are visible to read_committed readers and aborted or open ones are not, and a
second producer with the same transactional.id aborts and fences the first. Producers are
txn_probe runs (librdkafka 2.0.2), readers kafka_dump, all through the proxy."""
# ctest-timeout: 400

import socket
import struct
import subprocess
import sys
import time

import pytest

from harness import tool, wait_until
from txn_proxy_support import PROXY_SCRIPT, TxnProxy, dump, probes, txn_cluster  # noqa: F401 (fixtures)

sys.path.insert(0, str(PROXY_SCRIPT.parent))
import kafka_txn_proxy as proxy_module  # noqa: E402


def ranges_of(decision: dict) -> list:
    return [(r["topic"], r["partition"], r["first"], r["last"]) for r in decision["ranges"]]


# ----------------------------------------------------------------------------- visibility

def test_committed_records_are_visible_and_aborted_ones_are_not(txn_cluster, probes):
    cluster = txn_cluster(topics=["t:1"])
    probes.run(cluster.bootstrap, "t", ["init", "begin", "produce:c1,c2", "commit"], transactional_id="tx").assert_ok()
    probes.run(cluster.bootstrap, "t", ["init", "begin", "produce:a1,a2", "abort", "begin", "produce:c3", "commit"],
               transactional_id="tx").assert_ok()

    committed = cluster.read("t")
    assert [(r.offset, r.value) for r in committed.records] == [(0, "c1"), (1, "c2"), (4, "c3")]
    assert committed.stderr == ""
    assert cluster.values("t", "read_uncommitted") == ["c1", "c2", "a1", "a2", "c3"]
    # What the proxy adds: the mock alone shows the aborted records to read_committed readers too.
    assert cluster.read_direct("t").values == ["c1", "c2", "a1", "a2", "c3"]

    commits = cluster.proxy.decisions("commit")
    aborts = cluster.proxy.decisions("abort")
    assert [ranges_of(d) for d in commits] == [[("t", 0, 0, 1)], [("t", 0, 4, 4)]]
    assert [(ranges_of(d), d["reason"]) for d in aborts] == [([("t", 0, 2, 3)], "end_txn")]


def test_open_transaction_hides_itself_and_everything_after_it(txn_cluster, probes):
    cluster = txn_cluster(topics=["t:1"])
    probes.run(cluster.bootstrap, "t", ["init", "begin", "produce:c1", "commit"], transactional_id="tx0").assert_ok()
    holder = probes.start(cluster.bootstrap, "t", ["init", "begin", "produce:o1,o2", "wait", "commit"],
                          transactional_id="tx1")
    assert holder.wait_for_step("produce")["offsets"] == [1, 2]
    holder.wait_for_step("wait")
    probes.run(cluster.bootstrap, "t", ["produce:n1"]).assert_ok()  # not transactional, after the open ones

    # read_committed stops at the open transaction, and still reaches its end (EOF) at once.
    before = cluster.read("t", timeout=8)
    assert before.values == ["c1"]
    assert before.elapsed < 6, "kafka_dump --eof ran into its timeout instead of reaching the end"
    assert cluster.watermarks("t") == {0: (0, 1)}
    assert cluster.watermarks("t", "read_uncommitted") == {0: (0, 4)}
    assert cluster.values("t", "read_uncommitted") == ["c1", "o1", "o2", "n1"]

    holder.resume()
    holder.finish().assert_ok()
    assert cluster.values("t") == ["c1", "o1", "o2", "n1"]
    assert cluster.watermarks("t") == {0: (0, 4)}


def test_a_tail_of_aborted_transactions_is_stepped_over(txn_cluster, probes):
    cluster = txn_cluster(topics=["t:1"])
    steps = ["init"]
    for n in range(12):  # more than librdkafka's ten fetch-size doublings for empty answers
        steps += ["begin", "produce:a%d" % n, "abort"]
    probes.run(cluster.bootstrap, "t", steps, transactional_id="tx").assert_ok()

    tail = cluster.read("t", timeout=8)
    assert tail.records == []
    assert tail.elapsed < 6, "read_committed did not reach the end of an aborted tail"
    assert tail.stderr == "", "the consumer reported errors while stepping over aborted batches"
    assert cluster.watermarks("t") == {0: (0, 12)}
    assert len(cluster.values("t", "read_uncommitted")) == 12

    probes.run(cluster.bootstrap, "t", ["init", "begin", "produce:c", "commit"], transactional_id="tx").assert_ok()
    after = cluster.read("t")
    assert [(r.offset, r.value) for r in after.records] == [(12, "c")]
    assert after.stderr == ""


def test_non_transactional_records_pass_unchanged(txn_cluster, probes):
    cluster = txn_cluster(topics=["t:1"])
    probes.run(cluster.bootstrap, "t", ["produce:p1,p2"]).assert_ok()
    probes.run(cluster.bootstrap, "t", ["init", "begin", "produce:x", "abort"], transactional_id="tx").assert_ok()
    probes.run(cluster.bootstrap, "t", ["produce:p3"]).assert_ok()

    direct = cluster.read_direct("t", "read_uncommitted").records
    assert [r.value for r in direct] == ["p1", "p2", "x", "p3"]
    plain = [r for r in direct if r.value != "x"]
    assert cluster.read("t").records == plain  # same offsets, timestamps, keys and headers
    assert cluster.read("t", "read_uncommitted").records == direct


def test_transactions_across_brokers_and_partitions(txn_cluster, probes):
    # Partition leaders and the transaction coordinator spread over three mock brokers: every
    # connection must go through the proxy (Metadata and FindCoordinator point at it), or the
    # aborted records would show.
    cluster = txn_cluster(brokers=3, topics=["m:3"])
    assert len(cluster.bootstrap.split(",")) == 3
    probes.run(cluster.bootstrap, "m", ["init", "begin", "produce@0:a0", "produce@1:a1", "produce@2:a2", "abort",
                                        "begin", "produce@0:c0", "produce@1:c1", "produce@2:c2", "commit"],
               transactional_id="txm").assert_ok()
    records = cluster.read("m").records
    assert sorted((r.partition, r.offset, r.value) for r in records) == [(0, 1, "c0"), (1, 1, "c1"), (2, 1, "c2")]
    assert sorted(r.value for r in cluster.read("m", "read_uncommitted").records) == [
        "a0", "a1", "a2", "c0", "c1", "c2"]


def test_concurrent_producers_keep_their_own_outcomes(txn_cluster, probes):
    # Interleaved transactions of four producers on shared partitions, plus plain records: each
    # batch must be judged by its own transaction's end.
    cluster = txn_cluster(topics=["c:2"])
    running = []
    expected = set()
    for producer in range(4):
        steps = ["init"]
        for n in range(6):
            values = ["p%d-t%d-%d" % (producer, n, i) for i in range(3)]
            outcome = "commit" if (producer + n) % 2 == 0 else "abort"
            steps += ["begin", "produce@%d:%s" % (n % 2, ",".join(values[:2])),
                      "produce@%d:%s" % ((n + 1) % 2, values[2]), outcome]
            if outcome == "commit":
                expected.update(values)
        running.append(probes.start(cluster.bootstrap, "c", steps, transactional_id="conc-%d" % producer))
    plain = probes.start(cluster.bootstrap, "c", ["produce@0:plain0", "produce@1:plain1"])
    for probe in running + [plain]:
        probe.finish().assert_ok()
    expected.update({"plain0", "plain1"})

    committed = cluster.read("c")
    assert sorted(r.value for r in committed.records) == sorted(expected)
    assert committed.stderr == ""
    assert len(cluster.read("c", "read_uncommitted").records) == 4 * 6 * 3 + 2
    assert len(cluster.proxy.decisions("commit")) == 12 and len(cluster.proxy.decisions("abort")) == 12


def test_broker_outage_inside_a_transaction(txn_cluster, probes):
    cluster = txn_cluster(topics=["t:1"])
    producer = probes.start(cluster.bootstrap, "t", ["init", "begin", "produce:a", "wait", "produce:b", "commit",
                                                     "begin", "produce:c", "commit"], transactional_id="tx")
    producer.wait_for_step("wait")
    cluster.broker.down(1)
    producer.resume()
    wait_until(lambda: "cannot reach upstream" in cluster.proxy.stderr(), timeout=30,
               message="the producer never tried to reconnect through the proxy")
    cluster.broker.up(1)
    producer.finish().assert_ok()
    assert cluster.values("t") == ["a", "b", "c"]
    assert [ranges_of(d) for d in cluster.proxy.decisions("commit")] == [[("t", 0, 0, 1)], [("t", 0, 2, 2)]]


# ----------------------------------------------------------------------------- fencing

def test_second_producer_aborts_the_first_and_fences_its_produce(txn_cluster, probes):
    cluster = txn_cluster(topics=["t:1"])
    first = probes.start(cluster.bootstrap, "t", ["init", "begin", "produce:a1", "wait", "produce:a2", "commit"],
                         transactional_id="shared")
    first.wait_for_step("wait")
    second = probes.run(cluster.bootstrap, "t", ["init", "begin", "produce:b1", "commit"], transactional_id="shared")
    second.assert_ok()

    first.resume()
    run = first.finish()
    assert run.returncode == 1
    failed = run.last
    assert failed["step"] == "produce" and not failed["ok"]
    assert failed["error"] == "INVALID_PRODUCER_EPOCH"
    assert failed["fatal_error"] == "_FENCED"  # librdkafka raised a fatal fenced error

    assert cluster.values("t") == ["b1"]
    assert cluster.values("t", "read_uncommitted") == ["a1", "b1"]  # a2 never reached the mock

    (first_init, second_init) = cluster.proxy.decisions("init")
    fence = cluster.proxy.wait_for_decision(lambda d: d["event"] == "fence")
    assert (fence["producer_id"], fence["by_producer_id"]) == (first_init["producer_id"], second_init["producer_id"])
    abort = cluster.proxy.wait_for_decision(lambda d: d["event"] == "abort")
    assert (abort["producer_id"], abort["reason"], ranges_of(abort)) == (first_init["producer_id"], "fenced",
                                                                        [("t", 0, 0, 0)])
    reject = cluster.proxy.wait_for_decision(lambda d: d["event"] == "reject")
    assert (reject["api"], reject["error"], reject["producer_id"]) == ("Produce", 47, first_init["producer_id"])


def test_fenced_producer_cannot_commit(txn_cluster, probes):
    cluster = txn_cluster(topics=["t:1"])
    first = probes.start(cluster.bootstrap, "t", ["init", "begin", "produce:a1", "wait", "commit"],
                         transactional_id="shared")
    first.wait_for_step("wait")
    probes.run(cluster.bootstrap, "t", ["init"], transactional_id="shared").assert_ok()
    first.resume()
    run = first.finish()
    commit = run.last
    assert run.returncode == 1 and commit["step"] == "commit" and not commit["ok"]
    assert (commit["error"], commit["fatal"]) == ("_FENCED", True)
    assert cluster.values("t") == []
    assert cluster.values("t", "read_uncommitted") == ["a1"]
    reject = cluster.proxy.wait_for_decision(lambda d: d["event"] == "reject")
    assert (reject["api"], reject["error"]) == ("EndTxn", 90)


def test_producer_that_dies_in_a_transaction_blocks_readers_until_the_next_init(txn_cluster, probes):
    cluster = txn_cluster(topics=["t:1"])
    probes.run(cluster.bootstrap, "t", ["init", "begin", "produce:x1", "exit"], transactional_id="tx").assert_ok()
    assert cluster.values("t") == []
    assert cluster.watermarks("t") == {0: (0, 0)}

    probes.run(cluster.bootstrap, "t", ["init"], transactional_id="tx").assert_ok()
    assert cluster.watermarks("t") == {0: (0, 1)}  # the dead producer's transaction was aborted
    probes.run(cluster.bootstrap, "t", ["init", "begin", "produce:y1", "commit"], transactional_id="tx").assert_ok()
    assert [(r.offset, r.value) for r in cluster.read("t").records] == [(1, "y1")]


def test_transaction_timeout_aborts_and_fences(txn_cluster, probes):
    cluster = txn_cluster(topics=["t:1"])
    slow = probes.start(cluster.bootstrap, "t", ["init", "begin", "produce:s1", "wait", "commit"],
                        transactional_id="slow", properties={"transaction.timeout.ms": "2000"})
    slow.wait_for_step("wait")
    abort = cluster.proxy.wait_for_decision(lambda d: d["event"] == "abort", timeout=15)
    assert abort["reason"] == "timeout"
    assert cluster.watermarks("t") == {0: (0, 1)}
    slow.resume()
    run = slow.finish()
    assert run.returncode == 1 and run.last["step"] == "commit"
    assert (run.last["error"], run.last["fatal"]) == ("_FENCED", True)
    assert cluster.values("t") == []


# ----------------------------------------------------------------------------- the proxy itself

def kafka_request(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    """Sends one non-flexible request and returns the response payload (after its size)."""
    payload = struct.pack(">hhih", api_key, version, correlation_id, 4) + b"test" + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", recv_exactly(sock, 4))[0]
    return recv_exactly(sock, size)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError("connection closed after %d of %d bytes" % (len(data), size))
        data += chunk
    return data


def test_api_versions_are_capped_and_metadata_points_at_the_proxy(make_broker, processes, tmp_path):
    broker = make_broker(brokers=2, topics=["t:1"])
    proxy = TxnProxy(processes, broker.bootstrap, tmp_path)
    proxy_ports = {int(address.rsplit(":", 1)[1]) for address in proxy.bootstrap.split(",")}
    host, port = proxy.bootstrap.split(",")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        answer = kafka_request(sock, proxy_module.API_VERSIONS, 2, 7, b"")
        reader = proxy_module.Reader(answer)
        assert reader.i32() == 7 and reader.i16() == 0
        versions = {}
        for _ in range(reader.i32()):
            api_key = reader.i16()
            reader.i16()  # min version
            versions[api_key] = reader.i16()
        for api_key, cap in proxy_module.VERSION_CAPS.items():
            assert versions[api_key] <= cap, proxy_module.API_NAMES[api_key]
        assert versions[proxy_module.FETCH] >= 4  # read_committed fetches still possible

        answer = kafka_request(sock, proxy_module.METADATA, 1, 8, struct.pack(">i", -1))
        reader = proxy_module.Reader(answer, 4)
        brokers = [(reader.i32(), reader.string(), reader.i32(), reader.string()) for _ in range(reader.i32())]
    assert len(brokers) == 2
    assert {(h, p) for _node, h, p, _rack in brokers} == {("127.0.0.1", p) for p in proxy_ports}
    assert proxy.stop() == 0


def test_cli_survives_garbage_and_stops_on_sigterm(make_broker, processes, tmp_path, probes):
    broker = make_broker(topics=["t:1"])
    proxy = TxnProxy(processes, broker.bootstrap, tmp_path)
    host, port = proxy.bootstrap.rsplit(":", 1)
    for junk in (struct.pack(">i", -5), struct.pack(">i", 3) + b"abc", b"\x00\x00", struct.pack(">i", 0x7FFFFFFF)):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(10)
            try:
                while sock.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
    assert proxy.running()
    probes.run(proxy.bootstrap, "t", ["init", "begin", "produce:ok", "commit"], transactional_id="tx").assert_ok()
    assert dump(proxy.bootstrap, "t").values == ["ok"]
    assert proxy.stop() == 0

    done = subprocess.run([sys.executable, str(PROXY_SCRIPT), "--upstream", "nohost"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "host:port" in done.stderr


# ----------------------------------------------------------------------------- record batches

def test_crc32c_matches_the_standard_check_value():
    assert proxy_module.Crc32c.of(b"123456789") == 0xE3069283


def test_empty_control_batch_keeps_offsets_and_has_a_valid_crc():
    body = struct.pack(">hiqqqhii", proxy_module.ATTR_TRANSACTIONAL | 0x02, 4, 1000, 1004, 77, 3, 10, 5) + b"R" * 30
    original = struct.pack(">qiibI", 500, 4 + 1 + 4 + len(body), 9, 2, proxy_module.Crc32c.of(body)) + body
    (batch,) = proxy_module.split_batches(original + original[:20])[:1]
    assert (batch.base_offset, batch.last_offset, batch.producer_id, batch.producer_epoch) == (500, 504, 77, 3)
    assert batch.transactional and batch.complete

    empty = proxy_module.empty_control_batch(batch)
    assert len(empty) == proxy_module.BATCH_HEADER_BYTES
    (rebuilt,) = proxy_module.split_batches(empty)
    assert (rebuilt.base_offset, rebuilt.last_offset, rebuilt.record_count) == (500, 504, 0)
    assert rebuilt.attributes & proxy_module.ATTR_CONTROL and not rebuilt.attributes & 0x07
    assert struct.unpack_from(">I", empty, 17)[0] == proxy_module.Crc32c.of(empty[21:])
    assert struct.unpack_from(">i", empty, 8)[0] == len(empty) - 12


def test_split_batches_reports_a_partial_tail():
    body = struct.pack(">hiqqqhii", 0, 0, 1, 1, -1, -1, -1, 1) + b"x" * 8
    batch = struct.pack(">qiibI", 7, 9 + len(body), 0, 2, proxy_module.Crc32c.of(body)) + body
    batches = proxy_module.split_batches(batch + batch[:30])
    assert [(b.base_offset, b.complete, b.has_v2_header) for b in batches] == [(7, True, True), (7, False, False)]
    with pytest.raises(proxy_module.ProtocolError):
        proxy_module.split_batches(struct.pack(">qi", 0, -3) + b"\x00" * 8)


def test_probe_usage_errors():
    done = subprocess.run([str(tool("txn_probe")), "--topic", "t", "init"], capture_output=True, timeout=10)
    assert done.returncode == 2 and b"--brokers" in done.stderr
    start = time.monotonic()
    done = subprocess.run([str(tool("txn_probe")), "--brokers", "127.0.0.1:1", "--topic", "t", "bogus"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and '"error":"unknown step"' in done.stdout
    assert time.monotonic() - start < 20
