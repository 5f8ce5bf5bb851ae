#!/usr/bin/env python3
"""Consumer-side delivery checker: reads every record (kafka_dump JSON lines) and reports, per
stream, how many events were sent, how many of them were delivered, duplicates, gaps and order
violations.

A record belongs to the stream named by its `sse.stream` header and carries the event's number
in its `sse.id` header (the numbered upstreams of the tests send `id: N`). What counts:

- sent:        the IDs the upstream sent that must arrive (1..last, minus the excluded ones, e.g.
               events larger than max_event_size that the bridge drops by design)
- delivered:   how many of those arrived at least once
- duplicates:  records beyond the first copy of an ID (at-least-once replays)
- gaps:        sent IDs that never arrived: data loss
- order:       first copies that arrived after the first copy of a higher ID of the same stream
               in the same partition (a replay that starts earlier is not one: only an ID seen
               for the first time counts)
- unexpected:  IDs that arrived but were not sent (beyond `last`, excluded, not a number)
- offset skips: per partition, offsets the reader never saw (the broker dropped old records
               before they were read): the check is then incomplete, not proof of loss

As a module:   checker = GapChecker(); checker.add_line(line) ...; checker.report({"s1": Expected(1000)})
As a command:  kafka_dump --brokers B --topic T --eof | gap_check.py --expect s1=1000 --expect s2=1000
               gap_check.py --expect-any 1000 dump.jsonl      (every stream seen must hold 1..1000)
Exit status: 0 when no stream has gaps and nothing was skipped, 1 otherwise, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import threading
from typing import Iterable, Optional

__all__ = ["Expected", "StreamReport", "Report", "GapChecker", "ranges"]

# kafka_dump prints "topic", "partition", "offset" first and the headers as [["name","value"],...].
# Inside a JSON string every quote is escaped, so `["sse.id","` can only be a header entry.
_PARTITION_OFFSET = re.compile(r'^\{"topic":("(?:[^"\\]|\\.)*"),"partition":(-?\d+),"offset":(-?\d+),')
_HEADER = r'\["%s","((?:[^"\\]|\\.)*)"\]'


@dataclasses.dataclass(frozen=True)
class Expected:
    """The IDs a stream must deliver: first..last, without `excluded`."""
    last: int
    first: int = 1
    excluded: frozenset = frozenset()

    def count(self) -> int:
        inside = sum(1 for i in self.excluded if self.first <= i <= self.last)
        return max(0, self.last - self.first + 1 - inside)

    def contains(self, event_id: int) -> bool:
        return self.first <= event_id <= self.last and event_id not in self.excluded


@dataclasses.dataclass
class StreamReport:
    stream: str
    sent: int
    delivered: int
    records: int
    duplicates: int
    gaps: int
    order_violations: int
    unexpected: int
    gap_ranges: list            # [(first, last)] of the missing IDs, at most 20
    order_examples: list        # [(id, after_id, partition, offset)], at most 10

    def line(self) -> str:
        text = ("%s: sent=%d delivered=%d records=%d duplicates=%d gaps=%d order_violations=%d "
                "unexpected=%d" % (self.stream, self.sent, self.delivered, self.records,
                                   self.duplicates, self.gaps, self.order_violations, self.unexpected))
        if self.gap_ranges:
            text += " missing=%s" % _format_ranges(self.gap_ranges)
        if self.order_examples:
            text += " order_examples=%s" % self.order_examples
        return text


@dataclasses.dataclass
class Report:
    streams: list               # [StreamReport], sorted by name
    offset_skips: dict          # {(topic, partition): offsets never read}
    unattributed: int           # records without a stream header

    def total(self, field: str) -> int:
        return sum(getattr(s, field) for s in self.streams)

    @property
    def sent(self) -> int:
        return self.total("sent")

    @property
    def delivered(self) -> int:
        return self.total("delivered")

    @property
    def duplicates(self) -> int:
        return self.total("duplicates")

    @property
    def gaps(self) -> int:
        return self.total("gaps")

    @property
    def order_violations(self) -> int:
        return self.total("order_violations")

    @property
    def unexpected(self) -> int:
        return self.total("unexpected")

    def complete(self) -> bool:
        """Every stream's reading is trustworthy: nothing skipped by the reader."""
        return not any(self.offset_skips.values())

    def ok(self) -> bool:
        return self.gaps == 0 and self.complete()

    def summary(self) -> str:
        return ("sent=%d delivered=%d duplicates=%d gaps=%d order_violations=%d unexpected=%d"
                % (self.sent, self.delivered, self.duplicates, self.gaps, self.order_violations,
                   self.unexpected))

    def text(self, max_streams: int = 20) -> str:
        """The summary, then the streams with problems (or the first ones when none has any)."""
        bad = [s for s in self.streams if s.gaps or s.order_violations or s.unexpected]
        shown = bad or self.streams
        lines = ["total: " + self.summary()]
        lines += ["  " + s.line() for s in shown[:max_streams]]
        if len(shown) > max_streams:
            lines.append("  ... %d more streams" % (len(shown) - max_streams))
        skipped = {k: v for k, v in self.offset_skips.items() if v}
        if skipped:
            lines.append("  INCOMPLETE: offsets never read (broker dropped them first): %s" % skipped)
        if self.unattributed:
            lines.append("  records without an sse.stream header: %d" % self.unattributed)
        return "\n".join(lines)


class _StreamTally:
    def __init__(self) -> None:
        self.records = 0
        self.ids: set = set()
        self.non_numeric = 0
        self.highest_first: dict = {}      # (topic, partition) -> highest first-seen ID
        self.order_violations = 0
        self.order_examples: list = []


class GapChecker:
    """Accumulates records (thread-safe) and reports against what each stream was sent."""

    def __init__(self, stream_header: str = "sse.stream", id_header: str = "sse.id") -> None:
        self._stream_header = stream_header
        self._id_header = id_header
        self._stream_re = re.compile(_HEADER % re.escape(stream_header))
        self._id_re = re.compile(_HEADER % re.escape(id_header))
        self._lock = threading.Lock()
        self._streams: dict = {}
        self._next_offset: dict = {}       # (topic, partition) -> offset after the last one read
        self._skipped: dict = {}           # (topic, partition) -> offsets never read
        self._unattributed = 0
        self.records = 0

    # -- input

    def add_line(self, line: str) -> None:
        """One kafka_dump record line; blank lines are ignored. Raises ValueError on other text."""
        line = line.strip()
        if not line:
            return
        head = _PARTITION_OFFSET.match(line)
        stream = self._stream_re.search(line)
        event_id = self._id_re.search(line)
        if head and stream and (event_id or '"%s"' % self._id_header not in line) \
                and "\\" not in stream.group(1) and (event_id is None or "\\" not in event_id.group(1)):
            self._add(json.loads(head.group(1)), int(head.group(2)), int(head.group(3)),
                      stream.group(1), event_id.group(1) if event_id else None)
            return
        self.add_record(json.loads(line))

    def add_record(self, record: dict) -> None:
        """One record as kafka_dump prints it, already parsed."""
        stream = event_id = None
        for name, value in record.get("headers", []):
            if not isinstance(value, str):
                continue
            if name == self._stream_header and stream is None:
                stream = value
            elif name == self._id_header and event_id is None:
                event_id = value
        self._add(record["topic"], record["partition"], record["offset"], stream, event_id)

    def add_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.add_line(line)

    def _add(self, topic: str, partition: int, offset: int, stream: Optional[str],
             event_id: Optional[str]) -> None:
        key = (topic, partition)
        with self._lock:
            self.records += 1
            # Topics under test are new: a partition's first record has offset 0.
            expected_offset = self._next_offset.get(key, 0)
            if offset > expected_offset:
                self._skipped[key] = self._skipped.get(key, 0) + offset - expected_offset
            if offset >= expected_offset:
                self._next_offset[key] = offset + 1
            if stream is None:
                self._unattributed += 1
                return
            tally = self._streams.get(stream)
            if tally is None:
                tally = self._streams[stream] = _StreamTally()
            tally.records += 1
            if event_id is None or not event_id.isdigit():
                tally.non_numeric += 1
                return
            n = int(event_id)
            if n in tally.ids:
                return
            tally.ids.add(n)
            highest = tally.highest_first.get(key, 0)
            if n < highest:
                tally.order_violations += 1
                if len(tally.order_examples) < 10:
                    tally.order_examples.append((n, highest, partition, offset))
            else:
                tally.highest_first[key] = n

    # -- observation

    def next_offsets(self) -> dict:
        """{(topic, partition): the offset after the last record read}."""
        with self._lock:
            return dict(self._next_offset)

    def highest_id(self, stream: str) -> Optional[int]:
        """The highest numeric ID read for the stream, or None."""
        with self._lock:
            tally = self._streams.get(stream)
            return max(tally.ids) if tally and tally.ids else None

    def stream_names(self) -> list:
        with self._lock:
            return sorted(self._streams)

    def missing(self, stream: str, expected: Expected, limit: Optional[int] = None) -> list:
        """The expected IDs of the stream not read yet, ascending (at most `limit`)."""
        with self._lock:
            tally = self._streams.get(stream)
            ids = tally.ids if tally else set()
            out = []
            for i in range(expected.first, expected.last + 1):
                if i not in ids and i not in expected.excluded:
                    out.append(i)
                    if limit is not None and len(out) >= limit:
                        break
            return out

    def has_all(self, expected: dict) -> bool:
        """True when every stream in {name: Expected} delivered every expected ID."""
        return all(not self.missing(name, exp, limit=1) for name, exp in expected.items())

    def report(self, expected: dict, include_unlisted: bool = True) -> Report:
        """A Report for {stream name: Expected}; streams seen but not listed are reported with
        sent=0 (all their IDs unexpected) unless include_unlisted is false."""
        with self._lock:
            names = set(expected) | (set(self._streams) if include_unlisted else set())
            streams = []
            for name in sorted(names):
                exp = expected.get(name, Expected(last=0))
                tally = self._streams.get(name) or _StreamTally()
                present = sum(1 for i in tally.ids if exp.contains(i))
                missing = [i for i in range(exp.first, exp.last + 1)
                           if i not in tally.ids and i not in exp.excluded]
                streams.append(StreamReport(
                    stream=name, sent=exp.count(), delivered=present, records=tally.records,
                    duplicates=tally.records - len(tally.ids) - tally.non_numeric,
                    gaps=len(missing), order_violations=tally.order_violations,
                    unexpected=len(tally.ids) - present + tally.non_numeric,
                    gap_ranges=ranges(missing)[:20], order_examples=list(tally.order_examples)))
            return Report(streams=streams, offset_skips=dict(self._skipped),
                          unattributed=self._unattributed)


def ranges(numbers: list) -> list:
    """[1, 2, 3, 7, 9, 10] -> [(1, 3), (7, 7), (9, 10)] (input ascending)."""
    out: list = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def _format_ranges(pairs: list) -> str:
    return ",".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in pairs)


def _parse_expect(text: str) -> tuple:
    name, sep, spec = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("want STREAM=LAST or STREAM=FIRST-LAST, got %r" % text)
    first, dash, last = spec.partition("-")
    try:
        return name, (Expected(last=int(last), first=int(first)) if dash else Expected(last=int(first)))
    except ValueError:
        raise argparse.ArgumentTypeError("not a number in %r" % text) from None


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description="Per-stream sent/delivered/duplicates/gaps/order "
                                                 "of kafka_dump JSON lines.")
    parser.add_argument("input", nargs="?", default="-", help="kafka_dump output (default: stdin)")
    parser.add_argument("--expect", action="append", type=_parse_expect, default=[],
                        metavar="STREAM=[FIRST-]LAST", help="IDs the stream must hold")
    parser.add_argument("--expect-any", type=int, metavar="LAST",
                        help="every stream seen must hold 1..LAST")
    parser.add_argument("--exclude", action="append", type=int, default=[], metavar="ID",
                        help="an ID no stream must deliver (e.g. an oversized event)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)

    checker = GapChecker()
    source = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    try:
        for number, line in enumerate(source, 1):
            try:
                checker.add_line(line)
            except (ValueError, KeyError) as exc:
                print("gap_check: line %d is not a kafka_dump record: %s" % (number, exc), file=sys.stderr)
                return 2
    finally:
        if source is not sys.stdin:
            source.close()
    excluded = frozenset(args.exclude)
    expected = {name: dataclasses.replace(exp, excluded=excluded) for name, exp in args.expect}
    if args.expect_any is not None:
        for name in checker.stream_names():
            expected.setdefault(name, Expected(last=args.expect_any, excluded=excluded))
    report = checker.report(expected)
    if args.json:
        print(json.dumps({"total": {k: getattr(report, k) for k in (
            "sent", "delivered", "duplicates", "gaps", "order_violations", "unexpected")},
            "streams": [dataclasses.asdict(s) for s in report.streams],
            "offset_skips": {"%s/%d" % k: v for k, v in report.offset_skips.items()}}, indent=1))
    else:
        print(report.text(max_streams=1000))
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
