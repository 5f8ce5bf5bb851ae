#include "bridge/ack_tracker.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace sse2kafka::bridge {
namespace {

TEST(AckTrackerTest, StartsAtTheGivenCheckpointWithNothingInFlight) {
  AckTracker tracker("resume-here");
  EXPECT_EQ(tracker.checkpoint(), "resume-here");
  EXPECT_EQ(tracker.in_flight_events(), 0u);
  EXPECT_EQ(tracker.in_flight_bytes(), 0u);
  EXPECT_EQ(AckTracker("").checkpoint(), "");
}

TEST(AckTrackerTest, InOrderAcksAdvanceOneByOne) {
  AckTracker tracker("");
  const uint64_t a = tracker.Add("1", 10, true);
  const uint64_t b = tracker.Add("2", 20, true);
  const uint64_t c = tracker.Add("3", 30, true);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(tracker.in_flight_events(), 3u);
  EXPECT_EQ(tracker.in_flight_bytes(), 60u);

  EXPECT_TRUE(tracker.Ack(a));
  EXPECT_EQ(tracker.checkpoint(), "1");
  EXPECT_EQ(tracker.in_flight_events(), 2u);
  EXPECT_EQ(tracker.in_flight_bytes(), 50u);
  EXPECT_TRUE(tracker.Ack(b));
  EXPECT_EQ(tracker.checkpoint(), "2");
  EXPECT_TRUE(tracker.Ack(c));
  EXPECT_EQ(tracker.checkpoint(), "3");
  EXPECT_EQ(tracker.in_flight_events(), 0u);
  EXPECT_EQ(tracker.in_flight_bytes(), 0u);
}

TEST(AckTrackerTest, OutOfOrderAcksMoveOnlyOverTheContiguousPrefix) {
  AckTracker tracker("0");
  const uint64_t a = tracker.Add("1", 1, true);
  const uint64_t b = tracker.Add("2", 1, true);
  const uint64_t c = tracker.Add("3", 1, true);
  const uint64_t d = tracker.Add("4", 1, true);
  EXPECT_FALSE(tracker.Ack(c));
  EXPECT_FALSE(tracker.Ack(b));
  EXPECT_EQ(tracker.checkpoint(), "0");
  EXPECT_EQ(tracker.in_flight_events(), 2u);
  EXPECT_TRUE(tracker.Ack(a));
  EXPECT_EQ(tracker.checkpoint(), "3");
  EXPECT_TRUE(tracker.Ack(d));
  EXPECT_EQ(tracker.checkpoint(), "4");
}

TEST(AckTrackerTest, EventsThatNeedNoAckCompleteInPlace) {
  AckTracker tracker("");
  const uint64_t a = tracker.Add("1", 5, true);
  const uint64_t skipped = tracker.Add("2", 7, false);
  const uint64_t c = tracker.Add("3", 9, true);
  EXPECT_EQ(tracker.in_flight_events(), 2u);
  EXPECT_EQ(tracker.in_flight_bytes(), 14u);
  EXPECT_EQ(tracker.checkpoint(), "") << "the skipped event waits for the one before it";
  EXPECT_FALSE(tracker.Ack(skipped)) << "an event that needs no ack cannot be acked";
  EXPECT_EQ(tracker.in_flight_events(), 2u);
  EXPECT_TRUE(tracker.Ack(a));
  EXPECT_EQ(tracker.checkpoint(), "2");
  EXPECT_TRUE(tracker.Ack(c));
  EXPECT_EQ(tracker.checkpoint(), "3");
}

TEST(AckTrackerTest, EventThatNeedsNoAckAdvancesAtOnceWhenNothingIsPending) {
  AckTracker tracker("old");
  tracker.Add("id-only", 0, false);
  EXPECT_EQ(tracker.checkpoint(), "id-only");
  EXPECT_EQ(tracker.in_flight_events(), 0u);
  const uint64_t a = tracker.Add("x", 3, true);
  EXPECT_TRUE(tracker.Ack(a));
  tracker.Add("filtered", 3, false);
  EXPECT_EQ(tracker.checkpoint(), "filtered");
}

TEST(AckTrackerTest, AckReportsOnlyChangesOfValue) {
  AckTracker tracker("a");
  const uint64_t first = tracker.Add("a", 1, true);
  const uint64_t second = tracker.Add("b", 1, true);
  const uint64_t third = tracker.Add("b", 1, true);
  const uint64_t fourth = tracker.Add("", 1, true);
  EXPECT_FALSE(tracker.Ack(first)) << "same ID as the starting checkpoint";
  EXPECT_TRUE(tracker.Ack(second));
  EXPECT_FALSE(tracker.Ack(third));
  EXPECT_EQ(tracker.checkpoint(), "b");
  EXPECT_TRUE(tracker.Ack(fourth)) << "a server may reset the ID to empty";
  EXPECT_EQ(tracker.checkpoint(), "");
}

TEST(AckTrackerTest, DuplicateUnknownAndFutureAcksAreIgnored) {
  AckTracker tracker("");
  const uint64_t a = tracker.Add("1", 4, true);
  const uint64_t b = tracker.Add("2", 4, true);
  EXPECT_FALSE(tracker.Ack(b));
  EXPECT_FALSE(tracker.Ack(b));
  EXPECT_FALSE(tracker.Ack(b + 1));
  EXPECT_FALSE(tracker.Ack(UINT64_MAX));
  EXPECT_EQ(tracker.in_flight_events(), 1u);
  EXPECT_EQ(tracker.in_flight_bytes(), 4u);
  EXPECT_TRUE(tracker.Ack(a));
  EXPECT_FALSE(tracker.Ack(a));
  EXPECT_EQ(tracker.checkpoint(), "2");
  EXPECT_EQ(tracker.in_flight_events(), 0u);
}

TEST(AckTrackerTest, RewindForgetsPendingEventsAndIgnoresTheirLateAcks) {
  AckTracker tracker("");
  const uint64_t a = tracker.Add("1", 10, true);
  const uint64_t b = tracker.Add("2", 10, true);
  const uint64_t c = tracker.Add("3", 10, false);
  const uint64_t d = tracker.Add("4", 10, true);
  EXPECT_TRUE(tracker.Ack(a));
  EXPECT_FALSE(tracker.Ack(d));
  tracker.Rewind();
  EXPECT_EQ(tracker.checkpoint(), "1");
  EXPECT_EQ(tracker.in_flight_events(), 0u);
  EXPECT_EQ(tracker.in_flight_bytes(), 0u);
  EXPECT_FALSE(tracker.Ack(b));
  EXPECT_FALSE(tracker.Ack(c));
  EXPECT_EQ(tracker.checkpoint(), "1") << "late acks of forgotten events must not move the checkpoint";

  // The upstream replays from "1"; new events get new numbers.
  const uint64_t e = tracker.Add("2", 10, true);
  EXPECT_GT(e, d);
  EXPECT_EQ(tracker.in_flight_events(), 1u);
  EXPECT_FALSE(tracker.Ack(b));
  EXPECT_TRUE(tracker.Ack(e));
  EXPECT_EQ(tracker.checkpoint(), "2");
}

TEST(AckTrackerTest, RewindWithTheSameIdAsTheCheckpoint) {
  AckTracker tracker("");
  EXPECT_TRUE(tracker.Ack(tracker.Add("x", 1, true)));
  tracker.Add("y", 1, true);
  tracker.Rewind();
  const uint64_t replay = tracker.Add("x", 1, true);
  EXPECT_FALSE(tracker.Ack(replay)) << "the value did not change";
  EXPECT_TRUE(tracker.Ack(tracker.Add("y", 1, true)));
  EXPECT_EQ(tracker.checkpoint(), "y");
}

// The obvious implementation: every event ever added, scanned from the oldest incomplete one.
class ModelTracker {
 public:
  explicit ModelTracker(std::string checkpoint) : checkpoint_(std::move(checkpoint)) {}

  uint64_t Add(const std::string& id, std::size_t bytes, bool needs_ack) {
    events_.push_back({id, bytes, needs_ack ? State::kPending : State::kDone});
    if (needs_ack) {
      ++in_flight_events_;
      in_flight_bytes_ += bytes;
    }
    Advance();
    return events_.size() - 1;
  }

  bool Ack(uint64_t seq) {
    if (seq >= events_.size() || events_[seq].state != State::kPending) return false;
    events_[seq].state = State::kDone;
    --in_flight_events_;
    in_flight_bytes_ -= events_[seq].bytes;
    const std::string before = checkpoint_;
    Advance();
    return checkpoint_ != before;
  }

  void Rewind() {
    for (std::size_t i = complete_; i < events_.size(); ++i) events_[i].state = State::kForgotten;
    complete_ = events_.size();
    in_flight_events_ = 0;
    in_flight_bytes_ = 0;
  }

  const std::string& checkpoint() const { return checkpoint_; }
  std::size_t in_flight_events() const { return in_flight_events_; }
  std::size_t in_flight_bytes() const { return in_flight_bytes_; }

 private:
  enum class State { kPending, kDone, kForgotten };
  struct Event {
    std::string id;
    std::size_t bytes;
    State state;
  };

  void Advance() {
    while (complete_ < events_.size() && events_[complete_].state == State::kDone) {
      checkpoint_ = events_[complete_].id;
      ++complete_;
    }
  }

  std::string checkpoint_;
  std::vector<Event> events_;
  std::size_t complete_ = 0;
  std::size_t in_flight_events_ = 0;
  std::size_t in_flight_bytes_ = 0;
};

struct PropertyRun {
  int events = 0;
  double id_change_probability = 0.3;
  double no_ack_probability = 0.05;
  double rewind_probability = 0.0;  // per step
  double add_probability = 0.5;     // per step, while events remain to add
  int max_pending = 0;              // 0: unbounded
  uint64_t seed = 1;
};

// Drives tracker and model with the same random steps: adds, acks of a random pending event
// (so acks arrive in random order), occasional acks of long-forgotten events, and rewinds.
void RunAgainstModel(const PropertyRun& run) {
  std::mt19937_64 rng(run.seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  AckTracker tracker("start");
  ModelTracker model("start");
  std::vector<uint64_t> pending;    // added with needs_ack, not acked, not rewound
  std::vector<uint64_t> forgotten;  // pending at a rewind; acking them must change nothing
  int added = 0;
  int id_number = 0;
  int rewinds = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int64_t step = 0; added < run.events || !pending.empty(); ++step) {
    ASSERT_LT(step, int64_t{10} * run.events) << "the run should have finished";
    if ((step & 0xFFFF) == 0) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    }
    const bool must_ack = run.max_pending > 0 && static_cast<int>(pending.size()) >= run.max_pending;
    if (added < run.events && !must_ack && (pending.empty() || unit(rng) < run.add_probability)) {
      if (unit(rng) < run.id_change_probability) ++id_number;
      const std::string id = std::to_string(id_number);
      const std::size_t bytes = 1 + rng() % 1000;
      const bool needs_ack = unit(rng) >= run.no_ack_probability;
      const uint64_t seq = tracker.Add(id, bytes, needs_ack);
      ASSERT_EQ(seq, model.Add(id, bytes, needs_ack));
      if (needs_ack) pending.push_back(seq);
      ++added;
    } else if (!pending.empty()) {
      const std::size_t pick = rng() % pending.size();
      const uint64_t seq = pending[pick];
      pending[pick] = pending.back();
      pending.pop_back();
      ASSERT_EQ(tracker.Ack(seq), model.Ack(seq)) << "seq " << seq;
    }
    if (!forgotten.empty() && unit(rng) < 0.01) {
      const uint64_t stale = forgotten[rng() % forgotten.size()];
      ASSERT_FALSE(tracker.Ack(stale));
      ASSERT_FALSE(model.Ack(stale));
    }
    if (unit(rng) < run.rewind_probability) {
      tracker.Rewind();
      model.Rewind();
      forgotten.insert(forgotten.end(), pending.begin(), pending.end());
      pending.clear();
      ++rewinds;
    }
    ASSERT_EQ(tracker.checkpoint(), model.checkpoint()) << "step " << step;
    ASSERT_EQ(tracker.in_flight_events(), model.in_flight_events());
    ASSERT_EQ(tracker.in_flight_bytes(), model.in_flight_bytes());
  }
  EXPECT_EQ(tracker.in_flight_events(), 0u);
  if (run.rewind_probability > 0) {
    EXPECT_GT(rewinds, 0);
  }
}

TEST(AckTrackerPropertyTest, MillionEventsInRandomAckOrderMatchTheModel) {
  RunAgainstModel({.events = 1000000, .seed = 7});
}

TEST(AckTrackerPropertyTest, WideReorderingWindowMatchesTheModel) {
  // About 50,000 events in flight, acked in random order.
  RunAgainstModel(
      {.events = 300000, .id_change_probability = 0.9, .add_probability = 0.9, .max_pending = 50000, .seed = 11});
}

TEST(AckTrackerPropertyTest, RewindsAndSkippedEventsMatchTheModel) {
  RunAgainstModel({.events = 200000,
                   .id_change_probability = 0.5,
                   .no_ack_probability = 0.3,
                   .rewind_probability = 0.001,
                   .seed = 13});
}

TEST(AckTrackerPropertyTest, RareIdsMatchTheModel) {
  // Most feeds send IDs rarely: long runs of events share one ID.
  RunAgainstModel({.events = 200000, .id_change_probability = 0.001, .no_ack_probability = 0.01, .seed = 17});
}

}  // namespace
}  // namespace sse2kafka::bridge

namespace sse2kafka::bridge {
namespace {

TEST(AckTrackerRewindFromTest, EarlierEventsStillMoveTheCheckpointButNeverPastTheFailedOne) {
  AckTracker tracker("0");
  const uint64_t a = tracker.Add("1", 10, true);
  const uint64_t b = tracker.Add("2", 10, true);  // its delivery fails
  const uint64_t c = tracker.Add("3", 10, true);
  tracker.RewindFrom(b);
  EXPECT_TRUE(tracker.Pending(a));
  EXPECT_FALSE(tracker.Pending(b));
  EXPECT_FALSE(tracker.Pending(c));
  EXPECT_EQ(tracker.in_flight_events(), 1u);
  EXPECT_EQ(tracker.in_flight_bytes(), 10u);
  EXPECT_FALSE(tracker.Ack(c));  // a stale report changes nothing
  EXPECT_TRUE(tracker.Ack(a));
  EXPECT_EQ(tracker.checkpoint(), "1");
  // The replayed events register after the forgotten ones and move the checkpoint on.
  const uint64_t b2 = tracker.Add("2", 10, true);
  EXPECT_EQ(tracker.checkpoint(), "1");
  EXPECT_TRUE(tracker.Ack(b2));
  EXPECT_EQ(tracker.checkpoint(), "2");
}

TEST(AckTrackerRewindFromTest, FromTheOldestPendingEventIsAFullRewind) {
  AckTracker tracker("0");
  const uint64_t a = tracker.Add("1", 10, true);
  tracker.Add("2", 10, true);
  tracker.RewindFrom(a);
  EXPECT_EQ(tracker.in_flight_events(), 0u);
  EXPECT_FALSE(tracker.Pending(a));
  EXPECT_EQ(tracker.checkpoint(), "0");
  const uint64_t again = tracker.Add("1", 10, true);
  EXPECT_TRUE(tracker.Ack(again));
  EXPECT_EQ(tracker.checkpoint(), "1");
}

TEST(AckTrackerRewindFromTest, ForgottenEventsWithoutAckNeededDoNotLeakTheirIds) {
  AckTracker tracker("0");
  const uint64_t a = tracker.Add("1", 10, true);
  const uint64_t b = tracker.Add("2", 10, true);
  tracker.Add("3", 0, false);  // filtered, after the failed one
  tracker.RewindFrom(b);
  EXPECT_TRUE(tracker.Ack(a));
  EXPECT_EQ(tracker.checkpoint(), "1");  // not "3": event 2 never landed
}

}  // namespace
}  // namespace sse2kafka::bridge

namespace sse2kafka::bridge {
namespace {

TEST(AckTrackerResetTest, ResetToMovesTheCheckpointBackAndForgetsEverythingInFlight) {
  AckTracker tracker("5");
  const uint64_t a = tracker.Add("6", 10, true);
  const uint64_t b = tracker.Add("7", 10, true);
  tracker.Add("8", 10, true);
  EXPECT_TRUE(tracker.Ack(a));
  EXPECT_TRUE(tracker.Ack(b));
  EXPECT_EQ(tracker.checkpoint(), "7");
  tracker.ResetTo("5");  // the transaction that held 6 and 7 was aborted
  EXPECT_EQ(tracker.checkpoint(), "5");
  EXPECT_EQ(tracker.in_flight_events(), 0u);
  EXPECT_EQ(tracker.in_flight_bytes(), 0u);
  EXPECT_FALSE(tracker.Ack(a + 2));  // the late report of "8" is stale
  EXPECT_EQ(tracker.checkpoint(), "5");
  const uint64_t replayed = tracker.Add("6", 10, true);
  EXPECT_TRUE(tracker.Ack(replayed));
  EXPECT_EQ(tracker.checkpoint(), "6");
}

}  // namespace
}  // namespace sse2kafka::bridge
