// Fuzzes the record builder's JSON output: arbitrary bytes as the event's type, ID and data go
// through every format and key mode. Every JSON value must parse (nlohmann_json, an independent
// parser), and for valid UTF-8 input must give back exactly what went in. JsonData is checked
// against nlohmann too: what simdjson calls JSON nlohmann must accept, and the whole document
// read back as a key must equal the document.
#include <fuzzer/FuzzedDataProvider.h>
#include <simdjson.h>

#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "sink/json_key.h"
#include "sink/json_text.h"
#include "sink/record_builder.h"

namespace {

using sse2kafka::config::KeyMode;
using sse2kafka::config::RecordFormat;
using sse2kafka::sink::BuiltRecord;
using sse2kafka::sink::EventView;
using sse2kafka::sink::RecordBuilder;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "check failed: %s\n", what);
    std::abort();
  }
}

bool IsUtf8(const std::string& s) { return simdjson::validate_utf8(s.data(), s.size()); }

std::string HeaderValue(const BuiltRecord& record, std::string_view name) {
  for (const auto& h : record.headers) {
    if (h.name == name) return std::string(h.value);
  }
  return {};
}

std::string Rfc3339(int64_t unix_ms) {
  std::string out;
  sse2kafka::sink::AppendRfc3339Millis(out, unix_ms);
  return out;
}

nlohmann::json ParseValue(const BuiltRecord& record) {
  const std::string value(record.value);
  Check(nlohmann::json::accept(value), "record value is JSON");
  return nlohmann::json::parse(value);
}

// Returns whether `data` is JSON text by JsonData's account.
bool CheckJsonData(const std::string& data) {
  sse2kafka::sink::JsonData json;
  if (!json.Parse(data)) return false;
  Check(nlohmann::json::accept(data), "simdjson's JSON is nlohmann's JSON");
  const nlohmann::json expected = nlohmann::json::parse(data);
  const std::optional<std::string_view> whole = json.KeyAt("");
  if (expected.is_null()) {
    Check(!whole, "null gives no key");
    return true;
  }
  Check(whole.has_value(), "a non-null document gives a key");
  if (expected.is_string()) {
    Check(*whole == expected.get<std::string>(), "a string key is the string's value");
  } else {
    const std::string text(*whole);
    Check(nlohmann::json::accept(text), "compact JSON key is JSON");
    Check(nlohmann::json::parse(text) == expected, "compact JSON key is the same value");
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  FuzzedDataProvider input(bytes, size);
  const std::string type = input.ConsumeRandomLengthString(32);
  const std::string id = input.ConsumeRandomLengthString(32);
  const std::string pointer = input.ConsumeRandomLengthString(16);
  const bool id_in_block = input.ConsumeBool();
  const auto dispatch_ms = input.ConsumeIntegral<int64_t>();
  const auto sequence = input.ConsumeIntegral<uint64_t>();
  const std::string content_types[] = {"", "application/json", "text/plain", "application/x+json"};
  const std::string content_type = content_types[input.ConsumeIntegralInRange<int>(0, 3)];
  const std::string data = input.ConsumeRemainingBytesAsString();
  const bool utf8 = IsUtf8(type) && IsUtf8(id) && IsUtf8(data);

  const bool data_is_json = CheckJsonData(data);

  EventView event;
  event.type = type;
  event.data = data;
  event.last_event_id = id;
  event.id_in_block = id_in_block;
  event.dispatch_time_ms = dispatch_ms;
  event.sequence = sequence;

  for (RecordFormat format : {RecordFormat::kRaw, RecordFormat::kCloudEventsBinary,
                              RecordFormat::kCloudEventsStructured, RecordFormat::kEnvelope}) {
    sse2kafka::config::StreamConfig stream;
    stream.name = "fuzz\"stream";
    stream.url = "https://user:pw@example.org/feed";
    stream.topic = "t";
    stream.format = format;
    stream.key = KeyMode::kJsonPointer;
    stream.key_pointer = pointer;
    stream.key_fallback = KeyMode::kId;
    stream.cloudevents.content_type = content_type;
    stream.cloudevents.type_prefix = "p.";
    RecordBuilder builder(stream, "https://example.org/feed");  // what the pipeline passes: no userinfo, query or fragment
    const BuiltRecord& record = builder.Build(event);
    Check(record.routed, "routed");
    Check(HeaderValue(record, "sse.event") == type, "sse.event header");
    if (record.key_fell_back) {
      Check(id.empty() ? !record.key : record.key == std::string_view(id), "fallback key is the id");
    }

    switch (format) {
      case RecordFormat::kRaw:
        Check(record.value == data, "raw value is the data");
        break;
      case RecordFormat::kCloudEventsBinary: {
        Check(record.value == data, "binary value is the data");
        Check(HeaderValue(record, "ce_time") == Rfc3339(dispatch_ms), "ce_time");
        Check(HeaderValue(record, "ce_source") == "https://example.org/feed", "ce_source");
        const std::string detected = HeaderValue(record, "content-type");
        if (!content_type.empty()) {
          Check(detected == content_type, "configured content type");
        } else if (detected == "application/json") {
          Check(nlohmann::json::accept(data), "detected JSON is JSON");
        }
        break;
      }
      case RecordFormat::kCloudEventsStructured: {
        const nlohmann::json value = ParseValue(record);
        Check(value["specversion"] == "1.0", "specversion");
        Check(value["time"] == Rfc3339(dispatch_ms), "time");
        if (!utf8) break;
        Check(value["type"] == "p." + type, "type");
        if (id_in_block && !id.empty()) Check(value["id"] == id, "id");
        // interface.md: JSON text is embedded as JSON whatever content type is configured.
        if (data_is_json) {
          Check(value["data"] == nlohmann::json::parse(data), "embedded data round-trips");
        } else {
          Check(value["data"] == data, "string data round-trips");
        }
        if (content_type.empty()) {
          Check(value["datacontenttype"] == (data_is_json ? "application/json" : "text/plain; charset=utf-8"),
                "detected datacontenttype");
        } else {
          Check(value["datacontenttype"] == content_type, "configured datacontenttype");
        }
        break;
      }
      case RecordFormat::kEnvelope: {
        const nlohmann::json value = ParseValue(record);
        Check(value["received_at"] == Rfc3339(dispatch_ms), "received_at");
        Check(value["stream"] == "fuzz\"stream", "stream");
        if (!utf8) break;
        Check(value["event"] == type, "event");
        Check(value["data"] == data, "data");
        Check(id.empty() ? value["id"].is_null() : value["id"] == id, "id");
        break;
      }
    }
  }
  return 0;
}
