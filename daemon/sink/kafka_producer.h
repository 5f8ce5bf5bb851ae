// The sink's Kafka producer: takes records, reports their deliveries, and wakes an epoll loop
// through a file descriptor when reports are ready. It knows Kafka, not HTTP or SSE.
//
// Threading: every call, and every DeliveryHandler callback, happens on the thread that owns
// the producer (the event loop). librdkafka's log lines come from its own threads and go
// straight to spdlog's default logger, so configure logging before creating a producer and do
// not replace the default logger while one exists.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sink/producer_properties.h"

struct rd_kafka_s;
struct rd_kafka_queue_s;
struct rd_kafka_topic_s;
struct rd_kafka_message_s;

namespace sse2kafka::sink {

struct RecordHeaderView {
  std::string_view name;
  std::string_view value;  // empty: an empty, non-null header value
};

// A record to produce. The views need to live only for the duration of Produce: the producer
// copies what it keeps.
struct OutgoingRecord {
  std::string_view topic;
  std::optional<std::string_view> key;  // nullopt: no key (null); an empty view: an empty key
  std::string_view value;               // empty: an empty, non-null value
  std::span<const RecordHeaderView> headers;  // sent in this order; names may repeat
  int64_t timestamp_ms = 0;                   // CreateTime; 0 lets librdkafka use the current time
  uint64_t token = 0;                         // returned in the delivery report, opaque to the sink
};

enum class ProduceResult {
  kQueued,     // a delivery report for `token` will come from Poll or Flush, exactly once
  kQueueFull,  // librdkafka's queue is full: nothing was queued; try again after Poll
  kTooLarge,   // larger than the producer's message.max.bytes: nothing was queued
  kRejected,   // permanent for this record (unknown topic, fatal producer state):
               // nothing was queued and no report will come
};

// One delivery outcome. The string views point to static librdkafka strings.
struct DeliveryReport {
  uint64_t token = 0;
  bool ok = false;
  int error_code = 0;                // rd_kafka_resp_err_t; 0 when ok
  std::string_view error_name;       // e.g. "_MSG_TIMED_OUT", "TOPIC_AUTHORIZATION_FAILED"
  std::string_view error_text;
  bool retriable = false;            // informational: the cause may go away by itself (timeouts,
                                     // broker unavailable) rather than needing a config change
  int32_t partition = -1;
  int64_t offset = -1;
  std::string_view topic;            // the record's topic
  std::size_t size = 0;              // the record's value + key bytes, as handed to Produce
  bool too_large = false;            // the broker refused the record (or its batch) as too large
};

// What sse2kafka keeps of librdkafka's statistics (statistics.interval.ms): enough for metrics and
// for telling whether Kafka is reachable. Counts are librdkafka's own, so they start again at
// zero when a producer is replaced.
struct ProducerStatsSummary {
  std::chrono::steady_clock::time_point received_at{};  // when the producer served the report
  int brokers_up = 0;     // brokers in state UP, of brokers_total
  int brokers_total = 0;  // brokers librdkafka knows (bootstrap and learned), not its internal ones
  int64_t msg_cnt = 0;      // records in librdkafka's queues (queued or in flight)
  int64_t msg_size = 0;     // their bytes
  int64_t txmsgs = 0;       // records sent to brokers so far
  int64_t txmsg_bytes = 0;  // their bytes
  int64_t tx_bytes = 0;     // every byte sent to brokers, protocol included
  // Mean round-trip time to the brokers over librdkafka's last window, weighted by the number of
  // samples per broker; zero when no broker has a sample.
  std::chrono::microseconds avg_rtt{0};
};

// Reads librdkafka's statistics JSON (STATISTICS.md) into a summary; received_at is left at its
// default. nullopt when `json` is not a JSON object. Missing fields count as zero.
std::optional<ProducerStatsSummary> SummarizeProducerStats(std::string_view json);

// The statistics.interval.ms a producer is created with unless the user set one.
inline constexpr std::chrono::milliseconds kDefaultStatisticsInterval{5000};

// Callbacks run inside Poll or Flush. They may call Produce, but not Poll, Flush or Purge.
class DeliveryHandler {
 public:
  virtual ~DeliveryHandler() = default;
  // Called once for every record Produce queued. Reports for one partition come in produce order.
  virtual void OnDelivery(const DeliveryReport& report) = 0;
  // Called at most once per producer, after the reports served by the same Poll or Flush: the
  // producer is dead (every further Produce is rejected) and must be replaced. Destroy it only
  // after Poll or Flush returned, never from inside this callback.
  virtual void OnFatalError(const std::string& reason) = 0;
};

class KafkaProducer {
 public:
  // Creates an idempotent producer (see EffectiveProducerProperties for what is set around the
  // user's properties), with delivery reports, fatal-error reporting, librdkafka's log in spdlog,
  // statistics every kDefaultStatisticsInterval unless the user set statistics.interval.ms
  // (0 turns them off), and its report queue wired to wakeup_fd(). It connects lazily, so
  // brokers being down is no error here. Returns nullptr and sets *error when librdkafka refuses
  // the configuration.
  static std::unique_ptr<KafkaProducer> Create(const ProducerSettings& settings, std::string* error);

  // Does not flush and does not report: records still outstanding are dropped (logged as a
  // warning). Call Flush first for a clean stop.
  ~KafkaProducer();

  KafkaProducer(const KafkaProducer&) = delete;
  KafkaProducer& operator=(const KafkaProducer&) = delete;

  // Queues one record without blocking. On kQueueFull and kRejected, *error says why.
  ProduceResult Produce(const OutgoingRecord& record, std::string* error);

  // Readable (EPOLLIN) when Poll has work. Level-triggered use is fine: Poll drains it.
  int wakeup_fd() const { return wakeup_fd_; }

  // Never blocks: drains wakeup_fd() and serves every queued delivery report and error into
  // `handler`. Call it whenever wakeup_fd() is readable; nothing is lost if it is called
  // without being readable.
  void Poll(DeliveryHandler& handler);

  // Waits up to `timeout` for every outstanding record, serving reports into `handler`. Returns
  // true when outstanding() reached zero.
  bool Flush(std::chrono::milliseconds timeout, DeliveryHandler& handler);

  // rd_kafka_outq_len: records queued or in flight, plus reports and events (errors, logs)
  // queued for Poll. Zero means nothing is left to deliver or serve; not an exact record count.
  std::size_t outstanding() const;

  // Blocks up to `timeout` fetching metadata for these topics so that the first record to each
  // is not held back by a metadata refresh (about 1 s with librdkafka 2.0). Failures, such as
  // an unknown topic or no broker answering, are logged as warnings and are not fatal.
  void WarmUp(const std::vector<std::string>& topics, std::chrono::milliseconds timeout);

  // The newest statistics librdkafka reported, served by Poll or Flush; nullopt until the first
  // report (about one statistics_interval() after Create) and when statistics are off.
  const std::optional<ProducerStatsSummary>& stats() const { return stats_; }
  // The effective statistics.interval.ms; zero when statistics are off.
  std::chrono::milliseconds statistics_interval() const { return statistics_interval_; }

  // Drops every record queued or in flight; their reports come from the next Poll or Flush as
  // failures with error _PURGE_QUEUE or _PURGE_INFLIGHT. Used before replacing a producer after
  // a fatal error.
  void Purge();

 private:
  KafkaProducer();

  static void OnDeliveryReport(rd_kafka_s* rk, const rd_kafka_message_s* message, void* opaque);
  static void OnError(rd_kafka_s* rk, int error, const char* reason, void* opaque);
  static int OnStatistics(rd_kafka_s* rk, char* json, std::size_t json_len, void* opaque);

  void DrainWakeupFd() const;
  void DeliverFatalErrorOnce(DeliveryHandler& handler);
  rd_kafka_topic_s* TopicHandle(std::string_view topic, std::string* error);
  void DestroyHandles();

  rd_kafka_s* rk_ = nullptr;
  rd_kafka_queue_s* main_queue_ = nullptr;
  int wakeup_fd_ = -1;
  std::map<std::string, rd_kafka_topic_s*, std::less<>> topics_;  // created on first use
  // Set only while Poll or Flush serve callbacks; reports served without it are dropped.
  DeliveryHandler* handler_ = nullptr;
  std::optional<std::string> fatal_reason_;
  bool fatal_delivered_ = false;
  std::optional<ProducerStatsSummary> stats_;
  std::chrono::milliseconds statistics_interval_{0};
};

}  // namespace sse2kafka::sink
