#include "sink/json_text.h"

#include <array>
#include <bit>
#include <cstring>

namespace sse2kafka::sink {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER

// What AppendJsonStringContent does with an ASCII byte: 0 copies it, 'u' writes \u00XX, any
// other value is the letter written after a backslash.
constexpr std::array<char, 128> MakeAsciiEscapes() {
  std::array<char, 128> table{};
  for (int c = 0; c < 0x20; ++c) table[c] = 'u';
  table['\b'] = 'b';
  table['\f'] = 'f';
  table['\n'] = 'n';
  table['\r'] = 'r';
  table['\t'] = 't';
  table['"'] = '"';
  table['\\'] = '\\';
  return table;
}
constexpr std::array<char, 128> kAsciiEscapes = MakeAsciiEscapes();

constexpr uint64_t kOnes = 0x0101010101010101ULL;
constexpr uint64_t kHighs = 0x8080808080808080ULL;

constexpr uint64_t HasZeroByte(uint64_t v) { return (v - kOnes) & ~v & kHighs; }

// Marks, in the high bit of each byte, the bytes of p[0..8) that are not copied as they are: a
// byte below 0x20, `"`, `\`, or a byte of a multi-byte UTF-8 sequence (which has to be checked).
// A borrow crossing bytes may raise false alarms, but only in bytes more significant than a real
// one, so on little-endian machines the first marked byte is always real. The caller looks at
// that byte itself anyway: a false alarm costs time, never correctness.
inline uint64_t AttentionMask(const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof w);
  const uint64_t below_space = (w - kOnes * 0x20) & ~w & kHighs;
  return (w & kHighs) | below_space | HasZeroByte(w ^ (kOnes * '"')) | HasZeroByte(w ^ (kOnes * '\\'));
}

// Index of the first byte in memory order whose high bit `mask` has set.
inline std::size_t FirstMarkedByte(uint64_t mask) {
  if constexpr (std::endian::native == std::endian::little) {
    return static_cast<std::size_t>(std::countr_zero(mask)) / 8;
  } else {
    return static_cast<std::size_t>(std::countl_zero(mask)) / 8;
  }
}

// Length of the UTF-8 sequence starting at p[0] (a byte >= 0x80) when it is complete and
// well-formed; otherwise 0, with *ill_formed set to the length of its maximal ill-formed subpart
// (the bytes that one U+FFFD replaces, as the WHATWG UTF-8 decoder does).
std::size_t WellFormedSequence(const unsigned char* p, std::size_t available, std::size_t* ill_formed) {
  const unsigned char b = p[0];
  std::size_t length = 0;
  unsigned char lower = 0x80;
  unsigned char upper = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    length = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    length = 3;
    if (b == 0xE0) lower = 0xA0;  // overlong
    if (b == 0xED) upper = 0x9F;  // surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    length = 4;
    if (b == 0xF0) lower = 0x90;  // overlong
    if (b == 0xF4) upper = 0x8F;  // past U+10FFFF
  } else {
    *ill_formed = 1;
    return 0;
  }
  std::size_t i = 1;
  for (; i < length && i < available; ++i) {
    if (p[i] < lower || p[i] > upper) break;
    lower = 0x80;
    upper = 0xBF;
  }
  if (i == length) return length;
  *ill_formed = i;
  return 0;
}

void AppendEscape(std::string& out, unsigned char b, char kind) {
  if (kind == 'u') {
    static constexpr char kHex[] = "0123456789abcdef";
    const char escaped[6] = {'\\', 'u', '0', '0', kHex[b >> 4], kHex[b & 0xF]};
    out.append(escaped, sizeof escaped);
  } else {
    out.push_back('\\');  // cheaper than a two-byte append for the common case
    out.push_back(kind);
  }
}

void Append2(char* p, unsigned v) {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
}

}  // namespace

void AppendJsonStringContent(std::string& out, std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  out.reserve(out.size() + n);
  std::size_t run_start = 0;  // bytes [run_start, i) are copied as they are
  std::size_t i = 0;
  while (i < n) {
    // Skip eight plain bytes at a time, then straight to the first byte that needs a look.
    while (i + 8 <= n) {
      const uint64_t mask = AttentionMask(p + i);
      if (mask != 0) {
        i += FirstMarkedByte(mask);
        break;
      }
      i += 8;
    }
    if (i == n) break;
    const unsigned char b = p[i];
    if (b < 0x80) {
      const char kind = kAsciiEscapes[b];
      if (kind != 0) {
        out.append(text.data() + run_start, i - run_start);
        AppendEscape(out, b, kind);
        run_start = i + 1;
      }
      ++i;
      continue;
    }
    std::size_t ill_formed = 0;
    const std::size_t length = WellFormedSequence(p + i, n - i, &ill_formed);
    if (length > 0) {
      i += length;
      continue;
    }
    out.append(text.data() + run_start, i - run_start);
    out.append(kReplacement);
    i += ill_formed;
    run_start = i;
  }
  out.append(text.data() + run_start, n - run_start);
}

void AppendJsonString(std::string& out, std::string_view text) {
  out.push_back('"');
  AppendJsonStringContent(out, text);
  out.push_back('"');
}

void AppendRfc3339Millis(std::string& out, int64_t unix_ms) {
  constexpr int64_t kMsPerDay = 86'400'000;
  constexpr int64_t kEarliest = -62'167'219'200'000;  // 0000-01-01T00:00:00.000Z
  constexpr int64_t kLatest = 253'402'300'799'999;    // 9999-12-31T23:59:59.999Z
  if (unix_ms < kEarliest) unix_ms = kEarliest;
  if (unix_ms > kLatest) unix_ms = kLatest;

  int64_t days = unix_ms / kMsPerDay;
  int64_t ms_of_day = unix_ms % kMsPerDay;
  if (ms_of_day < 0) {  // floor, not truncation, before the epoch
    ms_of_day += kMsPerDay;
    --days;
  }
  // Civil date from days since the epoch (Howard Hinnant's days-to-civil algorithm).
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t day_of_era = z - era * 146097;
  const int64_t year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const int64_t shifted_month = (5 * day_of_year + 2) / 153;  // March is 0
  const auto day = static_cast<unsigned>(day_of_year - (153 * shifted_month + 2) / 5 + 1);
  const auto month = static_cast<unsigned>(shifted_month < 10 ? shifted_month + 3 : shifted_month - 9);
  const auto year = static_cast<unsigned>(year_of_era + era * 400 + (month <= 2 ? 1 : 0));

  const auto ms = static_cast<unsigned>(ms_of_day % 1000);
  const auto seconds = static_cast<unsigned>(ms_of_day / 1000);
  char text[kRfc3339MillisSize];
  Append2(text, year / 100);
  Append2(text + 2, year % 100);
  text[4] = '-';
  Append2(text + 5, month);
  text[7] = '-';
  Append2(text + 8, day);
  text[10] = 'T';
  Append2(text + 11, seconds / 3600);
  text[13] = ':';
  Append2(text + 14, seconds / 60 % 60);
  text[16] = ':';
  Append2(text + 17, seconds % 60);
  text[19] = '.';
  text[20] = static_cast<char>('0' + ms / 100);
  Append2(text + 21, ms % 100);
  text[23] = 'Z';
  out.append(text, sizeof text);
}

}  // namespace sse2kafka::sink
