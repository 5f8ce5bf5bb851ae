// Tests of the JSON string writer and the RFC 3339 formatter used in Kafka record values.
// nlohmann_json is the independent oracle: its parser proves the output is JSON, and its
// serialiser (which escapes the same minimal set) gives the expected text for valid UTF-8.
#include "sink/json_text.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace sse2kafka::sink {
namespace {

std::string Quoted(std::string_view text) {
  std::string out;
  AppendJsonString(out, text);
  return out;
}

// What the reference serialiser writes for valid UTF-8 text.
std::string ReferenceQuoted(const std::string& text) { return nlohmann::json(text).dump(); }

// Parses `json` (which must be one JSON string) and returns its value.
std::string Decoded(const std::string& json) {
  EXPECT_TRUE(nlohmann::json::accept(json)) << json;
  return nlohmann::json::parse(json).get<std::string>();
}

struct EscapeCase {
  std::string input;
  std::string expected;
};

TEST(JsonStringTest, EscapesExactlyWhatJsonRequires) {
  const std::vector<EscapeCase> cases = {
      {"", R"("")"},
      {"plain text", R"("plain text")"},
      {"say \"hi\"", R"("say \"hi\"")"},
      {"back\\slash", R"("back\\slash")"},
      {"a/b", R"("a/b")"},  // solidus needs no escape
      {"\b\f\n\r\t", R"("\b\f\n\r\t")"},
      {std::string("\0", 1), R"("\u0000")"},
      {"\x01\x1f", R"("\u0001\u001f")"},
      {"\x0b", R"("\u000b")"},
      {"\x7f", "\"\x7f\""},                                // DEL is allowed as it is
      {"\xEF\xBF\xBD", "\"\xEF\xBF\xBD\""},                // U+FFFD passes through
      {"\xF0\x9F\x98\x80 ok", "\"\xF0\x9F\x98\x80 ok\""},  // U+1F600, outside the BMP
      {"\xE2\x80\xA8\xE2\x80\xA9", "\"\xE2\x80\xA8\xE2\x80\xA9\""},  // U+2028, U+2029
      {"\xC3\xA9t\xC3\xA9 \xE4\xB8\xAD", "\"\xC3\xA9t\xC3\xA9 \xE4\xB8\xAD\""},
      {"\xF4\x8F\xBF\xBF", "\"\xF4\x8F\xBF\xBF\""},        // U+10FFFF, the last code point
  };
  for (const EscapeCase& c : cases) {
    const std::string out = Quoted(c.input);
    EXPECT_EQ(out, c.expected) << "input bytes: " << c.input.size();
    EXPECT_EQ(Decoded(out), c.input);
  }
}

TEST(JsonStringTest, EveryControlCharacterRoundTrips) {
  for (int c = 0; c < 0x20; ++c) {
    const std::string input = "x" + std::string(1, static_cast<char>(c)) + "y";
    const std::string out = Quoted(input);
    EXPECT_EQ(out, ReferenceQuoted(input)) << "byte " << c;
    EXPECT_EQ(Decoded(out), input) << "byte " << c;
  }
}

TEST(JsonStringTest, ContentAppendsWithoutQuotes) {
  std::string out = "prefix:";
  AppendJsonStringContent(out, "a\"b");
  AppendJsonStringContent(out, "\n");
  EXPECT_EQ(out, "prefix:a\\\"b\\n");
}

TEST(JsonStringTest, IllFormedUtf8BecomesReplacementCharacters) {
  const std::string fffd = "\xEF\xBF\xBD";
  const std::vector<EscapeCase> cases = {
      {"\x80", fffd},                         // lone continuation byte
      {"\xFF", fffd},                         // never valid
      {"a\xC3", "a" + fffd},                  // truncated at the end
      {"\xE2\x82" "A", fffd + "A"},           // truncated, then ASCII decoded on its own
      {"\xC0\x80", fffd + fffd},              // overlong NUL: C0 never starts a sequence
      {"\xE0\x80\x80", fffd + fffd + fffd},   // overlong three-byte form
      {"\xED\xA0\x80", fffd + fffd + fffd},   // UTF-16 surrogate D800
      {"\xF4\x90\x80\x80", fffd + fffd + fffd + fffd},  // past U+10FFFF
      {"\xF0\x9F\x98", fffd},                 // emoji cut short: one maximal subpart
      {"\xF0\x9F\x98\"", fffd + "\\\""},      // ... followed by a quote that still escapes
  };
  for (const EscapeCase& c : cases) {
    const std::string out = Quoted(c.input);
    EXPECT_EQ(out, "\"" + c.expected + "\"");
    EXPECT_TRUE(nlohmann::json::accept(out));
  }
}

// The writer skips eight plain bytes at a time: put every kind of special byte at every offset
// of a word, in strings long enough for the fast path, and compare with the reference.
TEST(JsonStringTest, SpecialBytesAtEveryOffsetMatchReference) {
  const std::vector<std::string> specials = {"\"", "\\", "\n", std::string("\0", 1), "\x1f",
                                             "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
  for (const std::string& special : specials) {
    for (std::size_t offset = 0; offset < 24; ++offset) {
      std::string input(offset, 'a');
      input += special;
      input.append(17, 'b');
      EXPECT_EQ(Quoted(input), ReferenceQuoted(input)) << "offset " << offset;
    }
  }
}

TEST(JsonStringTest, RandomValidTextMatchesReference) {
  const std::vector<std::string> pieces = {"a", "Z", " ", "\"", "\\", "/", "\n", "\t", "\x01",
                                           std::string("\0", 1), "\x7f", "\xC3\xA9",
                                           "\xEF\xBF\xBD", "\xF0\x9F\x92\xA9", "abcdefghij"};
  std::mt19937 rng(20261123);
  for (int round = 0; round < 2000; ++round) {
    std::string input;
    const int count = static_cast<int>(rng() % 40);
    for (int i = 0; i < count; ++i) input += pieces[rng() % pieces.size()];
    const std::string out = Quoted(input);
    ASSERT_EQ(out, ReferenceQuoted(input));
    ASSERT_EQ(Decoded(out), input);
  }
}

TEST(JsonStringTest, RandomBytesAlwaysGiveValidJson) {
  std::mt19937 rng(7);
  for (int round = 0; round < 5000; ++round) {
    std::string input(rng() % 48, '\0');
    for (char& c : input) c = static_cast<char>(rng() % 256);
    const std::string out = Quoted(input);
    ASSERT_TRUE(nlohmann::json::accept(out)) << out;
  }
}

struct TimeCase {
  int64_t unix_ms;
  std::string expected;
};

std::string Rfc3339(int64_t unix_ms) {
  std::string out;
  AppendRfc3339Millis(out, unix_ms);
  EXPECT_EQ(out.size(), kRfc3339MillisSize);
  return out;
}

TEST(Rfc3339Test, FormatsFixedTimes) {
  const std::vector<TimeCase> cases = {
      {0, "1970-01-01T00:00:00.000Z"},
      {1, "1970-01-01T00:00:00.001Z"},
      {1795468072123, "2026-11-23T21:07:52.123Z"},
      {1795468072005, "2026-11-23T21:07:52.005Z"},
      {1795468072050, "2026-11-23T21:07:52.050Z"},
      {1709208000000, "2024-02-29T12:00:00.000Z"},  // leap day
      {951868800000, "2000-03-01T00:00:00.000Z"},   // after a leap day of a century year
      {-1, "1969-12-31T23:59:59.999Z"},             // before the epoch: floor, not truncate
      {-2208988800000, "1900-01-01T00:00:00.000Z"},
      {253402300799999, "9999-12-31T23:59:59.999Z"},
      {-62167219200000, "0000-01-01T00:00:00.000Z"},
      {253402300800000, "9999-12-31T23:59:59.999Z"},  // clamped
      {std::numeric_limits<int64_t>::max(), "9999-12-31T23:59:59.999Z"},
      {std::numeric_limits<int64_t>::min(), "0000-01-01T00:00:00.000Z"},
  };
  for (const TimeCase& c : cases) EXPECT_EQ(Rfc3339(c.unix_ms), c.expected) << c.unix_ms;
}

TEST(Rfc3339Test, AgreesWithGmtime) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 20000; ++round) {
    // Between 1900 and 2400.
    const int64_t unix_ms = -2208988800000 + static_cast<int64_t>(rng() % 15778800000000ULL);
    const time_t seconds = static_cast<time_t>(unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000);
    std::tm tm{};
    ASSERT_NE(gmtime_r(&seconds, &tm), nullptr);
    char expected[96];
    const int ms = static_cast<int>(unix_ms - static_cast<int64_t>(seconds) * 1000);
    std::snprintf(expected, sizeof expected, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    ASSERT_EQ(Rfc3339(unix_ms), expected) << unix_ms;
  }
}

TEST(Rfc3339Test, AppendsToWhatIsThere) {
  std::string out = "t=";
  AppendRfc3339Millis(out, 0);
  EXPECT_EQ(out, "t=1970-01-01T00:00:00.000Z");
}

}  // namespace
}  // namespace sse2kafka::sink
