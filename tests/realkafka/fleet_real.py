"""Shared pieces of the real-Kafka fleet suites (test_fleet_exactly_once.py,
test_fleet_state_topic.py, test_fleet_cluster.py): the fleet scenarios of tests/reliability and
tests/e2e/test_fleet_state.py, run against a real 3-node cluster (tests/kafka) instead of the
mock broker.

- committed_and_raw(): a fresh read of the topics read_committed and read_uncommitted, as
  GapChecker reports against the expected IDs, plus the raw record counts (what a
  read_uncommitted consumer sees beyond the committed records: aborted transactions).
- late_records(): records carried by an instance's stale connections whose event the upstream
  wrote after another instance had taken the stream over (TaggedFeeds tags each event with the
  instance and the connection that carried it).
- resume_times(): when each stream's first request of another instance arrived.
- summary(): the one result line each scenario prints ("REAL-KAFKA ..."), collected at the end.
"""

from __future__ import annotations

import time
from typing import Iterable, Optional

from fleet_support import parse_tag, read_all_checker
from harness import Kafka

SUMMARY_PREFIX = "REAL-KAFKA "


def summary(line: str) -> None:
    """Prints a scenario's result line (pytest -s, or the captured output of a failed test)."""
    print(SUMMARY_PREFIX + line, flush=True)


class Reads:
    """A fresh read of topics: `committed` and `raw` GapChecker reports plus the records."""

    def __init__(self, kafka: Kafka, topics: Iterable[str], expected: dict, timeout: float = 60) -> None:
        topics = list(topics)
        committed_checker, self.committed_records = read_all_checker(
            kafka, topics, isolation="read_committed", timeout=timeout)
        raw_checker, self.raw_records = read_all_checker(kafka, topics, isolation="read_uncommitted",
                                                         timeout=timeout)
        self.committed = committed_checker.report(expected)
        self.raw = raw_checker.report(expected)
        self.marks = kafka.watermarks(topics)

    @property
    def aborted_records(self) -> int:
        """Records only a read_uncommitted consumer sees (aborted transactions)."""
        return len(self.raw_records) - len(self.committed_records)

    @property
    def offsets(self) -> int:
        """Offsets the partitions span (records + transaction markers + aborted records)."""
        return sum(high - low for low, high in self.marks.values())


def late_records(records: Iterable, feeds, stale: dict, takeover: dict) -> list:
    """[(partition, offset, value, seconds after the takeover)] of records carried by a stale
    connection (stale: {connection id: path}) whose event was written after the takeover of its
    path (takeover: {path: time.monotonic()})."""
    out = []
    for record in records:
        tag = parse_tag(record.value)
        if tag is None or tag[1] not in stale:
            continue
        sent = feeds.sent_at(tag[1], tag[2])
        taken = takeover.get(stale[tag[1]])
        if sent is not None and taken is not None and sent > taken:
            out.append((record.partition, record.offset, record.value, round(sent - taken, 3)))
    return out


def resume_times(feeds, paths: Iterable[str], since: float, exclude: Iterable[str]) -> dict:
    """{path: seconds after `since` of the first request there by an instance not in `exclude`}."""
    exclude = set(exclude)
    out = {}
    for path in paths:
        times = [r.monotonic for r in feeds.requests_after(path, since)
                 if r.headers.get("X-Instance") not in exclude]
        if times:
            out[path] = min(times) - since
    return out


def stale_connections(feeds, instance: str) -> dict:
    """{connection id: path} of the connections `instance` holds open now."""
    out = {}
    for path, conns in feeds.open_by_path().items():
        out.update({c: path for c, i in conns if i == instance})
    return out


def open_connection_ids(feeds) -> set:
    return {c for conns in feeds.open_by_path().values() for c, _ in conns}


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.started


def first_copies(records: Iterable, stream: str) -> list:
    """[int sse.id] of the stream's records in offset order (records as read)."""
    return [int(r.header("sse.id")) for r in records
            if r.header("sse.stream") == stream and (r.header("sse.id") or "").isdigit()]


def optional_int(text: Optional[str]) -> Optional[int]:
    return int(text) if text is not None and str(text).isdigit() else None
