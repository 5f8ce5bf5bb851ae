// A single-threaded epoll loop with one timerfd for every timer.
//
// The loop owns file descriptor readiness and timers; it knows nothing of what the
// descriptors carry. Callbacks run on the loop's thread, one at a time, so the objects they
// touch need no locks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

namespace sse2kafka::http {

using Clock = std::chrono::steady_clock;
using TimerId = uint64_t;
inline constexpr TimerId kNoTimer = 0;  // never the id of a scheduled timer

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t epoll_events)>;
  using TimerCallback = std::function<void()>;

  // Creates the epoll instance and the timerfd. nullptr with *error when the kernel refuses.
  static std::unique_ptr<EventLoop> Create(std::string* error);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Starts or changes watching `fd` for `events` (EPOLLIN, EPOLLOUT, ...). The callback gets
  // the ready events. False with *error if epoll refuses the descriptor.
  bool Watch(int fd, uint32_t events, FdCallback callback, std::string* error = nullptr);
  // Stops watching `fd`; a callback for it that is pending in this turn is not run.
  void Unwatch(int fd);

  // Runs `callback` once at (or soon after) `when`. Returns an id for Cancel.
  TimerId ScheduleAt(Clock::time_point when, TimerCallback callback);
  TimerId ScheduleAfter(std::chrono::milliseconds delay, TimerCallback callback);
  // Runs `callback` every `interval`, the first time one interval from now, until cancelled
  // (also from inside the callback); each run is timed from the end of the previous one, so a
  // slow or stalled turn never makes it fire in a burst. A zero or negative interval would run
  // it on every turn: that is a programming error, which aborts a debug build and returns
  // kNoTimer (nothing scheduled) in a release build.
  TimerId ScheduleEvery(std::chrono::milliseconds interval, TimerCallback callback);
  // Cancels a timer that has not fired (a repeating one at any time); cancelling a fired or
  // unknown id, or kNoTimer, does nothing.
  void Cancel(TimerId id);

  // Turns the loop until Stop is called. Returns false if epoll_wait fails for good.
  bool Run();
  // Makes Run return after the callback that called it finishes.
  void Stop() { stopping_ = true; }

  // Calls `observer` with the delay at the start of a turn, before any other callback of that
  // turn, when the turn began more than `threshold` after its earliest timer was due: the
  // process was suspended (SIGSTOP, a frozen VM) or starved, so what it knew before may be
  // stale. A callback that blocks for longer than `threshold` is seen the same way. Only
  // noticed while a timer is pending, so an owner that cares keeps a periodic one. Replaces
  // any earlier observer; a zero threshold turns it off.
  using StallObserver = std::function<void(Clock::duration delay)>;
  void SetStallObserver(std::chrono::milliseconds threshold, StallObserver observer);

  // The time at the start of the current turn: cheap, and the same for every callback in it.
  Clock::time_point now() const { return now_; }
  // Counts loop turns; a watchdog can see that the loop is still turning.
  uint64_t turns() const { return turns_; }

 private:
  EventLoop(int epoll_fd, int timer_fd);
  void ArmTimerFd();
  void RunDueTimers();

  struct Timer {
    Clock::time_point when;
    TimerId id;
    bool operator>(const Timer& other) const {
      return when != other.when ? when > other.when : id > other.id;
    }
  };

  int epoll_fd_;
  int timer_fd_;
  bool stopping_ = false;
  uint64_t turns_ = 0;
  Clock::time_point now_;
  Clock::time_point armed_for_ = Clock::time_point::max();
  TimerId next_timer_id_ = 1;
  std::chrono::milliseconds stall_threshold_{0};
  StallObserver stall_observer_;
  // Cancelled timers stay in the heap and are skipped when they surface (lazy deletion).
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timer_heap_;
  struct TimerEntry {
    TimerCallback callback;
    std::chrono::milliseconds interval{0};  // > 0 for a repeating timer
  };
  std::unordered_map<TimerId, TimerEntry> timer_callbacks_;
  // shared_ptr so that a callback can Unwatch (or re-Watch) its own fd while it runs.
  std::unordered_map<int, std::shared_ptr<FdCallback>> fd_callbacks_;
};

}  // namespace sse2kafka::http
