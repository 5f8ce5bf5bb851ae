// The bridge's at-least-once checkpoint records in the Kafka state topic (StateTopicCheckpoints):
// what Flush produces, and how delivery reports, a lost producer and a lost partition change
// what is produced next. Pure logic: the produce function is a recorder.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "bridge/pipeline_host.h"
#include "bridge/state_topic_checkpoints.h"
#include "sink/state_topic.h"

namespace sse2kafka::bridge {
namespace {

using sink::ProduceResult;

constexpr char kTopic[] = "_state";
constexpr char kInstance[] = "host-a/42";

// One record the produce function was handed, copied out of its views.
struct Produced {
  std::string topic;
  int32_t partition;
  std::optional<std::string> key;
  std::string value;
  uint64_t token;

  uint64_t sequence() const { return PipelineHost::SequenceOf(token); }
  std::optional<std::string> last_event_id() const { return sink::DecodeCheckpointValue(value); }
};

class StateTopicCheckpointsTest : public ::testing::Test {
 protected:
  // Streams "a", "b" belong to partition 0; "c", "d" to partition 3; anything else to 7.
  StateTopicCheckpointsTest()
      : checkpoints_(kTopic, [](std::string_view stream) { return PartitionOf(stream); }, kInstance) {}

  static int32_t PartitionOf(std::string_view stream) {
    if (stream == "a" || stream == "b") return 0;
    if (stream == "c" || stream == "d") return 3;
    return 7;
  }

  // Flushes into `produced_`; the produce function answers from `answers_` (front first), then
  // kQueued. Returns the records produced by this flush (those answered kQueued).
  std::vector<Produced> Flush() {
    std::vector<Produced> queued;
    checkpoints_.Flush([&](const sink::OutgoingRecord& record, std::string* error) {
      ProduceResult answer = ProduceResult::kQueued;
      if (!answers_.empty()) {
        answer = answers_.front();
        answers_.erase(answers_.begin());
      }
      Produced copy{std::string(record.topic), record.partition,
                    record.key ? std::optional<std::string>(std::string(*record.key)) : std::nullopt,
                    std::string(record.value), record.token};
      attempts_.push_back(copy);
      if (answer != ProduceResult::kQueued) {
        *error = "refused by the test";
      } else {
        queued.push_back(copy);
      }
      return answer;
    });
    return queued;
  }

  // The stream -> last_event_id of `records`.
  static std::map<std::string, std::string> Ids(const std::vector<Produced>& records) {
    std::map<std::string, std::string> ids;
    for (const Produced& record : records) {
      EXPECT_TRUE(record.key.has_value());
      EXPECT_TRUE(record.last_event_id().has_value()) << record.value;
      if (record.key && record.last_event_id()) ids[*record.key] = *record.last_event_id();
    }
    return ids;
  }

  static Produced Only(const std::vector<Produced>& records) {
    EXPECT_EQ(records.size(), 1u);
    return records.at(0);
  }

  StateTopicCheckpoints checkpoints_;
  std::vector<ProduceResult> answers_;
  std::vector<Produced> attempts_;  // every call of the produce function, refused ones too
};

TEST_F(StateTopicCheckpointsTest, GetAnswersTheNewestValueSetOrLoaded) {
  EXPECT_EQ(checkpoints_.Get("a"), std::nullopt);
  checkpoints_.Load({{"a", "10"}, {"c", ""}});
  EXPECT_EQ(checkpoints_.Get("a"), "10");
  EXPECT_EQ(checkpoints_.Get("c"), "") << "an empty ID is a checkpoint too";
  EXPECT_EQ(checkpoints_.Get("b"), std::nullopt);
  checkpoints_.Set("a", "11");
  EXPECT_EQ(checkpoints_.Get("a"), "11");
  checkpoints_.Load({{"a", "12"}});
  EXPECT_EQ(checkpoints_.Get("a"), "12");
}

TEST_F(StateTopicCheckpointsTest, LoadedCheckpointsAreNotWrittenBack) {
  checkpoints_.Load({{"a", "1"}, {"c", "2"}});
  EXPECT_TRUE(checkpoints_.Settled());
  EXPECT_TRUE(Flush().empty());
  EXPECT_TRUE(attempts_.empty());
}

TEST_F(StateTopicCheckpointsTest, FlushProducesTheChangedCheckpointIntoItsPartition) {
  checkpoints_.Set("c", "evt-7");
  EXPECT_FALSE(checkpoints_.Settled());
  const std::vector<Produced> records = Flush();
  const Produced& record = Only(records);
  EXPECT_EQ(record.topic, kTopic);
  EXPECT_EQ(record.partition, 3);
  EXPECT_EQ(record.key, "c");
  EXPECT_EQ(record.last_event_id(), "evt-7");
  EXPECT_NE(record.value.find(std::string("\"instance\":\"") + kInstance + "\""), std::string::npos) << record.value;
  EXPECT_NE(record.value.find("\"written_at\":\""), std::string::npos) << record.value;
  EXPECT_EQ(PipelineHost::SlotOf(record.token), 0u) << "checkpoint records use token slot 0";

  EXPECT_TRUE(Flush().empty()) << "a value in flight is not produced again";
  EXPECT_FALSE(checkpoints_.Settled()) << "in flight until its report";
  EXPECT_FALSE(checkpoints_.Settled(3));
  checkpoints_.OnDelivery(record.sequence(), true);
  EXPECT_TRUE(checkpoints_.Settled());
  EXPECT_TRUE(Flush().empty());
}

TEST_F(StateTopicCheckpointsTest, OnlyChangedValuesAreProduced) {
  checkpoints_.Load({{"a", "1"}, {"c", "5"}});
  checkpoints_.Set("a", "1");  // unchanged
  checkpoints_.Set("c", "6");
  checkpoints_.Set("x", "9");  // new stream
  const std::vector<Produced> records = Flush();
  EXPECT_EQ(Ids(records), (std::map<std::string, std::string>{{"c", "6"}, {"x", "9"}}));
  for (const Produced& record : records) {
    EXPECT_EQ(record.partition, PartitionOf(*record.key)) << *record.key;
  }
  // Setting the value in flight again is no change either.
  checkpoints_.Set("c", "6");
  EXPECT_TRUE(Flush().empty());
}

TEST_F(StateTopicCheckpointsTest, OnlyTheNewestOfSeveralSetsIsProduced) {
  checkpoints_.Set("a", "1");
  checkpoints_.Set("a", "2");
  checkpoints_.Set("a", "3");
  EXPECT_EQ(Only(Flush()).last_event_id(), "3");
}

TEST_F(StateTopicCheckpointsTest, EveryRecordGetsItsOwnSequence) {
  checkpoints_.Set("a", "1");
  checkpoints_.Set("c", "1");
  std::vector<Produced> records = Flush();
  checkpoints_.Set("a", "2");
  const std::vector<Produced> more = Flush();
  records.insert(records.end(), more.begin(), more.end());
  ASSERT_EQ(records.size(), 3u);
  std::set<uint64_t> sequences;
  for (const Produced& record : records) sequences.insert(record.sequence());
  EXPECT_EQ(sequences.size(), 3u);
}

TEST_F(StateTopicCheckpointsTest, RecordsTheProducerRefusesStayQueued) {
  checkpoints_.Set("a", "1");
  checkpoints_.Set("c", "2");
  checkpoints_.Set("x", "3");
  // Queued in key order: "a" is refused as full, "c" is taken, "x" is rejected.
  answers_ = {ProduceResult::kQueueFull, ProduceResult::kQueued, ProduceResult::kRejected};
  const std::vector<Produced> first = Flush();
  ASSERT_EQ(attempts_.size(), 3u) << "a refusal does not stop the rest of the flush";
  EXPECT_EQ(Ids(first), (std::map<std::string, std::string>{{"c", "2"}}));
  EXPECT_FALSE(checkpoints_.Settled(0));
  EXPECT_FALSE(checkpoints_.Settled(7));

  const std::vector<Produced> second = Flush();
  EXPECT_EQ(Ids(second), (std::map<std::string, std::string>{{"a", "1"}, {"x", "3"}}));
  for (const Produced& record : second) checkpoints_.OnDelivery(record.sequence(), true);
  EXPECT_TRUE(checkpoints_.Settled(0));
  EXPECT_TRUE(checkpoints_.Settled(7));
  EXPECT_FALSE(checkpoints_.Settled(3)) << "\"c\" is still in flight";
  EXPECT_FALSE(checkpoints_.Settled());
}

TEST_F(StateTopicCheckpointsTest, AFailedRecordIsProducedAgain) {
  checkpoints_.Set("a", "1");
  const Produced first = Only(Flush());
  checkpoints_.OnDelivery(first.sequence(), false);
  EXPECT_FALSE(checkpoints_.Settled());
  const Produced again = Only(Flush());
  EXPECT_EQ(again.key, "a");
  EXPECT_EQ(again.last_event_id(), "1");
  EXPECT_NE(again.sequence(), first.sequence());
  checkpoints_.OnDelivery(again.sequence(), true);
  EXPECT_TRUE(checkpoints_.Settled());
}

TEST_F(StateTopicCheckpointsTest, AFailedRecordIsNotProducedAgainOnceANewerValueWasSet) {
  checkpoints_.Set("a", "1");
  const Produced first = Only(Flush());
  checkpoints_.Set("a", "2");
  checkpoints_.OnDelivery(first.sequence(), false);
  EXPECT_EQ(Only(Flush()).last_event_id(), "2") << "the newer value only, once";
}

TEST_F(StateTopicCheckpointsTest, AFailureAfterTheNewerValueWasProducedRequeuesNothing) {
  checkpoints_.Set("a", "1");
  const Produced first = Only(Flush());
  checkpoints_.Set("a", "2");
  const Produced second = Only(Flush());
  checkpoints_.OnDelivery(first.sequence(), false);
  EXPECT_TRUE(Flush().empty()) << "the older value must not overwrite the newer one";
  checkpoints_.OnDelivery(second.sequence(), true);
  EXPECT_TRUE(checkpoints_.Settled());
  EXPECT_EQ(checkpoints_.Get("a"), "2");
}

TEST_F(StateTopicCheckpointsTest, AFailureWhileTheSameValueIsQueuedAgainQueuesItOnce) {
  checkpoints_.Set("a", "1");
  const Produced first = Only(Flush());
  checkpoints_.Set("a", "2");
  checkpoints_.Set("a", "1");  // back to the value in flight: queued again
  checkpoints_.OnDelivery(first.sequence(), false);
  EXPECT_EQ(Only(Flush()).last_event_id(), "1");
}

TEST_F(StateTopicCheckpointsTest, ReportsOfUnknownOrAlreadyReportedSequencesAreIgnored) {
  checkpoints_.Set("a", "1");
  const Produced first = Only(Flush());
  checkpoints_.OnDelivery(first.sequence() + 1000, false);
  EXPECT_FALSE(checkpoints_.Settled());
  EXPECT_TRUE(Flush().empty());
  checkpoints_.OnDelivery(first.sequence(), true);
  checkpoints_.OnDelivery(first.sequence(), false);  // a second report for the same record
  EXPECT_TRUE(checkpoints_.Settled());
  EXPECT_TRUE(Flush().empty());
}

TEST_F(StateTopicCheckpointsTest, ProducerLostQueuesEveryRecordInFlightAgain) {
  checkpoints_.Set("a", "1");
  checkpoints_.Set("c", "2");
  checkpoints_.Set("x", "3");
  const std::vector<Produced> first = Flush();
  ASSERT_EQ(first.size(), 3u);
  checkpoints_.OnDelivery(first[0].sequence(), true);  // "a" made it before the loss

  checkpoints_.ProducerLost();
  EXPECT_FALSE(checkpoints_.Settled());
  const std::vector<Produced> again = Flush();
  EXPECT_EQ(Ids(again), (std::map<std::string, std::string>{{"c", "2"}, {"x", "3"}}));
  // A late report from the lost producer changes nothing.
  checkpoints_.OnDelivery(first[1].sequence(), false);
  EXPECT_TRUE(Flush().empty());
  for (const Produced& record : again) checkpoints_.OnDelivery(record.sequence(), true);
  EXPECT_TRUE(checkpoints_.Settled());
}

TEST_F(StateTopicCheckpointsTest, ProducerLostKeepsNewerQueuedValues) {
  checkpoints_.Set("a", "1");
  Only(Flush());
  checkpoints_.Set("a", "2");
  checkpoints_.ProducerLost();
  EXPECT_EQ(Only(Flush()).last_event_id(), "2");
}

TEST_F(StateTopicCheckpointsTest, DropPartitionForgetsItsQueuedValues) {
  checkpoints_.Set("a", "1");
  checkpoints_.Set("b", "2");
  checkpoints_.Set("c", "3");
  EXPECT_FALSE(checkpoints_.Settled(0));
  checkpoints_.DropPartition(0);
  EXPECT_TRUE(checkpoints_.Settled(0));
  EXPECT_FALSE(checkpoints_.Settled(3));
  EXPECT_EQ(checkpoints_.Get("a"), std::nullopt);
  EXPECT_EQ(checkpoints_.Get("b"), std::nullopt);
  EXPECT_EQ(checkpoints_.Get("c"), "3");
  EXPECT_EQ(Ids(Flush()), (std::map<std::string, std::string>{{"c", "3"}}));
}

TEST_F(StateTopicCheckpointsTest, DropPartitionForgetsItsLoadedValues) {
  checkpoints_.Load({{"a", "1"}, {"c", "2"}});
  checkpoints_.DropPartition(0);
  EXPECT_EQ(checkpoints_.Get("a"), std::nullopt);
  EXPECT_EQ(checkpoints_.Get("c"), "2");
  // Owned again later: the first value set is a change and is written.
  checkpoints_.Set("a", "1");
  EXPECT_EQ(Only(Flush()).key, "a");
}

TEST_F(StateTopicCheckpointsTest, FailuresInADroppedPartitionRequeueNothing) {
  checkpoints_.Set("a", "1");
  checkpoints_.Set("c", "2");
  const std::vector<Produced> records = Flush();
  ASSERT_EQ(records.size(), 2u);
  checkpoints_.DropPartition(0);
  EXPECT_FALSE(checkpoints_.Settled(0)) << "a record in flight still counts";
  for (const Produced& record : records) checkpoints_.OnDelivery(record.sequence(), false);
  EXPECT_TRUE(checkpoints_.Settled(0));
  EXPECT_EQ(Ids(Flush()), (std::map<std::string, std::string>{{"c", "2"}}))
      << "only the kept partition's failure is produced again";
}

TEST_F(StateTopicCheckpointsTest, ProducerLostRequeuesNothingOfADroppedPartition) {
  checkpoints_.Set("a", "1");
  checkpoints_.Set("c", "2");
  ASSERT_EQ(Flush().size(), 2u);
  checkpoints_.DropPartition(0);
  checkpoints_.ProducerLost();
  EXPECT_TRUE(checkpoints_.Settled(0));
  EXPECT_EQ(Ids(Flush()), (std::map<std::string, std::string>{{"c", "2"}}));
}

TEST_F(StateTopicCheckpointsTest, ASetAfterTheDropMakesFailuresCountAgain) {
  checkpoints_.DropPartition(0);
  checkpoints_.Set("a", "5");
  const Produced record = Only(Flush());
  checkpoints_.OnDelivery(record.sequence(), false);
  EXPECT_EQ(Only(Flush()).last_event_id(), "5");
}

TEST_F(StateTopicCheckpointsTest, LoadReplacesAQueuedValue) {
  checkpoints_.Set("a", "2");
  checkpoints_.Load({{"a", "3"}});
  EXPECT_TRUE(checkpoints_.Settled());
  EXPECT_TRUE(Flush().empty());
  EXPECT_EQ(checkpoints_.Get("a"), "3");
}

TEST_F(StateTopicCheckpointsTest, SettledLooksOnlyAtTheGivenPartition) {
  EXPECT_TRUE(checkpoints_.Settled());
  EXPECT_TRUE(checkpoints_.Settled(0));
  checkpoints_.Set("c", "1");
  EXPECT_TRUE(checkpoints_.Settled(0));
  EXPECT_FALSE(checkpoints_.Settled(3));
  EXPECT_FALSE(checkpoints_.Settled());
  const Produced record = Only(Flush());
  EXPECT_TRUE(checkpoints_.Settled(0));
  EXPECT_FALSE(checkpoints_.Settled(3));
  checkpoints_.OnDelivery(record.sequence(), true);
  EXPECT_TRUE(checkpoints_.Settled(3));
  EXPECT_TRUE(checkpoints_.Settled());
}

}  // namespace
}  // namespace sse2kafka::bridge
