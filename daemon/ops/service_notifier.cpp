#include "ops/service_notifier.h"

#include <systemd/sd-daemon.h>
#include <time.h>

namespace sse2kafka::ops {

void ServiceNotifier::Ready(const std::string& status) {
  sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
}

void ServiceNotifier::Reloading() {
  // Type=notify-reload (systemd 253+) also wants the monotonic time; older ones ignore it.
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const unsigned long long usec =
      static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL + static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", usec);
}

void ServiceNotifier::Stopping() { sd_notify(0, "STOPPING=1"); }

void ServiceNotifier::Status(const std::string& status) {
  sd_notifyf(0, "STATUS=%s", status.c_str());
}

void ServiceNotifier::WatchdogPing() { sd_notify(0, "WATCHDOG=1"); }

std::optional<std::chrono::milliseconds> ServiceNotifier::WatchdogInterval() const {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
  return std::chrono::milliseconds(usec / 2000);
}

}  // namespace sse2kafka::ops
