// The typed configuration of sse2kafka, as loaded from YAML by ConfigLoader (loader.h).
// Every field has its documented default already applied and `defaults:` merged into each
// stream, so the rest of the daemon never looks at YAML.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sse2kafka::config {

using Duration = std::chrono::milliseconds;
using Header = std::pair<std::string, std::string>;  // name, value

// Where a value was written, for messages that point the user at it (1-based).
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;

  bool operator==(const SourceLocation&) const = default;
};

// The default floor on every wait between two connection attempts of one stream: at most two
// attempts a second against someone else's server, whatever it or the config says, and still
// well under the few seconds a browser's EventSource waits.
inline constexpr Duration kDefaultMinReconnectDelay{500};

struct ReconnectConfig {
  Duration min_delay = kDefaultMinReconnectDelay;  // floor under every wait, after jitter
  Duration initial_delay{1000};
  Duration max_delay{30000};
  Duration reset_after{60000};       // a connection open this long resets the attempt count
  Duration max_retry_after{600000};  // cap on a server's Retry-After

  bool operator==(const ReconnectConfig&) const = default;
};

struct TlsConfig {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  bool insecure_skip_verify = false;

  bool operator==(const TlsConfig&) const = default;
};

// How a record's key is chosen.
enum class KeyMode { kStream, kId, kEvent, kNone, kJsonPointer };
enum class RecordFormat { kRaw, kCloudEventsBinary, kCloudEventsStructured, kEnvelope };
enum class OnEnd { kReconnect, kStop };
// What a record Kafka refuses as too large does: stall the stream (replaying it), or skip it.
enum class OnOversize { kFail, kSkip };
enum class HttpVersion { kAuto, kHttp1_1, kHttp2 };

struct CloudEventsConfig {
  std::string source;        // empty: the stream URL without userinfo
  std::string type_prefix;
  std::string content_type;  // empty: application/json for JSON data, else text/plain

  bool operator==(const CloudEventsConfig&) const = default;
};

struct TopicRoute {
  std::string event_type;  // "*" catches every type not listed
  std::string topic;

  bool operator==(const TopicRoute&) const = default;
};

struct StreamConfig {
  std::string name;
  std::string url;
  std::string method = "GET";
  std::vector<Header> headers;  // defaults merged, stream wins (names compared case-insensitively)
  // Header values read from files on every connect (rotated secrets): name, path.
  std::vector<Header> headers_from_files;
  std::optional<std::string> body;
  // Query parameters added to `url` on every request (defaults merged, stream wins): name,
  // value. Every value counts as a secret, as header values do.
  std::vector<Header> query;
  std::vector<Header> query_from_files;  // name, path: values read at every connect
  // Names of query parameters whose values are secret, in addition to the built-in list
  // (http/url_redaction.h); "*" makes the whole query secret. Defaults merged.
  std::vector<std::string> secret_query_params;

  std::string topic;               // used when `topics` is empty
  std::vector<TopicRoute> topics;  // per-event-type routes; replaces `topic`
  KeyMode key = KeyMode::kStream;
  std::string key_pointer;         // for kJsonPointer: RFC 6901 pointer, e.g. "/meta/id"
  KeyMode key_fallback = KeyMode::kStream;  // for kJsonPointer; never kJsonPointer
  std::optional<std::vector<std::string>> events;  // allow-list of event types
  RecordFormat format = RecordFormat::kRaw;
  CloudEventsConfig cloudevents;
  std::vector<Header> record_headers;  // static Kafka record headers; defaults merged

  bool resume = true;
  // The Last-Event-ID of the first request when the stream has no checkpoint to resume from
  // (none stored yet, or resume: false).
  std::optional<std::string> start_from_last_event_id;
  Duration idle_timeout{300000};  // 0: never
  Duration connect_timeout{10000};
  ReconnectConfig reconnect;
  std::size_t max_event_size = 900 * 1024;
  std::size_t max_event_id_size = 64 * 1024;
  TlsConfig tls;
  std::string proxy;               // empty: libcurl's environment variables apply
  HttpVersion http_version = HttpVersion::kAuto;
  bool redirect_headers_keep = false;  // send configured headers across origins on redirect
  std::string last_event_id_param;     // also send the ID as this query parameter when set
  OnEnd on_end = OnEnd::kReconnect;
  OnOversize oversize = OnOversize::kFail;
  std::optional<std::string> stop_on_data;  // end the stream at an event with exactly this data

  SourceLocation location;  // of the stream's entry in `streams`

  bool operator==(const StreamConfig&) const = default;
};

// How the bridge talks to a secured cluster (`kafka.security`). Absent (protocol unset): the
// user's kafka.properties alone decide, plaintext by default.
enum class KafkaProtocol { kPlaintext, kSsl, kSaslPlaintext, kSaslSsl };

struct KafkaSecurity {
  std::optional<KafkaProtocol> protocol;  // set whenever the block is present
  std::string mechanism;                  // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL
  std::string username;
  std::string password;       // secret: the value itself (read from password_file when that is used)
  std::string password_file;  // where password came from; empty when written inline or from ${ENV}
  std::string ca_file;        // PEM CA bundle the brokers' certificates must chain to; empty: system CAs
  std::string cert_file;      // PEM client certificate (mutual TLS); empty: none
  std::string key_file;       // PEM private key of cert_file
  std::string key_password;   // secret: the key's passphrase; empty: the key is not encrypted

  bool operator==(const KafkaSecurity&) const = default;
};

// "PLAINTEXT", "SSL", "SASL_PLAINTEXT" or "SASL_SSL": librdkafka's and Kafka's spelling.
const char* KafkaProtocolName(KafkaProtocol protocol);

struct KafkaConfig {
  KafkaSecurity security;
  std::string brokers;  // bootstrap.servers, or "embedded" for the in-process mock cluster
  Duration flush_timeout{10000};
  std::size_t max_in_flight_events = 100000;
  std::size_t max_in_flight_bytes = 64 * 1024 * 1024;
  std::vector<Header> properties;  // librdkafka producer properties, verbatim, in file order

  bool operator==(const KafkaConfig&) const = default;
};

enum class OnCorrupt { kFail, kReset };
// Where checkpoints live: a file in `dir`, or a compacted Kafka topic (records keyed by stream
// name), which needs no local disk and is what cluster mode and exactly-once build on.
enum class StateBackend { kFile, kKafka };

struct StateConfig {
  std::string dir;  // default: $STATE_DIRECTORY (its first entry) when set, else /var/lib/sse2kafka
  Duration flush_interval{1000};  // how often changed checkpoints are written
  OnCorrupt on_corrupt = OnCorrupt::kFail;
  StateBackend backend = StateBackend::kFile;
  std::string topic = "_sse2kafka_state";  // backend kafka: the compacted state topic
  int partitions = 24;                     // backend kafka: partitions when creating it
  int replication_factor = -1;             // backend kafka: -1 is the broker's default

  bool operator==(const StateConfig&) const = default;
};

enum class Delivery {
  kAtLeastOnce,  // idempotent producer; a crash or rewind may produce duplicates, never gaps
  kExactlyOnce,  // transactions hold events with the checkpoints that cover them (backend kafka)
};

// Exactly-once: when a state partition's transaction is committed (whichever comes first).
struct TransactionConfig {
  Duration interval{100};
  std::size_t max_events = 10000;

  bool operator==(const TransactionConfig&) const = default;
};

// Cluster mode: instances with the same group share the streams through Kafka's consumer-group
// protocol over the state topic's partitions. An empty group: this instance runs every stream.
struct ClusterConfig {
  std::string group;
  Duration session_timeout{10000};

  bool operator==(const ClusterConfig&) const = default;
};

struct LogConfig {
  std::string level = "info";   // trace | debug | info | warn | error
  std::string format = "text";  // text | json
  Duration stats_interval{60000};  // periodic per-stream summary; 0: off

  bool operator==(const LogConfig&) const = default;
};

struct AdminConfig {
  std::string listen;  // host:port for /metrics, /healthz, /readyz; empty: off

  bool operator==(const AdminConfig&) const = default;
};

struct Config {
  std::string path;  // the file it was loaded from
  KafkaConfig kafka;
  StateConfig state;
  Delivery delivery = Delivery::kAtLeastOnce;
  TransactionConfig transaction;
  ClusterConfig cluster;
  LogConfig log;
  AdminConfig admin;
  std::vector<StreamConfig> streams;

  bool operator==(const Config&) const = default;
};

// Every topic the streams write to (`topic`, or each route of `topics`), sorted, each once.
std::vector<std::string> RoutedTopics(const std::vector<StreamConfig>& streams);

// True when a librdkafka property of this name holds a secret (its value is logged as ***):
// the name contains `password`, `secret` or `token` (case-insensitive), or it is one of the
// properties whose value is key material (ssl.key.pem, sasl.oauthbearer.config).
bool IsSecretProperty(std::string_view name);

// "Name: ***, Other: ***" for a log line: every configured header value may be a credential,
// so only the names are shown. Empty for an empty list.
std::string RedactedHeaders(const std::vector<Header>& headers);

// "name=value, sasl.password=***" for a log line: values of secret properties
// (IsSecretProperty) are shown as ***, the others as they are. Empty for an empty list.
std::string RedactedProperties(const std::vector<Header>& properties);

}  // namespace sse2kafka::config
