#include "config/loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>

#include <yaml-cpp/yaml.h>

#include "config/kafka_security.h"
#include "config/stream_settings.h"
#include "config/yaml_document.h"
#include "config/yaml_reader.h"

namespace sse2kafka::config {

namespace {

constexpr std::string_view kTopLevelKeys[] = {"kafka",   "state", "delivery", "transaction", "cluster",
                                              "log",     "admin", "defaults", "streams"};
constexpr std::string_view kTransactionKeys[] = {"interval", "max_events"};
constexpr std::string_view kClusterKeys[] = {"group", "session_timeout"};
constexpr std::string_view kKafkaKeys[] = {"brokers", "flush_timeout", "max_in_flight_events",
                                           "max_in_flight_bytes", "security", "properties"};
constexpr std::string_view kStateKeys[] = {"dir",   "flush_interval", "on_corrupt",        "backend",
                                           "topic", "partitions",     "replication_factor"};
constexpr std::string_view kLogKeys[] = {"level", "format", "stats_interval"};
constexpr std::string_view kAdminKeys[] = {"listen"};
constexpr std::string_view kDefaultStateDir = "/var/lib/sse2kafka";
constexpr std::size_t kMaxConfigFileSize = std::size_t{16} << 20;

bool IsStreamNameChar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '.' || c == '_' ||
         c == '-';
}

bool IsStreamName(std::string_view name) {
  return !name.empty() && name.size() <= 200 && std::all_of(name.begin(), name.end(), IsStreamNameChar);
}

bool IsPort(std::string_view text, bool allow_zero) {
  if (text.empty() || text.size() > 5) return false;
  if (!std::all_of(text.begin(), text.end(), [](unsigned char c) { return c >= '0' && c <= '9'; }))
    return false;
  const int port = std::stoi(std::string(text));
  return port <= 65535 && (allow_zero || port > 0);
}

// Splits "host:port" or "[v6]:port" into host and port; nullopt when there is no port.
std::optional<std::pair<std::string_view, std::string_view>> SplitHostPort(std::string_view authority) {
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const std::string_view rest = authority.substr(close + 1);
    if (rest.empty()) return std::make_pair(authority.substr(1, close - 1), std::string_view());
    if (!rest.starts_with(':')) return std::nullopt;
    return std::make_pair(authority.substr(1, close - 1), rest.substr(1));
  }
  const std::size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos) return std::make_pair(authority, std::string_view());
  return std::make_pair(authority.substr(0, colon), authority.substr(colon + 1));
}

// The URL for a message, with a password in its userinfo shown as ***.
std::string ShownUrl(std::string_view url) {
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return Shown(url);
  const std::size_t authority = scheme_end + 3;
  const std::size_t authority_end = std::min(url.find_first_of("/?#", authority), url.size());
  const std::size_t at = url.substr(0, authority_end).rfind('@');
  if (at == std::string_view::npos || at < authority) return Shown(url);
  return Shown(std::string(url.substr(0, authority)) + "***" + std::string(url.substr(at)));
}

// Why `url` cannot be a stream's URL, or nullopt when it can.
std::optional<std::string> UrlProblem(std::string_view url) {
  const std::size_t scheme_end = url.find("://");
  std::string scheme(url.substr(0, scheme_end == std::string_view::npos ? 0 : scheme_end));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (scheme != "http" && scheme != "https") {
    return "expected an http:// or https:// URL, found " + ShownUrl(url);
  }
  if (std::any_of(url.begin(), url.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7f; })) {
    return "the URL contains a space or a control character; percent-encode it (%20)";
  }
  std::string_view authority = url.substr(scheme_end + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  const std::size_t at = authority.rfind('@');
  if (at != std::string_view::npos) authority.remove_prefix(at + 1);
  const auto host_port = SplitHostPort(authority);
  if (!host_port || host_port->first.empty()) return "the URL has no host: " + ShownUrl(url);
  if (!host_port->second.empty() && !IsPort(host_port->second, false)) {
    return "the URL's port must be a number from 1 to 65535, found " + Shown(host_port->second);
  }
  return std::nullopt;
}

// Reads a whole config document into a Config, reporting every problem to `diagnostics`.
class ConfigReader {
 public:
  ConfigReader(const std::string& file_name, const EnvLookup& env, const PropertyValidator& validate_property,
               bool file_is_world_readable, Diagnostics& diagnostics)
      : reader_(file_name, env, diagnostics),
        env_(env),
        validate_property_(validate_property),
        file_is_world_readable_(file_is_world_readable) {}

  Config Read(const YAML::Node& root) {
    Config config;
    config.path = reader_.file();
    config.state.dir = DefaultStateDir();
    const Field root_field{"", "", YAML::Node(), root};
    if (!root.IsMap()) {
      reader_.Error(root_field, "expected a mapping with `kafka` and `streams` at the top level, found " +
                                    Describe(root));
      return config;
    }
    std::vector<Field> entries = *reader_.Entries(root_field);
    std::vector<Field> known;
    for (Field& entry : entries) {
      if (IsStreamKey(entry.name)) {
        reader_.KeyError(entry, "unknown key at the top level; `" + entry.name +
                                    "` is a stream setting: put it in a stream or in `defaults`");
      } else {
        known.push_back(std::move(entry));
      }
    }
    known = reader_.KnownOnly(std::move(known), kTopLevelKeys);
    const Field* kafka = Find(known, "kafka");
    const Field* streams = Find(known, "streams");
    if (!kafka)
      reader_.MissingKey(root_field, "kafka", "missing required key `kafka` (with at least `brokers`)");
    if (!streams)
      reader_.MissingKey(root_field, "streams", "missing required key `streams` (a list of streams)");
    if (kafka) ReadKafka(*kafka, config.kafka);
    if (const Field* state = Find(known, "state")) ReadState(*state, config.state);
    if (const Field* delivery = Find(known, "delivery")) ReadDelivery(*delivery, config);
    if (const Field* transaction = Find(known, "transaction")) ReadTransaction(*transaction, config.transaction);
    if (const Field* cluster = Find(known, "cluster")) ReadCluster(*cluster, config);
    if (const Field* log = Find(known, "log")) ReadLog(*log, config.log);
    if (const Field* admin = Find(known, "admin")) ReadAdmin(*admin, config.admin);
    StreamSettings defaults;
    if (const Field* field = Find(known, "defaults")) ReadDefaults(*field, defaults);
    if (streams) ReadStreams(*streams, defaults, config.streams);
    return config;
  }

 private:
  static const Field* Find(const std::vector<Field>& entries, std::string_view key) {
    const auto it =
        std::find_if(entries.begin(), entries.end(), [&](const Field& f) { return f.name == key; });
    return it == entries.end() ? nullptr : &*it;
  }

  static bool IsStreamKey(std::string_view key) {
    const auto keys = StreamSettingKeys();
    return key == "name" || key == "url" || std::find(keys.begin(), keys.end(), key) != keys.end();
  }

  // $STATE_DIRECTORY is set by systemd's StateDirectory=; with several it holds a
  // colon-separated list and the first is ours.
  std::string DefaultStateDir() const {
    std::optional<std::string> dir = env_ ? env_("STATE_DIRECTORY") : std::nullopt;
    if (dir) dir = dir->substr(0, dir->find(':'));
    return dir && !dir->empty() ? *dir : std::string(kDefaultStateDir);
  }

  void ReadKafka(const Field& field, KafkaConfig& kafka) {
    std::optional<std::vector<Field>> entries = reader_.Entries(field);
    if (!entries) return;
    const std::vector<Field> known = reader_.KnownOnly(std::move(*entries), kKafkaKeys);
    if (!Find(known, "brokers")) {
      reader_.MissingKey(field, "brokers", "missing required key `brokers` (host:port,... or embedded)");
    }
    for (const Field& entry : known) {
      if (entry.name == "brokers") {
        if (auto brokers = ReadBrokers(entry)) kafka.brokers = std::move(*brokers);
      } else if (entry.name == "flush_timeout") {
        if (auto timeout = reader_.DurationValue(entry)) kafka.flush_timeout = *timeout;
      } else if (entry.name == "max_in_flight_events") {
        if (auto events = reader_.Integer(entry, 1, INT32_MAX))
          kafka.max_in_flight_events = static_cast<std::size_t>(*events);
      } else if (entry.name == "max_in_flight_bytes") {
        if (auto bytes = reader_.Size(entry, 1, std::size_t{1} << 40)) kafka.max_in_flight_bytes = *bytes;
      } else if (entry.name == "security") {
        ReadKafkaSecurity(reader_, entry, file_is_world_readable_, kafka.security);
      } else {
        ReadProperties(entry, kafka.properties, Find(known, "security") != nullptr);
      }
    }
    const Field* security = Find(known, "security");
    if (security && kafka.brokers == "embedded") {
      reader_.KeyError(*security, "the embedded cluster speaks plaintext only; remove `security` or name real brokers");
    }
  }

  // "host:port,host:port", or a list of host:port joined with commas.
  std::optional<std::string> ReadBrokers(const Field& field) {
    if (!field.value.IsSequence()) return reader_.NonEmptyString(field);
    std::optional<std::vector<std::string>> list = reader_.StringList(field, "broker (host:port)");
    if (!list) return std::nullopt;
    std::string joined;
    for (const std::string& broker : *list) joined += (joined.empty() ? "" : ",") + broker;
    return joined;
  }

  void ReadProperties(const Field& field, std::vector<Header>& properties, bool security_block) {
    std::optional<std::vector<Field>> entries = reader_.Entries(field, /*values_are_secret=*/true);
    if (!entries) return;
    for (const Field& entry : *entries) {
      if (entry.name.empty()) {
        reader_.KeyError(entry, "expected a librdkafka property name, found an empty key");
        continue;
      }
      if (!entry.value.IsScalar()) {
        reader_.Error(entry, "expected a string, number or boolean, found " +
                                 std::string(entry.value.IsNull()  ? "an empty value"
                                             : entry.value.IsMap() ? "a mapping"
                                                                   : "a list"));
        continue;
      }
      if (entry.name == "bootstrap.servers") {
        reader_.KeyError(entry, "set the brokers with `kafka.brokers`, not as a property");
        continue;
      }
      if (security_block && IsSecurityBlockProperty(entry.name)) {
        reader_.KeyError(entry, "`kafka.security` sets how the bridge authenticates; set it there, not also as a "
                                "property");
        continue;
      }
      std::optional<std::string> value = reader_.String(entry);
      if (!value) continue;
      if (validate_property_) {
        if (std::optional<std::string> problem = validate_property_(entry.name, *value)) {
          reader_.Error(entry, std::move(*problem));
          continue;
        }
      }
      properties.emplace_back(entry.name, std::move(*value));
    }
  }

  void ReadState(const Field& field, StateConfig& state) {
    std::optional<std::vector<Field>> entries = reader_.Entries(field);
    if (!entries) return;
    for (const Field& entry : reader_.KnownOnly(std::move(*entries), kStateKeys)) {
      if (entry.name == "dir") {
        if (auto dir = reader_.NonEmptyString(entry)) state.dir = std::move(*dir);
      } else if (entry.name == "flush_interval") {
        if (auto interval = reader_.DurationValue(entry)) state.flush_interval = *interval;
      } else if (entry.name == "on_corrupt") {
        if (auto on_corrupt = reader_.Choice<OnCorrupt>(
                entry, {{"fail", OnCorrupt::kFail}, {"reset", OnCorrupt::kReset}})) {
          state.on_corrupt = *on_corrupt;
        }
      } else if (entry.name == "backend") {
        auto backend = reader_.Choice<StateBackend>(
            entry, {{"file", StateBackend::kFile}, {"kafka", StateBackend::kKafka}});
        if (backend) state.backend = *backend;
      } else if (entry.name == "topic") {
        if (auto topic = ReadTopicName(reader_, entry)) state.topic = std::move(*topic);
      } else if (entry.name == "partitions") {
        if (auto partitions = reader_.Integer(entry, 1, 100000))
          state.partitions = static_cast<int>(*partitions);
      } else {
        auto factor = reader_.Integer(entry, -1, 32767);
        if (factor == 0) {
          reader_.Error(entry, "must be at least 1, or -1 for the broker's default");
        } else if (factor) {
          state.replication_factor = static_cast<int>(*factor);
        }
      }
    }
  }

  // Called after ReadState: exactly-once needs the Kafka backend.
  void ReadDelivery(const Field& field, Config& config) {
    auto delivery = reader_.Choice<Delivery>(
        field, {{"at-least-once", Delivery::kAtLeastOnce}, {"exactly-once", Delivery::kExactlyOnce}});
    if (!delivery) return;
    if (*delivery == Delivery::kExactlyOnce && config.state.backend != StateBackend::kKafka) {
      reader_.Error(field, "exactly-once keeps checkpoints in the transactions with the events: it needs "
                           "`state.backend: kafka`");
      return;
    }
    config.delivery = *delivery;
  }

  void ReadTransaction(const Field& field, TransactionConfig& transaction) {
    std::optional<std::vector<Field>> entries = reader_.Entries(field);
    if (!entries) return;
    for (const Field& entry : reader_.KnownOnly(std::move(*entries), kTransactionKeys)) {
      if (entry.name == "interval") {
        auto interval = reader_.DurationValue(entry);
        if (interval && (interval->count() < 1 || interval->count() > 15 * 60 * 1000)) {
          reader_.Error(entry, "must be from 1ms to 15m");
        } else if (interval) {
          transaction.interval = *interval;
        }
      } else if (auto events = reader_.Integer(entry, 1, INT32_MAX)) {
        transaction.max_events = static_cast<std::size_t>(*events);
      }
    }
  }

  // Called after ReadState: the group shares the state topic's partitions.
  void ReadCluster(const Field& field, Config& config) {
    std::optional<std::vector<Field>> entries = reader_.Entries(field);
    if (!entries) return;
    const std::vector<Field> known = reader_.KnownOnly(std::move(*entries), kClusterKeys);
    if (!Find(known, "group")) reader_.MissingKey(field, "group", "missing required key `group` (the consumer group the instances share)");
    for (const Field& entry : known) {
      if (entry.name == "group") {
        auto group = reader_.NonEmptyString(entry);
        if (!group) continue;
        if (group->size() > 200 || !std::all_of(group->begin(), group->end(), IsStreamNameChar)) {
          reader_.Error(entry, "expected 1 to 200 characters from [A-Za-z0-9._-], found " + Shown(*group));
        } else if (config.state.backend != StateBackend::kKafka) {
          reader_.Error(entry, "cluster mode shares the state topic's partitions: it needs `state.backend: kafka`");
        } else {
          config.cluster.group = std::move(*group);
        }
      } else {
        auto timeout = reader_.DurationValue(entry);
        if (timeout && (timeout->count() < 1000 || timeout->count() > 30 * 60 * 1000)) {
          reader_.Error(entry, "must be from 1s to 30m (the broker's group.min/max.session.timeout.ms apply too)");
        } else if (timeout) {
          config.cluster.session_timeout = *timeout;
        }
      }
    }
  }

  void ReadLog(const Field& field, LogConfig& log) {
    std::optional<std::vector<Field>> entries = reader_.Entries(field);
    if (!entries) return;
    for (const Field& entry : reader_.KnownOnly(std::move(*entries), kLogKeys)) {
      if (entry.name == "level") {
        if (auto level = reader_.Choice<std::string_view>(entry, {{"trace", "trace"},
                                                                  {"debug", "debug"},
                                                                  {"info", "info"},
                                                                  {"warn", "warn"},
                                                                  {"error", "error"}})) {
          log.level = std::string(*level);
        }
      } else if (entry.name == "format") {
        if (auto format = reader_.Choice<std::string_view>(entry, {{"text", "text"}, {"json", "json"}})) {
          log.format = std::string(*format);
        }
      } else {
        if (auto interval = reader_.DurationValue(entry)) log.stats_interval = *interval;
      }
    }
  }

  void ReadAdmin(const Field& field, AdminConfig& admin) {
    std::optional<std::vector<Field>> entries = reader_.Entries(field);
    if (!entries) return;
    for (const Field& entry : reader_.KnownOnly(std::move(*entries), kAdminKeys)) {
      std::optional<std::string> listen = reader_.String(entry);
      if (!listen) continue;
      const auto host_port = SplitHostPort(*listen);
      if (!listen->empty() && (!host_port || host_port->first.empty() || !IsPort(host_port->second, true))) {
        reader_.Error(
            entry, "expected HOST:PORT (127.0.0.1:9100, [::1]:9100, 0.0.0.0:9100), or \"\" for off; found " +
                       Shown(*listen));
        continue;
      }
      admin.listen = std::move(*listen);
    }
  }

  void ReadDefaults(const Field& field, StreamSettings& defaults) {
    std::optional<std::vector<Field>> entries = reader_.Entries(field);
    if (!entries) return;
    std::vector<Field> settings;
    for (Field& entry : *entries) {
      if (entry.name == "name" || entry.name == "url") {
        reader_.KeyError(entry, "`" + entry.name + "` cannot be set in `defaults`: every stream has its own");
      } else {
        settings.push_back(std::move(entry));
      }
    }
    ReadStreamSettings(reader_, reader_.KnownOnly(std::move(settings), StreamSettingKeys()), defaults);
  }

  void ReadStreams(const Field& field, const StreamSettings& defaults, std::vector<StreamConfig>& streams) {
    std::optional<std::vector<Field>> items = reader_.Items(field);
    if (!items) return;
    if (items->empty()) {
      reader_.Error(field, "expected at least one stream");
      return;
    }
    std::vector<std::string_view> keys = {"name", "url"};
    for (std::string_view key : StreamSettingKeys()) keys.push_back(key);
    std::map<std::string, std::string> first_with_name;  // name → "streams[i] at line N"
    std::map<DelayPair, std::vector<const Field*>> below_floor;
    for (const Field& item : *items) {
      if (item.value.IsNull()) {
        reader_.Error(item, "expected a stream (a mapping with name, url, ...), found an empty list item");
        continue;
      }
      std::optional<std::vector<Field>> entries = reader_.Entries(item);
      if (!entries) continue;
      const std::vector<Field> known = reader_.KnownOnly(std::move(*entries), keys);
      StreamConfig stream;
      stream.location = reader_.LocationOf(item);
      const Field* name = Find(known, "name");
      const Field* url = Find(known, "url");
      if (!name) reader_.MissingKey(item, "name", "missing required key `name`");
      if (!url) reader_.MissingKey(item, "url", "missing required key `url`");
      if (name) ReadName(*name, first_with_name, stream);
      if (url) {
        if (auto text = reader_.String(*url)) {
          if (auto problem = UrlProblem(*text)) {
            reader_.Error(*url, std::move(*problem));
          } else {
            stream.url = std::move(*text);
          }
        }
      }
      StreamSettings own;
      ReadStreamSettings(reader_, known, own);
      ApplyStreamSettings(defaults, stream);
      ApplyStreamSettings(own, stream);
      if (!defaults.routing_written && !own.routing_written) {
        reader_.MissingKey(
            item, "topic",
            "missing required key `topic` (or `topics`); set it in the stream or in `defaults`");
      }
      if (!stream.tls.key_file.empty() && stream.tls.cert_file.empty()) {
        reader_.MissingKey(item, "tls.cert_file",
                           "`tls.key_file` is set (here or in `defaults`) but `tls.cert_file` is not");
      }
      streams.push_back(std::move(stream));
      below_floor[{streams.back().reconnect.initial_delay, streams.back().reconnect.min_delay}].push_back(&item);
    }
    WarnBelowFloor(below_floor);
  }

  using DelayPair = std::pair<Duration, Duration>;  // initial_delay, min_delay
  // One warning per distinct pair of values, not per stream: a `defaults` value shared by
  // thousands of streams is one mistake.
  void WarnBelowFloor(const std::map<DelayPair, std::vector<const Field*>>& streams) {
    for (const auto& [delays, items] : streams) {
      const auto [initial, floor] = delays;
      if (initial >= floor) continue;
      std::string message = "initial_delay " + std::to_string(initial.count()) + "ms is below reconnect.min_delay " +
                            std::to_string(floor.count()) + "ms, the floor under every reconnect wait: waits are at least " +
                            std::to_string(floor.count()) + "ms";
      if (items.size() > 1) {
        message += " (and in " + std::to_string(items.size() - 1) + (items.size() == 2 ? " more stream)" : " more streams)");
      }
      reader_.Warning(reader_.LocationOf(*items.front()), items.front()->path + ".reconnect.initial_delay",
                      std::move(message));
    }
  }

  void ReadName(const Field& field, std::map<std::string, std::string>& first_with_name,
                StreamConfig& stream) {
    std::optional<std::string> name = reader_.String(field);
    if (!name) return;
    if (!IsStreamName(*name)) {
      reader_.Error(field, "expected a stream name of 1 to 200 characters from A-Z a-z 0-9 . _ -, found " +
                               Shown(*name));
      return;
    }
    const std::string where = field.path.substr(0, field.path.rfind('.')) + " at line " +
                              std::to_string(reader_.LocationOf(field).line);
    const auto [first, inserted] = first_with_name.emplace(*name, where);
    if (!inserted) {
      reader_.Error(field, "duplicate stream name " + Shown(*name) + ": " + first->second +
                               " already has it; names must be unique");
      return;
    }
    stream.name = std::move(*name);
  }

  YamlReader reader_;
  const EnvLookup& env_;
  const PropertyValidator& validate_property_;
  const bool file_is_world_readable_;
};

LoadResult Failed(ConfigError error) {
  LoadResult result;
  result.errors.push_back(std::move(error));
  return result;
}

}  // namespace

std::string ConfigError::ToString() const {
  if (warning) {
    // Not in the FILE:LINE:COL form, so that scripts counting problem lines count only problems.
    std::string text = "warning: " + location.file;
    if (location.line > 0) {
      text += " line " + std::to_string(location.line) + " col " + std::to_string(location.column);
    }
    text += ": ";
    if (!key_path.empty()) text += key_path + ": ";
    return text + message;
  }
  std::string text = location.file;
  if (location.line > 0) text += ":" + std::to_string(location.line) + ":" + std::to_string(location.column);
  text += ": ";
  if (!key_path.empty()) text += key_path + ": ";
  return text + message;
}

EnvLookup ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

namespace {
LoadResult LoadText(std::string_view yaml_text, const std::string& file_name, const EnvLookup& env,
                    const PropertyValidator& validate_property, bool file_is_world_readable) {
  YamlDocument document = ParseYamlDocument(yaml_text, file_name);
  if (document.error) return Failed(std::move(*document.error));
  Diagnostics diagnostics;
  ConfigReader reader(file_name, env, validate_property, file_is_world_readable, diagnostics);
  Config config = reader.Read(document.root);
  LoadResult result;
  result.errors = diagnostics.TakeSorted();
  result.warnings = diagnostics.TakeSortedWarnings();
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}
}  // namespace

LoadResult LoadConfigText(std::string_view yaml_text, const std::string& file_name, const EnvLookup& env,
                          const PropertyValidator& validate_property) {
  return LoadText(yaml_text, file_name, env, validate_property, /*file_is_world_readable=*/false);
}

LoadResult LoadConfigFile(const std::string& path, const EnvLookup& env,
                          const PropertyValidator& validate_property) {
  const SourceLocation nowhere{path, 0, 0};
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Failed({nowhere, "", std::string("cannot open the config file: ") + std::strerror(errno)});
  struct stat info {};
  std::string text;
  std::string problem;
  if (::fstat(fd, &info) != 0) {
    problem = std::string("cannot read the config file: ") + std::strerror(errno);
  } else if (!S_ISREG(info.st_mode)) {
    problem = "the config path is not a regular file";
  } else if (static_cast<std::size_t>(info.st_size) > kMaxConfigFileSize) {
    problem = "the config file is larger than 16MiB; that cannot be a config";
  } else {
    char buffer[64 * 1024];
    while (text.size() <= kMaxConfigFileSize) {
      const ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        problem = std::string("cannot read the config file: ") + std::strerror(errno);
        break;
      }
      if (n == 0) break;
      text.append(buffer, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  if (!problem.empty()) return Failed({nowhere, "", problem});
  return LoadText(text, path, env, validate_property, (info.st_mode & S_IROTH) != 0);
}

}  // namespace sse2kafka::config
