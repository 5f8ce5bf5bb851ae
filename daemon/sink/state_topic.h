// The Kafka side of checkpoint storage (state.backend: kafka): the compacted state topic that
// holds one checkpoint record per stream, which state partition a stream belongs to, the
// checkpoint record's value, creating the topic, and reading the newest checkpoints back.
//
// A checkpoint record: key = the stream name (UTF-8), value = EncodeCheckpointValue(...), or a
// null value (tombstone) for "no checkpoint". The newest record of a key is the checkpoint.
//
// Threading: the calls are blocking and self-contained (each opens and closes its own
// librdkafka client), so any thread may call them; the daemon calls them on its event loop at
// start-up and at partition assignment, bounded by their timeout. librdkafka's log lines go to
// spdlog's default logger.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sink/producer_properties.h"

namespace sse2kafka::sink {

// The state partition that owns `stream_name`: Kafka's default partitioner for a keyed record,
// toPositive(murmur2(the name's bytes)) % partitions, exactly as Java's Utils.murmur2 and
// librdkafka's murmur2 / murmur2_random partitioners compute it, so that a checkpoint record
// keyed by the name lands in this partition. Returns -1 when partitions < 1.
int32_t StatePartitionFor(std::string_view stream_name, int32_t partitions);

// Kafka's murmur2 of `bytes` (seed 0x9747b28c), signed, as Java's Utils.murmur2 returns it.
int32_t KafkaMurmur2(std::string_view bytes);

// The value of a checkpoint record:
//   {"last_event_id":"<id>","instance":"<instance>","written_at":"2026-11-23T21:07:52.123Z"}
// written_at is `unix_ms` in RFC 3339 UTC with milliseconds. Any bytes are accepted: ill-formed
// UTF-8 in the id or the instance is written as U+FFFD (see json_text.h). Never fails.
std::string EncodeCheckpointValue(std::string_view last_event_id, std::string_view instance, int64_t unix_ms);

// The last_event_id of a checkpoint record's value (possibly empty: an empty ID is a checkpoint
// too). nullopt when `value` is not a JSON object with a string member "last_event_id"; other
// members are not checked, so later versions may add some. Never throws.
std::optional<std::string> DecodeCheckpointValue(std::string_view value);

struct StateTopicSettings {
  std::string bootstrap_servers;
  // Connection properties for the cluster, already filtered by CommonClientProperties.
  PropertyList properties;
  std::string topic;
  int32_t partitions = 24;
  int32_t replication_factor = -1;  // -1: the broker's default (needs Kafka 2.4 or later)
};

// Makes sure the state topic exists and returns its partition count.
//
// When the topic is missing, creates it (Admin API CreateTopics) with settings.partitions,
// settings.replication_factor and cleanup.policy=compact, waits until the cluster's metadata
// shows it, and returns its partition count (settings.partitions).
// When it exists, it is used as it is: returns its real partition count, which wins over
// settings.partitions (a warning says so when they differ). A cleanup.policy that does not
// contain "compact" is an error naming the fix (retention would delete the checkpoints of quiet
// streams); a policy that cannot be read (DescribeConfigs fails or is not supported) is a
// warning. A broker that refuses to create it (authorization, policy) is no error when it exists.
// Warnings are appended to *warnings as one-line messages for the operator.
//
// Fails (nullopt, *error set) when no broker answers within `timeout`, when the topic neither
// exists nor can be created (the broker's reason is in the message), when it exists without
// compaction, or when librdkafka refuses settings.properties.
//
// Existence is read from a metadata request for all topics: asking for the one topic would
// make a broker with auto.create.topics.enable (and librdkafka's mock cluster, always) create it
// with the broker's default partition count. librdkafka's mock cluster (EmbeddedCluster) has no
// CreateTopics: create the topic there beforehand (EmbeddedCluster::CreateTopic), or this fails
// at once with "not supported by broker"; it has no DescribeConfigs either, hence the warning
// that the cleanup.policy could not be checked.
std::optional<int32_t> EnsureStateTopic(const StateTopicSettings& settings, std::chrono::milliseconds timeout,
                                        std::vector<std::string>* warnings, std::string* error);

// Reads `partitions` of the state topic from their beginning to their end as of the call and
// returns the checkpoint of every stream found there: stream name -> last_event_id.
//
// The end is the high watermark, or with read_committed the last stable offset (records of
// aborted transactions are skipped, and records of open ones are not waited for). Records are
// applied in offset order per partition, so the newest record of a key wins:
//   - a tombstone (null value) removes the key: that stream has no checkpoint;
//   - a value DecodeCheckpointValue rejects is skipped: the key keeps its previous checkpoint,
//     so a stray record can make a stream resume earlier (duplicates), never later (a gap);
//   - a record without a key is skipped.
// Empty partitions are not fetched at all. An empty `partitions` returns an empty map at once.
// Uses a temporary consumer without a group (nothing is committed).
//
// Fails (nullopt, *error set) when the ends cannot be reached within `timeout` (no broker,
// partition leaders unavailable), when the topic or a partition does not exist, or when
// librdkafka refuses settings.properties. settings.partitions and replication_factor are unused.
std::optional<std::map<std::string, std::string>> ReadStateCheckpoints(const StateTopicSettings& settings,
                                                                       const std::vector<int32_t>& partitions,
                                                                       bool read_committed,
                                                                       std::chrono::milliseconds timeout,
                                                                       std::string* error);

}  // namespace sse2kafka::sink
