#include "sink/group_membership.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>

namespace sse2kafka::sink {
namespace {

// What librdkafka writes to the wakeup eventfd: an eventfd takes 8-byte counter increments.
constexpr uint64_t kWakeupIncrement = 1;

// Events served by one Poll. Bounded so that Poll cannot spin; what is left keeps the queue
// non-empty and is served by the next call (the owner's timer at the latest).
constexpr int kMaxEventsPerPoll = 256;

constexpr std::chrono::milliseconds kMinMaxPollInterval{30000};
constexpr std::chrono::milliseconds kMinHeartbeatInterval{100};

// The prefix of librdkafka's consumer group metadata serialization (format v2), which is
// followed by the generation as a native int32. The format is private to librdkafka, hence the
// check: an unknown prefix makes generation() report -1 rather than a wrong number.
constexpr std::string_view kGroupMetadataMagic = "CGMDv2:";

using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, decltype(&rd_kafka_topic_partition_list_destroy)>;

int TimeoutMs(std::chrono::milliseconds timeout) {
  return static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(timeout.count(), 0, INT_MAX));
}

PartitionList NewPartitionList(const std::string& topic, const std::vector<int32_t>& partitions) {
  PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size())),
                     &rd_kafka_topic_partition_list_destroy);
  for (int32_t partition : partitions) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition);
  return list;
}

std::vector<int32_t> PartitionsOf(const rd_kafka_topic_partition_list_t* list) {
  std::vector<int32_t> partitions;
  if (list == nullptr) return partitions;
  partitions.reserve(static_cast<std::size_t>(list->cnt));
  for (int i = 0; i < list->cnt; ++i) partitions.push_back(list->elems[i].partition);
  std::sort(partitions.begin(), partitions.end());
  return partitions;
}

std::string Describe(const std::vector<int32_t>& partitions) {
  std::string text;
  for (int32_t partition : partitions) {
    if (!text.empty()) text += ',';
    text += std::to_string(partition);
  }
  return "[" + text + "]";
}

// The properties the member is created with, in the order they are applied: the user's
// connection-level ones, then what group membership depends on, which therefore wins.
PropertyList MemberProperties(const MembershipSettings& settings) {
  PropertyList properties = settings.properties;
  const auto session = settings.session_timeout;
  const auto heartbeat = std::max(kMinHeartbeatInterval, session / 3);
  properties.emplace_back("client.id", settings.client_id);
  properties.emplace_back("group.id", settings.group);
  properties.emplace_back("partition.assignment.strategy", "cooperative-sticky");
  properties.emplace_back("session.timeout.ms", std::to_string(session.count()));
  properties.emplace_back("heartbeat.interval.ms", std::to_string(heartbeat.count()));
  properties.emplace_back("max.poll.interval.ms", std::to_string(MaxPollInterval(settings).count()));
  // The member holds partitions, it does not read them: no offsets are stored or committed
  // (CheckGeneration's probe aside), and records fetched despite the pause are dropped.
  properties.emplace_back("enable.auto.commit", "false");
  properties.emplace_back("enable.auto.offset.store", "false");
  properties.emplace_back("enable.partition.eof", "false");
  properties.emplace_back("bootstrap.servers", settings.bootstrap_servers);
  return properties;
}

GroupMembership::GenerationCheck ClassifyCommitError(rd_kafka_resp_err_t error) {
  switch (error) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
      return GroupMembership::GenerationCheck::kCurrent;
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST:
      return GroupMembership::GenerationCheck::kStale;
    default:
      return GroupMembership::GenerationCheck::kUnknown;
  }
}

}  // namespace

std::chrono::milliseconds MaxPollInterval(const MembershipSettings& settings) {
  return std::max(kMinMaxPollInterval, settings.session_timeout);
}

struct GroupMembership::Callbacks {
  static void OnRebalance(rd_kafka_t*, rd_kafka_resp_err_t error, rd_kafka_topic_partition_list_t* partitions,
                          void* opaque) {
    static_cast<GroupMembership*>(opaque)->HandleRebalance(error, partitions);
  }

  static void OnError(rd_kafka_t* rk, int error, const char* reason, void* opaque) {
    auto* member = static_cast<GroupMembership*>(opaque);
    const auto err = static_cast<rd_kafka_resp_err_t>(error);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      std::array<char, 512> fatal{};
      const rd_kafka_resp_err_t cause = rd_kafka_fatal_error(rk, fatal.data(), fatal.size());
      member->Report(std::string(rd_kafka_err2name(cause)) + ": " + fatal.data(), true);
      return;
    }
    member->Report(std::string(rd_kafka_err2name(err)) + ": " + reason, false);
  }
};

GroupMembership::GroupMembership() = default;

std::unique_ptr<GroupMembership> GroupMembership::Create(const MembershipSettings& settings, std::string* error) {
  if (settings.group.empty()) {
    *error = "group membership needs a group id";
    return nullptr;
  }
  if (settings.topic.empty()) {
    *error = "group membership needs the state topic";
    return nullptr;
  }
  const PropertyList properties = MemberProperties(settings);
  rd_kafka_conf_t* conf = NewLibrdkafkaConf(properties, error);
  if (conf == nullptr) return nullptr;

  std::unique_ptr<GroupMembership> member(new GroupMembership());
  member->topic_ = settings.topic;
  rd_kafka_conf_set_opaque(conf, member.get());
  rd_kafka_conf_set_rebalance_cb(conf, &Callbacks::OnRebalance);
  rd_kafka_conf_set_error_cb(conf, &Callbacks::OnError);
  ForwardLogToSpdlog(conf);

  std::array<char, 512> errstr{};
  member->rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr.data(), errstr.size());
  if (member->rk_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    *error = "cannot create the group member: " + RedactSecretValues(errstr.data(), properties);
    return nullptr;
  }
  // Errors and other main-queue events come out of the consumer queue, so that one queue and
  // one wakeup fd carry everything Poll serves.
  rd_kafka_poll_set_consumer(member->rk_);
  member->consumer_queue_ = rd_kafka_queue_get_consumer(member->rk_);

  member->wakeup_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (member->wakeup_fd_ < 0) {
    *error = std::string("cannot create the group member's wakeup eventfd: ") + std::strerror(errno);
    return nullptr;
  }
  rd_kafka_queue_io_event_enable(member->consumer_queue_, member->wakeup_fd_, &kWakeupIncrement,
                                 sizeof(kWakeupIncrement));

  PartitionList subscription(rd_kafka_topic_partition_list_new(1), &rd_kafka_topic_partition_list_destroy);
  rd_kafka_topic_partition_list_add(subscription.get(), settings.topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (const rd_kafka_resp_err_t err = rd_kafka_subscribe(member->rk_, subscription.get()); err) {
    *error = "cannot subscribe the group member to " + settings.topic + ": " + rd_kafka_err2str(err);
    return nullptr;
  }
  spdlog::info("joining kafka group {} for the partitions of {} (session timeout {} ms)", settings.group,
               settings.topic, settings.session_timeout.count());
  return member;
}

GroupMembership::~GroupMembership() {
  if (consumer_queue_ != nullptr) {
    rd_kafka_queue_io_event_enable(consumer_queue_, -1, nullptr, 0);
    rd_kafka_queue_destroy(consumer_queue_);
  }
  if (rk_ != nullptr) {
    // A normal destroy would run the consumer close, which blocks until the group is left; the
    // caller chose not to Leave (or Leave timed out), so the coordinator's session timeout does it.
    if (closed_) {
      rd_kafka_destroy(rk_);
    } else {
      rd_kafka_destroy_flags(rk_, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
  }
  if (wakeup_fd_ >= 0) close(wakeup_fd_);
}

void GroupMembership::Poll(MembershipHandler& handler) {
  if (leaving_) return;
  DrainWakeupFd();
  handler_ = &handler;
  for (int served = 0; served < kMaxEventsPerPoll; ++served) {
    rd_kafka_message_t* message = rd_kafka_consumer_poll(rk_, 0);
    if (message == nullptr) break;
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        Report(std::string(rd_kafka_err2name(message->err)) + ": " + rd_kafka_message_errstr(message), false);
      }
    } else {
      // A fetch that started between assigning and pausing a partition.
      spdlog::debug("group member dropped a state record of partition {} (its partitions are paused)",
                    message->partition);
    }
    rd_kafka_message_destroy(message);
  }
  handler_ = nullptr;
}

void GroupMembership::Release(const std::vector<int32_t>& partitions) {
  if (leaving_) return;
  for (int32_t partition : partitions) releasing_.erase(partition);
  if (pending_revoke_.empty() || !releasing_.empty()) return;
  const std::vector<int32_t> revoked = std::move(pending_revoke_);
  pending_revoke_.clear();
  for (int32_t partition : revoked) assigned_.erase(partition);
  if (Unassign(revoked)) spdlog::info("released kafka group partitions {} of {}", Describe(revoked), topic_);
}

std::string GroupMembership::member_id() const {
  char* id = rd_kafka_memberid(rk_);
  if (id == nullptr) return std::string();
  std::string copy(id);
  rd_kafka_mem_free(rk_, id);
  return copy;
}

int32_t GroupMembership::generation() const {
  rd_kafka_consumer_group_metadata_t* metadata = rd_kafka_consumer_group_metadata(rk_);
  if (metadata == nullptr) return -1;
  void* buffer = nullptr;
  size_t size = 0;
  rd_kafka_error_t* error = rd_kafka_consumer_group_metadata_write(metadata, &buffer, &size);
  rd_kafka_consumer_group_metadata_destroy(metadata);
  if (error != nullptr) {
    rd_kafka_error_destroy(error);
    return -1;
  }
  int32_t generation = -1;
  if (size >= kGroupMetadataMagic.size() + sizeof(generation) &&
      std::memcmp(buffer, kGroupMetadataMagic.data(), kGroupMetadataMagic.size()) == 0) {
    std::memcpy(&generation, static_cast<const char*>(buffer) + kGroupMetadataMagic.size(), sizeof(generation));
  }
  rd_kafka_mem_free(rk_, buffer);
  return generation;
}

GroupMembership::GenerationCheck GroupMembership::CheckGeneration(std::chrono::milliseconds timeout) {
  if (leaving_) return GenerationCheck::kUnknown;
  if (rd_kafka_assignment_lost(rk_)) return GenerationCheck::kStale;
  std::vector<int32_t> probe(assigned_.begin(), assigned_.end());
  if (probe.empty()) probe.push_back(0);
  PartitionList offsets = NewPartitionList(topic_, probe);
  for (int i = 0; i < offsets->cnt; ++i) offsets->elems[i].offset = 0;

  // A queue of its own so that the answer can be waited for with a deadline (rd_kafka_commit
  // would wait without one) and does not mix with what Poll serves.
  rd_kafka_queue_t* answers = rd_kafka_queue_new(rk_);
  GenerationCheck result = GenerationCheck::kUnknown;
  const rd_kafka_resp_err_t queued = rd_kafka_commit_queue(rk_, offsets.get(), answers, nullptr, nullptr);
  if (queued != RD_KAFKA_RESP_ERR_NO_ERROR) {
    result = ClassifyCommitError(queued);
    spdlog::info("kafka group generation check not sent: {}", rd_kafka_err2str(queued));
  } else {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      rd_kafka_event_t* event = rd_kafka_queue_poll(answers, TimeoutMs(std::max(left, std::chrono::milliseconds(0))));
      if (event == nullptr) {
        spdlog::info("kafka group generation check: no answer within {} ms", timeout.count());
        break;
      }
      if (rd_kafka_event_type(event) != RD_KAFKA_EVENT_OFFSET_COMMIT) {
        rd_kafka_event_destroy(event);
        continue;
      }
      rd_kafka_resp_err_t err = rd_kafka_event_error(event);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        // The request as a whole went through; a refusal shows on the partitions.
        if (const rd_kafka_topic_partition_list_t* answered = rd_kafka_event_topic_partition_list(event)) {
          for (int i = 0; i < answered->cnt && err == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) err = answered->elems[i].err;
        }
      }
      result = ClassifyCommitError(err);
      spdlog::info("kafka group generation check: {}", err ? rd_kafka_err2str(err) : "member is current");
      rd_kafka_event_destroy(event);
      break;
    }
  }
  rd_kafka_queue_destroy(answers);
  return result;
}

bool GroupMembership::Leave(std::chrono::milliseconds timeout) {
  if (leaving_) return closed_;
  leaving_ = true;
  if (!assigned_.empty()) {
    // Normal at a stop: the owner wrote their checkpoints before leaving.
    spdlog::info("leaving kafka group; partitions {} of {} go to the other members",
                 Describe(std::vector<int32_t>(assigned_.begin(), assigned_.end())), topic_);
  }
  // Whatever librdkafka revokes while closing is answered at once (leaving_), inside the serving
  // below; the owner is not told.
  rd_kafka_queue_t* close_queue = rd_kafka_queue_new(rk_);
  if (rd_kafka_error_t* error = rd_kafka_consumer_close_queue(rk_, close_queue)) {
    spdlog::warn("cannot leave kafka group: {}", rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
    rd_kafka_queue_destroy(close_queue);
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!rd_kafka_consumer_closed(rk_)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= std::chrono::milliseconds(0)) break;
    // Short waits: closing completes without an event on this queue when nothing is assigned.
    rd_kafka_event_t* event = rd_kafka_queue_poll(close_queue, TimeoutMs(std::min(left, std::chrono::milliseconds(100))));
    if (event == nullptr) continue;
    if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE) {
      HandleRebalance(rd_kafka_event_error(event), rd_kafka_event_topic_partition_list(event));
    }
    rd_kafka_event_destroy(event);
  }
  closed_ = rd_kafka_consumer_closed(rk_) != 0;
  rd_kafka_queue_destroy(close_queue);
  assigned_.clear();
  releasing_.clear();
  pending_revoke_.clear();
  if (closed_) {
    spdlog::info("left kafka group");
  } else {
    spdlog::warn("leaving kafka group did not complete within {} ms; the coordinator will drop this member",
                 timeout.count());
  }
  return closed_;
}


void GroupMembership::HandleRebalance(int error, const rd_kafka_topic_partition_list_t* partitions) {
  const auto err = static_cast<rd_kafka_resp_err_t>(error);
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    Assign(partitions);
  } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
    Revoke(partitions, rd_kafka_assignment_lost(rk_) != 0);
  } else {
    // librdkafka asks the application to drop its assignment to resynchronise.
    DropEverything(std::string("rebalance failed: ") + rd_kafka_err2str(err));
  }
}

void GroupMembership::Assign(const rd_kafka_topic_partition_list_t* partitions) {
  const std::vector<int32_t> added = PartitionsOf(partitions);
  if (leaving_) {
    // Closing: librdkafka has to be answered, but nothing may start.
    if (rd_kafka_error_t* error = rd_kafka_incremental_assign(rk_, partitions)) rd_kafka_error_destroy(error);
    return;
  }
  // Paused before and after assigning: before, so that no fetch starts in between (the pause
  // flag survives the assignment); after, in case the partition was not known yet.
  PartitionList pause = NewPartitionList(topic_, added);
  rd_kafka_pause_partitions(rk_, pause.get());
  if (rd_kafka_error_t* error = rd_kafka_incremental_assign(rk_, partitions)) {
    const std::string reason = rd_kafka_error_string(error);
    rd_kafka_error_destroy(error);
    Report("cannot take assigned partitions " + Describe(added) + ": " + reason, false);
    return;
  }
  rd_kafka_pause_partitions(rk_, pause.get());
  if (added.empty()) return;
  assigned_.insert(added.begin(), added.end());
  spdlog::info("kafka group assigned partitions {} of {} (now {} owned)", Describe(added), topic_, assigned_.size());
  if (handler_ != nullptr) handler_->OnPartitionsAssigned(added);
}

void GroupMembership::Revoke(const rd_kafka_topic_partition_list_t* partitions, bool lost) {
  const std::vector<int32_t> revoked = PartitionsOf(partitions);
  if (leaving_ || lost) {
    for (int32_t partition : revoked) {
      assigned_.erase(partition);
      releasing_.erase(partition);
      pending_revoke_.erase(std::remove(pending_revoke_.begin(), pending_revoke_.end(), partition),
                            pending_revoke_.end());
    }
    Unassign(revoked);
    if (leaving_ || revoked.empty()) return;
    spdlog::warn("kafka group partitions {} of {} lost (this member was dropped from the group)",
                 Describe(revoked), topic_);
    if (handler_ != nullptr) handler_->OnPartitionsRevoked(revoked, true);
    return;
  }
  if (revoked.empty()) {
    Unassign(revoked);
    return;
  }
  spdlog::info("kafka group revoked partitions {} of {}; waiting for their release", Describe(revoked), topic_);
  pending_revoke_.insert(pending_revoke_.end(), revoked.begin(), revoked.end());
  releasing_.insert(revoked.begin(), revoked.end());
  if (handler_ != nullptr) {
    handler_->OnPartitionsRevoked(revoked, false);
  } else {
    // Served outside Poll (no owner to wait for): release at once.
    Release(revoked);
  }
}

void GroupMembership::DropEverything(const std::string& reason) {
  const std::vector<int32_t> dropped(assigned_.begin(), assigned_.end());
  assigned_.clear();
  releasing_.clear();
  pending_revoke_.clear();
  if (rd_kafka_assign(rk_, nullptr) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    // Under the cooperative protocol a full unassign is refused; give back what is held.
    Unassign(dropped);
  }
  if (leaving_) return;
  Report(reason, false);
  if (!dropped.empty() && handler_ != nullptr) handler_->OnPartitionsRevoked(dropped, true);
}

bool GroupMembership::Unassign(const std::vector<int32_t>& partitions) {
  PartitionList list = NewPartitionList(topic_, partitions);
  rd_kafka_error_t* error = rd_kafka_incremental_unassign(rk_, list.get());
  if (error == nullptr) return true;
  const std::string reason = rd_kafka_error_string(error);
  rd_kafka_error_destroy(error);
  if (!leaving_) Report("cannot give back partitions " + Describe(partitions) + ": " + reason, false);
  return false;
}

void GroupMembership::Report(const std::string& error, bool fatal) {
  if (leaving_) {
    spdlog::debug("kafka group member while leaving: {}", error);
    return;
  }
  if (!fatal) {
    spdlog::warn("kafka group member: {}", error);
    if (handler_ != nullptr) handler_->OnMembershipError(error, false);
    return;
  }
  if (fatal_reported_) return;
  fatal_reported_ = true;
  spdlog::error("kafka group member failed: {}", error);
  // After a fatal error librdkafka unassigns everything by itself and answers no rebalance.
  const std::vector<int32_t> dropped(assigned_.begin(), assigned_.end());
  assigned_.clear();
  releasing_.clear();
  pending_revoke_.clear();
  if (handler_ == nullptr) return;
  if (!dropped.empty()) handler_->OnPartitionsRevoked(dropped, true);
  handler_->OnMembershipError(error, true);
}

void GroupMembership::DrainWakeupFd() const {
  uint64_t count = 0;
  while (read(wakeup_fd_, &count, sizeof(count)) == static_cast<ssize_t>(sizeof(count))) {
  }
}

}  // namespace sse2kafka::sink
