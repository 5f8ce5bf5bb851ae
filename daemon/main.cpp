// sse2kafka: Server-Sent Events feeds into Kafka. main() parses the command line, loads the
// config and hands it to bridge::Runner; everything else lives in daemon/<layer>/.
#include <curl/curl.h>
#include <librdkafka/rdkafka.h>
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "bridge/runner.h"
#include "config/loader.h"
#include "generated/version.h"
#include "ops/log.h"
#include "ops/signals.h"

namespace {
constexpr int kExitOk = 0;
constexpr int kExitUsage = 2;
}  // namespace

int main(int argc, char** argv) {
  using namespace sse2kafka;
  // A stop or reload signal during start-up waits for the loop instead of killing the process.
  ops::SignalReceiver::BlockSignals();
  // librdkafka allocates and frees small objects per record in batches; glibc's fastbins then
  // trigger costly consolidation sweeps. Without fastbins the bridge uses about a third less
  // CPU per event (bench/README.md, S1).
  mallopt(M_MXFAST, 0);
  std::string config_path, log_format, log_level;
  bool check = false, version = false;
  CLI::App app{"sse2kafka " SSE2KAFKA_VERSION ": republishes Server-Sent Events feeds to Kafka.\n"
               "Config reference: README.md and config/example.yaml."};
  app.add_option("-c,--config", config_path, "YAML config file")->option_text("FILE");
  app.add_flag("--check", check, "validate the config, print every problem, exit 0 (valid) or 2");
  app.add_flag("--version", version, "print the version and exit");
  app.add_option("--log-format", log_format, "text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", log_level, "overrides log.level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  if (version) {
    std::printf("sse2kafka %s (%s, librdkafka %s)\n", SSE2KAFKA_VERSION, curl_version(), rd_kafka_version_str());
    return kExitOk;
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "sse2kafka: --config FILE is required (see --help)\n");
    return kExitUsage;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);

  config::LoadResult loaded = bridge::LoadConfig(config_path);
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    std::fprintf(stderr, "sse2kafka: %zu problem%s in %s\n", loaded.errors.size(),
                 loaded.errors.size() == 1 ? "" : "s", config_path.c_str());
    return kExitUsage;
  }
  if (check) {
    for (const auto& w : loaded.warnings) std::fprintf(stderr, "%s\n", w.ToString().c_str());
    std::printf("%s: OK (%zu streams)\n", config_path.c_str(), loaded.config->streams.size());
    return kExitOk;
  }
  config::Config config = std::move(*loaded.config);
  const bool json = (log_format.empty() ? config.log.format : log_format) == "json";
  ops::SetupLogging(json ? ops::LogFormat::kJson : ops::LogFormat::kText,
                    log_level.empty() ? config.log.level : log_level);
  ops::Log(spdlog::level::info, "", "sse2kafka " SSE2KAFKA_VERSION " starting", {{"config", config_path}});
  for (const auto& w : loaded.warnings) ops::Log(spdlog::level::warn, "", "config " + w.ToString());
  int rc;
  {
    bridge::Runner runner(std::move(config), config_path, log_level);
    rc = runner.Run();
  }
  curl_global_cleanup();
  return rc;
}
