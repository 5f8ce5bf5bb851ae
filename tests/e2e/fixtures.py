"""pytest fixtures for end-to-end tests. conftest.py imports them; other test folders can too:
    sys.path.insert(0, "<repo>/tests/e2e"); from fixtures import *  # noqa

Every process a fixture starts is killed at teardown, also when the test fails; bridges that were
still running, and the logs of every bridge of a failed test, are printed in the report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Union

import pytest

from harness import Bridge, Kafka, MockBroker, ProcessRegistry, bridge_config, write_config
from sse_upstream import SSEUpstream

__all__ = ["processes", "make_broker", "broker", "kafka", "upstream", "start_bridge", "state_dir",
           "config_for", "pytest_runtest_makereport"]


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the item so that fixtures can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def _failed(request) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


@pytest.fixture
def processes():
    """The registry of the test's processes; everything in it is killed at teardown."""
    registry = ProcessRegistry()
    yield registry
    registry.cleanup()


@pytest.fixture
def make_broker(processes, tmp_path, request):
    """make_broker(brokers=1, topics=["name:partitions", ...], default_partitions=None) -> MockBroker."""
    started = []

    def make(brokers: int = 1, topics: Iterable[str] = (), default_partitions: Optional[int] = None) -> MockBroker:
        broker = MockBroker(processes, tmp_path, brokers=brokers, topics=topics,
                            default_partitions=default_partitions)
        started.append(broker)
        return broker

    yield make
    for broker in started:
        if _failed(request) and broker.stderr().strip():
            print("--- mock_broker stderr ---\n" + broker.stderr()[-5000:])
        try:
            broker.stop(5)
        except Exception:  # the registry kills it
            pass


@pytest.fixture
def broker(make_broker) -> MockBroker:
    """One mock broker; topics are auto-created with 4 partitions."""
    return make_broker()


@pytest.fixture
def kafka(broker) -> Kafka:
    return Kafka(broker.bootstrap)


@pytest.fixture
def upstream():
    """A started SSEUpstream (stopped at teardown)."""
    server = SSEUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def state_dir(tmp_path) -> Path:
    path = tmp_path / "state"
    return path


@pytest.fixture
def config_for(state_dir):
    """config_for(broker_or_bootstrap, streams, **sections) -> dict: bridge_config with the test's state dir."""
    def make(brokers: Union[MockBroker, str], streams: list, **sections) -> dict:
        bootstrap = brokers.bootstrap if isinstance(brokers, MockBroker) else brokers
        return bridge_config(bootstrap, state_dir, streams, **sections)
    return make


@pytest.fixture
def start_bridge(processes, tmp_path, request):
    """start_bridge(config dict|str|Path, args=(), env=None) -> Bridge, running sse2kafka -c FILE.

    Bridges still running at teardown are killed (-9); a failed test gets every bridge's logs."""
    bridges = []

    def start(config, args: Iterable[str] = (), env: Optional[dict] = None) -> Bridge:
        if isinstance(config, Path):
            path = config
        else:
            path = write_config(tmp_path, config, name="sse2kafka-%d.yaml" % (len(bridges) + 1))
        bridge = Bridge(processes, path, tmp_path, args=args, env=env)
        bridges.append(bridge)
        return bridge

    yield start
    failed = _failed(request)
    for bridge in bridges:
        if bridge.running():
            bridge.kill9()
        if failed or os.environ.get("SSE2KAFKA_E2E_SHOW_LOGS"):
            print(bridge.describe())
