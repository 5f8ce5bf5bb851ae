#include "sink/record_builder.h"

#include <random>

#include <charconv>

#include "sink/json_text.h"

namespace sse2kafka::sink {
namespace {

using config::KeyMode;
using config::RecordFormat;

constexpr std::string_view kJsonContentType = "application/json";
constexpr std::string_view kTextContentType = "text/plain; charset=utf-8";
constexpr std::string_view kStructuredContentType = "application/cloudevents+json; charset=UTF-8";

void AppendDecimal(std::string& out, uint64_t value) {
  char text[20];
  const std::to_chars_result result = std::to_chars(text, text + sizeof text, value);
  out.append(text, result.ptr);
}

}  // namespace

TopicRouter::TopicRouter(const config::StreamConfig& stream) : topic_(stream.topic) {
  for (const config::TopicRoute& route : stream.topics) {
    if (route.event_type == "*") {
      if (!catch_all_) catch_all_ = route.topic;
    } else {
      routes_.emplace(route.event_type, route.topic);  // the first route for a type wins
    }
  }
}

std::optional<std::string_view> TopicRouter::TopicFor(std::string_view type) const {
  if (routes_.empty() && !catch_all_) {
    if (topic_.empty()) return std::nullopt;
    return std::string_view(topic_);
  }
  const auto route = routes_.find(type);
  if (route != routes_.end()) return std::string_view(route->second);
  if (catch_all_) return std::string_view(*catch_all_);
  return std::nullopt;
}

RecordBuilder::RecordBuilder(const config::StreamConfig& stream, std::string default_source)
    : router_(stream),
      stream_name_(stream.name),
      key_mode_(stream.key),
      key_fallback_(stream.key_fallback),
      key_pointer_(stream.key_pointer),
      format_(stream.format),
      ce_source_(stream.cloudevents.source.empty() ? std::move(default_source) : stream.cloudevents.source),
      ce_type_prefix_(stream.cloudevents.type_prefix),
      ce_content_type_(stream.cloudevents.content_type),
      record_headers_(stream.record_headers) {
  const bool detect_content_type = ce_content_type_.empty();
  // interface.md: structured `data` is embedded as JSON whenever it is JSON text, whatever
  // content type is configured (consumers can always read it back as JSON).
  embed_json_data_ = format_ == RecordFormat::kCloudEventsStructured;
  parse_json_ = key_mode_ == KeyMode::kJsonPointer || embed_json_data_ ||
                (format_ == RecordFormat::kCloudEventsBinary && detect_content_type);
  AppendJsonString(structured_source_json_, ce_source_);
  // 64 random bits in hex: unique enough across restarts and reloads of one stream.
  std::random_device random;
  const uint64_t token = (uint64_t{random()} << 32) | random();
  static constexpr char kHex[] = "0123456789abcdef";
  for (int shift = 60; shift >= 0; shift -= 4) ce_id_token_ += kHex[(token >> shift) & 0xf];
  envelope_prefix_json_ = "{\"stream\":";
  AppendJsonString(envelope_prefix_json_, stream_name_);
  envelope_prefix_json_ += ",\"event\":";
  headers_.reserve(3 + 6 + record_headers_.size());
}

const BuiltRecord& RecordBuilder::Build(const EventView& event) {
  record_ = BuiltRecord{};
  const std::optional<std::string_view> topic = router_.TopicFor(event.type);
  if (!topic) return record_;
  record_.routed = true;
  record_.topic = *topic;

  const bool data_is_json = parse_json_ && json_.Parse(event.data);
  ChooseKey(event);

  headers_.clear();
  headers_.push_back({"sse.stream", stream_name_});
  headers_.push_back({"sse.event", event.type});
  if (!event.last_event_id.empty()) headers_.push_back({"sse.id", event.last_event_id});

  switch (format_) {
    case RecordFormat::kRaw:
      record_.value = event.data;
      break;
    case RecordFormat::kCloudEventsBinary:
      FillCloudEventAttributes(event, data_is_json);
      headers_.push_back({"ce_specversion", "1.0"});
      headers_.push_back({"ce_id", ce_id_});
      headers_.push_back({"ce_source", ce_source_});
      headers_.push_back({"ce_type", ce_type_});
      headers_.push_back({"ce_time", ce_time_});
      headers_.push_back({"content-type", content_type_});
      record_.value = event.data;
      break;
    case RecordFormat::kCloudEventsStructured:
      FillCloudEventAttributes(event, data_is_json);
      headers_.push_back({"content-type", kStructuredContentType});
      WriteStructuredValue(event, data_is_json);
      record_.value = value_;
      break;
    case RecordFormat::kEnvelope:
      WriteEnvelopeValue(event);
      record_.value = value_;
      break;
  }

  for (const auto& [name, value] : record_headers_) headers_.push_back({name, value});
  record_.headers = headers_;
  return record_;
}

std::optional<std::string_view> RecordBuilder::SimpleKey(KeyMode mode, const EventView& event) const {
  switch (mode) {
    case KeyMode::kStream:
      return std::string_view(stream_name_);
    case KeyMode::kId:
      if (event.last_event_id.empty()) return std::nullopt;
      return event.last_event_id;
    case KeyMode::kEvent:
      return event.type;
    case KeyMode::kNone:
    case KeyMode::kJsonPointer:  // never a fallback (the config refuses it): no key
      return std::nullopt;
  }
  return std::nullopt;
}

void RecordBuilder::ChooseKey(const EventView& event) {
  if (key_mode_ != KeyMode::kJsonPointer) {
    record_.key = SimpleKey(key_mode_, event);
    return;
  }
  // KeyAt finds nothing when the last Parse failed, so data that is not JSON falls back too.
  record_.key = json_.KeyAt(key_pointer_);
  if (!record_.key) {
    record_.key_fell_back = true;
    record_.key = SimpleKey(key_fallback_, event);
  }
}

void RecordBuilder::FillCloudEventAttributes(const EventView& event, bool data_is_json) {
  ce_id_.clear();
  if (event.id_in_block && !event.last_event_id.empty()) {
    ce_id_ = event.last_event_id;
  } else {
    ce_id_ = event.last_event_id.empty() ? std::string_view(stream_name_) : event.last_event_id;
    ce_id_ += '/';
    ce_id_ += ce_id_token_;
    ce_id_ += '.';
    AppendDecimal(ce_id_, event.sequence);
  }
  ce_type_ = ce_type_prefix_;
  ce_type_ += event.type;
  ce_time_.clear();
  AppendRfc3339Millis(ce_time_, event.dispatch_time_ms);
  if (!ce_content_type_.empty()) {
    content_type_ = ce_content_type_;
  } else {
    content_type_ = data_is_json ? kJsonContentType : kTextContentType;
  }
}

void RecordBuilder::WriteStructuredValue(const EventView& event, bool data_is_json) {
  value_ = "{\"specversion\":\"1.0\",\"id\":";
  AppendJsonString(value_, ce_id_);
  value_ += ",\"source\":";
  value_ += structured_source_json_;
  value_ += ",\"type\":";
  AppendJsonString(value_, ce_type_);
  value_ += ",\"time\":\"";
  value_ += ce_time_;
  value_ += "\",\"datacontenttype\":";
  AppendJsonString(value_, content_type_);
  value_ += ",\"data\":";
  if (embed_json_data_ && data_is_json) {
    value_ += event.data;
  } else {
    AppendJsonString(value_, event.data);
  }
  value_ += '}';
}

void RecordBuilder::WriteEnvelopeValue(const EventView& event) {
  value_ = envelope_prefix_json_;
  AppendJsonString(value_, event.type);
  value_ += ",\"id\":";
  if (event.last_event_id.empty()) {
    value_ += "null";
  } else {
    AppendJsonString(value_, event.last_event_id);
  }
  value_ += ",\"data\":";
  AppendJsonString(value_, event.data);
  value_ += ",\"received_at\":\"";
  AppendRfc3339Millis(value_, event.dispatch_time_ms);
  value_ += "\"}";
}

}  // namespace sse2kafka::sink
