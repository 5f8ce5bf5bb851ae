#include "bridge/bridge.h"

#include <sys/epoll.h>

#include <chrono>
#include <set>

#include "ops/log.h"

namespace sse2kafka::bridge {

using std::chrono::milliseconds;
using spdlog::level::critical;
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

Bridge::Bridge(http::EventLoop& loop, http::HttpClient& http, state::CheckpointStore& store,
               ProducerFactory make_producer, config::Config config)
    : loop_(loop), http_(http), store_(store), make_producer_(std::move(make_producer)),
      config_(std::move(config)) {}

Bridge::~Bridge() {
  loop_.Cancel(flush_timer_);
  loop_.Cancel(summary_timer_);
  loop_.Cancel(shutdown_timer_);
  pipelines_.clear();  // before the producer: pipelines cancel their transfers
  if (producer_) loop_.Unwatch(producer_->wakeup_fd());
}

std::vector<std::string> Bridge::AllTopics() const {
  std::set<std::string> topics;
  for (const auto& s : config_.streams) {
    if (s.topics.empty()) {
      topics.insert(s.topic);
    } else {
      for (const auto& route : s.topics) topics.insert(route.topic);
    }
  }
  return {topics.begin(), topics.end()};
}

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
  for (const auto& stream : config_.streams) StartStream(stream, store_.Get(stream.name));
  if (config_.state.flush_interval.count() > 0) {
    flush_timer_ = loop_.ScheduleAfter(config_.state.flush_interval, [this] { PeriodicFlush(); });
  }
  if (config_.log.stats_interval.count() > 0) {
    summary_timer_ = loop_.ScheduleAfter(config_.log.stats_interval, [this] { PeriodicSummary(); });
  }
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
  if (!stream.resume) {
    ops::Log(info, stream.name, "resume: false: starting at the live edge");
  }
  if (stream.tls.insecure_skip_verify) {
    ops::Log(warn, stream.name, "tls.insecure_skip_verify is on: the server's certificate is not checked");
  }
  raw->Start();
}

sink::ProduceResult Bridge::Produce(const sink::OutgoingRecord& record, std::string* error) {
  if (!producer_) {
    maybe_waiting_ = true;
    return sink::ProduceResult::kQueueFull;  // being recreated: hold on
  }
  const sink::ProduceResult result = producer_->Produce(record, error);
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
  MaybeFinishShutdown();
}

void Bridge::ReleaseBackpressure() {
  for (auto& [slot, p] : pipelines_) {
    if (stats_.backpressured) return;
    if (!p->RetryBacklog()) return;  // librdkafka's queue is full again
    p->ResumeReading();
  }
  maybe_waiting_ = false;
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
    store_.Set(name, checkpoint);
    const bool replaced = active_.count(name) && active_[name] != p.slot();
    it = pipelines_.erase(it);
    --closed_pipelines_;
    if (replaced || shutting_down_) continue;
    auto restart = restart_after_drain_.find(name);
    if (restart != restart_after_drain_.end()) {
      config::StreamConfig next = std::move(restart->second);
      restart_after_drain_.erase(restart);
      ops::Log(info, name, "restarting with its new settings", {{"checkpoint", checkpoint}});
      StartStream(next, checkpoint);
    }
  }
}

void Bridge::Reload(config::Config next) {
  std::map<std::string, const config::StreamConfig*> wanted;
  for (const auto& s : next.streams) wanted[s.name] = &s;
  int added = 0, removed = 0, restarted = 0, kept = 0;
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
    StartStream(s, store_.Get(s.name));
  }
  if (next.kafka != config_.kafka) {
    ops::Log(warn, "", "kafka settings changed: they apply at the next start");
  }
  const config::KafkaConfig kafka = config_.kafka;
  config_ = std::move(next);
  config_.kafka = kafka;
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
  for (auto& [slot, p] : pipelines_) p->Rewind("Kafka producer failed: " + reason, std::nullopt, true);
  loop_.Unwatch(producer_->wakeup_fd());
  producer_->Purge();
  producer_.reset();
  stats_.backpressured = true;  // nothing can be produced until a new producer exists
  maybe_waiting_ = true;
  stats_.in_flight_events = 0;
  stats_.in_flight_bytes = 0;
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

bool Bridge::PersistCheckpoints(std::string* error) {
  for (const auto& [slot, p] : pipelines_) {
    const std::string& checkpoint = p->checkpoint();
    const auto stored = store_.Get(p->config().name);
    if (!stored || *stored != checkpoint) store_.Set(p->config().name, checkpoint);
  }
  return store_.Flush(error);
}

void Bridge::PeriodicFlush() {
  std::string error;
  if (!PersistCheckpoints(&error)) {
    ops::Log(err, "", "cannot write checkpoints; will retry", {{"error", error}});
  }
  flush_timer_ = loop_.ScheduleAfter(config_.state.flush_interval, [this] { PeriodicFlush(); });
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
  summary_timer_ = loop_.ScheduleAfter(config_.log.stats_interval, [this] { PeriodicSummary(); });
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
  loop_.Cancel(shutdown_timer_);
  shutdown_timer_ = 0;
  auto done = std::move(on_stopped_);
  on_stopped_ = nullptr;
  done();
}

std::chrono::milliseconds Bridge::kafka_stats_interval() const {
  return producer_ ? producer_->statistics_interval() : milliseconds(0);
}

void Bridge::ForEachStream(const std::function<void(const StreamPipeline&)>& visit) const {
  for (const auto& [name, slot] : active_) visit(*pipelines_.at(slot));
}

}  // namespace sse2kafka::bridge
