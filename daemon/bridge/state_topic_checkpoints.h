// At-least-once checkpoints in the Kafka state topic: one record per changed checkpoint, keyed
// by stream name, in the stream's state partition, produced through the bridge's producer.
//
// The bridge calls Set as checkpoints move and Flush on its flush timer; each record's delivery
// report comes back through OnDelivery. A failed record is queued again (unless a newer value
// replaced it), so the topic's newest record per stream only ever moves forward in the order
// the bridge set them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sink/kafka_producer.h"

namespace sse2kafka::bridge {

class StateTopicCheckpoints {
 public:
  using ProduceFunction = std::function<sink::ProduceResult(const sink::OutgoingRecord&, std::string*)>;
  using PartitionFunction = std::function<int32_t(std::string_view stream)>;

  // `instance` is written into each record to say which process wrote it.
  StateTopicCheckpoints(std::string topic, PartitionFunction partition_of, std::string instance);

  // Checkpoints read from the topic: known as written.
  void Load(const std::map<std::string, std::string>& checkpoints);
  // The newest value set or loaded for the stream; nullopt when none.
  std::optional<std::string> Get(std::string_view stream) const;

  // Queues the stream's checkpoint when it differs from the newest value set or loaded.
  void Set(const std::string& stream, const std::string& last_event_id);

  // Produces every queued checkpoint (token slot 0, sequence from this object). Records the
  // producer cannot take now stay queued for the next Flush.
  void Flush(const ProduceFunction& produce);

  // The report of a record Flush produced. A failure queues the value again unless a newer one
  // was set meanwhile.
  void OnDelivery(uint64_t sequence, bool ok);

  // The producer was destroyed: records in flight get no report; queue them again.
  void ProducerLost();

  // Forgets what is queued for the partition's streams (the partition was lost: another
  // instance owns them now, and an older checkpoint must not overwrite theirs). Reports of
  // records already produced are still accepted but requeue nothing.
  void DropPartition(int32_t partition);

  // True when nothing is queued or in flight for the partition (-1: for any partition).
  bool Settled(int32_t partition = -1) const;

 private:
  struct InFlight {
    std::string stream;
    std::string value;
    int32_t partition;
  };

  std::string topic_;
  PartitionFunction partition_of_;
  std::string instance_;
  std::map<std::string, std::string, std::less<>> newest_;  // set or loaded
  std::map<std::string, std::string, std::less<>> queued_;  // to produce at the next Flush
  std::unordered_map<uint64_t, InFlight> in_flight_;        // by sequence
  std::set<int32_t> dropped_partitions_;  // lost: their late failures requeue nothing
  uint64_t next_sequence_ = 0;
};

}  // namespace sse2kafka::bridge
