"""No configured credential — in a header, a librdkafka property, URL userinfo or the query
string — appears in any log line (at trace level), admin endpoint or Kafka record, in any record
format; the requests that reach the upstream still carry every one of them
(interface.md "The executable", secrets; README "Secrets")."""
# ctest-timeout: 200

import json
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from fleet_support import free_port  # noqa: E402
from harness import wait_until  # noqa: E402
from sse_upstream import NumberedRoute, redirect  # noqa: E402

FORMATS = ["raw", "cloudevents-binary", "cloudevents-structured", "envelope"]
SECRETS = {
    "query": "QSECRETapikey1",         # ?api_key= in the URL (built-in secret name)
    "query_map": "QSECRETmap2",        # `query:` from ${ENV}
    "query_file": "QSECRETfile3",      # `query_from_files:`
    "header": "HSECRETbearer4",        # a header value
    "marked": "QSECRETmarked5",        # a parameter named in secret_query_params
    "userinfo": "USECRETpass6",        # user:password@ in the URL
    "redirect": "RSECRETtarget7",      # in a redirect target's query
    "bad_redirect": "RSECRETbad8",     # in an unusable Location
    "property": "KSECRETsasl9",        # sasl.password
}


def http_get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as reply:
        return reply.read().decode("utf-8", "replace")


def find_secrets(text):
    return [name for name, value in SECRETS.items() if value in text]


def test_no_secret_leaves_the_process_but_every_one_reaches_the_upstream(broker, kafka, upstream, config_for,
                                                                          start_bridge, tmp_path):
    admin = free_port()
    token_file = tmp_path / "sig"
    token_file.write_text(SECRETS["query_file"] + "\n")
    base = upstream.base_url.replace("http://", "http://reader:%s@" % SECRETS["userinfo"])
    streams = []
    for fmt in FORMATS:
        path = "/feed-" + fmt
        upstream.route(path, NumberedRoute(end=3, at_end="hang"))
        streams.append({
            "name": fmt, "url": "%s%s?since=now&api_key=%s&account=%s" % (base, path, SECRETS["query"],
                                                                          SECRETS["marked"]),
            "topic": "secrets." + fmt, "format": fmt,
            "query": {"access_token": "${FEED_TOKEN}"},
            "query_from_files": {"sig": str(token_file)},
            "headers": {"Authorization": "Bearer " + SECRETS["header"]},
            "secret_query_params": ["account"],
        })
    # A redirect to a target with a token in its query, and one to an unusable Location.
    upstream.route("/go", redirect(upstream.url("/target?token=" + SECRETS["redirect"])))
    upstream.route("/target", NumberedRoute(end=3, at_end="hang"))
    upstream.route("/broken", redirect("http://[::1/x?token=" + SECRETS["bad_redirect"]))
    streams.append({"name": "redirected", "url": upstream.url("/go"), "topic": "secrets.redirected",
                    "format": "cloudevents-binary"})
    streams.append({"name": "broken", "url": upstream.url("/broken"), "topic": "secrets.broken"})
    config = config_for(broker, streams, admin={"listen": "127.0.0.1:%d" % admin})
    config["kafka"]["properties"].update({"sasl.username": "bridge", "sasl.password": SECRETS["property"]})
    bridge = start_bridge(config, args=["--log-level", "trace"], env={"FEED_TOKEN": SECRETS["query_map"]})

    for fmt in FORMATS + ["redirected"]:
        kafka.wait_for_records("secrets." + fmt, 3, timeout=20, bridge=bridge)
    upstream.wait_for_requests(2, timeout=15, path="/broken")
    bridge.wait_for_log(r"\[broken\] .*redirect to an unusable Location", timeout=10)

    # The upstream got every credential.
    for fmt in FORMATS:
        request = upstream.requests("/feed-" + fmt)[0]
        for name in ("query", "query_map", "query_file", "marked"):
            assert SECRETS[name] in request.query, (name, request.target)
        assert request.headers.get("Authorization") == "Bearer " + SECRETS["header"]
    assert SECRETS["redirect"] in upstream.requests("/target")[0].query

    # Nothing anywhere else.
    streams_json = http_get(admin, "/streams")
    metrics_text = http_get(admin, "/metrics")
    records = kafka.all_records(["secrets." + f for f in FORMATS + ["redirected", "broken"]])
    record_text = json.dumps([[r.key, r.value, r.headers] for r in records])
    assert bridge.stop() == 0, bridge.describe()
    logs = bridge.logs()
    assert "trace" in logs or "debug" in logs, "the run did not log at trace/debug level"
    for where, text in (("logs", logs), ("/streams", streams_json), ("/metrics", metrics_text),
                        ("records", record_text)):
        found = find_secrets(text)
        assert not found, "%s in %s:\n%s" % (found, where, text[-3000:])

    # What is shown instead.
    shown = {s["name"]: s["url"] for s in json.loads(streams_json)}
    assert shown["raw"] == "%s/feed-raw?since=now&api_key=***&account=***&access_token=***&sig=***" % (
        upstream.base_url), shown
    sources = {r.header("ce_source") for r in records if r.topic == "secrets.cloudevents-binary"}
    assert sources == {upstream.url("/feed-cloudevents-binary")}, sources
    structured = {json.loads(r.value)["source"] for r in records if r.topic == "secrets.cloudevents-structured"}
    assert structured == {upstream.url("/feed-cloudevents-structured")}, structured
