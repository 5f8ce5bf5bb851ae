// The sink producer's transactions against librdkafka's in-process mock cluster
// (EmbeddedCluster): the asynchronous init / commit / abort calls, how their results come back
// through the wakeup fd, how librdkafka classifies failures, and what the 2.0.2 mock does not
// do (see /work/shared/notes/kafka-mock-cluster.md).
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sink/embedded_cluster.h"
#include "sink/kafka_producer.h"
#include "sink/producer_properties.h"

namespace sse2kafka::sink {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Kafka protocol API keys, for rd_kafka_mock_push_request_errors.
constexpr int16_t kProduceApi = 0;
constexpr int16_t kEndTxnApi = 26;
constexpr int32_t kBrokerId = 1;
constexpr milliseconds kOpTimeout{10000};
constexpr milliseconds kServeLimit{15000};

class Recorder : public DeliveryHandler {
 public:
  struct Report {
    uint64_t token;
    bool ok;
    int error_code;
    std::string error_name;
    int32_t partition;
    int64_t offset;
  };

  explicit Recorder(const KafkaProducer* producer = nullptr) : producer_(producer) {}

  void OnDelivery(const DeliveryReport& report) override {
    reports.push_back({report.token, report.ok, report.error_code, std::string(report.error_name), report.partition,
                       report.offset});
    sequence += 'd';
  }
  void OnFatalError(const std::string& reason) override { fatal_errors.push_back(reason); }
  void OnTransactionResult(const TransactionResult& result) override {
    results.push_back(result);
    sequence += 't';
    if (producer_ != nullptr && producer_->transaction_op_running()) op_running_in_callback = true;
  }

  std::vector<Report> reports;
  std::vector<TransactionResult> results;
  std::vector<std::string> fatal_errors;
  std::string sequence;  // 'd' per delivery report, 't' per transaction result, in serving order
  bool op_running_in_callback = false;

 private:
  const KafkaProducer* producer_;
};

// Serves the producer the way the event loop does: only when its wakeup fd is readable. A lost
// wakeup therefore shows up as a timeout here. Returns whether `done` became true in time.
bool ServeUntil(KafkaProducer& producer, DeliveryHandler& handler, const std::function<bool()>& done,
                milliseconds limit = kServeLimit) {
  const auto deadline = steady_clock::now() + limit;
  while (!done()) {
    const auto remaining = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
    if (remaining.count() <= 0) return false;
    pollfd wakeup{producer.wakeup_fd(), POLLIN, 0};
    if (poll(&wakeup, 1, static_cast<int>(remaining.count()) + 1) > 0) producer.Poll(handler);
  }
  return true;
}

std::string Flags(const TransactionResult& result) {
  std::string flags = result.ok ? "ok" : "failed";
  if (result.retriable) flags += " retriable";
  if (result.abortable) flags += " abortable";
  if (result.fatal) flags += " fatal";
  if (result.fenced) flags += " fenced";
  return flags + (result.error.empty() ? "" : ": " + result.error);
}

class TransactionalProducerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    cluster_ = EmbeddedCluster::Start(1, &error);
    ASSERT_NE(cluster_, nullptr) << error;
  }

  void CreateTopic(const std::string& name, int partitions = 1) {
    ASSERT_EQ(rd_kafka_mock_topic_create(mock(), name.c_str(), partitions, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  ProducerSettings Settings(std::optional<std::string> transactional_id, PropertyList properties = {}) const {
    ProducerSettings settings;
    settings.bootstrap_servers = cluster_->bootstrap_servers();
    // No statistics: a wakeup in these tests comes from a report, an error or a result.
    settings.properties = {{"statistics.interval.ms", "0"}};
    settings.properties.insert(settings.properties.end(), properties.begin(), properties.end());
    settings.max_in_flight_events = 1000;
    settings.max_in_flight_bytes = 1 << 20;
    settings.transactional_id = std::move(transactional_id);
    return settings;
  }

  std::unique_ptr<KafkaProducer> NewProducer(const std::string& transactional_id, PropertyList properties = {}) {
    std::string error;
    auto producer = KafkaProducer::Create(Settings(transactional_id, std::move(properties)), &error);
    EXPECT_NE(producer, nullptr) << error;
    return producer;
  }

  // Starts `op` and serves the producer until its result came; nullopt if it did not in time.
  static std::optional<TransactionResult> Run(KafkaProducer& producer, Recorder& recorder, TransactionOp op,
                                              milliseconds timeout = kOpTimeout) {
    const std::size_t before = recorder.results.size();
    switch (op) {
      case TransactionOp::kInit:
        producer.StartInitTransactions(timeout);
        break;
      case TransactionOp::kCommit:
        producer.StartCommitTransaction(timeout);
        break;
      case TransactionOp::kAbort:
        producer.StartAbortTransaction(timeout);
        break;
    }
    EXPECT_TRUE(producer.transaction_op_running());
    if (!ServeUntil(producer, recorder, [&] { return recorder.results.size() > before; })) return std::nullopt;
    EXPECT_EQ(recorder.results.size(), before + 1);
    EXPECT_FALSE(producer.transaction_op_running());
    EXPECT_EQ(recorder.results.back().op, op);
    return recorder.results.back();
  }

  static void ExpectOk(const std::optional<TransactionResult>& result) {
    ASSERT_TRUE(result.has_value()) << "no result in time";
    EXPECT_TRUE(result->ok) << Flags(*result);
    EXPECT_FALSE(result->retriable || result->abortable || result->fatal || result->fenced) << Flags(*result);
    EXPECT_TRUE(result->error.empty()) << result->error;
  }

  // Initialises transactions, fetches the topic's metadata and opens a transaction.
  static void InitAndBegin(KafkaProducer& producer, Recorder& recorder, const std::string& topic) {
    ExpectOk(Run(producer, recorder, TransactionOp::kInit));
    producer.WarmUp({topic}, milliseconds(5000));
    std::string error;
    ASSERT_TRUE(producer.BeginTransaction(&error)) << error;
  }

  static ProduceResult Produce(KafkaProducer& producer, const std::string& topic, uint64_t token,
                               int32_t partition = -1, std::string* error_out = nullptr) {
    const std::string value = "record " + std::to_string(token);
    OutgoingRecord record;
    record.topic = topic;
    record.value = value;
    record.token = token;
    record.partition = partition;
    std::string error;
    const ProduceResult result = producer.Produce(record, &error);
    if (error_out != nullptr) *error_out = error;
    return result;
  }

  static void ProduceQueued(KafkaProducer& producer, const std::string& topic, uint64_t token, int32_t partition = -1) {
    std::string error;
    EXPECT_EQ(Produce(producer, topic, token, partition, &error), ProduceResult::kQueued) << error;
  }

  rd_kafka_mock_cluster_t* mock() const { return cluster_->mock(); }

  std::unique_ptr<EmbeddedCluster> cluster_;
};

TEST_F(TransactionalProducerTest, CommitReportsEveryRecordBeforeItsResult) {
  CreateTopic("commit", 2);
  auto producer = NewProducer("commit-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());
  InitAndBegin(*producer, recorder, "commit");

  constexpr int kRecords = 10;
  for (int i = 0; i < kRecords; ++i) ProduceQueued(*producer, "commit", 100 + i, i % 2);
  ExpectOk(Run(*producer, recorder, TransactionOp::kCommit));

  ASSERT_EQ(recorder.reports.size(), static_cast<std::size_t>(kRecords));
  std::vector<int64_t> next_offset = {0, 0};
  for (const auto& report : recorder.reports) {
    EXPECT_TRUE(report.ok) << report.error_name;
    EXPECT_EQ(report.partition, static_cast<int32_t>(report.token % 2)) << "the record's own partition";
    ASSERT_TRUE(report.partition == 0 || report.partition == 1);
    EXPECT_EQ(report.offset, next_offset[report.partition]++);
  }
  // init's result, then every report, then the commit's result.
  EXPECT_EQ(recorder.sequence, "t" + std::string(kRecords, 'd') + "t");
  EXPECT_FALSE(recorder.op_running_in_callback);
  EXPECT_TRUE(recorder.fatal_errors.empty());
  EXPECT_EQ(producer->outstanding(), 0u);

  // The next transaction goes the same way.
  std::string error;
  ASSERT_TRUE(producer->BeginTransaction(&error)) << error;
  ProduceQueued(*producer, "commit", 200, 0);
  ExpectOk(Run(*producer, recorder, TransactionOp::kCommit));
  ASSERT_EQ(recorder.reports.size(), static_cast<std::size_t>(kRecords + 1));
  EXPECT_TRUE(recorder.reports.back().ok);
  EXPECT_GE(recorder.reports.back().offset, next_offset[0]);
}

TEST_F(TransactionalProducerTest, AbortFailsTheRecordsNotYetSentAndTheProducerCarriesOn) {
  CreateTopic("abort");
  auto producer = NewProducer("abort-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());
  InitAndBegin(*producer, recorder, "abort");

  // A slow broker holds the records back: they wait for their partition to join the
  // transaction (AddPartitionsToTxn) when the abort purges them.
  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock(), kBrokerId, 300), RD_KAFKA_RESP_ERR_NO_ERROR);
  for (uint64_t token = 1; token <= 5; ++token) ProduceQueued(*producer, "abort", token);
  ExpectOk(Run(*producer, recorder, TransactionOp::kAbort));

  ASSERT_EQ(recorder.reports.size(), 5u);
  std::set<uint64_t> tokens;
  for (const auto& report : recorder.reports) {
    EXPECT_FALSE(report.ok);
    EXPECT_EQ(report.error_code, RD_KAFKA_RESP_ERR__PURGE_QUEUE) << report.error_name;
    tokens.insert(report.token);
  }
  EXPECT_EQ(tokens, (std::set<uint64_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(recorder.sequence, "tddddd" "t") << "reports come before the abort's result";

  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock(), kBrokerId, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
  std::string error;
  ASSERT_TRUE(producer->BeginTransaction(&error)) << error;
  ProduceQueued(*producer, "abort", 6);
  ExpectOk(Run(*producer, recorder, TransactionOp::kCommit));
  ASSERT_EQ(recorder.reports.size(), 6u);
  EXPECT_TRUE(recorder.reports.back().ok) << recorder.reports.back().error_name;
  EXPECT_TRUE(recorder.fatal_errors.empty());
}

TEST_F(TransactionalProducerTest, AbortAfterDeliveryKeepsTheOkReports) {
  CreateTopic("abort-late");
  auto producer = NewProducer("abort-late-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());
  InitAndBegin(*producer, recorder, "abort-late");
  ProduceQueued(*producer, "abort-late", 1);
  ASSERT_TRUE(ServeUntil(*producer, recorder, [&] { return recorder.reports.size() == 1; }));
  EXPECT_TRUE(recorder.reports[0].ok);

  ExpectOk(Run(*producer, recorder, TransactionOp::kAbort));
  EXPECT_EQ(recorder.reports.size(), 1u) << "a delivered record gets no second report";
}

struct EndTxnCase {
  const char* name;
  rd_kafka_resp_err_t injected;
  bool ok;
  bool retriable;
  bool abortable;
  bool fatal;
  bool fenced;
  const char* fatal_error = nullptr;  // the producer's fatal error name, when fatal
};

void PrintTo(const EndTxnCase& c, std::ostream* out) { *out << c.name; }

class EndTxnErrorTest : public TransactionalProducerTest, public ::testing::WithParamInterface<EndTxnCase> {};

// What librdkafka 2.0.2 makes of an error answer to the commit's EndTxn request.
TEST_P(EndTxnErrorTest, CommitResultIsClassifiedAsLibrdkafkaDoes) {
  const EndTxnCase& c = GetParam();
  CreateTopic("endtxn");
  auto producer = NewProducer(std::string("endtxn-") + c.name);
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());
  InitAndBegin(*producer, recorder, "endtxn");
  ProduceQueued(*producer, "endtxn", 1);
  rd_kafka_mock_push_request_errors(mock(), kEndTxnApi, 1, c.injected);

  const auto result = Run(*producer, recorder, TransactionOp::kCommit);
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->ok, c.ok) << Flags(*result);
  EXPECT_EQ(result->retriable, c.retriable) << Flags(*result);
  EXPECT_EQ(result->abortable, c.abortable) << Flags(*result);
  EXPECT_EQ(result->fatal, c.fatal) << Flags(*result);
  EXPECT_EQ(result->fenced, c.fenced) << Flags(*result);
  ASSERT_EQ(recorder.reports.size(), 1u);
  EXPECT_TRUE(recorder.reports[0].ok) << "the record itself was delivered";

  if (c.fatal) {
    // The producer is dead: OnFatalError comes once, and nothing is produced any more.
    ASSERT_EQ(recorder.fatal_errors.size(), 1u);
    EXPECT_EQ(recorder.fatal_errors[0].rfind(std::string(c.fatal_error) + ": ", 0), 0u) << recorder.fatal_errors[0];
    EXPECT_STREQ(rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(result->error_code)), c.fatal_error);
    std::string error;
    EXPECT_FALSE(producer->BeginTransaction(&error));
    EXPECT_EQ(Produce(*producer, "endtxn", 2, -1, &error), ProduceResult::kRejected) << error;
    return;
  }
  EXPECT_TRUE(recorder.fatal_errors.empty());
  if (c.abortable) ExpectOk(Run(*producer, recorder, TransactionOp::kAbort));
  // Either way the producer takes the next transaction.
  std::string error;
  ASSERT_TRUE(producer->BeginTransaction(&error)) << error;
  ProduceQueued(*producer, "endtxn", 2);
  ExpectOk(Run(*producer, recorder, TransactionOp::kCommit));
}

INSTANTIATE_TEST_SUITE_P(
    Librdkafka202, EndTxnErrorTest,
    ::testing::Values(
        // Retried by librdkafka itself after finding the coordinator again: the commit succeeds.
        EndTxnCase{"CoordinatorNotAvailable", RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, true, false, false, false,
                   false},
        EndTxnCase{"NotCoordinator", RD_KAFKA_RESP_ERR_NOT_COORDINATOR, true, false, false, false, false},
        EndTxnCase{"ConcurrentTransactions", RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS, true, false, false, false,
                   false},
        // Errors librdkafka has no rule for are "permanent": the transaction must be aborted.
        EndTxnCase{"UnknownProducerId", RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID, false, false, true, false, false},
        EndTxnCase{"TopicAuthorizationFailed", RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, false, false, true, false,
                   false},
        // INVALID_TXN_STATE is fatal, not abortable, in librdkafka.
        EndTxnCase{"InvalidTxnState", RD_KAFKA_RESP_ERR_INVALID_TXN_STATE, false, false, false, true, false,
                   "INVALID_TXN_STATE"},
        EndTxnCase{"TransactionalIdAuthorizationFailed", RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                   false, false, false, true, false, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"},
        // librdkafka reports both fencing errors as its own _FENCED.
        EndTxnCase{"ProducerFenced", RD_KAFKA_RESP_ERR_PRODUCER_FENCED, false, false, false, true, true, "_FENCED"},
        EndTxnCase{"InvalidProducerEpoch", RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH, false, false, false, true, true,
                   "_FENCED"}),
    [](const ::testing::TestParamInfo<EndTxnCase>& param) { return std::string(param.param.name); });

TEST_F(TransactionalProducerTest, FailedRecordMakesTheCommitAbortable) {
  CreateTopic("bad-record");
  auto producer = NewProducer("bad-record-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());
  InitAndBegin(*producer, recorder, "bad-record");
  rd_kafka_mock_push_request_errors(mock(), kProduceApi, 1, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  ProduceQueued(*producer, "bad-record", 1);

  const auto result = Run(*producer, recorder, TransactionOp::kCommit);
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->ok);
  EXPECT_TRUE(result->abortable) << Flags(*result);
  EXPECT_FALSE(result->fatal) << Flags(*result);
  ASSERT_EQ(recorder.reports.size(), 1u);
  EXPECT_FALSE(recorder.reports[0].ok);
  EXPECT_EQ(recorder.reports[0].error_code, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  EXPECT_EQ(recorder.sequence, "tdt");

  // Until the abort, the failed transaction takes no records.
  std::string error;
  EXPECT_EQ(Produce(*producer, "bad-record", 2, -1, &error), ProduceResult::kQueueFull);
  EXPECT_NE(error.find("no open transaction"), std::string::npos) << error;
  ExpectOk(Run(*producer, recorder, TransactionOp::kAbort));
  // librdkafka now refuses records to "bad-record" locally until its next metadata refresh.
  CreateTopic("good-record");
  producer->WarmUp({"good-record"}, milliseconds(5000));
  ASSERT_TRUE(producer->BeginTransaction(&error)) << error;
  ProduceQueued(*producer, "good-record", 3);
  ExpectOk(Run(*producer, recorder, TransactionOp::kCommit));
  ASSERT_EQ(recorder.reports.size(), 2u);
  EXPECT_EQ(recorder.reports[1].token, 3u);
  EXPECT_TRUE(recorder.reports[1].ok) << recorder.reports[1].error_name;
  EXPECT_TRUE(recorder.fatal_errors.empty());
}

TEST_F(TransactionalProducerTest, StartCallsReturnAtOnceWhileTheBrokerIsSlow) {
  CreateTopic("slow");
  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock(), kBrokerId, 300), RD_KAFKA_RESP_ERR_NO_ERROR);
  auto producer = NewProducer("slow-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());

  auto start = steady_clock::now();
  producer->StartInitTransactions(kOpTimeout);
  EXPECT_LT(steady_clock::now() - start, milliseconds(5));
  ASSERT_TRUE(ServeUntil(*producer, recorder, [&] { return !recorder.results.empty(); }));
  ExpectOk(recorder.results[0]);
  EXPECT_GE(steady_clock::now() - start, milliseconds(300)) << "the broker was not slow";

  producer->WarmUp({"slow"}, milliseconds(5000));
  start = steady_clock::now();
  std::string error;
  ASSERT_TRUE(producer->BeginTransaction(&error)) << error;
  EXPECT_LT(steady_clock::now() - start, milliseconds(50)) << "begin should not wait for a broker";
  for (uint64_t token = 1; token <= 3; ++token) ProduceQueued(*producer, "slow", token);

  start = steady_clock::now();
  producer->StartCommitTransaction(kOpTimeout);
  const auto start_took = steady_clock::now() - start;
  EXPECT_LT(start_took, milliseconds(5))
      << std::chrono::duration_cast<std::chrono::microseconds>(start_took).count() << " us";
  ASSERT_TRUE(ServeUntil(*producer, recorder, [&] { return recorder.results.size() == 2; }));
  ExpectOk(recorder.results[1]);
  EXPECT_GE(steady_clock::now() - start, milliseconds(600)) << "AddPartitionsToTxn, Produce and EndTxn each wait";
  EXPECT_EQ(recorder.reports.size(), 3u);

  ASSERT_TRUE(producer->BeginTransaction(&error)) << error;
  ProduceQueued(*producer, "slow", 4);
  start = steady_clock::now();
  producer->StartAbortTransaction(kOpTimeout);
  EXPECT_LT(steady_clock::now() - start, milliseconds(5));
  ASSERT_TRUE(ServeUntil(*producer, recorder, [&] { return recorder.results.size() == 3; }));
  ExpectOk(recorder.results[2]);
}

TEST_F(TransactionalProducerTest, WakeupFdBecomesReadableWhenAResultIsReady) {
  auto producer = NewProducer("wakeup-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());
  producer->StartInitTransactions(kOpTimeout);

  // Nothing else happens on this producer: the wakeups seen here are librdkafka's (if any)
  // and the result's.
  const auto deadline = steady_clock::now() + milliseconds(10000);
  int wakeups = 0;
  while (recorder.results.empty() && wakeups < 100) {
    const auto remaining = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
    if (remaining.count() <= 0) break;
    pollfd wakeup{producer->wakeup_fd(), POLLIN, 0};
    ASSERT_EQ(poll(&wakeup, 1, static_cast<int>(remaining.count())), 1) << "no wakeup before the deadline";
    ++wakeups;
    producer->Poll(recorder);
  }
  ASSERT_EQ(recorder.results.size(), 1u) << wakeups << " wakeups";
  ExpectOk(recorder.results[0]);
  pollfd wakeup{producer->wakeup_fd(), POLLIN, 0};
  EXPECT_EQ(poll(&wakeup, 1, 0), 0) << "Poll drained the wakeup";
}

TEST_F(TransactionalProducerTest, FlushServesAReadyResult) {
  auto producer = NewProducer("flush-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());
  producer->StartInitTransactions(kOpTimeout);
  const auto deadline = steady_clock::now() + milliseconds(10000);
  for (int i = 0; i < 100 && recorder.results.empty() && steady_clock::now() < deadline; ++i) {
    pollfd wakeup{producer->wakeup_fd(), POLLIN, 0};
    if (poll(&wakeup, 1, 1000) == 1) {
      EXPECT_TRUE(producer->Flush(milliseconds(1000), recorder));
    }
  }
  ASSERT_EQ(recorder.results.size(), 1u);
  ExpectOk(recorder.results[0]);
}

TEST_F(TransactionalProducerTest, RecordsWaitForTheNextTransactionWhileACommitRuns) {
  CreateTopic("between");
  auto producer = NewProducer("between-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());

  producer->StartInitTransactions(kOpTimeout);
  std::string error;
  EXPECT_EQ(Produce(*producer, "between", 1, -1, &error), ProduceResult::kQueueFull) << "during init";
  EXPECT_FALSE(producer->BeginTransaction(&error)) << "during init";
  EXPECT_NE(error.find("init is running"), std::string::npos) << error;
  ASSERT_TRUE(ServeUntil(*producer, recorder, [&] { return !recorder.results.empty(); }));
  ExpectOk(recorder.results[0]);
  producer->WarmUp({"between"}, milliseconds(5000));

  EXPECT_EQ(Produce(*producer, "between", 2, -1, &error), ProduceResult::kQueueFull) << "before begin";
  EXPECT_NE(error.find("no open transaction"), std::string::npos) << error;

  ASSERT_TRUE(producer->BeginTransaction(&error)) << error;
  ProduceQueued(*producer, "between", 3);
  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock(), kBrokerId, 200), RD_KAFKA_RESP_ERR_NO_ERROR);
  producer->StartCommitTransaction(kOpTimeout);
  EXPECT_EQ(Produce(*producer, "between", 4, -1, &error), ProduceResult::kQueueFull);
  EXPECT_NE(error.find("commit is running"), std::string::npos) << error;
  EXPECT_FALSE(producer->BeginTransaction(&error));
  ASSERT_TRUE(ServeUntil(*producer, recorder, [&] { return recorder.results.size() == 2; }));
  ExpectOk(recorder.results[1]);

  EXPECT_EQ(Produce(*producer, "between", 5, -1, &error), ProduceResult::kQueueFull) << "after commit, before begin";
  ASSERT_TRUE(producer->BeginTransaction(&error)) << error;
  ProduceQueued(*producer, "between", 6);
  ExpectOk(Run(*producer, recorder, TransactionOp::kCommit));

  std::vector<uint64_t> tokens;
  for (const auto& report : recorder.reports) {
    EXPECT_TRUE(report.ok) << report.error_name;
    tokens.push_back(report.token);
  }
  EXPECT_EQ(tokens, (std::vector<uint64_t>{3, 6})) << "refused records get no report";
}

TEST_F(TransactionalProducerTest, TimedOutInitCanBeStartedAgain) {
  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock(), kBrokerId, 500), RD_KAFKA_RESP_ERR_NO_ERROR);
  auto producer = NewProducer("init-timeout-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());
  const auto first = Run(*producer, recorder, TransactionOp::kInit, milliseconds(100));
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(first->ok);
  EXPECT_TRUE(first->retriable) << Flags(*first);
  EXPECT_FALSE(first->abortable || first->fatal) << Flags(*first);
  EXPECT_EQ(first->error_code, RD_KAFKA_RESP_ERR__TIMED_OUT) << Flags(*first);

  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock(), kBrokerId, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
  ExpectOk(Run(*producer, recorder, TransactionOp::kInit));
  std::string error;
  EXPECT_TRUE(producer->BeginTransaction(&error)) << error;
  EXPECT_TRUE(recorder.fatal_errors.empty());
}

TEST_F(TransactionalProducerTest, TimedOutCommitCanBeStartedAgain) {
  CreateTopic("commit-timeout");
  auto producer = NewProducer("commit-timeout-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());
  InitAndBegin(*producer, recorder, "commit-timeout");
  ProduceQueued(*producer, "commit-timeout", 1);
  ASSERT_TRUE(ServeUntil(*producer, recorder, [&] { return recorder.reports.size() == 1; }));
  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock(), kBrokerId, 500), RD_KAFKA_RESP_ERR_NO_ERROR);

  const auto first = Run(*producer, recorder, TransactionOp::kCommit, milliseconds(100));
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(first->ok);
  EXPECT_TRUE(first->retriable) << Flags(*first);
  EXPECT_FALSE(first->abortable || first->fatal) << Flags(*first);

  ExpectOk(Run(*producer, recorder, TransactionOp::kCommit));
  EXPECT_EQ(recorder.reports.size(), 1u);
  EXPECT_TRUE(recorder.reports[0].ok);
  std::string error;
  EXPECT_TRUE(producer->BeginTransaction(&error)) << error;
}

// The 2.0.2 mock does not fence: a second producer initialising the same transactional.id
// leaves the first one working. A real broker bumps the epoch and the first producer's next
// transactional request fails with PRODUCER_FENCED (fatal, fenced). This test pins down the
// mock's behaviour so that a change to it shows.
TEST_F(TransactionalProducerTest, MockLimitationSecondInitDoesNotFenceTheFirstProducer) {
  CreateTopic("fence");
  auto first = NewProducer("shared-id");
  ASSERT_NE(first, nullptr);
  Recorder first_recorder(first.get());
  InitAndBegin(*first, first_recorder, "fence");
  ProduceQueued(*first, "fence", 1);
  ASSERT_TRUE(ServeUntil(*first, first_recorder, [&] { return first_recorder.reports.size() == 1; }));

  auto second = NewProducer("shared-id");
  ASSERT_NE(second, nullptr);
  Recorder second_recorder(second.get());
  ExpectOk(Run(*second, second_recorder, TransactionOp::kInit));

  ProduceQueued(*first, "fence", 2);
  const auto result = Run(*first, first_recorder, TransactionOp::kCommit);
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->ok) << Flags(*result);
  EXPECT_FALSE(result->fenced) << Flags(*result);
  EXPECT_TRUE(first_recorder.fatal_errors.empty());
  ASSERT_EQ(first_recorder.reports.size(), 2u);
  EXPECT_TRUE(first_recorder.reports[1].ok) << first_recorder.reports[1].error_name;
}

TEST_F(TransactionalProducerTest, DestroyingWaitsForTheRunningCommit) {
  CreateTopic("destroy");
  auto producer = NewProducer("destroy-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());
  InitAndBegin(*producer, recorder, "destroy");
  for (uint64_t token = 1; token <= 3; ++token) ProduceQueued(*producer, "destroy", token);
  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock(), kBrokerId, 300), RD_KAFKA_RESP_ERR_NO_ERROR);
  producer->StartCommitTransaction(milliseconds(4000));
  ASSERT_TRUE(producer->transaction_op_running());

  const auto start = steady_clock::now();
  producer.reset();
  const auto took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
  EXPECT_LT(took, milliseconds(4500)) << "longer than the commit's own timeout";
  EXPECT_EQ(recorder.results.size(), 1u) << "only init's result: nobody is served after destruction";
  EXPECT_EQ(recorder.reports.size(), 0u);
}

TEST_F(TransactionalProducerTest, RecordsGoToTheirOwnPartition) {
  CreateTopic("partitions", 3);
  std::string error;
  auto producer = KafkaProducer::Create(Settings(std::nullopt), &error);
  ASSERT_NE(producer, nullptr) << error;
  producer->WarmUp({"partitions"}, milliseconds(5000));
  Recorder recorder;
  for (uint64_t token = 0; token < 6; ++token) {
    OutgoingRecord record;
    record.topic = "partitions";
    record.key = "one key";  // the partitioner would send all of them to one partition
    record.value = "v";
    record.token = token;
    record.partition = static_cast<int32_t>(token % 3);
    ASSERT_EQ(producer->Produce(record, &error), ProduceResult::kQueued) << error;
  }
  OutgoingRecord chosen;
  chosen.topic = "partitions";
  chosen.key = "one key";
  chosen.token = 6;
  ASSERT_EQ(producer->Produce(chosen, &error), ProduceResult::kQueued) << error;
  ASSERT_TRUE(ServeUntil(*producer, recorder, [&] { return recorder.reports.size() == 7; }));
  // A partition the topic does not have, once librdkafka knows the topic (WarmUp above).
  OutgoingRecord missing;
  missing.topic = "partitions";
  missing.token = 7;
  missing.partition = 7;
  EXPECT_EQ(producer->Produce(missing, &error), ProduceResult::kRejected);
  EXPECT_NE(error.find("_UNKNOWN_PARTITION"), std::string::npos) << error;
  std::set<int32_t> used;
  for (const auto& report : recorder.reports) {
    EXPECT_TRUE(report.ok) << report.error_name;
    if (report.token < 6) {
      EXPECT_EQ(report.partition, static_cast<int32_t>(report.token % 3));
    }
    used.insert(report.partition);
  }
  EXPECT_EQ(used.size(), 3u);
}


// Seen with librdkafka 2.0.2 against the mock: a record refused by the broker (INVALID_RECORD)
// still used up its sequence number, and the abort does not bump the producer epoch, so the
// next transaction to that partition fails too (OUT_OF_ORDER_SEQUENCE_NUMBER, abortable, and
// flagged "requires epoch bump"). Its abort bumps the epoch, and the third transaction commits.
TEST_F(TransactionalProducerTest, Librdkafka202AFailedRecordAlsoFailsTheNextTransactionToItsPartition) {
  CreateTopic("same");
  auto producer = NewProducer("same-id");
  ASSERT_NE(producer, nullptr);
  Recorder recorder(producer.get());
  InitAndBegin(*producer, recorder, "same");
  rd_kafka_mock_push_request_errors(mock(), kProduceApi, 1, RD_KAFKA_RESP_ERR_INVALID_RECORD);
  ProduceQueued(*producer, "same", 1);
  auto result = Run(*producer, recorder, TransactionOp::kCommit);
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->abortable) << Flags(*result);
  EXPECT_EQ(result->error_code, RD_KAFKA_RESP_ERR_INVALID_RECORD) << Flags(*result);
  ExpectOk(Run(*producer, recorder, TransactionOp::kAbort));

  std::string error;
  ASSERT_TRUE(producer->BeginTransaction(&error)) << error;
  ProduceQueued(*producer, "same", 2);
  result = Run(*producer, recorder, TransactionOp::kCommit);
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->abortable) << Flags(*result);
  EXPECT_EQ(result->error_code, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER) << Flags(*result);
  ExpectOk(Run(*producer, recorder, TransactionOp::kAbort));

  ASSERT_TRUE(producer->BeginTransaction(&error)) << error;
  ProduceQueued(*producer, "same", 3);
  ExpectOk(Run(*producer, recorder, TransactionOp::kCommit));

  ASSERT_EQ(recorder.reports.size(), 3u);
  EXPECT_EQ(recorder.reports[0].error_code, RD_KAFKA_RESP_ERR_INVALID_RECORD);
  EXPECT_EQ(recorder.reports[1].error_code, RD_KAFKA_RESP_ERR__PURGE_QUEUE);
  EXPECT_TRUE(recorder.reports[2].ok) << recorder.reports[2].error_name;
  EXPECT_TRUE(recorder.fatal_errors.empty());
}

// Where the user's value of `name` ended up: the last one applied.
std::optional<std::string> LastValue(const PropertyList& properties, const std::string& name) {
  std::optional<std::string> value;
  for (const auto& [property, property_value] : properties) {
    if (property == name) value = property_value;
  }
  return value;
}

TEST(TransactionalPropertiesTest, TransactionalProducersBoundRecordsByTheTransactionTimeout) {
  ProducerSettings settings;
  settings.bootstrap_servers = "127.0.0.1:9092";
  EXPECT_EQ(LastValue(EffectiveProducerProperties(settings), "message.timeout.ms"), "0");
  EXPECT_EQ(LastValue(EffectiveProducerProperties(settings), "transactional.id"), std::nullopt);

  settings.transactional_id = "group-3";
  PropertyList effective = EffectiveProducerProperties(settings);
  EXPECT_EQ(LastValue(effective, "transactional.id"), "group-3");
  EXPECT_EQ(LastValue(effective, "message.timeout.ms"), "60000") << "librdkafka's default transaction timeout";
  EXPECT_EQ(LastValue(effective, "transaction.timeout.ms"), std::nullopt);
  EXPECT_EQ(LastValue(effective, "enable.idempotence"), "true");
  EXPECT_EQ(effective.back().first, "bootstrap.servers");
  EXPECT_EQ(ValidateProducerSettings(settings), std::nullopt);

  settings.transaction_timeout = milliseconds(10000);
  effective = EffectiveProducerProperties(settings);
  EXPECT_EQ(LastValue(effective, "transaction.timeout.ms"), "10000");
  EXPECT_EQ(LastValue(effective, "message.timeout.ms"), "10000");
  EXPECT_EQ(ValidateProducerSettings(settings), std::nullopt);

  // The user's infinite timeout does not survive in a transaction; a smaller finite one does.
  settings.properties = {{"message.timeout.ms", "0"}};
  EXPECT_EQ(LastValue(EffectiveProducerProperties(settings), "message.timeout.ms"), "10000");
  settings.properties = {{"delivery.timeout.ms", "0"}};
  EXPECT_EQ(LastValue(EffectiveProducerProperties(settings), "message.timeout.ms"), "10000");
  settings.properties = {{"message.timeout.ms", "5000"}};
  EXPECT_EQ(LastValue(EffectiveProducerProperties(settings), "message.timeout.ms"), "5000");
  EXPECT_EQ(ValidateProducerSettings(settings), std::nullopt);
  // librdkafka refuses a larger one.
  settings.properties = {{"message.timeout.ms", "20000"}};
  const auto too_long = ValidateProducerSettings(settings);
  ASSERT_TRUE(too_long.has_value());
  EXPECT_NE(too_long->find("transaction.timeout.ms"), std::string::npos) << *too_long;

  // Without a settings value the user's transaction.timeout.ms bounds the records.
  settings.transaction_timeout = milliseconds(0);
  settings.properties = {{"transaction.timeout.ms", "20000"}};
  EXPECT_EQ(EffectiveTransactionTimeout(settings), milliseconds(20000));
  EXPECT_EQ(LastValue(EffectiveProducerProperties(settings), "message.timeout.ms"), "20000");
  EXPECT_EQ(ValidateProducerSettings(settings), std::nullopt);

  // Users still cannot name the transactional.id themselves.
  EXPECT_TRUE(ValidateProducerProperty("transactional.id", "mine").has_value());
}

}  // namespace
}  // namespace sse2kafka::sink
