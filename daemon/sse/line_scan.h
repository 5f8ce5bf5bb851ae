// Finds line ends (CR or LF) in a byte range, and notes on the way whether the bytes before
// the line end are all ASCII, so that the common all-ASCII line needs no separate UTF-8 pass.
//
// Most lines of an event stream are short, so the first 32 bytes are examined inline; a longer
// line continues in ScanLongLine, which uses AVX2 where the CPU has it.
#pragma once

#include <cstddef>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sse2kafka::sse {

struct LineScan {
  const char* end;  // the first CR or LF at or after the start, or the end of the range
  bool ascii;       // every byte before `end` is below 0x80
};

// True when ScanLongLine may use AVX2 on this CPU.
bool CpuHasAvx2();

// Scans [p, limit) for the first CR or LF; `avx2` as returned by CpuHasAvx2().
LineScan ScanLongLine(const char* p, const char* limit, bool avx2);

inline LineScan ScanLine(const char* p, const char* limit, bool avx2) {
#if defined(__SSE2__)
  if (limit - p >= 32) {
    // The sign bit of a byte is its non-ASCII flag, so one movemask collects those for free.
    const __m128i lf = _mm_set1_epi8('\n');
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
    const unsigned eol =
        static_cast<unsigned>(
            _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(a, lf), _mm_cmpeq_epi8(a, cr)))) |
        (static_cast<unsigned>(
             _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(b, lf), _mm_cmpeq_epi8(b, cr))))
         << 16);
    const unsigned high = static_cast<unsigned>(_mm_movemask_epi8(a)) |
                          (static_cast<unsigned>(_mm_movemask_epi8(b)) << 16);
    if (eol != 0) {
      const unsigned i = static_cast<unsigned>(__builtin_ctz(eol));
      // Only the bytes before the line end count.
      return {p + i, (high & ((1u << i) - 1u)) == 0};
    }
    const LineScan rest = ScanLongLine(p + 32, limit, avx2);
    return {rest.end, rest.ascii && high == 0};
  }
#endif
  unsigned high = 0;
  for (; p < limit; ++p) {
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c == '\n' || c == '\r') break;
    high |= c & 0x80u;
  }
  return {p, high == 0};
}

}  // namespace sse2kafka::sse
