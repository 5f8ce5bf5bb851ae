// libFuzzer target for the event stream parser.
//
// Input layout: byte 0 picks the limits, byte 1 how many chunk-size bytes follow (0-7), then
// those bytes, then the stream. The stream is parsed as two responses in a row (the same bytes
// twice, with EndOfStream after each) so that state carried across reconnects is exercised.
//
// Checked for every input:
//  - feeding whole, in the chunks the input chose, and byte by byte gives the same callbacks;
//  - every string handed out is valid UTF-8;
//  - what a dispatched event holds stays within the limits;
//  - with limits too large to matter, the callbacks equal those of a reference interpretation
//    written directly from the standard's text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "sse/parser.h"
#include "support/reference_utf8_decode.h"

namespace {

using sse2kafka::sse::Event;
using sse2kafka::sse::Parser;
using sse2kafka::sse::ParserListener;

// Written independently of the parser's own validator: a second opinion.
bool IsValidUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned b = static_cast<unsigned char>(s[i]);
    std::size_t len;
    std::uint32_t cp;
    if (b < 0x80) {
      ++i;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4;
      cp = b & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const unsigned c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    const std::uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

void Check(bool ok) {
  if (!ok) std::abort();
}

class RecordingListener : public ParserListener {
 public:
  explicit RecordingListener(const Parser::Limits& limits) : limits_(limits) {}

  void OnEvent(const Event& event) override {
    Check(IsValidUtf8(event.data) && IsValidUtf8(event.type) && IsValidUtf8(event.last_event_id));
    Check(!event.type.empty());
    // Held for the event: data + its final LF, the type buffer (empty when "message" came by
    // default, which the view cannot tell apart: count it only when it is something else),
    // and the id buffer, which at dispatch equals the last event ID.
    const std::size_t type_bytes = event.type == "message" ? 0 : event.type.size();
    Check(event.data.size() + 1 + type_bytes + event.last_event_id.size() <=
          limits_.max_event_size);
    log.push_back("event " + std::string(event.type) + " [" + std::string(event.data) +
                  "] id=" + std::string(event.last_event_id) + (event.id_in_block ? " own" : ""));
  }
  void OnEmptyDispatch(std::string_view last_event_id) override {
    Check(IsValidUtf8(last_event_id));
    // A decoded id is at most three times its raw size (one U+FFFD per ill-formed byte).
    Check(last_event_id.size() <= 3 * limits_.max_id_size);
    log.push_back("empty id=" + std::string(last_event_id));
  }
  void OnRetry(uint64_t ms) override { log.push_back("retry " + std::to_string(ms)); }
  void OnOversizedEvent(std::size_t bytes_seen) override {
    log.push_back("oversized " + std::to_string(bytes_seen));
  }
  void OnOversizedId(std::size_t id_size) override {
    Check(id_size > limits_.max_id_size);
    log.push_back("oversized-id " + std::to_string(id_size));
  }

  std::vector<std::string> log;

 private:
  Parser::Limits limits_;
};

// Feeds `stream` twice as two responses, cut into chunks of the given sizes (cycled); an empty
// list of sizes feeds each response whole.
std::vector<std::string> Parse(std::string_view stream, const std::vector<std::size_t>& sizes,
                               const Parser::Limits& limits) {
  Parser parser(limits);
  RecordingListener listener(limits);
  for (int response = 0; response < 2; ++response) {
    std::size_t pos = 0;
    std::size_t k = 0;
    while (pos < stream.size()) {
      std::size_t n = sizes.empty() ? stream.size() : sizes[k++ % sizes.size()];
      if (n > stream.size() - pos) n = stream.size() - pos;
      // A copy that dies right after Feed: a view kept past it reads freed memory.
      std::vector<char> chunk(stream.begin() + static_cast<std::ptrdiff_t>(pos),
                              stream.begin() + static_cast<std::ptrdiff_t>(pos + n));
      parser.Feed(std::string_view(chunk.data(), chunk.size()), listener);
      pos += n;
    }
    parser.EndOfStream();
    Check(IsValidUtf8(parser.last_event_id()));
    listener.log.push_back("end id=" + parser.last_event_id());
  }
  return listener.log;
}

using ::sse2kafka::test_support::ReferenceDecode;

// The reference: the standard's steps on a fully decoded response.
std::vector<std::string> Reference(std::string_view stream) {
  std::vector<std::string> log;
  std::string last_event_id;
  for (int response = 0; response < 2; ++response) {
    const std::string text = ReferenceDecode(stream);
    std::string data;
    std::string type;
    std::string id_buffer = last_event_id;
    bool own = false;
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] != '\r' && text[i] != '\n') continue;
      const std::string line = text.substr(start, i - start);
      if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      start = i + 1;
      if (line.empty()) {
        last_event_id = id_buffer;
        if (data.empty()) {
          type.clear();
          log.push_back("empty id=" + last_event_id);
        } else {
          data.pop_back();
          log.push_back("event " + (type.empty() ? std::string("message") : type) + " [" + data +
                        "] id=" + last_event_id + (own ? " own" : ""));
          data.clear();
          type.clear();
        }
        own = false;
        continue;
      }
      if (line[0] == ':') continue;
      std::string name = line;
      std::string value;
      if (const std::size_t colon = line.find(':'); colon != std::string::npos) {
        name = line.substr(0, colon);
        value = line.substr(colon + 1);
        if (!value.empty() && value[0] == ' ') value.erase(0, 1);
      }
      if (name == "event") {
        type = value;
      } else if (name == "data") {
        data += value + "\n";
      } else if (name == "id") {
        if (value.find('\0') == std::string::npos) {
          id_buffer = value;
          own = true;
        }
      } else if (name == "retry") {
        if (!value.empty() && value.find_first_not_of("0123456789") == std::string::npos) {
          std::uint64_t ms = 0;
          for (char c : value) {
            const unsigned d = static_cast<unsigned>(c - '0');
            ms = ms > (std::numeric_limits<std::uint64_t>::max() - d) / 10
                     ? std::numeric_limits<std::uint64_t>::max()
                     : ms * 10 + d;
          }
          log.push_back("retry " + std::to_string(ms));
        }
      }
    }
    log.push_back("end id=" + last_event_id);
  }
  return log;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  Parser::Limits limits;
  limits.max_event_size = 16 + std::size_t{data[0]} * 4;  // 16 to 1036 bytes
  limits.max_id_size = 4 + std::size_t{data[0]} % 32;
  const std::size_t size_bytes = data[1] % 8;
  if (size < 2 + size_bytes) return 0;
  std::vector<std::size_t> sizes;
  for (std::size_t i = 0; i < size_bytes; ++i) sizes.push_back(1 + std::size_t{data[2 + i]});
  const std::string_view stream(reinterpret_cast<const char*>(data + 2 + size_bytes),
                                size - 2 - size_bytes);

  const std::vector<std::string> whole = Parse(stream, {}, limits);
  Check(Parse(stream, sizes, limits) == whole);
  if (stream.size() <= 4096) Check(Parse(stream, {1}, limits) == whole);

  Parser::Limits unlimited;
  unlimited.max_event_size = std::numeric_limits<std::size_t>::max() / 4;
  unlimited.max_id_size = std::numeric_limits<std::size_t>::max() / 4;
  Check(Parse(stream, sizes, unlimited) == Reference(stream));
  return 0;
}
