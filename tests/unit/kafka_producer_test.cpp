// The sink's producer against librdkafka's in-process mock cluster (EmbeddedCluster): what lands
// in Kafka, how reports come back through the wakeup fd, and how faults surface.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "sink/embedded_cluster.h"
#include "sink/kafka_producer.h"
#include "sink/producer_properties.h"
#include "sink/topic_limits.h"

namespace sse2kafka::sink {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Kafka protocol API keys, for rd_kafka_mock_push_request_errors.
constexpr int16_t kProduceApi = 0;
constexpr int16_t kInitProducerIdApi = 22;
constexpr int32_t kFirstBrokerId = 1;

class RecordingHandler : public DeliveryHandler {
 public:
  struct Report {
    uint64_t token;
    bool ok;
    int error_code;
    std::string error_name;
    bool retriable;
    int32_t partition;
    int64_t offset;
  };

  void OnDelivery(const DeliveryReport& report) override {
    reports.push_back({report.token, report.ok, report.error_code, std::string(report.error_name), report.retriable,
                       report.partition, report.offset});
  }
  void OnFatalError(const std::string& reason) override { fatal_errors.push_back(reason); }

  std::vector<Report> reports;
  std::vector<std::string> fatal_errors;
};

// Serves the producer the way the event loop does: only when its wakeup fd is readable. A lost
// wakeup therefore shows up as a timeout here. Returns whether `done` became true in time.
bool ServeUntil(KafkaProducer& producer, DeliveryHandler& handler, const std::function<bool()>& done,
                milliseconds limit) {
  const auto deadline = steady_clock::now() + limit;
  while (!done()) {
    const auto remaining = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
    if (remaining.count() <= 0) return false;
    pollfd wakeup{producer.wakeup_fd(), POLLIN, 0};
    if (poll(&wakeup, 1, static_cast<int>(remaining.count()) + 1) > 0) producer.Poll(handler);
  }
  return true;
}

bool ServeReports(KafkaProducer& producer, RecordingHandler& handler, std::size_t count,
                  milliseconds limit = milliseconds(15000)) {
  return ServeUntil(producer, handler, [&] { return handler.reports.size() >= count; }, limit);
}

struct Header {
  std::string name;
  std::optional<std::string> value;
  bool operator==(const Header&) const = default;
};

struct ConsumedRecord {
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<Header> headers;
  int64_t timestamp_ms = 0;
  rd_kafka_timestamp_type_t timestamp_type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
  int64_t offset = -1;
};

std::optional<std::string> Bytes(const void* data, size_t size) {
  if (data == nullptr) return std::nullopt;
  return std::string(static_cast<const char*>(data), size);
}

// Reads one partition from its beginning with a plain librdkafka consumer until `count` records
// arrived or the time is up.
std::vector<ConsumedRecord> ConsumeFromStart(const std::string& bootstrap, const std::string& topic,
                                             int32_t partition, std::size_t count,
                                             milliseconds limit = milliseconds(15000)) {
  std::vector<ConsumedRecord> records;
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [name, value] : PropertyList{{"bootstrap.servers", bootstrap},
                                                {"group.id", "kafka-producer-test"},
                                                {"enable.auto.commit", "false"},
                                                {"fetch.wait.max.ms", "50"}}) {
    EXPECT_EQ(rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr), RD_KAFKA_CONF_OK) << errstr;
  }
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (consumer == nullptr) {
    ADD_FAILURE() << errstr;
    rd_kafka_conf_destroy(conf);
    return records;
  }
  rd_kafka_poll_set_consumer(consumer);
  rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(assignment, topic.c_str(), partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
  EXPECT_EQ(rd_kafka_assign(consumer, assignment), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(assignment);

  const auto deadline = steady_clock::now() + limit;
  while (records.size() < count && steady_clock::now() < deadline) {
    rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer, 100);
    if (message == nullptr) continue;
    if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ConsumedRecord record;
      record.key = Bytes(message->key, message->key_len);
      record.value = Bytes(message->payload, message->len);
      record.timestamp_ms = rd_kafka_message_timestamp(message, &record.timestamp_type);
      record.offset = message->offset;
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             ++i) {
          record.headers.push_back({name, Bytes(value, size)});
        }
      }
      records.push_back(std::move(record));
    }
    rd_kafka_message_destroy(message);
  }
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  return records;
}

class KafkaProducerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    cluster_ = EmbeddedCluster::Start(1, &error);
    ASSERT_NE(cluster_, nullptr) << error;
  }

  void CreateTopic(const std::string& name, int partitions = 1) {
    ASSERT_EQ(rd_kafka_mock_topic_create(cluster_->mock(), name.c_str(), partitions, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  ProducerSettings Settings(PropertyList properties = {}) const {
    ProducerSettings settings;
    settings.bootstrap_servers = cluster_->bootstrap_servers();
    settings.properties = std::move(properties);
    settings.max_in_flight_events = 1000;
    settings.max_in_flight_bytes = 1 << 20;
    return settings;
  }

  std::unique_ptr<KafkaProducer> NewProducer(PropertyList properties = {}) {
    std::string error;
    auto producer = KafkaProducer::Create(Settings(std::move(properties)), &error);
    EXPECT_NE(producer, nullptr) << error;
    return producer;
  }

  static ProduceResult ProduceValue(KafkaProducer& producer, const std::string& topic, std::string_view value,
                                    uint64_t token, std::optional<std::string_view> key = std::nullopt) {
    OutgoingRecord record;
    record.topic = topic;
    record.key = key;
    record.value = value;
    record.token = token;
    std::string error;
    const ProduceResult result = producer.Produce(record, &error);
    EXPECT_EQ(result, ProduceResult::kQueued) << error;
    return result;
  }

  rd_kafka_mock_cluster_t* mock() const { return cluster_->mock(); }

  std::unique_ptr<EmbeddedCluster> cluster_;
};

struct RecordSpec {
  std::optional<std::string> key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
  int64_t timestamp_ms;
};

TEST_F(KafkaProducerTest, RecordsArriveExactlyAsProduced) {
  CreateTopic("exact");
  auto producer = NewProducer();
  ASSERT_NE(producer, nullptr);

  const std::vector<RecordSpec> specs = {
      {"wiki", "hello", {{"sse.stream", "wiki"}, {"sse.event", "message"}, {"sse.id", "41"}}, 1700000000001},
      {std::nullopt, "", {}, 1700000000002},
      {"", "line one\nline two", {{"dup", "a"}, {"dup", "b"}, {"empty", ""}}, 1700000000003},
      {std::nullopt, std::string("nul\0byte \xc3\xa9", 11), {{"bin", std::string("\0x", 2)}}, 1700000000004},
      {"big", std::string(20000, 'z'), {{"sse.stream", "wiki"}}, 1700000000005},
  };
  const uint64_t first_token = (uint64_t{1} << 63) + 7;  // tokens use all 64 bits
  for (std::size_t i = 0; i < specs.size(); ++i) {
    std::vector<RecordHeaderView> headers;
    for (const auto& [name, value] : specs[i].headers) headers.push_back({name, value});
    OutgoingRecord record;
    record.topic = "exact";
    if (specs[i].key) record.key = *specs[i].key;
    record.value = specs[i].value;
    record.headers = headers;
    record.timestamp_ms = specs[i].timestamp_ms;
    record.token = first_token + i;
    std::string error;
    ASSERT_EQ(producer->Produce(record, &error), ProduceResult::kQueued) << error;
  }

  RecordingHandler handler;
  ASSERT_TRUE(ServeReports(*producer, handler, specs.size()));
  ASSERT_EQ(handler.reports.size(), specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(i);
    const auto& report = handler.reports[i];
    EXPECT_TRUE(report.ok) << report.error_name;
    EXPECT_EQ(report.token, first_token + i);  // one partition: reports in produce order
    EXPECT_EQ(report.partition, 0);
    EXPECT_EQ(report.offset, static_cast<int64_t>(i));
  }
  EXPECT_TRUE(handler.fatal_errors.empty());

  const auto consumed = ConsumeFromStart(cluster_->bootstrap_servers(), "exact", 0, specs.size());
  ASSERT_EQ(consumed.size(), specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(consumed[i].key, specs[i].key);
    ASSERT_TRUE(consumed[i].value.has_value()) << "an empty value must not become null";
    EXPECT_EQ(*consumed[i].value, specs[i].value);
    std::vector<Header> expected_headers;
    for (const auto& [name, value] : specs[i].headers) expected_headers.push_back({name, value});
    EXPECT_EQ(consumed[i].headers, expected_headers);
    EXPECT_EQ(consumed[i].timestamp_type, RD_KAFKA_TIMESTAMP_CREATE_TIME);
    EXPECT_EQ(consumed[i].timestamp_ms, specs[i].timestamp_ms);
    EXPECT_EQ(consumed[i].offset, static_cast<int64_t>(i));
  }
}

TEST_F(KafkaProducerTest, WakeupFdSignalsReportsAndEveryTokenComesBackOnce) {
  CreateTopic("tokens", 3);
  auto producer = NewProducer();
  ASSERT_NE(producer, nullptr);
  RecordingHandler handler;

  // Bursts with serving in between exercise the fd's re-arming after each drain.
  constexpr int kBursts = 20;
  constexpr int kPerBurst = 25;
  uint64_t next_token = 1000;
  for (int burst = 0; burst < kBursts; ++burst) {
    for (int i = 0; i < kPerBurst; ++i) {
      const std::string key = "key-" + std::to_string(next_token % 7);
      ProduceValue(*producer, "tokens", "event " + std::to_string(next_token), next_token, key);
      ++next_token;
    }
    pollfd wakeup{producer->wakeup_fd(), POLLIN, 0};
    ASSERT_EQ(poll(&wakeup, 1, 5000), 1) << "no wakeup within 5 s of producing (burst " << burst << ")";
    ASSERT_TRUE(ServeReports(*producer, handler, static_cast<std::size_t>((burst + 1) * kPerBurst)))
        << "burst " << burst << ": " << handler.reports.size() << " reports";
  }

  std::multiset<uint64_t> tokens;
  std::map<int32_t, int64_t> last_offset;
  for (const auto& report : handler.reports) {
    EXPECT_TRUE(report.ok) << report.error_name;
    tokens.insert(report.token);
    // Within a partition, reports come in produce (token) order with increasing offsets.
    auto [previous, inserted] = last_offset.try_emplace(report.partition, report.offset);
    if (!inserted) {
      EXPECT_GT(report.offset, previous->second);
      previous->second = report.offset;
    }
  }
  ASSERT_EQ(tokens.size(), static_cast<std::size_t>(kBursts * kPerBurst));
  for (uint64_t token = 1000; token < next_token; ++token) EXPECT_EQ(tokens.count(token), 1u) << token;
  EXPECT_EQ(last_offset.size(), 3u) << "keys should spread over all partitions";
  EXPECT_EQ(producer->outstanding(), 0u);
}

TEST_F(KafkaProducerTest, PollReturnsAtOnceWhenNothingIsReady) {
  CreateTopic("idle");
  auto producer = NewProducer();
  ASSERT_NE(producer, nullptr);
  rd_kafka_mock_broker_set_down(mock(), kFirstBrokerId);
  ProduceValue(*producer, "idle", "waits", 1);
  RecordingHandler handler;
  const auto start = steady_clock::now();
  for (int i = 0; i < 100; ++i) producer->Poll(handler);
  EXPECT_LT(steady_clock::now() - start, milliseconds(200));
  EXPECT_TRUE(handler.reports.empty());
}

TEST_F(KafkaProducerTest, RecordsTimeOutWhileTheBrokerIsDown) {
  CreateTopic("down");
  auto producer = NewProducer({{"message.timeout.ms", "1000"}});
  ASSERT_NE(producer, nullptr);
  producer->WarmUp({"down"}, milliseconds(5000));
  ASSERT_EQ(rd_kafka_mock_broker_set_down(mock(), kFirstBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);

  for (uint64_t token = 1; token <= 3; ++token) ProduceValue(*producer, "down", "lost", token);
  RecordingHandler handler;
  ASSERT_TRUE(ServeReports(*producer, handler, 3));
  std::set<uint64_t> tokens;
  for (const auto& report : handler.reports) {
    EXPECT_FALSE(report.ok);
    EXPECT_EQ(report.error_code, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
    EXPECT_EQ(report.error_name, "_MSG_TIMED_OUT");
    EXPECT_TRUE(report.retriable);
    tokens.insert(report.token);
  }
  EXPECT_EQ(tokens, (std::set<uint64_t>{1, 2, 3}));
  EXPECT_TRUE(handler.fatal_errors.empty());
}

TEST_F(KafkaProducerTest, RetriableProduceErrorsAreRetriedWithoutDuplicates) {
  CreateTopic("retry");
  auto producer = NewProducer();
  ASSERT_NE(producer, nullptr);
  producer->WarmUp({"retry"}, milliseconds(5000));
  rd_kafka_mock_push_request_errors(mock(), kProduceApi, 2, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);

  RecordingHandler handler;
  ProduceValue(*producer, "retry", "first", 1);
  ASSERT_TRUE(ServeReports(*producer, handler, 1));
  EXPECT_TRUE(handler.reports[0].ok) << handler.reports[0].error_name;
  EXPECT_EQ(handler.reports[0].offset, 0);

  ProduceValue(*producer, "retry", "second", 2);
  ASSERT_TRUE(ServeReports(*producer, handler, 2));
  EXPECT_TRUE(handler.reports[1].ok);
  EXPECT_EQ(handler.reports[1].offset, 1) << "the retried record must have been stored once";
  EXPECT_TRUE(handler.fatal_errors.empty());
}

TEST_F(KafkaProducerTest, NonRetriableProduceErrorFailsTheRecord) {
  CreateTopic("denied");
  auto producer = NewProducer();
  ASSERT_NE(producer, nullptr);
  producer->WarmUp({"denied"}, milliseconds(5000));
  rd_kafka_mock_push_request_errors(mock(), kProduceApi, 1, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);

  RecordingHandler handler;
  ProduceValue(*producer, "denied", "refused", 1);
  ASSERT_TRUE(ServeReports(*producer, handler, 1));
  EXPECT_FALSE(handler.reports[0].ok);
  EXPECT_EQ(handler.reports[0].error_code, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  EXPECT_EQ(handler.reports[0].error_name, "TOPIC_AUTHORIZATION_FAILED");
  EXPECT_FALSE(handler.reports[0].retriable);

  // The producer itself is fine: records to other topics go through. (librdkafka remembers the
  // denial and refuses further records to "denied" locally until its next metadata refresh.)
  CreateTopic("allowed");
  ProduceValue(*producer, "allowed", "accepted", 2);
  ASSERT_TRUE(ServeReports(*producer, handler, 2));
  EXPECT_EQ(handler.reports[1].token, 2u);
  EXPECT_TRUE(handler.reports[1].ok) << handler.reports[1].error_name;
  EXPECT_TRUE(handler.fatal_errors.empty());
}

TEST_F(KafkaProducerTest, FatalErrorIsReportedExactlyOnce) {
  CreateTopic("fatal");
  // The idempotent producer's first request is InitProducerId; refusing it is fatal.
  rd_kafka_mock_push_request_errors(mock(), kInitProducerIdApi, 1, RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED);
  auto producer = NewProducer();
  ASSERT_NE(producer, nullptr);

  RecordingHandler handler;
  std::size_t queued = 0;
  for (uint64_t token = 1; token <= 3; ++token) {
    OutgoingRecord record;
    record.topic = "fatal";
    record.value = "doomed";
    record.token = token;
    std::string error;
    if (producer->Produce(record, &error) == ProduceResult::kQueued) ++queued;
  }
  ASSERT_TRUE(ServeUntil(
      *producer, handler, [&] { return !handler.fatal_errors.empty() && handler.reports.size() >= queued; },
      milliseconds(15000)));
  ASSERT_EQ(handler.fatal_errors.size(), 1u);
  EXPECT_NE(handler.fatal_errors[0].find("CLUSTER_AUTHORIZATION_FAILED"), std::string::npos) << handler.fatal_errors[0];
  for (const auto& report : handler.reports) EXPECT_FALSE(report.ok);

  OutgoingRecord after;
  after.topic = "fatal";
  after.value = "refused";
  std::string error;
  EXPECT_EQ(producer->Produce(after, &error), ProduceResult::kRejected);
  EXPECT_NE(error.find("fatal error"), std::string::npos) << error;

  producer->Purge();
  EXPECT_TRUE(producer->Flush(milliseconds(2000), handler));
  for (int i = 0; i < 10; ++i) producer->Poll(handler);
  EXPECT_EQ(handler.fatal_errors.size(), 1u);
  EXPECT_EQ(handler.reports.size(), queued);
}

TEST_F(KafkaProducerTest, FlushWaitsForTheBrokerToComeBack) {
  CreateTopic("flush");
  auto producer = NewProducer({{"message.timeout.ms", "60000"}, {"reconnect.backoff.max.ms", "200"}});
  ASSERT_NE(producer, nullptr);
  producer->WarmUp({"flush"}, milliseconds(5000));
  ASSERT_EQ(rd_kafka_mock_broker_set_down(mock(), kFirstBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);

  RecordingHandler handler;
  ProduceValue(*producer, "flush", "one", 1);
  ProduceValue(*producer, "flush", "two", 2);
  const auto start = steady_clock::now();
  EXPECT_FALSE(producer->Flush(milliseconds(300), handler));
  EXPECT_GE(steady_clock::now() - start, milliseconds(250));
  EXPECT_GE(producer->outstanding(), 2u);
  EXPECT_TRUE(handler.reports.empty());

  ASSERT_EQ(rd_kafka_mock_broker_set_up(mock(), kFirstBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_TRUE(producer->Flush(milliseconds(20000), handler));
  EXPECT_EQ(producer->outstanding(), 0u);
  ASSERT_EQ(handler.reports.size(), 2u);
  for (const auto& report : handler.reports) EXPECT_TRUE(report.ok) << report.error_name;
}

TEST_F(KafkaProducerTest, WarmUpMakesTheFirstDeliveryFast) {
  CreateTopic("warm");
  auto producer = NewProducer();
  ASSERT_NE(producer, nullptr);
  producer->WarmUp({"warm"}, milliseconds(5000));

  RecordingHandler handler;
  const auto start = steady_clock::now();
  ProduceValue(*producer, "warm", "first", 1);
  ASSERT_TRUE(ServeReports(*producer, handler, 1));
  const auto elapsed = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
  EXPECT_TRUE(handler.reports[0].ok);
  EXPECT_LT(elapsed, milliseconds(500)) << "first delivery took " << elapsed.count() << " ms";
}

TEST_F(KafkaProducerTest, WarmUpGivesUpAtItsTimeoutWhenNoBrokerAnswers) {
  CreateTopic("unreachable");
  ASSERT_EQ(rd_kafka_mock_broker_set_down(mock(), kFirstBrokerId), RD_KAFKA_RESP_ERR_NO_ERROR);
  auto producer = NewProducer();
  ASSERT_NE(producer, nullptr);
  const auto start = steady_clock::now();
  producer->WarmUp({"unreachable", "also-unreachable"}, milliseconds(300));
  EXPECT_LT(steady_clock::now() - start, milliseconds(1500));
}

TEST_F(KafkaProducerTest, PurgeFailsOutstandingRecords) {
  CreateTopic("purge");
  auto producer = NewProducer({{"message.timeout.ms", "60000"}});
  ASSERT_NE(producer, nullptr);
  producer->WarmUp({"purge"}, milliseconds(5000));
  rd_kafka_mock_broker_set_down(mock(), kFirstBrokerId);
  for (uint64_t token = 1; token <= 3; ++token) ProduceValue(*producer, "purge", "dropped", token);

  producer->Purge();
  RecordingHandler handler;
  ASSERT_TRUE(ServeReports(*producer, handler, 3, milliseconds(5000)));
  for (const auto& report : handler.reports) {
    EXPECT_FALSE(report.ok);
    EXPECT_TRUE(report.error_code == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                report.error_code == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        << report.error_name;
  }
  EXPECT_EQ(producer->outstanding(), 0u);
}

TEST_F(KafkaProducerTest, FullQueueIsReportedAndNothingIsQueued) {
  CreateTopic("full");
  auto producer = NewProducer({{"queue.buffering.max.messages", "3"}, {"message.timeout.ms", "60000"}});
  ASSERT_NE(producer, nullptr);
  rd_kafka_mock_broker_set_down(mock(), kFirstBrokerId);
  for (uint64_t token = 1; token <= 3; ++token) ProduceValue(*producer, "full", "fits", token);

  OutgoingRecord record;
  record.topic = "full";
  record.value = "does not fit";
  record.token = 4;
  std::string error;
  EXPECT_EQ(producer->Produce(record, &error), ProduceResult::kQueueFull);
  EXPECT_NE(error.find("QUEUE_FULL"), std::string::npos) << error;
  // outstanding() also counts unserved events such as "all brokers down".
  EXPECT_GE(producer->outstanding(), 3u);

  // Destroying with records outstanding must not wait for the dead broker.
  const auto start = steady_clock::now();
  producer.reset();
  EXPECT_LT(steady_clock::now() - start, milliseconds(5000));
}

TEST_F(KafkaProducerTest, OversizedRecordIsRefusedAsTooLarge) {
  auto producer = NewProducer({{"message.max.bytes", "1000"}});
  ASSERT_NE(producer, nullptr);
  const std::string value(5000, 'x');
  OutgoingRecord record;
  record.topic = "oversized";
  record.value = value;
  std::string error;
  EXPECT_EQ(producer->Produce(record, &error), ProduceResult::kTooLarge);
  EXPECT_NE(error.find("MSG_SIZE_TOO_LARGE"), std::string::npos) << error;
  EXPECT_EQ(producer->outstanding(), 0u);
}

TEST_F(KafkaProducerTest, CreateFailsWhenLibrdkafkaRefusesTheConfig) {
  std::string error;
  EXPECT_EQ(KafkaProducer::Create(Settings({{"no.such.property", "1"}}), &error), nullptr);
  EXPECT_NE(error.find("no.such.property"), std::string::npos) << error;

  error.clear();
  // Valid alone, but idempotence needs acks=all.
  EXPECT_EQ(KafkaProducer::Create(Settings({{"acks", "1"}}), &error), nullptr);
  EXPECT_NE(error.find("acks"), std::string::npos) << error;

  error.clear();
  EXPECT_NE(KafkaProducer::Create(Settings({{"acks", "1"}, {"enable.idempotence", "false"}}), &error), nullptr)
      << error;
}

TEST_F(KafkaProducerTest, SecretPropertiesAreNotLogged) {
  const ProducerSettings settings = Settings({{"sasl.password", "hunter2-secret"}, {"ssl.key.password", "s3cr3t-value"}});
  // Swapping spdlog's default logger is only safe while no librdkafka thread may log: stop the
  // cluster's mock brokers first (the producer below then just finds nobody listening).
  cluster_.reset();
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log));
  spdlog::set_default_logger(capture);
  std::string error;
  auto producer = KafkaProducer::Create(settings, &error);
  producer.reset();  // joins librdkafka's threads
  spdlog::set_default_logger(previous);

  ASSERT_TRUE(error.empty()) << error;
  const std::string text = log.str();
  EXPECT_NE(text.find("sasl.password=***"), std::string::npos) << text;
  EXPECT_EQ(text.find("hunter2-secret"), std::string::npos) << text;
  EXPECT_EQ(text.find("s3cr3t-value"), std::string::npos) << text;
}

TEST(ProducerPropertiesTest, ValidatesSinglePropertiesAgainstLibrdkafka) {
  EXPECT_EQ(ValidateProducerProperty("compression.type", "lz4"), std::nullopt);
  EXPECT_EQ(ValidateProducerProperty("linger.ms", "20"), std::nullopt);
  EXPECT_EQ(ValidateProducerProperty("sasl.password", "anything"), std::nullopt);

  const auto unknown = ValidateProducerProperty("no.such.property", "1");
  ASSERT_TRUE(unknown.has_value());
  EXPECT_NE(unknown->find("No such configuration property"), std::string::npos) << *unknown;

  const auto bad_value = ValidateProducerProperty("compression.type", "bogus");
  ASSERT_TRUE(bad_value.has_value());
  EXPECT_NE(bad_value->find("Invalid value"), std::string::npos) << *bad_value;

  const auto not_a_number = ValidateProducerProperty("linger.ms", "soon");
  EXPECT_TRUE(not_a_number.has_value());
}

TEST(ProducerPropertiesTest, RefusesPropertiesTheSinkCannotHonour) {
  const auto consumer_only = ValidateProducerProperty("group.id", "g");
  ASSERT_TRUE(consumer_only.has_value());
  EXPECT_NE(consumer_only->find("consumer property"), std::string::npos) << *consumer_only;
  EXPECT_TRUE(ValidateProducerProperty("auto.offset.reset", "earliest").has_value());
  EXPECT_TRUE(ValidateProducerProperty("bootstrap.servers", "127.0.0.1:9092").has_value());
  EXPECT_TRUE(ValidateProducerProperty("transactional.id", "x").has_value());
  EXPECT_TRUE(ValidateProducerProperty("delivery.report.only.error", "true").has_value());
  // Properties both sides use are fine.
  EXPECT_EQ(ValidateProducerProperty("client.id", "bridge"), std::nullopt);
  EXPECT_EQ(ValidateProducerProperty("security.protocol", "plaintext"), std::nullopt);
}

TEST(ProducerPropertiesTest, ValidatesTheWholeConfiguration) {
  ProducerSettings settings;
  settings.bootstrap_servers = "embedded";
  settings.properties = {{"compression.type", "lz4"}, {"linger.ms", "10"}};
  EXPECT_EQ(ValidateProducerSettings(settings), std::nullopt);

  settings.properties = {{"acks", "1"}};
  const auto conflict = ValidateProducerSettings(settings);
  ASSERT_TRUE(conflict.has_value());
  EXPECT_NE(conflict->find("acks"), std::string::npos) << *conflict;
}

TEST(ProducerPropertiesTest, EffectivePropertiesPutTheUserBetweenDefaultsAndBrokers) {
  ProducerSettings settings;
  settings.bootstrap_servers = "127.0.0.1:9092";
  settings.properties = {{"acks", "all"}, {"compression.type", "zstd"}};
  settings.max_in_flight_events = 500000;
  settings.max_in_flight_bytes = std::size_t{1} << 30;
  const PropertyList effective = EffectiveProducerProperties(settings);

  auto position = [&](const std::string& name, const std::string& value) {
    for (std::size_t i = 0; i < effective.size(); ++i) {
      if (effective[i].first == name && effective[i].second == value) return static_cast<int>(i);
    }
    return -1;
  };
  EXPECT_GE(position("enable.idempotence", "true"), 0);
  EXPECT_LT(position("enable.idempotence", "true"), position("compression.type", "zstd"));
  EXPECT_EQ(position("queue.buffering.max.messages", std::to_string(QueueLimitMessages(500000))),
            static_cast<int>(effective.size()) - 3);
  EXPECT_EQ(effective.back(), (std::pair<std::string, std::string>{"bootstrap.servers", "127.0.0.1:9092"}));

  EXPECT_GE(QueueLimitMessages(500000), 2 * 500000u);
  EXPECT_EQ(QueueLimitMessages(10), 100000u);  // never below librdkafka's default
  EXPECT_GE(QueueLimitKbytes(std::size_t{1} << 30) * 1024, 2 * (std::size_t{1} << 30));
  EXPECT_EQ(QueueLimitKbytes(std::size_t{64} << 20), 1048576u);
  EXPECT_EQ(QueueLimitMessages(std::size_t{1} << 40), 2147483647u);

  settings.properties = {{"queue.buffering.max.messages", "0"}};
  const PropertyList user_limit = EffectiveProducerProperties(settings);
  int occurrences = 0;
  for (const auto& [name, value] : user_limit) occurrences += name == "queue.buffering.max.messages";
  EXPECT_EQ(occurrences, 1) << "the user's own queue limit must win";
}

// A topic whose max.message.bytes is below the producer's batch.size refuses whole batches
// (topic_limits.h): batch.size is capped, also below a user's larger value.
TEST(ProducerPropertiesTest, BatchSizeIsCappedByTheTopicLimit) {
  auto batch_sizes = [](const ProducerSettings& settings) {
    std::vector<std::string> values;
    for (const auto& [name, value] : EffectiveProducerProperties(settings)) {
      if (name == "batch.size") values.push_back(value);
    }
    return values;
  };
  ProducerSettings settings;
  EXPECT_TRUE(batch_sizes(settings).empty()) << "no cap, no batch.size of ours";
  settings.max_batch_bytes = 1800;
  EXPECT_EQ(batch_sizes(settings), std::vector<std::string>{"1800"});
  settings.properties = {{"batch.size", "500000"}};
  EXPECT_EQ(batch_sizes(settings).back(), "1800");
  settings.properties = {{"batch.size", "1000"}};
  EXPECT_EQ(batch_sizes(settings).back(), "1000") << "a smaller user value stays";
  EXPECT_EQ(ValidateProducerSettings(settings), std::nullopt);
}

TEST(TopicLimitsTest, BatchSizeStaysBelowTheSmallestLimitWithAMargin) {
  EXPECT_EQ(BatchSizeWithin({}), std::nullopt);
  EXPECT_EQ(BatchSizeWithin({{"a", 1048588}, {"b", 2000000}}), std::nullopt) << "defaults need nothing";
  EXPECT_EQ(BatchSizeWithin({{"a", 1048588}, {"small", 2000}}), 1800u);
  EXPECT_EQ(BatchSizeWithin({{"small", 500000}}), 500000u - 1024);
  EXPECT_EQ(BatchSizeWithin({{"tiny", 5}}), 5u);
}

TEST(ProducerPropertiesTest, SecretsAreRecognisedAndRedacted) {
  EXPECT_TRUE(IsSecretProperty("sasl.password"));
  EXPECT_TRUE(IsSecretProperty("SSL.Key.PASSWORD"));
  EXPECT_TRUE(IsSecretProperty("sasl.oauthbearer.client.secret"));
  EXPECT_TRUE(IsSecretProperty("sasl.oauthbearer.token.endpoint.url"));
  EXPECT_TRUE(IsSecretProperty("ssl.key.pem"));
  EXPECT_FALSE(IsSecretProperty("compression.type"));
  EXPECT_FALSE(IsSecretProperty("sasl.username"));

  const PropertyList properties = {{"sasl.username", "alice"}, {"sasl.password", "hunter2"}};
  EXPECT_EQ(DescribeProperties(properties), "sasl.username=alice, sasl.password=***");
  EXPECT_EQ(RedactSecretValues("Invalid value \"hunter2\" (hunter2)", properties), "Invalid value \"***\" (***)");
}

}  // namespace
}  // namespace sse2kafka::sink
