// sse2kafka: Server-Sent Events feeds into Kafka. main() parses the command line, loads the
// config and wires the layers together; everything else lives in daemon/<layer>/.
#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>

#include "bridge/bridge.h"
#include "config/loader.h"
#include "generated/version.h"
#include "http/event_loop.h"
#include "http/http_client.h"
#include "ops/log.h"
#include "ops/service_notifier.h"
#include "ops/signals.h"
#include "sink/embedded_cluster.h"
#include "sink/kafka_producer.h"
#include "sink/producer_properties.h"
#include "state/checkpoint_store.h"

namespace {

using namespace sse2kafka;
using spdlog::level::err;
using spdlog::level::info;
using spdlog::level::warn;

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

struct Options {
  std::string config_path;
  bool check = false;
  bool version = false;
  std::string log_format;
  std::string log_level;
};

config::LoadResult Load(const std::string& path) {
  return config::LoadConfigFile(path, config::ProcessEnvironment(),
                                [](const std::string& name, const std::string& value) {
                                  return sink::ValidateProducerProperty(name, value);
                                });
}

// Everything that lives from start to stop, in construction order.
class Daemon {
 public:
  Daemon(config::Config config, const Options& options) : config_(std::move(config)), options_(options) {}

  int Run() {
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
    bridge_ = std::make_unique<bridge::Bridge>(
        *loop_, *http_, *store_,
        [settings](std::string* e) { return sink::KafkaProducer::Create(settings, e); }, config_);
    if (!bridge_->Start(&error)) return Fail("Kafka producer: " + error);

    loop_->Watch(signals_->fd(), EPOLLIN, [this](uint32_t) { OnSignals(); });
    StartWatchdog();
    notifier_.Ready(std::to_string(config_.streams.size()) + " streams");
    if (!loop_->Run()) return Fail("event loop failed");

    if (!store_->Flush(&error) || !bridge_->PersistCheckpoints(&error)) {
      ops::Log(err, "", "cannot write checkpoints at exit", {{"error", error}});
      return kExitRuntime;
    }
    ops::Log(info, "", "stopped");
    return kExitOk;
  }

 private:
  // Every stream holds a socket: the usual soft limit of 1024 would cap a bridge at about a
  // thousand feeds, while the hard limit is there to be used.
  static void RaiseFileLimit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
      limit.rlim_cur = limit.rlim_max;
      setrlimit(RLIMIT_NOFILE, &limit);
    }
  }

  int Fail(const std::string& message) {
    ops::Log(err, "", message);
    return kExitRuntime;
  }

  void OnSignals() {
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

  void Reload() {
    if (stopping_) return;
    notifier_.Reloading();
    ops::Log(info, "", "SIGHUP: reloading the config", {{"path", options_.config_path}});
    config::LoadResult loaded = Load(options_.config_path);
    if (!loaded.ok()) {
      for (const auto& e : loaded.errors) ops::Log(err, "", "reload: " + e.ToString());
      ops::Log(err, "", "reload ignored: the config is invalid; running on as before");
    } else {
      if (options_.log_level.empty()) ops::SetLogLevel(loaded.config->log.level);
      bridge_->Reload(std::move(*loaded.config));
    }
    notifier_.Ready("reloaded");
  }

  void StartWatchdog() {
    const auto interval = notifier_.WatchdogInterval();
    if (!interval) return;
    // Pinged from the loop itself, so a wedged loop stops the pings and systemd restarts us.
    loop_->ScheduleAfter(*interval, [this, interval] {
      notifier_.WatchdogPing();
      StartWatchdog();
    });
  }

  config::Config config_;
  const Options& options_;
  std::unique_ptr<ops::SignalReceiver> signals_;
  std::unique_ptr<state::CheckpointStore> store_;
  std::unique_ptr<sink::EmbeddedCluster> embedded_;
  std::unique_ptr<http::EventLoop> loop_;
  std::unique_ptr<http::HttpClient> http_;
  std::unique_ptr<bridge::Bridge> bridge_;
  ops::ServiceNotifier notifier_;
  bool stopping_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"sse2kafka " SSE2KAFKA_VERSION ": republishes Server-Sent Events feeds to Kafka.\n"
               "Config reference: README.md and config/example.yaml."};
  app.add_option("-c,--config", options.config_path, "YAML config file")->option_text("FILE");
  app.add_flag("--check", options.check, "validate the config, print every problem, exit 0 (valid) or 2");
  app.add_flag("--version", options.version, "print the version and exit");
  app.add_option("--log-format", options.log_format, "text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", options.log_level, "overrides log.level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  if (options.version) {
    std::printf("sse2kafka %s (%s, librdkafka %s)\n", SSE2KAFKA_VERSION, curl_version(), rd_kafka_version_str());
    return kExitOk;
  }
  if (options.config_path.empty()) {
    std::fprintf(stderr, "sse2kafka: --config FILE is required (see --help)\n");
    return kExitUsage;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);

  config::LoadResult loaded = Load(options.config_path);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    std::fprintf(stderr, "sse2kafka: %zu problem%s in %s\n", loaded.errors.size(),
                 loaded.errors.size() == 1 ? "" : "s", options.config_path.c_str());
    return kExitUsage;
  }
  if (options.check) {
    std::printf("%s: OK (%zu streams)\n", options.config_path.c_str(), loaded.config->streams.size());
    return kExitOk;
  }
  config::Config config = std::move(*loaded.config);
  const auto format = (options.log_format.empty() ? config.log.format : options.log_format) == "json"
                          ? ops::LogFormat::kJson : ops::LogFormat::kText;
  ops::SetupLogging(format, options.log_level.empty() ? config.log.level : options.log_level);
  ops::Log(info, "", "sse2kafka " SSE2KAFKA_VERSION " starting", {{"config", options.config_path}});
  const int rc = Daemon(std::move(config), options).Run();
  curl_global_cleanup();
  return rc;
}
