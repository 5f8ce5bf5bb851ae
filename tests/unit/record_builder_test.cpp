// Tests of RecordBuilder: routing, keys, headers and the four record formats, with every JSON
// value parsed back by nlohmann_json (an independent parser) to prove it is valid.
#include "sink/record_builder.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

// Heap accounting for the whole test binary: the no-allocation tests read it around the calls
// they measure. Everything is single-threaded while they do.
namespace {

// What the pipeline passes when cloudevents.source is not set: the stream URL without
// userinfo, query and fragment (http/url_redaction.h, tested there).
const std::string kDefaultSource = "https://stream.example.org:8443/v2/recentchange";

struct HeapStats {
  bool counting = false;
  std::size_t allocations = 0;
};

HeapStats& Heap() {
  static HeapStats stats;
  return stats;
}

void* CountedAllocOrNull(std::size_t size) noexcept {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p != nullptr && Heap().counting) ++Heap().allocations;
  return p;
}

void* CountedAlloc(std::size_t size) {
  void* p = CountedAllocOrNull(size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

// simdjson allocates with nothrow new, so those forms are replaced (and counted) too.
void* operator new(std::size_t size) { return CountedAlloc(size); }
void* operator new[](std::size_t size) { return CountedAlloc(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return CountedAllocOrNull(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return CountedAllocOrNull(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace sse2kafka::sink {
namespace {

using config::KeyMode;
using config::RecordFormat;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr int64_t kDispatchMs = 1795468072123;  // 2026-11-23T21:07:52.123Z
constexpr char kDispatchText[] = "2026-11-23T21:07:52.123Z";

config::StreamConfig Stream() {
  config::StreamConfig stream;
  stream.name = "wiki";
  stream.url = "https://reader:s3cret@stream.example.org:8443/v2/recentchange?since=now";
  stream.topic = "wiki.events";
  return stream;
}

EventView Event(std::string_view data, std::string_view id = "", std::string_view type = "message") {
  EventView event;
  event.type = type;
  event.data = data;
  event.last_event_id = id;
  event.id_in_block = !id.empty();
  event.dispatch_time_ms = kDispatchMs;
  event.sequence = 7;
  return event;
}

Headers HeadersOf(const BuiltRecord& record) {
  Headers headers;
  for (const RecordHeader& h : record.headers) headers.emplace_back(h.name, h.value);
  return headers;
}

std::string HeaderValue(const BuiltRecord& record, std::string_view name) {
  std::string value;
  int found = 0;
  for (const RecordHeader& h : record.headers) {
    if (h.name == name) {
      value = h.value;
      ++found;
    }
  }
  EXPECT_EQ(found, 1) << "header " << name;
  return value;
}

nlohmann::json ParsedValue(const BuiltRecord& record) {
  const std::string value(record.value);
  EXPECT_TRUE(nlohmann::json::accept(value)) << value;
  return nlohmann::json::parse(value);
}

std::optional<std::string> KeyOf(const BuiltRecord& record) {
  if (!record.key) return std::nullopt;
  return std::string(*record.key);
}

// ---- Routing ----

TEST(RecordBuilderRoutingTest, SingleTopicTakesEveryType) {
  RecordBuilder builder(Stream(), kDefaultSource);
  for (std::string_view type : {"message", "edit", "anything"}) {
    const BuiltRecord& record = builder.Build(Event("x", "", type));
    EXPECT_TRUE(record.routed);
    EXPECT_EQ(record.topic, "wiki.events");
  }
}

TEST(RecordBuilderRoutingTest, TopicsRouteByTypeAndStarCatchesTheRest) {
  config::StreamConfig stream = Stream();
  stream.topic.clear();
  stream.topics = {{"edit", "wiki.edits"}, {"*", "wiki.other"}, {"log", "wiki.logs"}};
  RecordBuilder builder(stream, kDefaultSource);
  EXPECT_EQ(builder.Build(Event("x", "", "edit")).topic, "wiki.edits");
  EXPECT_EQ(builder.Build(Event("x", "", "log")).topic, "wiki.logs");
  EXPECT_EQ(builder.Build(Event("x", "", "message")).topic, "wiki.other");
  EXPECT_EQ(builder.Build(Event("x", "", "Edit")).topic, "wiki.other");  // types are case-sensitive
  EXPECT_TRUE(builder.Build(Event("x", "", "other")).routed);
}

TEST(RecordBuilderRoutingTest, UnknownTypeWithoutStarIsNotRouted) {
  config::StreamConfig stream = Stream();
  stream.topic = "inherited.from.defaults";  // `topics` replaces it
  stream.topics = {{"edit", "wiki.edits"}};
  stream.key = KeyMode::kJsonPointer;
  stream.key_pointer = "/missing";
  RecordBuilder builder(stream, kDefaultSource);
  const BuiltRecord& dropped = builder.Build(Event("{}", "5", "log"));
  EXPECT_FALSE(dropped.routed);
  EXPECT_TRUE(dropped.topic.empty());
  EXPECT_FALSE(dropped.key_fell_back);  // nothing is built for a dropped event
  EXPECT_TRUE(dropped.headers.empty());
  const BuiltRecord& kept = builder.Build(Event("{}", "6", "edit"));
  EXPECT_TRUE(kept.routed);
  EXPECT_EQ(kept.topic, "wiki.edits");
}

TEST(RecordBuilderRoutingTest, NoTopicAtAllIsNotRouted) {
  config::StreamConfig stream = Stream();
  stream.topic.clear();
  RecordBuilder builder(stream, kDefaultSource);
  EXPECT_FALSE(builder.Build(Event("x")).routed);
}

TEST(TopicRouterTest, FirstRouteForATypeWins) {
  config::StreamConfig stream = Stream();
  stream.topics = {{"edit", "first"}, {"edit", "second"}, {"*", "star1"}, {"*", "star2"}};
  TopicRouter router(stream);
  EXPECT_EQ(router.TopicFor("edit"), "first");
  EXPECT_EQ(router.TopicFor("x"), "star1");
}

// ---- Keys ----

struct KeyCase {
  KeyMode mode;
  std::string_view id;
  std::optional<std::string> expected;
};

TEST(RecordBuilderKeyTest, SimpleModes) {
  const std::vector<KeyCase> cases = {
      {KeyMode::kStream, "17", "wiki"},  {KeyMode::kStream, "", "wiki"},
      {KeyMode::kId, "17", "17"},        {KeyMode::kId, "", std::nullopt},
      {KeyMode::kEvent, "17", "edit"},   {KeyMode::kNone, "17", std::nullopt},
  };
  for (const KeyCase& c : cases) {
    config::StreamConfig stream = Stream();
    stream.key = c.mode;
    RecordBuilder builder(stream, kDefaultSource);
    const BuiltRecord& record = builder.Build(Event("{\"a\":1}", c.id, "edit"));
    EXPECT_EQ(KeyOf(record), c.expected) << static_cast<int>(c.mode) << " id=" << c.id;
    EXPECT_FALSE(record.key_fell_back);
  }
}

std::optional<std::string> JsonKey(std::string_view pointer, std::string_view data, bool* fell_back) {
  config::StreamConfig stream = Stream();
  stream.key = KeyMode::kJsonPointer;
  stream.key_pointer = pointer;
  stream.key_fallback = KeyMode::kNone;
  RecordBuilder builder(stream, kDefaultSource);
  EXPECT_TRUE(builder.parses_json());
  const BuiltRecord& record = builder.Build(Event(data, "9"));
  *fell_back = record.key_fell_back;
  return KeyOf(record);
}

struct JsonKeyCase {
  std::string_view pointer;
  std::string_view data;
  std::optional<std::string> expected;  // nullopt: the fallback (here none) was used
};

TEST(RecordBuilderKeyTest, JsonPointerMembers) {
  const std::vector<JsonKeyCase> cases = {
      {"/meta/id", R"({"meta":{"id":"abc-1"}})", "abc-1"},
      {"/meta/id", R"({"meta":{"id":"a\"b\\c\u00e9"}})", "a\"b\\c\xC3\xA9"},  // unescaped
      {"/meta/id", R"({"meta":{"id":""}})", ""},                              // an empty key
      {"/n", R"({"n":42})", "42"},
      {"/n", R"({"n":-7})", "-7"},
      {"/n", R"({"n":18446744073709551615})", "18446744073709551615"},
      {"/n", R"({"n":1.50})", "1.5"},
      {"/n", R"({"n":1E2})", "100"},
      {"/n", R"({"n":1e21})", "1e+21"},
      {"/n", R"({"n":-0.0})", "0"},
      {"/b", R"({"b":true})", "true"},
      {"/b", R"({"b":false})", "false"},
      {"/o", R"({"o": { "x" : [1, 2.5, "s\n"], "y": {} } })", R"({"x":[1,2.5,"s\n"],"y":{}})"},
      {"/a", R"({"a":[ ]})", "[]"},
      {"/a/1", R"({"a":["x","y"]})", "y"},
      {"/a~1b/m~0n", R"({"a/b":{"m~n":"escaped"}})", "escaped"},
      {"", R"("whole")", "whole"},
      {"", R"( 12 )", "12"},
      {"/", R"({"":"empty name"})", "empty name"},
      // Fallbacks: null, missing, wrong type on the path, bad pointer, not JSON.
      {"/meta/id", R"({"meta":{"id":null}})", std::nullopt},
      {"/meta/id", R"({"meta":{}})", std::nullopt},
      {"/meta/id", R"({"meta":"str"})", std::nullopt},
      {"/a/5", R"({"a":[1]})", std::nullopt},
      {"/a/01", R"({"a":[1,2]})", std::nullopt},
      {"meta", R"({"meta":1})", std::nullopt},
      {"/meta/id", R"({"meta":{"id":"x"}} trailing)", std::nullopt},
      {"/meta/id", "plain text", std::nullopt},
      {"/meta/id", "", std::nullopt},
      {"/n", R"({"n":123456789012345678901234567890})", std::nullopt},  // simdjson refuses it
  };
  for (const JsonKeyCase& c : cases) {
    bool fell_back = false;
    EXPECT_EQ(JsonKey(c.pointer, c.data, &fell_back), c.expected) << c.pointer << " in " << c.data;
    EXPECT_EQ(fell_back, !c.expected.has_value()) << c.pointer << " in " << c.data;
  }
}

TEST(RecordBuilderKeyTest, JsonFallbackModes) {
  const std::vector<KeyCase> cases = {
      {KeyMode::kStream, "17", "wiki"}, {KeyMode::kId, "17", "17"},
      {KeyMode::kId, "", std::nullopt}, {KeyMode::kEvent, "17", "edit"},
      {KeyMode::kNone, "17", std::nullopt},
  };
  for (const KeyCase& c : cases) {
    config::StreamConfig stream = Stream();
    stream.key = KeyMode::kJsonPointer;
    stream.key_pointer = "/id";
    stream.key_fallback = c.mode;
    RecordBuilder builder(stream, kDefaultSource);
    const BuiltRecord& fallback = builder.Build(Event("not json", c.id, "edit"));
    EXPECT_TRUE(fallback.key_fell_back);
    EXPECT_EQ(KeyOf(fallback), c.expected);
    const BuiltRecord& found = builder.Build(Event(R"({"id":"x"})", c.id, "edit"));
    EXPECT_FALSE(found.key_fell_back);
    EXPECT_EQ(KeyOf(found), "x");
  }
}

TEST(JsonDataTest, ParseReportsJsonTextAndResetsBetweenCalls) {
  JsonData json;
  EXPECT_TRUE(json.Parse(R"({"id":"a"})"));
  EXPECT_EQ(json.KeyAt("/id"), "a");
  EXPECT_FALSE(json.Parse("{\"id\":\"a\""));
  EXPECT_EQ(json.KeyAt("/id"), std::nullopt);
  for (std::string_view text : {"0", "-1.5e3", "true", "null", "\"s\"", "[]", " {} \n"}) {
    EXPECT_TRUE(json.Parse(text)) << text;
  }
  for (std::string_view text : {"", " ", "{", "'s'", "[1,]", "01", "NaN", "{}{}", "\xEF\xBB\xBF{}",
                                "\"\xFF\"", "\"a\nb\""}) {
    EXPECT_FALSE(json.Parse(text)) << text;
  }
  // A long document followed by a short one: the padded copy must not leak old bytes.
  const std::string longer = "[" + std::string(5000, ' ') + "1]";
  EXPECT_TRUE(json.Parse(longer));
  EXPECT_TRUE(json.Parse("2"));
  EXPECT_EQ(json.KeyAt(""), "2");
  EXPECT_FALSE(json.Parse("[1"));
}

// ---- Headers and raw ----

TEST(RecordBuilderRawTest, ValueIsDataAndSseHeadersComeFirst) {
  config::StreamConfig stream = Stream();
  stream.record_headers = {{"source", "wikimedia"}, {"team", "ingest"}};
  RecordBuilder builder(stream, kDefaultSource);
  EXPECT_FALSE(builder.parses_json());
  const BuiltRecord& record = builder.Build(Event("line one\nline two", "42", "edit"));
  EXPECT_TRUE(record.routed);
  EXPECT_EQ(record.value, "line one\nline two");
  EXPECT_EQ(HeadersOf(record), (Headers{{"sse.stream", "wiki"},
                                        {"sse.event", "edit"},
                                        {"sse.id", "42"},
                                        {"source", "wikimedia"},
                                        {"team", "ingest"}}));
}

TEST(RecordBuilderRawTest, NoIdHeaderWhenIdIsEmptyAndEmptyDataGivesEmptyValue) {
  RecordBuilder builder(Stream(), kDefaultSource);
  const BuiltRecord& record = builder.Build(Event(""));
  EXPECT_TRUE(record.value.empty());
  EXPECT_EQ(HeadersOf(record), (Headers{{"sse.stream", "wiki"}, {"sse.event", "message"}}));
}

// ---- cloudevents-binary ----

config::StreamConfig CloudEventsStream(RecordFormat format) {
  config::StreamConfig stream = Stream();
  stream.format = format;
  stream.cloudevents.type_prefix = "org.example.";
  stream.record_headers = {{"source", "wikimedia"}};
  return stream;
}

TEST(RecordBuilderCloudEventsBinaryTest, HeadersInOrder) {
  RecordBuilder builder(CloudEventsStream(RecordFormat::kCloudEventsBinary), kDefaultSource);
  EventView event = Event(R"({"a":1})", "42", "edit");
  const BuiltRecord& record = builder.Build(event);
  EXPECT_EQ(record.value, R"({"a":1})");
  EXPECT_EQ(HeadersOf(record),
            (Headers{{"sse.stream", "wiki"},
                     {"sse.event", "edit"},
                     {"sse.id", "42"},
                     {"ce_specversion", "1.0"},
                     {"ce_id", "42"},
                     {"ce_source", "https://stream.example.org:8443/v2/recentchange"},
                     {"ce_type", "org.example.edit"},
                     {"ce_time", kDispatchText},
                     {"content-type", "application/json"},
                     {"source", "wikimedia"}}));
}

struct ContentTypeCase {
  std::string_view data;
  std::string expected;
};

TEST(RecordBuilderCloudEventsBinaryTest, DetectsJsonContentType) {
  RecordBuilder builder(CloudEventsStream(RecordFormat::kCloudEventsBinary), kDefaultSource);
  EXPECT_TRUE(builder.parses_json());
  const std::vector<ContentTypeCase> cases = {
      {R"({"a":1})", "application/json"},
      {"[1,2]", "application/json"},
      {"42", "application/json"},
      {"\"text\"", "application/json"},
      {"true", "application/json"},
      {"null", "application/json"},
      {" {\"a\" : 1}\n", "application/json"},
      {"hello", "text/plain; charset=utf-8"},
      {"", "text/plain; charset=utf-8"},
      {"{\"a\":1", "text/plain; charset=utf-8"},
      {"{\"a\":1}\n{\"b\":2}", "text/plain; charset=utf-8"},
  };
  for (const ContentTypeCase& c : cases) {
    EXPECT_EQ(HeaderValue(builder.Build(Event(c.data)), "content-type"), c.expected) << c.data;
  }
}

TEST(RecordBuilderCloudEventsBinaryTest, ConfiguredContentTypeAndSourceWinWithoutParsing) {
  config::StreamConfig stream = CloudEventsStream(RecordFormat::kCloudEventsBinary);
  stream.cloudevents.content_type = "application/x-custom";
  stream.cloudevents.source = "https://example.org/feeds/wiki";
  RecordBuilder builder(stream, kDefaultSource);
  EXPECT_FALSE(builder.parses_json());
  const BuiltRecord& record = builder.Build(Event("{}"));
  EXPECT_EQ(HeaderValue(record, "content-type"), "application/x-custom");
  EXPECT_EQ(HeaderValue(record, "ce_source"), "https://example.org/feeds/wiki");
}

struct CeIdCase {
  std::string_view last_event_id;
  bool id_in_block;
  uint64_t sequence;
  std::string expected;
};

TEST(RecordBuilderCloudEventsBinaryTest, CloudEventIdRules) {
  RecordBuilder builder(CloudEventsStream(RecordFormat::kCloudEventsBinary), kDefaultSource);
  // Generated ids are "<prefix>/<token>.<sequence>" with a random 16-hex-digit token per builder.
  const std::string token = [&] {
    EventView event = Event("x", "");
    event.sequence = 1;
    const std::string id(HeaderValue(builder.Build(event), "ce_id"));
    return id.substr(id.find('/') + 1, 16);
  }();
  ASSERT_EQ(token.size(), 16u);
  const std::vector<CeIdCase> cases = {
      {"42", true, 7, "42"},  // the event's own id
      {"42", false, 8, "42/" + token + ".8"},  // inherited id: made unique
      {"", false, 9, "wiki/" + token + ".9"},   // no id at all
      {"", true, 10, "wiki/" + token + ".10"},  // its block reset the id to empty
      {"a/b", false, 18446744073709551615ULL, "a/b/" + token + ".18446744073709551615"},
  };
  for (const CeIdCase& c : cases) {
    EventView event = Event("x", c.last_event_id);
    event.id_in_block = c.id_in_block;
    event.sequence = c.sequence;
    EXPECT_EQ(HeaderValue(builder.Build(event), "ce_id"), c.expected);
  }
}

TEST(RecordBuilderCloudEventsBinaryTest, GeneratedIdsDifferBetweenBuilders) {
  // A restart or a reload makes a new builder whose sequences start again.
  RecordBuilder first(CloudEventsStream(RecordFormat::kCloudEventsBinary), kDefaultSource);
  RecordBuilder second(CloudEventsStream(RecordFormat::kCloudEventsBinary), kDefaultSource);
  EventView event = Event("x", "1001");
  event.id_in_block = false;  // inherited id: ce_id is generated
  event.sequence = 2;
  EXPECT_NE(std::string(HeaderValue(first.Build(event), "ce_id")),
            std::string(HeaderValue(second.Build(event), "ce_id")));
}

// ---- cloudevents-structured ----

TEST(RecordBuilderCloudEventsStructuredTest, JsonDataIsEmbeddedAsJson) {
  RecordBuilder builder(CloudEventsStream(RecordFormat::kCloudEventsStructured), kDefaultSource);
  EXPECT_TRUE(builder.parses_json());
  const BuiltRecord& record = builder.Build(Event(" {\"a\": [1, \"x\"]} ", "42", "edit"));
  EXPECT_EQ(HeadersOf(record), (Headers{{"sse.stream", "wiki"},
                                        {"sse.event", "edit"},
                                        {"sse.id", "42"},
                                        {"content-type", "application/cloudevents+json; charset=UTF-8"},
                                        {"source", "wikimedia"}}));
  const nlohmann::json value = ParsedValue(record);
  EXPECT_EQ(value, nlohmann::json::parse(R"({
      "specversion": "1.0", "id": "42",
      "source": "https://stream.example.org:8443/v2/recentchange",
      "type": "org.example.edit", "time": "2026-11-23T21:07:52.123Z",
      "datacontenttype": "application/json", "data": {"a": [1, "x"]}})"));
  // The order of members is fixed, so consumers and tests may compare bytes.
  EXPECT_TRUE(record.value.starts_with(R"({"specversion":"1.0","id":"42","source":)"));
}

TEST(RecordBuilderCloudEventsStructuredTest, BareScalarsAreJsonToo) {
  RecordBuilder builder(CloudEventsStream(RecordFormat::kCloudEventsStructured), kDefaultSource);
  EXPECT_EQ(ParsedValue(builder.Build(Event("42")))["data"], 42);
  EXPECT_EQ(ParsedValue(builder.Build(Event("\"s\"")))["data"], "s");
  EXPECT_EQ(ParsedValue(builder.Build(Event("null")))["data"], nullptr);
}

TEST(RecordBuilderCloudEventsStructuredTest, OtherDataIsEmbeddedAsString) {
  RecordBuilder builder(CloudEventsStream(RecordFormat::kCloudEventsStructured), kDefaultSource);
  const std::string data = "not \"json\"\n\ttab \x01 \xF0\x9F\x98\x80 \xEF\xBF\xBD";
  for (std::string_view d : {std::string_view(data), std::string_view(""), std::string_view("{\"a\":")}) {
    const nlohmann::json value = ParsedValue(builder.Build(Event(d)));
    EXPECT_EQ(value["data"], std::string(d));
    EXPECT_EQ(value["datacontenttype"], "text/plain; charset=utf-8");
  }
}

TEST(RecordBuilderCloudEventsStructuredTest, ConfiguredContentTypeDecidesEmbedding) {
  struct Case {
    std::string_view content_type;
    std::string_view data;
    bool parses;
    nlohmann::json expected_data;
  };
  const std::vector<Case> cases = {
      {"application/json", R"({"a":1})", true, nlohmann::json{{"a", 1}}},
      {"application/json", "oops", true, "oops"},  // claimed JSON but is not: a string keeps it valid
      {"Application/Vnd.Example+JSON ; charset=utf-8", "[1]", true, nlohmann::json::array({1})},
      {"text/plain", R"({"a":1})", true, nlohmann::json{{"a", 1}}},  // interface.md: JSON text embeds
  };
  for (const Case& c : cases) {
    config::StreamConfig stream = CloudEventsStream(RecordFormat::kCloudEventsStructured);
    stream.cloudevents.content_type = c.content_type;
    RecordBuilder builder(stream, kDefaultSource);
    EXPECT_EQ(builder.parses_json(), c.parses) << c.content_type;
    const nlohmann::json value = ParsedValue(builder.Build(Event(c.data)));
    EXPECT_EQ(value["data"], c.expected_data) << c.content_type;
    EXPECT_EQ(value["datacontenttype"], c.content_type);
  }
}

TEST(RecordBuilderCloudEventsStructuredTest, AttributesAreEscaped) {
  config::StreamConfig stream = CloudEventsStream(RecordFormat::kCloudEventsStructured);
  stream.cloudevents.source = "urn:\"quoted\"\\";
  RecordBuilder builder(stream, kDefaultSource);
  EventView event = Event("x", "id\"\n\x02", "ty\"pe\\");
  const nlohmann::json value = ParsedValue(builder.Build(event));
  EXPECT_EQ(value["id"], "id\"\n\x02");
  EXPECT_EQ(value["type"], "org.example.ty\"pe\\");
  EXPECT_EQ(value["source"], "urn:\"quoted\"\\");
}

// ---- envelope ----

TEST(RecordBuilderEnvelopeTest, ValueHoldsTheEventAsStrings) {
  config::StreamConfig stream = Stream();
  stream.format = RecordFormat::kEnvelope;
  RecordBuilder builder(stream, kDefaultSource);
  EXPECT_FALSE(builder.parses_json());
  const BuiltRecord& record = builder.Build(Event(R"({"a":1})", "42", "edit"));
  EXPECT_EQ(record.value,
            R"({"stream":"wiki","event":"edit","id":"42","data":"{\"a\":1}",)"
            R"("received_at":"2026-11-23T21:07:52.123Z"})");
  EXPECT_EQ(HeadersOf(record), (Headers{{"sse.stream", "wiki"}, {"sse.event", "edit"}, {"sse.id", "42"}}));
}

TEST(RecordBuilderEnvelopeTest, EmptyIdIsNullAndOddBytesStayValid) {
  config::StreamConfig stream = Stream();
  stream.format = RecordFormat::kEnvelope;
  stream.name = "str\"eam";
  RecordBuilder builder(stream, kDefaultSource);
  const std::string data = "a\nb\x1f\"\\ \xF0\x9F\x98\x80";
  const nlohmann::json value = ParsedValue(builder.Build(Event(data, "", "t")));
  EXPECT_EQ(value["id"], nullptr);
  EXPECT_EQ(value["data"], data);
  EXPECT_EQ(value["stream"], "str\"eam");
  EXPECT_EQ(value["received_at"], kDispatchText);
  // Invalid UTF-8 (the parser never passes it, but the builder must not make invalid JSON).
  const nlohmann::json replaced = ParsedValue(builder.Build(Event("a\xFF" "b", "\xC3")));
  EXPECT_EQ(replaced["data"], "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(replaced["id"], "\xEF\xBF\xBD");
}

// ---- Views and allocations ----

TEST(RecordBuilderTest, ResultDoesNotDependOnTheConfigAfterConstruction) {
  auto stream = std::make_unique<config::StreamConfig>(CloudEventsStream(RecordFormat::kCloudEventsBinary));
  RecordBuilder builder(*stream, kDefaultSource);
  stream.reset();
  const BuiltRecord& record = builder.Build(Event("x"));
  EXPECT_EQ(record.topic, "wiki.events");
  EXPECT_EQ(HeaderValue(record, "sse.stream"), "wiki");
  EXPECT_EQ(HeaderValue(record, "source"), "wikimedia");
}

std::size_t AllocationsWhileBuilding(RecordBuilder& builder, const std::vector<EventView>& events,
                                     int rounds) {
  for (const EventView& event : events) builder.Build(event);  // grow every buffer first
  Heap().allocations = 0;
  Heap().counting = true;
  for (int round = 0; round < rounds; ++round) {
    for (const EventView& event : events) builder.Build(event);
  }
  Heap().counting = false;
  return Heap().allocations;
}

std::vector<EventView> SteadyStateEvents() {
  return {Event(R"({"meta":{"id":"abc"},"n":[1,2.5,true]})", "41", "edit"),
          Event("plain text with \"quotes\"\n", "", "message"),
          Event(R"({"meta":{"id":12}})", "43", "log"),
          Event("", "44", "edit")};
}

TEST(RecordBuilderTest, AllocationCounterSeesTheFirstBuild) {
  config::StreamConfig stream = CloudEventsStream(RecordFormat::kCloudEventsStructured);
  RecordBuilder builder(stream, kDefaultSource);
  Heap().allocations = 0;
  Heap().counting = true;
  builder.Build(Event(std::string(1000, 'x'), "1"));  // the value buffer has to grow
  Heap().counting = false;
  EXPECT_GT(Heap().allocations, 0u);
}

TEST(RecordBuilderTest, RawStreamDoesNotAllocatePerEvent) {
  config::StreamConfig stream = Stream();
  stream.topic.clear();
  stream.topics = {{"edit", "wiki.edits"}, {"*", "wiki.other"}};
  stream.record_headers = {{"source", "wikimedia"}};
  for (KeyMode mode : {KeyMode::kStream, KeyMode::kId, KeyMode::kEvent, KeyMode::kNone}) {
    stream.key = mode;
    RecordBuilder builder(stream, kDefaultSource);
    EXPECT_EQ(AllocationsWhileBuilding(builder, SteadyStateEvents(), 1000), 0u);
  }
}

TEST(RecordBuilderTest, EveryFormatStopsAllocatingOnceBuffersHaveGrown) {
  for (RecordFormat format : {RecordFormat::kRaw, RecordFormat::kCloudEventsBinary,
                              RecordFormat::kCloudEventsStructured, RecordFormat::kEnvelope}) {
    config::StreamConfig stream = CloudEventsStream(format);
    stream.key = KeyMode::kJsonPointer;
    stream.key_pointer = "/meta/id";
    RecordBuilder builder(stream, kDefaultSource);
    EXPECT_EQ(AllocationsWhileBuilding(builder, SteadyStateEvents(), 200), 0u)
        << static_cast<int>(format);
  }
}

}  // namespace
}  // namespace sse2kafka::sink
