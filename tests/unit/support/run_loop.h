// Turning a real EventLoop inside a test without sleeping: the loop runs until a condition
// holds, checked from a short timer, and always stops at a deadline so that no test can hang.
#pragma once

#include <chrono>
#include <functional>

#include "http/event_loop.h"

namespace sse2kafka::test_support {

// Turns `loop` until `done()` holds (checked every `check_every`) or `timeout` passes.
// Returns done(). Something else calling loop.Stop() also ends the run early.
inline bool RunLoopUntil(http::EventLoop& loop, const std::function<bool()>& done,
                         std::chrono::milliseconds timeout,
                         std::chrono::milliseconds check_every = std::chrono::milliseconds(2)) {
  if (done()) return true;
  const auto deadline = http::Clock::now() + timeout;
  http::TimerId timer = 0;
  std::function<void()> check;
  check = [&] {
    timer = 0;
    if (done() || http::Clock::now() >= deadline) {
      loop.Stop();
      return;
    }
    timer = loop.ScheduleAfter(check_every, check);
  };
  timer = loop.ScheduleAfter(std::chrono::milliseconds(0), check);
  loop.Run();
  loop.Cancel(timer);
  return done();
}

// Turns `loop` for `duration`: a window in which the test watches that something does NOT
// happen.
inline void RunLoopFor(http::EventLoop& loop, std::chrono::milliseconds duration) {
  RunLoopUntil(loop, [] { return false; }, duration);
}

}  // namespace sse2kafka::test_support
