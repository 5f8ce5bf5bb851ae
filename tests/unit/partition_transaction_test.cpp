// The exactly-once transaction of one state partition (PartitionTransaction) on a real event loop
// with a transactional producer against librdkafka's in-process mock cluster (EmbeddedCluster),
// and a fake Host that records what it is told.
//
// librdkafka 2.0.2's mock writes no transaction markers, so a consumer sees the records of
// aborted and open transactions too (see /work/shared/notes/kafka-mock-cluster.md). These tests
// therefore assert on what the host is told, on committed(), and on which records were written,
// never on read_committed visibility.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bridge/partition_transaction.h"
#include "bridge/pipeline_host.h"
#include "http/event_loop.h"
#include "sink/embedded_cluster.h"
#include "sink/kafka_producer.h"
#include "sink/state_topic.h"
#include "support/run_loop.h"

namespace sse2kafka::bridge {
namespace {

using std::chrono::milliseconds;
using test_support::RunLoopFor;
using test_support::RunLoopUntil;

// Kafka protocol API keys, for rd_kafka_mock_push_request_errors.
constexpr int16_t kProduceApi = 0;
constexpr int16_t kEndTxnApi = 26;

constexpr char kEventTopic[] = "events";
constexpr char kStateTopic[] = "state";
constexpr int32_t kPartition = 1;  // of the state topic's two: records must not land in 0
constexpr char kInstance[] = "test-host/4242";
constexpr milliseconds kWait{10000};  // a deadline for what should take milliseconds
constexpr milliseconds kLong{60000};  // an interval that never elapses within a test

struct ConsumedRecord {
  std::optional<std::string> key;
  std::string value;
};

// Every record of one partition from its beginning to its current end (high watermark), read
// with a plain consumer that joins no group. Fails the test when the end is not reached in time.
std::vector<ConsumedRecord> ReadPartition(const std::string& bootstrap, const std::string& topic, int32_t partition) {
  std::vector<ConsumedRecord> records;
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [name, value] : std::vector<std::pair<const char*, std::string>>{
           {"bootstrap.servers", bootstrap},
           // The consumer poll API needs a group id; the group is never joined (no subscribe).
           {"group.id", "partition-transaction-test-reader"},
           {"enable.auto.commit", "false"},
           {"fetch.wait.max.ms", "20"},
           {"isolation.level", "read_uncommitted"}}) {
    if (rd_kafka_conf_set(conf, name, value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      ADD_FAILURE() << name << ": " << errstr;
      rd_kafka_conf_destroy(conf);
      return records;
    }
  }
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (consumer == nullptr) {
    ADD_FAILURE() << errstr;
    rd_kafka_conf_destroy(conf);
    return records;
  }
  int64_t low = 0;
  int64_t high = 0;
  const rd_kafka_resp_err_t watermarks =
      rd_kafka_query_watermark_offsets(consumer, topic.c_str(), partition, &low, &high, 5000);
  if (watermarks != RD_KAFKA_RESP_ERR_NO_ERROR) {
    ADD_FAILURE() << "watermarks of " << topic << "/" << partition << ": " << rd_kafka_err2str(watermarks);
  } else if (high > low) {
    rd_kafka_topic_partition_list_t* assignment = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(assignment, topic.c_str(), partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(consumer, assignment);
    rd_kafka_topic_partition_list_destroy(assignment);
    int64_t next = low;
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (next < high && std::chrono::steady_clock::now() < deadline) {
      rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer, 100);
      if (message == nullptr) continue;
      if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ConsumedRecord record;
        if (message->key != nullptr) {
          record.key = std::string(static_cast<const char*>(message->key), message->key_len);
        }
        if (message->payload != nullptr) {
          record.value = std::string(static_cast<const char*>(message->payload), message->len);
        }
        records.push_back(std::move(record));
        next = message->offset + 1;
      }
      rd_kafka_message_destroy(message);
    }
    EXPECT_GE(next, high) << "could not read " << topic << "/" << partition << " to its end in time";
    rd_kafka_assign(consumer, nullptr);
  }
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  return records;
}

// stream -> last_event_id of each checkpoint record, in the order written.
std::vector<std::pair<std::string, std::string>> CheckpointRecords(const std::vector<ConsumedRecord>& records) {
  std::vector<std::pair<std::string, std::string>> checkpoints;
  for (const ConsumedRecord& record : records) {
    const std::optional<std::string> id = sink::DecodeCheckpointValue(record.value);
    EXPECT_TRUE(record.key.has_value());
    EXPECT_TRUE(id.has_value()) << record.value;
    EXPECT_NE(record.value.find(std::string("\"instance\":\"") + kInstance + "\""), std::string::npos)
        << record.value;
    if (record.key && id) checkpoints.emplace_back(*record.key, *id);
  }
  return checkpoints;
}

using Checkpoints = std::map<std::string, std::string>;
using CheckpointList = std::vector<std::pair<std::string, std::string>>;

// Records what the transaction tells its host; behaves as the bridge does where the transaction
// depends on it (an abort rewinds the streams' checkpoints to committed()).
class FakeHost : public PartitionTransaction::Host {
 public:
  explicit FakeHost(http::EventLoop& loop) : loop_(loop) {}

  http::EventLoop& loop() override { return loop_; }

  void OnTransactionalDelivery(const sink::DeliveryReport& report) override {
    EXPECT_NE(PipelineHost::SlotOf(report.token), 0u) << "checkpoint records are not the host's";
    deliveries.push_back(report.token);
    if (report.ok) {
      ++delivered_ok;
    } else {
      failures.emplace_back(report.error_name);
    }
  }

  void AfterTransactionalDeliveries() override {
    ++after_deliveries_calls;
    if (after_deliveries) after_deliveries();
  }

  void OnTransactionsReady(int32_t partition) override {
    ready.push_back(partition);
    ready_at = loop_.now();
  }

  CheckpointList CurrentCheckpoints(int32_t partition) override {
    EXPECT_EQ(partition, kPartition);
    if (transaction != nullptr && transaction->events_in_flight() > 0) ++asked_with_events_in_flight;
    ++checkpoint_calls;
    return CheckpointList(checkpoints.begin(), checkpoints.end());
  }

  void OnTransactionCommitted(int32_t partition) override {
    EXPECT_EQ(partition, kPartition);
    ++committed;
    committed_at = loop_.now();
    if (transaction != nullptr) committed_seen.push_back(transaction->committed());
  }

  void OnTransactionAborted(int32_t partition, const std::string& reason) override {
    EXPECT_EQ(partition, kPartition);
    aborted.push_back(reason);
    if (transaction != nullptr) checkpoints = transaction->committed();  // the rewind
  }

  void OnPartitionFenced(int32_t partition, bool fenced_by_owner, const std::string& reason) override {
    EXPECT_EQ(partition, kPartition);
    fenced.emplace_back(fenced_by_owner, reason);
  }

  bool transactions_held() const override { return held; }

  PartitionTransaction* transaction = nullptr;
  Checkpoints checkpoints;  // what CurrentCheckpoints answers
  bool held = false;
  std::function<void()> after_deliveries;

  std::vector<uint64_t> deliveries;  // tokens, in report order
  int delivered_ok = 0;
  std::vector<std::string> failures;  // error names of failed reports
  int after_deliveries_calls = 0;
  std::vector<int32_t> ready;
  http::Clock::time_point ready_at{};
  int checkpoint_calls = 0;
  int asked_with_events_in_flight = 0;
  int committed = 0;
  http::Clock::time_point committed_at{};
  std::vector<Checkpoints> committed_seen;  // committed() as seen in each OnTransactionCommitted
  std::vector<std::string> aborted;         // reasons
  std::vector<std::pair<bool, std::string>> fenced;

 private:
  http::EventLoop& loop_;
};

class PartitionTransactionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    cluster_ = sink::EmbeddedCluster::Start(1, &error);
    ASSERT_NE(cluster_, nullptr) << error;
    ASSERT_TRUE(cluster_->CreateTopic(kEventTopic, 1));
    ASSERT_TRUE(cluster_->CreateTopic(kStateTopic, 2));
    loop_ = http::EventLoop::Create(&error);
    ASSERT_NE(loop_, nullptr) << error;
    host_ = std::make_unique<FakeHost>(*loop_);
  }

  void TearDown() override {
    if (host_) {
      EXPECT_EQ(host_->asked_with_events_in_flight, 0) << "CurrentCheckpoints while events were in flight";
    }
    transaction_.reset();
    host_.reset();
    loop_.reset();
    cluster_.reset();
  }

  static PartitionTransaction::Options Options(milliseconds interval = milliseconds(100), std::size_t max_events = 10000) {
    PartitionTransaction::Options options;
    options.partition = kPartition;
    options.state_topic = kStateTopic;
    options.instance = kInstance;
    options.interval = interval;
    options.max_events = max_events;
    options.operation_timeout = kWait;
    return options;
  }

  // Creates the transaction over a fresh transactional producer whose metadata is warm.
  void Create(PartitionTransaction::Options options) {
    sink::ProducerSettings settings;
    settings.bootstrap_servers = cluster_->bootstrap_servers();
    settings.properties = {{"statistics.interval.ms", "0"}};
    settings.max_in_flight_events = 1000;
    settings.max_in_flight_bytes = 1 << 20;
    settings.transactional_id = std::string("txn-") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::string error;
    auto producer = sink::KafkaProducer::Create(settings, &error);
    ASSERT_NE(producer, nullptr) << error;
    producer->WarmUp({kEventTopic, kStateTopic}, milliseconds(5000));
    transaction_ = std::make_unique<PartitionTransaction>(std::move(options), std::move(producer), *host_);
    host_->transaction = transaction_.get();
  }

  // Creates the transaction, starts it and waits for OnTransactionsReady.
  void CreateAndStart(PartitionTransaction::Options options, Checkpoints committed = {}) {
    Create(std::move(options));
    ASSERT_NE(transaction_, nullptr);
    transaction_->Start();
    ASSERT_TRUE(RunLoopUntil(*loop_, [&] { return !host_->ready.empty() || !host_->fenced.empty(); }, kWait));
    ASSERT_EQ(host_->ready, std::vector<int32_t>{kPartition});
    ASSERT_TRUE(host_->fenced.empty()) << host_->fenced[0].second;
    // As the bridge does: the committed checkpoints are read after init and the streams start there.
    host_->checkpoints = committed;
    transaction_->SetCommitted(std::move(committed));
  }

  // Hands one event record (token slot 1) to the transaction.
  sink::ProduceResult ProduceEvent(uint64_t sequence, std::string* error = nullptr) {
    const std::string value = "event " + std::to_string(sequence);
    sink::OutgoingRecord record;
    record.topic = kEventTopic;
    record.key = "k";
    record.value = value;
    record.token = PipelineHost::Token(1, sequence);
    std::string ignored;
    return transaction_->Produce(record, error != nullptr ? error : &ignored);
  }

  void ProduceQueued(uint64_t sequence) {
    std::string error;
    EXPECT_EQ(ProduceEvent(sequence, &error), sink::ProduceResult::kQueued) << error;
  }

  bool RunUntil(const std::function<bool()>& done, milliseconds timeout = kWait) {
    return RunLoopUntil(*loop_, done, timeout);
  }

  std::vector<std::string> EventValues() {
    std::vector<std::string> values;
    for (const ConsumedRecord& record : ReadPartition(cluster_->bootstrap_servers(), kEventTopic, 0)) {
      values.push_back(record.value);
    }
    return values;
  }

  CheckpointList StateRecords(int32_t partition = kPartition) {
    return CheckpointRecords(ReadPartition(cluster_->bootstrap_servers(), kStateTopic, partition));
  }

  rd_kafka_mock_cluster_t* mock() const { return cluster_->mock(); }

  std::unique_ptr<sink::EmbeddedCluster> cluster_;
  std::unique_ptr<http::EventLoop> loop_;
  std::unique_ptr<FakeHost> host_;
  std::unique_ptr<PartitionTransaction> transaction_;
};

TEST_F(PartitionTransactionTest, StartReportsReadyAndCommitsNothingWithoutChanges) {
  CreateAndStart(Options(milliseconds(50)), {{"s1", "1"}});
  EXPECT_EQ(transaction_->partition(), kPartition);
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "1"}}));
  // Several intervals pass: every tick asks for the checkpoints, none changed, nothing commits.
  RunLoopFor(*loop_, milliseconds(300));
  EXPECT_GE(host_->checkpoint_calls, 2);
  EXPECT_EQ(host_->committed, 0);
  EXPECT_EQ(transaction_->commits(), 0u);
  EXPECT_EQ(transaction_->aborts(), 0u);
  EXPECT_TRUE(host_->fenced.empty());
  EXPECT_TRUE(StateRecords().empty());
}

TEST_F(PartitionTransactionTest, CommitsEventsWithTheChangedCheckpointsAfterTheInterval) {
  const milliseconds interval(200);
  CreateAndStart(Options(interval), {{"s1", "1"}, {"s2", "5"}});
  for (uint64_t i = 1; i <= 3; ++i) ProduceQueued(i);
  EXPECT_EQ(transaction_->events_in_flight(), 3u);
  EXPECT_GT(transaction_->event_bytes_in_flight(), 0u);
  // The streams moved: s1 and the new s3 changed, s2 did not.
  host_->checkpoints = {{"s1", "3"}, {"s2", "5"}, {"s3", "9"}};

  ASSERT_TRUE(RunUntil([&] { return host_->committed > 0 || !host_->aborted.empty(); }));
  ASSERT_TRUE(host_->aborted.empty()) << host_->aborted[0];
  EXPECT_EQ(host_->committed, 1);
  EXPECT_GE(host_->committed_at - host_->ready_at, interval) << "committed before the interval";
  EXPECT_EQ(transaction_->commits(), 1u);
  EXPECT_EQ(host_->delivered_ok, 3);
  EXPECT_EQ(host_->deliveries, (std::vector<uint64_t>{PipelineHost::Token(1, 1), PipelineHost::Token(1, 2),
                                                      PipelineHost::Token(1, 3)}));
  EXPECT_GT(host_->after_deliveries_calls, 0);
  EXPECT_EQ(transaction_->events_in_flight(), 0u);
  EXPECT_EQ(transaction_->event_bytes_in_flight(), 0u);
  const Checkpoints expected{{"s1", "3"}, {"s2", "5"}, {"s3", "9"}};
  EXPECT_EQ(transaction_->committed(), expected);
  ASSERT_EQ(host_->committed_seen.size(), 1u);
  EXPECT_EQ(host_->committed_seen[0], expected) << "committed() is updated before OnTransactionCommitted";

  EXPECT_EQ(StateRecords(), (CheckpointList{{"s1", "3"}, {"s3", "9"}})) << "only the changed checkpoints";
  EXPECT_TRUE(StateRecords(0).empty()) << "checkpoint records go to the transaction's partition";
  EXPECT_EQ(EventValues(), (std::vector<std::string>{"event 1", "event 2", "event 3"}));

  // The next transaction is open and commits too.
  ProduceQueued(4);
  host_->checkpoints["s2"] = "6";
  ASSERT_TRUE(RunUntil([&] { return host_->committed > 1 || !host_->aborted.empty(); }));
  EXPECT_EQ(transaction_->commits(), 2u);
  EXPECT_EQ(transaction_->committed().at("s2"), "6");
  EXPECT_EQ(StateRecords(), (CheckpointList{{"s1", "3"}, {"s3", "9"}, {"s2", "6"}}));
}

TEST_F(PartitionTransactionTest, AMovedCheckpointAloneIsCommitted) {
  // A filtered event moves a checkpoint without producing anything.
  CreateAndStart(Options(milliseconds(50)), {{"s1", "1"}});
  host_->checkpoints["s1"] = "2";
  ASSERT_TRUE(RunUntil([&] { return host_->committed > 0 || !host_->aborted.empty(); }));
  EXPECT_TRUE(host_->aborted.empty());
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "2"}}));
  EXPECT_EQ(StateRecords(), (CheckpointList{{"s1", "2"}}));
  EXPECT_TRUE(EventValues().empty());
  // Unchanged since: no further transaction.
  RunLoopFor(*loop_, milliseconds(200));
  EXPECT_EQ(transaction_->commits(), 1u);
}

TEST_F(PartitionTransactionTest, MaxEventsSealsBeforeTheIntervalAndRefusesMoreUntilCommitted) {
  CreateAndStart(Options(kLong, 3));
  host_->checkpoints = {{"s1", "3"}};
  ProduceQueued(1);
  ProduceQueued(2);
  ProduceQueued(3);  // seals
  std::string error;
  EXPECT_EQ(ProduceEvent(4, &error), sink::ProduceResult::kQueueFull);
  EXPECT_FALSE(error.empty());

  // Every attempt between the seal and the commit is refused, whether the transaction is still
  // waiting for reports or already committing.
  std::vector<sink::ProduceResult> attempts;
  host_->after_deliveries = [&] {
    if (host_->committed == 0) attempts.push_back(ProduceEvent(100 + attempts.size()));
  };
  ASSERT_TRUE(RunUntil([&] { return host_->committed > 0 || !host_->aborted.empty(); }));
  host_->after_deliveries = nullptr;
  ASSERT_TRUE(host_->aborted.empty()) << host_->aborted[0];
  EXPECT_FALSE(attempts.empty());
  for (sink::ProduceResult result : attempts) EXPECT_EQ(result, sink::ProduceResult::kQueueFull);
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "3"}}));
  EXPECT_EQ(EventValues(), (std::vector<std::string>{"event 1", "event 2", "event 3"}));

  // The next transaction takes records again.
  ProduceQueued(5);
  EXPECT_EQ(transaction_->events_in_flight(), 1u);
}

TEST_F(PartitionTransactionTest, AFailedDeliveryAbortsAndTheNextTransactionCommits) {
  CreateAndStart(Options(milliseconds(100)), {{"s1", "1"}});
  // The broker refuses the record: librdkafka fails it and makes the transaction abortable
  // (with an epoch bump at the abort, so the next transaction starts clean).
  rd_kafka_mock_push_request_errors(mock(), kProduceApi, 1, RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID);
  ProduceQueued(1);
  host_->checkpoints = {{"s1", "2"}};

  ASSERT_TRUE(RunUntil([&] { return !host_->aborted.empty() || host_->committed > 0 || !host_->fenced.empty(); }));
  ASSERT_EQ(host_->aborted.size(), 1u);
  EXPECT_NE(host_->aborted[0].find("UNKNOWN_PRODUCER_ID"), std::string::npos) << host_->aborted[0];
  EXPECT_EQ(host_->committed, 0);
  EXPECT_TRUE(host_->fenced.empty());
  EXPECT_EQ(host_->failures, (std::vector<std::string>{"UNKNOWN_PRODUCER_ID"}));
  EXPECT_EQ(transaction_->aborts(), 1u);
  EXPECT_EQ(transaction_->commits(), 0u);
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "1"}})) << "an abort keeps the committed checkpoints";
  EXPECT_EQ(host_->checkpoints, (Checkpoints{{"s1", "1"}})) << "the host rewound";
  EXPECT_EQ(transaction_->events_in_flight(), 0u);
  EXPECT_EQ(transaction_->event_bytes_in_flight(), 0u);
  EXPECT_TRUE(StateRecords().empty()) << "no checkpoint record for a transaction that failed before its seal";

  // A new transaction is open: the replayed event goes in and commits.
  ProduceQueued(2);
  host_->checkpoints = {{"s1", "2"}};
  ASSERT_TRUE(RunUntil([&] { return host_->committed > 0 || host_->aborted.size() > 1; }));
  EXPECT_EQ(host_->aborted.size(), 1u) << host_->aborted.back();
  EXPECT_EQ(transaction_->commits(), 1u);
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "2"}}));
  EXPECT_EQ(StateRecords(), (CheckpointList{{"s1", "2"}}));
  EXPECT_EQ(EventValues(), (std::vector<std::string>{"event 2"}));
}

TEST_F(PartitionTransactionTest, ARefusedRecordIsReplayedUntilATransactionCommits) {
  CreateAndStart(Options(milliseconds(100)), {{"s1", "1"}});
  // A record the broker refuses for good. librdkafka 2.0.2 aborts without an epoch bump, so
  // the replay in the next transaction meets a sequence gap, which aborts that one too (with
  // the bump); the one after commits. The partition must come through by replaying.
  rd_kafka_mock_push_request_errors(mock(), kProduceApi, 1, RD_KAFKA_RESP_ERR_INVALID_RECORD);
  uint64_t sequence = 0;
  ProduceQueued(++sequence);
  host_->checkpoints = {{"s1", "2"}};
  for (int round = 0; round < 4 && host_->committed == 0; ++round) {
    const std::size_t aborts_before = host_->aborted.size();
    ASSERT_TRUE(RunUntil([&] { return host_->aborted.size() > aborts_before || host_->committed > 0; }));
    ASSERT_TRUE(host_->fenced.empty()) << host_->fenced[0].second;
    if (host_->committed > 0) break;
    EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "1"}}));
    EXPECT_EQ(transaction_->events_in_flight(), 0u);
    // The host rewound; the stream replays its event.
    ProduceQueued(++sequence);
    host_->checkpoints = {{"s1", "2"}};
  }
  ASSERT_EQ(host_->committed, 1);
  EXPECT_GE(host_->aborted.size(), 1u);
  EXPECT_LE(host_->aborted.size(), 2u);
  EXPECT_NE(host_->aborted[0].find("INVALID_RECORD"), std::string::npos) << host_->aborted[0];
  EXPECT_EQ(transaction_->aborts(), host_->aborted.size());
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "2"}}));
  EXPECT_EQ(StateRecords(), (CheckpointList{{"s1", "2"}}));
  const std::vector<std::string> events = EventValues();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back(), "event " + std::to_string(sequence));
}

TEST_F(PartitionTransactionTest, AnAbortableCommitFailureAbortsAndTheNextTransactionCommits) {
  CreateAndStart(Options(milliseconds(100)), {{"s1", "1"}});
  // librdkafka 2.0.2 treats an EndTxn error it has no rule for as abortable.
  rd_kafka_mock_push_request_errors(mock(), kEndTxnApi, 1, RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID);
  ProduceQueued(1);
  host_->checkpoints = {{"s1", "2"}};

  ASSERT_TRUE(RunUntil([&] { return !host_->aborted.empty() || host_->committed > 0 || !host_->fenced.empty(); }));
  ASSERT_EQ(host_->aborted.size(), 1u);
  EXPECT_NE(host_->aborted[0].find("commit failed"), std::string::npos) << host_->aborted[0];
  EXPECT_EQ(host_->committed, 0);
  EXPECT_TRUE(host_->fenced.empty());
  EXPECT_EQ(host_->delivered_ok, 1) << "the event itself was delivered";
  EXPECT_EQ(transaction_->aborts(), 1u);
  EXPECT_EQ(transaction_->commits(), 0u);
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "1"}}));
  // The mock writes no abort marker: the aborted transaction's checkpoint record is there.
  EXPECT_EQ(StateRecords(), (CheckpointList{{"s1", "2"}}));

  ProduceQueued(2);
  host_->checkpoints = {{"s1", "4"}};
  ASSERT_TRUE(RunUntil([&] { return host_->committed > 0 || host_->aborted.size() > 1; }));
  EXPECT_EQ(host_->aborted.size(), 1u);
  EXPECT_EQ(transaction_->commits(), 1u);
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "4"}}));
  EXPECT_EQ(StateRecords(), (CheckpointList{{"s1", "2"}, {"s1", "4"}}));
}

TEST_F(PartitionTransactionTest, ACommitErrorLibrdkafkaRetriesStillCommits) {
  CreateAndStart(Options(milliseconds(100)));
  rd_kafka_mock_push_request_errors(mock(), kEndTxnApi, 1, RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
  ProduceQueued(1);
  host_->checkpoints = {{"s1", "1"}};
  ASSERT_TRUE(RunUntil([&] { return !host_->aborted.empty() || host_->committed > 0 || !host_->fenced.empty(); }));
  EXPECT_TRUE(host_->aborted.empty());
  EXPECT_EQ(host_->committed, 1);
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "1"}}));
}

TEST_F(PartitionTransactionTest, AFencedCommitEndsThePartition) {
  CreateAndStart(Options(milliseconds(100)), {{"s1", "1"}});
  rd_kafka_mock_push_request_errors(mock(), kEndTxnApi, 1, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
  ProduceQueued(1);
  host_->checkpoints = {{"s1", "2"}};
  ASSERT_TRUE(RunUntil([&] { return !host_->aborted.empty() || host_->committed > 0 || !host_->fenced.empty(); }));
  ASSERT_EQ(host_->fenced.size(), 1u);
  EXPECT_TRUE(host_->fenced[0].first) << host_->fenced[0].second;
  EXPECT_EQ(host_->committed, 0);
  EXPECT_TRUE(host_->aborted.empty());
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "1"}}));
  EXPECT_EQ(ProduceEvent(2), sink::ProduceResult::kQueueFull);
  // Reported once, however long the loop turns afterwards.
  RunLoopFor(*loop_, milliseconds(200));
  EXPECT_EQ(host_->fenced.size(), 1u);
  std::optional<bool> done;
  transaction_->Finish([&](bool committed) { done = committed; });
  EXPECT_EQ(done, false) << "a dead partition finishes at once, uncommitted";
}

TEST_F(PartitionTransactionTest, AFatalProducerErrorEndsThePartition) {
  CreateAndStart(Options(milliseconds(100)), {{"s1", "1"}});
  // A sequence desynchronisation is fatal for an idempotent producer.
  rd_kafka_mock_push_request_errors(mock(), kProduceApi, 1, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
  ProduceQueued(1);
  host_->checkpoints = {{"s1", "2"}};
  ASSERT_TRUE(RunUntil([&] { return !host_->fenced.empty() || host_->committed > 0; }));
  ASSERT_EQ(host_->fenced.size(), 1u);
  EXPECT_FALSE(host_->fenced[0].first) << "not fenced by a newer owner: " << host_->fenced[0].second;
  EXPECT_EQ(host_->committed, 0);
  EXPECT_EQ(transaction_->commits(), 0u);
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "1"}}));
  EXPECT_EQ(ProduceEvent(2), sink::ProduceResult::kQueueFull);
  RunLoopFor(*loop_, milliseconds(200));
  EXPECT_EQ(host_->fenced.size(), 1u) << "reported once";
  EXPECT_EQ(host_->committed, 0);
}

TEST_F(PartitionTransactionTest, ATimedOutCommitIsStartedAgain) {
  PartitionTransaction::Options options = Options(milliseconds(100));
  options.operation_timeout = milliseconds(100);
  CreateAndStart(options, {{"s1", "1"}});
  ProduceQueued(1);
  host_->checkpoints = {{"s1", "2"}};
  ASSERT_TRUE(RunUntil([&] { return host_->delivered_ok == 1; }));
  // Every request now takes longer than the commit may: it times out (retriable) and is started
  // again after the retry delay, resuming the commit librdkafka continued in the background.
  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock(), 1, 200), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(RunUntil([&] { return host_->committed > 0 || !host_->aborted.empty() || !host_->fenced.empty(); }));
  EXPECT_TRUE(host_->aborted.empty()) << host_->aborted[0];
  EXPECT_TRUE(host_->fenced.empty());
  EXPECT_EQ(host_->committed, 1);
  EXPECT_GE(host_->committed_at - host_->ready_at, milliseconds(1000)) << "committed without a retry";
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "2"}}));
}

TEST_F(PartitionTransactionTest, ATimedOutInitIsStartedAgain) {
  PartitionTransaction::Options options = Options(milliseconds(100));
  options.operation_timeout = milliseconds(100);
  Create(options);
  ASSERT_NE(transaction_, nullptr);
  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock(), 1, 200), RD_KAFKA_RESP_ERR_NO_ERROR);
  const http::Clock::time_point started = http::Clock::now();
  transaction_->Start();
  ASSERT_TRUE(RunUntil([&] { return !host_->ready.empty() || !host_->fenced.empty(); }));
  ASSERT_EQ(host_->ready, std::vector<int32_t>{kPartition});
  EXPECT_GE(host_->ready_at - started, milliseconds(1000)) << "ready without a retry";

  // The producer works once the broker is quick again.
  ASSERT_EQ(rd_kafka_mock_broker_set_rtt(mock(), 1, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
  ProduceQueued(1);
  host_->checkpoints = {{"s1", "1"}};
  ASSERT_TRUE(RunUntil([&] { return host_->committed > 0 || !host_->aborted.empty(); }));
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "1"}}));
}

TEST_F(PartitionTransactionTest, FinishCommitsWhatIsOpen) {
  CreateAndStart(Options(kLong), {{"s1", "1"}});
  ProduceQueued(1);
  ProduceQueued(2);
  host_->checkpoints = {{"s1", "7"}};
  std::optional<bool> done;
  transaction_->Finish([&](bool committed) { done = committed; });
  EXPECT_FALSE(done.has_value()) << "records are still in flight";
  EXPECT_EQ(ProduceEvent(3), sink::ProduceResult::kQueueFull) << "nothing more after Finish";

  ASSERT_TRUE(RunUntil([&] { return done.has_value(); }));
  EXPECT_EQ(done, true);
  EXPECT_EQ(transaction_->commits(), 1u);
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "7"}}));
  EXPECT_TRUE(host_->aborted.empty());
  EXPECT_EQ(StateRecords(), (CheckpointList{{"s1", "7"}}));
  EXPECT_EQ(EventValues(), (std::vector<std::string>{"event 1", "event 2"}));
  EXPECT_EQ(ProduceEvent(4), sink::ProduceResult::kQueueFull) << "nothing more after it finished";
  // No further transaction: the finished partition does not tick.
  host_->checkpoints = {{"s1", "8"}};
  RunLoopFor(*loop_, milliseconds(200));
  EXPECT_EQ(transaction_->commits(), 1u);
}

TEST_F(PartitionTransactionTest, DetachedItTellsTheHostNothingMoreAndEndsAPendingFinish) {
  CreateAndStart(Options(milliseconds(50)), {{"s1", "1"}});
  ProduceQueued(1);
  ProduceQueued(2);
  host_->checkpoints = {{"s1", "2"}};
  std::optional<bool> done;
  transaction_->Finish([&](bool committed) { done = committed; });
  ASSERT_FALSE(done.has_value()) << "records are still in flight";
  const std::size_t deliveries = host_->deliveries.size();
  const int after_calls = host_->after_deliveries_calls;

  transaction_->Detach();
  EXPECT_EQ(done, false) << "a pending Finish is told it did not commit";
  // The two reports arrive at the producer, and the interval passes several times: the bridge
  // that gave the partition up hears of none of it.
  RunLoopFor(*loop_, milliseconds(500));
  EXPECT_EQ(host_->deliveries.size(), deliveries);
  EXPECT_EQ(host_->after_deliveries_calls, after_calls);
  EXPECT_EQ(host_->committed, 0);
  EXPECT_TRUE(host_->aborted.empty());
  EXPECT_TRUE(host_->fenced.empty());
  EXPECT_EQ(transaction_->commits(), 0u);
  EXPECT_EQ(ProduceEvent(3), sink::ProduceResult::kQueueFull) << "nothing more once detached";
  transaction_->Detach();  // twice is harmless
  transaction_.reset();
  EXPECT_EQ(host_->committed, 0);
}

TEST_F(PartitionTransactionTest, FinishDuringASealedTransactionReportsItsCommit) {
  CreateAndStart(Options(kLong, 1), {{"s1", "1"}});
  host_->checkpoints = {{"s1", "4"}};
  ProduceQueued(1);  // reaches max_events: sealed
  std::optional<bool> done;
  transaction_->Finish([&](bool committed) { done = committed; });
  EXPECT_FALSE(done.has_value());
  ASSERT_TRUE(RunUntil([&] { return done.has_value(); }));
  EXPECT_EQ(done, true);
  EXPECT_EQ(transaction_->commits(), 1u);
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "4"}}));
  EXPECT_EQ(ProduceEvent(2), sink::ProduceResult::kQueueFull) << "no transaction after the finish";
}

TEST_F(PartitionTransactionTest, FinishWithNothingNewDoesNotCommit) {
  CreateAndStart(Options(kLong), {{"s1", "1"}});
  std::optional<bool> done;
  transaction_->Finish([&](bool committed) { done = committed; });
  ASSERT_TRUE(RunUntil([&] { return done.has_value(); }));
  EXPECT_EQ(done, true);
  EXPECT_EQ(transaction_->commits(), 0u);
  EXPECT_EQ(host_->committed, 0);
  EXPECT_TRUE(StateRecords().empty());
  EXPECT_EQ(ProduceEvent(1), sink::ProduceResult::kQueueFull);
}

TEST_F(PartitionTransactionTest, FinishCommitsAMovedCheckpointWithoutEvents) {
  CreateAndStart(Options(kLong), {{"s1", "1"}});
  host_->checkpoints = {{"s1", "3"}};
  std::optional<bool> done;
  transaction_->Finish([&](bool committed) { done = committed; });
  ASSERT_TRUE(RunUntil([&] { return done.has_value(); }));
  EXPECT_EQ(done, true);
  EXPECT_EQ(transaction_->commits(), 1u);
  EXPECT_EQ(StateRecords(), (CheckpointList{{"s1", "3"}}));
}

TEST_F(PartitionTransactionTest, FinishBeforeInitCompletesReportsAtOnce) {
  Create(Options());
  ASSERT_NE(transaction_, nullptr);
  transaction_->Start();
  std::optional<bool> done;
  transaction_->Finish([&](bool committed) { done = committed; });
  EXPECT_EQ(done, true) << "never opened: nothing to commit";
  // The init result that follows neither opens a transaction nor reports ready.
  RunLoopFor(*loop_, milliseconds(300));
  EXPECT_TRUE(host_->ready.empty());
  EXPECT_EQ(ProduceEvent(1), sink::ProduceResult::kQueueFull);
}

TEST_F(PartitionTransactionTest, FinishAfterAFailedDeliveryReportsUncommitted) {
  CreateAndStart(Options(kLong), {{"s1", "1"}});
  rd_kafka_mock_push_request_errors(mock(), kProduceApi, 1, RD_KAFKA_RESP_ERR_INVALID_RECORD);
  ProduceQueued(1);
  host_->checkpoints = {{"s1", "2"}};
  std::optional<bool> done;
  transaction_->Finish([&](bool committed) { done = committed; });
  ASSERT_TRUE(RunUntil([&] { return done.has_value(); }));
  EXPECT_EQ(done, false);
  EXPECT_EQ(host_->aborted.size(), 1u);
  EXPECT_EQ(transaction_->commits(), 0u);
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "1"}}));
}

TEST_F(PartitionTransactionTest, HeldTransactionsAreNotSealedUntilReleased) {
  CreateAndStart(Options(milliseconds(50)), {{"s1", "1"}});
  host_->held = true;
  ProduceQueued(1);
  host_->checkpoints = {{"s1", "2"}};
  ASSERT_TRUE(RunUntil([&] { return host_->delivered_ok == 1; }));
  RunLoopFor(*loop_, milliseconds(400));  // eight intervals
  EXPECT_EQ(host_->committed, 0);
  EXPECT_EQ(transaction_->commits(), 0u);
  EXPECT_TRUE(StateRecords().empty()) << "no checkpoint record while held";
  // Still open meanwhile: records keep going into it.
  ProduceQueued(2);

  host_->held = false;
  ASSERT_TRUE(RunUntil([&] { return host_->committed > 0 || !host_->aborted.empty(); }));
  EXPECT_TRUE(host_->aborted.empty());
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "2"}}));
  EXPECT_EQ(EventValues(), (std::vector<std::string>{"event 1", "event 2"}));
}

TEST_F(PartitionTransactionTest, HeldTransactionsAreNotCommittedAtMaxEventsEither) {
  CreateAndStart(Options(milliseconds(50), 2), {{"s1", "1"}});
  host_->held = true;
  host_->checkpoints = {{"s1", "2"}};
  ProduceQueued(1);
  ProduceQueued(2);  // reaches max_events
  ASSERT_TRUE(RunUntil([&] { return host_->delivered_ok == 2; }));
  RunLoopFor(*loop_, milliseconds(400));
  EXPECT_EQ(host_->committed, 0) << "committed while transactions_held()";
  EXPECT_EQ(transaction_->commits(), 0u);
  EXPECT_TRUE(StateRecords().empty()) << "no checkpoint record while held";

  host_->held = false;
  ASSERT_TRUE(RunUntil([&] { return host_->committed > 0 || !host_->aborted.empty(); }));
  EXPECT_TRUE(host_->aborted.empty());
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "2"}}));
}

TEST_F(PartitionTransactionTest, ATransactionSealedBeforeTheHoldIsNotCommittedUntilReleased) {
  CreateAndStart(Options(milliseconds(50), 2), {{"s1", "1"}});
  host_->checkpoints = {{"s1", "2"}};
  ProduceQueued(1);
  ProduceQueued(2);  // reaches max_events: sealed, waiting for the reports
  // The hold begins before the reports are served (no loop turn since the seal).
  host_->held = true;
  ASSERT_TRUE(RunUntil([&] { return host_->delivered_ok == 2; }));
  RunLoopFor(*loop_, milliseconds(400));
  EXPECT_EQ(host_->committed, 0) << "committed while transactions_held()";
  EXPECT_EQ(transaction_->commits(), 0u);
  EXPECT_TRUE(StateRecords().empty()) << "no checkpoint record while held";

  host_->held = false;
  ASSERT_TRUE(RunUntil([&] { return host_->committed > 0 || !host_->aborted.empty(); }));
  EXPECT_TRUE(host_->aborted.empty());
  EXPECT_EQ(transaction_->committed(), (Checkpoints{{"s1", "2"}}));
  EXPECT_EQ(StateRecords(), (CheckpointList{{"s1", "2"}}));
}

}  // namespace
}  // namespace sse2kafka::bridge
