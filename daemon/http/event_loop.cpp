#include "http/event_loop.h"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>

namespace sse2kafka::http {

std::unique_ptr<EventLoop> EventLoop::Create(std::string* error) {
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) {
    *error = std::string("epoll_create1: ") + std::strerror(errno);
    return nullptr;
  }
  const int timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd < 0) {
    *error = std::string("timerfd_create: ") + std::strerror(errno);
    close(epoll_fd);
    return nullptr;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = timer_fd;
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, timer_fd, &ev) != 0) {
    *error = std::string("epoll_ctl(timerfd): ") + std::strerror(errno);
    close(timer_fd);
    close(epoll_fd);
    return nullptr;
  }
  return std::unique_ptr<EventLoop>(new EventLoop(epoll_fd, timer_fd));
}

EventLoop::EventLoop(int epoll_fd, int timer_fd)
    : epoll_fd_(epoll_fd), timer_fd_(timer_fd), now_(Clock::now()) {}

EventLoop::~EventLoop() {
  close(timer_fd_);
  close(epoll_fd_);
}

bool EventLoop::Watch(int fd, uint32_t events, FdCallback callback, std::string* error) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  const bool known = fd_callbacks_.count(fd) != 0;
  if (epoll_ctl(epoll_fd_, known ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0) {
    if (error) *error = std::string("epoll_ctl: ") + std::strerror(errno);
    return false;
  }
  fd_callbacks_[fd] = std::make_shared<FdCallback>(std::move(callback));
  return true;
}

void EventLoop::Unwatch(int fd) {
  if (fd_callbacks_.erase(fd) != 0) {
    // The fd may already be closed by its owner, in which case the kernel dropped it.
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  }
}

TimerId EventLoop::ScheduleAt(Clock::time_point when, TimerCallback callback) {
  const TimerId id = next_timer_id_++;
  timer_callbacks_.emplace(id, TimerEntry{std::move(callback)});
  timer_heap_.push(Timer{when, id});
  if (when < armed_for_) ArmTimerFd();
  return id;
}

TimerId EventLoop::ScheduleEvery(std::chrono::milliseconds interval, TimerCallback callback) {
  assert(interval.count() > 0 && "a repeating timer needs an interval above zero");
  if (interval.count() <= 0) return kNoTimer;
  const TimerId id = ScheduleAt(Clock::now() + interval, std::move(callback));
  timer_callbacks_.at(id).interval = interval;
  return id;
}

TimerId EventLoop::ScheduleAfter(std::chrono::milliseconds delay, TimerCallback callback) {
  return ScheduleAt(Clock::now() + delay, std::move(callback));
}

void EventLoop::Cancel(TimerId id) { timer_callbacks_.erase(id); }

void EventLoop::ArmTimerFd() {
  while (!timer_heap_.empty() && timer_callbacks_.count(timer_heap_.top().id) == 0) {
    timer_heap_.pop();
  }
  itimerspec spec{};
  if (timer_heap_.empty()) {
    armed_for_ = Clock::time_point::max();
  } else {
    armed_for_ = timer_heap_.top().when;
    auto delay = armed_for_ - Clock::now();
    if (delay < std::chrono::nanoseconds(1)) delay = std::chrono::nanoseconds(1);  // 0 disarms
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(delay).count();
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
  }
  timerfd_settime(timer_fd_, 0, &spec, nullptr);
}

void EventLoop::RunDueTimers() {
  uint64_t expirations;
  while (read(timer_fd_, &expirations, sizeof expirations) > 0) {
  }
  // Only timers due at the start of this pass run now; ones they schedule wait for the next
  // turn, so a timer that re-arms itself at zero delay cannot starve file descriptors.
  const Clock::time_point due = Clock::now();
  now_ = due;
  // Ids from first_new on were scheduled by this pass's callbacks: they wait for the next turn
  // even when already due (ScheduleAt(now())).
  const TimerId first_new = next_timer_id_;
  std::vector<Timer> scheduled_in_pass;
  while (!timer_heap_.empty() && !stopping_) {
    const Timer top = timer_heap_.top();
    if (top.when > due) break;
    timer_heap_.pop();
    if (top.id >= first_new) {
      scheduled_in_pass.push_back(top);
      continue;
    }
    auto it = timer_callbacks_.find(top.id);
    if (it == timer_callbacks_.end()) continue;
    if (it->second.interval.count() <= 0) {
      TimerCallback callback = std::move(it->second.callback);
      timer_callbacks_.erase(it);
      callback();
      continue;
    }
    // A repeating timer keeps its entry (and id) while it runs, so the callback may cancel it;
    // the callback itself is moved out, since a Cancel destroys the entry.
    TimerCallback callback = std::move(it->second.callback);
    callback();
    auto still = timer_callbacks_.find(top.id);
    if (still == timer_callbacks_.end()) continue;
    still->second.callback = std::move(callback);
    scheduled_in_pass.push_back(Timer{Clock::now() + still->second.interval, top.id});
  }
  for (const Timer& t : scheduled_in_pass) timer_heap_.push(t);
  armed_for_ = Clock::time_point::max();
  ArmTimerFd();
}

void EventLoop::SetStallObserver(std::chrono::milliseconds threshold, StallObserver observer) {
  stall_threshold_ = threshold;
  stall_observer_ = threshold.count() > 0 ? std::move(observer) : nullptr;
}

bool EventLoop::Run() {
  stopping_ = false;
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  while (!stopping_) {
    const int n = epoll_wait(epoll_fd_, events, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    ++turns_;
    now_ = Clock::now();
    if (stall_observer_ && armed_for_ != Clock::time_point::max() && now_ - armed_for_ > stall_threshold_) {
      stall_observer_(now_ - armed_for_);
    }
    bool timers_due = false;
    for (int i = 0; i < n && !stopping_; ++i) {
      const int fd = events[i].data.fd;
      if (fd == timer_fd_) {
        timers_due = true;
        continue;
      }
      auto it = fd_callbacks_.find(fd);
      if (it == fd_callbacks_.end()) continue;
      std::shared_ptr<FdCallback> callback = it->second;
      (*callback)(events[i].events);
    }
    if (timers_due && !stopping_) RunDueTimers();
  }
  return true;
}

}  // namespace sse2kafka::http
