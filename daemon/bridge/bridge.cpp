#include "bridge/bridge.h"

#include <sys/epoll.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "bridge/restart_only_settings.h"
#include "ops/log.h"
#include "sink/connection_problem.h"
#include "sink/state_topic.h"

namespace sse2kafka::bridge {

using std::chrono::milliseconds;
using spdlog::level::critical;
using spdlog::level::debug;
using spdlog::level::err;
using spdlog::level::info;
using spdlog::level::warn;

namespace {

// The settings that make a stream what it is; where it stands in the file does not count.
bool SameSettings(const config::StreamConfig& a, config::StreamConfig b) {
  b.location = a.location;
  return a == b;
}

int64_t UnixMillisNow() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

Bridge::Bridge(http::EventLoop& loop, http::HttpClient& http, state::CheckpointStore* store,
               ProducerFactory make_producer, config::Config config, FleetHooks fleet)
    : loop_(loop), http_(http), store_(store), make_producer_(std::move(make_producer)),
      config_(std::move(config)), fleet_(std::move(fleet)) {
  if (fleet_.state_partitions < 1) fleet_.state_partitions = 1;
}

Bridge::~Bridge() {
  loop_.Cancel(flush_timer_);
  loop_.Cancel(summary_timer_);
  loop_.Cancel(shutdown_timer_);
  loop_.Cancel(membership_timer_);
  loop_.SetStallObserver(milliseconds(0), nullptr);
  pipelines_.clear();  // before the producers: pipelines cancel their transfers
  partitions_.clear();
  retired_transactions_.clear();
  if (membership_) loop_.Unwatch(membership_->wakeup_fd());
  if (producer_) loop_.Unwatch(producer_->wakeup_fd());
}

int32_t Bridge::PartitionOf(std::string_view stream) const {
  return kafka_state() ? sink::StatePartitionFor(stream, fleet_.state_partitions) : 0;
}

bool Bridge::RunsPartitionOf(std::string_view stream) const {
  auto owned = partitions_.find(PartitionOf(stream));
  return owned != partitions_.end() && owned->second.phase == OwnedPartition::Phase::kRunning;
}

bool Bridge::PartitionHasStreams(int32_t partition) const {
  return std::any_of(config_.streams.begin(), config_.streams.end(),
                     [&](const config::StreamConfig& s) { return PartitionOf(s.name) == partition; });
}

std::string Bridge::PartitionList(const std::vector<int32_t>& partitions) const {
  std::string list;
  for (int32_t p : partitions) list += (list.empty() ? "" : ",") + std::to_string(p);
  return list;
}

std::vector<std::string> Bridge::AllTopics() const { return config::RoutedTopics(config_.streams); }

bool Bridge::CreateProducer(std::string* error) {
  producer_ = make_producer_(error);
  if (!producer_) return false;
  loop_.Watch(producer_->wakeup_fd(), EPOLLIN, [this](uint32_t) {
    if (!producer_) return;
    producer_->Poll(*this);
    AfterDeliveries();
  });
  // Without this the first record of every topic waits for a metadata refresh.
  producer_->WarmUp(AllTopics(), milliseconds(3000));
  return true;
}

bool Bridge::Start(std::string* error) {
  if (!CreateProducer(error)) return false;
  if (!kafka_state()) {
    partitions_[0].phase = OwnedPartition::Phase::kRunning;
    for (const auto& stream : config_.streams) StartStream(stream, store_->Get(stream.name));
  } else {
    if (!exactly_once()) {
      topic_checkpoints_ = std::make_unique<StateTopicCheckpoints>(
          config_.state.topic, [this](std::string_view s) { return PartitionOf(s); }, fleet_.instance);
    }
    if (cluster()) {
      membership_ = fleet_.join_group(error);
      if (!membership_) return false;
      loop_.Watch(membership_->wakeup_fd(), EPOLLIN, [this](uint32_t) { membership_->Poll(*this); });
      PollMembership();
      // A stall longer than this may have cost the group membership (see OnStall).
      const auto threshold = std::max(milliseconds(1000), config_.cluster.session_timeout / 3);
      loop_.SetStallObserver(threshold, [this](http::Clock::duration stalled) {
        OnStall(std::chrono::duration_cast<milliseconds>(stalled));
      });
      ops::Log(info, "", "joining the group; streams start as partitions are assigned",
               {{"group", config_.cluster.group}, {"state_topic", config_.state.topic}});
    } else {
      std::vector<int32_t> all;
      for (int32_t p = 0; p < fleet_.state_partitions; ++p) all.push_back(p);
      AcquirePartitions(all);
      // Without a group nothing waits: read the checkpoints now, so a broken state topic
      // fails the start.
      if (!exactly_once()) {
        std::string read_error;
        auto checkpoints = fleet_.read_checkpoints(to_read_, &read_error);
        if (!checkpoints) {
          *error = "reading checkpoints from " + config_.state.topic + ": " + read_error;
          return false;
        }
        to_read_.clear();
        topic_checkpoints_->Load(*checkpoints);
        for (auto& [p, owned] : partitions_) {
          owned.phase = OwnedPartition::Phase::kRunning;
          StartPartitionStreams(p, *checkpoints);
        }
      }
    }
  }
  if (config_.state.flush_interval.count() > 0) {
    flush_timer_ = loop_.ScheduleEvery(config_.state.flush_interval, [this] { PeriodicFlush(); });
  }
  ScheduleSummary();
  ops::Log(info, "", "bridge started",
           {{"streams", static_cast<int64_t>(config_.streams.size())}});
  return true;
}

void Bridge::StartStream(const config::StreamConfig& stream, std::optional<std::string> checkpoint) {
  const uint32_t slot = next_slot_++;
  auto pipeline = std::make_unique<StreamPipeline>(stream, slot, std::move(checkpoint), *this);
  StreamPipeline* raw = pipeline.get();
  pipelines_.emplace(slot, std::move(pipeline));
  active_[stream.name] = slot;
  const int32_t partition = PartitionOf(stream.name);
  partition_of_slot_[slot] = partition;
  partitions_[partition].slots.insert(slot);
  if (kafka_state()) {
    ops::Log(info, stream.name, "stream acquired",
             {{"partition", static_cast<int64_t>(partition)}, {"checkpoint", raw->checkpoint()}});
  }
  if (!stream.resume) {
    ops::Log(info, stream.name, "resume: false: starting at the live edge");
  }
  if (stream.tls.insecure_skip_verify) {
    ops::Log(warn, stream.name, "tls.insecure_skip_verify is on: the server's certificate is not checked");
  }
  raw->Start();
}

sink::ProduceResult Bridge::Produce(const sink::OutgoingRecord& record, std::string* error) {
  if (!producer_ || suspended_) {
    maybe_waiting_ = true;
    return sink::ProduceResult::kQueueFull;  // being recreated, or ownership being verified
  }
  sink::ProduceResult result;
  if (exactly_once()) {
    auto slot = partition_of_slot_.find(SlotOf(record.token));
    auto owned = slot == partition_of_slot_.end() ? partitions_.end() : partitions_.find(slot->second);
    if (owned == partitions_.end() || !owned->second.transaction) {
      maybe_waiting_ = true;
      return sink::ProduceResult::kQueueFull;
    }
    result = owned->second.transaction->Produce(record, error);
    // A sealed partition resumes its own streams when its transaction ends (ResumePartition).
    if (result == sink::ProduceResult::kQueueFull) return result;
  } else {
    result = producer_->Produce(record, error);
  }
  if (result == sink::ProduceResult::kQueueFull) maybe_waiting_ = true;
  if (result != sink::ProduceResult::kQueued) return result;
  ++stats_.in_flight_events;
  stats_.in_flight_bytes += record.value.size() + (record.key ? record.key->size() : 0);
  if (!stats_.backpressured &&
      (stats_.in_flight_events >= config_.kafka.max_in_flight_events ||
       stats_.in_flight_bytes >= config_.kafka.max_in_flight_bytes)) {
    stats_.backpressured = true;
    maybe_waiting_ = true;
    ++stats_.backpressure_episodes;
    ops::Log(warn, "", "Kafka is behind: pausing upstream reads",
             {{"in_flight_events", static_cast<int64_t>(stats_.in_flight_events)},
              {"in_flight_bytes", static_cast<int64_t>(stats_.in_flight_bytes)}});
  }
  return result;
}

void Bridge::OnDelivery(const sink::DeliveryReport& report) {
  if (SlotOf(report.token) == 0) {
    if (topic_checkpoints_) topic_checkpoints_->OnDelivery(SequenceOf(report.token), report.ok);
    if (!report.ok) {
      ops::Log(warn, "", "checkpoint record not delivered; writing it again",
               {{"topic", report.topic}, {"error", std::string(report.error_name)}});
    }
    return;
  }
  if (stats_.in_flight_events > 0) --stats_.in_flight_events;
  stats_.in_flight_bytes -= std::min(stats_.in_flight_bytes, report.size);
  auto it = pipelines_.find(SlotOf(report.token));
  if (it == pipelines_.end()) return;  // a stream removed after a producer reset
  it->second->OnDelivery(SequenceOf(report.token), report);
}

void Bridge::AfterDeliveries() {
  if (stats_.backpressured &&
      stats_.in_flight_events < config_.kafka.max_in_flight_events / 2 &&
      stats_.in_flight_bytes < config_.kafka.max_in_flight_bytes / 2) {
    stats_.backpressured = false;
    ops::Log(info, "", "Kafka caught up: resuming upstream reads",
             {{"in_flight_events", static_cast<int64_t>(stats_.in_flight_events)}});
  }
  if (!stats_.backpressured && !resume_scheduled_ && maybe_waiting_) {
    // Resuming can deliver withheld bytes at once; do it outside the producer's callback.
    resume_scheduled_ = true;
    loop_.ScheduleAfter(milliseconds(0), [this] {
      resume_scheduled_ = false;
      ReleaseBackpressure();
    });
  }
  CollectDrained();
  CheckReleases();
  MaybeFinishShutdown();
}

void Bridge::ReleaseBackpressure() {
  for (auto& [slot, p] : pipelines_) {
    if (stats_.backpressured) return;
    if (!p->RetryBacklog()) return;  // librdkafka's queue is full again
    p->ResumeReading();
  }
  // The last ResumeReading may have delivered enough to bring backpressure back: then streams
  // paused meanwhile still wait for the next release.
  if (!stats_.backpressured) maybe_waiting_ = false;
}

void Bridge::CollectDrained() {
  // Walking every pipeline on every delivery batch would cost 10,000 checks per wakeup: only
  // closed ones can drain, and they are few.
  if (closed_pipelines_ == 0) return;
  for (auto it = pipelines_.begin(); it != pipelines_.end();) {
    StreamPipeline& p = *it->second;
    if (p.state() != StreamState::kClosed || !p.settled()) {
      ++it;
      continue;
    }
    const std::string name = p.config().name;
    const std::string checkpoint = p.checkpoint();
    RecordCheckpoint(p);
    auto active = active_.find(name);
    const bool replaced = active != active_.end() && active->second != p.slot();
    // A stream drained by the stop is still listed; metrics and summaries read active_ until
    // the process exits, so it must name only pipelines that exist.
    if (active != active_.end() && !replaced) active_.erase(active);
    auto partition = partition_of_slot_.find(p.slot());
    if (partition != partition_of_slot_.end()) {
      auto owned = partitions_.find(partition->second);
      if (owned != partitions_.end() && owned->second.slots.erase(p.slot()) && kafka_state()) {
        ops::Log(info, name, "stream released",
                 {{"partition", static_cast<int64_t>(partition->second)}, {"checkpoint", checkpoint}});
      }
      partition_of_slot_.erase(partition);
    }
    it = pipelines_.erase(it);
    --closed_pipelines_;
    if (replaced || shutting_down_) continue;
    auto restart = restart_after_drain_.find(name);
    if (restart != restart_after_drain_.end()) {
      config::StreamConfig next = std::move(restart->second);
      restart_after_drain_.erase(restart);
      // A partition given up meanwhile is someone else's: its next assignment starts the stream.
      if (!RunsPartitionOf(name)) continue;
      ops::Log(info, name, "restarting with its new settings", {{"checkpoint", checkpoint}});
      StartStream(next, checkpoint);
    }
  }
}

void Bridge::Reload(config::Config next) {
  std::map<std::string, const config::StreamConfig*> wanted;
  for (const auto& s : next.streams) wanted[s.name] = &s;
  int added = 0, removed = 0, restarted = 0, kept = 0;
  std::vector<std::string> to_start;
  // Streams waiting for an earlier pipeline to drain restart with the settings of this reload,
  // or not at all if it removed them.
  for (auto it = restart_after_drain_.begin(); it != restart_after_drain_.end();) {
    auto w = wanted.find(it->first);
    if (w == wanted.end()) {
      ++removed;
      ops::Log(info, it->first, "stream removed by reload: it will not restart after draining");
      it = restart_after_drain_.erase(it);
    } else {
      it->second = *w->second;
      ++it;
    }
  }
  // Removed and changed streams: stop reading; they leave once their deliveries settle.
  for (auto it = active_.begin(); it != active_.end();) {
    StreamPipeline& p = *pipelines_.at(it->second);
    auto w = wanted.find(it->first);
    if (w != wanted.end() && SameSettings(p.config(), *w->second)) {
      ++kept;
      ++it;
      continue;
    }
    p.Close();
    ++closed_pipelines_;
    if (w == wanted.end()) {
      ++removed;
      ops::Log(info, it->first, "stream removed by reload: stopping after in-flight events settle");
      restart_after_drain_.erase(it->first);
    } else {
      ++restarted;
      ops::Log(info, it->first, "stream changed by reload: restarting after in-flight events settle");
      restart_after_drain_[it->first] = *w->second;
    }
    it = active_.erase(it);
  }
  for (const auto& s : next.streams) {
    const bool running = active_.count(s.name) != 0;
    const bool waiting = restart_after_drain_.count(s.name) != 0;
    if (running || waiting) continue;
    // A stream that is still draining under the same name restarts from restart_after_drain_.
    bool draining = false;
    for (const auto& [slot, p] : pipelines_) draining |= p->config().name == s.name;
    if (draining) {
      restart_after_drain_[s.name] = s;
      ++restarted;
      continue;
    }
    ++added;
    to_start.push_back(s.name);
  }
  for (const std::string& setting : KeepRestartOnlySettings(config_, next)) {
    ops::Log(warn, "", setting + " changed: kept as it was; it applies at the next start",
             {{"setting", setting}});
  }
  const bool summary_changed = next.log.stats_interval != config_.log.stats_interval;
  config_ = std::move(next);
  if (summary_changed) {
    ops::Log(info, "", "log.stats_interval changed",
             {{"stats_interval_ms", static_cast<int64_t>(config_.log.stats_interval.count())}});
    ScheduleSummary();
  }
  // New streams start where their partition is owned and running; a partition that is still
  // being acquired starts them when it is ready.
  for (const std::string& name : to_start) {
    const config::StreamConfig* stream = nullptr;
    for (const auto& s : config_.streams) if (s.name == name) stream = &s;
    if (!stream) continue;
    const int32_t partition = PartitionOf(name);
    auto owned = partitions_.find(partition);
    if (owned == partitions_.end() || owned->second.phase != OwnedPartition::Phase::kRunning) continue;
    if (!kafka_state()) {
      StartStream(*stream, store_->Get(name));
    } else if (!exactly_once()) {
      StartStream(*stream, topic_checkpoints_->Get(name));
    } else if (owned->second.transaction) {
      auto committed = owned->second.transaction->committed().find(name);
      StartStream(*stream, committed == owned->second.transaction->committed().end()
                               ? std::nullopt
                               : std::optional<std::string>(committed->second));
    } else {
      // The partition had no stream, hence no transactional producer yet.
      owned->second.phase = OwnedPartition::Phase::kPreparing;
      AcquirePartitions({partition});
    }
  }

  ops::Log(info, "", "config reloaded",
           {{"added", added}, {"removed", removed}, {"restarted", restarted}, {"unchanged", kept}});
  CollectDrained();
}

void Bridge::OnFatalError(const std::string& reason) {
  ops::Log(critical, "", "Kafka producer failed fatally: recreating it and replaying from checkpoints",
           {{"error", reason}});
  // Not from inside the producer's own poll: destroy it from the loop.
  loop_.ScheduleAfter(milliseconds(0), [this, reason] { RecreateProducer(reason); });
}

void Bridge::RecreateProducer(const std::string& reason) {
  if (!producer_) return;
  ++stats_.fatal_producer_resets;
  // Exactly-once events go through the partitions' own producers; this one only warms metadata.
  if (!exactly_once()) {
    for (auto& [slot, p] : pipelines_) p->Rewind("Kafka producer failed: " + reason, std::nullopt, true);
  }
  if (topic_checkpoints_) topic_checkpoints_->ProducerLost();
  loop_.Unwatch(producer_->wakeup_fd());
  producer_->Purge();
  producer_.reset();
  stats_.backpressured = true;  // nothing can be produced until a new producer exists
  maybe_waiting_ = true;
  if (!exactly_once()) {
    stats_.in_flight_events = 0;
    stats_.in_flight_bytes = 0;
  }
  std::string error;
  if (!CreateProducer(&error)) {
    ops::Log(err, "", "cannot create a new Kafka producer; retrying in 5s", {{"error", error}});
    RecreateProducerLater(reason);
    return;
  }
  stats_.backpressured = false;
  CollectDrained();
  MaybeFinishShutdown();
}

void Bridge::RecreateProducerLater(const std::string& reason) {
  loop_.ScheduleAfter(milliseconds(5000), [this, reason] {
    std::string error;
    if (producer_) return;
    if (CreateProducer(&error)) {
      stats_.backpressured = false;
      AfterDeliveries();
      return;
    }
    ops::Log(err, "", "cannot create a new Kafka producer; retrying in 5s", {{"error", error}});
    RecreateProducerLater(reason);
  });
}

void Bridge::RecordCheckpoint(const StreamPipeline& pipeline) {
  const std::string& name = pipeline.config().name;
  if (!kafka_state()) {
    const auto stored = store_->Get(name);
    if (!stored || *stored != pipeline.checkpoint()) store_->Set(name, pipeline.checkpoint());
    return;
  }
  // Only a partition this instance still owns may have its checkpoints written.
  auto partition = partition_of_slot_.find(pipeline.slot());
  if (partition == partition_of_slot_.end()) return;
  auto owned = partitions_.find(partition->second);
  if (owned == partitions_.end() || !owned->second.slots.count(pipeline.slot())) return;
  if (exactly_once()) {
    owned->second.departed[name] = pipeline.checkpoint();  // committed with the next transaction
  } else {
    topic_checkpoints_->Set(name, pipeline.checkpoint());
  }
}

bool Bridge::PersistCheckpoints(std::string* error) {
  if (suspended_) return true;  // ownership unconfirmed: write nothing
  if (kafka_state() && exactly_once()) return true;  // transactions carry the checkpoints
  for (const auto& [slot, p] : pipelines_) {
    if (p->state() == StreamState::kClosed && !p->settled()) continue;  // written once drained
    RecordCheckpoint(*p);
  }
  if (!kafka_state()) return store_->Flush(error);
  if (!producer_) return true;  // written once a producer exists again
  topic_checkpoints_->Flush([this](const sink::OutgoingRecord& r, std::string* e) { return producer_->Produce(r, e); });
  if (shutting_down_ && on_stopped_ == nullptr) {
    // After the stop: the loop is not running, so wait for the confirmations here.
    producer_->Flush(config_.kafka.flush_timeout, *this);
    if (!topic_checkpoints_->Settled()) {
      *error = "the state topic did not confirm every checkpoint within kafka.flush_timeout";
      return false;
    }
  }
  return true;
}

void Bridge::PeriodicFlush() {
  std::string error;
  if (!PersistCheckpoints(&error)) {
    ops::Log(err, "", "cannot write checkpoints; will retry", {{"error", error}});
  }
}

void Bridge::ScheduleSummary() {
  loop_.Cancel(summary_timer_);
  summary_timer_ = http::kNoTimer;
  // 0 turns the summary off.
  if (config_.log.stats_interval.count() > 0) {
    summary_timer_ = loop_.ScheduleEvery(config_.log.stats_interval, [this] { PeriodicSummary(); });
  }
}

void Bridge::PeriodicSummary() {
  const int64_t now_ms = UnixMillisNow();
  for (const auto& [name, slot] : active_) {
    const StreamPipeline& p = *pipelines_.at(slot);
    const StreamStats& s = p.stats();
    ops::Log(info, name, "summary",
             {{"state", StreamStateName(p.state())},
              {"events", static_cast<int64_t>(s.events)},
              {"bytes", static_cast<int64_t>(s.bytes)},
              {"delivered", static_cast<int64_t>(s.records_delivered)},
              {"in_flight", static_cast<int64_t>(p.in_flight_events())},
              {"reconnects", static_cast<int64_t>(s.reconnects)},
              {"rewinds", static_cast<int64_t>(s.rewinds)},
              {"replayed", static_cast<int64_t>(s.replayed)},
              {"filtered", static_cast<int64_t>(s.filtered)},
              {"oversized", static_cast<int64_t>(s.oversized)},
              {"checkpoint", p.checkpoint()},
              {"last_event_age_ms", s.last_event_unix_ms ? now_ms - s.last_event_unix_ms : -1}});
  }
}

void Bridge::BeginShutdown(std::function<void()> on_stopped) {
  if (shutting_down_) return;
  shutting_down_ = true;
  on_stopped_ = std::move(on_stopped);
  for (auto& [slot, p] : pipelines_) {
    if (p->state() != StreamState::kClosed) ++closed_pipelines_;
    p->Close();
  }
  ops::Log(info, "", "stopping: upstream reads stopped, waiting for Kafka to confirm in-flight events",
           {{"in_flight_events", static_cast<int64_t>(stats_.in_flight_events)},
            {"flush_timeout_ms", static_cast<int64_t>(config_.kafka.flush_timeout.count())}});
  shutdown_timer_ = loop_.ScheduleAfter(config_.kafka.flush_timeout, [this] {
    shutdown_timer_ = 0;
    ops::Log(warn, "", "flush timeout: stopping with unconfirmed events; they are replayed on restart",
             {{"in_flight_events", static_cast<int64_t>(stats_.in_flight_events)}});
    auto done = std::move(on_stopped_);
    on_stopped_ = nullptr;
    if (done) done();
  });
  MaybeFinishShutdown();
}

void Bridge::MaybeFinishShutdown() {
  if (!shutting_down_ || !on_stopped_ || stats_.in_flight_events > 0) return;
  if (kafka_state() && exactly_once()) {
    // Every event is delivered: commit each partition's last transaction with the final
    // checkpoints.
    for (auto& [partition, owned] : partitions_) {
      if (!owned.transaction || owned.finishing) continue;
      owned.finishing = true;
      ++finishing_transactions_;
      owned.transaction->Finish([this](bool) {
        loop_.ScheduleAfter(milliseconds(0), [this] {
          --finishing_transactions_;
          MaybeFinishShutdown();
        });
      });
    }
    if (finishing_transactions_ > 0) return;
  } else if (kafka_state()) {
    std::string error;
    PersistCheckpoints(&error);
    if (!topic_checkpoints_->Settled()) return;  // their reports call again
  }
  loop_.Cancel(shutdown_timer_);
  shutdown_timer_ = 0;
  auto done = std::move(on_stopped_);
  on_stopped_ = nullptr;
  done();
}

// ---- Partition ownership (Kafka state backend) ----

void Bridge::AcquirePartitions(const std::vector<int32_t>& partitions) {
  for (int32_t partition : partitions) {
    OwnedPartition& owned = partitions_[partition];
    owned.phase = OwnedPartition::Phase::kPreparing;
    if (exactly_once() && !PartitionHasStreams(partition)) {
      // No stream, no transactional producer: one is created if a reload adds a stream.
      owned.phase = OwnedPartition::Phase::kRunning;
      continue;
    }
    if (exactly_once() && !owned.transaction) {
      std::string error;
      std::unique_ptr<sink::KafkaProducer> producer = fleet_.make_transactional_producer(partition, &error);
      if (!producer) {
        if (fleet_.fail) fleet_.fail("cannot create the transactional producer of state partition " +
                                     std::to_string(partition) + ": " + error);
        return;
      }
      // Without this the first record of every topic waits for a metadata refresh.
      std::vector<std::string> topics = AllTopics();
      topics.push_back(config_.state.topic);
      producer->WarmUp(topics, milliseconds(1000));
      PartitionTransaction::Options options;
      options.partition = partition;
      options.state_topic = config_.state.topic;
      options.instance = fleet_.instance;
      options.interval = config_.transaction.interval;
      options.max_events = config_.transaction.max_events;
      owned.transaction = std::make_unique<PartitionTransaction>(options, std::move(producer), *this);
      owned.transaction->Start();  // OnTransactionsReady queues the read
      continue;
    }
    to_read_.push_back(partition);
  }
  stats_.owned_partitions = partitions_.size();
  if (!to_read_.empty() && !read_scheduled_) {
    read_scheduled_ = true;
    loop_.ScheduleAfter(milliseconds(0), [this] { ReadReadyPartitions(); });
  }
}

void Bridge::OnTransactionsReady(int32_t partition) {
  to_read_.push_back(partition);
  if (!read_scheduled_) {
    // Partitions that become ready together are read together.
    read_scheduled_ = true;
    loop_.ScheduleAfter(milliseconds(0), [this] { ReadReadyPartitions(); });
  }
}

void Bridge::ReadReadyPartitions() {
  read_scheduled_ = false;
  std::vector<int32_t> partitions;
  for (int32_t p : to_read_) {
    auto owned = partitions_.find(p);
    if (owned != partitions_.end() && owned->second.phase == OwnedPartition::Phase::kPreparing) {
      partitions.push_back(p);
    }
  }
  to_read_.clear();
  if (partitions.empty() || shutting_down_) return;
  std::string error;
  auto checkpoints = fleet_.read_checkpoints(partitions, &error);
  if (!checkpoints && sink::IsAuthorizationFailure(error) && fleet_.fail) {
    // An ACL does not appear by waiting: say which one is missing and stop.
    fleet_.fail("cannot read checkpoints from the state topic " + config_.state.topic + ": " + error);
    return;
  }
  if (!checkpoints) {
    ops::Log(err, "", "cannot read checkpoints from the state topic; retrying in 1s",
             {{"partitions", PartitionList(partitions)}, {"error", error}});
    to_read_.insert(to_read_.end(), partitions.begin(), partitions.end());
    read_scheduled_ = true;
    loop_.ScheduleAfter(milliseconds(1000), [this] { ReadReadyPartitions(); });
    return;
  }
  if (topic_checkpoints_) topic_checkpoints_->Load(*checkpoints);
  for (int32_t p : partitions) StartPartitionStreams(p, *checkpoints);
}

void Bridge::StartPartitionStreams(int32_t partition, const std::map<std::string, std::string>& checkpoints) {
  auto owned = partitions_.find(partition);
  if (owned == partitions_.end()) return;
  owned->second.phase = OwnedPartition::Phase::kRunning;
  if (owned->second.transaction) {
    std::map<std::string, std::string> committed;
    for (const auto& [stream, id] : checkpoints) {
      if (PartitionOf(stream) == partition) committed.emplace(stream, id);
    }
    owned->second.transaction->SetCommitted(std::move(committed));
  }
  for (const auto& stream : config_.streams) {
    if (PartitionOf(stream.name) != partition || active_.count(stream.name)) continue;
    bool draining = false;
    for (const auto& [slot, p] : pipelines_) draining |= p->config().name == stream.name;
    if (draining) {
      // A pipeline of the same stream from an earlier ownership still settles: start after it.
      restart_after_drain_[stream.name] = stream;
      continue;
    }
    auto checkpoint = checkpoints.find(stream.name);
    StartStream(stream, checkpoint == checkpoints.end() ? std::nullopt
                                                        : std::optional<std::string>(checkpoint->second));
  }
}

void Bridge::OnPartitionsAssigned(const std::vector<int32_t>& partitions) {
  stats_.ownership_changes += partitions.size();
  ops::Log(info, "", "partitions assigned",
           {{"partitions", PartitionList(partitions)}, {"group", config_.cluster.group}});
  if (shutting_down_) return;
  AcquirePartitions(partitions);
}

void Bridge::OnPartitionsRevoked(const std::vector<int32_t>& partitions, bool lost) {
  stats_.ownership_changes += partitions.size();
  ops::Log(lost ? warn : info, "", "partitions revoked",
           {{"partitions", PartitionList(partitions)}, {"lost", lost ? "true" : "false"}});
  if (lost) {
    DropPartitions(partitions, "partition lost");
  } else {
    ReleasePartitions(partitions);
  }
}

void Bridge::OnMembershipError(const std::string& error, bool fatal) {
  // Refused by an ACL, the group cannot be joined until someone grants it: fail loudly.
  const bool refused = sink::IsAuthorizationFailure(error);
  const std::string explained = sink::ExplainAuthorizationFailure(error, FleetAcls(config_, "Read"));
  ops::Log(fatal || refused ? critical : warn, "", "consumer group error", {{"error", explained}});
  if ((fatal || refused) && fleet_.fail) fleet_.fail("consumer group " + config_.cluster.group + ": " + explained);
}

void Bridge::ReleasePartitions(const std::vector<int32_t>& partitions) {
  for (int32_t partition : partitions) {
    auto owned = partitions_.find(partition);
    if (owned == partitions_.end()) {
      membership_->Release({partition});
      continue;
    }
    owned->second.phase = OwnedPartition::Phase::kReleasing;
    for (uint32_t slot : owned->second.slots) CloseLeavingStream(slot);
  }
  CollectDrained();
  CheckReleases();
}

void Bridge::CheckReleases() {
  std::vector<int32_t> done;
  for (auto& [partition, owned] : partitions_) {
    if (owned.phase != OwnedPartition::Phase::kReleasing || !owned.slots.empty()) continue;
    if (owned.transaction) {
      if (owned.finishing) continue;
      owned.finishing = true;
      const int32_t p = partition;
      owned.transaction->Finish([this, p](bool) {
        loop_.ScheduleAfter(milliseconds(0), [this, p] { FinishRelease(p); });
      });
      continue;
    }
    if (topic_checkpoints_) {
      std::string error;
      PersistCheckpoints(&error);
      if (!topic_checkpoints_->Settled(partition)) continue;  // its reports call again
    }
    done.push_back(partition);
  }
  for (int32_t p : done) FinishRelease(p);
}

void Bridge::FinishRelease(int32_t partition) {
  auto owned = partitions_.find(partition);
  // A late call for an ownership that already ended (dropped, perhaps assigned again) is stale.
  if (owned == partitions_.end() || owned->second.phase != OwnedPartition::Phase::kReleasing) return;
  DropTransaction(owned->second);
  partitions_.erase(owned);
  std::erase(to_read_, partition);
  stats_.owned_partitions = partitions_.size();
  if (membership_) membership_->Release({partition});
  ops::Log(info, "", "partitions released", {{"partitions", std::to_string(partition)}});
}

void Bridge::DropTransaction(OwnedPartition& owned) {
  if (!owned.transaction) return;
  // Records it still holds get no report now: take them out of the process-wide count.
  stats_.in_flight_events -= std::min(stats_.in_flight_events, owned.transaction->events_in_flight());
  stats_.in_flight_bytes -= std::min(stats_.in_flight_bytes, owned.transaction->event_bytes_in_flight());
  for (uint32_t slot : owned.slots) {
    auto p = pipelines_.find(slot);
    if (p != pipelines_.end()) p->second->Rewind("partition given up", std::nullopt, /*producer_lost=*/true);
  }
  // Inert from now on (nothing more reaches this bridge from it), but destroyed from the loop
  // (or with the bridge): this may run inside its own callbacks.
  owned.transaction->Detach();
  retired_transactions_.push_back(std::move(owned.transaction));
  if (retired_transactions_.size() == 1) {
    loop_.ScheduleAfter(milliseconds(0), [this] { retired_transactions_.clear(); });
  }
}

StreamPipeline& Bridge::CloseLeavingStream(uint32_t slot) {
  StreamPipeline& p = *pipelines_.at(slot);
  if (p.state() != StreamState::kClosed) {
    ++closed_pipelines_;
    p.Close();
  }
  auto active = active_.find(p.config().name);
  if (active != active_.end() && active->second == slot) active_.erase(active);
  restart_after_drain_.erase(p.config().name);
  return p;
}

void Bridge::DropPartitions(const std::vector<int32_t>& partitions, const std::string& why) {
  for (int32_t partition : partitions) {
    auto owned = partitions_.find(partition);
    if (owned == partitions_.end()) continue;
    for (uint32_t slot : owned->second.slots) {
      const StreamPipeline& p = CloseLeavingStream(slot);
      ops::Log(warn, p.config().name, "stream dropped without writing its checkpoint",
               {{"partition", static_cast<int64_t>(partition)}, {"reason", why}});
    }
    DropTransaction(owned->second);
    if (topic_checkpoints_) topic_checkpoints_->DropPartition(partition);
    partitions_.erase(owned);
    // A read still queued (a retry, say) belongs to this ownership, not to a later one.
    std::erase(to_read_, partition);
  }
  stats_.owned_partitions = partitions_.size();
  CollectDrained();
}

std::vector<std::pair<std::string, std::string>> Bridge::CurrentCheckpoints(int32_t partition) {
  std::vector<std::pair<std::string, std::string>> checkpoints;
  auto owned = partitions_.find(partition);
  if (owned == partitions_.end()) return checkpoints;
  std::set<std::string> seen;
  for (uint32_t slot : owned->second.slots) {
    const StreamPipeline& p = *pipelines_.at(slot);
    if (seen.insert(p.config().name).second) checkpoints.emplace_back(p.config().name, p.checkpoint());
  }
  for (const auto& [stream, checkpoint] : owned->second.departed) {
    if (seen.insert(stream).second) checkpoints.emplace_back(stream, checkpoint);
  }
  return checkpoints;
}

void Bridge::OnTransactionalDelivery(const sink::DeliveryReport& report) {
  OnDelivery(report);
}

void Bridge::OnTransactionCommitted(int32_t partition) {
  ++stats_.transactions_committed;
  auto owned = partitions_.find(partition);
  if (owned == partitions_.end() || !owned->second.transaction) return;
  const auto& committed = owned->second.transaction->committed();
  for (auto it = owned->second.departed.begin(); it != owned->second.departed.end();) {
    auto c = committed.find(it->first);
    it = c != committed.end() && c->second == it->second ? owned->second.departed.erase(it) : std::next(it);
  }
  ResumePartition(partition);
}

void Bridge::ResumePartition(int32_t partition) {
  auto owned = partitions_.find(partition);
  if (owned == partitions_.end()) return;
  for (uint32_t slot : owned->second.slots) {
    if (stats_.backpressured || suspended_) return;
    StreamPipeline& p = *pipelines_.at(slot);
    if (!p.RetryBacklog()) return;
    p.ResumeReading();
  }
}

void Bridge::OnTransactionAborted(int32_t partition, const std::string& reason) {
  ++stats_.transactions_aborted;
  auto owned = partitions_.find(partition);
  if (owned == partitions_.end() || !owned->second.transaction) return;
  const auto& committed = owned->second.transaction->committed();
  for (uint32_t slot : owned->second.slots) {
    StreamPipeline& p = *pipelines_.at(slot);
    auto c = committed.find(p.config().name);
    p.RewindTo(c == committed.end() ? std::string() : c->second, "transaction aborted: " + reason);
  }
  owned->second.departed.clear();  // their successors replay from the committed checkpoints
  CollectDrained();
  CheckReleases();
}

void Bridge::OnPartitionFenced(int32_t partition, bool fenced, const std::string& refusal) {
  const std::string reason = sink::ExplainAuthorizationFailure(refusal, FleetAcls(config_, "Write", partition));
  ops::Log(critical, "", fenced ? "partition fenced" : "transactional producer failed",
           {{"partition", static_cast<int64_t>(partition)}, {"error", reason}});
  DropPartitions({partition}, fenced ? "fenced by a newer owner" : "transactional producer failed");
  // A fenced instance must not go on as if it owned anything; the service manager restarts it
  // and it rejoins with a clean slate.
  if (fleet_.fail) {
    fleet_.fail(std::string(fenced ? "fenced: another instance owns state partition "
                                   : "the transactional producer of state partition ") +
                std::to_string(partition) + (fenced ? "" : " failed") + ": " + reason);
  }
}

void Bridge::PollMembership() {
  if (membership_) membership_->Poll(*this);
  // librdkafka needs regular polls even when its fd stays quiet (max.poll.interval.ms), and the
  // stall observer needs a timer to measure lateness against.
  membership_timer_ = loop_.ScheduleAfter(milliseconds(500), [this] { PollMembership(); });
}

void Bridge::OnStall(milliseconds stalled) {
  if (suspended_ || partitions_.empty() || shutting_down_) return;
  suspended_ = true;
  ops::Log(warn, "", "suspended: checking group membership before writing",
           {{"stalled_ms", static_cast<int64_t>(stalled.count())}});
  loop_.ScheduleAfter(milliseconds(0), [this] { CheckMembership(); });
}

void Bridge::CheckMembership() {
  if (!suspended_) return;
  if (partitions_.empty() || !membership_) {
    suspended_ = false;
    return;
  }
  switch (membership_->CheckGeneration(milliseconds(3000))) {
    case sink::GroupMembership::GenerationCheck::kCurrent:
      suspended_ = false;
      ops::Log(info, "", "membership confirmed");
      maybe_waiting_ = true;
      AfterDeliveries();
      return;
    case sink::GroupMembership::GenerationCheck::kStale: {
      std::vector<int32_t> owned;
      for (const auto& [p, o] : partitions_) owned.push_back(p);
      ops::Log(warn, "", "membership lost: dropping streams", {{"partitions", PartitionList(owned)}});
      DropPartitions(owned, "membership lost while suspended");
      suspended_ = false;
      return;
    }
    case sink::GroupMembership::GenerationCheck::kUnknown:
      loop_.ScheduleAfter(milliseconds(500), [this] { CheckMembership(); });
      return;
  }
}

void Bridge::LeaveGroup() {
  if (!membership_) return;
  loop_.Cancel(membership_timer_);
  membership_timer_ = 0;
  membership_->Leave(milliseconds(5000));
}

std::chrono::milliseconds Bridge::kafka_stats_interval() const {
  return producer_ ? producer_->statistics_interval() : milliseconds(0);
}

std::string TransactionalId(const config::Config& config, int32_t partition) {
  return (config.cluster.group.empty() ? std::string("sse2kafka") : config.cluster.group) + "-" +
         std::to_string(partition);
}

sink::AclContext FleetAcls(const config::Config& config, std::string topic_operation, int32_t partition) {
  sink::AclContext acl;
  acl.topic_operation = std::move(topic_operation);
  acl.topic = config.state.topic;
  acl.group = config.cluster.group;
  if (partition >= 0) acl.transactional_id = TransactionalId(config, partition);
  return acl;
}

void Bridge::ForEachStream(const std::function<void(const StreamPipeline&)>& visit) const {
  for (const auto& [name, slot] : active_) visit(*pipelines_.at(slot));
}

}  // namespace sse2kafka::bridge
