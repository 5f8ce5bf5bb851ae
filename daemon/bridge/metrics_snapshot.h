// Copies the bridge's counters into an ops::MetricsSnapshot, on the loop thread, so that the
// admin server's thread can render /metrics and /streams without touching loop-owned objects.
#pragma once

#include "bridge/bridge.h"
#include "ops/metrics.h"

namespace sse2kafka::bridge {

// A snapshot of every configured stream and of the process, taken now.
ops::MetricsSnapshot TakeMetricsSnapshot(const Bridge& bridge, uint64_t loop_turns, bool stopping);

}  // namespace sse2kafka::bridge
