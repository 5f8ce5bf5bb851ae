#include "config/stream_settings.h"

#include <strings.h>

#include <algorithm>
#include <array>
#include <iterator>

namespace sse2kafka::config {

namespace {

constexpr std::size_t kMinEventSize = std::size_t{1} << 10;
constexpr std::size_t kMaxEventSize = std::size_t{256} << 20;
constexpr std::size_t kMaxEventIdSize = std::size_t{1} << 20;

bool IsAsciiAlnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

bool SameHeaderName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool StartsWithIgnoringCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && SameHeaderName(text.substr(0, prefix.size()), prefix);
}

bool HasLineBreak(std::string_view text) { return text.find_first_of("\r\n") != std::string_view::npos; }

// RFC 6901: empty (the whole document) or "/"-separated tokens where ~ only starts ~0 or ~1.
bool IsJsonPointer(std::string_view pointer) {
  if (pointer.empty()) return true;
  if (pointer.front() != '/') return false;
  for (std::size_t i = 0; i < pointer.size(); ++i) {
    if (pointer[i] != '~') continue;
    if (i + 1 >= pointer.size() || (pointer[i + 1] != '0' && pointer[i + 1] != '1')) return false;
  }
  return true;
}

// Replaces the value of an entry with the same name (keeping its position) or appends.
template <typename SameName>
void Upsert(std::vector<Header>& list, const Header& header, SameName same) {
  const auto existing =
      std::find_if(list.begin(), list.end(), [&](const Header& h) { return same(h.first, header.first); });
  if (existing != list.end()) {
    *existing = header;
  } else {
    list.push_back(header);
  }
}

// Merges a layer's values (`headers`, `query`) and values read from files (`*_from_files`)
// into a stream's: a name set in one of them replaces it in both.
template <typename SameName>
void MergeValuesAndFiles(const std::vector<Header>& values, const std::vector<Header>& files,
                         std::vector<Header>& stream_values, std::vector<Header>& stream_files, SameName same) {
  const auto erase = [&](std::vector<Header>& list, std::string_view name) {
    std::erase_if(list, [&](const Header& h) { return same(h.first, name); });
  };
  for (const Header& entry : values) {
    erase(stream_files, entry.first);
    Upsert(stream_values, entry, same);
  }
  for (const Header& entry : files) {
    erase(stream_values, entry.first);
    Upsert(stream_files, entry, same);
  }
}

// Reads `headers` or `headers_from_files`: names must be HTTP tokens, unique ignoring case,
// and not in `taken` (the `headers` of the same mapping, when reading `headers_from_files`).
void ReadHeaderMap(YamlReader& reader, const Field& field, bool values_are_paths, std::vector<Header>& out,
                   const std::vector<Header>* taken = nullptr) {
  std::optional<std::vector<Field>> entries = reader.Entries(field, /*values_are_secret=*/!values_are_paths);
  if (!entries) return;
  std::vector<const Field*> accepted;
  for (const Field& entry : *entries) {
    if (HasLineBreak(entry.name)) {
      reader.KeyError(entry, "a header name must not contain CR or LF");
      continue;
    }
    if (!IsHttpToken(entry.name)) {
      reader.KeyError(
          entry, "expected a header name (letters, digits and !#$%&'*+-.^_`|~), found " + Shown(entry.name));
      continue;
    }
    const auto earlier = std::find_if(accepted.begin(), accepted.end(),
                                      [&](const Field* f) { return SameHeaderName(f->name, entry.name); });
    if (earlier != accepted.end()) {
      reader.KeyError(entry, "header " + Shown(entry.name) + " is already set at line " +
                                 std::to_string(reader.KeyLocationOf(**earlier).line) +
                                 " (header names are compared ignoring case)");
      continue;
    }
    accepted.push_back(&entry);
    if (taken && std::any_of(taken->begin(), taken->end(),
                             [&](const Header& h) { return SameHeaderName(h.first, entry.name); })) {
      reader.KeyError(entry, "header " + Shown(entry.name) +
                                 " is also set in `headers` here; set it in only one of them");
      continue;
    }
    std::optional<std::string> value = values_are_paths ? reader.NonEmptyString(entry) : reader.String(entry);
    if (!value) continue;
    if (!values_are_paths && value->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      reader.Error(entry,
                   "a header value must not contain CR, LF or NUL (they would end the header "
                   "early); the value is not shown because it may be a secret");
      continue;
    }
    out.emplace_back(entry.name, std::move(*value));
  }
}

const Field* FindEntry(const std::vector<Field>& entries, std::string_view key) {
  const auto it = std::find_if(entries.begin(), entries.end(), [&](const Field& f) { return f.name == key; });
  return it == entries.end() ? nullptr : &*it;
}

void ReadMethod(YamlReader& reader, const Field& field, StreamSettings& s) {
  std::optional<std::string> method = reader.String(field);
  if (method && !IsHttpToken(*method)) {
    reader.Error(field, "expected an HTTP method (a token such as GET or POST), found " + Shown(*method));
    return;
  }
  s.method = std::move(method);
}

void ReadHeaders(YamlReader& reader, const Field& field, StreamSettings& s) {
  ReadHeaderMap(reader, field, false, s.headers);
}

// Runs after `headers` of the same mapping was read (see ReadStreamSettings).
void ReadHeadersFromFiles(YamlReader& reader, const Field& field, StreamSettings& s) {
  ReadHeaderMap(reader, field, true, s.headers_from_files, &s.headers);
}

void ReadBody(YamlReader& reader, const Field& field, StreamSettings& s) { s.body = reader.String(field); }
// Reads `query` (values are secrets, never shown) or `query_from_files` (values are paths):
// names are non-empty, unique, and not in `taken` (the `query` of the same mapping).
void ReadQueryMap(YamlReader& reader, const Field& field, bool values_are_paths, std::vector<Header>& out,
                  const std::vector<Header>* taken = nullptr) {
  std::optional<std::vector<Field>> entries = reader.Entries(field, /*values_are_secret=*/!values_are_paths);
  if (!entries) return;
  for (const Field& entry : *entries) {
    if (entry.name.empty()) {
      reader.KeyError(entry, "expected a query parameter name, found an empty key");
      continue;
    }
    if (taken && std::any_of(taken->begin(), taken->end(), [&](const Header& q) { return q.first == entry.name; })) {
      reader.KeyError(entry, "query parameter " + Shown(entry.name) +
                                 " is also set in `query` here; set it in only one of them");
      continue;
    }
    std::optional<std::string> value = values_are_paths ? reader.NonEmptyString(entry) : reader.String(entry);
    if (value) out.emplace_back(entry.name, std::move(*value));
  }
}

void ReadQuery(YamlReader& reader, const Field& field, StreamSettings& s) {
  ReadQueryMap(reader, field, false, s.query);
}

// Runs after `query` of the same mapping was read (see ReadStreamSettings).
void ReadQueryFromFiles(YamlReader& reader, const Field& field, StreamSettings& s) {
  ReadQueryMap(reader, field, true, s.query_from_files, &s.query);
}

void ReadSecretQueryParams(YamlReader& reader, const Field& field, StreamSettings& s) {
  if (auto names = reader.StringList(field, "query parameter name (\"*\" for the whole query)")) {
    s.secret_query_params = std::move(*names);
  }
}


void ReadTopic(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.routing_written = true;
  s.topic = ReadTopicName(reader, field);
}

void ReadTopics(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.routing_written = true;
  std::optional<std::vector<Field>> entries = reader.Entries(field);
  if (!entries) return;
  if (entries->empty()) {
    reader.Error(field, "expected at least one `event type: topic` entry (\"*\" for every other type)");
    return;
  }
  std::vector<TopicRoute> routes;
  bool ok = true;
  for (const Field& entry : *entries) {
    if (entry.name.empty()) {
      reader.KeyError(entry, "expected an event type or \"*\", found an empty key");
      ok = false;
      continue;
    }
    std::optional<std::string> topic = ReadTopicName(reader, entry);
    if (!topic) {
      ok = false;
      continue;
    }
    routes.push_back(TopicRoute{entry.name, std::move(*topic)});
  }
  if (ok) s.topics = std::move(routes);
}

void ReadKey(YamlReader& reader, const Field& field, StreamSettings& s) {
  std::optional<std::string> key = reader.String(field);
  if (!key) return;
  constexpr std::string_view kJsonPrefix = "json:";
  if (key->starts_with(kJsonPrefix)) {
    std::string pointer = key->substr(kJsonPrefix.size());
    if (!IsJsonPointer(pointer)) {
      reader.Error(field,
                   "expected a JSON Pointer after `json:` (empty, or starting with / and "
                   "with ~ only as ~0 or ~1, e.g. json:/meta/id), found " +
                       Shown(pointer));
      return;
    }
    s.key = KeyMode::kJsonPointer;
    s.key_pointer = std::move(pointer);
    return;
  }
  static constexpr std::pair<std::string_view, KeyMode> kModes[] = {{"stream", KeyMode::kStream},
                                                                    {"id", KeyMode::kId},
                                                                    {"event", KeyMode::kEvent},
                                                                    {"none", KeyMode::kNone}};
  for (const auto& [name, mode] : kModes) {
    if (*key == name) {
      s.key = mode;
      s.key_pointer.clear();
      return;
    }
  }
  reader.Error(field, "expected stream, id, event, none or json:POINTER, found " + Shown(*key));
}

void ReadKeyFallback(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.key_fallback = reader.Choice<KeyMode>(field, {{"stream", KeyMode::kStream},
                                                  {"id", KeyMode::kId},
                                                  {"event", KeyMode::kEvent},
                                                  {"none", KeyMode::kNone}});
}

void ReadEvents(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.events = reader.StringList(field, "event type; leave `events` out to produce every type");
}

void ReadFormat(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.format =
      reader.Choice<RecordFormat>(field, {{"raw", RecordFormat::kRaw},
                                          {"cloudevents-binary", RecordFormat::kCloudEventsBinary},
                                          {"cloudevents-structured", RecordFormat::kCloudEventsStructured},
                                          {"envelope", RecordFormat::kEnvelope}});
}

void ReadCloudEvents(YamlReader& reader, const Field& field, StreamSettings& s) {
  static constexpr std::string_view kKeys[] = {"source", "type_prefix", "content_type"};
  std::optional<std::vector<Field>> entries = reader.Entries(field);
  if (!entries) return;
  for (const Field& entry : reader.KnownOnly(std::move(*entries), kKeys)) {
    if (entry.name == "source") {
      s.cloudevents_source = reader.String(entry);
    } else if (entry.name == "type_prefix") {
      s.cloudevents_type_prefix = reader.String(entry);
    } else {
      std::optional<std::string> content_type = reader.String(entry);
      if (content_type && HasLineBreak(*content_type)) {
        reader.Error(entry, "a content type must not contain CR or LF");
        continue;
      }
      s.cloudevents_content_type = std::move(content_type);
    }
  }
}

void ReadRecordHeaders(YamlReader& reader, const Field& field, StreamSettings& s) {
  std::optional<std::vector<Field>> entries = reader.Entries(field);
  if (!entries) return;
  for (const Field& entry : *entries) {
    if (entry.name.empty()) {
      reader.KeyError(entry, "expected a record header name, found an empty key");
      continue;
    }
    if (StartsWithIgnoringCase(entry.name, "sse.") || StartsWithIgnoringCase(entry.name, "ce_") ||
        SameHeaderName(entry.name, "content-type")) {
      reader.KeyError(entry, "record header " + Shown(entry.name) +
                                 " clashes with the headers sse2kafka sets itself (sse.*, ce_*, "
                                 "content-type); choose another name");
      continue;
    }
    std::optional<std::string> value = reader.String(entry);
    if (value) s.record_headers.emplace_back(entry.name, std::move(*value));
  }
}

void ReadResume(YamlReader& reader, const Field& field, StreamSettings& s) { s.resume = reader.Bool(field); }

void ReadStartFrom(YamlReader& reader, const Field& field, StreamSettings& s) {
  static constexpr std::string_view kKeys[] = {"last_event_id"};
  std::optional<std::vector<Field>> entries = reader.Entries(field);
  if (!entries) return;
  for (const Field& entry : reader.KnownOnly(std::move(*entries), kKeys)) {
    std::optional<std::string> id = reader.String(entry);
    if (!id) continue;
    // It is sent as the Last-Event-ID header, which such bytes would break.
    if (id->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      reader.Error(entry, "a Last-Event-ID must not contain CR, LF or NUL");
      continue;
    }
    s.start_from_last_event_id = std::move(id);
  }
}

void ReadIdleTimeout(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.idle_timeout = reader.DurationValue(field);
}

void ReadConnectTimeout(YamlReader& reader, const Field& field, StreamSettings& s) {
  std::optional<Duration> timeout = reader.DurationValue(field);
  if (timeout && timeout->count() == 0) {
    reader.Error(field, "must be more than 0");
    return;
  }
  s.connect_timeout = timeout;
}

void ReadReconnect(YamlReader& reader, const Field& field, StreamSettings& s) {
  static constexpr std::string_view kKeys[] = {"min_delay", "allow_zero_min_delay", "initial_delay",
                                               "max_delay", "reset_after", "max_retry_after"};
  std::optional<std::vector<Field>> entries = reader.Entries(field);
  if (!entries) return;
  const std::vector<Field> known = reader.KnownOnly(std::move(*entries), kKeys);
  const Field* allow_zero = FindEntry(known, "allow_zero_min_delay");
  const bool zero_allowed = allow_zero && reader.Bool(*allow_zero).value_or(false);
  for (const Field& entry : known) {
    if (entry.name == "allow_zero_min_delay") continue;  // read above
    std::optional<Duration> value = reader.DurationValue(entry);
    if (entry.name == "min_delay") {
      if (value && value->count() == 0 && !zero_allowed) {
        reader.Error(entry,
                     "0 takes away the floor under reconnect waits: a failing stream would then "
                     "reconnect in a busy loop against the upstream; set `allow_zero_min_delay: true` "
                     "beside it if that is really meant");
        continue;
      }
      s.min_delay = value;
    } else if (entry.name == "initial_delay") {
      s.initial_delay = value;
    } else if (entry.name == "max_delay") {
      s.max_delay = value;
    } else if (entry.name == "reset_after") {
      s.reset_after = value;
    } else {
      s.max_retry_after = value;
    }
  }
}

void ReadMaxEventSize(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.max_event_size = reader.Size(field, kMinEventSize, kMaxEventSize);
}

void ReadMaxEventIdSize(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.max_event_id_size = reader.Size(field, 1, kMaxEventIdSize);
}

void ReadTls(YamlReader& reader, const Field& field, StreamSettings& s) {
  static constexpr std::string_view kKeys[] = {"ca_file", "cert_file", "key_file", "insecure_skip_verify"};
  std::optional<std::vector<Field>> entries = reader.Entries(field);
  if (!entries) return;
  for (const Field& entry : reader.KnownOnly(std::move(*entries), kKeys)) {
    if (entry.name == "ca_file") {
      s.ca_file = reader.NonEmptyString(entry);
    } else if (entry.name == "cert_file") {
      s.cert_file = reader.NonEmptyString(entry);
    } else if (entry.name == "key_file") {
      s.key_file = reader.NonEmptyString(entry);
    } else {
      s.insecure_skip_verify = reader.Bool(entry);
    }
  }
}

void ReadProxy(YamlReader& reader, const Field& field, StreamSettings& s) { s.proxy = reader.String(field); }

void ReadHttpVersion(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.http_version = reader.Choice<HttpVersion>(
      field, {{"auto", HttpVersion::kAuto}, {"1.1", HttpVersion::kHttp1_1}, {"2", HttpVersion::kHttp2}});
}

void ReadRedirectHeaders(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.redirect_headers_keep = reader.Choice<bool>(field, {{"drop", false}, {"keep", true}});
}

void ReadLastEventIdParam(YamlReader& reader, const Field& field, StreamSettings& s) {
  std::optional<std::string> name = reader.NonEmptyString(field);
  if (!name) return;
  const bool unreserved = std::all_of(name->begin(), name->end(), [](unsigned char c) {
    return IsAsciiAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
  });
  if (!unreserved) {
    reader.Error(field,
                 "expected a query parameter name (letters, digits and - . _ ~), found " + Shown(*name));
    return;
  }
  s.last_event_id_param = std::move(name);
}

void ReadOversize(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.oversize = reader.Choice<OnOversize>(field, {{"fail", OnOversize::kFail}, {"skip", OnOversize::kSkip}});
}

void ReadOnEnd(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.on_end = reader.Choice<OnEnd>(field, {{"reconnect", OnEnd::kReconnect}, {"stop", OnEnd::kStop}});
}

void ReadStopOnData(YamlReader& reader, const Field& field, StreamSettings& s) {
  s.stop_on_data = reader.String(field);
}

struct SettingRule {
  std::string_view key;
  void (*read)(YamlReader& reader, const Field& field, StreamSettings& settings);
};

constexpr SettingRule kRules[] = {
    {"method", ReadMethod},
    {"headers", ReadHeaders},
    {"headers_from_files", ReadHeadersFromFiles},
    {"body", ReadBody},
    {"query", ReadQuery},
    {"query_from_files", ReadQueryFromFiles},
    {"secret_query_params", ReadSecretQueryParams},
    {"topic", ReadTopic},
    {"topics", ReadTopics},
    {"key", ReadKey},
    {"key_fallback", ReadKeyFallback},
    {"events", ReadEvents},
    {"format", ReadFormat},
    {"cloudevents", ReadCloudEvents},
    {"record_headers", ReadRecordHeaders},
    {"resume", ReadResume},
    {"start_from", ReadStartFrom},
    {"idle_timeout", ReadIdleTimeout},
    {"connect_timeout", ReadConnectTimeout},
    {"reconnect", ReadReconnect},
    {"max_event_size", ReadMaxEventSize},
    {"max_event_id_size", ReadMaxEventIdSize},
    {"tls", ReadTls},
    {"proxy", ReadProxy},
    {"http_version", ReadHttpVersion},
    {"redirect_headers", ReadRedirectHeaders},
    {"last_event_id_param", ReadLastEventIdParam},
    {"on_end", ReadOnEnd},
    {"oversize", ReadOversize},
    {"stop_on_data", ReadStopOnData},
};

constexpr auto kKeys = [] {
  std::array<std::string_view, std::size(kRules)> keys{};
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = kRules[i].key;
  return keys;
}();

bool Before(const SourceLocation& a, const SourceLocation& b) {
  return std::make_pair(a.line, a.column) < std::make_pair(b.line, b.column);
}

// `topic` and `topics` in the same mapping.
void CheckConflicts(YamlReader& reader, const std::vector<Field>& entries) {
  const Field* topic = FindEntry(entries, "topic");
  const Field* topics = FindEntry(entries, "topics");
  if (topic && topics) {
    const Field* later = Before(reader.KeyLocationOf(*topic), reader.KeyLocationOf(*topics)) ? topics : topic;
    reader.KeyError(*later,
                    "`topic` and `topics` are both set here; keep one (in a stream, either one "
                    "replaces the other inherited from defaults)");
  }
}

}  // namespace

std::span<const std::string_view> StreamSettingKeys() { return kKeys; }

void ReadStreamSettings(YamlReader& reader, const std::vector<Field>& entries, StreamSettings& settings) {
  // headers_from_files and query_from_files last, so that they can see the mapping's `headers`
  // and `query`; problems are sorted into file order later, so the reading order does not show.
  for (const bool files_pass : {false, true}) {
    for (const Field& entry : entries) {
      const bool from_files = entry.name == "headers_from_files" || entry.name == "query_from_files";
      if (from_files != files_pass) continue;
      for (const SettingRule& rule : kRules) {
        if (entry.name == rule.key) rule.read(reader, entry, settings);
      }
    }
  }
  CheckConflicts(reader, entries);
}

void ApplyStreamSettings(const StreamSettings& layer, StreamConfig& stream) {
  auto set = [](auto& target, const auto& value) {
    if (value) target = *value;
  };
  set(stream.method, layer.method);
  MergeValuesAndFiles(layer.headers, layer.headers_from_files, stream.headers, stream.headers_from_files,
                      SameHeaderName);
  if (layer.body) stream.body = layer.body;
  MergeValuesAndFiles(layer.query, layer.query_from_files, stream.query, stream.query_from_files,
                      [](std::string_view a, std::string_view b) { return a == b; });
  for (const std::string& name : layer.secret_query_params) {
    if (std::find(stream.secret_query_params.begin(), stream.secret_query_params.end(), name) ==
        stream.secret_query_params.end()) {
      stream.secret_query_params.push_back(name);
    }
  }
  if (layer.topic) {
    stream.topic = *layer.topic;
    stream.topics.clear();
  }
  if (layer.topics) {
    stream.topics = *layer.topics;
    stream.topic.clear();
  }
  if (layer.key) {
    stream.key = *layer.key;
    stream.key_pointer = layer.key_pointer;
  }
  set(stream.key_fallback, layer.key_fallback);
  if (layer.events) stream.events = layer.events;
  set(stream.format, layer.format);
  set(stream.cloudevents.source, layer.cloudevents_source);
  set(stream.cloudevents.type_prefix, layer.cloudevents_type_prefix);
  set(stream.cloudevents.content_type, layer.cloudevents_content_type);
  for (const Header& header : layer.record_headers) {
    Upsert(stream.record_headers, header, [](std::string_view a, std::string_view b) { return a == b; });
  }
  set(stream.resume, layer.resume);
  if (layer.start_from_last_event_id) stream.start_from_last_event_id = layer.start_from_last_event_id;
  set(stream.idle_timeout, layer.idle_timeout);
  set(stream.connect_timeout, layer.connect_timeout);
  set(stream.reconnect.min_delay, layer.min_delay);
  set(stream.reconnect.initial_delay, layer.initial_delay);
  set(stream.reconnect.max_delay, layer.max_delay);
  set(stream.reconnect.reset_after, layer.reset_after);
  set(stream.reconnect.max_retry_after, layer.max_retry_after);
  set(stream.max_event_size, layer.max_event_size);
  set(stream.max_event_id_size, layer.max_event_id_size);
  set(stream.tls.ca_file, layer.ca_file);
  set(stream.tls.cert_file, layer.cert_file);
  set(stream.tls.key_file, layer.key_file);
  set(stream.tls.insecure_skip_verify, layer.insecure_skip_verify);
  set(stream.proxy, layer.proxy);
  set(stream.http_version, layer.http_version);
  set(stream.redirect_headers_keep, layer.redirect_headers_keep);
  set(stream.last_event_id_param, layer.last_event_id_param);
  set(stream.on_end, layer.on_end);
  set(stream.oversize, layer.oversize);
  if (layer.stop_on_data) stream.stop_on_data = layer.stop_on_data;
}

std::optional<std::string> ReadTopicName(YamlReader& reader, const Field& field) {
  std::optional<std::string> topic = reader.String(field);
  if (topic && !IsKafkaTopicName(*topic)) {
    reader.Error(field, "expected a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -, not . or ..), found " +
                            Shown(*topic));
    return std::nullopt;
  }
  return topic;
}

bool IsKafkaTopicName(std::string_view name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(),
                     [](unsigned char c) { return IsAsciiAlnum(c) || c == '.' || c == '_' || c == '-'; });
}

bool IsHttpToken(std::string_view text) {
  static constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  return !text.empty() && std::all_of(text.begin(), text.end(), [](unsigned char c) {
    return IsAsciiAlnum(c) || kSymbols.find(static_cast<char>(c)) != std::string_view::npos;
  });
}

}  // namespace sse2kafka::config
