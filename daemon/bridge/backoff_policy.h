// How long a stream waits before it reconnects (interface.md "Reconnection").
//
// A pure object: the caller passes the current time and a source of uniform random numbers, and
// the policy answers with a wait; it never sleeps or reads a clock, so every rule is unit-tested.
//
// The rule: the base delay is the server's last `retry:` when it sent one, else
// reconnect.initial_delay; a base below reconnect.min_delay counts as min_delay. After n
// consecutive failed attempts the wait is
//   d = min(base * 2^(n-1), max(max_delay, base)), drawn uniformly from [d/2, d]
// (whole milliseconds, both ends included), and never less than min_delay: that floor holds
// for every wait this policy gives, whatever the config or the server says, so that a stream
// never hammers someone else's server. The jitter keeps many streams that failed together (an
// upstream restart) from reconnecting in lockstep. A connection that stayed open for
// reconnect.reset_after, measured from OnOpened to the event that ended it, resets n to 0 before
// the current outcome is counted, so a feed that works for hours and then blips starts over at
// the base delay rather than at max_delay. A shorter connection, even one that delivered
// events or ended normally, counts as a failed attempt: a server that answers and hangs up at
// once is retried with growing waits.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>

#include "config/config.h"

namespace sse2kafka::bridge {

class BackoffPolicy {
 public:
  using Duration = config::Duration;
  using TimePoint = std::chrono::steady_clock::time_point;

  // `uniform01` returns numbers uniformly distributed in [0, 1); values outside are clamped.
  BackoffPolicy(const config::ReconnectConfig& config, std::function<double()> uniform01);

  // A server's `retry:` field: the base delay from now on, across reconnects, until the next one.
  // Negative values count as 0.
  void SetServerRetry(Duration retry);

  // The server's retry when it sent one, else initial_delay (before the floor applies).
  Duration base() const;

  // The stream opened (200 with text/event-stream). Starts the reset_after clock.
  void OnOpened(TimePoint now);

  // An attempt failed: network error, bad status, wrong content type, or an open stream that
  // broke with an error. Counts the failure and returns the jittered wait.
  Duration OnFailure(TimePoint now);

  // The server ended an open stream normally. After a connection that lived for reset_after:
  // resets the count and returns exactly max(base(), min_delay). After a shorter one: counts a
  // failure and returns what OnFailure would.
  Duration OnNormalEnd(TimePoint now);

  // 401 or 403: counts as a failure; returns exactly max(max_delay, base(), min_delay).
  Duration OnAuthFailure(TimePoint now);

  // 429 or 503 with a Retry-After of `server_value`: counts as a failure; returns exactly
  // min(server_value, max_retry_after) (negative values count as 0), at least min_delay.
  Duration OnRetryAfter(TimePoint now, Duration server_value);

  // True when `retry` (a server's `retry:`) is below the floor, so waits will not follow it.
  bool BelowFloor(Duration retry) const { return retry < config_.min_delay; }
  Duration min_delay() const { return config_.min_delay; }

  // Failed attempts since the last reset (saturates at INT_MAX).
  int consecutive_failures() const { return failures_; }

 private:
  // Applies reset_after to a connection that is ending, and forgets its open time. True when
  // the connection lived long enough to reset the count.
  bool EndConnection(TimePoint now);
  void CountFailure();
  // base() raised to the floor.
  Duration FlooredBase() const;
  // min(base * 2^(n-1), max(max_delay, base)) for n = failures_ >= 1, without overflow.
  Duration CappedExponential() const;
  Duration Jitter(Duration d) const;
  Duration Floored(Duration wait) const { return std::max(wait, config_.min_delay); }

  config::ReconnectConfig config_;
  std::function<double()> uniform01_;
  std::optional<Duration> server_retry_;
  std::optional<TimePoint> opened_at_;
  int failures_ = 0;
};

}  // namespace sse2kafka::bridge
