#include "sink/kafka_producer.h"

#include <librdkafka/rdkafka.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>

namespace sse2kafka::sink {
namespace {

static_assert(sizeof(void*) >= sizeof(uint64_t), "tokens travel in librdkafka's per-message pointer");

// What librdkafka writes to the wakeup eventfd: an eventfd takes 8-byte counter increments.
constexpr uint64_t kWakeupIncrement = 1;

// rd_kafka_poll serves everything queued when it starts; a second round only matters if a
// callback made librdkafka yield. Bounded so that Poll cannot spin under a flood of reports:
// whatever arrives after a round started has written the wakeup fd again.
constexpr int kMaxServeRounds = 4;

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

spdlog::level::level_enum SpdlogLevel(int syslog_level) {
  if (syslog_level <= 2) return spdlog::level::critical;
  if (syslog_level == 3) return spdlog::level::err;
  if (syslog_level == 4) return spdlog::level::warn;
  if (syslog_level <= 6) return spdlog::level::info;
  return spdlog::level::debug;
}

void ForwardLog(const rd_kafka_t* rk, int level, const char* facility, const char* message) {
  spdlog::log(SpdlogLevel(level), "librdkafka {} [{}]: {}", rd_kafka_name(rk), facility, message);
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
  rd_kafka_conf_set_opaque(conf, producer.get());
  rd_kafka_conf_set_dr_msg_cb(conf, &KafkaProducer::OnDeliveryReport);
  rd_kafka_conf_set_error_cb(conf, &KafkaProducer::OnError);
  rd_kafka_conf_set_log_cb(conf, &ForwardLog);
  rd_kafka_conf_set_stats_cb(conf, &KafkaProducer::OnStatistics);

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
  // librdkafka writes the fd only when a report lands in an empty (or served) queue; whatever
  // rd_kafka_new already queued would otherwise wait for the next report.
  rd_kafka_queue_io_event_enable(producer->main_queue_, producer->wakeup_fd_, &kWakeupIncrement,
                                 sizeof kWakeupIncrement);
  if (rd_kafka_queue_length(producer->main_queue_) > 0) {
    [[maybe_unused]] const ssize_t written = write(producer->wakeup_fd_, &kWakeupIncrement, sizeof kWakeupIncrement);
  }

  WarnAboutSmallUserQueueLimits(settings);
  spdlog::info("kafka producer {} created: {}", rd_kafka_name(producer->rk_), DescribeProperties(properties));
  return producer;
}

KafkaProducer::~KafkaProducer() {
  handler_ = nullptr;
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
  rd_kafka_topic_t* topic = TopicHandle(record.topic, error);
  if (topic == nullptr) return ProduceResult::kRejected;

  std::array<rd_kafka_vu_t, 7> fields{};
  std::size_t count = 0;
  auto add = [&](rd_kafka_vtype_t type) -> rd_kafka_vu_t& {
    rd_kafka_vu_t& field = fields[count++];
    field.vtype = type;
    return field;
  };
  add(RD_KAFKA_VTYPE_RKT).u.rkt = topic;
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
  return code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? ProduceResult::kTooLarge : ProduceResult::kRejected;
}

void KafkaProducer::DrainWakeupFd() const {
  uint64_t counter = 0;
  // One read resets an eventfd's counter; EAGAIN just means nothing was pending.
  [[maybe_unused]] const ssize_t drained = read(wakeup_fd_, &counter, sizeof counter);
}

void KafkaProducer::Poll(DeliveryHandler& handler) {
  handler_ = &handler;
  // Drain before serving: a report that lands after the drain either is served below or finds
  // the queue served and writes the fd again, so no wakeup is lost.
  DrainWakeupFd();
  for (int round = 0; round < kMaxServeRounds; ++round) {
    rd_kafka_poll(rk_, 0);
    if (rd_kafka_queue_length(main_queue_) == 0) break;
  }
  handler_ = nullptr;
  DeliverFatalErrorOnce(handler);
}

bool KafkaProducer::Flush(std::chrono::milliseconds timeout, DeliveryHandler& handler) {
  handler_ = &handler;
  DrainWakeupFd();
  // rd_kafka_flush serves reports through rd_kafka_poll while it waits.
  rd_kafka_flush(rk_, TimeoutMs(timeout));
  rd_kafka_poll(rk_, 0);
  handler_ = nullptr;
  DeliverFatalErrorOnce(handler);
  return rd_kafka_outq_len(rk_) == 0;
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

void KafkaProducer::OnDeliveryReport(rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
  auto* self = static_cast<KafkaProducer*>(opaque);
  if (self->handler_ == nullptr) return;  // served while being destroyed: nobody is listening
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
  self->handler_->OnDelivery(report);
}

void KafkaProducer::OnError(rd_kafka_t* rk, int error, const char* reason, void* opaque) {
  auto* self = static_cast<KafkaProducer*>(opaque);
  if (error != RD_KAFKA_RESP_ERR__FATAL) {
    // Everything else librdkafka recovers from by itself (reconnects, metadata refreshes).
    spdlog::warn("kafka producer {}: {}: {}", rd_kafka_name(rk), rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(error)),
                 reason);
    return;
  }
  if (self->fatal_reason_) return;
  std::array<char, 512> cause{};
  const rd_kafka_resp_err_t code = rd_kafka_fatal_error(rk, cause.data(), cause.size());
  self->fatal_reason_ = std::string(rd_kafka_err2name(code)) + ": " + cause.data();
  spdlog::error("kafka producer {} failed for good: {}", rd_kafka_name(rk), *self->fatal_reason_);
}

int KafkaProducer::OnStatistics(rd_kafka_t* rk, char* json, std::size_t json_len, void* opaque) {
  auto* self = static_cast<KafkaProducer*>(opaque);
  if (auto summary = SummarizeProducerStats(std::string_view(json, json_len))) {
    summary->received_at = std::chrono::steady_clock::now();
    self->stats_ = *summary;
  } else {
    spdlog::warn("kafka producer {}: statistics report is not a JSON object; ignored", rd_kafka_name(rk));
  }
  return 0;  // librdkafka keeps ownership of `json` and frees it
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
