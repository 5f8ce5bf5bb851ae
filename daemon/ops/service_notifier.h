// Tells a service manager (systemd, via $NOTIFY_SOCKET) what the daemon is doing: READY,
// RELOADING, STOPPING, STATUS, and watchdog pings. Without $NOTIFY_SOCKET every call is a no-op.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace sse2kafka::ops {

class ServiceNotifier {
 public:
  void Ready(const std::string& status);
  void Reloading();
  void Stopping();
  void Status(const std::string& status);
  void WatchdogPing();
  // How often to ping: half the watchdog timeout systemd set, or nullopt when none is set.
  std::optional<std::chrono::milliseconds> WatchdogInterval() const;
};

}  // namespace sse2kafka::ops
