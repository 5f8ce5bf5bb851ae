// The process around the bridge: opens the state store, the (embedded) Kafka cluster, the loop,
// the HTTP client and the admin endpoint, runs the bridge, and turns signals into a reload or a
// graceful stop. main() parses the command line and hands the loaded config to a Runner.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "bridge/bridge.h"
#include "config/config.h"
#include "config/loader.h"
#include "http/event_loop.h"
#include "http/http_client.h"
#include "ops/admin_server.h"
#include "ops/metrics.h"
#include "ops/service_notifier.h"
#include "ops/signals.h"
#include "sink/embedded_cluster.h"
#include "state/checkpoint_store.h"

namespace sse2kafka::bridge {

class Runner {
 public:
  // `config_path` is re-read on SIGHUP; `log_level_override` (from --log-level) survives reloads.
  Runner(config::Config config, std::string config_path, std::string log_level_override);
  ~Runner();
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Runs until a graceful stop. Returns the process exit status: 0 after a clean stop, 1 when
  // something needed at start-up (state dir, Kafka producer, admin address) cannot be had or
  // checkpoints cannot be written at exit. Every failure is logged.
  int Run();

 private:
  static void RaiseFileLimit();
  int Fail(const std::string& message);
  void OnSignals();
  void Reload();
  void StartWatchdog();
  void PublishMetrics();
  // Kafka state backend: makes sure the state topic exists and fills in how the bridge reads
  // checkpoints, creates transactional producers and joins the group. False with *error.
  bool PrepareFleet(const std::string& brokers, FleetHooks* fleet, std::string* error);
  // The producer's batch.size cap that fits the smallest max.message.bytes of the topics
  // (sink/topic_limits.h); nullopt when none is lower than the default or they cannot be read
  // (logged: the start goes on).
  std::optional<std::size_t> BatchSizeForTopics(const std::string& brokers);

  config::Config config_;
  std::string config_path_;
  std::string log_level_override_;
  std::unique_ptr<ops::SignalReceiver> signals_;
  std::unique_ptr<state::CheckpointStore> store_;
  std::unique_ptr<sink::EmbeddedCluster> embedded_;
  std::unique_ptr<http::EventLoop> loop_;
  std::unique_ptr<http::HttpClient> http_;
  std::unique_ptr<Bridge> bridge_;
  ops::MetricsPublisher metrics_;
  ops::AdminServer admin_;
  ops::ServiceNotifier notifier_;
  bool stopping_ = false;
  std::optional<std::string> failure_;  // the bridge cannot go on: exit 1 with this
};

// Loads and validates a config file, checking librdkafka properties with the sink's validator.
config::LoadResult LoadConfig(const std::string& path);

}  // namespace sse2kafka::bridge
