"""End-to-end tests of record keys and formats (interface.md, "What lands in Kafka" and "Routing
and record formats"): `key: json:POINTER` with every `key_fallback`, the CloudEvents binary and
structured formats (checked as a CloudEvents Kafka-binding consumer would), the envelope,
`record_headers` merging and clashes, JSON that stays valid for nasty data, and the example
records of docs/record-formats.md against a real run."""
# ctest-timeout: 200

import json
import os
from pathlib import Path

from formats_support import (DOC_PATH, EXAMPLE_EVENT, EXAMPLE_FORMATS, EXAMPLE_TOPICS, EXAMPLE_URL_PATH,
                             RFC3339_UTC_MILLIS, Kafka, TimeWindow, by_stream, check_config,
                             cloudevents_binding_problems, documented_records, events_route,
                             example_defaults, example_streams, expected_sse_headers, header_once,
                             line_of, mask_times, records_ok_as_text, render_record, sse_headers,
                             strict_json, utc_seconds, with_userinfo)

FAST = {"initial_delay": "100ms", "max_delay": "1s"}
JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
STRUCTURED_TYPE = "application/cloudevents+json; charset=UTF-8"
CE_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type")


def is_json_text(data: str) -> bool:
    try:
        strict_json(data)
        return True
    except AssertionError:
        return False


def run_streams(make_broker, upstream, config_for, start_bridge, topic, path, chunks, streams, expected_each,
                defaults=None, env=None):
    """Serves `chunks` at `path`, runs a bridge whose `streams` all read it into `topic` (one
    partition), waits for `expected_each` records per stream, stops the bridge, and returns
    ({stream: [records]}, bridge, window)."""
    broker = make_broker(topics=[topic + ":1"])
    kafka = Kafka(broker.bootstrap)
    upstream.route(path, events_route(chunks))
    window = TimeWindow()
    bridge = start_bridge(config_for(broker, streams, defaults=dict({"reconnect": FAST, "topic": topic},
                                                                      **(defaults or {}))), env=env)
    kafka.wait_for_records(topic, expected_each * len(streams), timeout=25, bridge=bridge)
    window.close()
    assert bridge.stop() == 0, bridge.describe()
    records = kafka.all_records(topic)
    grouped = by_stream(records)
    assert sorted(grouped) == sorted(s["name"] for s in streams), bridge.describe()
    for name, got in grouped.items():
        assert len(got) == expected_each, "%s: %d records, expected %d: %r\n%s" % (
            name, len(got), expected_each, [(r.key, r.value) for r in got], bridge.describe())
    records_ok_as_text(records)
    return grouped, bridge, window


# ----------------------------------------------------------------------------- key: json:POINTER

FELL_BACK = object()
# (SSE bytes, type, last event ID, the key json:/meta/id gives: a string, FELL_BACK, or a check)
KEY_CASES = [
    (b'data: {"meta":{"id":"abc"}}\n\n', "message", "", "abc"),
    (b'id: 7\ndata: {"meta":{"id":42}}\n\n', "message", "7", "42"),
    (b'data: {"meta":{"id":true}}\n\n', "message", "7", "true"),
    (b'data: {"meta":{"id":{"a":[1,"x"]}}}\n\n', "message", "7", '{"a":[1,"x"]}'),
    (b'data: {"meta":{"id":[1,2]}}\n\n', "message", "7", "[1,2]"),
    (b'data: {"meta":{"id":"caf\\u00e9 \\"q\\""}}\n\n', "message", "7", 'caf\u00e9 "q"'),
    (b'data: {"meta":\ndata:  {"id": "multi"}}\n\n', "message", "7", "multi"),      # two lines: LF inside
    (b'data: {"meta": {"id": { "b" : [ 1 , false ] }}}\n\n', "message", "7",
     lambda key: json.loads(key) == {"b": [1, False]} and " " not in key),          # an object's JSON text
    (b'event: miss\ndata: {"meta":{}}\n\n', "miss", "7", FELL_BACK),                 # missing member
    (b'data: {"meta":{"id":null}}\n\n', "message", "7", FELL_BACK),                  # null
    (b'data: not json\n\n', "message", "7", FELL_BACK),
    (b'data: 42\n\n', "message", "7", FELL_BACK),                                    # JSON, no member
    (b'data: {"meta":{"id":"x"}} trailing\n\n', "message", "7", FELL_BACK),          # not one JSON text
    (b'id\ndata: {"meta":{"id":-7}}\n\n', "message", "", "-7"),                      # `id` alone resets the ID
    (b'event: gone\ndata: {"meta":[]}\n\n', "gone", "", FELL_BACK),                   # fallback with an empty ID
    (b'id: 17\ndata: {"meta":{"id":"0"},"x":1}\n\n', "message", "17", "0"),
]
FALLBACKS = {
    "kj-default": lambda stream, event, event_id: stream,        # key_fallback: stream is the default
    "kj-none": lambda stream, event, event_id: None,
    "kj-id": lambda stream, event, event_id: event_id or None,
    "kj-event": lambda stream, event, event_id: event,
}


def test_json_pointer_keys_and_every_fallback(make_broker, upstream, config_for, start_bridge):
    streams = []
    for name in FALLBACKS:
        stream = {"name": name, "url": upstream.url("/keys"), "key": "json:/meta/id"}
        if name != "kj-default":
            stream["key_fallback"] = name[3:]
        streams.append(stream)
    grouped, bridge, _ = run_streams(make_broker, upstream, config_for, start_bridge, "keys", "/keys",
                                     [case[0] for case in KEY_CASES], streams, len(KEY_CASES))
    for name, fallback in FALLBACKS.items():
        for record, (chunk, event, event_id, key) in zip(grouped[name], KEY_CASES):
            where = "%s: %r -> key %r" % (name, chunk, record.key)
            assert sse_headers(record) == expected_sse_headers(name, event, event_id), where
            if key is FELL_BACK:
                assert record.key == fallback(name, event, event_id), where
            elif callable(key):
                assert record.key is not None and key(record.key), where
            else:
                assert record.key == key, where
        # The value stays the data: a key setting changes nothing else.
        assert [r.value for r in grouped[name]][:2] == ['{"meta":{"id":"abc"}}', '{"meta":{"id":42}}']


# ----------------------------------------------------------------------------- CloudEvents

# (SSE bytes, data, type, last event ID, whether the block set the ID)
CE_CASES = [
    (b'event: edit\nid: e1\ndata: {"a":1}\n\n', '{"a":1}', "edit", "e1", True),
    (b'data: plain text\n\n', "plain text", "message", "e1", False),
    (b'data: 42\n\n', "42", "message", "e1", False),                   # bare scalars are JSON texts
    (b'data: "quoted"\n\n', '"quoted"', "message", "e1", False),
    (b'data:\n\n', "", "message", "e1", False),                        # empty data is not JSON
    (b'id\ndata: after reset\n\n', "after reset", "message", "", False),
    (b'event: log\nid: e7\ndata: [1, 2]\n\n', "[1, 2]", "log", "e7", True),
    (b'data: {"broken": \n\n', '{"broken": ', "message", "e7", False),
    (b'event: edit\nid: e9\ndata:  true \n\n', " true ", "edit", "e9", True),
    (b'data: {"a":\ndata: [true, null, "x"]}\n\n', '{"a":\n[true, null, "x"]}', "message", "e9", False),
]


def check_ce_id(ce_id, case, where):
    _, _, _, event_id, id_in_block = case
    assert isinstance(ce_id, str) and ce_id, where
    if id_in_block:
        assert ce_id == event_id, where
    else:
        # Unique per event: never the inherited ID of an earlier event that set it.
        assert ce_id not in {c[3] for c in CE_CASES if c[4]}, where


def check_time(text, record, window, where):
    seconds = utc_seconds(text)
    window.check(seconds, where)
    # The dispatch time, like the record's timestamp.
    assert abs(seconds * 1000 - record.timestamp_ms) <= 1000, "%s vs timestamp %d" % (where, record.timestamp_ms)


def test_cloudevents_binary(make_broker, upstream, config_for, start_bridge):
    secret_url = with_userinfo(upstream.url("/ce?x=1"), "feeduser:s3cret-pass")
    streams = [
        {"name": "ce-bin", "url": secret_url, "format": "cloudevents-binary",
         "cloudevents": {"type_prefix": "org.example."}},
        {"name": "ce-bin-conf", "url": upstream.url("/ce"), "format": "cloudevents-binary",
         "cloudevents": {"source": "urn:example:feed", "content_type": "application/vnd.example+json"}},
    ]
    grouped, bridge, window = run_streams(make_broker, upstream, config_for, start_bridge, "ce.binary", "/ce",
                                          [c[0] for c in CE_CASES], streams, len(CE_CASES))
    settings = {
        # The stream URL without its userinfo and query (a query may hold a credential);
        # content type detected from the data.
        "ce-bin": (upstream.url("/ce"), "org.example.", None),
        "ce-bin-conf": ("urn:example:feed", "", "application/vnd.example+json"),
    }
    for name, (source, prefix, content_type) in settings.items():
        for record, case in zip(grouped[name], CE_CASES):
            chunk, data, event, event_id, _ = case
            where = "%s: %r -> %r %r" % (name, chunk, record.headers, record.value)
            assert sse_headers(record) == expected_sse_headers(name, event, event_id), where
            # Each CloudEvents header once, nothing else besides the sse.* ones.
            names = [h for h, _ in record.headers if not h.startswith("sse.")]
            assert sorted(names) == sorted(CE_HEADERS), where
            assert header_once(record, "ce_specversion") == "1.0", where
            check_ce_id(header_once(record, "ce_id"), case, where)
            assert header_once(record, "ce_source") == source, where
            assert header_once(record, "ce_type") == prefix + event, where
            check_time(header_once(record, "ce_time"), record, window, where)
            expected_type = content_type or (JSON_TYPE if is_json_text(data) else TEXT_TYPE)
            assert header_once(record, "content-type") == expected_type, where
            assert record.value == data, where
            assert record.key == name, where
    all_records = grouped["ce-bin"] + grouped["ce-bin-conf"]
    assert cloudevents_binding_problems(all_records) == [], bridge.describe()
    # The URL's password shows neither in the records nor in the logs.
    assert "s3cret-pass" not in json.dumps([r.headers for r in all_records])
    assert "s3cret-pass" not in bridge.logs(), bridge.describe()


STRUCTURED_MEMBERS = {"specversion", "id", "source", "type", "time", "datacontenttype", "data"}


def test_cloudevents_structured(make_broker, upstream, config_for, start_bridge):
    streams = [
        {"name": "ce-struct", "url": upstream.url("/ce"), "format": "cloudevents-structured",
         "cloudevents": {"type_prefix": "com.example.sse."}},
        # A configured non-JSON content type: JSON data is still embedded as JSON (interface.md).
        {"name": "ce-struct-text", "url": upstream.url("/ce"), "format": "cloudevents-structured",
         "cloudevents": {"source": "/feeds/text", "content_type": "text/plain"}},
    ]
    grouped, bridge, window = run_streams(make_broker, upstream, config_for, start_bridge, "ce.structured", "/ce",
                                          [c[0] for c in CE_CASES], streams, len(CE_CASES))
    settings = {
        "ce-struct": (upstream.url("/ce"), "com.example.sse.", None),
        "ce-struct-text": ("/feeds/text", "", "text/plain"),
    }
    for name, (source, prefix, content_type) in settings.items():
        for record, case in zip(grouped[name], CE_CASES):
            chunk, data, event, event_id, _ = case
            where = "%s: %r -> %r %r" % (name, chunk, record.headers, record.value)
            assert sse_headers(record) == expected_sse_headers(name, event, event_id), where
            assert header_once(record, "content-type") == STRUCTURED_TYPE, where
            value = strict_json(record.value, where)
            assert isinstance(value, dict) and set(value) == STRUCTURED_MEMBERS, where
            assert value["specversion"] == "1.0", where
            check_ce_id(value["id"], case, where)
            assert value["source"] == source, where
            assert value["type"] == prefix + event, where
            check_time(value["time"], record, window, where)
            data_is_json = is_json_text(data)
            assert value["datacontenttype"] == (content_type or (JSON_TYPE if data_is_json else TEXT_TYPE)), where
            if data_is_json:
                assert value["data"] == strict_json(data), where
                assert '"data":' + data in record.value, where      # embedded byte for byte
                assert not isinstance(value["data"], str) or data.strip().startswith('"'), where
            else:
                assert value["data"] == data, where
            assert record.key == name, where
    assert cloudevents_binding_problems(grouped["ce-struct"] + grouped["ce-struct-text"]) == [], bridge.describe()


# ----------------------------------------------------------------------------- envelope

# (SSE bytes, data, type, last event ID)
ENVELOPE_CASES = [
    (b'data: first\n\n', "first", "message", ""),
    (b'event: edit\nid: 10\ndata: {"a": 1}\n\n', '{"a": 1}', "edit", "10"),      # JSON data stays a string
    (b'data: line one\ndata: line two\n\n', "line one\nline two", "message", "10"),
    (b'id\ndata: reset\n\n', "reset", "message", ""),
    (b'event: log\nid: 0\ndata:\n\n', "", "log", "0"),
]
ENVELOPE_MEMBERS = {"stream", "event", "id", "data", "received_at"}


def test_envelope(make_broker, upstream, config_for, start_bridge):
    streams = [{"name": "env", "url": upstream.url("/env"), "format": "envelope"}]
    grouped, bridge, window = run_streams(make_broker, upstream, config_for, start_bridge, "envelope", "/env",
                                          [c[0] for c in ENVELOPE_CASES], streams, len(ENVELOPE_CASES))
    for record, (chunk, data, event, event_id) in zip(grouped["env"], ENVELOPE_CASES):
        where = "%r -> %r" % (chunk, record.value)
        assert sse_headers(record) == expected_sse_headers("env", event, event_id), where
        assert not [h for h, _ in record.headers if h.startswith("ce_")], where
        value = strict_json(record.value, where)
        assert isinstance(value, dict) and set(value) == ENVELOPE_MEMBERS, where
        assert value["stream"] == "env" and value["event"] == event, where
        assert value["id"] == (event_id or None), where
        assert value["data"] == data, where
        assert RFC3339_UTC_MILLIS.match(value["received_at"]), where
        check_time(value["received_at"], record, window, where)
        assert record.key == "env", where


# ----------------------------------------------------------------------------- record_headers

def test_record_headers_merge_defaults_and_stream(make_broker, upstream, config_for, start_bridge):
    streams = [
        {"name": "rh-raw", "url": upstream.url("/rh"), "record_headers": {"team": "bridge", "owner": "${E2E_OWNER}"}},
        {"name": "rh-bin", "url": upstream.url("/rh"), "format": "cloudevents-binary",
         "record_headers": {"extra": "x y"}},
        {"name": "rh-plain", "url": upstream.url("/rh")},
    ]
    chunks = [b'id: 1\ndata: {"n":1}\n\n', b'data: two\n\n']
    grouped, bridge, _ = run_streams(make_broker, upstream, config_for, start_bridge, "rh", "/rh", chunks, streams,
                                     2, defaults={"record_headers": {"source": "wikimedia", "team": "ingest"}},
                                     env={"E2E_OWNER": "alice"})
    expected = {
        "rh-raw": {"source": "wikimedia", "team": "bridge", "owner": "alice"},
        "rh-bin": {"source": "wikimedia", "team": "ingest", "extra": "x y"},
        "rh-plain": {"source": "wikimedia", "team": "ingest"},
    }
    for name, headers in expected.items():
        for record in grouped[name]:
            where = "%s: %r" % (name, record.headers)
            own = {h: v for h, v in record.headers if not h.startswith(("sse.", "ce_")) and h != "content-type"}
            assert own == headers, where
            for header in headers:
                assert header_once(record, header) == headers[header], where
            assert sse_headers(record)["sse.stream"] == name, where
        assert [r.value for r in grouped[name]] == ['{"n":1}', "two"]
    for record in grouped["rh-bin"]:
        assert header_once(record, "ce_specversion") == "1.0", record.headers
    assert cloudevents_binding_problems(grouped["rh-bin"]) == []


HEADER_CLASHES = """\
kafka:
  brokers: "127.0.0.1:9092"
state:
  dir: {state}
defaults:
  topic: t.default
  record_headers: {{ source: ok, ce_source: mine }}
streams:
  - name: one
    url: http://127.0.0.1:9/one
    record_headers:
      sse.stream: a
      sse.custom: b
      content-type: c
      Content-Type: d
      ce_id: e
      sse: fine
      ce-id: fine
      content-type-x: fine
"""


def test_record_header_clashes_are_config_errors(tmp_path):
    text = HEADER_CLASHES.format(state=tmp_path / "state")
    status, output, problems, _ = check_config(tmp_path, text)
    assert status == 2, output
    got = sorted((p.line, p.path) for p in problems)
    assert got == sorted([
        (line_of(text, "ce_source: mine"), "defaults.record_headers.ce_source"),
        (line_of(text, "sse.stream: a"), "streams[0].record_headers.sse.stream"),
        (line_of(text, "sse.custom: b"), "streams[0].record_headers.sse.custom"),
        (line_of(text, "content-type: c"), "streams[0].record_headers.content-type"),
        (line_of(text, "Content-Type: d"), "streams[0].record_headers.Content-Type"),
        (line_of(text, "ce_id: e"), "streams[0].record_headers.ce_id"),
    ]), output
    for problem in problems:
        if problem.path.startswith("streams"):
            assert problem.col == 7, output   # the header name's column
    # Without the clashing names the same file is valid.
    clashing = ("sse.stream: a", "sse.custom: b", "content-type: c", "Content-Type: d", "ce_id: e")
    kept = "".join(line + "\n" for line in text.splitlines() if line.strip() not in clashing)
    status, output, problems, _ = check_config(tmp_path, kept.replace(", ce_source: mine", ""), name="valid.yaml")
    assert status == 0 and problems == [], output


# ----------------------------------------------------------------------------- nasty data

# (SSE bytes as the upstream sends them, data, type, last event ID, whether the block set the ID,
#  the key json:/k gives or None when it falls back)
NASTY_CASES = [
    (b'data: quote " backslash \\ slash / tab \t ctl \x01\x1f del \x7f nul \x00 vt \x0b ff \x0c\n' +
     "data: u2028 \u2028 u2029 \u2029 emoji \U0001F600 \u00e9 \u2713\n\n".encode("utf-8"),
     'quote " backslash \\ slash / tab \t ctl \x01\x1f del \x7f nul \x00 vt \x0b ff \x0c\n'
     "u2028 \u2028 u2029 \u2029 emoji \U0001F600 \u00e9 \u2713", "message", "", False, None),
    # Invalid UTF-8 from the upstream: each maximal ill-formed subpart becomes one U+FFFD.
    (b'data: bad \xff end | lone \xc3 x | overlong \xc0\xaf | surrogate \xed\xa0\x80 | '
     b'truncated \xf0\x9f\x98 x | cont \x80\x80 | max \xf4\x90\x80\x80\n\n',
     "bad \ufffd end | lone \ufffd x | overlong \ufffd\ufffd | surrogate \ufffd\ufffd\ufffd | "
     "truncated \ufffd x | cont \ufffd\ufffd | max \ufffd\ufffd\ufffd\ufffd", "message", "", False, None),
    (b'data: {"k":"a\\"b\\\\c\\u0001\\u00e9\\ud83d\\ude00","t":"\xf0\x9f\x98\x80","bad":"\xff"}\n\n',
     '{"k":"a\\"b\\\\c\\u0001\\u00e9\\ud83d\\ude00","t":"\U0001F600","bad":"\ufffd"}', "message", "", False,
     'a"b\\c\x01\u00e9\U0001F600'),
    (b'event: type "q" \\ \xc3\xa9\nid: id"\\\xf0\x9f\x98\x80\ndata: typed\n\n',
     "typed", 'type "q" \\ \u00e9', 'id"\\\U0001F600', True, None),
    (b'event: bad\xfftype\nid: bad\xfeid\ndata: {"k":"\xe2\x80"}\n\n',
     '{"k":"\ufffd"}', "bad\ufffdtype", "bad\ufffdid", True, "\ufffd"),
    (b'data: cr\r\ndata: lf\rdata: end\r\n\r\n', "cr\nlf\nend", "message", "bad\ufffdid", False, None),
    (b'data: {"k":"\\u0000 nul escape"}\n\n', '{"k":"\\u0000 nul escape"}', "message", "bad\ufffdid", False,
     "\x00 nul escape"),
]
NASTY_FORMATS = {"nasty-raw": "raw", "nasty-bin": "cloudevents-binary", "nasty-struct": "cloudevents-structured",
                 "nasty-env": "envelope"}


def test_json_stays_valid_for_nasty_data(make_broker, upstream, config_for, start_bridge):
    streams = [{"name": name, "url": upstream.url("/nasty"), "format": fmt, "key": "json:/k"}
               for name, fmt in NASTY_FORMATS.items()]
    grouped, bridge, _ = run_streams(make_broker, upstream, config_for, start_bridge, "nasty", "/nasty",
                                     [c[0] for c in NASTY_CASES], streams, len(NASTY_CASES))
    for name, fmt in NASTY_FORMATS.items():
        for record, case in zip(grouped[name], NASTY_CASES):
            chunk, data, event, event_id, id_in_block, key = case
            where = "%s: %r -> key %r headers %r value %r" % (name, chunk, record.key, record.headers, record.value)
            assert sse_headers(record) == expected_sse_headers(name, event, event_id), where
            assert record.key == (name if key is None else key), where
            if fmt == "raw":
                assert record.value == data, where
            elif fmt == "cloudevents-binary":
                assert record.value == data, where
                assert header_once(record, "ce_type") == event, where
                if id_in_block:
                    assert header_once(record, "ce_id") == event_id, where
                assert header_once(record, "content-type") == (JSON_TYPE if is_json_text(data) else TEXT_TYPE), where
            elif fmt == "cloudevents-structured":
                value = strict_json(record.value, where)
                assert value["type"] == event, where
                if id_in_block:
                    assert value["id"] == event_id, where
                assert value["data"] == (strict_json(data) if is_json_text(data) else data), where
            else:
                value = strict_json(record.value, where)
                assert (value["event"], value["id"], value["data"]) == (event, event_id or None, data), where
    # Checked apart: both streams read the same URL, so they rightly give the same (source, id).
    for name in ("nasty-bin", "nasty-struct"):
        assert cloudevents_binding_problems(grouped[name]) == [], bridge.describe()


# ----------------------------------------------------------------------------- the documented examples

def test_documented_example_records_come_from_a_real_run(make_broker, upstream, config_for, start_bridge):
    """docs/record-formats.md shows these records; they must stay what the bridge produces.
    SSE2KAFKA_FORMATS_EXAMPLES_OUT=FILE writes the rendered records there, to refresh the doc."""
    broker = make_broker(topics=[t + ":1" for t in EXAMPLE_TOPICS])
    kafka = Kafka(broker.bootstrap)
    upstream.route(EXAMPLE_URL_PATH, events_route([EXAMPLE_EVENT]))
    bridge = start_bridge(config_for(broker, example_streams(upstream.url(EXAMPLE_URL_PATH)),
                                     defaults=example_defaults(FAST)))
    for topic in EXAMPLE_TOPICS:
        kafka.wait_for_records(topic, len(EXAMPLE_FORMATS), timeout=25, bridge=bridge)
    assert bridge.stop() == 0, bridge.describe()
    rendered = {}
    for topic, suffix in zip(EXAMPLE_TOPICS, ("", ".other")):
        for name, records in by_stream(kafka.all_records(topic)).items():
            assert len(records) == 1, (topic, name, records)
            rendered[name + suffix] = render_record(records[0])
    assert len(rendered) == 2 * len(EXAMPLE_FORMATS), sorted(rendered)

    out = os.environ.get("SSE2KAFKA_FORMATS_EXAMPLES_OUT")
    if out:
        Path(out).write_text("".join("<!-- record: %s -->\n```text\n%s\n```\n\n" % (name, text)
                                     for name, text in sorted(rendered.items())), encoding="utf-8")
    documented = documented_records(DOC_PATH.read_text(encoding="utf-8"))
    missing = [name for name in EXAMPLE_FORMATS if name not in documented]
    assert not missing, "%s has no `<!-- record: NAME -->` block for %s" % (DOC_PATH, missing)
    for name, text in documented.items():
        assert name in rendered, "%s documents %s, which the example run does not produce" % (DOC_PATH, name)
        assert mask_times(text) == mask_times(rendered[name]), \
            "%s's %s record differs from a real run:\n--- documented\n%s\n--- produced\n%s" % (
                DOC_PATH.name, name, text, rendered[name])


# ----------------------------------------------------------------------------- ce id across restarts

def test_generated_cloudevent_ids_stay_unique_across_a_restart(make_broker, upstream, config_for, start_bridge):
    """ce_id of an event whose block set no ID is "a value unique per event" (interface.md): a
    consumer that drops repeated (source, id) pairs must not lose events that come after a restart.
    Run 1 produces 1001 and two events without IDs; run 2 resumes after 1001 with two new ones."""
    broker = make_broker(topics=["ce.restart:1"])
    kafka = Kafka(broker.bootstrap)

    def feed(request):
        if request.last_event_id == "1001":
            return events_route([b"data: run 2 first\n\n", b"data: run 2 second\n\n"])
        return events_route([b"id: 1001\ndata: run 1 first\n\n", b"data: run 1 second\n\n",
                             b"data: run 1 third\n\n"])
    upstream.route("/feed", feed)
    config = config_for(broker, [
        {"name": "ce-restart-bin", "url": upstream.url("/feed"), "format": "cloudevents-binary"},
        {"name": "ce-restart-struct", "url": upstream.url("/feed?s"), "format": "cloudevents-structured"},
    ], defaults={"reconnect": FAST, "topic": "ce.restart"})

    first_run = start_bridge(config)
    kafka.wait_for_records("ce.restart", 6, timeout=25, bridge=first_run)
    assert first_run.stop() == 0, first_run.describe()
    second_run = start_bridge(config)
    kafka.wait_for_records("ce.restart", 10, timeout=25, bridge=second_run)
    assert [r.last_event_id for r in upstream.requests("/feed")] == [None, None, "1001", "1001"]
    assert second_run.stop() == 0, second_run.describe()

    grouped = by_stream(kafka.all_records("ce.restart"))
    for name, records in grouped.items():
        ids = [header_once(r, "ce_id") if name.endswith("bin") else strict_json(r.value)["id"] for r in records]
        assert ids[0] == "1001", ids
        assert cloudevents_binding_problems(records) == [], "%s: ce ids %r\n%s" % (name, ids, second_run.describe())
