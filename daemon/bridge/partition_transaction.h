// Exactly-once for one state partition: a transactional producer (transactional.id
// `<group>-<partition>`) whose transactions hold the events of the partition's streams together
// with the checkpoint records that cover exactly those events, so that a read_committed consumer
// sees both or neither.
//
// Life of a partition:
//   Start: init_transactions, which fences any earlier producer with the same transactional.id
//          and aborts its open transaction → Host::OnTransactionsReady (the host reads the
//          committed checkpoints, calls SetCommitted and starts the streams)
//   open:  Produce adds events to the current transaction. Every `interval`, or after
//          `max_events`, the transaction is sealed: nothing more is produced, every record's
//          delivery report is awaited, the checkpoint records are added and it is committed.
//          A failed delivery or a failed commit aborts it: Host::OnTransactionAborted rewinds
//          the partition's streams to committed().
//   Finish: commits what is open (a graceful handoff or stop), then reports.
// A fenced or otherwise fatal producer ends the partition: Host::OnPartitionFenced.
//
// Every call happens on the loop thread; the blocking librdkafka transaction calls run on the
// producer's own worker thread and come back through its wakeup fd.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "http/event_loop.h"
#include "sink/kafka_producer.h"

namespace sse2kafka::bridge {

class PartitionTransaction final : public sink::DeliveryHandler {
 public:
  class Host {
   public:
    virtual ~Host() = default;
    virtual http::EventLoop& loop() = 0;
    // A delivery report of an event record (checkpoint records are handled here).
    virtual void OnTransactionalDelivery(const sink::DeliveryReport& report) = 0;
    // After every batch of reports: backpressure and draining bookkeeping.
    virtual void AfterTransactionalDeliveries() = 0;
    // The producer is initialised: earlier owners are fenced, their open transaction aborted.
    virtual void OnTransactionsReady(int32_t partition) = 0;
    // The partition's streams with the checkpoints that cover what they delivered. Called only
    // when no record of the partition is in flight.
    virtual std::vector<std::pair<std::string, std::string>> CurrentCheckpoints(int32_t partition) = 0;
    // A transaction committed: streams waiting for room can produce again.
    virtual void OnTransactionCommitted(int32_t partition) = 0;
    // A transaction was aborted: every stream of the partition goes back to committed().
    virtual void OnTransactionAborted(int32_t partition, const std::string& reason) = 0;
    // The producer is dead (fenced by a newer owner, or another fatal error). The host must
    // stop the partition's streams and destroy this object (not from inside this call).
    virtual void OnPartitionFenced(int32_t partition, bool fenced, const std::string& reason) = 0;
    // True while no transaction may be sealed or committed (ownership is being verified).
    virtual bool transactions_held() const = 0;
  };

  struct Options {
    int32_t partition = 0;
    std::string state_topic;
    std::string instance;  // written into checkpoint records: which process wrote them
    std::chrono::milliseconds interval{100};
    std::size_t max_events = 10000;
    std::chrono::milliseconds operation_timeout{30000};  // init, commit and abort, each
  };

  PartitionTransaction(Options options, std::unique_ptr<sink::KafkaProducer> producer, Host& host);
  // Destroys the producer without committing: an open transaction is left to the broker (it
  // is aborted when the next owner initialises, or when it times out).
  ~PartitionTransaction() override;
  PartitionTransaction(const PartitionTransaction&) = delete;
  PartitionTransaction& operator=(const PartitionTransaction&) = delete;

  // Starts init_transactions; Host::OnTransactionsReady or OnPartitionFenced follows.
  void Start();
  // The checkpoints the partition's streams start from (read with read_committed after init).
  void SetCommitted(std::map<std::string, std::string> committed) { committed_ = std::move(committed); }
  const std::map<std::string, std::string>& committed() const { return committed_; }

  // Adds an event record to the open transaction. kQueueFull (nothing queued) while no
  // transaction is open: being sealed, committed or aborted; the caller retries after
  // OnTransactionCommitted / OnTransactionAborted.
  sink::ProduceResult Produce(const sink::OutgoingRecord& record, std::string* error);

  // Commits what is open and then calls `done(true)`; `done(false)` when it had to be aborted
  // or the producer died (the streams' checkpoints stay at committed()). Produces nothing
  // more afterwards.
  void Finish(std::function<void(bool committed)> done);

  // Makes this object inert ahead of its destruction, which its owner defers when it gives the
  // partition up from inside one of this object's own callbacks: from now on nothing reaches the
  // host (not even the rest of the report batch being served), no timer runs and the producer's
  // fd is no longer watched. A pending Finish reports done(false). The destructor still purges.
  void Detach();

  int32_t partition() const { return options_.partition; }
  // Event records handed over and not yet reported, and their bytes.
  std::size_t events_in_flight() const { return events_in_flight_; }
  std::size_t event_bytes_in_flight() const { return event_bytes_in_flight_; }
  uint64_t commits() const { return commits_; }
  uint64_t aborts() const { return aborts_; }

  // sink::DeliveryHandler
  void OnDelivery(const sink::DeliveryReport& report) override;
  void OnFatalError(const std::string& reason) override;
  void OnTransactionResult(const sink::TransactionResult& result) override;

 private:
  enum class Phase { kIdle, kInitializing, kOpen, kSealing, kCommitting, kAborting, kDead };

  void ScheduleTick();
  void Tick();
  void Seal();
  void CommitWhenSettled();
  void StartAbort(const std::string& reason);
  void BeginNext();
  void Die(bool fenced, const std::string& reason);
  void RetryLater(std::function<void()> operation);
  // When a Finish is pending, ends the partition here (nothing more is produced) and tells its
  // callback `committed`; returns whether one was pending.
  bool ReportFinished(bool committed);
  // Runs `work` from the loop, outside the producer's callbacks, unless this object is gone.
  void Defer(std::function<void()> work);

  Options options_;
  std::unique_ptr<sink::KafkaProducer> producer_;
  Host& host_;
  Phase phase_ = Phase::kIdle;
  std::map<std::string, std::string> committed_;
  std::map<std::string, std::string> committing_;  // checkpoints written into the sealed transaction
  std::size_t events_in_txn_ = 0;
  std::size_t records_in_flight_ = 0;  // events and checkpoint records
  std::size_t events_in_flight_ = 0;
  std::size_t event_bytes_in_flight_ = 0;
  bool abort_needed_ = false;
  std::string abort_reason_;
  uint64_t next_checkpoint_seq_ = 0;
  uint64_t commits_ = 0;
  uint64_t aborts_ = 0;
  std::function<void(bool)> finished_;
  http::TimerId tick_timer_ = 0;
  http::TimerId retry_timer_ = 0;
  bool deferred_ = false;  // a CommitWhenSettled is scheduled outside the producer's callbacks
  bool detached_ = false;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // expires with this object
};

}  // namespace sse2kafka::bridge
