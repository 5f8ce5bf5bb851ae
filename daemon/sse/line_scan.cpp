#include "sse/line_scan.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SSE2KAFKA_HAVE_AVX2_PATH 1
#endif

namespace sse2kafka::sse {
namespace {

// Sixteen bytes per step with SSE2 (part of x86-64), then byte by byte.
LineScan ScanPortable(const char* p, const char* limit, unsigned high) {
#if defined(__SSE2__)
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i cr = _mm_set1_epi8('\r');
  while (limit - p >= 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const unsigned eol = static_cast<unsigned>(
        _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(a, lf), _mm_cmpeq_epi8(a, cr))));
    const unsigned hi = static_cast<unsigned>(_mm_movemask_epi8(a));
    if (eol != 0) {
      const unsigned i = static_cast<unsigned>(__builtin_ctz(eol));
      high |= hi & ((1u << i) - 1u);
      return {p + i, high == 0};
    }
    high |= hi;
    p += 16;
  }
#endif
  for (; p < limit; ++p) {
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c == '\n' || c == '\r') break;
    high |= c & 0x80u;
  }
  return {p, high == 0};
}

#if defined(SSE2KAFKA_HAVE_AVX2_PATH)
// Sixty-four bytes per step. The high bits are OR-ed into a vector and only reduced at the
// end, which keeps the loop to two loads, four compares and one test.
__attribute__((target("avx2"))) LineScan ScanAvx2(const char* p, const char* limit) {
  const __m256i lf = _mm256_set1_epi8('\n');
  const __m256i cr = _mm256_set1_epi8('\r');
  __m256i high = _mm256_setzero_si256();
  while (limit - p >= 64) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32));
    const __m256i eol_a = _mm256_or_si256(_mm256_cmpeq_epi8(a, lf), _mm256_cmpeq_epi8(a, cr));
    const __m256i eol_b = _mm256_or_si256(_mm256_cmpeq_epi8(b, lf), _mm256_cmpeq_epi8(b, cr));
    const __m256i eol = _mm256_or_si256(eol_a, eol_b);
    if (!_mm256_testz_si256(eol, eol)) {
      const unsigned long long eol_mask =
          static_cast<unsigned>(_mm256_movemask_epi8(eol_a)) |
          (static_cast<unsigned long long>(static_cast<unsigned>(_mm256_movemask_epi8(eol_b)))
           << 32);
      const unsigned long long hi_mask =
          static_cast<unsigned>(_mm256_movemask_epi8(a)) |
          (static_cast<unsigned long long>(static_cast<unsigned>(_mm256_movemask_epi8(b))) << 32);
      const unsigned i = static_cast<unsigned>(__builtin_ctzll(eol_mask));
      const bool earlier_high = _mm256_movemask_epi8(high) != 0;
      return {p + i, !earlier_high && (hi_mask & ((1ull << i) - 1ull)) == 0};
    }
    high = _mm256_or_si256(high, _mm256_or_si256(a, b));
    p += 64;
  }
  return ScanPortable(p, limit, _mm256_movemask_epi8(high) != 0 ? 1u : 0u);
}
#endif

}  // namespace

bool CpuHasAvx2() {
#if defined(SSE2KAFKA_HAVE_AVX2_PATH)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

LineScan ScanLongLine(const char* p, const char* limit, bool avx2) {
#if defined(SSE2KAFKA_HAVE_AVX2_PATH)
  if (avx2) return ScanAvx2(p, limit);
#else
  (void)avx2;
#endif
  return ScanPortable(p, limit, 0);
}

}  // namespace sse2kafka::sse
