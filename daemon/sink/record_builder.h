// How one dispatched SSE event becomes one Kafka record: its topic, key, value and headers, as
// the stream's `topic`/`topics`, `key`, `format`, `cloudevents` and `record_headers` settings
// say (interface.md, "What lands in Kafka" and "Routing and record formats").
//
// Record layout, per format (every string JSON-escaped by AppendJsonString, json_text.h):
//   raw                     value = data.
//   cloudevents-binary      value = data; headers ce_specversion, ce_id, ce_source, ce_type,
//                           ce_time, content-type.
//   cloudevents-structured  value = {"specversion":"1.0","id":..,"source":..,"type":..,
//                           "time":..,"datacontenttype":..,"data":..}; header content-type:
//                           application/cloudevents+json; charset=UTF-8.
//   envelope                value = {"stream":..,"event":..,"id":..|null,"data":"..",
//                           "received_at":..}.
// Headers come in this order: sse.stream, sse.event, sse.id (only when the last event ID is not
// empty), then the format's headers above, then `record_headers` in config order.
//
// CloudEvents attributes:
//   id      the event's ID when its own block set a non-empty one; otherwise
//           "<last event id>/<sequence>", or "<stream name>/<sequence>" when the last event ID
//           is empty, with a random per-builder token before the sequence
//           (`<last id>/<token>.<sequence>`): EventView::sequence starts again in every process
//           and after every reload, the token keeps generated ids from repeating.
//   source  cloudevents.source, else the stream URL with its userinfo ("user:pass@") removed.
//   type    cloudevents.type_prefix followed by the SSE event type.
//   time    the dispatch time, RFC 3339 UTC with milliseconds (2026-11-23T21:07:52.123Z).
//   datacontenttype / content-type
//           cloudevents.content_type when set, else "application/json" when the data is JSON
//           text (json_key.h says what counts), else "text/plain; charset=utf-8".
//   data    (structured) the data embedded as it is, byte for byte, when it is JSON text
//           (whatever content type is configured, as interface.md says); otherwise the data
//           as a JSON string.
//
// Keys: stream → the stream name; id → the last event ID, no key when it is empty; event → the
// type; none → no key; json:POINTER → JsonData::KeyAt (json_key.h), and when that finds
// nothing (null, missing member, data not JSON) the key_fallback mode, flagged in
// BuiltRecord::key_fell_back.
//
// The data is parsed as JSON only when the settings need it: a json: key, cloudevents-binary
// without a configured content_type, or cloudevents-structured unless its configured
// content_type is not a JSON one. Other streams never parse.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "sink/json_key.h"
#include "sink/kafka_producer.h"

namespace sse2kafka::sink {

// One dispatched SSE event, as the bridge sees it.
struct EventView {
  std::string_view type;           // "message" when the block set none
  std::string_view data;
  std::string_view last_event_id;  // at dispatch; may be empty
  bool id_in_block = false;        // the event's own block set an id
  int64_t dispatch_time_ms = 0;    // unix epoch milliseconds
  uint64_t sequence = 0;           // per-stream event counter, unique per stream in this process
};

// The builder's headers are handed to the producer as they are.
using RecordHeader = RecordHeaderView;

struct BuiltRecord {
  bool routed = false;  // false: no route for this type (and no "*"); nothing else is set
  std::string_view topic;
  std::optional<std::string_view> key;  // nullopt: no key
  std::string_view value;               // empty data gives an empty (non-null) value
  std::span<const RecordHeader> headers;
  bool key_fell_back = false;  // key json:... found nothing and used key_fallback
};

// Picks a record's topic from the event type.
class TopicRouter {
 public:
  explicit TopicRouter(const config::StreamConfig& stream);

  // With `topics`: the route for `type`, else the "*" route, else nullopt. Without: `topic`
  // (nullopt when that is empty too).
  std::optional<std::string_view> TopicFor(std::string_view type) const;

 private:
  std::string topic_;
  std::map<std::string, std::string, std::less<>> routes_;  // event type → topic, "*" excluded
  std::optional<std::string> catch_all_;                    // the "*" route
};

class RecordBuilder {
 public:
  // Copies what it needs from `stream` (which may go away afterwards) and precomputes the
  // routes, the constant headers and the constant parts of JSON values. `default_source` is the
  // CloudEvents source when cloudevents.source is empty: the caller's job, since which parts of
  // a URL may be shown is HTTP knowledge (the stream URL without userinfo, query and fragment).
  RecordBuilder(const config::StreamConfig& stream, std::string default_source);

  // Results point into the builder, so it stays where it was made.
  RecordBuilder(const RecordBuilder&) = delete;
  RecordBuilder& operator=(const RecordBuilder&) = delete;

  // Builds the record for `event`. The views in the result point into `event`, into the builder
  // and into its buffers: they stay valid until the next Build or until the builder is
  // destroyed, as long as what `event` points to does. Never fails: every input, including
  // invalid UTF-8, gives a record whose JSON parts are valid JSON. Buffers are reused: once they
  // have grown to fit the largest record seen, Build allocates nothing, whatever the format.
  const BuiltRecord& Build(const EventView& event);

  // Whether Build parses each event's data as JSON.
  bool parses_json() const { return parse_json_; }

 private:
  std::optional<std::string_view> SimpleKey(config::KeyMode mode, const EventView& event) const;
  void ChooseKey(const EventView& event);
  void FillCloudEventAttributes(const EventView& event, bool data_is_json);
  void WriteStructuredValue(const EventView& event, bool data_is_json);
  void WriteEnvelopeValue(const EventView& event);

  // Settings.
  TopicRouter router_;
  std::string stream_name_;
  config::KeyMode key_mode_;
  config::KeyMode key_fallback_;
  std::string key_pointer_;
  config::RecordFormat format_;
  std::string ce_source_;
  std::string ce_type_prefix_;
  std::string ce_id_token_;            // random per builder: generated ce_ids never repeat
  std::string ce_content_type_;        // configured; empty: detect
  bool embed_json_data_ = false;       // structured: embed JSON data as JSON
  bool parse_json_ = false;
  std::vector<config::Header> record_headers_;
  std::string structured_source_json_;  // ce_source_ as a JSON string
  std::string envelope_prefix_json_;    // {"stream":<name>,"event":

  // Per-event buffers, reused.
  JsonData json_;
  std::string ce_id_;
  std::string ce_type_;
  std::string ce_time_;
  std::string_view content_type_;
  std::string value_;
  std::vector<RecordHeader> headers_;
  BuiltRecord record_;
};

}  // namespace sse2kafka::sink
