// EventLoop on real epoll, timerfd and pipes: timer order and cancellation, fairness between
// timers and descriptors, Watch/Unwatch (also from callbacks), Stop, now() and turns().
#include "http/event_loop.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <functional>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/run_loop.h"

namespace sse2kafka::http {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;

// Any test whose loop does not stop by itself within this long has failed.
constexpr milliseconds kGuard{5000};

class Pipe {
 public:
  Pipe() {
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) {
      read_fd_ = fds[0];
      write_fd_ = fds[1];
    }
  }
  ~Pipe() {
    if (read_fd_ >= 0) close(read_fd_);
    if (write_fd_ >= 0) close(write_fd_);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;

  bool ok() const { return read_fd_ >= 0; }
  int read_fd() const { return read_fd_; }
  int write_fd() const { return write_fd_; }
  bool Write(char byte = 'x') const { return write(write_fd_, &byte, 1) == 1; }
  // Reads whatever is there; returns the number of bytes.
  std::size_t Drain() const {
    char buf[256];
    std::size_t total = 0;
    for (int i = 0; i < 1000; ++i) {
      const ssize_t n = read(read_fd_, buf, sizeof buf);
      if (n <= 0) break;
      total += static_cast<std::size_t>(n);
    }
    return total;
  }

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;
};

class EventLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    loop_ = EventLoop::Create(&error);
    ASSERT_NE(loop_, nullptr) << error;
  }

  // Stops the loop after kGuard so that a broken loop fails the test instead of hanging it.
  TimerId ArmGuard() {
    return loop_->ScheduleAfter(kGuard, [this] {
      guard_fired_ = true;
      loop_->Stop();
    });
  }

  std::unique_ptr<EventLoop> loop_;
  bool guard_fired_ = false;
};

TEST_F(EventLoopTest, TimersFireInDeadlineOrderAndTiesInSchedulingOrder) {
  std::vector<std::string> fired;
  const Clock::time_point base = Clock::now();
  ArmGuard();
  loop_->ScheduleAt(base + milliseconds(30), [&] {
    fired.push_back("30");
    loop_->Stop();
  });
  loop_->ScheduleAt(base + milliseconds(10), [&] { fired.push_back("10"); });
  loop_->ScheduleAt(base + milliseconds(20), [&] { fired.push_back("20a"); });
  loop_->ScheduleAt(base + milliseconds(20), [&] { fired.push_back("20b"); });
  loop_->ScheduleAfter(milliseconds(0), [&] { fired.push_back("0"); });

  ASSERT_TRUE(loop_->Run());
  EXPECT_FALSE(guard_fired_);
  EXPECT_THAT(fired, ElementsAre("0", "10", "20a", "20b", "30"));
}

TEST_F(EventLoopTest, TimerDoesNotFireBeforeItsDeadline) {
  const Clock::time_point scheduled = Clock::now();
  Clock::time_point fired_at{};
  ArmGuard();
  loop_->ScheduleAfter(milliseconds(40), [&] {
    fired_at = Clock::now();
    loop_->Stop();
  });
  ASSERT_TRUE(loop_->Run());
  ASSERT_FALSE(guard_fired_);
  EXPECT_GE(fired_at - scheduled, milliseconds(40));
}

TEST_F(EventLoopTest, CancelledTimerDoesNotFire) {
  bool cancelled_ran = false;
  bool later_ran = false;
  ArmGuard();
  const TimerId doomed = loop_->ScheduleAfter(milliseconds(5), [&] { cancelled_ran = true; });
  loop_->ScheduleAfter(milliseconds(20), [&] {
    later_ran = true;
    loop_->Stop();
  });
  loop_->Cancel(doomed);
  ASSERT_TRUE(loop_->Run());
  EXPECT_FALSE(cancelled_ran);
  EXPECT_TRUE(later_ran);
}

TEST_F(EventLoopTest, CancelFromAnotherTimerCallbackStopsATimerDueInTheSamePass) {
  // Both are due at the same instant, so they surface in one pass over the heap; the first
  // cancels the second before it is reached.
  const Clock::time_point when = Clock::now() + milliseconds(10);
  bool second_ran = false;
  TimerId second = 0;
  ArmGuard();
  loop_->ScheduleAt(when, [&] { loop_->Cancel(second); });
  second = loop_->ScheduleAt(when, [&] { second_ran = true; });
  loop_->ScheduleAt(when + milliseconds(20), [&] { loop_->Stop(); });
  ASSERT_TRUE(loop_->Run());
  EXPECT_FALSE(guard_fired_);
  EXPECT_FALSE(second_ran);
}

TEST_F(EventLoopTest, CancelFromAnotherTimerCallbackStopsALaterTimer) {
  bool later_ran = false;
  TimerId later = 0;
  ArmGuard();
  loop_->ScheduleAfter(milliseconds(5), [&] { loop_->Cancel(later); });
  later = loop_->ScheduleAfter(milliseconds(15), [&] { later_ran = true; });
  loop_->ScheduleAfter(milliseconds(40), [&] { loop_->Stop(); });
  ASSERT_TRUE(loop_->Run());
  EXPECT_FALSE(later_ran);
}

TEST_F(EventLoopTest, CancelOfAFiredOrUnknownTimerDoesNothing) {
  int runs = 0;
  ArmGuard();
  TimerId first = 0;
  first = loop_->ScheduleAfter(milliseconds(1), [&] { ++runs; });
  loop_->ScheduleAfter(milliseconds(10), [&] {
    loop_->Cancel(first);       // already fired
    loop_->Cancel(first + 1000);  // never existed
    loop_->Cancel(0);
    loop_->ScheduleAfter(milliseconds(1), [&] {
      ++runs;
      loop_->Stop();
    });
  });
  ASSERT_TRUE(loop_->Run());
  EXPECT_FALSE(guard_fired_);
  EXPECT_EQ(runs, 2);
}

TEST_F(EventLoopTest, RepeatingTimerFiresEveryIntervalUntilItCancelsItself) {
  std::vector<Clock::time_point> fired;
  const Clock::time_point start = Clock::now();
  ArmGuard();
  TimerId every = kNoTimer;
  every = loop_->ScheduleEvery(milliseconds(10), [&] {
    fired.push_back(Clock::now());
    if (fired.size() == 4) loop_->Cancel(every);  // from inside its own callback
  });
  ASSERT_NE(every, kNoTimer);
  loop_->ScheduleAfter(milliseconds(120), [&] { loop_->Stop(); });
  ASSERT_TRUE(loop_->Run());
  EXPECT_FALSE(guard_fired_);
  ASSERT_EQ(fired.size(), 4u);  // none after the cancel
  EXPECT_GE(fired[0] - start, milliseconds(10));
  for (std::size_t i = 1; i < fired.size(); ++i) EXPECT_GE(fired[i] - fired[i - 1], milliseconds(10));
}

TEST_F(EventLoopTest, RepeatingTimerCancelledFromOutsideStopsAndItsIdIsNotReused) {
  int runs = 0;
  ArmGuard();
  const TimerId every = loop_->ScheduleEvery(milliseconds(5), [&] { ++runs; });
  loop_->ScheduleAfter(milliseconds(28), [&] {
    loop_->Cancel(every);
    const int at_cancel = runs;
    const TimerId next = loop_->ScheduleAfter(milliseconds(30), [&, at_cancel] {
      EXPECT_EQ(runs, at_cancel);
      loop_->Stop();
    });
    EXPECT_NE(next, every);
  });
  ASSERT_TRUE(loop_->Run());
  EXPECT_FALSE(guard_fired_);
  EXPECT_GE(runs, 2);
}

// A zero interval would run the callback on every turn, one core at 100%: the loop refuses
// it, loudly (abort) in a debug build.
TEST(EventLoopRepeating, AZeroOrNegativeIntervalIsRefused) {
  std::string error;
  auto loop = EventLoop::Create(&error);
  ASSERT_NE(loop, nullptr) << error;
  EXPECT_DEBUG_DEATH(
      {
        EXPECT_EQ(loop->ScheduleEvery(milliseconds(0), [] {}), kNoTimer);
        EXPECT_EQ(loop->ScheduleEvery(milliseconds(-5), [] {}), kNoTimer);
      },
      "interval above zero");
}

// A timer that keeps re-arming itself at zero delay must leave room for descriptors: what it
// schedules runs on the next turn, after epoll has been asked again.
TEST_F(EventLoopTest, ZeroDelayTimerFromTimerCallbackRunsOnNextTurnAndDoesNotStarveFds) {
  Pipe pipe;
  ASSERT_TRUE(pipe.ok());
  constexpr int kCap = 1000;
  int runs = 0;
  bool fd_seen = false;
  std::vector<uint64_t> turns_seen;
  std::function<void()> again = [&] {
    ++runs;
    turns_seen.push_back(loop_->turns());
    if (runs == 3) pipe.Write();
    if (fd_seen || runs >= kCap) {
      loop_->Stop();
      return;
    }
    loop_->ScheduleAfter(milliseconds(0), again);
  };
  ASSERT_TRUE(loop_->Watch(pipe.read_fd(), EPOLLIN, [&](uint32_t) {
    fd_seen = true;
    pipe.Drain();
  }));
  ArmGuard();
  loop_->ScheduleAfter(milliseconds(0), again);
  ASSERT_TRUE(loop_->Run());
  EXPECT_TRUE(fd_seen);
  EXPECT_LT(runs, 10) << "the pipe had to wait for " << runs << " timer runs";
  for (std::size_t i = 1; i < turns_seen.size(); ++i) {
    EXPECT_GT(turns_seen[i], turns_seen[i - 1]) << "timer run " << i << " happened in the same turn";
  }
}

// The same guarantee for a timer that re-arms itself with ScheduleAt at the loop's own time
// (a deadline that is, by then, already due).
TEST_F(EventLoopTest, TimerScheduledAtLoopNowFromTimerCallbackRunsOnNextTurn) {
  Pipe pipe;
  ASSERT_TRUE(pipe.ok());
  constexpr int kCap = 1000;
  int runs = 0;
  bool fd_seen = false;
  std::vector<uint64_t> turns_seen;
  std::function<void()> again = [&] {
    ++runs;
    turns_seen.push_back(loop_->turns());
    if (runs == 3) pipe.Write();
    if (fd_seen || runs >= kCap) {
      loop_->Stop();
      return;
    }
    loop_->ScheduleAt(loop_->now(), again);
  };
  ASSERT_TRUE(loop_->Watch(pipe.read_fd(), EPOLLIN, [&](uint32_t) {
    fd_seen = true;
    pipe.Drain();
  }));
  ArmGuard();
  loop_->ScheduleAfter(milliseconds(0), again);
  ASSERT_TRUE(loop_->Run());
  EXPECT_TRUE(fd_seen);
  EXPECT_LT(runs, 10) << "the pipe had to wait for " << runs << " timer runs";
  ASSERT_GE(turns_seen.size(), 2u);
  EXPECT_GT(turns_seen[1], turns_seen[0]) << "a due timer scheduled from a timer ran in the same pass";
}

TEST_F(EventLoopTest, WatchedPipeReportsReadableAndUnwatchSilencesIt) {
  Pipe pipe;
  ASSERT_TRUE(pipe.ok());
  int calls = 0;
  uint32_t events_seen = 0;
  ASSERT_TRUE(loop_->Watch(pipe.read_fd(), EPOLLIN, [&](uint32_t events) {
    ++calls;
    events_seen |= events;
    pipe.Drain();
  }));
  ASSERT_TRUE(pipe.Write());
  ASSERT_TRUE(test_support::RunLoopUntil(*loop_, [&] { return calls > 0; }, kGuard));
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(events_seen & EPOLLIN);

  loop_->Unwatch(pipe.read_fd());
  ASSERT_TRUE(pipe.Write());
  test_support::RunLoopFor(*loop_, milliseconds(50));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(pipe.Drain(), 1u);  // still unread: nobody was called for it
}

TEST_F(EventLoopTest, WatchAgainReplacesEventsAndCallback) {
  Pipe pipe;
  ASSERT_TRUE(pipe.ok());
  int first_calls = 0;
  int second_calls = 0;
  ASSERT_TRUE(loop_->Watch(pipe.write_fd(), EPOLLIN, [&](uint32_t) { ++first_calls; }));
  // The write end never becomes readable; switching to EPOLLOUT makes it ready at once.
  ASSERT_TRUE(loop_->Watch(pipe.write_fd(), EPOLLOUT, [&](uint32_t events) {
    if (events & EPOLLOUT) ++second_calls;
    loop_->Unwatch(pipe.write_fd());
  }));
  ASSERT_TRUE(test_support::RunLoopUntil(*loop_, [&] { return second_calls > 0; }, kGuard));
  EXPECT_EQ(first_calls, 0);
  EXPECT_EQ(second_calls, 1);
}

TEST_F(EventLoopTest, WatchOfABadDescriptorFailsWithAnError) {
  std::string error;
  EXPECT_FALSE(loop_->Watch(-1, EPOLLIN, [](uint32_t) {}, &error));
  EXPECT_FALSE(error.empty());
}

TEST_F(EventLoopTest, UnwatchFromInsideItsOwnCallback) {
  Pipe pipe;
  ASSERT_TRUE(pipe.ok());
  int calls = 0;
  ASSERT_TRUE(loop_->Watch(pipe.read_fd(), EPOLLIN, [&](uint32_t) {
    ++calls;
    loop_->Unwatch(pipe.read_fd());  // destroys this very callback's registration
    // The data stays unread: level-triggered epoll would call again if still watched.
  }));
  ASSERT_TRUE(pipe.Write());
  ASSERT_TRUE(test_support::RunLoopUntil(*loop_, [&] { return calls > 0; }, kGuard));
  test_support::RunLoopFor(*loop_, milliseconds(50));
  EXPECT_EQ(calls, 1);
}

TEST_F(EventLoopTest, UnwatchOfAnotherDescriptorReadyInTheSameTurnSkipsItsCallback) {
  Pipe a;
  Pipe b;
  ASSERT_TRUE(a.ok() && b.ok());
  int a_calls = 0;
  int b_calls = 0;
  // Both are readable before the loop turns, so epoll reports them together; whichever runs
  // first unwatches the other, whose pending callback must then not run.
  ASSERT_TRUE(loop_->Watch(a.read_fd(), EPOLLIN, [&](uint32_t) {
    ++a_calls;
    loop_->Unwatch(b.read_fd());
    loop_->Unwatch(a.read_fd());
  }));
  ASSERT_TRUE(loop_->Watch(b.read_fd(), EPOLLIN, [&](uint32_t) {
    ++b_calls;
    loop_->Unwatch(a.read_fd());
    loop_->Unwatch(b.read_fd());
  }));
  ASSERT_TRUE(a.Write());
  ASSERT_TRUE(b.Write());
  ASSERT_TRUE(test_support::RunLoopUntil(*loop_, [&] { return a_calls + b_calls > 0; }, kGuard));
  test_support::RunLoopFor(*loop_, milliseconds(30));
  EXPECT_EQ(a_calls + b_calls, 1);
}

TEST_F(EventLoopTest, StopFromADescriptorCallbackMakesRunReturn) {
  Pipe pipe;
  ASSERT_TRUE(pipe.ok());
  bool called = false;
  ASSERT_TRUE(loop_->Watch(pipe.read_fd(), EPOLLIN, [&](uint32_t) {
    called = true;
    pipe.Drain();
    loop_->Stop();
  }));
  ArmGuard();
  ASSERT_TRUE(pipe.Write());
  EXPECT_TRUE(loop_->Run());
  EXPECT_TRUE(called);
  EXPECT_FALSE(guard_fired_);
}

TEST_F(EventLoopTest, StopFromATimerLeavesTheRestForTheNextRun) {
  const Clock::time_point when = Clock::now() + milliseconds(5);
  bool second_ran = false;
  loop_->ScheduleAt(when, [&] { loop_->Stop(); });
  loop_->ScheduleAt(when, [&] { second_ran = true; });
  const TimerId guard = ArmGuard();
  EXPECT_TRUE(loop_->Run());
  EXPECT_FALSE(guard_fired_);
  EXPECT_FALSE(second_ran);
  // The timer that was due is not lost: the next Run fires it.
  EXPECT_TRUE(test_support::RunLoopUntil(*loop_, [&] { return second_ran; }, kGuard));
  loop_->Cancel(guard);
}

TEST_F(EventLoopTest, NowIsTheTurnStartAndAdvances) {
  const Clock::time_point created = loop_->now();
  const Clock::time_point base = Clock::now();
  std::vector<Clock::time_point> seen;
  Clock::time_point second_deadline{};
  ArmGuard();
  loop_->ScheduleAt(base + milliseconds(10), [&] {
    seen.push_back(loop_->now());
    // Scheduled from here, the second timer is due in a later turn however slow the machine.
    second_deadline = Clock::now() + milliseconds(10);
    loop_->ScheduleAt(second_deadline, [&] {
      seen.push_back(loop_->now());
      loop_->Stop();
    });
  });
  ASSERT_TRUE(loop_->Run());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_LE(created, base);
  EXPECT_GE(seen[0], base + milliseconds(10));  // a timer never sees a time before its deadline
  EXPECT_GE(seen[1], second_deadline);
  EXPECT_GT(seen[1], seen[0]);
  EXPECT_LE(seen[1], Clock::now());
}

TEST_F(EventLoopTest, TurnsCountsWakeUps) {
  EXPECT_EQ(loop_->turns(), 0u);
  std::vector<uint64_t> seen;
  ArmGuard();
  std::function<void()> tick = [&] {
    seen.push_back(loop_->turns());
    if (seen.size() == 3) {
      loop_->Stop();
      return;
    }
    loop_->ScheduleAfter(milliseconds(5), tick);
  };
  loop_->ScheduleAfter(milliseconds(5), tick);
  ASSERT_TRUE(loop_->Run());
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_GE(seen[0], 1u);
  EXPECT_GT(seen[1], seen[0]);
  EXPECT_GT(seen[2], seen[1]);
  EXPECT_EQ(loop_->turns(), seen[2]);
}

}  // namespace
}  // namespace sse2kafka::http

TEST(EventLoopStall, ObserverSeesATurnThatStartsLongAfterItsTimerWasDue) {
  std::string error;
  auto loop = sse2kafka::http::EventLoop::Create(&error);
  ASSERT_TRUE(loop) << error;
  std::vector<std::chrono::milliseconds> stalls;
  std::vector<std::string> order;
  loop->SetStallObserver(std::chrono::milliseconds(100), [&](sse2kafka::http::Clock::duration delay) {
    stalls.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(delay));
    order.push_back("observer");
  });
  // A callback that blocks stands in for a suspended process: the next timer comes late.
  loop->ScheduleAfter(std::chrono::milliseconds(1), [&] {
    loop->ScheduleAfter(std::chrono::milliseconds(5), [&] {
      order.push_back("late timer");
      loop->ScheduleAfter(std::chrono::milliseconds(5), [&] { loop->Stop(); });
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  });
  ASSERT_TRUE(loop->Run());
  ASSERT_EQ(stalls.size(), 1u);
  EXPECT_GE(stalls[0].count(), 250);
  EXPECT_EQ(order, (std::vector<std::string>{"observer", "late timer"}));
}

TEST(EventLoopStall, PunctualTurnsAndAZeroThresholdReportNothing) {
  std::string error;
  auto loop = sse2kafka::http::EventLoop::Create(&error);
  ASSERT_TRUE(loop) << error;
  int stalls = 0;
  loop->SetStallObserver(std::chrono::milliseconds(200), [&](auto) { ++stalls; });
  int ticks = 0;
  std::function<void()> tick = [&] {
    if (++ticks == 5) {
      loop->SetStallObserver(std::chrono::milliseconds(0), [&](auto) { ++stalls; });
      loop->ScheduleAfter(std::chrono::milliseconds(1), [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        loop->ScheduleAfter(std::chrono::milliseconds(1), [&] { loop->Stop(); });
      });
      return;
    }
    loop->ScheduleAfter(std::chrono::milliseconds(2), tick);
  };
  loop->ScheduleAfter(std::chrono::milliseconds(2), tick);
  ASSERT_TRUE(loop->Run());
  EXPECT_EQ(stalls, 0);
}
