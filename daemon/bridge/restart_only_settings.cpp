#include "bridge/restart_only_settings.h"

namespace sse2kafka::bridge {

namespace {

template <typename T>
void Keep(const T& running, T& next, const char* name, std::vector<std::string>& changed) {
  if (next == running) return;
  changed.emplace_back(name);
  next = running;
}

}  // namespace

std::vector<std::string> KeepRestartOnlySettings(const config::Config& running, config::Config& next) {
  std::vector<std::string> changed;
  Keep(running.kafka, next.kafka, "kafka", changed);
  Keep(running.state, next.state, "state", changed);
  Keep(running.delivery, next.delivery, "delivery", changed);
  Keep(running.transaction, next.transaction, "transaction", changed);
  Keep(running.cluster, next.cluster, "cluster", changed);
  Keep(running.admin.listen, next.admin.listen, "admin.listen", changed);
  Keep(running.log.format, next.log.format, "log.format", changed);
  return changed;
}

}  // namespace sse2kafka::bridge
