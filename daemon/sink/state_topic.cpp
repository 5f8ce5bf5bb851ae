#include "sink/state_topic.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "sink/connection_problem.h"
#include "sink/json_text.h"
#include "sink/producer_properties.h"

namespace sse2kafka::sink {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint32_t kMurmur2Seed = 0x9747b28c;

// How long to wait before asking again for metadata of a topic that is still being created.
constexpr milliseconds kMetadataRetryPause{25};

// One attempt at a partition's start and end offsets, and the pause before the next one.
constexpr milliseconds kOffsetsAttempt{2000};
constexpr milliseconds kOffsetsRetryPause{200};

// The temporary reader's fetch wait: an empty fetch is held this long by the broker. librdkafka's
// default (500 ms) would cost half a second per partition that is already at its end.
constexpr const char* kReaderFetchWaitMs = "10";

class Deadline {
 public:
  explicit Deadline(milliseconds timeout) : at_(Clock::now() + std::max(timeout, milliseconds(0))) {}

  // Milliseconds left, 0 once passed; capped so that librdkafka's int timeouts hold it.
  int RemainingMs() const {
    const auto left = std::chrono::duration_cast<milliseconds>(at_ - Clock::now()).count();
    return static_cast<int>(std::clamp<milliseconds::rep>(left, 0, INT_MAX / 2));
  }
  bool Passed() const { return Clock::now() >= at_; }

 private:
  Clock::time_point at_;
};

// One short-lived librdkafka client. Consumer type: its metadata requests ask brokers not to
// auto-create topics (allow.auto.create.topics defaults to false; setting it explicitly would
// make librdkafka warn on every connection to brokers older than 0.11), and it needs no group
// for the Admin API, metadata and the legacy partition consumer. It remembers the last
// error librdkafka reported on its own (broker down, authentication), so that a timeout can say
// why.
class KafkaClient {
 public:
  static std::unique_ptr<KafkaClient> Create(const StateTopicSettings& settings, const PropertyList& extra,
                                             std::string* error) {
    PropertyList properties = settings.properties;
    properties.insert(properties.end(), extra.begin(), extra.end());
    properties.emplace_back("bootstrap.servers", settings.bootstrap_servers);
    rd_kafka_conf_t* conf = NewLibrdkafkaConf(properties, error);
    if (conf == nullptr) return nullptr;
    std::unique_ptr<KafkaClient> client(new KafkaClient());
    client->properties_ = settings.properties;  // to tell what a connection error means
    rd_kafka_conf_set_opaque(conf, client.get());
    rd_kafka_conf_set_error_cb(conf, &KafkaClient::OnError);
    ForwardLogToSpdlog(conf);
    std::array<char, 512> errstr{};
    client->rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr.data(), errstr.size());
    if (client->rk_ == nullptr) {
      rd_kafka_conf_destroy(conf);
      *error = "kafka client for state topic " + settings.topic + ": " + RedactSecretValues(errstr.data(), properties);
      return nullptr;
    }
    return client;
  }

  ~KafkaClient() {
    if (rk_ != nullptr) rd_kafka_destroy(rk_);
  }
  KafkaClient(const KafkaClient&) = delete;
  KafkaClient& operator=(const KafkaClient&) = delete;

  rd_kafka_t* rk() const { return rk_; }

  // " (last error: ...)" for a failure message, or nothing when librdkafka reported none.
  std::string LastErrorSuffix() {
    rd_kafka_poll(rk_, 0);  // serves the error callback
    if (last_error_.empty()) return std::string();
    if (auto problem = ClassifyConnectionError(last_error_code_, last_error_, properties_, "")) {
      return " (" + problem->message + ")";
    }
    return " (last error: " + last_error_ + ")";
  }

 private:
  KafkaClient() = default;

  static void OnError(rd_kafka_t*, int code, const char* reason, void* opaque) {
    auto* client = static_cast<KafkaClient*>(opaque);
    client->last_error_ = reason;
    client->last_error_code_ = code;
  }

  rd_kafka_t* rk_ = nullptr;
  PropertyList properties_;
  std::string last_error_;
  int last_error_code_ = 0;
};

using MetadataPtr = std::unique_ptr<const rd_kafka_metadata_t, decltype(&rd_kafka_metadata_destroy)>;
using EventPtr = std::unique_ptr<rd_kafka_event_t, decltype(&rd_kafka_event_destroy)>;
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, decltype(&rd_kafka_queue_destroy)>;
using AdminOptionsPtr = std::unique_ptr<rd_kafka_AdminOptions_t, decltype(&rd_kafka_AdminOptions_destroy)>;
using PartitionListPtr =
    std::unique_ptr<rd_kafka_topic_partition_list_t, decltype(&rd_kafka_topic_partition_list_destroy)>;

struct TopicLookup {
  bool exists = false;
  int32_t partitions = 0;
  int32_t answering_broker = -1;  // a broker known to be up, for requests any broker can serve
};

// Looks the topic up in the metadata of all topics, waiting while it exists but is not usable
// yet (being created, no partitions). `must_exist` also waits while it is missing (just
// created, metadata not yet propagated). nullopt and *error when time runs out first.
std::optional<TopicLookup> LookUpTopic(KafkaClient& client, const std::string& topic, bool must_exist,
                                       const Deadline& deadline, std::string* error) {
  std::string not_ready;
  for (;;) {
    const rd_kafka_metadata_t* raw = nullptr;
    const rd_kafka_resp_err_t result =
        rd_kafka_metadata(client.rk(), 1, nullptr, &raw, std::max(1, deadline.RemainingMs()));
    if (result != RD_KAFKA_RESP_ERR_NO_ERROR) {
      *error = "no kafka broker answered a metadata request for state topic " + topic + ": " +
               rd_kafka_err2str(result) + client.LastErrorSuffix();
      return std::nullopt;
    }
    MetadataPtr metadata(raw, &rd_kafka_metadata_destroy);
    TopicLookup lookup;
    lookup.answering_broker = metadata->orig_broker_id;
    const rd_kafka_metadata_topic_t* found = nullptr;
    for (int i = 0; i < metadata->topic_cnt; ++i) {
      if (topic == metadata->topics[i].topic) found = &metadata->topics[i];
    }
    if (found == nullptr || found->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      if (!must_exist) return lookup;
      not_ready = "not in the cluster's metadata";
    } else if (found->err != RD_KAFKA_RESP_ERR_NO_ERROR || found->partition_cnt < 1) {
      not_ready = found->err != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(found->err) : "no partitions";
    } else {
      lookup.exists = true;
      lookup.partitions = found->partition_cnt;
      return lookup;
    }
    if (deadline.RemainingMs() <= kMetadataRetryPause.count()) {
      *error = "state topic " + topic + " is not ready in time: " + not_ready;
      return std::nullopt;
    }
    std::this_thread::sleep_for(kMetadataRetryPause);
  }
}

// Waits for the one result event an Admin API call posts to `queue`; null when none came.
EventPtr WaitForAdminResult(rd_kafka_queue_t* queue, const Deadline& deadline) {
  // librdkafka posts a timed-out result itself at the request timeout; the margin only guards
  // against waiting forever should it not.
  return EventPtr(rd_kafka_queue_poll(queue, deadline.RemainingMs() + 1000), &rd_kafka_event_destroy);
}

struct CreateOutcome {
  rd_kafka_resp_err_t error = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string message;
};

// Sends CreateTopics to `broker` (-1: the controller, as librdkafka routes it by default).
CreateOutcome CreateTopic(KafkaClient& client, const StateTopicSettings& settings, int32_t broker,
                          const Deadline& deadline) {
  std::array<char, 512> errstr{};
  std::unique_ptr<rd_kafka_NewTopic_t, decltype(&rd_kafka_NewTopic_destroy)> new_topic(
      rd_kafka_NewTopic_new(settings.topic.c_str(), settings.partitions, settings.replication_factor, errstr.data(),
                            errstr.size()),
      &rd_kafka_NewTopic_destroy);
  if (new_topic == nullptr) return {RD_KAFKA_RESP_ERR__INVALID_ARG, errstr.data()};
  rd_kafka_NewTopic_set_config(new_topic.get(), "cleanup.policy", "compact");

  AdminOptionsPtr options(rd_kafka_AdminOptions_new(client.rk(), RD_KAFKA_ADMIN_OP_CREATETOPICS),
                          &rd_kafka_AdminOptions_destroy);
  const int remaining = std::max(2, deadline.RemainingMs());
  // Half of the time for the broker to finish creating, so that its answer (REQUEST_TIMED_OUT
  // when creation is still in progress) comes back before the request itself times out.
  rd_kafka_AdminOptions_set_request_timeout(options.get(), std::min(remaining, 3600000), errstr.data(), errstr.size());
  rd_kafka_AdminOptions_set_operation_timeout(options.get(), std::min(remaining / 2, 3600000), errstr.data(),
                                              errstr.size());
  if (broker >= 0) rd_kafka_AdminOptions_set_broker(options.get(), broker, errstr.data(), errstr.size());

  QueuePtr queue(rd_kafka_queue_new(client.rk()), &rd_kafka_queue_destroy);
  rd_kafka_NewTopic_t* topics[] = {new_topic.get()};
  rd_kafka_CreateTopics(client.rk(), topics, 1, options.get(), queue.get());
  EventPtr event = WaitForAdminResult(queue.get(), deadline);
  if (event == nullptr) return {RD_KAFKA_RESP_ERR__TIMED_OUT, "no answer to CreateTopics"};
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return {rd_kafka_event_error(event.get()), rd_kafka_event_error_string(event.get())};
  }
  size_t count = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event.get()), &count);
  for (size_t i = 0; i < count; ++i) {
    if (settings.topic != rd_kafka_topic_result_name(results[i])) continue;
    const rd_kafka_resp_err_t topic_error = rd_kafka_topic_result_error(results[i]);
    const char* text = rd_kafka_topic_result_error_string(results[i]);
    return {topic_error, text != nullptr && *text != '\0' ? text : rd_kafka_err2str(topic_error)};
  }
  return {RD_KAFKA_RESP_ERR__BAD_MSG, "the CreateTopics result does not name the topic"};
}

// An error when the topic's cleanup.policy is known and does not contain "compact": with
// retention the checkpoints of quiet streams would be deleted (a restart then replays or skips
// them), without it the topic grows forever and every start reads it all. A policy that cannot
// be read (no DescribeConfigs, not authorized) is a warning: the topic may well be right.
std::optional<std::string> CheckCompaction(KafkaClient& client, const std::string& topic, int32_t broker,
                                           const Deadline& deadline, std::vector<std::string>* warnings) {
  const std::string cannot_check = "could not check the cleanup.policy of state topic " + topic + ": ";
  if (deadline.Passed()) {
    warnings->push_back(cannot_check + "out of time");
    return std::nullopt;
  }
  std::array<char, 512> errstr{};
  AdminOptionsPtr options(rd_kafka_AdminOptions_new(client.rk(), RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS),
                          &rd_kafka_AdminOptions_destroy);
  rd_kafka_AdminOptions_set_request_timeout(options.get(), std::min(std::max(1, deadline.RemainingMs()), 3600000),
                                            errstr.data(), errstr.size());
  // Any broker describes a topic's configuration; librdkafka 2.0.2 would otherwise wait for a
  // controller, which librdkafka's mock cluster never names.
  if (broker >= 0) rd_kafka_AdminOptions_set_broker(options.get(), broker, errstr.data(), errstr.size());

  std::unique_ptr<rd_kafka_ConfigResource_t, decltype(&rd_kafka_ConfigResource_destroy)> resource(
      rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()), &rd_kafka_ConfigResource_destroy);
  QueuePtr queue(rd_kafka_queue_new(client.rk()), &rd_kafka_queue_destroy);
  rd_kafka_ConfigResource_t* resources[] = {resource.get()};
  rd_kafka_DescribeConfigs(client.rk(), resources, 1, options.get(), queue.get());
  EventPtr event = WaitForAdminResult(queue.get(), deadline);
  if (event == nullptr) {
    warnings->push_back(cannot_check + "no answer to DescribeConfigs");
    return std::nullopt;
  }
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    warnings->push_back(cannot_check + rd_kafka_event_error_string(event.get()));
    return std::nullopt;
  }
  size_t resource_count = 0;
  const rd_kafka_ConfigResource_t** described =
      rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(event.get()), &resource_count);
  for (size_t r = 0; r < resource_count; ++r) {
    if (topic != rd_kafka_ConfigResource_name(described[r])) continue;
    if (rd_kafka_ConfigResource_error(described[r]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* text = rd_kafka_ConfigResource_error_string(described[r]);
      warnings->push_back(cannot_check +
                          (text != nullptr ? text : rd_kafka_err2str(rd_kafka_ConfigResource_error(described[r]))));
      return std::nullopt;
    }
    size_t config_count = 0;
    const rd_kafka_ConfigEntry_t** configs = rd_kafka_ConfigResource_configs(described[r], &config_count);
    for (size_t c = 0; c < config_count; ++c) {
      if (std::strcmp(rd_kafka_ConfigEntry_name(configs[c]), "cleanup.policy") != 0) continue;
      const char* value = rd_kafka_ConfigEntry_value(configs[c]);
      const std::string policy = value != nullptr ? value : "";
      if (policy.find("compact") != std::string::npos) return std::nullopt;
      return "state topic " + topic + " has cleanup.policy=" + policy +
             ", not compact: retention would delete the checkpoints of streams that see no events, and the "
             "topic would grow without bound; set cleanup.policy=compact on it (kafka-configs --alter "
             "--entity-type topics --entity-name " + topic + " --add-config cleanup.policy=compact) or set "
             "another state.topic";
    }
    warnings->push_back(cannot_check + "the broker did not list it");
    return std::nullopt;
  }
  warnings->push_back(cannot_check + "the broker did not describe the topic");
  return std::nullopt;
}

// Uses an existing topic: its real partition count wins over the configured one. nullopt and
// *error when it is not compacted.
std::optional<int32_t> UseExistingTopic(KafkaClient& client, const StateTopicSettings& settings,
                                        const TopicLookup& lookup, const Deadline& deadline,
                                        std::vector<std::string>* warnings, std::string* error) {
  if (lookup.partitions != settings.partitions) {
    warnings->push_back("state topic " + settings.topic + " has " + std::to_string(lookup.partitions) +
                        " partitions, not the configured " + std::to_string(settings.partitions) + ": using " +
                        std::to_string(lookup.partitions));
  }
  if (auto not_compacted = CheckCompaction(client, settings.topic, lookup.answering_broker, deadline, warnings)) {
    *error = std::move(*not_compacted);
    return std::nullopt;
  }
  return lookup.partitions;
}

bool IsUnansweredRequest(rd_kafka_resp_err_t error) {
  return error == RD_KAFKA_RESP_ERR__TIMED_OUT || error == RD_KAFKA_RESP_ERR__TRANSPORT ||
         error == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN;
}

// Consumer errors after which waiting does not help.
bool IsPermanentReadError(rd_kafka_resp_err_t error) {
  return error == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || error == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
         error == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || error == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
         error == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED || error == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
         error == RD_KAFKA_RESP_ERR__SSL;
}

std::string JoinPartitions(const std::set<int32_t>& partitions) {
  std::string joined;
  for (int32_t partition : partitions) {
    if (!joined.empty()) joined += ", ";
    joined += std::to_string(partition);
  }
  return joined;
}

// Reads assigned partitions of one topic through a queue, keeping the newest checkpoint per key.
class CheckpointReader {
 public:
  CheckpointReader(KafkaClient& client, const std::string& topic) : client_(client), topic_name_(topic) {}

  ~CheckpointReader() {
    for (int32_t partition : started_) rd_kafka_consume_stop(topic_, partition);
    if (queue_ != nullptr) rd_kafka_queue_destroy(queue_);
    if (topic_ != nullptr) rd_kafka_topic_destroy(topic_);
  }
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  // Queries where each partition starts and ends now and starts reading the non-empty ones.
  bool Start(const std::set<int32_t>& partitions, const Deadline& deadline, std::string* error) {
    // Reading starts at the explicit first offset: started at RD_KAFKA_OFFSET_BEGINNING,
    // librdkafka 2.0.2 looks the offset up itself and, when the partition's leader is not yet
    // wired up inside the fresh client, retries only after a fixed 500 ms.
    PartitionListPtr starts = QueryOffsets(partitions, RD_KAFKA_OFFSET_BEGINNING, "starts", deadline, error);
    if (starts == nullptr) return false;
    // The end: the high watermark, or the last stable offset under read_committed.
    PartitionListPtr ends = QueryOffsets(partitions, RD_KAFKA_OFFSET_END, "ends", deadline, error);
    if (ends == nullptr) return false;
    topic_ = rd_kafka_topic_new(client_.rk(), topic_name_.c_str(), nullptr);
    queue_ = rd_kafka_queue_new(client_.rk());
    if (topic_ == nullptr || queue_ == nullptr) {
      *error = "cannot read state topic " + topic_name_ + ": " + rd_kafka_err2str(rd_kafka_last_error());
      return false;
    }
    for (int i = 0; i < ends->cnt; ++i) {
      const int32_t partition = ends->elems[i].partition;
      const int64_t end = ends->elems[i].offset;
      const rd_kafka_topic_partition_t* first =
          rd_kafka_topic_partition_list_find(starts.get(), topic_name_.c_str(), partition);
      const int64_t start = first != nullptr ? std::max<int64_t>(first->offset, 0) : 0;
      if (start >= end) continue;  // never written to, or everything in it deleted
      if (rd_kafka_consume_start_queue(topic_, partition, start, queue_) != 0) {
        *error = "cannot read partition " + std::to_string(partition) + " of state topic " + topic_name_ + ": " +
                 rd_kafka_err2str(rd_kafka_last_error());
        return false;
      }
      started_.push_back(partition);
      end_offsets_[partition] = end;
      unfinished_.insert(partition);
    }
    return true;
  }

  // Consumes until every started partition is read to its end. false and *error when time
  // runs out first or a partition cannot be read.
  bool ReadToEnd(const Deadline& deadline, std::string* error) {
    std::string problem;
    while (!unfinished_.empty()) {
      const int remaining = deadline.RemainingMs();
      if (remaining <= 0) break;
      // One message at a time: rd_kafka_consume_batch_queue would wait for a full batch.
      std::unique_ptr<rd_kafka_message_t, decltype(&rd_kafka_message_destroy)> message(
          rd_kafka_consume_queue(queue_, std::min(remaining, 100)), &rd_kafka_message_destroy);
      if (message == nullptr) continue;  // nothing within the wait
      if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        unfinished_.erase(message->partition);
      } else if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        problem = "partition " + std::to_string(message->partition) + ": " + rd_kafka_message_errstr(message.get());
        if (IsPermanentReadError(message->err)) {
          *error = "cannot read state topic " + topic_name_ + ", " + problem;
          return false;
        }
      } else {
        Apply(*message);
      }
    }
    if (unfinished_.empty()) return true;
    *error = "state topic " + topic_name_ + ": partition(s) " + JoinPartitions(unfinished_) +
             " not read to their end in time" + (problem.empty() ? client_.LastErrorSuffix() : " (" + problem + ")");
    return false;
  }

  std::map<std::string, std::string> TakeCheckpoints() { return std::move(checkpoints_); }

 private:
  // Offsets of `partitions` looked up "by timestamp" `logical` (RD_KAFKA_OFFSET_BEGINNING: the
  // log start; RD_KAFKA_OFFSET_END: the end), one ListOffsets request per leader.
  // The offsets of `partitions` at `logical` (beginning or end). Asked in attempts of at most
  // kOffsetsAttempt: librdkafka 2.0.2 keeps sending a ListOffsets to a partition's dead leader
  // instead of learning the new one, so one call bounded by the whole deadline would fail after
  // it although a new leader serves within seconds (seen on a real 3-node cluster with a node
  // just killed). Between attempts the topic's metadata is refreshed. An authorization or
  // authentication error fails at once.
  PartitionListPtr QueryOffsets(const std::set<int32_t>& partitions, int64_t logical, const char* what,
                                const Deadline& deadline, std::string* error) {
    std::string problem;
    while (true) {
      PartitionListPtr offsets(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())),
                               &rd_kafka_topic_partition_list_destroy);
      for (int32_t partition : partitions) {
        rd_kafka_topic_partition_list_add(offsets.get(), topic_name_.c_str(), partition)->offset = logical;
      }
      const int attempt_ms = std::max(1, std::min<int>(deadline.RemainingMs(), kOffsetsAttempt.count()));
      rd_kafka_resp_err_t result = rd_kafka_offsets_for_times(client_.rk(), offsets.get(), attempt_ms);
      if (result == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < offsets->cnt && result == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
          result = offsets->elems[i].err;
          if (result != RD_KAFKA_RESP_ERR_NO_ERROR) {
            problem = "cannot find where partition " + std::to_string(offsets->elems[i].partition) +
                      " of state topic " + topic_name_ + " " + what + ": " + rd_kafka_err2str(result);
          }
        }
        if (result == RD_KAFKA_RESP_ERR_NO_ERROR) return offsets;
      } else {
        problem = std::string("cannot find where state topic ") + topic_name_ + " " + what + ": " +
                  rd_kafka_err2str(result) + client_.LastErrorSuffix();
      }
      // An unknown partition or topic is not final here: the topic exists (EnsureStateTopic), and
      // a client's metadata of one just created may not show its partitions yet.
      const bool unknown = result == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                           result == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || result == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
      if ((IsPermanentReadError(result) && !unknown) || deadline.RemainingMs() <= kOffsetsRetryPause.count()) {
        *error = problem;
        return PartitionListPtr(nullptr, &rd_kafka_topic_partition_list_destroy);
      }
      RefreshLeaders(deadline);
      std::this_thread::sleep_for(kOffsetsRetryPause);
    }
  }

  // Asks for the topic's metadata, so that librdkafka learns leaders that moved.
  void RefreshLeaders(const Deadline& deadline) {
    rd_kafka_topic_t* topic = rd_kafka_topic_new(client_.rk(), topic_name_.c_str(), nullptr);
    if (topic == nullptr) return;
    const rd_kafka_metadata_t* metadata = nullptr;
    if (rd_kafka_metadata(client_.rk(), 0, topic, &metadata,
                          std::max(1, std::min<int>(deadline.RemainingMs(), kOffsetsAttempt.count()))) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_metadata_destroy(metadata);
    }
    rd_kafka_topic_destroy(topic);
  }

  void Apply(const rd_kafka_message_t& message) {
    const int32_t partition = message.partition;
    if (!unfinished_.contains(partition) || message.offset >= end_offsets_[partition]) return;
    if (message.key != nullptr) {
      std::string key(static_cast<const char*>(message.key), message.key_len);
      if (message.payload == nullptr) {
        checkpoints_.erase(key);
      } else if (auto id =
                     DecodeCheckpointValue(std::string_view(static_cast<const char*>(message.payload), message.len))) {
        checkpoints_.insert_or_assign(std::move(key), std::move(*id));
      }
    }
    if (message.offset + 1 >= end_offsets_[partition]) unfinished_.erase(partition);
  }

  KafkaClient& client_;
  std::string topic_name_;
  rd_kafka_topic_t* topic_ = nullptr;
  rd_kafka_queue_t* queue_ = nullptr;
  std::vector<int32_t> started_;
  std::map<int32_t, int64_t> end_offsets_;
  std::set<int32_t> unfinished_;
  std::map<std::string, std::string> checkpoints_;
};

}  // namespace

int32_t KafkaMurmur2(std::string_view bytes) {
  constexpr uint32_t m = 0x5bd1e995;
  constexpr int r = 24;
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t length = bytes.size();
  uint32_t h = kMurmur2Seed ^ static_cast<uint32_t>(length);
  const std::size_t whole = length / 4;
  for (std::size_t i = 0; i < whole; ++i) {
    const std::size_t at = i * 4;
    // Little-endian words, as Java's Utils.murmur2 assembles them, whatever the host order.
    uint32_t k = static_cast<uint32_t>(data[at]) | static_cast<uint32_t>(data[at + 1]) << 8 |
                 static_cast<uint32_t>(data[at + 2]) << 16 | static_cast<uint32_t>(data[at + 3]) << 24;
    k *= m;
    k ^= k >> r;
    k *= m;
    h *= m;
    h ^= k;
  }
  const std::size_t tail = whole * 4;
  switch (length % 4) {
    case 3:
      h ^= static_cast<uint32_t>(data[tail + 2]) << 16;
      [[fallthrough]];
    case 2:
      h ^= static_cast<uint32_t>(data[tail + 1]) << 8;
      [[fallthrough]];
    case 1:
      h ^= static_cast<uint32_t>(data[tail]);
      h *= m;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return static_cast<int32_t>(h);
}

int32_t StatePartitionFor(std::string_view stream_name, int32_t partitions) {
  if (partitions < 1) return -1;
  const uint32_t positive = static_cast<uint32_t>(KafkaMurmur2(stream_name)) & 0x7fffffffu;
  return static_cast<int32_t>(positive % static_cast<uint32_t>(partitions));
}

std::string EncodeCheckpointValue(std::string_view last_event_id, std::string_view instance, int64_t unix_ms) {
  std::string value;
  value.reserve(64 + last_event_id.size() + instance.size());
  value += "{\"last_event_id\":";
  AppendJsonString(value, last_event_id);
  value += ",\"instance\":";
  AppendJsonString(value, instance);
  value += ",\"written_at\":\"";
  AppendRfc3339Millis(value, unix_ms);
  value += "\"}";
  return value;
}

std::optional<std::string> DecodeCheckpointValue(std::string_view value) {
  const nlohmann::json parsed = nlohmann::json::parse(value.begin(), value.end(), nullptr, false);
  if (!parsed.is_object()) return std::nullopt;
  const auto id = parsed.find("last_event_id");
  if (id == parsed.end() || !id->is_string()) return std::nullopt;
  return id->get<std::string>();
}

// Creates the topic through a metadata request for it by name, which a broker with
// auto.create.topics.enable (and librdkafka's mock cluster, always) answers by creating it with
// its default partition count and cleanup.policy.
std::optional<int32_t> AutoCreateTopic(KafkaClient& client, const StateTopicSettings& settings,
                                       const Deadline& deadline, std::vector<std::string>* warnings,
                                       std::string* error) {
  rd_kafka_topic_t* handle = rd_kafka_topic_new(client.rk(), settings.topic.c_str(), nullptr);
  if (handle != nullptr) {
    const rd_kafka_metadata_t* raw = nullptr;
    if (rd_kafka_metadata(client.rk(), 0, handle, &raw, std::max(1, deadline.RemainingMs())) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_metadata_destroy(raw);
    }
    rd_kafka_topic_destroy(handle);
  }
  std::optional<TopicLookup> lookup = LookUpTopic(client, settings.topic, true, deadline, error);
  if (!lookup) {
    *error = "the broker cannot create topics (no CreateTopics API) and did not auto-create state topic " +
             settings.topic + ": " + *error + "; create it with cleanup.policy=compact";
    return std::nullopt;
  }
  warnings->push_back("the broker cannot create topics (no CreateTopics API): state topic " + settings.topic +
                      " was auto-created with " + std::to_string(lookup->partitions) +
                      " partitions and the broker's default cleanup.policy; for production create it with "
                      "cleanup.policy=compact");
  return lookup->partitions;
}

std::optional<int32_t> EnsureStateTopic(const StateTopicSettings& settings, std::chrono::milliseconds timeout,
                                        std::vector<std::string>* warnings, std::string* error) {
  const Deadline deadline(timeout);
  std::unique_ptr<KafkaClient> client = KafkaClient::Create(settings, {}, error);
  if (client == nullptr) return std::nullopt;

  std::optional<TopicLookup> lookup = LookUpTopic(*client, settings.topic, false, deadline, error);
  if (!lookup) return std::nullopt;
  if (lookup->exists) return UseExistingTopic(*client, settings, *lookup, deadline, warnings, error);

  // Sent to a broker that just answered rather than to the controller: librdkafka 2.0.2 waits
  // for a controller until the timeout, and librdkafka's mock cluster never names one. A
  // broker that is not the controller of an older ZooKeeper cluster answers NOT_CONTROLLER.
  CreateOutcome created = CreateTopic(*client, settings, lookup->answering_broker, deadline);
  if (created.error == RD_KAFKA_RESP_ERR_NOT_CONTROLLER) created = CreateTopic(*client, settings, -1, deadline);

  if (created.error == RD_KAFKA_RESP_ERR_NO_ERROR || created.error == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT) {
    // REQUEST_TIMED_OUT: the controller had not finished within the operation timeout; the
    // topic is on its way.
    lookup = LookUpTopic(*client, settings.topic, true, deadline, error);
    if (!lookup) return std::nullopt;
    spdlog::info("created state topic {} with {} partitions (cleanup.policy=compact)", settings.topic,
                 lookup->partitions);
    return lookup->partitions;
  }
  if (created.error == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) {
    // The broker has no CreateTopics (librdkafka's mock cluster, brokers older than 0.10.1).
    // Asking for the topic by name makes a broker that auto-creates topics create it, with its
    // own defaults: better than refusing to start, and the warning says what to fix.
    return AutoCreateTopic(*client, settings, deadline, warnings, error);
  }
  if (created.error == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    // Another instance created it since the lookup.
    lookup = LookUpTopic(*client, settings.topic, true, deadline, error);
    if (!lookup) return std::nullopt;
    return UseExistingTopic(*client, settings, *lookup, deadline, warnings, error);
  }
  if (IsUnansweredRequest(created.error)) {
    *error = "no kafka broker answered the request to create state topic " + settings.topic + ": " + created.message +
             client->LastErrorSuffix();
    return std::nullopt;
  }
  // Refused (authorization, policy, replication factor): fine if someone else created it.
  std::string recheck_error;
  lookup = LookUpTopic(*client, settings.topic, false, deadline, &recheck_error);
  if (lookup && lookup->exists) return UseExistingTopic(*client, settings, *lookup, deadline, warnings, error);
  *error = "state topic " + settings.topic +
           " does not exist and cannot be created: " + rd_kafka_err2name(created.error) + ": " + created.message;
  return std::nullopt;
}

std::optional<std::map<std::string, std::string>> ReadStateCheckpoints(const StateTopicSettings& settings,
                                                                       const std::vector<int32_t>& partitions,
                                                                       bool read_committed,
                                                                       std::chrono::milliseconds timeout,
                                                                       std::string* error) {
  if (partitions.empty()) return std::map<std::string, std::string>();
  const std::set<int32_t> wanted(partitions.begin(), partitions.end());
  if (*wanted.begin() < 0) {
    *error = "state topic " + settings.topic + ": partition " + std::to_string(*wanted.begin()) + " does not exist";
    return std::nullopt;
  }
  const Deadline deadline(timeout);
  std::unique_ptr<KafkaClient> client =
      KafkaClient::Create(settings,
                          {
                              {"enable.partition.eof", "true"},
                              {"fetch.wait.max.ms", kReaderFetchWaitMs},
                              {"fetch.error.backoff.ms", "50"},
                              {"enable.auto.commit", "false"},
                              {"enable.auto.offset.store", "false"},
                              {"auto.offset.reset", "earliest"},
                              {"isolation.level", read_committed ? "read_committed" : "read_uncommitted"},
                          },
                          error);
  if (client == nullptr) return std::nullopt;
  std::map<std::string, std::string> checkpoints;
  {
    CheckpointReader reader(*client, settings.topic);
    if (!reader.Start(wanted, deadline, error) || !reader.ReadToEnd(deadline, error)) return std::nullopt;
    checkpoints = reader.TakeCheckpoints();
  }
  return checkpoints;
}

}  // namespace sse2kafka::sink
