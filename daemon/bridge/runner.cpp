#include "bridge/runner.h"

#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bridge/kafka_client_properties.h"
#include "bridge/metrics_snapshot.h"
#include "config/loader.h"
#include "ops/log.h"
#include "sink/client_properties.h"
#include "sink/connection_problem.h"
#include "sink/group_membership.h"
#include "sink/kafka_producer.h"
#include "sink/producer_properties.h"
#include "sink/state_topic.h"
#include "sink/topic_limits.h"

namespace sse2kafka::bridge {

using spdlog::level::err;
using spdlog::level::info;
using spdlog::level::warn;

namespace {
constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr std::chrono::milliseconds kMetricsInterval{1000};
constexpr std::chrono::milliseconds kStateTopicTimeout{30000};
// Reading the topics' limits may not hold the start for long: Kafka may be down, and the bridge
// must then start anyway (backpressure holds the upstreams until Kafka is back).
constexpr std::chrono::milliseconds kTopicLimitsTimeout{3000};

// "<host>/<pid>": which process wrote a checkpoint record.
std::string InstanceName() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  return std::string(host[0] ? host : "unknown") + "/" + std::to_string(getpid());
}
}  // namespace

config::LoadResult LoadConfig(const std::string& path) {
  return config::LoadConfigFile(path, config::ProcessEnvironment(),
                                [](const std::string& name, const std::string& value) {
                                  return sink::ValidateProducerProperty(name, value);
                                });
}

Runner::Runner(config::Config config, std::string config_path, std::string log_level_override)
    : config_(std::move(config)),
      config_path_(std::move(config_path)),
      log_level_override_(std::move(log_level_override)),
      metrics_(kMetricsInterval) {}

Runner::~Runner() {
  admin_.Stop();
  bridge_.reset();  // before the HTTP client and the loop it uses
}

// Every stream holds a socket: the usual soft limit of 1024 would cap a bridge at about a
// thousand feeds, while the hard limit is there to be used.
void Runner::RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

int Runner::Fail(const std::string& message) {
  ops::Log(err, "", message);
  return kExitRuntime;
}

int Runner::Run() {
  RaiseFileLimit();
  std::string error;
  signals_ = ops::SignalReceiver::Create(&error);  // before any thread starts: they inherit the mask
  if (!signals_) return Fail(error);
  std::string brokers = config_.kafka.brokers;
  if (brokers == "embedded") {
    embedded_ = sink::EmbeddedCluster::Start(1, &error);
    if (!embedded_) return Fail("embedded Kafka: " + error);
    brokers = embedded_->bootstrap_servers();
    ops::Log(warn, "", "kafka.brokers: embedded: using an in-memory Kafka cluster for trying out (records are lost at exit)",
             {{"bootstrap_servers", brokers}});
  }
  if (auto caveat = sink::LibrdkafkaCaveat(KafkaClientProperties(config_.kafka))) ops::Log(warn, "", "kafka: " + *caveat);
  FleetHooks fleet;
  if (config_.state.backend == config::StateBackend::kFile) {
    state::CheckpointStore::Options store_options;
    store_options.dir = config_.state.dir;
    store_options.reset_on_corrupt = config_.state.on_corrupt == config::OnCorrupt::kReset;
    std::vector<std::string> warnings;
    store_ = state::CheckpointStore::Open(store_options, &error, &warnings);
    if (!store_) return Fail("state dir " + config_.state.dir + ": " + error);
    for (const auto& w : warnings) ops::Log(warn, "", w);
  } else if (!PrepareFleet(brokers, &fleet, &error)) {
    return Fail(error);
  }
  loop_ = http::EventLoop::Create(&error);
  if (!loop_) return Fail(error);
  http_ = http::HttpClient::Create(*loop_, &error);
  if (!http_) return Fail(error);

  sink::ProducerSettings settings;
  settings.bootstrap_servers = brokers;
  settings.properties = KafkaClientProperties(config_.kafka);
  settings.max_in_flight_events = config_.kafka.max_in_flight_events;
  settings.max_in_flight_bytes = config_.kafka.max_in_flight_bytes;
  settings.max_batch_bytes = BatchSizeForTopics(brokers);
  if (config_.delivery == config::Delivery::kExactlyOnce) {
    fleet.make_transactional_producer = [settings, config = config_](int32_t partition, std::string* e) {
      sink::ProducerSettings transactional = settings;
      transactional.transactional_id = TransactionalId(config, partition);
      return sink::KafkaProducer::Create(transactional, e);
    };
  }
  bridge_ = std::make_unique<Bridge>(
      *loop_, *http_, store_.get(),
      [settings](std::string* e) { return sink::KafkaProducer::Create(settings, e); }, config_,
      std::move(fleet));
  if (!bridge_->Start(&error)) return Fail("cannot start: " + error);
  if (failure_) return Fail(*failure_);  // the loop is not running yet: Stop would be lost

  PublishMetrics();
  if (!config_.admin.listen.empty()) {
    if (!admin_.Start(config_.admin.listen, metrics_, &error)) return Fail("admin.listen: " + error);
    ops::Log(info, "", "admin endpoint listening", {{"listen", config_.admin.listen}});
  }
  loop_->Watch(signals_->fd(), EPOLLIN, [this](uint32_t) { OnSignals(); });
  StartWatchdog();
  notifier_.Ready(std::to_string(config_.streams.size()) + " streams");
  if (!loop_->Run()) return Fail("event loop failed");
  if (failure_) return Fail(*failure_);

  if (!bridge_->PersistCheckpoints(&error)) {
    return Fail("cannot write checkpoints at exit: " + error);
  }
  bridge_->LeaveGroup();
  ops::Log(info, "", "stopped");
  return kExitOk;
}

bool Runner::PrepareFleet(const std::string& brokers, FleetHooks* fleet, std::string* error) {
  sink::StateTopicSettings topic;
  topic.bootstrap_servers = brokers;
  topic.properties = sink::CommonClientProperties(KafkaClientProperties(config_.kafka));
  topic.topic = config_.state.topic;
  topic.partitions = config_.state.partitions;
  topic.replication_factor = config_.state.replication_factor;
  if (embedded_) {
    // The in-process cluster has no CreateTopics: create the state topic inside it.
    embedded_->CreateTopic(topic.topic, topic.partitions);
  }
  std::vector<std::string> warnings;
  std::optional<int32_t> partitions = sink::EnsureStateTopic(topic, kStateTopicTimeout, &warnings, error);
  for (const auto& w : warnings) {
    // The in-process cluster cannot describe configs; its topic is in memory anyway.
    if (embedded_ && w.find("cleanup.policy") != std::string::npos) continue;
    ops::Log(warn, "", w);
  }
  if (!partitions) {  // the message names the topic
    *error = sink::ExplainAuthorizationFailure(*error, FleetAcls(config_, "Create"));
    return false;
  }
  ops::Log(info, "", "state topic ready",
           {{"topic", topic.topic}, {"partitions", static_cast<int64_t>(*partitions)}});
  fleet->instance = InstanceName();
  fleet->state_partitions = *partitions;
  const bool read_committed = config_.delivery == config::Delivery::kExactlyOnce;
  fleet->read_checkpoints = [topic, read_committed, acl = FleetAcls(config_, "Read")](
                                const std::vector<int32_t>& wanted, std::string* e) {
    auto checkpoints = sink::ReadStateCheckpoints(topic, wanted, read_committed, kStateTopicTimeout, e);
    if (!checkpoints) *e = sink::ExplainAuthorizationFailure(*e, acl);
    return checkpoints;
  };
  if (!config_.cluster.group.empty()) {
    sink::MembershipSettings membership;
    membership.bootstrap_servers = brokers;
    membership.properties = topic.properties;
    membership.group = config_.cluster.group;
    membership.topic = topic.topic;
    membership.session_timeout = config_.cluster.session_timeout;
    fleet->join_group = [membership](std::string* e) { return sink::GroupMembership::Create(membership, e); };
  }
  fleet->fail = [this](const std::string& reason) {
    if (!failure_) failure_ = reason;
    loop_->Stop();
  };
  return true;
}

std::optional<std::size_t> Runner::BatchSizeForTopics(const std::string& brokers) {
  std::string error;
  const auto limits = sink::ReadMaxMessageBytes(brokers, sink::CommonClientProperties(KafkaClientProperties(config_.kafka)),
                                                config::RoutedTopics(config_.streams), kTopicLimitsTimeout, &error);
  if (!limits) {
    ops::Log(warn, "", "could not read the topics' max.message.bytes; a topic whose limit is below the producer's "
                       "batch.size refuses whole batches",
             {{"error", error}});
    return std::nullopt;
  }
  const std::optional<std::size_t> batch = sink::BatchSizeWithin(*limits);
  if (batch) {
    const auto smallest = std::min_element(limits->begin(), limits->end(),
                                           [](const auto& a, const auto& b) { return a.second < b.second; });
    ops::Log(info, "", "batch.size lowered to fit the smallest topic limit",
             {{"batch_size", static_cast<unsigned long long>(*batch)}, {"topic", smallest->first},
              {"max_message_bytes", static_cast<long long>(smallest->second)}});
  }
  return batch;
}

void Runner::PublishMetrics() {
  metrics_.Publish(TakeMetricsSnapshot(*bridge_, loop_->turns(), stopping_));
  loop_->ScheduleAfter(kMetricsInterval, [this] { PublishMetrics(); });
}

void Runner::OnSignals() {
  ops::ProcessSignal signal;
  while (signals_->Next(&signal)) {
    if (signal == ops::ProcessSignal::kReload) {
      Reload();
    } else if (stopping_) {
      ops::Log(warn, "", "second stop signal: exiting now; checkpoints cover only confirmed events");
      loop_->Stop();
    } else {
      stopping_ = true;
      notifier_.Stopping();
      bridge_->BeginShutdown([this] { loop_->Stop(); });
    }
  }
}

void Runner::Reload() {
  if (stopping_) return;
  notifier_.Reloading();
  ops::Log(info, "", "SIGHUP: reloading the config", {{"path", config_path_}});
  config::LoadResult loaded = LoadConfig(config_path_);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) ops::Log(err, "", "reload: " + e.ToString());
    ops::Log(err, "", "reload ignored: the config is invalid; running on as before");
  } else {
    for (const auto& w : loaded.warnings) ops::Log(warn, "", "reload: config " + w.ToString());
    if (log_level_override_.empty()) ops::SetLogLevel(loaded.config->log.level);
    bridge_->Reload(std::move(*loaded.config));
  }
  notifier_.Ready("reloaded");
}

void Runner::StartWatchdog() {
  const auto interval = notifier_.WatchdogInterval();
  if (!interval) return;
  // Pinged from the loop itself, so a wedged loop stops the pings and systemd restarts us.
  loop_->ScheduleAfter(*interval, [this] {
    notifier_.WatchdogPing();
    StartWatchdog();
  });
}

}  // namespace sse2kafka::bridge
