#include "bridge/backoff_policy.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace sse2kafka::bridge {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;
using TimePoint = BackoffPolicy::TimePoint;

const double kAlmostOne = std::nextafter(1.0, 0.0);

// The formula alone: no floor (see the Floor tests for min_delay).
config::ReconnectConfig DefaultConfig() {
  config::ReconnectConfig config;
  config.min_delay = milliseconds(0);
  config.initial_delay = milliseconds(1000);
  config.max_delay = milliseconds(30000);
  config.reset_after = milliseconds(60000);
  config.max_retry_after = milliseconds(600000);
  return config;
}

// A policy whose random draws are whatever the test last put into `draw`.
struct ScriptedPolicy {
  explicit ScriptedPolicy(const config::ReconnectConfig& config = DefaultConfig())
      : policy(config, [this] { return draw; }) {}
  ScriptedPolicy(const ScriptedPolicy&) = delete;
  ScriptedPolicy& operator=(const ScriptedPolicy&) = delete;

  double draw = 0.0;
  BackoffPolicy policy;
};

const TimePoint kStart{hours(1000)};

TEST(BackoffPolicyTest, BaseIsInitialDelayUntilTheServerSendsRetry) {
  ScriptedPolicy p;
  EXPECT_EQ(p.policy.base(), milliseconds(1000));
  EXPECT_EQ(p.policy.consecutive_failures(), 0);
}

TEST(BackoffPolicyTest, ExactBoundsForTheFirstTwelveFailures) {
  // d = min(1000 * 2^(n-1), 30000); the wait is drawn from [d/2, d].
  const std::vector<int64_t> expected_d = {1000,  2000,  4000,  8000,  16000, 30000,
                                           30000, 30000, 30000, 30000, 30000, 30000};
  ScriptedPolicy low;
  ScriptedPolicy high;
  high.draw = kAlmostOne;
  for (int n = 1; n <= 12; ++n) {
    SCOPED_TRACE(n);
    const int64_t d = expected_d[static_cast<std::size_t>(n - 1)];
    EXPECT_EQ(low.policy.OnFailure(kStart), milliseconds(d / 2));
    EXPECT_EQ(high.policy.OnFailure(kStart), milliseconds(d));
    EXPECT_EQ(low.policy.consecutive_failures(), n);
  }
}

TEST(BackoffPolicyTest, OddDelaysNeverGoBelowHalf) {
  config::ReconnectConfig config = DefaultConfig();
  config.initial_delay = milliseconds(3);
  ScriptedPolicy p(config);
  p.draw = 0.0;
  EXPECT_EQ(p.policy.OnFailure(kStart), milliseconds(2));  // ceil(3 / 2)
  ScriptedPolicy q(config);
  q.draw = 0.5;  // [2, 3] has two values; the upper half of the draws gives the upper one
  EXPECT_EQ(q.policy.OnFailure(kStart), milliseconds(3));
  ScriptedPolicy r(config);
  r.draw = 0.49;
  EXPECT_EQ(r.policy.OnFailure(kStart), milliseconds(2));
}

TEST(BackoffPolicyTest, DrawsOutsideTheUnitIntervalAreClamped) {
  for (double bad : {1.0, 2.5, std::numeric_limits<double>::infinity()}) {
    ScriptedPolicy p;
    p.draw = bad;
    EXPECT_EQ(p.policy.OnFailure(kStart), milliseconds(1000)) << bad;
  }
  for (double bad : {-0.5, -std::numeric_limits<double>::infinity(), std::nan("")}) {
    ScriptedPolicy p;
    p.draw = bad;
    EXPECT_EQ(p.policy.OnFailure(kStart), milliseconds(500)) << bad;
  }
}

TEST(BackoffPolicyTest, JitterIsSpreadOverTheWholeRange) {
  std::mt19937_64 generator(20240611);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  constexpr int kDraws = 20000;
  int64_t lowest = std::numeric_limits<int64_t>::max();
  int64_t highest = 0;
  double sum = 0;
  int lower_half = 0;
  for (int i = 0; i < kDraws; ++i) {
    BackoffPolicy policy(DefaultConfig(), [&] { return uniform(generator); });
    policy.OnFailure(kStart);
    policy.OnFailure(kStart);
    const int64_t wait = policy.OnFailure(kStart).count();  // n = 3: d = 4000
    ASSERT_GE(wait, 2000);
    ASSERT_LE(wait, 4000);
    lowest = std::min(lowest, wait);
    highest = std::max(highest, wait);
    sum += static_cast<double>(wait);
    if (wait < 3000) ++lower_half;
  }
  EXPECT_LT(lowest, 2010);
  EXPECT_GT(highest, 3990);
  EXPECT_NEAR(sum / kDraws, 3000.0, 25.0);
  EXPECT_NEAR(lower_half, kDraws / 2, kDraws / 20);
}

TEST(BackoffPolicyTest, ServerRetryBecomesTheBaseAndPersists) {
  ScriptedPolicy p;
  p.policy.SetServerRetry(milliseconds(5000));
  EXPECT_EQ(p.policy.base(), milliseconds(5000));
  EXPECT_EQ(p.policy.OnFailure(kStart), milliseconds(2500));  // n = 1: d = 5000
  EXPECT_EQ(p.policy.OnFailure(kStart), milliseconds(5000));  // n = 2: d = 10000

  // Reconnects, normal ends and long-lived connections do not forget it.
  p.policy.OnOpened(kStart);
  EXPECT_EQ(p.policy.OnNormalEnd(kStart + hours(2)), milliseconds(5000));
  EXPECT_EQ(p.policy.base(), milliseconds(5000));
  p.policy.OnOpened(kStart + hours(3));
  EXPECT_EQ(p.policy.OnFailure(kStart + hours(4)), milliseconds(2500));

  p.policy.SetServerRetry(milliseconds(200));
  EXPECT_EQ(p.policy.base(), milliseconds(200));
  p.policy.OnOpened(kStart + hours(5));
  EXPECT_EQ(p.policy.OnNormalEnd(kStart + hours(6)), milliseconds(200));
}

TEST(BackoffPolicyTest, NegativeServerRetryCountsAsZero) {
  ScriptedPolicy p;
  p.policy.SetServerRetry(milliseconds(-5));
  EXPECT_EQ(p.policy.base(), milliseconds(0));
  EXPECT_EQ(p.policy.OnFailure(kStart), milliseconds(0));
}

TEST(BackoffPolicyTest, LongConnectionResetsTheFailureCount) {
  ScriptedPolicy p;
  for (int i = 0; i < 5; ++i) p.policy.OnFailure(kStart);
  EXPECT_EQ(p.policy.consecutive_failures(), 5);
  p.policy.OnOpened(kStart);
  EXPECT_EQ(p.policy.OnFailure(kStart + seconds(60)), milliseconds(500));  // counted as the first
  EXPECT_EQ(p.policy.consecutive_failures(), 1);
}

TEST(BackoffPolicyTest, ShortConnectionDoesNotReset) {
  ScriptedPolicy p;
  for (int i = 0; i < 5; ++i) p.policy.OnFailure(kStart);
  p.policy.OnOpened(kStart);
  EXPECT_EQ(p.policy.OnFailure(kStart + milliseconds(59999)), milliseconds(15000));  // n = 6: d = 30000
  EXPECT_EQ(p.policy.consecutive_failures(), 6);
}

TEST(BackoffPolicyTest, ResetNeedsAnOpenConnection) {
  ScriptedPolicy p;
  p.policy.OnFailure(kStart);
  // Hours between failed attempts are not a connection that stayed open.
  p.policy.OnFailure(kStart + hours(5));
  EXPECT_EQ(p.policy.consecutive_failures(), 2);
  // A connection resets once; later failures without a new OnOpened count up again.
  p.policy.OnOpened(kStart + hours(6));
  p.policy.OnFailure(kStart + hours(7));
  EXPECT_EQ(p.policy.consecutive_failures(), 1);
  p.policy.OnFailure(kStart + hours(8));
  EXPECT_EQ(p.policy.consecutive_failures(), 2);
}

TEST(BackoffPolicyTest, NormalEndAfterALongConnectionWaitsExactlyTheBaseAndResets) {
  ScriptedPolicy p;
  p.draw = kAlmostOne;
  for (int i = 0; i < 3; ++i) p.policy.OnFailure(kStart);
  p.policy.OnOpened(kStart + seconds(20));
  EXPECT_EQ(p.policy.OnNormalEnd(kStart + seconds(80)), milliseconds(1000));
  EXPECT_EQ(p.policy.consecutive_failures(), 0);
  EXPECT_EQ(p.policy.OnFailure(kStart + seconds(81)), milliseconds(1000));
}

// A server that answers and hangs up at once (or a proxy that ends every response) must not
// be reopened at the base delay forever: a short normal end counts as a failed attempt.
TEST(BackoffPolicyTest, ShortNormalEndCountsAsAFailureSoWaitsGrow) {
  ScriptedPolicy p;
  p.draw = kAlmostOne;
  const std::vector<int64_t> expected = {1000, 2000, 4000, 8000, 16000, 30000, 30000};
  TimePoint now = kStart;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    p.policy.OnOpened(now);
    now += seconds(1);
    EXPECT_EQ(p.policy.OnNormalEnd(now), milliseconds(expected[i])) << i;
    EXPECT_EQ(p.policy.consecutive_failures(), static_cast<int>(i) + 1);
  }
}

TEST(BackoffPolicyFloor, NoWaitIsShorterThanMinDelayWhateverTheCause) {
  config::ReconnectConfig config = DefaultConfig();
  config.min_delay = milliseconds(500);
  config.initial_delay = milliseconds(0);
  config.max_delay = milliseconds(0);
  ScriptedPolicy p(config);
  p.draw = 0.0;
  for (int i = 0; i < 5; ++i) EXPECT_GE(p.policy.OnFailure(kStart), milliseconds(500)) << i;
  EXPECT_EQ(p.policy.OnAuthFailure(kStart), milliseconds(500));
  EXPECT_EQ(p.policy.OnRetryAfter(kStart, milliseconds(0)), milliseconds(500));
  p.policy.SetServerRetry(milliseconds(1));
  p.policy.OnOpened(kStart);
  EXPECT_EQ(p.policy.OnNormalEnd(kStart + hours(1)), milliseconds(500));
  p.policy.OnOpened(kStart + hours(1));
  EXPECT_GE(p.policy.OnNormalEnd(kStart + hours(1) + milliseconds(3)), milliseconds(500));
}

// The floor is applied after the jitter: the lower half of [d/2, d] would go under it.
TEST(BackoffPolicyFloor, AppliesAfterTheJitterAndRaisesALowBase) {
  config::ReconnectConfig config = DefaultConfig();
  config.min_delay = milliseconds(500);
  config.initial_delay = milliseconds(100);  // below the floor: counts as 500
  ScriptedPolicy low(config);
  ScriptedPolicy high(config);
  high.draw = kAlmostOne;
  const std::vector<int64_t> expected_d = {500, 1000, 2000, 4000};
  for (std::size_t i = 0; i < expected_d.size(); ++i) {
    EXPECT_EQ(low.policy.OnFailure(kStart), milliseconds(std::max<int64_t>(expected_d[i] / 2, 500))) << i;
    EXPECT_EQ(high.policy.OnFailure(kStart), milliseconds(expected_d[i])) << i;
  }
  EXPECT_TRUE(low.policy.BelowFloor(milliseconds(499)));
  EXPECT_FALSE(low.policy.BelowFloor(milliseconds(500)));
}

TEST(BackoffPolicyFloor, AZeroFloorLeavesTheFormulaAsItIs) {
  ScriptedPolicy p;  // DefaultConfig: min_delay 0
  p.policy.SetServerRetry(milliseconds(0));
  EXPECT_EQ(p.policy.OnFailure(kStart), milliseconds(0));
}

TEST(BackoffPolicyTest, BaseAboveMaxDelayIsTheCap) {
  ScriptedPolicy low;
  ScriptedPolicy high;
  high.draw = kAlmostOne;
  low.policy.SetServerRetry(milliseconds(60000));
  high.policy.SetServerRetry(milliseconds(60000));
  for (int n = 1; n <= 6; ++n) {
    EXPECT_EQ(low.policy.OnFailure(kStart), milliseconds(30000)) << n;
    EXPECT_EQ(high.policy.OnFailure(kStart), milliseconds(60000)) << n;
  }
  EXPECT_EQ(high.policy.OnAuthFailure(kStart), milliseconds(60000));
}

TEST(BackoffPolicyTest, AuthFailureWaitsMaxDelayAndCounts) {
  ScriptedPolicy p;
  EXPECT_EQ(p.policy.OnAuthFailure(kStart), milliseconds(30000));
  EXPECT_EQ(p.policy.OnAuthFailure(kStart), milliseconds(30000));
  EXPECT_EQ(p.policy.consecutive_failures(), 2);
  EXPECT_EQ(p.policy.OnFailure(kStart), milliseconds(2000));  // n = 3: d = 4000
}

TEST(BackoffPolicyTest, RetryAfterIsHonouredUpToItsCapAndCounts) {
  ScriptedPolicy p;
  EXPECT_EQ(p.policy.OnRetryAfter(kStart, seconds(120)), milliseconds(120000));
  EXPECT_EQ(p.policy.OnRetryAfter(kStart, std::chrono::minutes(20)), milliseconds(600000));
  EXPECT_EQ(p.policy.OnRetryAfter(kStart, milliseconds(0)), milliseconds(0));
  EXPECT_EQ(p.policy.OnRetryAfter(kStart, milliseconds(-7)), milliseconds(0));
  EXPECT_EQ(p.policy.consecutive_failures(), 4);
  EXPECT_EQ(p.policy.OnFailure(kStart), milliseconds(8000));  // n = 5: d = 16000
}

TEST(BackoffPolicyTest, RetryAfterAfterALongConnectionResetsFirst) {
  ScriptedPolicy p;
  for (int i = 0; i < 4; ++i) p.policy.OnFailure(kStart);
  p.policy.OnOpened(kStart);
  EXPECT_EQ(p.policy.OnRetryAfter(kStart + hours(1), seconds(3)), milliseconds(3000));
  EXPECT_EQ(p.policy.consecutive_failures(), 1);
}

TEST(BackoffPolicyTest, HugeFailureCountsStayAtTheCap) {
  ScriptedPolicy low;
  ScriptedPolicy high;
  high.draw = kAlmostOne;
  for (int n = 1; n <= 200; ++n) {
    const auto a = low.policy.OnFailure(kStart);
    const auto b = high.policy.OnFailure(kStart);
    if (n >= 6) {
      ASSERT_EQ(a, milliseconds(15000)) << n;
      ASSERT_EQ(b, milliseconds(30000)) << n;
    }
  }
  EXPECT_EQ(low.policy.consecutive_failures(), 200);
}

TEST(BackoffPolicyTest, HugeBaseDoesNotOverflow) {
  ScriptedPolicy low;
  ScriptedPolicy high;
  high.draw = kAlmostOne;
  const milliseconds huge = milliseconds::max();
  low.policy.SetServerRetry(huge);
  high.policy.SetServerRetry(huge);
  // Doubles cannot hold every millisecond near 2^63: a draw just below 1 lands within 2^10 of d.
  const int64_t slack = 1024;
  for (int n = 1; n <= 70; ++n) {
    const int64_t wait = high.policy.OnFailure(kStart).count();
    ASSERT_LE(wait, huge.count()) << n;
    ASSERT_GE(wait, huge.count() - slack) << n;
    ASSERT_EQ(low.policy.OnFailure(kStart), milliseconds(huge.count() / 2 + 1)) << n;
  }
  // A large base that doubles past 2^63 without being the cap itself.
  config::ReconnectConfig config = DefaultConfig();
  config.max_delay = milliseconds::max();
  ScriptedPolicy doubling(config);
  doubling.draw = kAlmostOne;
  doubling.policy.SetServerRetry(milliseconds(int64_t{1} << 40));
  int64_t previous = 0;
  for (int n = 1; n <= 70; ++n) {
    const int64_t wait = doubling.policy.OnFailure(kStart).count();
    ASSERT_GE(wait, previous) << n;
    previous = wait;
  }
  EXPECT_GE(previous, milliseconds::max().count() - slack);
}

}  // namespace
}  // namespace sse2kafka::bridge
