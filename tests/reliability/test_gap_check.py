"""The checker itself: it must see every kind of defect the scenarios rely on it to find."""
# ctest-timeout: 60

import json
import subprocess
import sys
from pathlib import Path

from gap_check import Expected, GapChecker

CHECKER = Path(__file__).resolve().parent / "gap_check.py"


def dump_line(offset, stream, event_id, partition=0, topic="t", value=None, id_b64=False):
    """A record line as kafka_dump prints it (compact JSON, members in its order)."""
    headers = [["sse.stream", stream], ["sse.event", "message"]]
    if event_id is not None:
        headers.append(["sse.id", {"b64": "AAE="} if id_b64 else str(event_id)])
    return json.dumps({"topic": topic, "partition": partition, "offset": offset, "key": stream,
                       "value": value if value is not None else "event %s" % event_id, "headers": headers,
                       "timestamp_ms": 1, "timestamp_type": "create_time"}, separators=(",", ":"),
                      ensure_ascii=False)


def check(ids_by_stream, expected):
    checker = GapChecker()
    offsets = {}
    for stream, ids in ids_by_stream.items():
        for event_id in ids:
            offset = offsets.get(stream, 0)
            offsets[stream] = offset + 1
            checker.add_line(dump_line(offset, stream, event_id, topic=stream))
    return checker.report(expected)


def test_a_clean_stream_reports_everything_delivered():
    report = check({"a": range(1, 101)}, {"a": Expected(100)})
    assert (report.sent, report.delivered, report.duplicates, report.gaps, report.order_violations) == \
        (100, 100, 0, 0, 0)
    assert report.ok()


def test_gaps_are_counted_and_named():
    ids = [i for i in range(1, 101) if not 40 <= i <= 44 and i != 77]
    report = check({"a": ids}, {"a": Expected(100)})
    assert report.gaps == 6 and report.delivered == 94 and not report.ok()
    assert report.streams[0].gap_ranges == [(40, 44), (77, 77)]


def test_a_replay_from_the_checkpoint_is_duplicates_not_disorder():
    ids = list(range(1, 61)) + list(range(41, 101))
    report = check({"a": ids}, {"a": Expected(100)})
    assert (report.duplicates, report.gaps, report.order_violations) == (20, 0, 0)


def test_a_first_copy_after_a_higher_id_is_an_order_violation():
    ids = list(range(1, 11)) + list(range(14, 21)) + [11, 12, 13]
    report = check({"a": ids}, {"a": Expected(20)})
    assert (report.gaps, report.order_violations) == (0, 3)
    assert report.streams[0].order_examples[0][:2] == (11, 20)


def test_streams_are_separate_and_unlisted_ones_are_unexpected():
    report = check({"a": range(1, 11), "b": range(1, 6), "c": [1]}, {"a": Expected(10), "b": Expected(10)})
    by_name = {s.stream: s for s in report.streams}
    assert by_name["a"].gaps == 0 and by_name["b"].gaps == 5 and by_name["c"].unexpected == 1
    assert report.unexpected == 1


def test_excluded_and_extra_ids():
    report = check({"a": [1, 2, 4, 5, 6]}, {"a": Expected(5, excluded=frozenset({3}))})
    assert (report.sent, report.delivered, report.gaps, report.unexpected) == (4, 4, 0, 1)


def test_records_the_reader_never_saw_make_the_check_incomplete():
    checker = GapChecker()
    for offset, event_id in [(0, 1), (1, 2), (5, 6)]:
        checker.add_line(dump_line(offset, "a", event_id))
    report = checker.report({"a": Expected(6)})
    assert report.offset_skips == {("t", 0): 3} and not report.complete()


def test_values_that_look_like_headers_do_not_fool_the_fast_path():
    checker = GapChecker()
    checker.add_line(dump_line(0, "a", 1, value='["sse.id","999"] ["sse.stream","evil"] \\ " \u2713'))
    checker.add_line(dump_line(1, "a", 2, value="\x00\ufffd"))
    checker.add_line(dump_line(2, "we\"ird", 1))
    checker.add_line(dump_line(3, "a", None, id_b64=True))
    report = checker.report({"a": Expected(2), 'we"ird': Expected(1)})
    by_name = {s.stream: s for s in report.streams}
    assert set(by_name) == {"a", 'we"ird'}
    assert by_name["a"].delivered == 2 and by_name["a"].unexpected == 1 and by_name['we"ird'].delivered == 1


def test_the_command_line_exits_1_on_gaps():
    ids = [i for i in range(1, 11) if i != 5]
    lines = "\n".join(dump_line(offset, "a", event_id) for offset, event_id in enumerate(ids)) + "\n"
    done = subprocess.run([sys.executable, str(CHECKER), "--expect", "a=10"], input=lines,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "gaps=1" in done.stdout and "missing=5" in done.stdout, done.stdout
    done = subprocess.run([sys.executable, str(CHECKER), "--expect-any", "9", "--exclude", "5"], input=lines,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
