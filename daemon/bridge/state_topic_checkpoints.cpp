#include "bridge/state_topic_checkpoints.h"

#include <chrono>
#include <vector>

#include "bridge/pipeline_host.h"
#include "sink/state_topic.h"

namespace sse2kafka::bridge {

StateTopicCheckpoints::StateTopicCheckpoints(std::string topic, PartitionFunction partition_of,
                                             std::string instance)
    : topic_(std::move(topic)), partition_of_(std::move(partition_of)), instance_(std::move(instance)) {}

void StateTopicCheckpoints::Load(const std::map<std::string, std::string>& checkpoints) {
  for (const auto& [stream, id] : checkpoints) {
    newest_[stream] = id;
    queued_.erase(stream);
    dropped_partitions_.erase(partition_of_(stream));
  }
}

std::optional<std::string> StateTopicCheckpoints::Get(std::string_view stream) const {
  auto it = newest_.find(stream);
  if (it == newest_.end()) return std::nullopt;
  return it->second;
}

void StateTopicCheckpoints::Set(const std::string& stream, const std::string& last_event_id) {
  auto it = newest_.find(stream);
  if (it != newest_.end() && it->second == last_event_id) return;
  newest_[stream] = last_event_id;
  queued_[stream] = last_event_id;
  dropped_partitions_.erase(partition_of_(stream));
}

void StateTopicCheckpoints::Flush(const ProduceFunction& produce) {
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  for (auto it = queued_.begin(); it != queued_.end();) {
    const int32_t partition = partition_of_(it->first);
    const std::string value = sink::EncodeCheckpointValue(it->second, instance_, now_ms);
    const uint64_t sequence = next_sequence_++;
    sink::OutgoingRecord record;
    record.topic = topic_;
    record.partition = partition;
    record.key = it->first;
    record.value = value;
    record.token = PipelineHost::Token(0, sequence);
    std::string error;
    if (produce(record, &error) != sink::ProduceResult::kQueued) {
      ++it;  // stays queued
      continue;
    }
    in_flight_.emplace(sequence, InFlight{it->first, it->second, partition});
    it = queued_.erase(it);
  }
}

void StateTopicCheckpoints::OnDelivery(uint64_t sequence, bool ok) {
  auto it = in_flight_.find(sequence);
  if (it == in_flight_.end()) return;
  InFlight record = std::move(it->second);
  in_flight_.erase(it);
  if (ok || dropped_partitions_.count(record.partition)) return;
  auto newest = newest_.find(record.stream);
  if (newest != newest_.end() && newest->second == record.value && !queued_.count(record.stream)) {
    queued_[record.stream] = record.value;
  }
}

void StateTopicCheckpoints::ProducerLost() {
  std::vector<uint64_t> sequences;
  for (const auto& [sequence, record] : in_flight_) sequences.push_back(sequence);
  for (uint64_t sequence : sequences) OnDelivery(sequence, false);
}

void StateTopicCheckpoints::DropPartition(int32_t partition) {
  dropped_partitions_.insert(partition);
  for (auto it = queued_.begin(); it != queued_.end();) {
    if (partition_of_(it->first) == partition) {
      newest_.erase(it->first);
      it = queued_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = newest_.begin(); it != newest_.end();) {
    it = partition_of_(it->first) == partition ? newest_.erase(it) : std::next(it);
  }
}

bool StateTopicCheckpoints::Settled(int32_t partition) const {
  for (const auto& [stream, value] : queued_) {
    if (partition < 0 || partition_of_(stream) == partition) return false;
  }
  for (const auto& [sequence, record] : in_flight_) {
    if (partition < 0 || record.partition == partition) return false;
  }
  return true;
}

}  // namespace sse2kafka::bridge
