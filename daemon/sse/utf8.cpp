#include "sse/utf8.h"

#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SSE2KAFKA_UTF8_AVX2 1
#endif

namespace sse2kafka::sse {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER

// What a lead byte starts, per the Encoding standard's UTF-8 decoder: the total length of the
// sequence (0 when the byte cannot start one) and the range allowed for the second byte, which
// is where overlong forms (E0, F0), surrogates (ED) and code points past U+10FFFF (F4) are
// rejected.
struct LeadByte {
  std::uint8_t length;
  unsigned char lower;
  unsigned char upper;
};

inline LeadByte ClassifyLead(unsigned char b) {
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b >= 0xE0 && b <= 0xEF) {
    return {3, static_cast<unsigned char>(b == 0xE0 ? 0xA0 : 0x80),
            static_cast<unsigned char>(b == 0xED ? 0x9F : 0xBF)};
  }
  if (b >= 0xF0 && b <= 0xF4) {
    return {4, static_cast<unsigned char>(b == 0xF0 ? 0x90 : 0x80),
            static_cast<unsigned char>(b == 0xF4 ? 0x8F : 0xBF)};
  }
  return {0, 0, 0};
}

// One well-formed sequence or ill-formed byte at a time, eight ASCII bytes at a time.
std::size_t ScalarValidPrefix(const unsigned char* p, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    // Text is mostly ASCII even when it is not only ASCII: skip eight bytes at a time.
    while (i + 8 <= n) {
      std::uint64_t word;
      std::memcpy(&word, p + i, sizeof word);
      if (word & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i == n) break;
    const unsigned char b = p[i];
    if (b < 0x80) {
      ++i;
      continue;
    }
    const LeadByte lead = ClassifyLead(b);
    if (lead.length == 0 || i + lead.length > n) return i;
    if (p[i + 1] < lead.lower || p[i + 1] > lead.upper) return i;
    for (std::size_t k = 2; k < lead.length; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
    }
    i += lead.length;
  }
  return n;
}

#if defined(SSE2KAFKA_UTF8_AVX2)
// The table-lookup validator of Keiser and Lemire ("Validating UTF-8 in less than one
// instruction per byte", 2021), 64 bytes per step. Three 16-entry tables indexed by the high
// nibble of the previous byte, its low nibble and the high nibble of the current byte give,
// ANDed together, the error classes the byte pair can be in; a continuation byte that the lead
// two or three bytes back requires is checked separately.
namespace avx2 {

constexpr std::uint8_t kTooShort = 1 << 0;    // lead or ASCII followed by lead or ASCII
constexpr std::uint8_t kTooLong = 1 << 1;     // ASCII followed by continuation
constexpr std::uint8_t kOverlong3 = 1 << 2;   // E0 followed by 80..9F
constexpr std::uint8_t kTooLarge = 1 << 3;    // past U+10FFFF: F4 90.., F5.. and up
constexpr std::uint8_t kSurrogate = 1 << 4;   // ED followed by A0..BF
constexpr std::uint8_t kOverlong2 = 1 << 5;   // C0 or C1 lead
constexpr std::uint8_t kTooLarge1000 = 1 << 6;  // F5.. followed by 80..8F
constexpr std::uint8_t kOverlong4 = 1 << 6;   // F0 followed by 80..8F
constexpr std::uint8_t kTwoConts = 1 << 7;    // continuation followed by continuation
constexpr std::uint8_t kCarry = kTooShort | kTooLong | kTwoConts;

__attribute__((target("avx2"))) inline __m256i Table(const std::uint8_t (&t)[16]) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
}

// The 32 bytes before each byte of `input`, shifted in from `previous` by `n` (1 to 3).
template <int N>
__attribute__((target("avx2"))) inline __m256i Prev(__m256i input, __m256i previous) {
  return _mm256_alignr_epi8(input, _mm256_permute2x128_si256(previous, input, 0x21), 16 - N);
}

struct Checker {
  __m256i byte_1_high;
  __m256i byte_1_low;
  __m256i byte_2_high;
  __m256i low_nibble;
  __m256i incomplete_max;
};

__attribute__((target("avx2"))) Checker MakeChecker() {
  static constexpr std::uint8_t kByte1High[16] = {
      kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong,
      kTwoConts, kTwoConts, kTwoConts, kTwoConts,
      kTooShort | kOverlong2,
      kTooShort,
      kTooShort | kOverlong3 | kSurrogate,
      kTooShort | kTooLarge | kTooLarge1000 | kOverlong4};
  static constexpr std::uint8_t kByte1Low[16] = {
      kCarry | kOverlong3 | kOverlong2 | kOverlong4,
      kCarry | kOverlong2,
      kCarry,
      kCarry,
      kCarry | kTooLarge,
      kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000 | kSurrogate,
      kCarry | kTooLarge | kTooLarge1000,
      kCarry | kTooLarge | kTooLarge1000};
  static constexpr std::uint8_t kByte2High[16] = {
      kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort,
      kTooLong | kOverlong2 | kTwoConts | kOverlong3 | kTooLarge1000 | kOverlong4,
      kTooLong | kOverlong2 | kTwoConts | kOverlong3 | kTooLarge,
      kTooLong | kOverlong2 | kTwoConts | kSurrogate | kTooLarge,
      kTooLong | kOverlong2 | kTwoConts | kSurrogate | kTooLarge,
      kTooShort, kTooShort, kTooShort, kTooShort};
  // A block whose last three bytes exceed these ends inside a sequence.
  alignas(32) static constexpr std::uint8_t kIncompleteMax[32] = {
      255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
      255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0xF0 - 1, 0xE0 - 1,
      0xC0 - 1};
  return {Table(kByte1High), Table(kByte1Low), Table(kByte2High), _mm256_set1_epi8(0x0F),
          _mm256_load_si256(reinterpret_cast<const __m256i*>(kIncompleteMax))};
}

__attribute__((target("avx2"))) inline __m256i CheckBytes(const Checker& c, __m256i input,
                                                          __m256i previous) {
  const __m256i prev1 = Prev<1>(input, previous);
  const __m256i b1h = _mm256_shuffle_epi8(
      c.byte_1_high, _mm256_and_si256(_mm256_srli_epi16(prev1, 4), c.low_nibble));
  const __m256i b1l = _mm256_shuffle_epi8(c.byte_1_low, _mm256_and_si256(prev1, c.low_nibble));
  const __m256i b2h = _mm256_shuffle_epi8(
      c.byte_2_high, _mm256_and_si256(_mm256_srli_epi16(input, 4), c.low_nibble));
  const __m256i special = _mm256_and_si256(_mm256_and_si256(b1h, b1l), b2h);
  // Bytes two or three after a three- or four-byte lead must be continuations: exactly the
  // positions where the table reports "two continuations" without it being an error.
  const __m256i third = _mm256_subs_epu8(Prev<2>(input, previous), _mm256_set1_epi8(0x60));
  const __m256i fourth = _mm256_subs_epu8(Prev<3>(input, previous), _mm256_set1_epi8(0x70));
  const __m256i must_continue =
      _mm256_and_si256(_mm256_or_si256(third, fourth), _mm256_set1_epi8(static_cast<char>(0x80)));
  return _mm256_xor_si256(must_continue, special);
}

__attribute__((target("avx2"))) std::size_t ValidPrefix(const unsigned char* p, std::size_t n) {
  const Checker checker = MakeChecker();
  __m256i previous = _mm256_setzero_si256();
  __m256i incomplete = _mm256_setzero_si256();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32));
    __m256i error;
    if (_mm256_movemask_epi8(_mm256_or_si256(a, b)) == 0) {
      error = incomplete;  // an ASCII block cannot finish a sequence the last one started
      incomplete = _mm256_setzero_si256();
    } else {
      error = _mm256_or_si256(CheckBytes(checker, a, previous), CheckBytes(checker, b, a));
      incomplete = _mm256_subs_epu8(b, checker.incomplete_max);
    }
    previous = b;
    if (!_mm256_testz_si256(error, error)) break;
  }
  return i;
}

}  // namespace avx2
#endif

}  // namespace

std::size_t Utf8ValidPrefix(const char* s, std::size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(s);
#if defined(SSE2KAFKA_UTF8_AVX2)
  // The vector validator pays off on long runs. The first bytes go through the scalar check
  // first, so that input full of errors (where every call stops early) stays cheap.
  constexpr std::size_t kScalarLead = 16;
  if (n >= 64 + kScalarLead && __builtin_cpu_supports("avx2")) {
    if (ScalarValidPrefix(p, kScalarLead) != kScalarLead) return ScalarValidPrefix(p, n);
    // Everything before the first failing 64-byte block is valid except, perhaps, a sequence
    // it ends in the middle of; back up to the start of that sequence (at most three
    // continuation bytes and their lead) and finish byte by byte from there.
    std::size_t restart = avx2::ValidPrefix(p, n);
    for (int k = 0; k < 3 && restart > 0 && (p[restart - 1] & 0xC0) == 0x80; ++k) --restart;
    if (restart > 0 && p[restart - 1] >= 0xC0) --restart;
    return restart + ScalarValidPrefix(p + restart, n - restart);
  }
#endif
  return ScalarValidPrefix(p, n);
}

bool Utf8Decoder::Append(const char* p, std::size_t n, std::string& out, std::size_t cap) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  std::size_t i = 0;
  while (i < n) {
    if (pending_len_ > 0) {
      const unsigned char b = u[i];
      if (b < lower_ || b > upper_) {
        // The bytes seen so far are a maximal ill-formed subpart: one U+FFFD for all of them,
        // and `b` is decoded again from scratch (it is not consumed here).
        pending_len_ = 0;
        out.append(kReplacement, 3);
        if (out.size() > cap) return false;
        continue;
      }
      pending_[pending_len_++] = b;
      ++i;
      lower_ = 0x80;
      upper_ = 0xBF;
      if (pending_len_ == needed_) {
        out.append(reinterpret_cast<const char*>(pending_), needed_);
        pending_len_ = 0;
        if (out.size() > cap) return false;
      }
      continue;
    }
    const std::size_t valid = Utf8ValidPrefix(p + i, n - i);
    out.append(p + i, valid);
    i += valid;
    if (out.size() > cap) return false;
    if (i == n) break;
    const unsigned char b = u[i++];
    const LeadByte lead = ClassifyLead(b);
    if (lead.length == 0) {
      out.append(kReplacement, 3);
      if (out.size() > cap) return false;
      continue;
    }
    pending_[0] = b;
    pending_len_ = 1;
    needed_ = lead.length;
    lower_ = lead.lower;
    upper_ = lead.upper;
  }
  return true;
}

bool Utf8Decoder::Finish(std::string& out, std::size_t cap) {
  if (pending_len_ == 0) return true;
  pending_len_ = 0;
  out.append(kReplacement, 3);
  return out.size() <= cap;
}

}  // namespace sse2kafka::sse
