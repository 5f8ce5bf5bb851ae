// The record batch limit of the topics the bridge writes to, read from the brokers.
//
// A broker refuses a record batch larger than its topic's max.message.bytes as a whole
// (MESSAGE_TOO_LARGE), and librdkafka does not split a refused batch: every record of it fails
// with MSG_SIZE_TOO_LARGE, although each may be far below the limit. The producer's batch.size
// (librdkafka's default 1,000,000 bytes) must therefore stay below the smallest limit of the
// topics it writes to; then a batch fails only when one record alone is over the limit, and that
// record is the one reported. Only topics whose limit was lowered below the default need it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sink/producer_properties.h"

namespace sse2kafka::sink {

// Reads max.message.bytes of `topics` with one DescribeConfigs request through a short-lived
// client of `bootstrap_servers` with `properties` (the connection-level ones). Topics that do
// not exist are left out (they get the broker's default when created), as is everything when the
// brokers cannot describe configs at all (the embedded test cluster). nullopt and *error when no
// broker answers within `timeout`; never blocks much longer.
std::optional<std::map<std::string, int64_t>> ReadMaxMessageBytes(const std::string& bootstrap_servers,
                                                                  const PropertyList& properties,
                                                                  const std::vector<std::string>& topics,
                                                                  std::chrono::milliseconds timeout,
                                                                  std::string* error);

// The batch.size that keeps every batch within the smallest of `limits`, with room for the
// batch framing librdkafka and the broker count differently; nullopt when no limit is below
// librdkafka's default batch.size (nothing to change).
std::optional<std::size_t> BatchSizeWithin(const std::map<std::string, int64_t>& limits);

}  // namespace sse2kafka::sink
