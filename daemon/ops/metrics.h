// What the admin endpoints show, as plain data: the event loop fills a MetricsSnapshot every
// publish interval and hands it to a MetricsPublisher; the admin server's threads read the newest
// snapshot and render it. Nothing here refers to a loop-owned object, so a snapshot can be read
// on any thread while the loop goes on.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sse2kafka::ops {

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

// A stream's connection state; the same states and names as bridge::StreamState.
enum class StreamPhase {
  kWaiting,       // a reconnect is scheduled
  kAwaitingAcks,  // about to reconnect once its in-flight events settle
  kConnecting,    // request sent, no response yet
  kOpen,          // reading events
  kFailing,       // reading the start of a bad response for the log
  kStopped,       // 204, on_end: stop or a stop marker: stopped on purpose until a reload
  kClosed,        // closed for good (shutdown)
};

// "waiting", "awaiting_acks", "connecting", "open", "failing", "stopped", "closed".
const char* StreamPhaseName(StreamPhase phase);

// Reconnects counted by why the connection before them ended (bridge::ReconnectReason).
struct ReconnectCounts {
  uint64_t network = 0;  // connection failed or broke
  uint64_t status = 0;   // unusable HTTP status or content type
  uint64_t idle = 0;     // no byte within idle_timeout
  uint64_t end = 0;      // the upstream ended the response normally
  uint64_t rewind = 0;   // a failed delivery made the stream replay from its checkpoint
};

struct StreamMetrics {
  std::string name;
  StreamPhase phase = StreamPhase::kWaiting;
  std::string url;            // with any user:password removed
  std::string last_event_id;  // of the newest event read from the upstream
  std::string checkpoint;     // the newest acknowledged event's ID: where a restart resumes
  int attempt = 0;            // consecutive failed connects
  int64_t next_retry_unix_ms = 0;  // when the scheduled reconnect happens; 0: none scheduled

  uint64_t events = 0;  // dispatched by the parser
  uint64_t bytes = 0;   // response body bytes received
  uint64_t records_produced = 0;
  uint64_t records_delivered = 0;
  uint64_t delivery_errors = 0;
  uint64_t filtered = 0;
  uint64_t oversized = 0;
  uint64_t connects = 0;  // successful opens
  uint64_t rewinds = 0;
  ReconnectCounts reconnects;
  int64_t last_event_unix_ms = 0;  // 0: no event yet

  std::size_t in_flight_events = 0;  // handed to Kafka (or waiting to be), not yet acknowledged
  bool paused = false;               // reading withheld by backpressure, or records backlogged
  // Why Kafka refuses the stream's records ("topic T: TOPIC_AUTHORIZATION_FAILED: ..."); empty
  // when its newest record was delivered, or none failed.
  std::string kafka_refusal;
};

// librdkafka's statistics (sink::ProducerStatsSummary) as of `received_at`.
struct KafkaStatsMetrics {
  SteadyTime received_at{};
  int brokers_up = 0;
  int brokers_total = 0;
  int64_t queue_messages = 0;  // msg_cnt
  int64_t queue_bytes = 0;     // msg_size
  int64_t tx_messages = 0;     // txmsgs
  int64_t tx_message_bytes = 0;  // txmsg_bytes
  int64_t tx_bytes = 0;
  std::chrono::microseconds avg_rtt{0};
};

struct ProcessMetrics {
  std::string version;
  uint64_t loop_turns = 0;
  std::size_t producer_queue_depth = 0;  // KafkaProducer::outstanding()
  std::size_t in_flight_events = 0;
  std::size_t in_flight_bytes = 0;
  bool backpressured = false;
  uint64_t backpressure_episodes = 0;
  uint64_t fatal_producer_resets = 0;
  bool stopping = false;  // a graceful stop has begun
  // Fleet (Kafka state backend); `fleet` false leaves these metrics out.
  bool fleet = false;
  std::size_t owned_partitions = 0;
  std::size_t owned_streams = 0;
  uint64_t ownership_changes = 0;
  uint64_t transactions_committed = 0;
  uint64_t transactions_aborted = 0;
  // statistics.interval.ms of the current producer; zero when statistics are off.
  std::chrono::milliseconds kafka_stats_interval{0};
  // The current producer's newest statistics; nullopt before the first report.
  std::optional<KafkaStatsMetrics> kafka_stats;
  // Why the producer cannot use the cluster (authentication refused, TLS handshake failed,
  // protocol mismatch): one line naming the cause, no secrets; empty when there is no such
  // problem. Its cause ("authentication", "tls", "security_protocol") in connection_cause.
  std::string kafka_connection_problem;
  std::string kafka_connection_cause;
  // Connection errors by cause since the current producer was created, every cause listed.
  std::vector<std::pair<std::string, uint64_t>> kafka_connection_errors;
};

struct MetricsSnapshot {
  // Stamped by MetricsPublisher::Publish; whatever the builder sets is overwritten.
  SteadyTime taken_at{};
  WallTime taken_at_wall{};
  // Stamped by MetricsPublisher::Publish: the last publish at which some stream's
  // records_delivered had grown. nullopt: no delivery seen since the publisher was created.
  std::optional<SteadyTime> last_delivery_at;

  ProcessMetrics process;
  std::vector<StreamMetrics> streams;  // configured streams, in the order the builder gives
};

// Converts a steady-clock instant (how the loop keeps time) to Unix milliseconds, for
// StreamMetrics::next_retry_unix_ms.
int64_t UnixMillis(SteadyTime at, SteadyTime steady_now, WallTime wall_now);

// Hands snapshots from the loop thread to any number of reader threads without a lock on either
// side that could block: a reader keeps the snapshot it loaded alive for as long as it renders.
class MetricsPublisher {
 public:
  // `interval`: how often the loop publishes; /healthz calls a snapshot older than three
  // intervals stale.
  explicit MetricsPublisher(std::chrono::milliseconds interval);
  MetricsPublisher(const MetricsPublisher&) = delete;
  MetricsPublisher& operator=(const MetricsPublisher&) = delete;

  // Loop thread only. Stamps the snapshot with the current time and the delivery progress
  // since the previous publish, then makes it the newest.
  void Publish(MetricsSnapshot snapshot);
  // Publish with the clocks given, for tests.
  void PublishAt(MetricsSnapshot snapshot, SteadyTime now, WallTime wall_now);

  // Any thread: the newest snapshot, or nullptr before the first Publish.
  std::shared_ptr<const MetricsSnapshot> Latest() const;

  std::chrono::milliseconds interval() const { return interval_; }

 private:
  const std::chrono::milliseconds interval_;
  std::atomic<std::shared_ptr<const MetricsSnapshot>> latest_;
  // Loop thread only.
  std::map<std::string, uint64_t, std::less<>> delivered_by_stream_;
  std::optional<SteadyTime> last_delivery_at_;
};

// A stream that has failed this many connects in a row is not ready (see EvaluateReadiness).
inline constexpr int kMaxConsecutiveFailuresWhenReady = 3;

struct Readiness {
  bool ready = false;
  std::vector<std::string> problems;  // one line each; empty when ready
};

// /healthz: true when there is a snapshot younger than three publish intervals at `now`, that
// is, when the loop is turning.
bool IsHealthy(const MetricsSnapshot* snapshot, std::chrono::milliseconds publish_interval, SteadyTime now);

// /readyz: ready when
// - the loop is healthy (IsHealthy) and not stopping;
// - Kafka takes records: once one was delivered, no records are in flight without one delivered
//   within the last statistics interval plus one publish interval (5 s when statistics are
//   off), and Kafka is
//   reachable: the current producer's statistics, no older than two statistics intervals, show
//   a broker UP, or some record was delivered within that window; and the producer reports no
//   connection problem (authentication, TLS, security protocol: that line is the problem);
// - every configured stream is open, stopped on purpose (204, on_end: stop, stop marker), or
//   on its way to a connect (waiting, awaiting_acks, connecting, failing) with fewer than
//   kMaxConsecutiveFailuresWhenReady consecutive failures, and Kafka does not refuse its records
//   (kafka_refusal). A closed stream is not ready.
// Otherwise `problems` names each failing part, streams by name.
Readiness EvaluateReadiness(const MetricsSnapshot* snapshot, std::chrono::milliseconds publish_interval,
                            SteadyTime now);

// The Prometheus text exposition format (version 0.0.4) of `snapshot`; `now` gives the
// snapshot's age (sse2kafka_metrics_snapshot_age_seconds).
std::string RenderPrometheus(const MetricsSnapshot& snapshot, SteadyTime now);
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

// /streams: a JSON array with one object per stream (name, state, url, last_event_id,
// checkpoint, attempt, next_retry_at, counters). Invalid UTF-8 in IDs is replaced by U+FFFD.
std::string RenderStreamsJson(const MetricsSnapshot& snapshot);

}  // namespace sse2kafka::ops
