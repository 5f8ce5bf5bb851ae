"""Helpers for the routing and record-format end-to-end tests (test_routing.py, test_formats.py):
strict JSON reading, RFC 3339 checks, a consumer-side CloudEvents Kafka-binding validator,
`--check` runs, and the rendering of records that docs/record-formats.md shows.

Everything here reads what the real binary produced (through kafka_dump); nothing reaches into
the daemon."""

from __future__ import annotations

import calendar
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

import harness
from harness import REPO, parse_check_output, run_cli, tool, write_config
from sse_upstream import Route, hang, send

DOC_PATH = REPO / "docs" / "record-formats.md"

# ----------------------------------------------------------------------------- JSON


class JsonProblem(AssertionError):
    pass


def _no_duplicate_members(pairs: list) -> dict:
    names = [name for name, _ in pairs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise JsonProblem("duplicate member(s) %r" % duplicates)
    return dict(pairs)


def _no_special_numbers(word: str) -> Any:
    raise JsonProblem("%s is not JSON" % word)


def _check_strings(value: Any, where: str = "$") -> None:
    """Every string (and member name) must be encodable as UTF-8: a lone surrogate escape such
    as "\\ud800" parses in Python but is no Unicode text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise JsonProblem("%s holds a lone surrogate: %r (%s)" % (where, value, error)) from None
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_strings(item, "%s[%d]" % (where, i))
    elif isinstance(value, dict):
        for name, item in value.items():
            _check_strings(name, where + ".<name>")
            _check_strings(item, "%s.%s" % (where, name))


def strict_json(text: Optional[str], what: str = "value") -> Any:
    """Parses `text` as one RFC 8259 JSON text, refusing what Python's json module lets through
    (NaN/Infinity, duplicate member names, lone surrogates). Raises AssertionError saying why."""
    if text is None:
        raise JsonProblem("%s is missing (null, or not valid UTF-8)" % what)
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_members, parse_constant=_no_special_numbers)
    except (ValueError, JsonProblem) as error:
        raise JsonProblem("%s is not valid JSON (%s): %r" % (what, error, text)) from None
    _check_strings(value, what)
    return value


# ----------------------------------------------------------------------------- times

RFC3339_UTC = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|\+00:00)$")
RFC3339_UTC_MILLIS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ANY_RFC3339_MILLIS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def utc_seconds(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 UTC timestamp ("Z" or "+00:00"); AssertionError
    when `text` is not one."""
    match = RFC3339_UTC.match(text or "")
    assert match, "not an RFC 3339 UTC timestamp: %r" % (text,)
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    assert 1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61, text
    fraction = float(match.group(7)) if match.group(7) else 0.0
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) + fraction


class TimeWindow:
    """Wall-clock bounds around a run, to check that record times are "now"."""

    def __init__(self, slack_s: float = 2.0) -> None:
        self.slack_s = slack_s
        self.start = time.time()
        self.end: Optional[float] = None

    def close(self) -> None:
        self.end = time.time()

    def check(self, seconds: float, what: str) -> None:
        end = self.end if self.end is not None else time.time()
        assert self.start - self.slack_s <= seconds <= end + self.slack_s, \
            "%s = %.3f is not within the run [%.3f, %.3f] (±%.1fs)" % (what, seconds, self.start, end, self.slack_s)


# ----------------------------------------------------------------------------- records

class Kafka(harness.Kafka):
    """harness.Kafka reading kafka_dump's output one "\n"-terminated line per record. (The base
    class splits with str.splitlines(), which also breaks at U+2028, U+2029 and U+0085: JSON
    allows those raw inside strings, so a record whose data holds one would be cut in two.)"""

    def _run(self, args: list, timeout: float) -> list:
        cmd = [str(tool("kafka_dump")), "--brokers", self.bootstrap] + args
        done = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", timeout=timeout + 15)
        if done.returncode != 0:
            raise AssertionError("kafka_dump failed (%d): %s" % (done.returncode, done.stderr))
        return [json.loads(line) for line in done.stdout.split("\n") if line.strip()]


def sse_headers(record) -> dict:
    """The record's sse.* headers as a dict (each must appear once)."""
    return record.headers_with_prefix("sse.")


def header_once(record, name: str) -> Optional[str]:
    """The value of header `name`; AssertionError when it appears more than once or is not UTF-8."""
    values = record.header_values(name)
    assert len(values) <= 1, "header %s appears %d times in %r" % (name, len(values), record)
    if not values:
        return None
    assert isinstance(values[0], str), "header %s is not valid UTF-8: %r" % (name, values[0])
    return values[0]


def expected_sse_headers(stream: str, event: str, last_event_id: str) -> dict:
    headers = {"sse.stream": stream, "sse.event": event}
    if last_event_id:
        headers["sse.id"] = last_event_id
    return headers


def by_stream(records: Iterable) -> dict:
    """{stream name: [records]} by the sse.stream header, each list in (partition, offset) order."""
    out: dict = {}
    for record in records:
        out.setdefault(record.header("sse.stream"), []).append(record)
    return out


def records_ok_as_text(records: Iterable) -> None:
    """Every key and value came out of kafka_dump as UTF-8 text (no *_b64 fallback)."""
    for record in records:
        assert record.key_b64 is None, "key is not valid UTF-8: %r" % (record,)
        assert record.value_b64 is None, "value is not valid UTF-8: %r" % (record,)
        for name, value in record.headers:
            assert isinstance(value, str), "header %s is not valid UTF-8 text: %r" % (name, record)


def events_route(chunks: Iterable[bytes]) -> Route:
    """A route that sends each chunk as one body piece, then keeps the connection open."""
    return Route(body=[send(chunk) for chunk in chunks] + [hang()])


def with_userinfo(url: str, userinfo: str) -> str:
    """http://host/p -> http://USERINFO@host/p"""
    scheme, rest = url.split("://", 1)
    return "%s://%s@%s" % (scheme, userinfo, rest)


# ----------------------------------------------------------------------------- CloudEvents

CE_REQUIRED = ("specversion", "id", "source", "type")
STRUCTURED_CONTENT_TYPE = re.compile(r"^application/cloudevents\+json\s*(;.*)?$", re.IGNORECASE)
_URI_REFERENCE_FORBIDDEN = re.compile(r"[\x00-\x20\x7f<>\"{}|\\^`]")


def cloudevent_of(record) -> dict:
    """The CloudEvent a consumer reads from a record under the CloudEvents Kafka protocol binding
    1.0: structured mode when the content-type header is application/cloudevents+json (the
    attributes are the JSON value's members), else binary mode (the attributes are the ce_*
    headers, datacontenttype is the content-type header, data is the value). AssertionError when
    the record is neither."""
    content_type = header_once(record, "content-type")
    if content_type is not None and STRUCTURED_CONTENT_TYPE.match(content_type):
        event = strict_json(record.value, "structured CloudEvent value")
        assert isinstance(event, dict), "a structured CloudEvent must be a JSON object: %r" % (record.value,)
        return event
    event: dict = {}
    for name, value in record.headers:
        if name.startswith("ce_"):
            assert name[3:] not in event, "header %s appears twice in %r" % (name, record)
            assert isinstance(value, str), "header %s is not UTF-8: %r" % (name, record)
            event[name[3:]] = value
    assert event, "neither a structured nor a binary-mode CloudEvent: %r" % (record,)
    if content_type is not None:
        event["datacontenttype"] = content_type
    event["data"] = record.value
    return event


def cloudevents_binding_problems(records: Iterable) -> list:
    """What a strict consumer would reject in `records` (CloudEvents 1.0 core + Kafka binding):
    required attributes specversion ("1.0"), id, source, type as non-empty strings, source a
    URI-reference, time (when present) RFC 3339, and (source, id) unique over all records."""
    problems = []
    seen: dict = {}
    for record in records:
        where = "%s[%d]@%d" % (record.topic, record.partition, record.offset)
        try:
            event = cloudevent_of(record)
        except AssertionError as error:
            problems.append("%s: %s" % (where, error))
            continue
        for name in CE_REQUIRED:
            if not isinstance(event.get(name), str) or not event.get(name):
                problems.append("%s: required attribute %s missing or empty: %r" % (where, name, event))
        if event.get("specversion") not in (None, "1.0"):
            problems.append("%s: specversion %r is not 1.0" % (where, event.get("specversion")))
        source = event.get("source")
        if isinstance(source, str) and source:
            if _URI_REFERENCE_FORBIDDEN.search(source):
                problems.append("%s: source %r is not a URI-reference" % (where, source))
            else:
                try:
                    urlsplit(source)
                except ValueError as error:
                    problems.append("%s: source %r is not a URI-reference (%s)" % (where, source, error))
        if "time" in event:
            try:
                utc_seconds(event["time"])
            except AssertionError as error:
                problems.append("%s: time: %s" % (where, error))
        identity = (event.get("source"), event.get("id"))
        if identity in seen:
            problems.append("%s: (source, id) %r repeats the one of %s" % (where, identity, seen[identity]))
        else:
            seen[identity] = where
    return problems


# ----------------------------------------------------------------------------- --check

def check_config(directory: Path, text: str, name: str = "check.yaml"):
    """Runs `sse2kafka -c FILE --check` on `text`; returns (exit status, output, problems, path)."""
    path = write_config(directory, text, name=name)
    done = run_cli(["-c", str(path), "--check"])
    output = done.stdout + done.stderr
    return done.returncode, output, parse_check_output(output), path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the `occurrence`-th line of `text` containing `needle`."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    assert len(hits) >= occurrence, "%r occurs %d times in the config" % (needle, len(hits))
    return hits[occurrence - 1]


# ----------------------------------------------------------------------------- documented examples
#
# docs/record-formats.md shows records, each in a fenced block right after a line
# `<!-- record: NAME -->`, rendered by render_record(); NAME is the stream for its wiki.edits
# record and STREAM.other for its wiki.other one. test_formats.py runs the same input and config
# (below) and compares, with timestamps masked.

EXAMPLE_URL_PATH = "/v2/stream/recentchange"
EXAMPLE_EVENT = (b'event: edit\n'
                 b'id: 1001\n'
                 b'data: {"meta":{"id":"Q42-1001"},"title":"Douglas Adams","user":"Ann","delta":-12}\n'
                 b'\n'
                 b'event: log\n'
                 b'data: Main Page protected by Admin\n'
                 b'\n')
EXAMPLE_FORMATS = {"wiki-raw": "raw", "wiki-binary": "cloudevents-binary",
                   "wiki-structured": "cloudevents-structured", "wiki-envelope": "envelope"}
EXAMPLE_TOPICS = ("wiki.edits", "wiki.other")


def example_defaults(reconnect: dict) -> dict:
    return {
        "reconnect": reconnect,
        "topics": {"edit": "wiki.edits", "*": "wiki.other"},
        "key": "json:/meta/id",
        "cloudevents": {"source": "https://stream.example.org/v2/stream/recentchange",
                        "type_prefix": "org.example.wiki."},
        "record_headers": {"source": "wikimedia"},
    }


def example_streams(url: str) -> list:
    return [{"name": name, "url": url, "format": fmt} for name, fmt in EXAMPLE_FORMATS.items()]


def render_record(record) -> str:
    """A record as docs/record-formats.md shows it: topic, key, headers in order, value."""
    lines = ["topic:  %s" % record.topic,
             "key:    %s" % ("(none)" if record.key is None else record.key)]
    for name, value in record.headers:
        lines.append("header: %s: %s" % (name, value))
    lines.append("value:  %s" % record.value)
    return "\n".join(lines)


_DOC_BLOCK = re.compile(r"<!-- record: (?P<name>[A-Za-z0-9._-]+) -->\s*\n```[a-z]*\n(?P<body>.*?)\n```", re.DOTALL)


def documented_records(markdown: str) -> dict:
    """{NAME: rendered record} from the marked blocks of the formats document."""
    return {m["name"]: m["body"] for m in _DOC_BLOCK.finditer(markdown)}


def mask_times(text: str) -> str:
    return ANY_RFC3339_MILLIS.sub("<time>", text)
