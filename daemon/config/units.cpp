// Durations and sizes as written in the config.
#include <charconv>
#include <cstdint>
#include <limits>

#include "config/loader.h"

namespace sse2kafka::config {

namespace {

// Splits "123unit" into its leading decimal number and the rest. nullopt when there are no
// digits or the number does not fit in 64 bits.
std::optional<std::pair<uint64_t, std::string_view>> SplitNumber(std::string_view text) {
  uint64_t number = 0;
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, number);
  if (error != std::errc() || stop == text.data()) return std::nullopt;
  return std::make_pair(number, std::string_view(stop, static_cast<std::size_t>(end - stop)));
}

// number * factor, or nullopt when that exceeds `limit`.
std::optional<uint64_t> Scaled(uint64_t number, uint64_t factor, uint64_t limit) {
  if (number > limit / factor) return std::nullopt;
  return number * factor;
}

}  // namespace

std::optional<Duration> ParseDuration(std::string_view text) {
  if (text == "0") return Duration{0};
  const auto split = SplitNumber(text);
  if (!split) return std::nullopt;
  const auto [number, unit] = *split;
  uint64_t factor = 0;
  if (unit == "ms") {
    factor = 1;
  } else if (unit == "s") {
    factor = 1000;
  } else if (unit == "m") {
    factor = 60 * 1000;
  } else if (unit == "h") {
    factor = 60 * 60 * 1000;
  } else {
    return std::nullopt;
  }
  const auto millis =
      Scaled(number, factor, static_cast<uint64_t>(std::numeric_limits<Duration::rep>::max()));
  if (!millis) return std::nullopt;
  return Duration{static_cast<Duration::rep>(*millis)};
}

std::optional<std::size_t> ParseSize(std::string_view text) {
  const auto split = SplitNumber(text);
  if (!split) return std::nullopt;
  const auto [number, unit] = *split;
  uint64_t factor = 0;
  if (unit.empty() || unit == "B") {
    factor = 1;
  } else if (unit == "KiB") {
    factor = uint64_t{1} << 10;
  } else if (unit == "MiB") {
    factor = uint64_t{1} << 20;
  } else if (unit == "GiB") {
    factor = uint64_t{1} << 30;
  } else {
    return std::nullopt;
  }
  const auto bytes = Scaled(number, factor, std::numeric_limits<std::size_t>::max());
  if (!bytes) return std::nullopt;
  return static_cast<std::size_t>(*bytes);
}

}  // namespace sse2kafka::config
