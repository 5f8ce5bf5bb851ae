#include "bridge/partition_transaction.h"

#include <sys/epoll.h>

#include "bridge/pipeline_host.h"
#include "ops/log.h"
#include "sink/state_topic.h"

namespace sse2kafka::bridge {

using std::chrono::milliseconds;
using spdlog::level::debug;
using spdlog::level::err;
using spdlog::level::warn;

namespace {

int64_t UnixMillisNow() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

constexpr milliseconds kRetryDelay{1000};

}  // namespace

PartitionTransaction::PartitionTransaction(Options options, std::unique_ptr<sink::KafkaProducer> producer,
                                           Host& host)
    : options_(std::move(options)), producer_(std::move(producer)), host_(host) {
  host_.loop().Watch(producer_->wakeup_fd(), EPOLLIN, [this](uint32_t) {
    producer_->Poll(*this);
    if (!detached_) host_.AfterTransactionalDeliveries();
  });
}

PartitionTransaction::~PartitionTransaction() {
  finished_ = nullptr;  // its owner is going away too: nobody to tell
  Detach();
  producer_->Purge();
}

void PartitionTransaction::Detach() {
  if (detached_) return;
  detached_ = true;
  host_.loop().Cancel(tick_timer_);
  host_.loop().Cancel(retry_timer_);
  tick_timer_ = retry_timer_ = 0;
  host_.loop().Unwatch(producer_->wakeup_fd());
  alive_.reset();  // deferred work is dropped
  phase_ = Phase::kDead;
  ReportFinished(false);
}

void PartitionTransaction::Start() {
  phase_ = Phase::kInitializing;
  producer_->StartInitTransactions(options_.operation_timeout);
}

void PartitionTransaction::ScheduleTick() {
  host_.loop().Cancel(tick_timer_);
  tick_timer_ = host_.loop().ScheduleAfter(options_.interval, [this] {
    tick_timer_ = 0;
    Tick();
  });
}

void PartitionTransaction::Tick() {
  if (phase_ == Phase::kSealing) {  // sealed while held: see whether the commit may go ahead
    CommitWhenSettled();
    return;
  }
  if (phase_ != Phase::kOpen) return;
  if (host_.transactions_held()) {
    ScheduleTick();
    return;
  }
  if (events_in_txn_ > 0 || abort_needed_) {
    Seal();
    return;
  }
  // No event, but a filtered one may have moved a checkpoint: that is worth a transaction too.
  if (records_in_flight_ == 0) {
    for (const auto& [stream, checkpoint] : host_.CurrentCheckpoints(options_.partition)) {
      auto it = committed_.find(stream);
      if (it == committed_.end() || it->second != checkpoint) {
        Seal();
        return;
      }
    }
  }
  ScheduleTick();
}

sink::ProduceResult PartitionTransaction::Produce(const sink::OutgoingRecord& record, std::string* error) {
  if (phase_ != Phase::kOpen || abort_needed_ || finished_) {
    if (error) *error = "the partition's transaction is being committed";
    return sink::ProduceResult::kQueueFull;
  }
  sink::OutgoingRecord copy = record;
  const sink::ProduceResult result = producer_->Produce(copy, error);
  if (result != sink::ProduceResult::kQueued) return result;
  ++records_in_flight_;
  ++events_in_flight_;
  event_bytes_in_flight_ += record.value.size() + (record.key ? record.key->size() : 0);
  if (++events_in_txn_ >= options_.max_events && !host_.transactions_held()) Seal();
  return result;
}

void PartitionTransaction::Seal() {
  if (phase_ != Phase::kOpen) return;
  host_.loop().Cancel(tick_timer_);
  tick_timer_ = 0;
  phase_ = Phase::kSealing;
  CommitWhenSettled();
}

void PartitionTransaction::OnDelivery(const sink::DeliveryReport& report) {
  if (detached_) return;
  if (records_in_flight_ > 0) --records_in_flight_;
  if (PipelineHost::SlotOf(report.token) == 0) {
    if (!report.ok && !abort_needed_) {
      abort_needed_ = true;
      abort_reason_ = "checkpoint record failed: " + std::string(report.error_name);
    }
  } else {
    if (events_in_flight_ > 0) --events_in_flight_;
    event_bytes_in_flight_ -= std::min(event_bytes_in_flight_, report.size);
    if (!report.ok && !abort_needed_ && (phase_ == Phase::kOpen || phase_ == Phase::kSealing)) {
      abort_needed_ = true;
      abort_reason_ = "delivery failed: " + std::string(report.error_name);
    }
    host_.OnTransactionalDelivery(report);
  }
  if ((phase_ == Phase::kSealing || (phase_ == Phase::kOpen && abort_needed_)) && !deferred_) {
    // Not from inside the producer's callback: starting an operation there is not allowed.
    deferred_ = true;
    Defer([this] {
      deferred_ = false;
      if (phase_ == Phase::kOpen && abort_needed_) {
        StartAbort(abort_reason_);
      } else {
        CommitWhenSettled();
      }
    });
  }
}

void PartitionTransaction::CommitWhenSettled() {
  if (phase_ != Phase::kSealing) return;
  if (abort_needed_) {
    StartAbort(abort_reason_);
    return;
  }
  if (records_in_flight_ > 0) return;  // the last report calls again
  if (host_.transactions_held()) {
    // Sealed before the hold began: commit nothing until ownership is confirmed.
    ScheduleTick();
    return;
  }
  // Every event of the transaction is delivered, so each stream's checkpoint covers exactly
  // what the transaction holds.
  committing_.clear();
  const int64_t now_ms = UnixMillisNow();
  for (auto& [stream, checkpoint] : host_.CurrentCheckpoints(options_.partition)) {
    auto it = committed_.find(stream);
    if (it != committed_.end() && it->second == checkpoint) continue;
    const std::string value = sink::EncodeCheckpointValue(checkpoint, options_.instance, now_ms);
    sink::OutgoingRecord record;
    record.topic = options_.state_topic;
    record.partition = options_.partition;
    record.key = stream;
    record.value = value;
    record.token = PipelineHost::Token(0, next_checkpoint_seq_++);
    std::string error;
    if (producer_->Produce(record, &error) != sink::ProduceResult::kQueued) {
      StartAbort("cannot add a checkpoint record: " + error);
      return;
    }
    ++records_in_flight_;
    committing_.emplace(stream, std::move(checkpoint));
  }
  if (committing_.empty() && events_in_txn_ == 0) {
    // Nothing to commit: the transaction stays open.
    phase_ = Phase::kOpen;
    if (ReportFinished(true)) return;
    ScheduleTick();
    return;
  }
  phase_ = Phase::kCommitting;
  producer_->StartCommitTransaction(options_.operation_timeout);
}

void PartitionTransaction::StartAbort(const std::string& reason) {
  if (phase_ == Phase::kAborting || phase_ == Phase::kDead) return;
  host_.loop().Cancel(tick_timer_);
  tick_timer_ = 0;
  abort_reason_ = reason;
  abort_needed_ = true;
  phase_ = Phase::kAborting;
  ops::Log(warn, "", "transaction aborted",
           {{"partition", static_cast<int64_t>(options_.partition)}, {"reason", reason},
            {"events", static_cast<int64_t>(events_in_txn_)}});
  producer_->StartAbortTransaction(options_.operation_timeout);
}

void PartitionTransaction::BeginNext() {
  std::string error;
  if (!producer_->BeginTransaction(&error)) {
    Die(false, "cannot begin a transaction: " + error);
    return;
  }
  events_in_txn_ = 0;
  phase_ = Phase::kOpen;
  ScheduleTick();
}

void PartitionTransaction::Die(bool fenced, const std::string& reason) {
  if (phase_ == Phase::kDead) return;
  phase_ = Phase::kDead;
  host_.loop().Cancel(tick_timer_);
  tick_timer_ = 0;
  ReportFinished(false);
  host_.OnPartitionFenced(options_.partition, fenced, reason);
}

bool PartitionTransaction::ReportFinished(bool committed) {
  if (!finished_) return false;
  auto done = std::move(finished_);
  finished_ = nullptr;
  phase_ = Phase::kDead;
  done(committed);
  return true;
}

void PartitionTransaction::Defer(std::function<void()> work) {
  host_.loop().ScheduleAfter(milliseconds(0), [alive = std::weak_ptr<int>(alive_), work = std::move(work)] {
    if (!alive.expired()) work();
  });
}

void PartitionTransaction::RetryLater(std::function<void()> operation) {
  host_.loop().Cancel(retry_timer_);
  retry_timer_ = host_.loop().ScheduleAfter(kRetryDelay, [this, operation = std::move(operation)] {
    retry_timer_ = 0;
    operation();
  });
}

void PartitionTransaction::OnFatalError(const std::string& reason) {
  if (detached_) return;
  // The transaction result that follows says whether it was fencing; a fatal error outside
  // an operation (a produce) ends the partition here.
  if (producer_->transaction_op_running()) return;
  // A record refused with PRODUCER_FENCED / INVALID_PRODUCER_EPOCH ends up here as _FENCED.
  const bool fenced = reason.find("FENCED") != std::string::npos || reason.find("EPOCH") != std::string::npos;
  Defer([this, reason, fenced] { Die(fenced, reason); });
}

void PartitionTransaction::OnTransactionResult(const sink::TransactionResult& result) {
  if (detached_) return;
  // Called from inside Poll: what follows may start another operation, so leave Poll first.
  Defer([this, result] {
    if (phase_ == Phase::kDead) return;
    // A failure that is neither retriable nor abortable is fatal, as librdkafka advises.
    if (result.fatal || (!result.ok && !result.retriable && !result.abortable)) {
      Die(result.fenced, result.error);
      return;
    }
    switch (result.op) {
      case sink::TransactionOp::kInit:
        if (result.ok) {
          BeginNext();
          if (phase_ == Phase::kOpen) host_.OnTransactionsReady(options_.partition);
        } else {
          ops::Log(warn, "", "cannot initialise the partition's transactions; retrying",
                   {{"partition", static_cast<int64_t>(options_.partition)}, {"error", result.error}});
          RetryLater([this] { producer_->StartInitTransactions(options_.operation_timeout); });
        }
        return;
      case sink::TransactionOp::kCommit:
        if (result.ok) {
          for (auto& [stream, checkpoint] : committing_) committed_[stream] = std::move(checkpoint);
          committing_.clear();
          ++commits_;
          ops::Log(debug, "", "transaction committed",
                   {{"partition", static_cast<int64_t>(options_.partition)},
                    {"events", static_cast<int64_t>(events_in_txn_)}});
          if (ReportFinished(true)) return;
          BeginNext();
          host_.OnTransactionCommitted(options_.partition);
        } else if (result.abortable) {
          phase_ = Phase::kSealing;  // StartAbort needs a live phase
          StartAbort("commit failed: " + result.error);
        } else {
          ops::Log(warn, "", "commit did not complete; retrying",
                   {{"partition", static_cast<int64_t>(options_.partition)}, {"error", result.error}});
          RetryLater([this] { producer_->StartCommitTransaction(options_.operation_timeout); });
        }
        return;
      case sink::TransactionOp::kAbort:
        if (result.ok) {
          committing_.clear();
          abort_needed_ = false;
          ++aborts_;
          const std::string reason = abort_reason_;
          if (finished_) {
            phase_ = Phase::kDead;  // the host rewinds the streams before hearing of the finish
            host_.OnTransactionAborted(options_.partition, reason);
            ReportFinished(false);
            return;
          }
          BeginNext();
          host_.OnTransactionAborted(options_.partition, reason);
        } else {
          ops::Log(err, "", "abort did not complete; retrying",
                   {{"partition", static_cast<int64_t>(options_.partition)}, {"error", result.error}});
          RetryLater([this] { producer_->StartAbortTransaction(options_.operation_timeout); });
        }
        return;
    }
  });
}

void PartitionTransaction::Finish(std::function<void(bool committed)> done) {
  if (phase_ == Phase::kDead) {
    done(false);
    return;
  }
  finished_ = std::move(done);
  switch (phase_) {
    case Phase::kOpen:
      Seal();
      return;
    case Phase::kIdle:
    case Phase::kInitializing: {
      // Never opened: nothing to commit.
      ReportFinished(true);
      return;
    }
    default:
      return;  // the running seal, commit or abort ends in `done`
  }
}

}  // namespace sse2kafka::bridge
