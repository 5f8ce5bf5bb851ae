// Turns SIGTERM, SIGINT and SIGHUP into readable events on a file descriptor (signalfd), so
// the event loop handles them between callbacks instead of inside an async signal handler.
#pragma once

#include <memory>
#include <string>

namespace sse2kafka::ops {

enum class ProcessSignal { kTerminate, kInterrupt, kReload };

class SignalReceiver {
 public:
  // Blocks the three signals for the calling thread and the threads it starts later, so that
  // one arriving before Create is kept pending instead of killing the process. Call it first
  // thing in main(). False if the mask cannot be set.
  static bool BlockSignals();

  // Blocks the three signals (as BlockSignals) and opens a non-blocking signalfd for them;
  // signals that arrived while blocked are read from it first.
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
