#include "ops/metrics.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <ctime>
#include <initializer_list>
#include <string_view>
#include <utility>

namespace sse2kafka::ops {
namespace {

using std::chrono::duration;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

// How long /readyz counts a delivery as recent when librdkafka's statistics are off.
constexpr milliseconds kDeliveryWindowWithoutStatistics{5000};

constexpr StreamPhase kAllPhases[] = {StreamPhase::kWaiting, StreamPhase::kAwaitingAcks, StreamPhase::kConnecting,
                                      StreamPhase::kOpen,    StreamPhase::kFailing,      StreamPhase::kStopped,
                                      StreamPhase::kClosed};

double Seconds(std::chrono::steady_clock::duration elapsed) { return duration<double>(elapsed).count(); }

// "1.5 s", for readiness messages.
std::string ShowSeconds(std::chrono::steady_clock::duration elapsed) {
  return fmt::format("{:.1f} s", Seconds(elapsed));
}

// Writes the text exposition format: a family's HELP and TYPE lines, then all of its samples.
class Exposition {
 public:
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

  void Family(std::string_view name, std::string_view type, std::string_view help) {
    name_ = name;
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    AppendEscaped(help, /*quotes=*/false);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  // A sample of the family opened last.
  void Sample(Labels labels, double value) {
    out_ += name_;
    if (labels.size() > 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [label, label_value] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += label;
        out_ += "=\"";
        AppendEscaped(label_value, /*quotes=*/true);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    AppendValue(value);
    out_ += '\n';
  }

  // A family with a single unlabelled sample.
  void Single(std::string_view name, std::string_view type, std::string_view help, double value) {
    Family(name, type, help);
    Sample({}, value);
  }

  std::string Take() { return std::move(out_); }

 private:
  void AppendEscaped(std::string_view text, bool quotes) {
    for (const char c : text) {
      if (c == '\\') {
        out_ += "\\\\";
      } else if (c == '\n') {
        out_ += "\\n";
      } else if (c == '"' && quotes) {
        out_ += "\\\"";
      } else {
        out_ += c;
      }
    }
  }

  void AppendValue(double value) {
    // Counts print as integers (exactly, up to 2^53); fractions in the shortest form that reads
    // back as the same double.
    constexpr double kExactIntegerLimit = 9007199254740992.0;
    if (std::isfinite(value) && value == std::trunc(value) && std::fabs(value) < kExactIntegerLimit) {
      fmt::format_to(std::back_inserter(out_), "{}", static_cast<int64_t>(value));
    } else {
      fmt::format_to(std::back_inserter(out_), "{}", value);
    }
  }

  std::string out_;
  std::string_view name_;
};

// Per-stream families with one sample per stream and no other label.
struct StreamFamily {
  const char* name;
  const char* type;
  const char* help;
  double (*value)(const StreamMetrics&);
};

constexpr StreamFamily kStreamFamilies[] = {
    {"sse2kafka_stream_connected", "gauge", "1 while the stream's response is open and being read.",
     [](const StreamMetrics& s) { return s.phase == StreamPhase::kOpen ? 1.0 : 0.0; }},
    {"sse2kafka_stream_consecutive_failures", "gauge", "Connects that failed in a row; 0 after a good connection.",
     [](const StreamMetrics& s) { return static_cast<double>(s.attempt); }},
    {"sse2kafka_stream_events_total", "counter", "Events dispatched by the SSE parser.",
     [](const StreamMetrics& s) { return static_cast<double>(s.events); }},
    {"sse2kafka_stream_bytes_total", "counter", "Response body bytes received from the upstream.",
     [](const StreamMetrics& s) { return static_cast<double>(s.bytes); }},
    {"sse2kafka_stream_records_produced_total", "counter", "Records handed to the Kafka producer.",
     [](const StreamMetrics& s) { return static_cast<double>(s.records_produced); }},
    {"sse2kafka_stream_records_delivered_total", "counter", "Records Kafka acknowledged.",
     [](const StreamMetrics& s) { return static_cast<double>(s.records_delivered); }},
    {"sse2kafka_stream_delivery_errors_total", "counter", "Records whose delivery failed (each rewinds the stream).",
     [](const StreamMetrics& s) { return static_cast<double>(s.delivery_errors); }},
    {"sse2kafka_stream_filtered_total", "counter",
     "Events not produced: not in the events allow-list, unrouted, or the stop marker.",
     [](const StreamMetrics& s) { return static_cast<double>(s.filtered); }},
    {"sse2kafka_stream_oversized_total", "counter", "Events dropped for exceeding max_event_size.",
     [](const StreamMetrics& s) { return static_cast<double>(s.oversized); }},
    {"sse2kafka_stream_connects_total", "counter", "Responses that opened an event stream.",
     [](const StreamMetrics& s) { return static_cast<double>(s.connects); }},
    {"sse2kafka_stream_last_event_timestamp_seconds", "gauge",
     "Unix time of the newest event read from the upstream; 0 before the first.",
     [](const StreamMetrics& s) { return static_cast<double>(s.last_event_unix_ms) / 1000.0; }},
    {"sse2kafka_stream_in_flight_events", "gauge", "Events read and not yet acknowledged by Kafka.",
     [](const StreamMetrics& s) { return static_cast<double>(s.in_flight_events); }},
    {"sse2kafka_stream_kafka_refused", "gauge",
     "1 while Kafka refuses the stream's records (an ACL, a missing topic, a record too large): see /streams.",
     [](const StreamMetrics& s) { return s.kafka_refusal.empty() ? 0.0 : 1.0; }},
    {"sse2kafka_stream_paused", "gauge", "1 while the stream waits for Kafka (backpressure or a full producer queue).",
     [](const StreamMetrics& s) { return s.paused ? 1.0 : 0.0; }},
};

void RenderStreams(const MetricsSnapshot& snapshot, Exposition& out) {
  for (const StreamFamily& family : kStreamFamilies) {
    out.Family(family.name, family.type, family.help);
    for (const StreamMetrics& stream : snapshot.streams) out.Sample({{"stream", stream.name}}, family.value(stream));
  }

  out.Family("sse2kafka_stream_state", "gauge", "1 for the state the stream is in, 0 for the others.");
  for (const StreamMetrics& stream : snapshot.streams) {
    for (const StreamPhase phase : kAllPhases) {
      out.Sample({{"stream", stream.name}, {"state", StreamPhaseName(phase)}}, stream.phase == phase ? 1.0 : 0.0);
    }
  }

  out.Family("sse2kafka_stream_reconnects_total", "counter",
             "Reconnects, by why the connection before them ended (network, status, idle, end, rewind).");
  for (const StreamMetrics& stream : snapshot.streams) {
    const ReconnectCounts& counts = stream.reconnects;
    const std::pair<const char*, uint64_t> by_reason[] = {{"network", counts.network},
                                                         {"status", counts.status},
                                                         {"idle", counts.idle},
                                                         {"end", counts.end},
                                                         {"rewind", counts.rewind}};
    for (const auto& [reason, count] : by_reason) {
      out.Sample({{"stream", stream.name}, {"reason", reason}}, static_cast<double>(count));
    }
  }
}

void RenderProcess(const MetricsSnapshot& snapshot, SteadyTime now, Exposition& out) {
  const ProcessMetrics& process = snapshot.process;
  out.Family("sse2kafka_build_info", "gauge", "Always 1; the version is in the label.");
  out.Sample({{"version", process.version}}, 1);
  out.Single("sse2kafka_loop_turns_total", "counter", "Turns of the event loop.",
             static_cast<double>(process.loop_turns));
  out.Single("sse2kafka_metrics_snapshot_age_seconds", "gauge",
             "Age of the snapshot these metrics come from; grows when the event loop is stuck.",
             Seconds(now - snapshot.taken_at));
  out.Single("sse2kafka_streams", "gauge", "Configured streams.", static_cast<double>(snapshot.streams.size()));
  out.Single("sse2kafka_producer_queue_depth", "gauge",
             "Records, delivery reports and events in librdkafka's queues (rd_kafka_outq_len).",
             static_cast<double>(process.producer_queue_depth));
  out.Single("sse2kafka_in_flight_events", "gauge", "Records handed to Kafka and not yet reported, all streams.",
             static_cast<double>(process.in_flight_events));
  out.Single("sse2kafka_in_flight_bytes", "gauge", "Bytes of the records in sse2kafka_in_flight_events.",
             static_cast<double>(process.in_flight_bytes));
  out.Single("sse2kafka_backpressured", "gauge", "1 while an in-flight limit is reached and streams are paused.",
             process.backpressured ? 1.0 : 0.0);
  std::size_t paused = 0;
  for (const StreamMetrics& stream : snapshot.streams) paused += stream.paused ? 1 : 0;
  out.Single("sse2kafka_streams_paused", "gauge", "Streams waiting for Kafka.", static_cast<double>(paused));
  out.Single("sse2kafka_backpressure_episodes_total", "counter", "Times an in-flight limit was reached.",
             static_cast<double>(process.backpressure_episodes));
  out.Single("sse2kafka_fatal_producer_resets_total", "counter",
             "Kafka producers replaced after a fatal error (every stream rewinds).",
             static_cast<double>(process.fatal_producer_resets));
  if (!process.kafka_connection_errors.empty()) {
    out.Family("sse2kafka_kafka_connection_errors_total", "counter",
               "Connection errors of the current producer, by cause (authentication, tls, security_protocol).");
    for (const auto& [cause, count] : process.kafka_connection_errors) {
      out.Sample({{"cause", cause}}, static_cast<double>(count));
    }
    out.Family("sse2kafka_kafka_connection_problem", "gauge",
               "1 for the cause that keeps the producer from using the cluster now, 0 for the others.");
    for (const auto& [cause, count] : process.kafka_connection_errors) {
      out.Sample({{"cause", cause}}, process.kafka_connection_cause == cause ? 1.0 : 0.0);
    }
  }
  if (!process.fleet) return;
  out.Single("sse2kafka_owned_partitions", "gauge", "State partitions this instance owns.",
             static_cast<double>(process.owned_partitions));
  out.Single("sse2kafka_owned_streams", "gauge", "Streams this instance runs (those of its state partitions).",
             static_cast<double>(process.owned_streams));
  out.Single("sse2kafka_ownership_changes_total", "counter", "State partitions acquired or given up.",
             static_cast<double>(process.ownership_changes));
  out.Family("sse2kafka_transactions_total", "counter", "Exactly-once transactions, by outcome.");
  out.Sample({{"outcome", "committed"}}, static_cast<double>(process.transactions_committed));
  out.Sample({{"outcome", "aborted"}}, static_cast<double>(process.transactions_aborted));
}

void RenderKafkaStats(const MetricsSnapshot& snapshot, SteadyTime now, Exposition& out) {
  if (!snapshot.process.kafka_stats) return;  // absent rather than a misleading 0 brokers up
  const KafkaStatsMetrics& stats = *snapshot.process.kafka_stats;
  out.Single("sse2kafka_kafka_statistics_age_seconds", "gauge",
             "Age of the librdkafka statistics the sse2kafka_kafka_* metrics come from.",
             Seconds(now - stats.received_at));
  out.Single("sse2kafka_kafka_brokers_up", "gauge", "Brokers librdkafka has a working connection to.",
             stats.brokers_up);
  out.Single("sse2kafka_kafka_brokers", "gauge", "Brokers librdkafka knows (bootstrap and learned).",
             stats.brokers_total);
  out.Single("sse2kafka_kafka_queue_messages", "gauge", "Records in librdkafka's queues (msg_cnt).",
             static_cast<double>(stats.queue_messages));
  out.Single("sse2kafka_kafka_queue_bytes", "gauge", "Bytes of the records in librdkafka's queues (msg_size).",
             static_cast<double>(stats.queue_bytes));
  out.Single("sse2kafka_kafka_tx_messages_total", "counter",
             "Records sent to brokers by the current producer (txmsgs).", static_cast<double>(stats.tx_messages));
  out.Single("sse2kafka_kafka_tx_message_bytes_total", "counter",
             "Record bytes sent to brokers by the current producer (txmsg_bytes).",
             static_cast<double>(stats.tx_message_bytes));
  out.Single("sse2kafka_kafka_tx_bytes_total", "counter",
             "Bytes sent to brokers by the current producer, protocol included (tx_bytes).",
             static_cast<double>(stats.tx_bytes));
  out.Single("sse2kafka_kafka_broker_rtt_seconds", "gauge",
             "Mean round-trip time to the brokers over librdkafka's last statistics window.",
             duration<double>(stats.avg_rtt).count());
}

// "2024-05-01T12:00:00.123Z", or null for 0.
nlohmann::ordered_json UnixMillisJson(int64_t unix_ms) {
  if (unix_ms == 0) return nullptr;
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm utc{};
  if (gmtime_r(&seconds, &utc) == nullptr) return nullptr;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                     utc.tm_hour, utc.tm_min, utc.tm_sec, unix_ms % 1000);
}

std::optional<std::string> KafkaProblem(const MetricsSnapshot& snapshot, std::chrono::milliseconds publish_interval,
                                        SteadyTime now) {
  const ProcessMetrics& process = snapshot.process;
  if (!process.kafka_connection_problem.empty()) return "kafka: " + process.kafka_connection_problem;
  const milliseconds stats_interval = process.kafka_stats_interval;
  const milliseconds delivery_window =
      (stats_interval.count() > 0 ? stats_interval : kDeliveryWindowWithoutStatistics) + publish_interval;
  const bool delivered_lately = snapshot.last_delivery_at && now - *snapshot.last_delivery_at <= delivery_window;
  // A broker that is up may still refuse every record (NOT_ENOUGH_REPLICAS with the others down,
  // an ACL): records waiting with none confirmed for a whole window since the last delivery is a
  // problem whatever the brokers' state. (Before the first delivery there is no such moment.)
  if (process.in_flight_events > 0 && snapshot.last_delivery_at && !delivered_lately) {
    std::string brokers;
    if (process.kafka_stats) {
      brokers = fmt::format(" ({} of {} brokers up)", process.kafka_stats->brokers_up, process.kafka_stats->brokers_total);
    }
    return fmt::format("kafka: {} records in flight and none delivered in the last {}{}", process.in_flight_events,
                       ShowSeconds(delivery_window), brokers);
  }
  if (process.kafka_stats && stats_interval.count() > 0 && process.kafka_stats->brokers_up > 0 &&
      now - process.kafka_stats->received_at <= 2 * stats_interval) {
    return std::nullopt;
  }
  if (delivered_lately) return std::nullopt;

  std::string statistics;
  if (!process.kafka_stats) {
    statistics = stats_interval.count() > 0 ? "no statistics from librdkafka yet" : "librdkafka statistics are off";
  } else {
    statistics = fmt::format("{} of {} brokers up per statistics {} old", process.kafka_stats->brokers_up,
                             process.kafka_stats->brokers_total, ShowSeconds(now - process.kafka_stats->received_at));
  }
  return fmt::format("kafka: {}, and no record delivered in the last {}", statistics, ShowSeconds(delivery_window));
}

std::optional<std::string> StreamProblem(const StreamMetrics& stream) {
  if (!stream.kafka_refusal.empty() && stream.phase != StreamPhase::kStopped) {
    return fmt::format("stream {}: Kafka refuses its records: {}", stream.name, stream.kafka_refusal);
  }
  switch (stream.phase) {
    case StreamPhase::kOpen:
    case StreamPhase::kStopped:
      return std::nullopt;
    case StreamPhase::kClosed:
      return fmt::format("stream {}: closed", stream.name);
    case StreamPhase::kWaiting:
    case StreamPhase::kAwaitingAcks:
    case StreamPhase::kConnecting:
    case StreamPhase::kFailing:
      if (stream.attempt < kMaxConsecutiveFailuresWhenReady) return std::nullopt;
      return fmt::format("stream {}: {} after {} consecutive failed connects", stream.name,
                         StreamPhaseName(stream.phase), stream.attempt);
  }
  return fmt::format("stream {}: unknown state", stream.name);
}

}  // namespace

const char* StreamPhaseName(StreamPhase phase) {
  switch (phase) {
    case StreamPhase::kWaiting: return "waiting";
    case StreamPhase::kAwaitingAcks: return "awaiting_acks";
    case StreamPhase::kConnecting: return "connecting";
    case StreamPhase::kOpen: return "open";
    case StreamPhase::kFailing: return "failing";
    case StreamPhase::kStopped: return "stopped";
    case StreamPhase::kClosed: return "closed";
  }
  return "unknown";
}

int64_t UnixMillis(SteadyTime at, SteadyTime steady_now, WallTime wall_now) {
  const WallTime wall_at = wall_now + duration_cast<WallTime::duration>(at - steady_now);
  return duration_cast<milliseconds>(wall_at.time_since_epoch()).count();
}

MetricsPublisher::MetricsPublisher(std::chrono::milliseconds interval) : interval_(interval) {}

void MetricsPublisher::Publish(MetricsSnapshot snapshot) {
  PublishAt(std::move(snapshot), std::chrono::steady_clock::now(), std::chrono::system_clock::now());
}

void MetricsPublisher::PublishAt(MetricsSnapshot snapshot, SteadyTime now, WallTime wall_now) {
  // Delivery progress per stream name: a reload restarts a stream's counters at zero, and a
  // sum over streams would hide one stream's progress behind another's removal.
  std::map<std::string, uint64_t, std::less<>> delivered;
  for (const StreamMetrics& stream : snapshot.streams) {
    const auto previous = delivered_by_stream_.find(stream.name);
    const uint64_t before = previous != delivered_by_stream_.end() ? previous->second : 0;
    if (stream.records_delivered > before) last_delivery_at_ = now;
    delivered[stream.name] = stream.records_delivered;
  }
  delivered_by_stream_ = std::move(delivered);

  snapshot.taken_at = now;
  snapshot.taken_at_wall = wall_now;
  snapshot.last_delivery_at = last_delivery_at_;
  latest_.store(std::make_shared<const MetricsSnapshot>(std::move(snapshot)), std::memory_order_release);
}

std::shared_ptr<const MetricsSnapshot> MetricsPublisher::Latest() const {
  return latest_.load(std::memory_order_acquire);
}

bool IsHealthy(const MetricsSnapshot* snapshot, std::chrono::milliseconds publish_interval, SteadyTime now) {
  return snapshot != nullptr && now - snapshot->taken_at < 3 * publish_interval;
}

Readiness EvaluateReadiness(const MetricsSnapshot* snapshot, std::chrono::milliseconds publish_interval,
                            SteadyTime now) {
  Readiness readiness;
  if (snapshot == nullptr) {
    readiness.problems.push_back("event loop: no metrics published yet");
    return readiness;
  }
  if (!IsHealthy(snapshot, publish_interval, now)) {
    readiness.problems.push_back(fmt::format("event loop: newest metrics are {} old (limit {})",
                                             ShowSeconds(now - snapshot->taken_at), ShowSeconds(3 * publish_interval)));
  }
  if (snapshot->process.stopping) readiness.problems.push_back("process: stopping");
  if (auto problem = KafkaProblem(*snapshot, publish_interval, now)) readiness.problems.push_back(std::move(*problem));
  for (const StreamMetrics& stream : snapshot->streams) {
    if (auto problem = StreamProblem(stream)) readiness.problems.push_back(std::move(*problem));
  }
  readiness.ready = readiness.problems.empty();
  return readiness;
}

std::string RenderPrometheus(const MetricsSnapshot& snapshot, SteadyTime now) {
  Exposition out;
  RenderProcess(snapshot, now, out);
  RenderKafkaStats(snapshot, now, out);
  RenderStreams(snapshot, out);
  return out.Take();
}

std::string RenderStreamsJson(const MetricsSnapshot& snapshot) {
  // Ordered: a person reading /streams sees the name first.
  nlohmann::ordered_json streams = nlohmann::ordered_json::array();
  for (const StreamMetrics& stream : snapshot.streams) {
    const ReconnectCounts& reconnects = stream.reconnects;
    streams.push_back({
        {"name", stream.name},
        {"state", StreamPhaseName(stream.phase)},
        {"connected", stream.phase == StreamPhase::kOpen},
        {"url", stream.url},
        {"last_event_id", stream.last_event_id},
        {"checkpoint", stream.checkpoint},
        {"attempt", stream.attempt},
        {"next_retry_at", UnixMillisJson(stream.next_retry_unix_ms)},
        {"last_event_at", UnixMillisJson(stream.last_event_unix_ms)},
        {"in_flight_events", stream.in_flight_events},
        {"paused", stream.paused},
        {"kafka_refusal", stream.kafka_refusal.empty() ? nlohmann::ordered_json(nullptr)
                                                       : nlohmann::ordered_json(stream.kafka_refusal)},
        {"counters",
         {
             {"events", stream.events},
             {"bytes", stream.bytes},
             {"records_produced", stream.records_produced},
             {"records_delivered", stream.records_delivered},
             {"delivery_errors", stream.delivery_errors},
             {"filtered", stream.filtered},
             {"oversized", stream.oversized},
             {"connects", stream.connects},
             {"rewinds", stream.rewinds},
             {"reconnects",
              {{"network", reconnects.network},
               {"status", reconnects.status},
               {"idle", reconnects.idle},
               {"end", reconnects.end},
               {"rewind", reconnects.rewind}}},
         }},
    });
  }
  return streams.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace sse2kafka::ops
