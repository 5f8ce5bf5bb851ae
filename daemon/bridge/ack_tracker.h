// The checkpoint of one stream under out-of-order Kafka acknowledgements
// (interface.md "Delivery and resume").
//
// Events are registered in stream order and numbered; Kafka acknowledges them in any order. The
// checkpoint is the last event ID of the newest event such that it and every earlier event were
// acknowledged, so a restart that resumes from it loses nothing (it may replay events that were
// acknowledged after a gap: duplicates, never gaps).
//
// Memory is proportional to the events in flight: one small entry per event from the oldest
// unacknowledged one to the newest, plus one copy of each distinct last event ID among them
// (consecutive events with the same ID, the common case for feeds that send IDs rarely or never,
// share it). Every call is O(1) amortized, apart from comparing a new ID with the previous one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

namespace sse2kafka::bridge {

class AckTracker {
 public:
  // `checkpoint`: where the stream starts (its stored checkpoint; may be empty).
  explicit AckTracker(std::string checkpoint);

  // Registers the next event in stream order and returns its sequence number (increasing, never
  // reused, not even after Rewind). `last_event_id` is the last event ID at its dispatch, `bytes`
  // what it holds in flight. needs_ack=false (a filtered or oversized event, a block that only set
  // an id) completes it at once: it moves the checkpoint as soon as everything before it is
  // acknowledged, which may be inside this call; read checkpoint() afterwards.
  uint64_t Add(std::string_view last_event_id, std::size_t bytes, bool needs_ack);

  // Marks `seq` acknowledged. Returns true when checkpoint() changed value. A seq that is unknown,
  // already acknowledged, registered with needs_ack=false, or forgotten by Rewind is ignored
  // (returns false).
  bool Ack(uint64_t seq);

  // Forgets every event not yet behind the checkpoint: the stream reopens from the checkpoint and
  // the upstream sends them again. Their late acknowledgements are ignored. The checkpoint stays.
  void Rewind();

  // Forgets every event, as Rewind does, and moves the checkpoint to `checkpoint`, which may be
  // older: an aborted transaction took back what was delivered after it.
  void ResetTo(std::string checkpoint);

  // Forgets `seq` and every later event, but keeps the earlier ones in flight: their
  // acknowledgements still move the checkpoint, up to the event before `seq` at most. Used when
  // the delivery of `seq` failed: what was produced before it may still land.
  void RewindFrom(uint64_t seq);

  // True while `seq` was registered with needs_ack=true and is neither acknowledged nor forgotten:
  // a delivery report for any other seq is stale.
  bool Pending(uint64_t seq) const {
    return seq >= base_seq_ && seq < next_seq_ && !entries_[seq - base_seq_].done;
  }

  const std::string& checkpoint() const { return checkpoint_; }

  // Events registered with needs_ack=true and neither acknowledged nor forgotten, and their bytes.
  std::size_t in_flight_events() const { return in_flight_events_; }
  std::size_t in_flight_bytes() const { return in_flight_bytes_; }

 private:
  struct Entry {
    std::size_t bytes;
    bool done;  // acknowledged, or needed none
  };
  // The events from first_seq onwards carry `id`, up to where the next run starts.
  struct IdRun {
    uint64_t first_seq;
    std::string id;
  };

  // Drops the complete prefix of entries_ and moves the checkpoint. True when its value changed.
  bool Advance();

  std::string checkpoint_;
  std::deque<Entry> entries_;  // entries_[i] is event base_seq_ + i; the front one is not done
  std::deque<IdRun> runs_;     // covers every seq in entries_; front().first_seq <= base_seq_
  uint64_t base_seq_ = 0;
  // first_seq of the run checkpoint_ was last taken from; none yet at start.
  uint64_t checkpoint_run_ = UINT64_MAX;
  uint64_t next_seq_ = 0;
  std::size_t in_flight_events_ = 0;
  std::size_t in_flight_bytes_ = 0;
};

}  // namespace sse2kafka::bridge
