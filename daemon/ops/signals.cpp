#include "ops/signals.h"

#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

namespace sse2kafka::ops {

namespace {
sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}
}  // namespace

bool SignalReceiver::BlockSignals() {
  const sigset_t set = HandledSignals();
  return pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0;
}

std::unique_ptr<SignalReceiver> SignalReceiver::Create(std::string* error) {
  if (!BlockSignals()) {
    *error = "cannot block signals";
    return nullptr;
  }
  const sigset_t set = HandledSignals();
  // A writer that goes away (a closed upstream socket) must be an error, not a process kill.
  std::signal(SIGPIPE, SIG_IGN);
  const int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) {
    *error = std::string("signalfd: ") + std::strerror(errno);
    return nullptr;
  }
  return std::unique_ptr<SignalReceiver>(new SignalReceiver(fd));
}

SignalReceiver::~SignalReceiver() { close(fd_); }

bool SignalReceiver::Next(ProcessSignal* signal) {
  signalfd_siginfo info;
  for (;;) {
    const ssize_t n = read(fd_, &info, sizeof info);
    if (n != static_cast<ssize_t>(sizeof info)) return false;
    switch (info.ssi_signo) {
      case SIGTERM: *signal = ProcessSignal::kTerminate; return true;
      case SIGINT: *signal = ProcessSignal::kInterrupt; return true;
      case SIGHUP: *signal = ProcessSignal::kReload; return true;
      default: continue;
    }
  }
}

}  // namespace sse2kafka::ops
