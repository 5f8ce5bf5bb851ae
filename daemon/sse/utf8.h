// UTF-8 decoding with replacement, as the WHATWG Encoding standard's UTF-8 decoder does it:
// every maximal ill-formed subpart becomes one U+FFFD, and the byte that ended a sequence early
// is decoded again on its own. The decoder is incremental, so a sequence split across chunks
// decodes exactly as if the chunks had been one buffer.
//
// Valid input is copied through unchanged; only ill-formed input is rewritten. Output is
// therefore never shorter than input (U+FFFD is three bytes and replaces one to three bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sse2kafka::sse {

// Length of the longest prefix of [p, p+n) made only of complete, well-formed UTF-8
// sequences. Returns n when the whole range is valid UTF-8.
std::size_t Utf8ValidPrefix(const char* p, std::size_t n);

inline bool IsValidUtf8(const char* p, std::size_t n) { return Utf8ValidPrefix(p, n) == n; }

// Decodes one logical byte stream given in pieces, appending the UTF-8 encoding of the decoded
// text to a string. Holds at most three bytes of an unfinished sequence between pieces.
class Utf8Decoder {
 public:
  // Decodes [p, p+n) and appends the result to `out`. A sequence left unfinished at the end of
  // the piece is held back and completed by the next Append (or replaced by Finish).
  // Returns false, leaving `out` somewhere past `cap` bytes, as soon as `out` grows beyond
  // `cap`: the caller treats that as "too large" and discards `out`.
  bool Append(const char* p, std::size_t n, std::string& out, std::size_t cap);

  // Ends the stream: an unfinished sequence becomes one U+FFFD. Returns false when that made
  // `out` grow beyond `cap`.
  bool Finish(std::string& out, std::size_t cap);

  // Forgets an unfinished sequence without emitting anything.
  void Reset() { pending_len_ = 0; }

  // Bytes of an unfinished sequence held back (0 to 3).
  std::size_t pending() const { return pending_len_; }

 private:
  unsigned char pending_[4] = {};
  std::uint8_t pending_len_ = 0;  // bytes of the current sequence seen, lead byte included
  std::uint8_t needed_ = 0;       // total length of the current sequence
  unsigned char lower_ = 0x80;    // allowed range of the next continuation byte
  unsigned char upper_ = 0xBF;
};

}  // namespace sse2kafka::sse
