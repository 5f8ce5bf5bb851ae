// The sink's Kafka producer: takes records, reports their deliveries, and wakes an epoll loop
// through a file descriptor when reports are ready. It knows Kafka, not HTTP or SSE. With a
// transactional.id (ProducerSettings::transactional_id) it also runs Kafka transactions.
//
// Threading: every call, and every DeliveryHandler callback, happens on the thread that owns
// the producer (the event loop). librdkafka's blocking transaction calls run on one worker
// thread per producer (started by the first Start*Transaction call); their results come back
// through wakeup_fd() and are served, on the loop thread, by Poll and Flush. Delivery reports
// are librdkafka events that only Poll and Flush serve, so the worker's flushes inside
// commit and abort never run a callback. librdkafka's log lines come from its own threads and
// go straight to spdlog's default logger, so configure logging before creating a producer and
// do not replace the default logger while one exists.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sink/connection_problem.h"
#include "sink/producer_properties.h"

struct rd_kafka_s;
struct rd_kafka_queue_s;
struct rd_kafka_topic_s;
struct rd_kafka_message_s;
struct rd_kafka_op_s;

namespace sse2kafka::sink {

class TransactionWorker;

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
  // -1 (RD_KAFKA_PARTITION_UA) lets the partitioner choose (librdkafka's `partitioner`
  // property); otherwise the record goes to this partition. A partition the topic does not
  // have is refused (kRejected, _UNKNOWN_PARTITION) once librdkafka knows the topic's
  // partitions, and otherwise fails in the record's delivery report.
  int32_t partition = -1;
};

enum class ProduceResult {
  kQueued,     // a delivery report for `token` will come from Poll or Flush, exactly once
  kQueueFull,  // nothing was queued; try again after Poll. Either librdkafka's queue is full,
               // or (transactional producers) no transaction is open to take the record:
               // a commit or abort is running, or none was begun since the last one ended
  kTooLarge,   // larger than the producer's message.max.bytes: nothing was queued
  kRejected,   // permanent for this record (unknown topic, fatal producer state):
               // nothing was queued and no report will come
};

// The blocking librdkafka transaction calls that KafkaProducer runs off the loop thread.
enum class TransactionOp { kInit, kCommit, kAbort };

// "init", "commit" or "abort", for log lines.
const char* TransactionOpName(TransactionOp op);

// How one transaction call ended, classified exactly as librdkafka's rd_kafka_error_t:
//   ok:        done. After kInit and after kCommit/kAbort: BeginTransaction may be called.
//   retriable: (rd_kafka_error_is_retriable) e.g. timed out: start the same op again;
//              librdkafka resumes the call that continued in the background.
//   abortable: (rd_kafka_error_txn_requires_abort) the open transaction failed, e.g. a record
//              failed: StartAbortTransaction, then BeginTransaction and produce again.
//   fatal:     (rd_kafka_error_is_fatal) the producer is dead and must be replaced;
//              OnFatalError is called as well.
// A failure with none of the three flags (e.g. _STATE: called in the wrong state) is, as
// librdkafka advises, to be treated as fatal.
struct TransactionResult {
  TransactionOp op = TransactionOp::kInit;
  bool ok = false;
  bool retriable = false;
  bool abortable = false;
  bool fatal = false;
  // Fatal because another producer with the same transactional.id took over (PRODUCER_FENCED,
  // INVALID_PRODUCER_EPOCH or librdkafka's _FENCED): this instance no longer owns the id.
  bool fenced = false;
  int error_code = 0;  // rd_kafka_resp_err_t; for fatal errors the underlying cause's code
  std::string error;   // "NAME: text"; empty when ok
};

// A timeout for the Start*Transaction calls that lets librdkafka choose: the remaining
// transaction time for commit and abort (what librdkafka recommends), 2 * transaction.timeout.ms
// for init.
inline constexpr std::chrono::milliseconds kLibrdkafkaTransactionTimeout{-1};

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

// Callbacks run inside Poll or Flush. They may call Produce, BeginTransaction and the
// Start*Transaction calls, but not Poll, Flush or Purge.
class DeliveryHandler {
 public:
  virtual ~DeliveryHandler() = default;
  // Called once for every record Produce queued. Reports for one partition come in produce order.
  virtual void OnDelivery(const DeliveryReport& report) = 0;
  // Called once for every Start*Transaction call, after the reports of the records that the
  // committed or aborted transaction held. transaction_op_running() is already false here.
  virtual void OnTransactionResult(const TransactionResult& /*result*/) {}
  // Called at most once per producer, after the reports served by the same Poll or Flush: the
  // producer is dead (every further Produce is rejected) and must be replaced. Destroy it only
  // after Poll or Flush returned, never from inside this callback.
  virtual void OnFatalError(const std::string& reason) = 0;
};

class KafkaProducer {
 public:
  // Creates an idempotent producer (see EffectiveProducerProperties for what is set around the
  // user's properties; transactional when settings.transactional_id is set, in which case
  // StartInitTransactions must succeed before the first transaction), with delivery reports,
  // fatal-error reporting, librdkafka's log in spdlog,
  // statistics every kDefaultStatisticsInterval unless the user set statistics.interval.ms
  // (0 turns them off), and its report queue wired to wakeup_fd(). It connects lazily, so
  // brokers being down is no error here. Returns nullptr and sets *error when librdkafka refuses
  // the configuration.
  static std::unique_ptr<KafkaProducer> Create(const ProducerSettings& settings, std::string* error);

  // Does not flush and does not report: records still outstanding are dropped (logged as a
  // warning), and so is the result of a transaction call. A transaction call still running is
  // waited for first, its records purged and their reports dropped meanwhile: librdkafka
  // cannot cancel the call, which ends within the timeout it was started with, so destroying
  // a producer may block that long (a commit whose records are purged ends at once, as
  // abortable). Call Flush first for a clean stop; an open transaction is left to the broker,
  // which aborts it after transaction.timeout.ms or when the next producer with the same
  // transactional.id initialises.
  ~KafkaProducer();

  KafkaProducer(const KafkaProducer&) = delete;
  KafkaProducer& operator=(const KafkaProducer&) = delete;

  // Queues one record without blocking. On kQueueFull and kRejected, *error says why.
  // A transactional producer queues records only into an open transaction (BeginTransaction).
  // While a commit or abort runs, librdkafka itself refuses records (state BEGIN_COMMIT /
  // ABORTING_TRANSACTION: _STATE, "Producing not allowed in transactional state"), so that
  // none can slip into the transaction being finished; here that, like producing when no
  // transaction is open, is kQueueFull: the record waits for the next transaction.
  ProduceResult Produce(const OutgoingRecord& record, std::string* error);

  // Transactions (transactional producers only). Every Start* call returns at once; its
  // TransactionResult comes exactly once through OnTransactionResult, served by Poll or Flush
  // (wakeup_fd() becomes readable). Keep serving wakeup_fd() while a call runs: commit and
  // abort end only after the reports of the transaction's records have been served. Only one
  // call runs at a time: starting one while transaction_op_running() is a programming error
  // (asserted; without assertions it is logged and ignored, and the running call's result
  // still comes). `timeout` bounds the blocking librdkafka call; kLibrdkafkaTransactionTimeout
  // lets librdkafka choose. A call that failed as retriable (e.g. _TIMED_OUT) may be started
  // again: librdkafka resumes the one still progressing in the background.
  //
  // rd_kafka_init_transactions: gets the producer id and epoch for transactional.id, which
  // fences an older producer with the same id and completes or aborts its open transaction.
  void StartInitTransactions(std::chrono::milliseconds timeout);
  // rd_kafka_begin_transaction: local, does not wait for a broker, so it is called directly.
  // Returns false and sets *error when librdkafka refuses (no successful init, a transaction
  // already open, a fatal error) or a transaction call is running.
  bool BeginTransaction(std::string* error);
  // rd_kafka_commit_transaction: waits (on the worker) for every record of the transaction to
  // be delivered, then commits. Their reports are served before the result. If any record
  // failed, the result is abortable.
  void StartCommitTransaction(std::chrono::milliseconds timeout);
  // rd_kafka_abort_transaction: drops the records not yet sent, waits for those in flight,
  // then aborts. Records not delivered get failed reports (_PURGE_QUEUE or _PURGE_INFLIGHT),
  // served before the result; records already delivered keep their ok reports (a
  // read_committed consumer does not see them).
  void StartAbortTransaction(std::chrono::milliseconds timeout);
  // True from a Start* call until its result has been handed to OnTransactionResult.
  bool transaction_op_running() const { return running_op_.has_value(); }

  // Readable (EPOLLIN) when Poll has work. Level-triggered use is fine: Poll drains it.
  int wakeup_fd() const { return wakeup_fd_; }

  // Never blocks: drains wakeup_fd() and serves every queued delivery report, error and
  // transaction result into `handler`. Call it whenever wakeup_fd() is readable; nothing is
  // lost if it is called without being readable. What arrives while it serves is left for the
  // next call, with wakeup_fd() readable again.
  void Poll(DeliveryHandler& handler);

  // Waits up to `timeout` for every outstanding record, serving reports into `handler`. Returns
  // true when outstanding() reached zero. It does not wait for a running transaction call,
  // but serves its result if it is ready.
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

  // Why the producer cannot use the cluster, when librdkafka said so: authentication refused,
  // a failed TLS handshake, or a security protocol the listener does not speak (see
  // ClassifyConnectionError). Logged once as an error when it starts or changes cause; gone
  // (and logged as such) once a record is delivered or the statistics show a broker up.
  // nullopt while there is no such problem. librdkafka keeps reconnecting with its backoff
  // (reconnect.backoff.ms up to reconnect.backoff.max.ms) meanwhile.
  const std::optional<ConnectionProblem>& connection_problem() const { return connection_problem_; }
  // Connection errors of each ConnectionCause (by its int value) since Create, repeats included.
  const std::array<uint64_t, kConnectionCauseCount>& connection_errors() const { return connection_errors_; }

  // Drops every record queued or in flight; their reports come from the next Poll or Flush as
  // failures with error _PURGE_QUEUE or _PURGE_INFLIGHT. Used before replacing a producer after
  // a fatal error.
  void Purge();

 private:
  KafkaProducer();

  void DrainWakeupFd() const;
  void RaiseWakeup() const;
  // Waits up to `limit` (at most a short slice) for wakeup_fd() to become readable.
  void WaitForWakeup(std::chrono::milliseconds limit) const;
  // For the destructor: drops reports until the running transaction call has ended.
  void WaitForTransactionOpWhileDiscarding();
  // Serves the events (reports, errors, statistics) queued when it starts, in queue order.
  void ServeEvents(DeliveryHandler& handler);
  void ServeDeliveryReports(rd_kafka_op_s* event, DeliveryHandler& handler);
  void ServeError(rd_kafka_op_s* event);
  void ServeStatistics(rd_kafka_op_s* event);
  // Serves the events queued before the worker posted its result, then the result.
  void ServeEventsAndTransactionResult(DeliveryHandler& handler);
  void StartTransactionOp(TransactionOp op, std::chrono::milliseconds timeout);
  void DeliverFatalErrorOnce(DeliveryHandler& handler);
  rd_kafka_topic_s* TopicHandle(std::string_view topic, std::string* error);
  void DestroyHandles();

  rd_kafka_s* rk_ = nullptr;
  rd_kafka_queue_s* main_queue_ = nullptr;
  int wakeup_fd_ = -1;
  bool transactional_ = false;
  std::map<std::string, rd_kafka_topic_s*, std::less<>> topics_;  // created on first use
  std::unique_ptr<TransactionWorker> worker_;  // created by the first Start*Transaction
  std::optional<TransactionOp> running_op_;    // from Start* until its result is served
  std::optional<std::string> fatal_reason_;
  bool fatal_delivered_ = false;
  std::optional<ProducerStatsSummary> stats_;
  std::chrono::milliseconds statistics_interval_{0};

  // librdkafka's certificate check runs on its broker threads; what it found last is read by
  // ServeError on the loop thread.
  static int CheckCertificate(rd_kafka_s* rk, const char* broker_name, int32_t broker_id, int* x509_error,
                              int depth, const char* der, std::size_t size, char* errstr, std::size_t errstr_size,
                              void* opaque);
  void NoteConnectionProblem(ConnectionProblem problem);
  void ClearConnectionProblem();
  PropertyList connection_properties_;  // the security-related properties, no secret among them
  std::optional<ConnectionProblem> connection_problem_;
  std::array<uint64_t, kConnectionCauseCount> connection_errors_{};
  std::mutex certificate_check_mutex_;
  std::string certificate_check_;  // guarded by certificate_check_mutex_
};

}  // namespace sse2kafka::sink
