// Tests of the config loader: YAML into the typed Config with defaults and `defaults:` merged,
// environment references, and every kind of problem reported with its file:line:col and key
// path, all of them at once and in file order.
#include "config/config.h"
#include "config/loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace sse2kafka::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

EnvLookup FakeEnv(std::map<std::string, std::string> variables = {}) {
  return [variables](const std::string& name) -> std::optional<std::string> {
    const auto it = variables.find(name);
    if (it == variables.end()) return std::nullopt;
    return it->second;
  };
}

LoadResult Load(std::string_view text, const EnvLookup& env = FakeEnv(),
                const PropertyValidator& validator = nullptr) {
  return LoadConfigText(text, "test.yaml", env, validator);
}

std::vector<std::string> Messages(const LoadResult& result) {
  std::vector<std::string> lines;
  for (const ConfigError& e : result.errors) lines.push_back(e.ToString());
  return lines;
}

// The one error of `text`, as "FILE:LINE:COL: PATH: message".
std::string OnlyError(std::string_view text, const EnvLookup& env = FakeEnv()) {
  const LoadResult result = Load(text, env);
  EXPECT_EQ(result.errors.size(), 1u) << ::testing::PrintToString(Messages(result));
  EXPECT_FALSE(result.config.has_value());
  return result.errors.empty() ? std::string() : result.errors.front().ToString();
}

// A valid config with one stream; tests append keys to the stream (4-space indent) or replace
// parts of it.
constexpr std::string_view kMinimal = R"(kafka:
  brokers: "k1:9092"
streams:
  - name: s
    url: http://up.example/feed
    topic: t
)";

std::string WithStreamKeys(std::string_view lines) { return std::string(kMinimal) + std::string(lines); }

// A copy: callers pass a temporary LoadResult.
StreamConfig OnlyStream(const LoadResult& result) {
  EXPECT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  if (!result.config || result.config->streams.size() != 1) return StreamConfig{};
  return result.config->streams.front();
}

// ----------------------------------------------------------------------------- valid configs

TEST(ConfigLoad, MinimalConfigGetsEveryDocumentedDefault) {
  const LoadResult result = Load(kMinimal);
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  const Config& c = *result.config;
  EXPECT_EQ(c.path, "test.yaml");
  EXPECT_EQ(c.kafka.brokers, "k1:9092");
  EXPECT_EQ(c.kafka.flush_timeout, 10s);
  EXPECT_EQ(c.kafka.max_in_flight_events, 100000u);
  EXPECT_EQ(c.kafka.max_in_flight_bytes, 64u * 1024 * 1024);
  EXPECT_TRUE(c.kafka.properties.empty());
  EXPECT_EQ(c.state.dir, "/var/lib/sse2kafka");
  EXPECT_EQ(c.state.flush_interval, 1s);
  EXPECT_EQ(c.state.on_corrupt, OnCorrupt::kFail);
  EXPECT_EQ(c.state.backend, StateBackend::kFile);
  EXPECT_EQ(c.log.level, "info");
  EXPECT_EQ(c.log.format, "text");
  EXPECT_EQ(c.log.stats_interval, 60s);
  EXPECT_EQ(c.admin.listen, "");
  ASSERT_EQ(c.streams.size(), 1u);
  StreamConfig expected;
  expected.name = "s";
  expected.url = "http://up.example/feed";
  expected.topic = "t";
  expected.location = SourceLocation{"test.yaml", 4, 5};
  EXPECT_TRUE(c.streams[0] == expected);
}

TEST(ConfigLoad, StateDirDefaultsToTheServiceManagersStateDirectory) {
  EXPECT_EQ(Load(kMinimal, FakeEnv({{"STATE_DIRECTORY", "/var/lib/private/s2k"}})).config->state.dir,
            "/var/lib/private/s2k");
  // systemd joins several StateDirectory= entries with colons; the first is ours.
  EXPECT_EQ(Load(kMinimal, FakeEnv({{"STATE_DIRECTORY", "/a:/b"}})).config->state.dir, "/a");
  EXPECT_EQ(Load(kMinimal, FakeEnv({{"STATE_DIRECTORY", ""}})).config->state.dir, "/var/lib/sse2kafka");
  const std::string text = std::string(kMinimal) + "state:\n  dir: /srv/state\n";
  EXPECT_EQ(Load(text, FakeEnv({{"STATE_DIRECTORY", "/a"}})).config->state.dir, "/srv/state");
}

TEST(ConfigLoad, FullConfigRoundTripsIntoTheStructs) {
  const std::string text = R"(kafka:
  brokers: "k1:9092,k2:9092"
  flush_timeout: 2500ms
  max_in_flight_events: 5000
  max_in_flight_bytes: 8MiB
  properties:
    compression.type: lz4
    linger.ms: 5
    enable.idempotence: true
    sasl.password: hunter2
state:
  dir: /tmp/s2k
  flush_interval: 250ms
  on_corrupt: reset
  backend: file
  topic: _state
  partitions: 6
  replication_factor: 3
log:
  level: debug
  format: json
  stats_interval: 0
admin:
  listen: 127.0.0.1:9100
streams:
  - name: wiki.recent_change-1
    url: https://user:pw@stream.example.org:8443/v2/stream?x=1
    method: POST
    headers:
      Authorization: Bearer abc
      X-Count: 5
    headers_from_files:
      X-Api-Key: /run/secrets/key
    body: '{"stream":true}'
    topics: { edit: wiki.edits, "*": wiki.other }
    key: json:/meta/id
    key_fallback: none
    events: [edit, log]
    format: cloudevents-binary
    cloudevents: { source: "https://example.org/feeds/wiki", type_prefix: org.example., content_type: application/json }
    record_headers: { source: wikimedia, env: prod }
    resume: false
    idle_timeout: 90s
    connect_timeout: 3s
    reconnect: { initial_delay: 2s, max_delay: 1m, reset_after: 5m, max_retry_after: 1h }
    max_event_size: 2MiB
    max_event_id_size: 1KiB
    tls: { ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, insecure_skip_verify: true }
    proxy: http://proxy:3128
    http_version: "2"
    redirect_headers: keep
    last_event_id_param: since
    on_end: stop
    stop_on_data: "[DONE]"
)";
  const LoadResult result = Load(text);
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  const Config& c = *result.config;
  EXPECT_EQ(c.kafka.brokers, "k1:9092,k2:9092");
  EXPECT_EQ(c.kafka.flush_timeout, 2500ms);
  EXPECT_EQ(c.kafka.max_in_flight_events, 5000u);
  EXPECT_EQ(c.kafka.max_in_flight_bytes, 8u << 20);
  EXPECT_THAT(c.kafka.properties,
              ElementsAre(Header{"compression.type", "lz4"}, Header{"linger.ms", "5"},
                          Header{"enable.idempotence", "true"}, Header{"sasl.password", "hunter2"}));
  EXPECT_EQ(c.state.dir, "/tmp/s2k");
  EXPECT_EQ(c.state.flush_interval, 250ms);
  EXPECT_EQ(c.state.on_corrupt, OnCorrupt::kReset);
  EXPECT_EQ(c.state.topic, "_state");
  EXPECT_EQ(c.state.partitions, 6);
  EXPECT_EQ(c.state.replication_factor, 3);
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.log.format, "json");
  EXPECT_EQ(c.log.stats_interval, 0ms);
  EXPECT_EQ(c.admin.listen, "127.0.0.1:9100");
  ASSERT_EQ(c.streams.size(), 1u);
  const StreamConfig& s = c.streams[0];
  EXPECT_EQ(s.name, "wiki.recent_change-1");
  EXPECT_EQ(s.url, "https://user:pw@stream.example.org:8443/v2/stream?x=1");
  EXPECT_EQ(s.method, "POST");
  EXPECT_THAT(s.headers, ElementsAre(Header{"Authorization", "Bearer abc"}, Header{"X-Count", "5"}));
  EXPECT_THAT(s.headers_from_files, ElementsAre(Header{"X-Api-Key", "/run/secrets/key"}));
  EXPECT_EQ(s.body, std::optional<std::string>(R"({"stream":true})"));
  EXPECT_EQ(s.topic, "");
  ASSERT_EQ(s.topics.size(), 2u);
  EXPECT_TRUE(s.topics[0] == (TopicRoute{"edit", "wiki.edits"}));
  EXPECT_TRUE(s.topics[1] == (TopicRoute{"*", "wiki.other"}));
  EXPECT_EQ(s.key, KeyMode::kJsonPointer);
  EXPECT_EQ(s.key_pointer, "/meta/id");
  EXPECT_EQ(s.key_fallback, KeyMode::kNone);
  EXPECT_EQ(s.events, (std::optional<std::vector<std::string>>({"edit", "log"})));
  EXPECT_EQ(s.format, RecordFormat::kCloudEventsBinary);
  EXPECT_EQ(s.cloudevents.source, "https://example.org/feeds/wiki");
  EXPECT_EQ(s.cloudevents.type_prefix, "org.example.");
  EXPECT_EQ(s.cloudevents.content_type, "application/json");
  EXPECT_THAT(s.record_headers, ElementsAre(Header{"source", "wikimedia"}, Header{"env", "prod"}));
  EXPECT_FALSE(s.resume);
  EXPECT_EQ(s.idle_timeout, 90s);
  EXPECT_EQ(s.connect_timeout, 3s);
  EXPECT_EQ(s.reconnect.initial_delay, 2s);
  EXPECT_EQ(s.reconnect.max_delay, 1min);
  EXPECT_EQ(s.reconnect.reset_after, 5min);
  EXPECT_EQ(s.reconnect.max_retry_after, 1h);
  EXPECT_EQ(s.max_event_size, 2u << 20);
  EXPECT_EQ(s.max_event_id_size, 1024u);
  EXPECT_EQ(s.tls.ca_file, "/ca.pem");
  EXPECT_EQ(s.tls.cert_file, "/c.pem");
  EXPECT_EQ(s.tls.key_file, "/k.pem");
  EXPECT_TRUE(s.tls.insecure_skip_verify);
  EXPECT_EQ(s.proxy, "http://proxy:3128");
  EXPECT_EQ(s.http_version, HttpVersion::kHttp2);
  EXPECT_TRUE(s.redirect_headers_keep);
  EXPECT_EQ(s.last_event_id_param, "since");
  EXPECT_EQ(s.on_end, OnEnd::kStop);
  EXPECT_EQ(s.stop_on_data, std::optional<std::string>("[DONE]"));
  EXPECT_EQ(s.location, (SourceLocation{"test.yaml", 26, 5}));
}

TEST(ConfigLoad, KeyModesAndOtherChoices) {
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    key: id\n"))).key, KeyMode::kId);
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    key: event\n"))).key, KeyMode::kEvent);
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    key: none\n"))).key, KeyMode::kNone);
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    key: stream\n"))).key, KeyMode::kStream);
  // The empty pointer is the whole document; ~0 and ~1 are the only escapes.
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    key: \"json:\"\n"))).key_pointer, "");
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    key: json:/a~0b/c~1d/0\n"))).key_pointer, "/a~0b/c~1d/0");
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    http_version: 1.1\n"))).http_version, HttpVersion::kHttp1_1);
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    format: envelope\n"))).format, RecordFormat::kEnvelope);
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    format: cloudevents-structured\n"))).format,
            RecordFormat::kCloudEventsStructured);
  EXPECT_FALSE(OnlyStream(Load(WithStreamKeys("    redirect_headers: drop\n"))).redirect_headers_keep);
  EXPECT_TRUE(OnlyStream(Load(WithStreamKeys("    resume: True\n"))).resume);
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    method: PATCH\n"))).method, "PATCH");
  // Kept as written: a method is case-sensitive.
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    method: post\n"))).method, "post");
}

TEST(ConfigLoad, BrokersMayBeAList) {
  const LoadResult result =
      Load("kafka:\n  brokers: [k1:9092, \"k2:9092\"]\nstreams: [{ name: s, url: http://h/, topic: t }]\n");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  EXPECT_EQ(result.config->kafka.brokers, "k1:9092,k2:9092");
  EXPECT_EQ(OnlyError("kafka:\n  brokers: []\nstreams: [{ name: s, url: http://h/, topic: t }]\n"),
            "test.yaml:2:12: kafka.brokers: expected at least one broker (host:port)");
}

TEST(ConfigLoad, EmptyOptionalMappingsAreAllowed) {
  const LoadResult result = Load(std::string(kMinimal) + "defaults:\nlog:\nadmin: {}\nstate: {}\n");
  EXPECT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
}

// ----------------------------------------------------------------------------- defaults merging

TEST(ConfigDefaults, ScalarsComeFromDefaultsUnlessTheStreamSetsThem) {
  const LoadResult result = Load(R"(kafka: { brokers: k }
defaults:
  topic: d.topic
  method: POST
  body: "{}"
  idle_timeout: 30s
  key: id
  format: envelope
  resume: false
  stop_on_data: END
streams:
  - name: a
    url: http://h/a
  - name: b
    url: http://h/b
    method: PUT
    idle_timeout: 0
    key: json:/id
    resume: true
)");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  const StreamConfig& a = result.config->streams[0];
  const StreamConfig& b = result.config->streams[1];
  EXPECT_EQ(a.topic, "d.topic");
  EXPECT_EQ(a.method, "POST");
  EXPECT_EQ(a.body, std::optional<std::string>("{}"));
  EXPECT_EQ(a.idle_timeout, 30s);
  EXPECT_EQ(a.key, KeyMode::kId);
  EXPECT_EQ(a.format, RecordFormat::kEnvelope);
  EXPECT_FALSE(a.resume);
  EXPECT_EQ(a.stop_on_data, std::optional<std::string>("END"));
  EXPECT_EQ(b.topic, "d.topic");
  EXPECT_EQ(b.method, "PUT");
  EXPECT_EQ(b.idle_timeout, 0ms);
  EXPECT_EQ(b.key, KeyMode::kJsonPointer);
  EXPECT_EQ(b.key_pointer, "/id");
  EXPECT_TRUE(b.resume);
  EXPECT_EQ(b.format, RecordFormat::kEnvelope);
}

TEST(ConfigDefaults, HeadersMergeByNameIgnoringCaseDefaultsFirst) {
  const StreamConfig s = OnlyStream(Load(R"(kafka: { brokers: k }
defaults:
  topic: t
  headers:
    Accept: text/event-stream
    Authorization: Bearer default
    X-Team: core
streams:
  - name: s
    url: http://h/
    headers:
      authorization: Bearer mine
      X-Extra: "1"
)"));
  EXPECT_THAT(s.headers,
              ElementsAre(Header{"Accept", "text/event-stream"}, Header{"authorization", "Bearer mine"},
                          Header{"X-Team", "core"}, Header{"X-Extra", "1"}));
}

TEST(ConfigDefaults, HeadersFromFilesReplaceInheritedHeadersAndBackAgain) {
  const LoadResult result = Load(R"(kafka: { brokers: k }
defaults:
  topic: t
  headers: { Authorization: Bearer static, X-Other: o }
  headers_from_files: { X-Key: /run/key }
streams:
  - name: a
    url: http://h/
    headers_from_files: { authorization: /run/token }
  - name: b
    url: http://h/
    headers: { x-key: inline }
)");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  const StreamConfig& a = result.config->streams[0];
  EXPECT_THAT(a.headers, ElementsAre(Header{"X-Other", "o"}));
  EXPECT_THAT(a.headers_from_files,
              ElementsAre(Header{"X-Key", "/run/key"}, Header{"authorization", "/run/token"}));
  const StreamConfig& b = result.config->streams[1];
  EXPECT_THAT(b.headers, ElementsAre(Header{"Authorization", "Bearer static"}, Header{"X-Other", "o"},
                                     Header{"x-key", "inline"}));
  EXPECT_TRUE(b.headers_from_files.empty());
}

TEST(ConfigDefaults, RecordHeadersMergeByExactName) {
  const StreamConfig s = OnlyStream(Load(R"(kafka: { brokers: k }
defaults:
  topic: t
  record_headers: { source: wikimedia, env: prod }
streams:
  - name: s
    url: http://h/
    record_headers: { env: staging, Source: other, team: x }
)"));
  EXPECT_THAT(s.record_headers, ElementsAre(Header{"source", "wikimedia"}, Header{"env", "staging"},
                                            Header{"Source", "other"}, Header{"team", "x"}));
}

TEST(ConfigDefaults, NestedMappingsMergePerSubKey) {
  const StreamConfig s = OnlyStream(Load(R"(kafka: { brokers: k }
defaults:
  topic: t
  reconnect: { initial_delay: 100ms, max_delay: 5s, reset_after: 2m }
  tls: { ca_file: /ca.pem, insecure_skip_verify: true }
  cloudevents: { source: urn:src, type_prefix: org. }
streams:
  - name: s
    url: https://h/
    reconnect: { max_delay: 9s }
    tls: { insecure_skip_verify: false, cert_file: /c.pem }
    cloudevents: { type_prefix: com. }
)"));
  EXPECT_EQ(s.reconnect.initial_delay, 100ms);
  EXPECT_EQ(s.reconnect.max_delay, 9s);
  EXPECT_EQ(s.reconnect.reset_after, 2min);
  EXPECT_EQ(s.reconnect.max_retry_after, 10min);
  EXPECT_EQ(s.tls.ca_file, "/ca.pem");
  EXPECT_EQ(s.tls.cert_file, "/c.pem");
  EXPECT_FALSE(s.tls.insecure_skip_verify);
  EXPECT_EQ(s.cloudevents.source, "urn:src");
  EXPECT_EQ(s.cloudevents.type_prefix, "com.");
  EXPECT_EQ(s.cloudevents.content_type, "");
}

TEST(ConfigDefaults, TopicAndTopicsReplaceEachOther) {
  const LoadResult result = Load(R"(kafka: { brokers: k }
defaults:
  topic: d.topic
streams:
  - name: a
    url: http://h/
    topics: { edit: edits }
  - name: b
    url: http://h/
)");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  EXPECT_EQ(result.config->streams[0].topic, "");
  ASSERT_EQ(result.config->streams[0].topics.size(), 1u);
  EXPECT_EQ(result.config->streams[0].topics[0].topic, "edits");
  EXPECT_EQ(result.config->streams[1].topic, "d.topic");

  const LoadResult reverse = Load(R"(kafka: { brokers: k }
defaults:
  topics: { "*": all }
streams:
  - name: a
    url: http://h/
    topic: mine
)");
  ASSERT_TRUE(reverse.ok()) << ::testing::PrintToString(Messages(reverse));
  EXPECT_EQ(reverse.config->streams[0].topic, "mine");
  EXPECT_TRUE(reverse.config->streams[0].topics.empty());
}

TEST(ConfigDefaults, EventsAreReplacedWhole) {
  const LoadResult result = Load(R"(kafka: { brokers: k }
defaults:
  topic: t
  events: [a, b]
streams:
  - name: x
    url: http://h/
    events: [c]
  - name: y
    url: http://h/
)");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  EXPECT_EQ(result.config->streams[0].events, (std::optional<std::vector<std::string>>({"c"})));
  EXPECT_EQ(result.config->streams[1].events, (std::optional<std::vector<std::string>>({"a", "b"})));
}

// ----------------------------------------------------------------------------- problems, one class each

TEST(ConfigErrors, YamlSyntaxErrorIsOneErrorAtTheParsersPosition) {
  const LoadResult result = Load("kafka:\n  brokers: [unclosed\nstreams: []\n");
  EXPECT_THAT(Messages(result), ElementsAre("test.yaml:3:8: invalid YAML: end of sequence flow not found"));
  EXPECT_THAT(Messages(Load("a: b: c\n")), ElementsAre("test.yaml:1:5: invalid YAML: illegal map value"));
}

// yaml-cpp 0.7's LoadAll loops forever on these (jbeder/yaml-cpp#1040).
TEST(ConfigErrors, StrayCommaAtADocumentStartIsASyntaxErrorNotAHang) {
  EXPECT_THAT(Messages(Load(",")),
              ElementsAre("test.yaml:1:1: invalid YAML: unexpected `,` where a value should start"));
  EXPECT_THAT(Messages(Load("\n  , x")),
              ElementsAre("test.yaml:2:3: invalid YAML: unexpected `,` where a value should start"));
  EXPECT_THAT(Messages(Load("---\n,\n")),
              ElementsAre("test.yaml:2:1: invalid YAML: unexpected `,` where a value should start"));
}

TEST(ConfigErrors, DeepNestingIsRejectedWithoutCrashing) {
  const std::string flow(100000, '[');
  const LoadResult result = Load("kafka: " + flow);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_THAT(result.errors[0].message, HasSubstr("invalid YAML"));
  std::string block;
  for (int depth = 0; depth < 3000; ++depth)
    block += std::string(static_cast<std::size_t>(depth), ' ') + "a:\n";
  const LoadResult nested = Load(block);
  ASSERT_EQ(nested.errors.size(), 1u);
  EXPECT_THAT(nested.errors[0].message, HasSubstr("nest too deeply"));
}

TEST(ConfigErrors, SelfReferencingAliasesAreReadOnceNotFollowedForever) {
  EXPECT_THAT(
      Messages(Load("kafka: &k { brokers: *k }\nstreams: &s [*s]\n")),
      ElementsAre(
          "test.yaml:1:8: kafka.brokers: expected a string, found a mapping",
          "test.yaml:2:10: streams[0]: expected a mapping (key: value lines or { ... }), found a list"));
}

TEST(ConfigLoad, AliasesShareSettings) {
  const LoadResult result = Load(R"(kafka: { brokers: k }
streams:
  - &first { name: a, url: "http://h/", topic: t, headers: &h { X-A: "1" } }
  - { name: b, url: "http://h/", topic: t, headers: *h }
)");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  EXPECT_THAT(result.config->streams[1].headers, ElementsAre(Header{"X-A", "1"}));
}

TEST(ConfigErrors, DocumentShape) {
  EXPECT_EQ(OnlyError(""),
            "test.yaml:1:1: the config is empty; expected a mapping with at least `kafka` and `streams`");
  EXPECT_EQ(OnlyError("# nothing\n"),
            "test.yaml:1:1: the config is empty; expected a mapping with at least `kafka` and `streams`");
  EXPECT_EQ(OnlyError("- a\n- b\n"),
            "test.yaml:1:1: expected a mapping with `kafka` and `streams` at the top level, found a list");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "---\nkafka: {}\n"),
            "test.yaml:7:1: only one YAML document is allowed; remove the second `---` and what follows");
  EXPECT_EQ(OnlyError("---\n"),
            "test.yaml:1:1: the config is empty; expected a mapping with at least `kafka` and `streams`");
  EXPECT_EQ(OnlyError("~\n"),
            "test.yaml:1:1: the config is empty; expected a mapping with at least `kafka` and `streams`");
}

TEST(ConfigErrors, UnknownKeysSuggestTheClosestKnownKey) {
  EXPECT_EQ(OnlyError(WithStreamKeys("    reconnect: { max_dealy: 5s }\n")),
            "test.yaml:7:18: streams[0].reconnect.max_dealy: unknown key; did you mean `max_delay`?");
  EXPECT_EQ(OnlyError(WithStreamKeys("    Topic: x\n")),
            "test.yaml:7:5: streams[0].Topic: unknown key; did you mean `topic`?");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "kafak: {}\n"),
            "test.yaml:7:1: kafak: unknown key; did you mean `kafka`?");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "log: { colour: red }\n"),
            "test.yaml:7:8: log.colour: unknown key; expected one of: level, format, stats_interval");
  EXPECT_EQ(
      OnlyError(std::string(kMinimal) + "idle_timeout: 5s\n"),
      "test.yaml:7:1: idle_timeout: unknown key at the top level; `idle_timeout` is a stream setting: put "
      "it in a stream or in `defaults`");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "defaults: { url: http://x/ }\n"),
            "test.yaml:7:13: defaults.url: `url` cannot be set in `defaults`: every stream has its own");
}

TEST(ConfigErrors, DuplicateKeysInOneMapping) {
  EXPECT_EQ(OnlyError(WithStreamKeys("    topic: u\n")),
            "test.yaml:7:5: streams[0].topic: duplicate key; it is already set at line 6");
}

TEST(ConfigErrors, WrongTypesSayWhatWasExpectedAndFound) {
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    reconnect: 5s\n")),
      "test.yaml:7:16: streams[0].reconnect: expected a mapping (key: value lines or { ... }), found `5s`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    body: [a]\n")),
            "test.yaml:7:11: streams[0].body: expected a string, found a list");
  EXPECT_EQ(OnlyError(WithStreamKeys("    resume: yes\n")),
            "test.yaml:7:13: streams[0].resume: expected true or false, found `yes`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    events: message\n")),
            "test.yaml:7:13: streams[0].events: expected a list (- item lines or [ ... ]), found `message`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    events: [a, [b]]\n")),
            "test.yaml:7:17: streams[0].events[1]: expected a string, found a list");
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    events: []\n")),
      "test.yaml:7:13: streams[0].events: expected at least one event type; leave `events` out to produce every type");
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    idle_timeout: 5 seconds\n")),
      "test.yaml:7:19: streams[0].idle_timeout: expected a duration: a whole number with a unit ms, s, m or "
      "h (250ms, 5s, 2m, 1h), or 0; found `5 seconds`");
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    max_event_size: 1MB\n")),
      "test.yaml:7:21: streams[0].max_event_size: expected a size: a number of bytes, or a whole number with "
      "a unit B, KiB, MiB or GiB (512KiB, 1MiB); found `1MB` (decimal units are not accepted: write KiB, "
      "MiB or GiB, which are powers of 1024)");
  // An empty value points at its key: yaml-cpp places it at the next token.
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    proxy:\n")),
      "test.yaml:7:5: streams[0].proxy: expected a string, found an empty value (write \"\" for an empty "
      "string; quote null or ~ to mean the text)");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "kafka_x: 1\n").substr(0, 22), "test.yaml:7:1: kafka_x");
}

TEST(ConfigErrors, MissingRequiredKeysPointAtTheEnclosingMapping) {
  EXPECT_EQ(OnlyError("kafka:\n  flush_timeout: 1s\nstreams:\n  - { name: s, url: http://h/, topic: t }\n"),
            "test.yaml:2:3: kafka.brokers: missing required key `brokers` (host:port,... or embedded)");
  EXPECT_EQ(OnlyError("streams:\n  - { name: s, url: http://h/, topic: t }\n"),
            "test.yaml:1:1: kafka: missing required key `kafka` (with at least `brokers`)");
  EXPECT_EQ(OnlyError("kafka: { brokers: k }\n"),
            "test.yaml:1:1: streams: missing required key `streams` (a list of streams)");
  EXPECT_EQ(OnlyError("kafka: { brokers: k }\nstreams: []\n"),
            "test.yaml:2:10: streams: expected at least one stream");
  EXPECT_THAT(
      Messages(Load("kafka: { brokers: k }\nstreams:\n  - method: GET\n")),
      ElementsAre(
          "test.yaml:3:5: streams[0].name: missing required key `name`",
          "test.yaml:3:5: streams[0].url: missing required key `url`",
          "test.yaml:3:5: streams[0].topic: missing required key `topic` (or `topics`); set it in the "
          "stream or in `defaults`"));
  EXPECT_EQ(
      OnlyError("kafka: { brokers: k }\nstreams:\n  - { name: s, url: http://h/, tls: { key_file: /k } }\n"
                "defaults: { topic: t }\n"),
      "test.yaml:3:5: streams[0].tls.cert_file: `tls.key_file` is set (here or in `defaults`) but "
      "`tls.cert_file` is not");
}

TEST(ConfigErrors, InvalidRoutingIsNotAlsoReportedAsMissing) {
  EXPECT_EQ(
      OnlyError("kafka: { brokers: k }\nstreams:\n  - { name: s, url: http://h/, topic: \"bad topic\" }\n"),
      "test.yaml:3:39: streams[0].topic: expected a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -, not . "
      "or ..), found `bad topic`");
}

TEST(ConfigErrors, StreamNames) {
  EXPECT_EQ(
      OnlyError(R"(kafka: { brokers: k }
defaults: { topic: t }
streams:
  - { name: a, url: http://h/ }
  - { name: b, url: http://h/ }
  - { name: a, url: http://h/ }
)"),
      "test.yaml:6:13: streams[2].name: duplicate stream name `a`: streams[0] at line 4 already has it; names "
      "must be unique");
  EXPECT_EQ(
      OnlyError("kafka: { brokers: k }\nstreams:\n  - { name: a/b, url: http://h/, topic: t }\n"),
      "test.yaml:3:13: streams[0].name: expected a stream name of 1 to 200 characters from A-Z a-z 0-9 . _ "
      "-, found `a/b`");
  EXPECT_FALSE(Load("kafka: { brokers: k }\nstreams:\n  - { name: " + std::string(201, 'n') +
                    ", url: http://h/, topic: t }\n")
                   .ok());
  EXPECT_TRUE(Load("kafka: { brokers: k }\nstreams:\n  - { name: " + std::string(200, 'n') +
                   ", url: http://h/, topic: t }\n")
                  .ok());
}

TEST(ConfigErrors, Urls) {
  auto url_error = [](const std::string& url) {
    return OnlyError("kafka: { brokers: k }\nstreams:\n  - name: s\n    topic: t\n    url: \"" + url +
                     "\"\n");
  };
  EXPECT_EQ(url_error("ftp://h/x"),
            "test.yaml:5:10: streams[0].url: expected an http:// or https:// URL, found `ftp://h/x`");
  EXPECT_EQ(
      url_error("stream.example.org/x"),
      "test.yaml:5:10: streams[0].url: expected an http:// or https:// URL, found `stream.example.org/x`");
  EXPECT_EQ(url_error("https:///path"),
            "test.yaml:5:10: streams[0].url: the URL has no host: `https:///path`");
  // Userinfo may hold a password: it is not echoed.
  EXPECT_EQ(url_error("http://user:pw@:80/"),
            "test.yaml:5:10: streams[0].url: the URL has no host: `http://***@:80/`");
  EXPECT_EQ(url_error("ftp://user:pw@h/x@y"),
            "test.yaml:5:10: streams[0].url: expected an http:// or https:// URL, found `ftp://***@h/x@y`");
  EXPECT_EQ(url_error("http://h:99999/"),
            "test.yaml:5:10: streams[0].url: the URL's port must be a number from 1 to 65535, found `99999`");
  EXPECT_EQ(
      url_error("http://h/a b"),
      "test.yaml:5:10: streams[0].url: the URL contains a space or a control character; percent-encode it (%20)");
  EXPECT_TRUE(
      Load("kafka: { brokers: k }\nstreams:\n  - { name: s, url: \"HTTPS://[::1]:8443/x\", topic: t }\n")
          .ok());
}

TEST(ConfigErrors, Headers) {
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    headers: { \"X-A\": \"a\\r\\nInjected: 1\" }\n")),
      "test.yaml:7:23: streams[0].headers.X-A: a header value must not contain CR, LF or NUL (they would end "
      "the header early); the value is not shown because it may be a secret");
  EXPECT_EQ(OnlyError(WithStreamKeys("    headers: { \"X-A\\nB\": a }\n")),
            "test.yaml:7:16: streams[0].headers.X-A%0AB: a header name must not contain CR or LF");
  EXPECT_EQ(OnlyError(WithStreamKeys("    headers: { \"X A\": a }\n")),
            "test.yaml:7:16: streams[0].headers.X%20A: expected a header name (letters, digits and "
            "!#$%&'*+-.^_`|~), found `X A`");
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    headers: { Accept: a, accept: b }\n")),
      "test.yaml:7:27: streams[0].headers.accept: header `accept` is already set at line 7 (header names are "
      "compared ignoring case)");
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    headers: { A: a }\n    headers_from_files: { a: /f }\n")),
      "test.yaml:8:27: streams[0].headers_from_files.a: header `a` is also set in `headers` here; set it in "
      "only one of them");
  // A misplaced header value is not echoed: it may be a credential.
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    headers: Bearer secret\n")),
      "test.yaml:7:14: streams[0].headers: expected a mapping (key: value lines or { ... }), found a string");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "defaults:\n  headers:\n    Authorization: [x]\n"),
            "test.yaml:9:20: defaults.headers.Authorization: expected a string, found a list");
}

TEST(ConfigErrors, TopicAndTopicsInOneMapping) {
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    topics: { a: b }\n")),
      "test.yaml:7:5: streams[0].topics: `topic` and `topics` are both set here; keep one (in a stream, "
      "either one replaces the other inherited from defaults)");
  EXPECT_EQ(
      OnlyError(std::string(kMinimal) + "defaults:\n  topics: { a: b }\n  topic: c\n"),
      "test.yaml:9:3: defaults.topic: `topic` and `topics` are both set here; keep one (in a stream, either "
      "one replaces the other inherited from defaults)");
  EXPECT_EQ(
      OnlyError(std::string(kMinimal) + "defaults:\n  topics: {}\n"),
      "test.yaml:8:11: defaults.topics: expected at least one `event type: topic` entry (\"*\" for every "
      "other type)");
}

TEST(ConfigErrors, KeysAndFormats) {
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    key: sideways\n")),
      "test.yaml:7:10: streams[0].key: expected stream, id, event, none or json:POINTER, found `sideways`");
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    key: json:meta/id\n")),
      "test.yaml:7:10: streams[0].key: expected a JSON Pointer after `json:` (empty, or starting with / and "
      "with ~ only as ~0 or ~1, e.g. json:/meta/id), found `meta/id`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    key: json:/a~2\n")).substr(0, 35),
            "test.yaml:7:10: streams[0].key: exp");
  EXPECT_EQ(OnlyError(WithStreamKeys("    key: json:/a~\n")).substr(0, 35),
            "test.yaml:7:10: streams[0].key: exp");
  EXPECT_EQ(OnlyError(WithStreamKeys("    key_fallback: json:/x\n")),
            "test.yaml:7:19: streams[0].key_fallback: expected stream, id, event or none, found `json:/x`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    format: avro\n")),
            "test.yaml:7:13: streams[0].format: expected raw, cloudevents-binary, cloudevents-structured or "
            "envelope, found `avro`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    cloudevents: { sauce: x }\n")),
            "test.yaml:7:20: streams[0].cloudevents.sauce: unknown key; did you mean `source`?");
}

TEST(ConfigErrors, RecordHeadersMustNotClashWithTheBridgesOwn) {
  EXPECT_THAT(
      Messages(
          Load(WithStreamKeys("    record_headers: { SSE.stream: a, Ce_Id: b, content-TYPE: c, ok: d }\n"))),
      ElementsAre("test.yaml:7:23: streams[0].record_headers.SSE.stream: record header `SSE.stream` clashes "
                  "with the headers sse2kafka sets itself (sse.*, ce_*, content-type); choose another name",
                  "test.yaml:7:38: streams[0].record_headers.Ce_Id: record header `Ce_Id` clashes with the "
                  "headers sse2kafka sets itself (sse.*, ce_*, content-type); choose another name",
                  "test.yaml:7:48: streams[0].record_headers.content-TYPE: record header `content-TYPE` "
                  "clashes with the headers sse2kafka sets itself (sse.*, ce_*, content-type); choose "
                  "another name"));
}

TEST(ConfigErrors, EnumeratedChoices) {
  EXPECT_EQ(OnlyError(WithStreamKeys("    on_end: halt\n")),
            "test.yaml:7:13: streams[0].on_end: expected reconnect or stop, found `halt`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    http_version: 3\n")),
            "test.yaml:7:19: streams[0].http_version: expected auto, 1.1 or 2, found `3`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    redirect_headers: strip\n")),
            "test.yaml:7:23: streams[0].redirect_headers: expected drop or keep, found `strip`");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "log: { level: verbose }\n"),
            "test.yaml:7:15: log.level: expected trace, debug, info, warn or error, found `verbose`");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "log: { format: xml }\n"),
            "test.yaml:7:16: log.format: expected text or json, found `xml`");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "state: { on_corrupt: ignore }\n"),
            "test.yaml:7:22: state.on_corrupt: expected fail or reset, found `ignore`");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "state: { backend: redis }\n"),
            "test.yaml:7:19: state.backend: expected file or kafka, found `redis`");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "delivery: at-most-once\n"),
            "test.yaml:7:11: delivery: expected at-least-once or exactly-once, found `at-most-once`");
}

TEST(ConfigLoad, FleetSettings) {
  const LoadResult defaults = Load(kMinimal);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults.config->state.backend, StateBackend::kFile);
  EXPECT_EQ(defaults.config->delivery, Delivery::kAtLeastOnce);
  EXPECT_EQ(defaults.config->transaction.interval, Duration(100));
  EXPECT_EQ(defaults.config->transaction.max_events, 10000u);
  EXPECT_EQ(defaults.config->cluster.group, "");
  EXPECT_EQ(defaults.config->cluster.session_timeout, Duration(10000));

  const LoadResult fleet = Load(std::string(kMinimal) +
                                "state: { backend: kafka, topic: s2k.state, partitions: 12, replication_factor: 3 }\n"
                                "delivery: exactly-once\n"
                                "transaction: { interval: 250ms, max_events: 500 }\n"
                                "cluster: { group: ingest-prod, session_timeout: 6s }\n");
  ASSERT_TRUE(fleet.ok()) << ::testing::PrintToString(fleet.errors.size());
  EXPECT_EQ(fleet.config->state.backend, StateBackend::kKafka);
  EXPECT_EQ(fleet.config->state.topic, "s2k.state");
  EXPECT_EQ(fleet.config->state.partitions, 12);
  EXPECT_EQ(fleet.config->state.replication_factor, 3);
  EXPECT_EQ(fleet.config->delivery, Delivery::kExactlyOnce);
  EXPECT_EQ(fleet.config->transaction.interval, Duration(250));
  EXPECT_EQ(fleet.config->transaction.max_events, 500u);
  EXPECT_EQ(fleet.config->cluster.group, "ingest-prod");
  EXPECT_EQ(fleet.config->cluster.session_timeout, Duration(6000));
}

TEST(ConfigErrors, FleetSettingsNeedTheKafkaBackend) {
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "delivery: exactly-once\n"),
            "test.yaml:7:11: delivery: exactly-once keeps checkpoints in the transactions with the events: it "
            "needs `state.backend: kafka`");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "cluster: { group: g }\n"),
            "test.yaml:7:19: cluster.group: cluster mode shares the state topic's partitions: it needs "
            "`state.backend: kafka`");
  const std::string kafka = std::string(kMinimal) + "state: { backend: kafka }\n";
  EXPECT_EQ(OnlyError(kafka + "cluster: { session_timeout: 10s }\n"),
            "test.yaml:8:10: cluster.group: missing required key `group` (the consumer group the instances share)");
  EXPECT_EQ(OnlyError(kafka + "cluster: { group: \"a b\" }\n"),
            "test.yaml:8:19: cluster.group: expected 1 to 200 characters from [A-Za-z0-9._-], found `a b`");
  EXPECT_EQ(OnlyError(kafka + "cluster: { group: g, session_timeout: 100ms }\n"),
            "test.yaml:8:39: cluster.session_timeout: must be from 1s to 30m (the broker's "
            "group.min/max.session.timeout.ms apply too)");
  EXPECT_EQ(OnlyError(kafka + "transaction: { interval: 0s }\n"),
            "test.yaml:8:26: transaction.interval: must be from 1ms to 15m");
  EXPECT_EQ(OnlyError(kafka + "transaction: { max_events: 0 }\n"),
            "test.yaml:8:28: transaction.max_events: must be between 1 and 2147483647, found 0");
  EXPECT_EQ(OnlyError(kafka + "transaction: { commit_every: 1s }\n"),
            "test.yaml:8:16: transaction.commit_every: unknown key; expected one of: interval, max_events");
}

TEST(ConfigErrors, EmptyListItemsPointAtThemselves) {
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    events: [a, ~]\n")),
      "test.yaml:7:17: streams[0].events[1]: expected a string, found an empty value (write \"\" for an empty "
      "string; quote null or ~ to mean the text)");
  EXPECT_EQ(
      OnlyError(std::string(kMinimal) + "  - ~\n"),
      "test.yaml:7:5: streams[1]: expected a stream (a mapping with name, url, ...), found an empty list item");
}

TEST(ConfigErrors, MethodsAndEvents) {
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    method: \"GE T\"\n")),
      "test.yaml:7:13: streams[0].method: expected an HTTP method (a token such as GET or POST), found `GE T`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    events: [edit, \"\"]\n")),
            "test.yaml:7:20: streams[0].events[1]: expected a non-empty string, found an empty one");
}

TEST(ConfigErrors, NumericRanges) {
  EXPECT_EQ(OnlyError(WithStreamKeys("    max_event_size: 512\n")),
            "test.yaml:7:21: streams[0].max_event_size: must be between 1KiB and 256MiB, found `512`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    max_event_size: 257MiB\n")),
            "test.yaml:7:21: streams[0].max_event_size: must be between 1KiB and 256MiB, found `257MiB`");
  EXPECT_TRUE(Load(WithStreamKeys("    max_event_size: 256MiB\n")).ok());
  EXPECT_TRUE(Load(WithStreamKeys("    max_event_size: 1024\n")).ok());
  EXPECT_EQ(
      OnlyError(
          "kafka: { brokers: k, max_in_flight_events: 0 }\nstreams: [{ name: s, url: http://h/, topic: t }]\n"),
      "test.yaml:1:44: kafka.max_in_flight_events: must be between 1 and 2147483647, found 0");
  EXPECT_EQ(
      OnlyError(
          "kafka: { brokers: k, max_in_flight_events: 1e3 }\nstreams: [{ name: s, url: http://h/, topic: t }]\n"),
      "test.yaml:1:44: kafka.max_in_flight_events: expected a whole number, found `1e3`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    connect_timeout: 0s\n")),
            "test.yaml:7:22: streams[0].connect_timeout: must be more than 0");
  EXPECT_EQ(OnlyError(std::string(kMinimal) + "state: { replication_factor: 0 }\n"),
            "test.yaml:7:30: state.replication_factor: must be at least 1, or -1 for the broker's default");
  EXPECT_EQ(
      OnlyError(std::string(kMinimal) + "admin: { listen: \"9100\" }\n"),
      "test.yaml:7:18: admin.listen: expected HOST:PORT (127.0.0.1:9100, [::1]:9100, 0.0.0.0:9100), or \"\" "
      "for off; found `9100`");
}

TEST(ConfigErrors, KafkaPropertiesGoThroughTheInjectedValidator) {
  std::vector<Header> seen;
  const PropertyValidator validator = [&](const std::string& name,
                                          const std::string& value) -> std::optional<std::string> {
    seen.emplace_back(name, value);
    if (name == "linger.ms" && value != "5") return "linger.ms must be a number";
    if (name == "no.such") return "No such configuration property: \"no.such\"";
    return std::nullopt;
  };
  const LoadResult result = Load(R"(kafka:
  brokers: k
  properties:
    linger.ms: soon
    acks: all
    no.such: 1
    enable.idempotence: true
    batch.size: [1]
    bootstrap.servers: other:9092
streams: [{ name: s, url: http://h/, topic: t }]
)",
                                 FakeEnv(), validator);
  EXPECT_THAT(
      Messages(result),
      ElementsAre(
          "test.yaml:4:16: kafka.properties.linger.ms: linger.ms must be a number",
          "test.yaml:6:14: kafka.properties.no.such: No such configuration property: \"no.such\"",
          "test.yaml:8:17: kafka.properties.batch.size: expected a string, number or boolean, found a list",
          "test.yaml:9:5: kafka.properties.bootstrap.servers: set the brokers with `kafka.brokers`, not "
          "as a property"));
  EXPECT_THAT(seen, ElementsAre(Header{"linger.ms", "soon"}, Header{"acks", "all"}, Header{"no.such", "1"},
                                Header{"enable.idempotence", "true"}));
}

TEST(ConfigErrors, SeveralProblemsAreAllReportedInFileOrder) {
  const LoadResult result = Load(R"(streams:
  - name: one
    url: gopher://h/
    topic: t
    reconnect: { max_delay: forever }
  - name: one
    url: http://h/
    topic: t
    resmue: false
kafka:
  brokers: ${BROKERS}
  flush_timeout: 10
log: { level: loud }
)");
  EXPECT_THAT(
      Messages(result),
      ElementsAre(
          "test.yaml:3:10: streams[0].url: expected an http:// or https:// URL, found `gopher://h/`",
          "test.yaml:5:29: streams[0].reconnect.max_delay: expected a duration: a whole number with a "
          "unit ms, s, m or h (250ms, 5s, 2m, 1h), or 0; found `forever`",
          "test.yaml:6:11: streams[1].name: duplicate stream name `one`: streams[0] at line 2 already "
          "has it; names must be unique",
          "test.yaml:9:5: streams[1].resmue: unknown key; did you mean `resume`?",
          "test.yaml:11:12: kafka.brokers: environment variable `BROKERS` is not set (write "
          "${BROKERS:-default} to give a default)",
          "test.yaml:12:18: kafka.flush_timeout: expected a duration: a whole number with a unit ms, s, "
          "m or h (250ms, 5s, 2m, 1h), or 0; found `10`",
          "test.yaml:13:15: log.level: expected trace, debug, info, warn or error, found `loud`"));
  EXPECT_FALSE(result.config.has_value());
}

TEST(ConfigErrors, ToStringWithoutPositionOrKeyPath) {
  EXPECT_EQ((ConfigError{SourceLocation{"c.yaml", 0, 0}, "", "cannot open"}).ToString(),
            "c.yaml: cannot open");
  EXPECT_EQ((ConfigError{SourceLocation{"c.yaml", 2, 3}, "", "bad"}).ToString(), "c.yaml:2:3: bad");
  EXPECT_EQ((ConfigError{SourceLocation{"c.yaml", 2, 3}, "a.b", "bad"}).ToString(), "c.yaml:2:3: a.b: bad");
}

// ----------------------------------------------------------------------------- environment

TEST(ConfigEnvironment, ReferencesExpandInValuesOnly) {
  const EnvLookup env =
      FakeEnv({{"HOST", "up.example"}, {"EMPTY", ""}, {"TOKEN", "s3cret"}, {"IDLE", "45s"}});
  const LoadResult result = Load(R"(kafka: { brokers: "${BROKERS:-127.0.0.1:9092}" }
streams:
  - name: s
    url: https://${HOST}/feed?a=${EMPTY:-dflt}&b=${EMPTY-dflt}&c=${UNSET-u}
    topic: t
    headers:
      Authorization: Bearer ${TOKEN}
    record_headers:
      ${NOT_EXPANDED}: $$5 and $HOME and cost$ and ${HOST:-${UNSET_INNER}}
    idle_timeout: ${IDLE}
    connect_timeout: ${CONNECT:-2s}
    resume: ${RESUME:-false}
)",
                                 env);
  const StreamConfig s = OnlyStream(result);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.config->kafka.brokers, "127.0.0.1:9092");
  EXPECT_EQ(s.url, "https://up.example/feed?a=dflt&b=&c=u");
  EXPECT_THAT(s.headers, ElementsAre(Header{"Authorization", "Bearer s3cret"}));
  EXPECT_THAT(s.record_headers,
              ElementsAre(Header{"${NOT_EXPANDED}", "$5 and $HOME and cost$ and up.example"}));
  EXPECT_EQ(s.idle_timeout, 45s);
  EXPECT_EQ(s.connect_timeout, 2s);
  EXPECT_FALSE(s.resume);
}

TEST(ConfigEnvironment, NestedDefaultsAreLookedUpOnlyWhenUsed) {
  const StreamConfig s =
      OnlyStream(Load(WithStreamKeys("    body: \"${A:-${B:-${C:-deep}}}\"\n"), FakeEnv({{"B", "b"}})));
  EXPECT_EQ(s.body, std::optional<std::string>("b"));
}

TEST(ConfigEnvironment, UnsetAndMalformedReferencesAreErrorsAtTheValue) {
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    body: \"${MISSING}\"\n")),
      "test.yaml:7:11: streams[0].body: environment variable `MISSING` is not set (write ${MISSING:-default} "
      "to give a default)");
  EXPECT_THAT(
      Messages(Load(WithStreamKeys("    body: ${X}${Y}\n"))),
      ElementsAre("test.yaml:7:11: streams[0].body: environment variable `X` is not set (write ${X:-default} "
                  "to give a default)",
                  "test.yaml:7:11: streams[0].body: environment variable `Y` is not set (write ${Y:-default} "
                  "to give a default)"));
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    body: ab${oops\n")),
      "test.yaml:7:11: streams[0].body: malformed `${`: expected `}` or `:-default}` after the name `oops` in "
      "`${oops`");
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    body: ${}\n")),
      "test.yaml:7:11: streams[0].body: malformed `${`: expected a variable name (letters, digits and _, not "
      "starting with a digit) in `${}`; write $$ for a literal $");
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    body: ${A:?no}\n")),
      "test.yaml:7:11: streams[0].body: malformed `${`: expected `}` or `:-default}` after the name `A` in "
      "`${A:?no}`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    body: ${A:-x\n")),
            "test.yaml:7:11: streams[0].body: malformed `${`: missing the closing `}` of `${A:-x`");
  EXPECT_EQ(OnlyError(WithStreamKeys("    body: ${A:-${B}\n")),
            "test.yaml:7:11: streams[0].body: malformed `${`: missing the closing `}` of `${A:-${B}`");
  // Set but empty is a value for ${NAME}; an unused default does not need its variables.
  EXPECT_TRUE(Load(WithStreamKeys("    body: ${E}\n"), FakeEnv({{"E", ""}})).ok());
  EXPECT_TRUE(Load(WithStreamKeys("    body: ${E:-${UNSET}}\n"), FakeEnv({{"E", "set"}})).ok());
}

TEST(ConfigEnvironment, ExpansionHappensBeforeTypeConversion) {
  EXPECT_EQ(
      OnlyError(WithStreamKeys("    idle_timeout: ${IDLE}\n"), FakeEnv({{"IDLE", "soon"}})),
      "test.yaml:7:19: streams[0].idle_timeout: expected a duration: a whole number with a unit ms, s, m or h "
      "(250ms, 5s, 2m, 1h), or 0; found `soon`");
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    max_event_size: ${SIZE:-2MiB}\n"))).max_event_size, 2u << 20);
}

// ----------------------------------------------------------------------------- units

TEST(ConfigUnits, Durations) {
  struct Case {
    std::string_view text;
    std::optional<Duration> expected;
  };
  const Case cases[] = {
      {"0", 0ms},
      {"0s", 0ms},
      {"0ms", 0ms},
      {"250ms", 250ms},
      {"5s", 5s},
      {"2m", 2min},
      {"1h", 1h},
      {"90s", 90s},
      {"007s", 7s},
      {"", std::nullopt},
      {"5", std::nullopt},
      {"00", std::nullopt},
      {"-5s", std::nullopt},
      {"+5s", std::nullopt},
      {"1.5s", std::nullopt},
      {"5 s", std::nullopt},
      {" 5s", std::nullopt},
      {"5S", std::nullopt},
      {"5sec", std::nullopt},
      {"1d", std::nullopt},
      {"1m30s", std::nullopt},
      {"s", std::nullopt},
      {"99999999999999999999s", std::nullopt},
      {"9223372036854775807h", std::nullopt},
      {"9223372036854775807ms", Duration{INT64_MAX}},
  };
  for (const Case& c : cases) EXPECT_EQ(ParseDuration(c.text), c.expected) << "`" << c.text << "`";
}

TEST(ConfigUnits, Sizes) {
  struct Case {
    std::string_view text;
    std::optional<std::size_t> expected;
  };
  const Case cases[] = {
      {"0", 0u},
      {"100", 100u},
      {"100B", 100u},
      {"512KiB", 512u * 1024},
      {"1MiB", 1u << 20},
      {"2GiB", std::size_t{2} << 30},
      {"", std::nullopt},
      {"1KB", std::nullopt},
      {"1MB", std::nullopt},
      {"1GB", std::nullopt},
      {"1kib", std::nullopt},
      {"1 KiB", std::nullopt},
      {"1.5MiB", std::nullopt},
      {"-1", std::nullopt},
      {"KiB", std::nullopt},
      {"1TiB", std::nullopt},
      {"18446744073709551615", SIZE_MAX},
      {"18446744073709551616", std::nullopt},
      {"17179869184GiB", std::nullopt},
  };
  for (const Case& c : cases) EXPECT_EQ(ParseSize(c.text), c.expected) << "`" << c.text << "`";
}

// ----------------------------------------------------------------------------- secrets in logs

TEST(ConfigSecrets, SecretPropertyNames) {
  EXPECT_TRUE(IsSecretProperty("sasl.password"));
  EXPECT_TRUE(IsSecretProperty("ssl.key.PASSWORD"));
  EXPECT_TRUE(IsSecretProperty("sasl.oauthbearer.client.secret"));
  EXPECT_TRUE(IsSecretProperty("sasl.oauthbearer.token.endpoint.url"));
  EXPECT_TRUE(IsSecretProperty("ssl.key.pem"));
  EXPECT_FALSE(IsSecretProperty("compression.type"));
  EXPECT_FALSE(IsSecretProperty("sasl.username"));
}

TEST(ConfigSecrets, RedactedRendering) {
  EXPECT_EQ(RedactedHeaders({{"Authorization", "Bearer x"}, {"Accept", "text/event-stream"}}),
            "Authorization: ***, Accept: ***");
  EXPECT_EQ(RedactedHeaders({}), "");
  EXPECT_EQ(RedactedProperties({{"linger.ms", "5"}, {"sasl.password", "hunter2"}}),
            "linger.ms=5, sasl.password=***");
}

// ----------------------------------------------------------------------------- files

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("config_test." + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
};

TEST_F(ConfigFileTest, LoadsAFileAndNamesItInMessages) {
  const std::string path = (dir_ / "c.yaml").string();
  std::ofstream(path) << kMinimal << "    resmue: true\n";
  const LoadResult result = LoadConfigFile(path, FakeEnv());
  EXPECT_THAT(Messages(result),
              ElementsAre(path + ":7:5: streams[0].resmue: unknown key; did you mean `resume`?"));
  std::ofstream(path) << kMinimal;
  const LoadResult ok = LoadConfigFile(path, FakeEnv());
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.config->path, path);
}

TEST_F(ConfigFileTest, UnreadableFilesAreOneError) {
  const std::string missing = (dir_ / "missing.yaml").string();
  EXPECT_THAT(Messages(LoadConfigFile(missing, FakeEnv())),
              ElementsAre(missing + ": cannot open the config file: No such file or directory"));
  EXPECT_THAT(Messages(LoadConfigFile(dir_.string(), FakeEnv())),
              ElementsAre(dir_.string() + ": the config path is not a regular file"));
}

TEST(ConfigSamples, ShippedConfigsLoadCleanly) {
  for (const char* name : {"example.yaml", "wikimedia.yaml", "fleet.yaml"}) {
    const std::string path = std::string(SSE2KAFKA_SAMPLE_CONFIG_DIR) + "/" + name;
    const LoadResult result = LoadConfigFile(path, FakeEnv({{"WIKI_TOKEN", "t"}}));
    EXPECT_TRUE(result.ok()) << name << ": " << ::testing::PrintToString(Messages(result));
  }
  const LoadResult wikimedia = LoadConfigFile(std::string(SSE2KAFKA_SAMPLE_CONFIG_DIR) + "/wikimedia.yaml",
                                              FakeEnv({{"KAFKA_BROKERS", "kafka-1:9092"}}));
  ASSERT_TRUE(wikimedia.ok());
  EXPECT_EQ(wikimedia.config->kafka.brokers, "kafka-1:9092");
  ASSERT_EQ(wikimedia.config->streams.size(), 1u);
  EXPECT_EQ(wikimedia.config->streams[0].url, "https://stream.wikimedia.org/v2/stream/recentchange");
  EXPECT_EQ(wikimedia.config->streams[0].topic, "wiki.recentchange");
  EXPECT_EQ(wikimedia.config->streams[0].key, KeyMode::kId);
  const LoadResult fleet = LoadConfigFile(std::string(SSE2KAFKA_SAMPLE_CONFIG_DIR) + "/fleet.yaml", FakeEnv());
  ASSERT_TRUE(fleet.ok());
  EXPECT_EQ(fleet.config->state.backend, StateBackend::kKafka);
  EXPECT_EQ(fleet.config->delivery, Delivery::kExactlyOnce);
  EXPECT_EQ(fleet.config->cluster.group, "sse2kafka-fleet");
}

}  // namespace
}  // namespace sse2kafka::config

// ----------------------------------------------------------------------------- polite reconnects

namespace sse2kafka::config {
namespace {

TEST(ConfigReconnectFloor, DefaultsTo500msAndCanBeRaisedOrLowered) {
  EXPECT_EQ(OnlyStream(Load(kMinimal)).reconnect.min_delay, 500ms);
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    reconnect: { min_delay: 2s }\n"))).reconnect.min_delay, 2s);
  const LoadResult low = Load(WithStreamKeys("    reconnect: { min_delay: 100ms, initial_delay: 100ms }\n"));
  EXPECT_EQ(OnlyStream(low).reconnect.min_delay, 100ms);
  EXPECT_TRUE(low.warnings.empty());
}

TEST(ConfigReconnectFloor, ZeroIsRefusedUnlessAskedForBesideIt) {
  EXPECT_THAT(OnlyError(WithStreamKeys("    reconnect: { min_delay: 0 }\n")),
              ::testing::StartsWith("test.yaml:7:29: streams[0].reconnect.min_delay: 0 takes away the floor"));
  const LoadResult allowed = Load(WithStreamKeys("    reconnect: { min_delay: 0, allow_zero_min_delay: true }\n"));
  EXPECT_EQ(OnlyStream(allowed).reconnect.min_delay, 0ms);
  EXPECT_THAT(OnlyError(WithStreamKeys("    reconnect: { min_delay: 0, allow_zero_min_delay: false }\n")),
              HasSubstr("allow_zero_min_delay: true"));
}

TEST(ConfigReconnectFloor, AnInitialDelayBelowTheFloorIsOneWarningPerDistinctValue) {
  const LoadResult result = Load(R"(kafka: { brokers: "k1:9092" }
defaults:
  topic: t
  reconnect: { initial_delay: 100ms }
streams:
  - { name: a, url: http://up.example/a }
  - { name: b, url: http://up.example/b }
  - { name: c, url: http://up.example/c, reconnect: { initial_delay: 2s } }
)");
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  ASSERT_EQ(result.warnings.size(), 1u);
  EXPECT_EQ(result.warnings[0].ToString(),
            "warning: test.yaml line 6 col 5: streams[0].reconnect.initial_delay: initial_delay 100ms is below "
            "reconnect.min_delay 500ms, the floor under every reconnect wait: waits are at least 500ms "
            "(and in 1 more stream)");
}

TEST(ConfigStartFrom, SetsTheFirstLastEventIdAndRefusesLineBreaks) {
  EXPECT_EQ(OnlyStream(Load(kMinimal)).start_from_last_event_id, std::nullopt);
  EXPECT_EQ(OnlyStream(Load(WithStreamKeys("    start_from: { last_event_id: \"1000\" }\n"))).start_from_last_event_id,
            "1000");
  EXPECT_THAT(OnlyError(WithStreamKeys("    start_from: { last_event_id: \"a\\nb\" }\n")),
              HasSubstr("start_from.last_event_id: a Last-Event-ID must not contain CR, LF or NUL"));
  EXPECT_THAT(OnlyError(WithStreamKeys("    start_from: { id: x }\n")), HasSubstr("start_from.id"));
}

TEST(ConfigQuery, MapsMergeByNameAndSecretNamesAddUp) {
  const LoadResult result = Load(R"(kafka: { brokers: "k1:9092" }
defaults:
  topic: t
  query: { access_token: "${TOKEN}", region: eu }
  secret_query_params: [account]
streams:
  - name: a
    url: http://up.example/a
    query: { region: us }
    query_from_files: { access_token: /run/secrets/t }
    secret_query_params: [tenant, account]
)", FakeEnv({{"TOKEN", "s3cret"}}));
  const StreamConfig s = OnlyStream(result);
  EXPECT_THAT(s.query, ElementsAre(Header{"region", "us"}));
  EXPECT_THAT(s.query_from_files, ElementsAre(Header{"access_token", "/run/secrets/t"}));
  EXPECT_THAT(s.secret_query_params, ElementsAre("account", "tenant"));
}

TEST(ConfigQuery, ANameInBothMapsOfOneMappingIsAnErrorThatHidesTheValue) {
  const std::string error = OnlyError(WithStreamKeys(
      "    query: { token: s3cret }\n    query_from_files: { token: /run/secrets/t }\n"));
  EXPECT_THAT(error, HasSubstr("query parameter `token` is also set in `query` here"));
  EXPECT_THAT(OnlyError(WithStreamKeys("    query: [s3cret]\n")), ::testing::Not(HasSubstr("s3cret")));
}

// kafka.security: files are checked where the config names them, secrets never shown.
class ConfigKafkaSecurity : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("sse2kafka-security-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    Write("ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", 0644);
    Write("client.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", 0644);
    Write("client.key", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", 0600);
    Write("password", "pa55word\n", 0600);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text, int mode) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    std::filesystem::permissions(path, static_cast<std::filesystem::perms>(mode));
    return path;
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  // A config whose kafka block has `security` as given (2-space indented under kafka).
  std::string With(const std::string& security) const {
    return "kafka:\n  brokers: k:9093\n  security:\n" + security + "streams: [{ name: s, url: http://h/, topic: t }]\n";
  }
  LoadResult LoadFile(const std::string& text, int mode, const EnvLookup& env = FakeEnv()) {
    const std::string path = Write("config.yaml", text, mode);
    return LoadConfigFile(path, env);
  }

  std::filesystem::path dir_;
};

TEST_F(ConfigKafkaSecurity, ScramOverTlsWithThePasswordFromAFile) {
  const LoadResult result = Load(With("    mechanism: scram-sha-512\n    username: bridge\n    password_file: " +
                                      Path("password") + "\n    ca_file: " + Path("ca.pem") + "\n"));
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  const KafkaSecurity& s = result.config->kafka.security;
  EXPECT_EQ(s.protocol, KafkaProtocol::kSaslSsl);  // the default with a mechanism
  EXPECT_EQ(s.mechanism, "SCRAM-SHA-512");
  EXPECT_EQ(s.username, "bridge");
  EXPECT_EQ(s.password, "pa55word");  // one line end dropped
  EXPECT_EQ(s.password_file, Path("password"));
  EXPECT_EQ(s.ca_file, Path("ca.pem"));
  EXPECT_TRUE(result.warnings.empty());
}

TEST_F(ConfigKafkaSecurity, TheSystemCaBundleIsAValidCaFile) {
  std::string bundle;
  while (bundle.size() < 300 * 1024) bundle += "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  const LoadResult result = Load(With("    ca_file: " + Write("bundle.pem", bundle, 0644) + "\n"));
  EXPECT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  EXPECT_THAT(OnlyError(With("    mechanism: PLAIN\n    username: u\n    password_file: " +
                             Write("big.password", std::string(100 * 1024, 'p'), 0600) + "\n")),
              HasSubstr("is larger than 64KiB"));
}

TEST_F(ConfigKafkaSecurity, MutualTlsDefaultsToSsl) {
  const LoadResult result = Load(With("    ca_file: " + Path("ca.pem") + "\n    cert_file: " + Path("client.pem") +
                                      "\n    key_file: " + Path("client.key") + "\n"));
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  EXPECT_EQ(result.config->kafka.security.protocol, KafkaProtocol::kSsl);
  EXPECT_EQ(result.config->kafka.security.key_file, Path("client.key"));
}

TEST_F(ConfigKafkaSecurity, APasswordFromTheEnvironmentIsExpandedAndNeverShown) {
  const LoadResult result = Load(With("    mechanism: PLAIN\n    username: u\n    password: ${KAFKA_PASSWORD}\n"),
                                 FakeEnv({{"KAFKA_PASSWORD", "s3cret-value"}}));
  ASSERT_TRUE(result.ok()) << ::testing::PrintToString(Messages(result));
  EXPECT_EQ(result.config->kafka.security.password, "s3cret-value");
  const std::string bad = OnlyError(With("    mechanism: PLAIN\n    username: u\n    password: [s3cret-value]\n"));
  EXPECT_THAT(bad, ::testing::Not(HasSubstr("s3cret-value")));
}

TEST_F(ConfigKafkaSecurity, EachMistakeIsReportedAtItsKey) {
  EXPECT_EQ(OnlyError(With("    mechanism: GSSAPI\n    username: u\n    password: p\n")),
            "test.yaml:4:16: kafka.security.mechanism: unknown SASL mechanism `GSSAPI`; expected SCRAM-SHA-512, "
            "SCRAM-SHA-256 or PLAIN (for GSSAPI or OAUTHBEARER set librdkafka's sasl.* properties in "
            "kafka.properties instead of kafka.security)");
  EXPECT_THAT(OnlyError(With("    mechanism: PLAIN\n    username: u\n    password_file: " + Path("missing") + "\n")),
              HasSubstr("kafka.security.password_file: cannot read `" + Path("missing") +
                        "`: No such file or directory"));
  EXPECT_THAT(OnlyError(With("    mechanism: PLAIN\n    username: u\n")),
              HasSubstr("kafka.security.password: a SASL mechanism needs `password` or `password_file`"));
  EXPECT_THAT(OnlyError(With("    protocol: sasl_ssl\n    username: u\n    password: p\n")),
              HasSubstr("kafka.security.mechanism: protocol SASL_SSL needs `mechanism`"));
  EXPECT_THAT(OnlyError(With("    protocol: ssl\n    cert_file: " + Path("client.pem") + "\n")),
              HasSubstr("kafka.security.key_file: `cert_file` is set but `key_file` is not"));
  EXPECT_THAT(OnlyError(With("    protocol: plaintext\n    ca_file: " + Path("ca.pem") + "\n")),
              HasSubstr("kafka.security.ca_file: is a TLS setting, but protocol PLAINTEXT has no TLS"));
  EXPECT_THAT(OnlyError(With("    protocol: tls\n")),
              HasSubstr("kafka.security.protocol: expected sasl_ssl, ssl, sasl_plaintext or plaintext, found `tls`"));
  EXPECT_THAT(OnlyError(With("    ca_file: " + Write("not-pem", "binary", 0644) + "\n")),
              HasSubstr("holds no PEM block"));
}

TEST_F(ConfigKafkaSecurity, AnUnreadableKeyIsAnError) {
  if (geteuid() == 0) {
    // root reads every file: a directory is unreadable as a key for everyone.
    std::filesystem::create_directories(Path("key-dir"));
    EXPECT_THAT(OnlyError(With("    cert_file: " + Path("client.pem") + "\n    key_file: " + Path("key-dir") + "\n")),
                HasSubstr("kafka.security.key_file: `" + Path("key-dir") + "` is not a regular file"));
    return;
  }
  Write("locked.key", "-----BEGIN PRIVATE KEY-----\n", 0000);
  EXPECT_THAT(OnlyError(With("    cert_file: " + Path("client.pem") + "\n    key_file: " + Path("locked.key") + "\n")),
              HasSubstr("Permission denied"));
}

TEST_F(ConfigKafkaSecurity, AnInlinePasswordInAWorldReadableFileIsAWarning) {
  const std::string text = With("    mechanism: PLAIN\n    username: u\n    password: written-here\n");
  const LoadResult readable = LoadFile(text, 0644);
  ASSERT_TRUE(readable.ok()) << ::testing::PrintToString(Messages(readable));
  ASSERT_EQ(readable.warnings.size(), 1u);
  EXPECT_THAT(readable.warnings[0].ToString(), HasSubstr("kafka.security.password: the secret is written in a "
                                                          "config file every local user can read"));
  EXPECT_THAT(readable.warnings[0].ToString(), ::testing::Not(HasSubstr("written-here")));
  EXPECT_TRUE(LoadFile(text, 0600).warnings.empty());
  // From the environment, the file holds no secret.
  EXPECT_TRUE(LoadFile(With("    mechanism: PLAIN\n    username: u\n    password: ${P}\n"), 0644,
                       FakeEnv({{"P", "x"}}))
                  .warnings.empty());
}

TEST_F(ConfigKafkaSecurity, TheShippedSecuredConfigsLoadWithTheirFilesInPlace) {
  const EnvLookup env = FakeEnv({{"KAFKA_CA_FILE", Path("ca.pem")},
                                 {"KAFKA_PASSWORD_FILE", Path("password")},
                                 {"KAFKA_CERT_FILE", Path("client.pem")},
                                 {"KAFKA_KEY_FILE", Path("client.key")}});
  const LoadResult scram = LoadConfigFile(std::string(SSE2KAFKA_SAMPLE_CONFIG_DIR) + "/secured-scram.yaml", env);
  ASSERT_TRUE(scram.ok()) << ::testing::PrintToString(Messages(scram));
  EXPECT_EQ(scram.config->kafka.security.mechanism, "SCRAM-SHA-512");
  EXPECT_EQ(scram.config->kafka.security.password, "pa55word");
  const LoadResult mtls = LoadConfigFile(std::string(SSE2KAFKA_SAMPLE_CONFIG_DIR) + "/secured-mtls.yaml", env);
  ASSERT_TRUE(mtls.ok()) << ::testing::PrintToString(Messages(mtls));
  EXPECT_EQ(mtls.config->kafka.security.protocol, KafkaProtocol::kSsl);
  EXPECT_EQ(mtls.config->kafka.security.cert_file, Path("client.pem"));
}

TEST_F(ConfigKafkaSecurity, PropertiesMayNotSayTheSameAgainButMaySayMore) {
  EXPECT_THAT(OnlyError("kafka:\n  brokers: k:9093\n  security: { mechanism: PLAIN, username: u, password: p }\n"
                        "  properties: { sasl.password: other }\nstreams: [{ name: s, url: http://h/, topic: t }]\n"),
              HasSubstr("kafka.properties.sasl.password: `kafka.security` sets how the bridge authenticates"));
  const LoadResult more = Load("kafka:\n  brokers: k:9093\n  security: { mechanism: PLAIN, username: u, password: p }\n"
                               "  properties: { ssl.endpoint.identification.algorithm: none }\n"
                               "streams: [{ name: s, url: http://h/, topic: t }]\n");
  EXPECT_TRUE(more.ok()) << ::testing::PrintToString(Messages(more));
  EXPECT_THAT(OnlyError("kafka:\n  brokers: embedded\n  security: { mechanism: PLAIN, username: u, password: p }\n"
                        "streams: [{ name: s, url: http://h/, topic: t }]\n"),
              HasSubstr("the embedded cluster speaks plaintext only"));
}

}  // namespace
}  // namespace sse2kafka::config
