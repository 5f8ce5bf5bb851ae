// Turns SIGTERM, SIGINT and SIGHUP into readable events on a file descriptor (signalfd), so
// the event loop handles them between callbacks instead of inside an async signal handler.
#pragma once

#include <memory>
#include <string>

namespace sse2kafka::ops {

enum class ProcessSignal { kTerminate, kInterrupt, kReload };

class SignalReceiver {
 public:
  // Blocks the three signals for the calling thread (call before starting other threads, so
  // they inherit the mask) and opens a non-blocking signalfd for them.
  // nullptr with *error on failure.
  static std::unique_ptr<SignalReceiver> Create(std::string* error);
  ~SignalReceiver();
  SignalReceiver(const SignalReceiver&) = delete;
  SignalReceiver& operator=(const SignalReceiver&) = delete;

  int fd() const { return fd_; }

  // Reads one pending signal; false when none is pending.
  bool Next(ProcessSignal* signal);

 private:
  explicit SignalReceiver(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace sse2kafka::ops
