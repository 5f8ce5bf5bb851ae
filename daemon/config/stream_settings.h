// The per-stream settings: reading them from one mapping (a stream or `defaults`) and merging
// `defaults` into a stream. Each field is set only when its key was written (and valid), so a
// merge can tell "not written here" from "written with the default value".
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config/yaml_reader.h"

namespace sse2kafka::config {

struct StreamSettings {
  std::optional<std::string> method;
  std::vector<Header> headers;             // in file order
  std::vector<Header> headers_from_files;  // name, path
  std::optional<std::string> body;
  std::vector<Header> query;             // in file order
  std::vector<Header> query_from_files;  // name, path
  std::vector<std::string> secret_query_params;

  // True when `topic` or `topics` was written here, even with a bad value: a stream whose
  // routing is invalid is not also reported as having none.
  bool routing_written = false;
  std::optional<std::string> topic;
  std::optional<std::vector<TopicRoute>> topics;
  std::optional<KeyMode> key;
  std::string key_pointer;  // with key == kJsonPointer
  std::optional<KeyMode> key_fallback;
  std::optional<std::vector<std::string>> events;
  std::optional<RecordFormat> format;
  std::optional<std::string> cloudevents_source;
  std::optional<std::string> cloudevents_type_prefix;
  std::optional<std::string> cloudevents_content_type;
  std::vector<Header> record_headers;

  std::optional<bool> resume;
  std::optional<std::string> start_from_last_event_id;
  std::optional<Duration> idle_timeout;
  std::optional<Duration> connect_timeout;
  std::optional<Duration> min_delay;
  std::optional<Duration> initial_delay;
  std::optional<Duration> max_delay;
  std::optional<Duration> reset_after;
  std::optional<Duration> max_retry_after;
  std::optional<std::size_t> max_event_size;
  std::optional<std::size_t> max_event_id_size;
  std::optional<std::string> ca_file;
  std::optional<std::string> cert_file;
  std::optional<std::string> key_file;
  std::optional<bool> insecure_skip_verify;
  std::optional<std::string> proxy;
  std::optional<HttpVersion> http_version;
  std::optional<bool> redirect_headers_keep;
  std::optional<std::string> last_event_id_param;
  std::optional<OnEnd> on_end;
  std::optional<OnOversize> oversize;
  std::optional<std::string> stop_on_data;
};

// Every key a stream or `defaults` may hold, other than a stream's own `name` and `url`.
std::span<const std::string_view> StreamSettingKeys();

// Reads every entry whose key is one of StreamSettingKeys() into `settings`, reporting each
// problem (bad values, `topic` together with `topics`, a header both in `headers` and in
// `headers_from_files`). Entries with other keys are skipped: the caller checks the keys.
void ReadStreamSettings(YamlReader& reader, const std::vector<Field>& entries, StreamSettings& settings);

// Applies one layer onto `stream` (first `defaults`, then the stream's own): a written scalar
// replaces the value; `headers` and `headers_from_files` are merged by name compared
// case-insensitively (a name set in one of them replaces it in the other), `query` and
// `query_from_files` likewise by exact name, `secret_query_params` adds names, `record_headers`
// by exact name, both keeping the earlier position of a replaced name; `reconnect`, `tls` and
// `cloudevents` are merged per sub-key; `topic` and `topics` replace each other; `events`
// replaces the whole list.
void ApplyStreamSettings(const StreamSettings& layer, StreamConfig& stream);

// Checks shared with the top-level sections.
bool IsKafkaTopicName(std::string_view name);
// A string that must be a Kafka topic name; nullopt after reporting when it is not.
std::optional<std::string> ReadTopicName(YamlReader& reader, const Field& field);
bool IsHttpToken(std::string_view text);

}  // namespace sse2kafka::config
