// Runs the configured streams on one loop and one Kafka producer: routes delivery reports to
// their stream, applies backpressure across all streams, persists checkpoints in batches,
// reloads the stream set, recreates the producer after a fatal error, and stops cleanly.
//
// With the Kafka state backend a stream belongs to a state partition (murmur2 of its name) and
// the bridge runs the streams of the partitions it owns: all of them, or in cluster mode those
// the consumer group assigns to this instance. It acquires a partition (exactly-once: fences the
// previous owner by initialising the partition's transactional producer), reads the partition's
// checkpoints and starts its streams; it releases one by stopping its streams, letting their
// in-flight events settle and writing (or committing) their checkpoints before the group may
// hand the partition on. A partition lost without a handoff (this instance was thrown out of
// the group) is dropped without writing anything for it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string_view>
#include <vector>
#include <memory>
#include <string>
#include <unordered_map>

#include "bridge/partition_transaction.h"
#include "bridge/pipeline_host.h"
#include "bridge/state_topic_checkpoints.h"
#include "bridge/stream_pipeline.h"
#include "config/config.h"
#include "http/event_loop.h"
#include "http/http_client.h"
#include "sink/connection_problem.h"
#include "sink/group_membership.h"
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
  // Fleet (Kafka state backend).
  std::size_t owned_partitions = 0;
  uint64_t ownership_changes = 0;  // partitions acquired plus partitions given up
  uint64_t transactions_committed = 0;
  uint64_t transactions_aborted = 0;
};

// What the bridge needs for the Kafka state backend, exactly-once and cluster mode. Unused with
// the file backend.
struct FleetHooks {
  std::string instance;          // "<host>/<pid>", written into checkpoint records
  int32_t state_partitions = 1;  // the state topic's real partition count
  // Reads the newest checkpoint per stream in these state partitions (blocking; read_committed
  // in exactly-once mode). nullopt with *error when the topic cannot be read to its end.
  std::function<std::optional<std::map<std::string, std::string>>(const std::vector<int32_t>& partitions,
                                                                   std::string* error)>
      read_checkpoints;
  // Exactly-once: creates the transactional producer of one state partition.
  std::function<std::unique_ptr<sink::KafkaProducer>(int32_t partition, std::string* error)>
      make_transactional_producer;
  // Cluster mode: joins the group.
  std::function<std::unique_ptr<sink::GroupMembership>(std::string* error)> join_group;
  // The bridge cannot go on (fenced by a newer owner, a fatal group error): the process exits 1.
  std::function<void(const std::string& reason)> fail;
};

class Bridge final : public PipelineHost,
                     public sink::DeliveryHandler,
                     public PartitionTransaction::Host,
                     public sink::MembershipHandler {
 public:
  using ProducerFactory = std::function<std::unique_ptr<sink::KafkaProducer>(std::string* error)>;

  // `store`: the checkpoint file (file backend); nullptr with the Kafka backend, which uses
  // `fleet` instead.
  Bridge(http::EventLoop& loop, http::HttpClient& http, state::CheckpointStore* store,
         ProducerFactory make_producer, config::Config config, FleetHooks fleet = {});
  ~Bridge() override;
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // Creates the producer, fetches the topics' metadata, opens every stream (Kafka backend: of
  // the partitions it owns; cluster mode: joins the group, streams start as partitions are
  // assigned) and starts the periodic checkpoint and summary timers. False with *error if the
  // producer cannot be created, the checkpoints cannot be read or the group cannot be joined.
  bool Start(std::string* error);

  // Applies a new, already validated config: unchanged streams keep their connections,
  // changed ones restart (after their in-flight events settle), new ones start, removed ones
  // stop after their in-flight events settle. log.stats_interval applies at once (0 stops
  // the summary); the restart-only settings (restart_only_settings.h) keep their running
  // values, with one warning naming each that changed.
  void Reload(config::Config next);

  // Stops reading every upstream; `on_stopped` runs once every record handed to Kafka has
  // its delivery report, or when kafka.flush_timeout has passed, whichever comes first.
  void BeginShutdown(std::function<void()> on_stopped);

  // Writes every stream's checkpoint now. False with *error if the state store cannot. With the
  // Kafka backend after a stop (the loop no longer runs) it waits up to kafka.flush_timeout for
  // the checkpoint records to be confirmed; exactly-once committed them already.
  bool PersistCheckpoints(std::string* error);

  // Cluster mode: leaves the group, so that the others take over at once. Call after a stop.
  void LeaveGroup();

  const BridgeStats& stats() const { return stats_; }
  // True with the Kafka state backend (partition ownership, fleet metrics).
  bool fleet() const { return kafka_state(); }
  // librdkafka's outstanding records and requests; 0 while no producer exists.
  std::size_t producer_outstanding() const { return producer_ ? producer_->outstanding() : 0; }
  // The newest librdkafka statistics summary, or nullptr when none arrived yet.
  const sink::ProducerStatsSummary* producer_stats() const {
    return producer_ && producer_->stats() ? &*producer_->stats() : nullptr;
  }
  std::chrono::milliseconds kafka_stats_interval() const;
  // The producer's connection problem (authentication, TLS, protocol), nullptr when none.
  const sink::ConnectionProblem* kafka_connection_problem() const {
    return producer_ && producer_->connection_problem() ? &*producer_->connection_problem() : nullptr;
  }
  // The producer's connection errors by cause; nullptr while no producer exists.
  const std::array<uint64_t, sink::kConnectionCauseCount>* kafka_connection_errors() const {
    return producer_ ? &producer_->connection_errors() : nullptr;
  }
  // Calls `visit` for each stream that is configured now (not the ones draining).
  void ForEachStream(const std::function<void(const StreamPipeline&)>& visit) const;

  // PipelineHost
  http::EventLoop& loop() override { return loop_; }
  http::HttpClient& http() override { return http_; }
  sink::ProduceResult Produce(const sink::OutgoingRecord& record, std::string* error) override;
  bool backpressured() const override { return stats_.backpressured || suspended_; }
  bool transactional() const override { return exactly_once(); }

  // sink::DeliveryHandler
  void OnDelivery(const sink::DeliveryReport& report) override;
  void OnFatalError(const std::string& reason) override;

  // PartitionTransaction::Host
  void OnTransactionalDelivery(const sink::DeliveryReport& report) override;
  void AfterTransactionalDeliveries() override { AfterDeliveries(); }
  void OnTransactionsReady(int32_t partition) override;
  std::vector<std::pair<std::string, std::string>> CurrentCheckpoints(int32_t partition) override;
  void OnTransactionCommitted(int32_t partition) override;
  void OnTransactionAborted(int32_t partition, const std::string& reason) override;
  void OnPartitionFenced(int32_t partition, bool fenced, const std::string& reason) override;
  bool transactions_held() const override { return suspended_; }

  // sink::MembershipHandler
  void OnPartitionsAssigned(const std::vector<int32_t>& partitions) override;
  void OnPartitionsRevoked(const std::vector<int32_t>& partitions, bool lost) override;
  void OnMembershipError(const std::string& error, bool fatal) override;

 private:
  // A state partition this instance owns (the file backend has one, 0, holding every stream).
  struct OwnedPartition {
    enum class Phase { kPreparing, kRunning, kReleasing };
    Phase phase = Phase::kPreparing;
    std::unique_ptr<PartitionTransaction> transaction;  // exactly-once
    std::set<uint32_t> slots;                           // its pipelines, running or draining
    // Exactly-once: final checkpoints of streams that left (removed, restarted, released),
    // still to be committed.
    std::map<std::string, std::string> departed;
    bool finishing = false;  // releasing: the transaction's Finish is running
  };

  bool kafka_state() const { return config_.state.backend == config::StateBackend::kKafka; }
  bool exactly_once() const { return config_.delivery == config::Delivery::kExactlyOnce; }
  bool cluster() const { return !config_.cluster.group.empty(); }
  int32_t PartitionOf(std::string_view stream) const;
  bool PartitionHasStreams(int32_t partition) const;
  // True when the partition of `stream` is owned here and its streams run (not being acquired
  // or released).
  bool RunsPartitionOf(std::string_view stream) const;
  void AcquirePartitions(const std::vector<int32_t>& partitions);
  void ReadReadyPartitions();
  void StartPartitionStreams(int32_t partition, const std::map<std::string, std::string>& checkpoints);
  void ReleasePartitions(const std::vector<int32_t>& partitions);
  void DropPartitions(const std::vector<int32_t>& partitions, const std::string& why);
  // Closes the pipeline in `slot` because its partition is leaving this instance: it stops
  // reading, drains (CollectDrained) and is not restarted here. Returns it.
  StreamPipeline& CloseLeavingStream(uint32_t slot);
  void DropTransaction(OwnedPartition& owned);
  void CheckReleases();
  void FinishRelease(int32_t partition);
  void ResumePartition(int32_t partition);
  void OnStall(std::chrono::milliseconds stalled);
  void CheckMembership();
  void PollMembership();
  void RecordCheckpoint(const StreamPipeline& pipeline);
  std::string PartitionList(const std::vector<int32_t>& partitions) const;

  bool CreateProducer(std::string* error);
  void StartStream(const config::StreamConfig& stream, std::optional<std::string> checkpoint);
  void AfterDeliveries();
  void ReleaseBackpressure();
  void CollectDrained();
  void RecreateProducer(const std::string& reason);
  void RecreateProducerLater(const std::string& reason);
  void PeriodicFlush();
  void PeriodicSummary();
  // (Re)starts the periodic summary at log.stats_interval, or stops it when that is 0.
  void ScheduleSummary();
  void MaybeFinishShutdown();
  std::vector<std::string> AllTopics() const;

  http::EventLoop& loop_;
  http::HttpClient& http_;
  state::CheckpointStore* store_;
  ProducerFactory make_producer_;
  config::Config config_;
  FleetHooks fleet_;
  std::unique_ptr<sink::KafkaProducer> producer_;

  std::map<int32_t, OwnedPartition> partitions_;
  std::unordered_map<uint32_t, int32_t> partition_of_slot_;
  std::unique_ptr<StateTopicCheckpoints> topic_checkpoints_;  // Kafka backend, at-least-once
  std::unique_ptr<sink::GroupMembership> membership_;
  std::vector<int32_t> to_read_;  // partitions whose checkpoints are read next (batched)
  bool read_scheduled_ = false;
  // The loop stalled for longer than a third of the session timeout: this instance may have
  // been thrown out of the group, so nothing is written until the coordinator confirms it.
  bool suspended_ = false;
  http::TimerId membership_timer_ = 0;
  std::size_t finishing_transactions_ = 0;  // shutdown: partitions still committing
  std::vector<std::unique_ptr<PartitionTransaction>> retired_transactions_;  // destroyed next turn

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

// The transactional.id of state partition `partition`'s producer (exactly-once): the cluster
// group, or "sse2kafka" without one, then "-" and the partition.
std::string TransactionalId(const config::Config& config, int32_t partition);

// What the fleet's Kafka requests need, to name a missing ACL: `topic_operation` on the state
// topic, the cluster group, and partition `partition`'s transactional id (none when negative).
sink::AclContext FleetAcls(const config::Config& config, std::string topic_operation, int32_t partition = -1);

}  // namespace sse2kafka::bridge
