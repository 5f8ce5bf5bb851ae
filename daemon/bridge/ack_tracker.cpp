#include "bridge/ack_tracker.h"

#include <utility>

namespace sse2kafka::bridge {

AckTracker::AckTracker(std::string checkpoint) : checkpoint_(std::move(checkpoint)) {}

uint64_t AckTracker::Add(std::string_view last_event_id, std::size_t bytes, bool needs_ack) {
  const uint64_t seq = next_seq_++;
  if (runs_.empty() || runs_.back().id != last_event_id) runs_.push_back({seq, std::string(last_event_id)});
  entries_.push_back({bytes, !needs_ack});
  if (needs_ack) {
    ++in_flight_events_;
    in_flight_bytes_ += bytes;
  } else if (entries_.size() == 1) {
    Advance();
  }
  return seq;
}

bool AckTracker::Ack(uint64_t seq) {
  if (seq < base_seq_ || seq >= next_seq_) return false;
  Entry& entry = entries_[seq - base_seq_];
  if (entry.done) return false;
  entry.done = true;
  --in_flight_events_;
  in_flight_bytes_ -= entry.bytes;
  return seq == base_seq_ && Advance();
}

void AckTracker::Rewind() {
  entries_.clear();
  runs_.clear();
  base_seq_ = next_seq_;
  in_flight_events_ = 0;
  in_flight_bytes_ = 0;
}

void AckTracker::ResetTo(std::string checkpoint) {
  Rewind();
  checkpoint_ = std::move(checkpoint);
}

void AckTracker::RewindFrom(uint64_t seq) {
  if (seq <= base_seq_) {
    Rewind();
    return;
  }
  if (seq >= next_seq_) return;
  // Forgotten events count as complete for ordering, but carry the ID of the event before
  // `seq`: passing over them can never move the checkpoint beyond what was delivered.
  for (uint64_t s = seq; s < next_seq_; ++s) {
    Entry& entry = entries_[s - base_seq_];
    if (entry.done) continue;
    entry.done = true;
    --in_flight_events_;
    in_flight_bytes_ -= entry.bytes;
  }
  // runs_.front().first_seq <= base_seq_ < seq, so a run always remains.
  while (runs_.back().first_seq >= seq) runs_.pop_back();
}

bool AckTracker::Advance() {
  if (entries_.empty() || !entries_.front().done) return false;
  while (!entries_.empty() && entries_.front().done) {
    entries_.pop_front();
    ++base_seq_;
  }
  const uint64_t last_done = base_seq_ - 1;
  while (runs_.size() >= 2 && runs_[1].first_seq <= last_done) runs_.pop_front();

  // runs_.front() now holds the ID of the newest complete event. The same run as last time
  // means the same value; consecutive runs differ, but a run after a Rewind may repeat it.
  IdRun& run = runs_.front();
  if (run.first_seq == checkpoint_run_) return false;
  checkpoint_run_ = run.first_seq;
  if (run.id == checkpoint_) return false;
  const bool run_consumed = runs_.size() >= 2 && runs_[1].first_seq == base_seq_;
  if (run_consumed) {
    checkpoint_ = std::move(run.id);
    runs_.pop_front();
  } else {
    checkpoint_ = run.id;
  }
  return true;
}

}  // namespace sse2kafka::bridge
