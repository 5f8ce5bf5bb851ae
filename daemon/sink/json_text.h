// Text written into Kafka records: JSON strings and RFC 3339 timestamps, appended to a caller's
// reused std::string so that steady-state use allocates nothing.
//
// The JSON writers always produce valid JSON, whatever bytes they are given: valid UTF-8 is
// copied through unchanged (U+FFFD, non-BMP characters, U+2028/U+2029 included), and every
// ill-formed UTF-8 sequence becomes one U+FFFD, the way the WHATWG UTF-8 decoder replaces a
// maximal ill-formed subpart. So for valid UTF-8 input, parsing the output gives back the input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sse2kafka::sink {

// Appends `text` as a JSON string, quotes included. Escapes `"` and `\` with a backslash,
// BS, FF, LF, CR and TAB as \b \f \n \r \t, and every other byte below 0x20 as \u00XX
// (lowercase hex). Nothing else is escaped.
void AppendJsonString(std::string& out, std::string_view text);

// Like AppendJsonString without the surrounding quotes, for building one JSON string out of
// several pieces. Each piece is checked for UTF-8 on its own, so split pieces only at character
// boundaries.
void AppendJsonStringContent(std::string& out, std::string_view text);

// Length of an RFC 3339 timestamp written by AppendRfc3339Millis: "YYYY-MM-DDTHH:MM:SS.mmmZ".
inline constexpr std::size_t kRfc3339MillisSize = 24;

// Appends the UTC time `unix_ms` (milliseconds since 1970-01-01T00:00:00Z, negative before it)
// as RFC 3339 with exactly three fractional digits and a "Z", e.g. 2026-11-23T21:07:52.123Z.
// RFC 3339 has four-digit years only: times before year 0000 or after 9999 are clamped to
// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
void AppendRfc3339Millis(std::string& out, int64_t unix_ms);

}  // namespace sse2kafka::sink
