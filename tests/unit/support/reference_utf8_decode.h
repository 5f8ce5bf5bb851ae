// A straight transcription of the WHATWG Encoding standard's UTF-8 decoder, shared by the
// parser's unit tests and its fuzzer as the reference the parser's own decoder is checked
// against. Written for clarity, not speed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sse2kafka::test_support {

// The Encoding standard's UTF-8 decode, BOM skipped, output re-encoded as UTF-8.
inline std::string ReferenceDecode(std::string_view bytes) {
  if (bytes.substr(0, 3) == "\xEF\xBB\xBF") bytes.remove_prefix(3);
  std::string out;
  auto emit = [&out](std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  };
  std::uint32_t code_point = 0;
  int bytes_seen = 0;
  int bytes_needed = 0;
  unsigned lower = 0x80;
  unsigned upper = 0xBF;
  std::size_t i = 0;
  while (i < bytes.size()) {
    const unsigned byte = static_cast<unsigned char>(bytes[i++]);
    if (bytes_needed == 0) {
      if (byte <= 0x7F) {
        emit(byte);
      } else if (byte >= 0xC2 && byte <= 0xDF) {
        bytes_needed = 1;
        code_point = byte & 0x1F;
      } else if (byte >= 0xE0 && byte <= 0xEF) {
        if (byte == 0xE0) lower = 0xA0;
        if (byte == 0xED) upper = 0x9F;
        bytes_needed = 2;
        code_point = byte & 0xF;
      } else if (byte >= 0xF0 && byte <= 0xF4) {
        if (byte == 0xF0) lower = 0x90;
        if (byte == 0xF4) upper = 0x8F;
        bytes_needed = 3;
        code_point = byte & 0x7;
      } else {
        emit(0xFFFD);
      }
      continue;
    }
    if (byte < lower || byte > upper) {
      code_point = 0;
      bytes_needed = 0;
      bytes_seen = 0;
      lower = 0x80;
      upper = 0xBF;
      --i;  // "Restore byte to ioQueue"
      emit(0xFFFD);
      continue;
    }
    lower = 0x80;
    upper = 0xBF;
    code_point = (code_point << 6) | (byte & 0x3F);
    if (++bytes_seen != bytes_needed) continue;
    emit(code_point);
    code_point = 0;
    bytes_needed = 0;
    bytes_seen = 0;
  }
  if (bytes_needed != 0) emit(0xFFFD);
  return out;
}

}  // namespace sse2kafka::test_support
