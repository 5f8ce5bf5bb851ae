"""pytest configuration of the real-Kafka suites: the e2e harness and fixtures (tests/e2e), the
test tools (tests/tools), the reliability checker (tests/reliability) and the cluster module
(tests/kafka) on sys.path, and the `cluster` fixture.

`cluster` is module-scoped and parametrised over the Kafka versions (SSE2KAFKA_KAFKA_VERSIONS,
default "3.9 4"), plaintext unless SSE2KAFKA_KAFKA_SECURITY names a secured mode: each test file gets one fresh 3-node cluster per version, shared by its tests,
which must leave it whole (every node running) and use topic names of their own. A test that
breaks the cluster on purpose restores it before it ends, or uses its own KafkaCluster.
"""

import os
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / "e2e", _HERE.parent / "tools", _HERE.parent / "reliability",
              _HERE.parent / "kafka"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from fixtures import *  # noqa: E402,F401,F403  (fixtures and the report hook)
from harness import assert_no_secrets  # noqa: E402
from kafka_cluster import running_cluster, versions  # noqa: E402


@pytest.fixture(scope="module", params=versions(), ids=lambda v: "kafka-" + v)
def cluster(request):
    """A running 3-node Kafka cluster of one version, for the whole test file; secured
    (cluster.sh --security) when SSE2KAFKA_KAFKA_SECURITY says so (a suite's ".secured" run):
    then every config written for it logs the bridge in and grants what it needs, and every
    reader logs in as admin (harness.SECURED_CLUSTERS)."""
    yield from running_cluster(request.param, security=os.environ.get("SSE2KAFKA_KAFKA_SECURITY", "plaintext"))


@pytest.fixture
def healthy_cluster(cluster, request):
    """The module's cluster; after the test, fails it if a node is down (the next test would
    otherwise fail for the wrong reason) and prints the node logs when the test failed."""
    yield cluster
    down = [b for b in cluster.broker_ids if not cluster.running(b)]
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed or down:
        print(cluster.describe(30))
    assert not down, "the test left nodes %s of the cluster down" % down


@pytest.fixture(autouse=True)
def no_secret_in_any_log(tmp_path):
    """After every test: no log the test's bridges and tools wrote holds a password or a private
    key line of a secured cluster (harness.LOG_SECRETS; nothing to find on plaintext ones)."""
    yield
    assert_no_secrets(tmp_path)
