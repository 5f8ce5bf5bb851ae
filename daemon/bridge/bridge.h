// Runs every configured stream on one loop and one Kafka producer: routes delivery reports to
// their stream, applies backpressure across all streams, persists checkpoints in batches,
// reloads the stream set, recreates the producer after a fatal error, and stops cleanly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "bridge/pipeline_host.h"
#include "bridge/stream_pipeline.h"
#include "config/config.h"
#include "http/event_loop.h"
#include "http/http_client.h"
#include "sink/kafka_producer.h"
#include "state/checkpoint_store.h"

namespace sse2kafka::bridge {

// Process-wide counters for logs and metrics.
struct BridgeStats {
  uint64_t fatal_producer_resets = 0;
  uint64_t backpressure_episodes = 0;
  std::size_t in_flight_events = 0;
  std::size_t in_flight_bytes = 0;
  bool backpressured = false;
};

class Bridge final : public PipelineHost, public sink::DeliveryHandler {
 public:
  using ProducerFactory = std::function<std::unique_ptr<sink::KafkaProducer>(std::string* error)>;

  Bridge(http::EventLoop& loop, http::HttpClient& http, state::CheckpointStore& store,
         ProducerFactory make_producer, config::Config config);
  ~Bridge() override;
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // Creates the producer, fetches the topics' metadata, opens every stream and starts the
  // periodic checkpoint and summary timers. False with *error if the producer cannot be
  // created (nothing is started then).
  bool Start(std::string* error);

  // Applies a new, already validated config: unchanged streams keep their connections,
  // changed ones restart (after their in-flight events settle), new ones start, removed ones
  // stop after their in-flight events settle. Kafka settings apply only at the next start.
  void Reload(config::Config next);

  // Stops reading every upstream; `on_stopped` runs once every record handed to Kafka has
  // its delivery report, or when kafka.flush_timeout has passed, whichever comes first.
  void BeginShutdown(std::function<void()> on_stopped);

  // Writes every stream's checkpoint now. False with *error if the state store cannot.
  bool PersistCheckpoints(std::string* error);

  const BridgeStats& stats() const { return stats_; }
  // librdkafka's outstanding records and requests; 0 while no producer exists.
  std::size_t producer_outstanding() const { return producer_ ? producer_->outstanding() : 0; }
  // The newest librdkafka statistics summary, or nullptr when none arrived yet.
  const sink::ProducerStatsSummary* producer_stats() const {
    return producer_ && producer_->stats() ? &*producer_->stats() : nullptr;
  }
  std::chrono::milliseconds kafka_stats_interval() const;
  // Calls `visit` for each stream that is configured now (not the ones draining).
  void ForEachStream(const std::function<void(const StreamPipeline&)>& visit) const;

  // PipelineHost
  http::EventLoop& loop() override { return loop_; }
  http::HttpClient& http() override { return http_; }
  sink::ProduceResult Produce(const sink::OutgoingRecord& record, std::string* error) override;
  bool backpressured() const override { return stats_.backpressured; }

  // sink::DeliveryHandler
  void OnDelivery(const sink::DeliveryReport& report) override;
  void OnFatalError(const std::string& reason) override;

 private:
  bool CreateProducer(std::string* error);
  void StartStream(const config::StreamConfig& stream, std::optional<std::string> checkpoint);
  void AfterDeliveries();
  void ReleaseBackpressure();
  void CollectDrained();
  void RecreateProducer(const std::string& reason);
  void RecreateProducerLater(const std::string& reason);
  void PeriodicFlush();
  void PeriodicSummary();
  void MaybeFinishShutdown();
  std::vector<std::string> AllTopics() const;

  http::EventLoop& loop_;
  http::HttpClient& http_;
  state::CheckpointStore& store_;
  ProducerFactory make_producer_;
  config::Config config_;
  std::unique_ptr<sink::KafkaProducer> producer_;

  uint32_t next_slot_ = 1;
  std::unordered_map<uint32_t, std::unique_ptr<StreamPipeline>> pipelines_;  // by slot
  std::map<std::string, uint32_t> active_;         // configured stream name → slot
  std::map<std::string, config::StreamConfig> restart_after_drain_;  // name → new settings

  BridgeStats stats_;
  bool shutting_down_ = false;
  std::function<void()> on_stopped_;
  http::TimerId flush_timer_ = 0;
  http::TimerId summary_timer_ = 0;
  http::TimerId shutdown_timer_ = 0;
  bool resume_scheduled_ = false;
  // Some pipeline may be paused or hold a backlog: set whenever a produce cannot go through or
  // backpressure starts, cleared once every pipeline was offered to resume.
  bool maybe_waiting_ = false;
  std::size_t closed_pipelines_ = 0;  // closed and not yet drained and removed
};

}  // namespace sse2kafka::bridge
