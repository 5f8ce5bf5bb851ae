#include "bridge/backoff_policy.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <utility>

namespace sse2kafka::bridge {

BackoffPolicy::BackoffPolicy(const config::ReconnectConfig& config, std::function<double()> uniform01)
    : config_(config), uniform01_(std::move(uniform01)) {}

void BackoffPolicy::SetServerRetry(Duration retry) { server_retry_ = std::max(retry, Duration::zero()); }

BackoffPolicy::Duration BackoffPolicy::base() const {
  return server_retry_.value_or(std::max(config_.initial_delay, Duration::zero()));
}

void BackoffPolicy::OnOpened(TimePoint now) { opened_at_ = now; }

BackoffPolicy::Duration BackoffPolicy::OnFailure(TimePoint now) {
  EndConnection(now);
  CountFailure();
  return Floored(Jitter(CappedExponential()));
}

BackoffPolicy::Duration BackoffPolicy::OnNormalEnd(TimePoint now) {
  if (EndConnection(now)) return FlooredBase();
  CountFailure();
  return Floored(Jitter(CappedExponential()));
}

BackoffPolicy::Duration BackoffPolicy::OnAuthFailure(TimePoint now) {
  EndConnection(now);
  CountFailure();
  return Floored(std::max(config_.max_delay, base()));
}

BackoffPolicy::Duration BackoffPolicy::OnRetryAfter(TimePoint now, Duration server_value) {
  EndConnection(now);
  CountFailure();
  return Floored(std::clamp(server_value, Duration::zero(), std::max(config_.max_retry_after, Duration::zero())));
}

bool BackoffPolicy::EndConnection(TimePoint now) {
  const bool lived = opened_at_ && now - *opened_at_ >= config_.reset_after;
  if (lived) failures_ = 0;
  opened_at_.reset();
  return lived;
}

BackoffPolicy::Duration BackoffPolicy::FlooredBase() const { return Floored(base()); }

void BackoffPolicy::CountFailure() {
  if (failures_ < INT_MAX) ++failures_;
}

BackoffPolicy::Duration BackoffPolicy::CappedExponential() const {
  const int64_t b = FlooredBase().count();
  const int64_t cap = std::max<int64_t>(config_.max_delay.count(), b);
  const int shift = failures_ - 1;
  // b << shift stays within cap exactly when b <= cap >> shift; past 62 bits any b > 0 exceeds it.
  if (b == 0) return Duration::zero();
  if (shift >= 63 || b > (cap >> shift)) return Duration(cap);
  return Duration(b << shift);
}

BackoffPolicy::Duration BackoffPolicy::Jitter(Duration d) const {
  const int64_t high = d.count();
  const int64_t low = high / 2 + high % 2;  // ceil(d/2), so the wait is never below half of d
  const int64_t span = high - low;          // the result is low + [0, span]
  double u = uniform01_();
  if (!(u >= 0.0)) u = 0.0;  // also NaN
  if (u >= 1.0) u = std::nextafter(1.0, 0.0);
  const double offset = std::floor(u * (static_cast<double>(span) + 1.0));
  const int64_t step = offset >= static_cast<double>(span) ? span : static_cast<int64_t>(offset);
  return Duration(low + step);
}

}  // namespace sse2kafka::bridge
