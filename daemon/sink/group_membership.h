// Membership in the Kafka consumer group that shares the state topic's partitions among
// sse2kafka instances (cluster mode): the partitions this member is assigned are the partitions
// whose streams it runs. The member only takes part in the group protocol; it never reads
// state records (its partitions stay paused) and never commits offsets for real.
//
// Rebalancing is cooperative (partition.assignment.strategy=cooperative-sticky): a rebalance
// moves only the partitions that change owner, and a partition taken from this member reaches
// its next owner only after Release. librdkafka keeps the group in its WAIT_UNASSIGN_CALL state
// until then, heartbeating, and rejoins once the partitions are released; the new owner gets
// them in the following rebalance.
//
// Threading: every call, and every MembershipHandler callback, happens on the thread that owns
// the member (the event loop). librdkafka's log lines come from its own threads and go to
// spdlog's default logger.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "sink/producer_properties.h"

struct rd_kafka_s;
struct rd_kafka_queue_s;
struct rd_kafka_topic_partition_list_s;

namespace sse2kafka::sink {

struct MembershipSettings {
  std::string bootstrap_servers;
  // Connection-level librdkafka properties (security and the like), already filtered: the
  // member sets the group, assignment, session and offset properties itself, after these.
  PropertyList properties;
  std::string group;  // group.id
  std::string topic;  // the state topic: the member subscribes to it
  // session.timeout.ms: how long the group coordinator keeps a member that stopped
  // heartbeating. heartbeat.interval.ms is a third of it (at least 100 ms).
  std::chrono::milliseconds session_timeout{10000};
  std::string client_id = "sse2kafka";
};

// The max.poll.interval.ms a member is created with: the larger of 30 s and the session
// timeout. Poll must be called at least this often; if it is not (an event loop stuck that
// long), librdkafka leaves the group on its own and the partitions come back as a lost revoke.
// It is also the rebalance timeout: how long the coordinator waits for every member to rejoin,
// which bounds how long a non-lost revoke may wait for Release while another rebalance is
// pending. The owner calls Poll on a timer (every 500 ms or so) besides wakeup_fd.
std::chrono::milliseconds MaxPollInterval(const MembershipSettings& settings);

// Callbacks run inside Poll. They may call GroupMembership::Release, assigned(), member_id()
// and generation(), but not Poll, CheckGeneration or Leave.
class MembershipHandler {
 public:
  virtual ~MembershipHandler() = default;
  // Partitions newly assigned to this member (never empty). Nothing else owns them any more:
  // their previous owner released them or was thrown out of the group.
  virtual void OnPartitionsAssigned(const std::vector<int32_t>& partitions) = 0;
  // Partitions taken away (never empty).
  // lost=false: a normal rebalance. They stay assigned (and in assigned()) until the handler
  // calls GroupMembership::Release for them, so that the owner can stop their streams and commit
  // their checkpoints first; the next owner gets them only afterwards. Release them within
  // MaxPollInterval.
  // lost=true: this member was thrown out (session timeout, max.poll.interval.ms exceeded,
  // fencing): another member may already own them, so nothing may be written for them any
  // more. They are already gone from assigned(); no Release is needed (and it would be ignored).
  virtual void OnPartitionsRevoked(const std::vector<int32_t>& partitions, bool lost) = 0;
  // Something went wrong in the group protocol or the connection to the coordinator. Non-fatal
  // errors (brokers down, topic missing, a rebalance error) are for the log: librdkafka keeps
  // trying, and an assignment it had to give up arrives as a lost revoke. fatal=true: the member
  // can no longer take part (e.g. fenced static membership); it holds nothing any more, and the
  // owner must destroy it and may create a new one.
  virtual void OnMembershipError(const std::string& error, bool fatal) = 0;
};

class GroupMembership {
 public:
  // Creates the member and subscribes it to settings.topic in settings.group; joining happens in
  // the background and its result comes through Poll. Brokers being down is no error here.
  // Returns nullptr and sets *error when librdkafka refuses the configuration (a user property,
  // an empty group or topic).
  static std::unique_ptr<GroupMembership> Create(const MembershipSettings& settings, std::string* error);

  // Without a Leave before, does not leave the group: the coordinator drops the member after the
  // session timeout, and only then are its partitions given to others (as after a crash).
  ~GroupMembership();

  GroupMembership(const GroupMembership&) = delete;
  GroupMembership& operator=(const GroupMembership&) = delete;

  // Readable (EPOLLIN) when Poll has work (an eventfd that librdkafka writes when the consumer
  // queue gets an event). Level-triggered use is fine: Poll drains it.
  int wakeup_fd() const { return wakeup_fd_; }

  // Never blocks: drains wakeup_fd() and serves queued rebalances and errors into `handler`.
  // Call it whenever wakeup_fd() is readable and on a timer, at least once per
  // MaxPollInterval(settings). Does nothing after Leave.
  void Poll(MembershipHandler& handler);

  // Completes a non-lost revoke: the owner has stopped these partitions' streams and committed
  // their checkpoints. Partitions that are not waiting for release are ignored. librdkafka is
  // told once every partition of the pending revoke is released (releasing part of them first
  // would make it rejoin while still owning the rest), so a revoke completes with its last
  // partition. Never blocks on the network.
  void Release(const std::vector<int32_t>& partitions);

  // The partitions this member owns: assigned and not yet released or lost. Includes the ones
  // waiting for Release.
  const std::set<int32_t>& assigned() const { return assigned_; }
  // The partitions of a non-lost revoke that still wait for Release (a subset of assigned()).
  const std::set<int32_t>& releasing() const { return releasing_; }

  // For logs: the member id the coordinator gave ("" before the first join) and the generation
  // of the group this member last joined (-1 when unknown). Each asks librdkafka's main thread,
  // a short wait but no network round trip.
  std::string member_id() const;
  int32_t generation() const;

  // Asks the group coordinator whether this member is still in the current generation: a
  // synchronous OffsetCommit (offset 0 of the owned partitions, or of partition 0 when none is
  // owned; nobody reads this group's offsets) carries the member id and generation and is
  // refused with ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID when it is not.
  // Blocks up to `timeout`; meant for rare use, such as after the process was suspended.
  // kCurrent: accepted. kStale: refused, or librdkafka already knows the assignment is lost; a
  // lost revoke follows through Poll. kUnknown: no answer in time, no coordinator, or a
  // rebalance in progress (REBALANCE_IN_PROGRESS; while this member is rejoining, the coordinator
  // answers only after the join completes, about a rebalance later); ask again later.
  enum class GenerationCheck { kCurrent, kStale, kUnknown };
  GenerationCheck CheckGeneration(std::chrono::milliseconds timeout);

  // Leaves the group promptly (consumer close with LeaveGroup), waiting up to `timeout`; call it
  // after the owner released its partitions. Whatever is still assigned is dropped without a
  // callback and assigned() becomes empty. Returns true when the close completed in time; on
  // false the destructor does not wait for it again, and the coordinator drops the member
  // after the session timeout at the latest. Poll, Release and CheckGeneration do nothing
  // afterwards.
  bool Leave(std::chrono::milliseconds timeout);

 private:
  GroupMembership();

  struct Callbacks;  // librdkafka's callbacks, defined where its types are known

  void HandleRebalance(int error, const rd_kafka_topic_partition_list_s* partitions);
  void Assign(const rd_kafka_topic_partition_list_s* partitions);
  void Revoke(const rd_kafka_topic_partition_list_s* partitions, bool lost);
  void DropEverything(const std::string& reason);
  bool Unassign(const std::vector<int32_t>& partitions);
  void Report(const std::string& error, bool fatal);
  void DrainWakeupFd() const;

  std::string topic_;
  rd_kafka_s* rk_ = nullptr;
  rd_kafka_queue_s* consumer_queue_ = nullptr;
  int wakeup_fd_ = -1;
  std::set<int32_t> assigned_;
  std::set<int32_t> releasing_;
  // The partitions of the pending non-lost revoke, as librdkafka listed them: it is told about
  // all of them at once.
  std::vector<int32_t> pending_revoke_;
  // Set only while Poll serves callbacks.
  MembershipHandler* handler_ = nullptr;
  bool leaving_ = false;  // Leave started: rebalances are answered at once, nothing is reported
  bool closed_ = false;   // Leave completed: rd_kafka_destroy may close normally
  bool fatal_reported_ = false;
};

}  // namespace sse2kafka::sink
