"""pytest configuration of the reliability suite: the e2e harness and fixtures (tests/e2e), the
test tools (tests/tools), and the per-scenario summary lines printed at the end of the run."""

import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / "e2e", _HERE.parent / "tools"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from fixtures import *  # noqa: E402,F401,F403  (fixtures and the report hook)
from sse_upstream import SSEUpstream  # noqa: E402

_SUMMARY = pytest.StashKey[list]()


@pytest.fixture
def make_upstream():
    """make_upstream() -> a started SSEUpstream of its own (stopped at teardown). A full-speed
    NumberedRoute holds its server's event loop while the client keeps up, so streams that must
    all run at full speed at once each get their own server (and thread)."""
    started = []

    def make() -> SSEUpstream:
        server = SSEUpstream().start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def scenario_summary(request):
    """scenario_summary(line): records the scenario's one-line result (printed at the end of the
    run, and at once on stdout)."""
    def record(line: str) -> None:
        request.config.stash.setdefault(_SUMMARY, []).append(line)
        print("RELIABILITY " + line)
    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(_SUMMARY, [])
    if lines:
        terminalreporter.section("reliability summary")
        for line in lines:
            terminalreporter.write_line(line)
