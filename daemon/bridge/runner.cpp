#include "bridge/runner.h"

#include <sys/epoll.h>
#include <sys/resource.h>

#include "bridge/metrics_snapshot.h"
#include "config/loader.h"
#include "ops/log.h"
#include "sink/kafka_producer.h"
#include "sink/producer_properties.h"

namespace sse2kafka::bridge {

using spdlog::level::err;
using spdlog::level::info;
using spdlog::level::warn;

namespace {
constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr std::chrono::milliseconds kMetricsInterval{1000};
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
  state::CheckpointStore::Options store_options;
  store_options.dir = config_.state.dir;
  store_options.reset_on_corrupt = config_.state.on_corrupt == config::OnCorrupt::kReset;
  std::vector<std::string> warnings;
  store_ = state::CheckpointStore::Open(store_options, &error, &warnings);
  if (!store_) return Fail("state dir " + config_.state.dir + ": " + error);
  for (const auto& w : warnings) ops::Log(warn, "", w);

  std::string brokers = config_.kafka.brokers;
  if (brokers == "embedded") {
    embedded_ = sink::EmbeddedCluster::Start(1, &error);
    if (!embedded_) return Fail("embedded Kafka: " + error);
    brokers = embedded_->bootstrap_servers();
    ops::Log(warn, "", "kafka.brokers: embedded: using an in-memory Kafka cluster for trying out (records are lost at exit)",
             {{"bootstrap_servers", brokers}});
  }
  loop_ = http::EventLoop::Create(&error);
  if (!loop_) return Fail(error);
  http_ = http::HttpClient::Create(*loop_, &error);
  if (!http_) return Fail(error);

  sink::ProducerSettings settings;
  settings.bootstrap_servers = brokers;
  settings.properties = config_.kafka.properties;
  settings.max_in_flight_events = config_.kafka.max_in_flight_events;
  settings.max_in_flight_bytes = config_.kafka.max_in_flight_bytes;
  bridge_ = std::make_unique<Bridge>(
      *loop_, *http_, *store_,
      [settings](std::string* e) { return sink::KafkaProducer::Create(settings, e); }, config_);
  if (!bridge_->Start(&error)) return Fail("Kafka producer: " + error);

  PublishMetrics();
  if (!config_.admin.listen.empty()) {
    if (!admin_.Start(config_.admin.listen, metrics_, &error)) return Fail("admin.listen: " + error);
    ops::Log(info, "", "admin endpoint listening", {{"listen", config_.admin.listen}});
  }
  loop_->Watch(signals_->fd(), EPOLLIN, [this](uint32_t) { OnSignals(); });
  StartWatchdog();
  notifier_.Ready(std::to_string(config_.streams.size()) + " streams");
  if (!loop_->Run()) return Fail("event loop failed");

  if (!bridge_->PersistCheckpoints(&error)) {
    return Fail("cannot write checkpoints at exit: " + error);
  }
  ops::Log(info, "", "stopped");
  return kExitOk;
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
