// One upstream stream from connection to checkpoint:
//   HTTP response bytes → sse::Parser → RecordBuilder → Kafka (via PipelineHost)
//   delivery reports → AckTracker → checkpoint
// and the reconnect policy around it (BackoffPolicy, status handling, idle timeout).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bridge/ack_tracker.h"
#include "bridge/backoff_policy.h"
#include "bridge/pipeline_host.h"
#include "config/config.h"
#include "http/http_client.h"
#include "ops/log.h"
#include "sink/record_builder.h"
#include "sse/parser.h"

namespace sse2kafka::bridge {

// Why a connection ended and a reconnect was scheduled.
enum class ReconnectReason { kNetwork, kStatus, kIdle, kEnd, kRewind, kCount };
const char* ReconnectReasonName(ReconnectReason reason);

// Counters for logs and metrics. Written on the loop thread only.
struct StreamStats {
  uint64_t events = 0;            // dispatched by the parser
  uint64_t bytes = 0;             // body bytes received
  uint64_t records_produced = 0;  // handed to Kafka
  uint64_t records_delivered = 0;
  uint64_t delivery_errors = 0;
  uint64_t filtered = 0;          // not in `events`, unrouted, or the stop marker
  uint64_t oversized = 0;
  uint64_t connects = 0;          // successful opens
  uint64_t reconnects = 0;        // attempts after the first
  uint64_t reconnects_by_reason[static_cast<int>(ReconnectReason::kCount)] = {};
  uint64_t rewinds = 0;
  // Records handed to Kafka but not confirmed when the stream rewound: the upstream sends them
  // again, so each may land twice (the duplicates a rewind can cause).
  uint64_t replayed = 0;
  uint64_t key_fallbacks = 0;
  int64_t last_event_unix_ms = 0;
  // Why Kafka refused the stream's newest failed record ("topic T: NAME: text", e.g.
  // TOPIC_AUTHORIZATION_FAILED); empty again once one of its records is delivered.
  std::string kafka_refusal;
};

enum class StreamState {
  kWaiting,      // a reconnect is scheduled
  kAwaitingAcks, // about to reconnect once the events in flight are settled
  kConnecting,   // request sent, no response yet
  kOpen,         // 200 text/event-stream: reading events
  kFailing,      // a bad response: reading the first bytes of its body for the log
  kStopped,      // 204, on_end: stop, or a stop marker: no more connects until a reload
  kClosed,       // Close() was called: no more connects, deliveries still settle
};

const char* StreamStateName(StreamState state);

class StreamPipeline final : public http::TransferObserver, public sse::ParserListener {
 public:
  // `checkpoint`: the stored last event ID, if any. `resume`: whether the first connect of
  // this process sends it (the stream's `resume` setting; false starts at the live edge).
  StreamPipeline(config::StreamConfig config, uint32_t slot, std::optional<std::string> checkpoint,
                 PipelineHost& host);
  ~StreamPipeline() override;
  StreamPipeline(const StreamPipeline&) = delete;
  StreamPipeline& operator=(const StreamPipeline&) = delete;

  // Connects now.
  void Start();
  // Stops reading and connecting for good; events already in flight still settle through
  // OnDelivery. Idempotent.
  void Close();
  // A delivery report for one of this pipeline's records.
  void OnDelivery(uint64_t sequence, const sink::DeliveryReport& report);
  // Forgets the events from `from_sequence` on (all of them when nullopt) and reconnects from
  // the checkpoint after a backoff, once the earlier ones have settled: the upstream replays
  // what was lost (duplicates, never gaps). `producer_lost`: the producer was destroyed, so
  // reports of earlier records never come.
  void Rewind(const std::string& reason, std::optional<uint64_t> from_sequence = std::nullopt,
              bool producer_lost = false);
  // Exactly-once: the transaction holding this stream's recent events was aborted. Forgets every
  // event in flight, moves the checkpoint back to `checkpoint` (the last committed one) and
  // reconnects from it after a backoff.
  void RewindTo(const std::string& checkpoint, const std::string& reason);
  // Backpressure ended: read again if reading was withheld.
  void ResumeReading();
  // Retries records that librdkafka's queue refused; true when none are left.
  bool RetryBacklog();

  const config::StreamConfig& config() const { return config_; }
  uint32_t slot() const { return slot_; }
  StreamState state() const { return state_; }
  const std::string& checkpoint() const { return tracker_.checkpoint(); }
  // The ID of the newest event read from the upstream (may be ahead of the checkpoint).
  const std::string& last_event_id() const { return parser_.last_event_id(); }
  std::size_t in_flight_events() const { return tracker_.in_flight_events(); }
  // Every record handed to Kafka has had its delivery report, and none waits to be handed.
  bool settled() const { return produced_unreported_ == 0 && backlog_.empty(); }
  // Reading is withheld or records wait for room in librdkafka's queue.
  bool waiting_for_kafka() const { return reading_paused_ || !backlog_.empty(); }
  const StreamStats& stats() const { return stats_; }
  int attempt() const { return backoff_.consecutive_failures(); }
  // When the scheduled reconnect happens (meaningful in state kWaiting).
  http::Clock::time_point next_attempt_at() const { return next_attempt_at_; }
  const std::string& redacted_url() const { return redacted_url_; }

  // http::TransferObserver
  void OnResponseHead(http::TransferId id, const http::ResponseHead& head) override;
  http::BodyAction OnBody(http::TransferId id, std::string_view bytes) override;
  void OnTransferDone(http::TransferId id, const http::TransferResult& result) override;

  // sse::ParserListener
  void OnEvent(const sse::Event& event) override;
  void OnEmptyDispatch(std::string_view last_event_id) override;
  void OnRetry(uint64_t milliseconds) override;
  void OnOversizedEvent(std::size_t bytes_seen) override;
  void OnOversizedId(std::size_t id_size) override;

 private:
  // A record librdkafka could not queue (QUEUE_FULL), kept until it can.
  struct OwnedRecord {
    std::string topic;
    std::optional<std::string> key;
    std::string value;
    std::vector<std::pair<std::string, std::string>> headers;
    int64_t timestamp_ms = 0;
    uint64_t token = 0;
  };

  // Registers the next event with the tracker; returns its sequence number.
  uint64_t Register(std::string_view last_event_id, std::size_t bytes, bool needs_ack) {
    return tracker_.Add(last_event_id, bytes, needs_ack);
  }
  void Connect();
  bool BuildRequest(http::HttpRequest* request, std::string* error);
  void ScheduleReconnect(std::chrono::milliseconds delay, ReconnectReason why, const std::string& reason);
  void CloseTransfer();
  void ArmIdleTimer();
  void OnIdleTimer();
  void EndConnection(ReconnectReason why, const std::string& reason);
  void Produce(const sink::BuiltRecord& record, uint64_t sequence);
  void Backlog(const sink::BuiltRecord& record, uint64_t token, int64_t timestamp_ms);
  void FinishFailedResponse(const http::TransferResult& result);
  // `oversize: skip`: a record Kafka refuses as too large is logged, counted and passed over.
  void SkipTooLarge(uint64_t sequence, std::string_view topic, const std::string& error);
  // The probe was confirmed: what waited behind it goes to Kafka and reading resumes.
  void EndProbe();
  // A line about this stream, held back when the same message repeats too often
  // (ops::LogRateLimiter: the first 5, then one a minute with the count held back).
  void LogLimited(spdlog::level::level_enum level, std::string_view message,
                  std::initializer_list<ops::LogField> fields);

  config::StreamConfig config_;
  uint32_t slot_;
  PipelineHost& host_;
  http::SecretQueryParameters secrets_;  // built-in names, secret_query_params, `query` names
  std::string redacted_url_;
  // What Start logs about where the stream begins (start_from against a checkpoint).
  std::string start_note_;
  sse::Parser parser_;
  AckTracker tracker_;
  BackoffPolicy backoff_;
  sink::RecordBuilder builder_;

  StreamState state_ = StreamState::kWaiting;
  bool first_connect_ = true;
  bool reading_paused_ = false;     // OnBody answered kPause (backpressure)
  bool stop_marker_seen_ = false;   // stop_on_data matched in the current response
  bool halted_ = false;             // a record was refused: produce nothing until the rewind
  bool retry_floor_logged_ = false; // a server's retry: below min_delay is logged once
  // Kafka refused one of this stream's records: the first record of the replay is confirmed
  // before the rest follow, so that a refusal that persists (a topic limit, a missing topic,
  // an ACL) costs one record per attempt instead of everything behind it landing again.
  bool probing_ = false;
  http::TransferId transfer_ = 0;
  http::TimerId reconnect_timer_ = 0;
  http::TimerId rewind_timer_ = 0;  // a rewind after Kafka refused a record, still to run
  http::TimerId probe_timer_ = 0;   // releases what waited behind a confirmed probe
  http::TimerId idle_timer_ = 0;
  http::Clock::time_point next_attempt_at_{};
  http::Clock::time_point last_byte_at_{};
  uint64_t produced_unreported_ = 0;  // records queued in librdkafka, report still to come

  // The failed response being described in the log.
  http::ResponseHead failed_head_;
  std::string failed_body_;

  std::deque<OwnedRecord> backlog_;
  std::vector<sink::RecordHeaderView> header_scratch_;
  StreamStats stats_;
  ops::LogRateLimiter log_limiter_;
};

}  // namespace sse2kafka::bridge
