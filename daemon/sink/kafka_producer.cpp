#include "sink/kafka_producer.h"

#include <librdkafka/rdkafka.h>
#include <nlohmann/json.hpp>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

namespace sse2kafka::sink {
namespace {

static_assert(sizeof(void*) >= sizeof(uint64_t), "tokens travel in librdkafka's per-message pointer");

// What librdkafka writes to the wakeup eventfd: an eventfd takes 8-byte counter increments.
constexpr uint64_t kWakeupIncrement = 1;

// What sse2kafka takes from librdkafka as events on the main queue rather than as callbacks.
// As events, delivery reports are served only where sse2kafka polls the queue (the loop
// thread). rd_kafka_flush, which commit_transaction and abort_transaction call on the
// transaction worker, then serves nothing: it waits until the loop has served the report of
// every record (librdkafka counts a record until its report event is destroyed).
constexpr int kServedEvents = RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_STATS;

void* TokenToOpaque(uint64_t token) { return reinterpret_cast<void*>(static_cast<uintptr_t>(token)); }
uint64_t OpaqueToToken(void* opaque) { return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(opaque)); }

// A data pointer for a view that librdkafka treats as non-null even when the view is empty:
// a null pointer would make the value (or key) null instead of empty.
void* NonNullData(std::string_view bytes) {
  static constexpr char kEmpty[] = "";
  return const_cast<char*>(bytes.data() != nullptr ? bytes.data() : kEmpty);
}

int TimeoutMs(std::chrono::milliseconds timeout) {
  return static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(timeout.count(), 0, INT_MAX));
}

// A transaction call's timeout; -1 (any negative) lets librdkafka choose.
int TransactionTimeoutMs(std::chrono::milliseconds timeout) {
  return timeout.count() < 0 ? -1 : TimeoutMs(timeout);
}

bool IsFencingError(rd_kafka_resp_err_t error) {
  return error == RD_KAFKA_RESP_ERR_PRODUCER_FENCED || error == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH ||
         error == RD_KAFKA_RESP_ERR__FENCED;
}

// Classifies a transaction call's outcome; runs on the worker thread. `error` may be null.
TransactionResult TransactionResultOf(rd_kafka_t* rk, TransactionOp op, const rd_kafka_error_t* error) {
  TransactionResult result;
  result.op = op;
  if (error == nullptr) {
    result.ok = true;
    return result;
  }
  const rd_kafka_resp_err_t code = rd_kafka_error_code(error);
  result.retriable = rd_kafka_error_is_retriable(error) != 0;
  result.abortable = rd_kafka_error_txn_requires_abort(error) != 0;
  result.fatal = rd_kafka_error_is_fatal(error) != 0;
  result.error_code = code;
  result.error = std::string(rd_kafka_error_name(error)) + ": " + rd_kafka_error_string(error);
  bool fenced = IsFencingError(code);
  if (result.fatal) {
    // The error may name only the failed call (or _FATAL); the producer's fatal error is the
    // cause, and tells a fenced producer from, say, a refused authorisation.
    std::array<char, 512> cause{};
    const rd_kafka_resp_err_t underlying = rd_kafka_fatal_error(rk, cause.data(), cause.size());
    if (underlying != RD_KAFKA_RESP_ERR_NO_ERROR) {
      result.error_code = underlying;
      if (underlying != code) result.error += std::string(" (") + rd_kafka_err2name(underlying) + ": " + cause.data() + ")";
      fenced = fenced || IsFencingError(underlying);
    }
  }
  result.fenced = result.fatal && fenced;
  return result;
}

// Whether a failed delivery's cause may clear by itself (brokers coming back, leaders moving)
// rather than needing a change of config, ACLs or topics. librdkafka has no public
// classification for delivery errors, so this follows Kafka's retriable exceptions.
bool IsRetriableDeliveryError(rd_kafka_resp_err_t error) {
  switch (error) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
    case RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
      return true;
    default:
      return false;
  }
}

// The value the user gave for `name` last, if any.
std::optional<std::string_view> UserValue(const PropertyList& properties, std::string_view name) {
  std::optional<std::string_view> value;
  for (const auto& [property, property_value] : properties) {
    if (property == name) value = property_value;
  }
  return value;
}

std::optional<std::size_t> ParseSize(std::string_view text) {
  std::size_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// A user's own queue limits win, but below the bridge's in-flight limits QUEUE_FULL becomes the
// flow control and records are refused instead of the bridge pausing its upstreams.
void WarnAboutSmallUserQueueLimits(const ProducerSettings& settings) {
  if (auto text = UserValue(settings.properties, "queue.buffering.max.messages")) {
    const auto messages = ParseSize(*text);
    if (messages && *messages != 0 && *messages < settings.max_in_flight_events) {
      spdlog::warn(
          "kafka property queue.buffering.max.messages={} is below kafka.max_in_flight_events={}: "
          "records will be refused with QUEUE_FULL before backpressure starts",
          *messages, settings.max_in_flight_events);
    }
  }
  if (auto text = UserValue(settings.properties, "queue.buffering.max.kbytes")) {
    const auto kbytes = ParseSize(*text);
    if (kbytes && *kbytes < settings.max_in_flight_bytes / 1024) {
      spdlog::warn(
          "kafka property queue.buffering.max.kbytes={} is below kafka.max_in_flight_bytes={}: "
          "records will be refused with QUEUE_FULL before backpressure starts",
          *kbytes, settings.max_in_flight_bytes);
    }
  }
}

// statistics.interval.ms as the producer will use it: the user's value, else the default added
// to `properties`.
std::chrono::milliseconds ApplyStatisticsInterval(PropertyList& properties) {
  if (auto text = UserValue(properties, "statistics.interval.ms")) {
    // librdkafka refuses a malformed value when the configuration is built.
    return std::chrono::milliseconds(ParseSize(*text).value_or(0));
  }
  properties.emplace_back("statistics.interval.ms", std::to_string(kDefaultStatisticsInterval.count()));
  return kDefaultStatisticsInterval;
}

int64_t IntegerField(const nlohmann::json& object, const char* name) {
  const auto found = object.find(name);
  return found != object.end() && found->is_number() ? found->get<int64_t>() : 0;
}

// Keeps, while parsing, only the fields SummarizeProducerStats reads: the per-topic and
// per-partition parts dwarf the rest with many partitions and are not needed.
bool KeepStatisticsField(int depth, nlohmann::json::parse_event_t event, const nlohmann::json& parsed) {
  if (event != nlohmann::json::parse_event_t::key) return true;
  const auto& name = parsed.get_ref<const std::string&>();
  if (depth == 1) {
    return name == "brokers" || name == "msg_cnt" || name == "msg_size" || name == "txmsgs" ||
           name == "txmsg_bytes" || name == "tx_bytes";
  }
  if (depth == 3) return name == "source" || name == "state" || name == "rtt";  // inside one broker
  return true;
}

}  // namespace

const char* TransactionOpName(TransactionOp op) {
  switch (op) {
    case TransactionOp::kInit:
      return "init";
    case TransactionOp::kCommit:
      return "commit";
    case TransactionOp::kAbort:
      return "abort";
  }
  return "unknown";
}

// Runs one producer's blocking transaction calls, one at a time, on its own thread, and keeps
// the newest result until the loop takes it.
class TransactionWorker {
 public:
  // `result_ready` runs on the worker thread after each result is stored.
  TransactionWorker(rd_kafka_t* rk, std::function<void()> result_ready)
      : rk_(rk), result_ready_(std::move(result_ready)), thread_([this] { Run(); }) {}

  // Lets a requested or running call finish (within its timeout), then ends the thread.
  ~TransactionWorker() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }

  TransactionWorker(const TransactionWorker&) = delete;
  TransactionWorker& operator=(const TransactionWorker&) = delete;

  // Requests a call; the previous one's result must have been taken.
  void Start(TransactionOp op, std::chrono::milliseconds timeout) {
    {
      std::lock_guard lock(mutex_);
      request_ = Request{op, TransactionTimeoutMs(timeout)};
    }
    wake_.notify_one();
  }

  // The finished call's result, once.
  std::optional<TransactionResult> TakeResult() {
    std::lock_guard lock(mutex_);
    return std::exchange(result_, std::nullopt);
  }

 private:
  struct Request {
    TransactionOp op;
    int timeout_ms;
  };

  void Run() {
    std::unique_lock lock(mutex_);
    while (true) {
      wake_.wait(lock, [this] { return request_.has_value() || stopping_; });
      if (!request_) return;
      const Request request = *std::exchange(request_, std::nullopt);
      lock.unlock();
      rd_kafka_error_t* error = Call(request);
      TransactionResult result = TransactionResultOf(rk_, request.op, error);
      if (error != nullptr) rd_kafka_error_destroy(error);
      lock.lock();
      result_ = std::move(result);
      lock.unlock();
      result_ready_();
      lock.lock();
    }
  }

  rd_kafka_error_t* Call(const Request& request) {
    switch (request.op) {
      case TransactionOp::kInit:
        return rd_kafka_init_transactions(rk_, request.timeout_ms);
      case TransactionOp::kCommit:
        return rd_kafka_commit_transaction(rk_, request.timeout_ms);
      case TransactionOp::kAbort:
        return rd_kafka_abort_transaction(rk_, request.timeout_ms);
    }
    return rd_kafka_error_new(RD_KAFKA_RESP_ERR__INVALID_ARG, "unknown transaction operation");
  }

  rd_kafka_t* const rk_;
  const std::function<void()> result_ready_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::optional<Request> request_;
  std::optional<TransactionResult> result_;
  bool stopping_ = false;
  std::thread thread_;  // last: it starts running once everything above exists
};

std::optional<ProducerStatsSummary> SummarizeProducerStats(std::string_view json) {
  const nlohmann::json stats = nlohmann::json::parse(json.begin(), json.end(), KeepStatisticsField,
                                                     /*allow_exceptions=*/false);
  if (!stats.is_object()) return std::nullopt;
  ProducerStatsSummary summary;
  summary.msg_cnt = IntegerField(stats, "msg_cnt");
  summary.msg_size = IntegerField(stats, "msg_size");
  summary.txmsgs = IntegerField(stats, "txmsgs");
  summary.txmsg_bytes = IntegerField(stats, "txmsg_bytes");
  summary.tx_bytes = IntegerField(stats, "tx_bytes");
  const auto brokers = stats.find("brokers");
  if (brokers == stats.end() || !brokers->is_object()) return summary;
  int64_t rtt_weighted_sum = 0;
  int64_t rtt_samples = 0;
  for (const nlohmann::json& broker : *brokers) {
    if (!broker.is_object()) continue;
    // The internal broker runs librdkafka's timers and never connects anywhere.
    if (broker.value("source", std::string()) == "internal") continue;
    ++summary.brokers_total;
    if (broker.value("state", std::string()) == "UP") ++summary.brokers_up;
    const auto rtt = broker.find("rtt");
    if (rtt == broker.end() || !rtt->is_object()) continue;
    const int64_t samples = IntegerField(*rtt, "cnt");
    if (samples <= 0) continue;
    rtt_weighted_sum += IntegerField(*rtt, "avg") * samples;
    rtt_samples += samples;
  }
  if (rtt_samples > 0) summary.avg_rtt = std::chrono::microseconds(rtt_weighted_sum / rtt_samples);
  return summary;
}

KafkaProducer::KafkaProducer() = default;

std::unique_ptr<KafkaProducer> KafkaProducer::Create(const ProducerSettings& settings, std::string* error) {
  PropertyList properties = EffectiveProducerProperties(settings);
  const std::chrono::milliseconds statistics_interval = ApplyStatisticsInterval(properties);
  rd_kafka_conf_t* conf = NewLibrdkafkaConf(properties, error);
  if (conf == nullptr) return nullptr;

  std::unique_ptr<KafkaProducer> producer(new KafkaProducer());
  producer->statistics_interval_ = statistics_interval;
  producer->transactional_ = settings.transactional_id.has_value();
  rd_kafka_conf_set_events(conf, kServedEvents);
  ForwardLogToSpdlog(conf);
  for (const auto& [name, value] : properties) {
    if (name == "security.protocol" || name == "sasl.mechanisms" || name == "sasl.mechanism" ||
        name == "sasl.username" || name == "ssl.ca.location" || name == "ssl.certificate.location" ||
        name == "ssl.certificate.pem") {
      producer->connection_properties_.emplace_back(name, name == "ssl.certificate.pem" ? "(inline)" : value);
    }
  }
  rd_kafka_conf_set_opaque(conf, producer.get());
  // Only to learn what the check found (OpenSSL's verdict stands); fails without TLS support.
  rd_kafka_conf_set_ssl_cert_verify_cb(conf, &KafkaProducer::CheckCertificate);

  std::array<char, 512> errstr{};
  producer->rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr.data(), errstr.size());
  if (producer->rk_ == nullptr) {
    rd_kafka_conf_destroy(conf);  // rd_kafka_new owns the configuration only on success
    *error = "librdkafka refused the producer configuration: " + RedactSecretValues(errstr.data(), properties);
    return nullptr;
  }

  producer->wakeup_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (producer->wakeup_fd_ < 0) {
    *error = std::string("cannot create the kafka producer's wakeup eventfd: ") + std::strerror(errno);
    return nullptr;
  }
  producer->main_queue_ = rd_kafka_queue_get_main(producer->rk_);
  // librdkafka writes the fd only when an event lands in an empty (or served) queue; whatever
  // rd_kafka_new already queued would otherwise wait for the next event.
  rd_kafka_queue_io_event_enable(producer->main_queue_, producer->wakeup_fd_, &kWakeupIncrement,
                                 sizeof kWakeupIncrement);
  if (rd_kafka_queue_length(producer->main_queue_) > 0) producer->RaiseWakeup();

  WarnAboutSmallUserQueueLimits(settings);
  spdlog::info("kafka producer {} created: {}", rd_kafka_name(producer->rk_), DescribeProperties(properties));
  return producer;
}

KafkaProducer::~KafkaProducer() {
  if (running_op_) WaitForTransactionOpWhileDiscarding();
  worker_.reset();  // joins the worker thread
  if (rk_ != nullptr) {
    const int left = rd_kafka_outq_len(rk_);
    if (left > 0) {
      spdlog::warn("kafka producer {} destroyed with {} records or reports outstanding; they are dropped",
                   rd_kafka_name(rk_), left);
      // Without this, destroying would wait for requests to brokers that may never answer.
      rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
    }
  }
  DestroyHandles();
}

void KafkaProducer::WaitForTransactionOpWhileDiscarding() {
  spdlog::info("kafka producer {}: waiting for the running transaction {} to end before destroying it",
               rd_kafka_name(rk_), TransactionOpName(*running_op_));
  // Commit and abort wait for the reports of the transaction's records to be served; nobody
  // will serve them after this, so they are dropped here until the call ends (within its
  // timeout). Purging first fails the records that still wait for a broker.
  rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
  class Discard : public DeliveryHandler {
   public:
    void OnDelivery(const DeliveryReport&) override {}
    void OnFatalError(const std::string&) override {}
  } discard;
  while (!worker_->TakeResult()) {
    DrainWakeupFd();
    ServeEvents(discard);
    WaitForWakeup(std::chrono::milliseconds(100));
  }
  running_op_.reset();
}

void KafkaProducer::DestroyHandles() {
  if (main_queue_ != nullptr) {
    rd_kafka_queue_io_event_enable(main_queue_, -1, nullptr, 0);
    rd_kafka_queue_destroy(main_queue_);
    main_queue_ = nullptr;
  }
  for (auto& [name, topic] : topics_) rd_kafka_topic_destroy(topic);
  topics_.clear();
  if (rk_ != nullptr) {
    rd_kafka_destroy(rk_);
    rk_ = nullptr;
  }
  if (wakeup_fd_ >= 0) {
    close(wakeup_fd_);
    wakeup_fd_ = -1;
  }
}

rd_kafka_topic_t* KafkaProducer::TopicHandle(std::string_view topic, std::string* error) {
  if (auto found = topics_.find(topic); found != topics_.end()) return found->second;
  std::string name(topic);
  rd_kafka_topic_t* handle = rd_kafka_topic_new(rk_, name.c_str(), nullptr);
  if (handle == nullptr) {
    *error = "cannot use topic \"" + name + "\": " + rd_kafka_err2str(rd_kafka_last_error());
    return nullptr;
  }
  topics_.emplace(std::move(name), handle);
  return handle;
}

ProduceResult KafkaProducer::Produce(const OutgoingRecord& record, std::string* error) {
  if (running_op_ == TransactionOp::kCommit || running_op_ == TransactionOp::kAbort) {
    // librdkafka refuses it too (_STATE), but only once the worker's call has reached its
    // thread; refusing here leaves no window in which a record could join the ending
    // transaction after the caller asked to end it.
    *error = std::string("a transaction ") + TransactionOpName(*running_op_) +
             " is running: records wait for the next transaction";
    return ProduceResult::kQueueFull;
  }
  rd_kafka_topic_t* topic = TopicHandle(record.topic, error);
  if (topic == nullptr) return ProduceResult::kRejected;

  std::array<rd_kafka_vu_t, 8> fields{};
  std::size_t count = 0;
  auto add = [&](rd_kafka_vtype_t type) -> rd_kafka_vu_t& {
    rd_kafka_vu_t& field = fields[count++];
    field.vtype = type;
    return field;
  };
  add(RD_KAFKA_VTYPE_RKT).u.rkt = topic;
  add(RD_KAFKA_VTYPE_PARTITION).u.i32 = record.partition;
  add(RD_KAFKA_VTYPE_MSGFLAGS).u.i = RD_KAFKA_MSG_F_COPY;  // the record's views die after this call
  rd_kafka_vu_t& value = add(RD_KAFKA_VTYPE_VALUE);
  value.u.mem.ptr = NonNullData(record.value);
  value.u.mem.size = record.value.size();
  if (record.key) {
    rd_kafka_vu_t& key = add(RD_KAFKA_VTYPE_KEY);
    key.u.mem.ptr = NonNullData(*record.key);
    key.u.mem.size = record.key->size();
  }
  add(RD_KAFKA_VTYPE_TIMESTAMP).u.i64 = record.timestamp_ms;
  add(RD_KAFKA_VTYPE_OPAQUE).u.ptr = TokenToOpaque(record.token);
  rd_kafka_headers_t* headers = nullptr;
  if (!record.headers.empty()) {
    headers = rd_kafka_headers_new(record.headers.size());
    for (const RecordHeaderView& header : record.headers) {
      rd_kafka_header_add(headers, header.name.data(), static_cast<ssize_t>(header.name.size()),
                          NonNullData(header.value), static_cast<ssize_t>(header.value.size()));
    }
    add(RD_KAFKA_VTYPE_HEADERS).u.headers = headers;
  }

  rd_kafka_error_t* failure = rd_kafka_produceva(rk_, fields.data(), count);
  if (failure == nullptr) return ProduceResult::kQueued;  // librdkafka now owns the headers

  if (headers != nullptr) rd_kafka_headers_destroy(headers);
  const rd_kafka_resp_err_t code = rd_kafka_error_code(failure);
  *error = std::string(rd_kafka_error_name(failure)) + ": " + rd_kafka_error_string(failure);
  rd_kafka_error_destroy(failure);
  if (code == RD_KAFKA_RESP_ERR__QUEUE_FULL) return ProduceResult::kQueueFull;
  if (code == RD_KAFKA_RESP_ERR__STATE && transactional_) {
    // No open transaction (none begun, or the open one failed): the record belongs in the next.
    *error += " (no open transaction: produce after BeginTransaction)";
    return ProduceResult::kQueueFull;
  }
  return code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? ProduceResult::kTooLarge : ProduceResult::kRejected;
}

void KafkaProducer::StartInitTransactions(std::chrono::milliseconds timeout) {
  StartTransactionOp(TransactionOp::kInit, timeout);
}

void KafkaProducer::StartCommitTransaction(std::chrono::milliseconds timeout) {
  StartTransactionOp(TransactionOp::kCommit, timeout);
}

void KafkaProducer::StartAbortTransaction(std::chrono::milliseconds timeout) {
  StartTransactionOp(TransactionOp::kAbort, timeout);
}

void KafkaProducer::StartTransactionOp(TransactionOp op, std::chrono::milliseconds timeout) {
  assert(!running_op_ && "a transaction call is already running");
  if (running_op_) {
    spdlog::error("kafka producer {}: transaction {} not started: {} is still running", rd_kafka_name(rk_),
                  TransactionOpName(op), TransactionOpName(*running_op_));
    return;
  }
  if (!worker_) worker_ = std::make_unique<TransactionWorker>(rk_, [this] { RaiseWakeup(); });
  running_op_ = op;
  worker_->Start(op, timeout);
}

bool KafkaProducer::BeginTransaction(std::string* error) {
  if (running_op_) {
    *error = std::string("a transaction ") + TransactionOpName(*running_op_) + " is running";
    return false;
  }
  rd_kafka_error_t* failure = rd_kafka_begin_transaction(rk_);
  if (failure == nullptr) return true;
  *error = std::string(rd_kafka_error_name(failure)) + ": " + rd_kafka_error_string(failure);
  rd_kafka_error_destroy(failure);
  return false;
}

void KafkaProducer::DrainWakeupFd() const {
  uint64_t counter = 0;
  // One read resets an eventfd's counter; EAGAIN just means nothing was pending.
  [[maybe_unused]] const ssize_t drained = read(wakeup_fd_, &counter, sizeof counter);
}

void KafkaProducer::RaiseWakeup() const {
  [[maybe_unused]] const ssize_t written = write(wakeup_fd_, &kWakeupIncrement, sizeof kWakeupIncrement);
}

void KafkaProducer::ServeEvents(DeliveryHandler& handler) {
  // Bounded by what is queued now, so that Poll cannot spin under a flood of reports.
  const std::size_t queued = rd_kafka_queue_length(main_queue_);
  for (std::size_t served = 0; served < queued; ++served) {
    rd_kafka_event_t* event = rd_kafka_queue_poll(main_queue_, 0);
    if (event == nullptr) break;
    switch (rd_kafka_event_type(event)) {
      case RD_KAFKA_EVENT_DR:
        ServeDeliveryReports(event, handler);
        break;
      case RD_KAFKA_EVENT_ERROR:
        ServeError(event);
        break;
      case RD_KAFKA_EVENT_STATS:
        ServeStatistics(event);
        break;
      default:
        spdlog::debug("kafka producer {}: ignored event {}", rd_kafka_name(rk_), rd_kafka_event_name(event));
        break;
    }
    rd_kafka_event_destroy(event);
  }
  // librdkafka wrote the fd for the first of what is left, which this call may have drained.
  if (rd_kafka_queue_length(main_queue_) > 0) RaiseWakeup();
}

void KafkaProducer::ServeEventsAndTransactionResult(DeliveryHandler& handler) {
  // Taken before serving: the worker posts a result only after librdkafka queued the reports
  // of the transaction it ended, so they are all served below, ahead of the result.
  std::optional<TransactionResult> result = worker_ ? worker_->TakeResult() : std::nullopt;
  ServeEvents(handler);
  if (!result) return;
  running_op_.reset();
  if (!result->ok) {
    const char* kind = result->fenced      ? "fenced"
                       : result->fatal     ? "fatal"
                       : result->abortable ? "abortable"
                       : result->retriable ? "retriable"
                                           : "unclassified";
    spdlog::warn("kafka producer {}: transaction {} failed ({}): {}", rd_kafka_name(rk_), TransactionOpName(result->op),
                 kind, result->error);
  }
  handler.OnTransactionResult(*result);
}

void KafkaProducer::Poll(DeliveryHandler& handler) {
  // Drain before serving: an event that lands after the drain either is served below or finds
  // the queue served and writes the fd again, so no wakeup is lost.
  DrainWakeupFd();
  ServeEventsAndTransactionResult(handler);
  DeliverFatalErrorOnce(handler);
}

bool KafkaProducer::Flush(std::chrono::milliseconds timeout, DeliveryHandler& handler) {
  // rd_kafka_flush cannot be used here: with reports as events it waits for them to be served,
  // which only this thread does. Callbacks may produce more, which the next round waits for.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    DrainWakeupFd();
    ServeEventsAndTransactionResult(handler);
    if (rd_kafka_outq_len(rk_) == 0) break;
    const auto remaining =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (remaining.count() <= 0) break;
    WaitForWakeup(remaining);
  }
  DeliverFatalErrorOnce(handler);
  return rd_kafka_outq_len(rk_) == 0;
}

void KafkaProducer::WaitForWakeup(std::chrono::milliseconds limit) const {
  // Sliced, so that a wakeup lost to a race with librdkafka costs a slice, not the whole wait.
  constexpr std::chrono::milliseconds kSlice{100};
  pollfd wakeup{wakeup_fd_, POLLIN, 0};
  [[maybe_unused]] const int ready = poll(&wakeup, 1, TimeoutMs(std::min(limit, kSlice)));
}

std::size_t KafkaProducer::outstanding() const { return static_cast<std::size_t>(rd_kafka_outq_len(rk_)); }

void KafkaProducer::WarmUp(const std::vector<std::string>& topics, std::chrono::milliseconds timeout) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout;
  std::size_t ready = 0;
  for (const std::string& name : topics) {
    const auto remaining =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (remaining.count() <= 0) {
      spdlog::warn("kafka metadata warm-up ran out of time before topic {}", name);
      break;
    }
    std::string error;
    rd_kafka_topic_t* topic = TopicHandle(name, &error);
    if (topic == nullptr) {
      spdlog::warn("kafka metadata warm-up: {}", error);
      continue;
    }
    const rd_kafka_metadata_t* metadata = nullptr;
    const rd_kafka_resp_err_t result = rd_kafka_metadata(rk_, 0, topic, &metadata, TimeoutMs(remaining));
    if (result != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::warn("kafka metadata warm-up: no metadata for topic {}: {}", name, rd_kafka_err2str(result));
      continue;
    }
    if (metadata->topic_cnt == 1 && metadata->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::warn("kafka metadata warm-up: topic {}: {}", name, rd_kafka_err2str(metadata->topics[0].err));
    } else {
      ++ready;
    }
    rd_kafka_metadata_destroy(metadata);
  }
  spdlog::info("kafka metadata ready for {} of {} topics in {} ms", ready, topics.size(),
               std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count());
}

void KafkaProducer::Purge() {
  const int outstanding_before = rd_kafka_outq_len(rk_);
  const rd_kafka_resp_err_t result = rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  if (result != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::error("kafka producer {}: purge failed: {}", rd_kafka_name(rk_), rd_kafka_err2str(result));
    return;
  }
  spdlog::info("kafka producer {}: purged {} outstanding records", rd_kafka_name(rk_), outstanding_before);
}

void KafkaProducer::ServeDeliveryReports(rd_kafka_event_t* event, DeliveryHandler& handler) {
  while (const rd_kafka_message_t* message = rd_kafka_event_message_next(event)) {
    DeliveryReport report;
    report.token = OpaqueToToken(message->_private);
    report.ok = message->err == RD_KAFKA_RESP_ERR_NO_ERROR;
    report.error_code = message->err;
    if (!report.ok) {
      report.error_name = rd_kafka_err2name(message->err);
      report.error_text = rd_kafka_err2str(message->err);
      report.retriable = IsRetriableDeliveryError(message->err);
    }
    report.partition = message->partition;
    report.offset = message->offset;
    report.topic = message->rkt != nullptr ? rd_kafka_topic_name(message->rkt) : "";
    report.too_large = message->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
                       message->err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
    report.size = message->len + message->key_len;
    if (report.ok) ClearConnectionProblem();
    handler.OnDelivery(report);
  }
}

int KafkaProducer::CheckCertificate(rd_kafka_t* /*rk*/, const char* /*broker_name*/, int32_t /*broker_id*/,
                                    int* x509_error, int depth, const char* /*der*/, std::size_t /*size*/,
                                    char* errstr, std::size_t errstr_size, void* opaque) {
  if (*x509_error == X509_V_OK) return 1;
  const std::string found = std::string(X509_verify_cert_error_string(*x509_error)) + " (certificate " +
                            std::to_string(depth) + " of the chain, 0 being the broker's own)";
  std::snprintf(errstr, errstr_size, "%s", found.c_str());
  auto* producer = static_cast<KafkaProducer*>(opaque);
  const std::lock_guard lock(producer->certificate_check_mutex_);
  producer->certificate_check_ = found;
  return 0;
}

void KafkaProducer::NoteConnectionProblem(ConnectionProblem problem) {
  ++connection_errors_[static_cast<int>(problem.cause)];
  const bool new_cause = !connection_problem_ || connection_problem_->cause != problem.cause;
  if (new_cause) spdlog::error("kafka producer {}: {}", rd_kafka_name(rk_), problem.message);
  else spdlog::debug("kafka producer {}: again: {}", rd_kafka_name(rk_), problem.message);
  connection_problem_ = std::move(problem);
}

void KafkaProducer::ClearConnectionProblem() {
  if (!connection_problem_) return;
  spdlog::info("kafka producer {}: the cluster is usable again (the {} problem is gone)", rd_kafka_name(rk_),
               ConnectionCauseName(connection_problem_->cause));
  connection_problem_.reset();
  const std::lock_guard lock(certificate_check_mutex_);
  certificate_check_.clear();
}

void KafkaProducer::ServeError(rd_kafka_event_t* event) {
  if (!rd_kafka_event_error_is_fatal(event)) {
    std::string certificate_check;
    {
      const std::lock_guard lock(certificate_check_mutex_);
      certificate_check.swap(certificate_check_);
    }
    if (auto problem = ClassifyConnectionError(rd_kafka_event_error(event), rd_kafka_event_error_string(event),
                                               connection_properties_, certificate_check)) {
      NoteConnectionProblem(std::move(*problem));
      return;
    }
    // Everything else librdkafka recovers from by itself (reconnects, metadata refreshes).
    spdlog::warn("kafka producer {}: {}: {}", rd_kafka_name(rk_), rd_kafka_err2name(rd_kafka_event_error(event)),
                 rd_kafka_event_error_string(event));
    return;
  }
  if (fatal_reason_) return;
  std::array<char, 512> cause{};
  const rd_kafka_resp_err_t code = rd_kafka_fatal_error(rk_, cause.data(), cause.size());
  fatal_reason_ = std::string(rd_kafka_err2name(code)) + ": " + cause.data();
  spdlog::error("kafka producer {} failed for good: {}", rd_kafka_name(rk_), *fatal_reason_);
}

void KafkaProducer::ServeStatistics(rd_kafka_event_t* event) {
  const char* json = rd_kafka_event_stats(event);
  if (json == nullptr) return;
  if (auto summary = SummarizeProducerStats(json)) {
    summary->received_at = std::chrono::steady_clock::now();
    stats_ = *summary;
    if (summary->brokers_up > 0) ClearConnectionProblem();
  } else {
    spdlog::warn("kafka producer {}: statistics report is not a JSON object; ignored", rd_kafka_name(rk_));
  }
}

void KafkaProducer::DeliverFatalErrorOnce(DeliveryHandler& handler) {
  if (fatal_delivered_) return;
  if (!fatal_reason_) {
    // The fatal state is set before its error event is queued; reporting it as soon as it is
    // visible lets the owner stop producing without waiting for the event.
    std::array<char, 512> cause{};
    const rd_kafka_resp_err_t code = rd_kafka_fatal_error(rk_, cause.data(), cause.size());
    if (code == RD_KAFKA_RESP_ERR_NO_ERROR) return;
    fatal_reason_ = std::string(rd_kafka_err2name(code)) + ": " + cause.data();
    spdlog::error("kafka producer {} failed for good: {}", rd_kafka_name(rk_), *fatal_reason_);
  }
  fatal_delivered_ = true;
  handler.OnFatalError(*fatal_reason_);
}

}  // namespace sse2kafka::sink
