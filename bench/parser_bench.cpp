// Throughput of the event stream parser, and of a plain memchr scan over the same bytes as the
// yardstick: the parser's budget is a small multiple of the time memchr needs just to find the
// line ends.
//
//   parser_bench --benchmark_filter=.   (Release build)
//
// Arguments of every case: event size on the wire in bytes, stream shape, Feed chunk size.
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <string_view>

#include "sse/parser.h"

namespace {

using sse2kafka::sse::Event;
using sse2kafka::sse::Parser;
using sse2kafka::sse::ParserListener;

enum Shape : int {
  kOneDataLine = 0,   // data: <payload>\n\n
  kMultiLine = 1,     // data lines of 80 bytes each
  kCrlfWithFields = 2,  // event, id and data lines ended by CRLF
  kUtf8 = 3,          // one data line with a two-byte character every 40 bytes
};

const char* ShapeName(int shape) {
  switch (shape) {
    case kOneDataLine: return "one-line";
    case kMultiLine: return "multi-line";
    case kCrlfWithFields: return "crlf+fields";
    case kUtf8: return "utf8";
  }
  return "?";
}

std::string Payload(std::size_t n, int shape, std::size_t seed) {
  std::string s;
  s.reserve(n);
  while (s.size() < n) {
    if (shape == kUtf8 && s.size() % 40 == 39 && s.size() + 2 <= n) {
      s += "\xC3\xA9";
    } else {
      s.push_back(static_cast<char>('a' + (s.size() + seed) % 26));
    }
  }
  return s;
}

// One event of about `size` bytes on the wire.
std::string MakeEvent(std::size_t size, int shape, std::size_t index) {
  std::string event;
  switch (shape) {
    case kOneDataLine:
    case kUtf8:
      event = "data: " + Payload(size > 8 ? size - 8 : 1, shape, index) + "\n\n";
      break;
    case kMultiLine: {
      std::size_t left = size > 1 ? size - 1 : 1;
      while (left > 0) {
        const std::size_t line = left > 80 ? 80 : left;
        event += "data: " + Payload(line > 7 ? line - 7 : 1, shape, index) + "\n";
        left -= line;
      }
      event += "\n";
      break;
    }
    case kCrlfWithFields: {
      const std::string head = "event: update\r\nid: " + std::to_string(1000000 + index) + "\r\n";
      const std::size_t payload = size > head.size() + 10 ? size - head.size() - 10 : 1;
      event = head + "data: " + Payload(payload, shape, index) + "\r\n\r\n";
      break;
    }
  }
  return event;
}

// A stream of whole events, at least 4 MiB and at least 64 events.
std::string MakeStream(std::size_t event_size, int shape, std::size_t* events) {
  std::string stream;
  std::size_t n = 0;
  while (stream.size() < 4 * 1024 * 1024 || n < 64) stream += MakeEvent(event_size, shape, n++);
  *events = n;
  return stream;
}

class CountingListener : public ParserListener {
 public:
  void OnEvent(const Event& event) override {
    ++events;
    data_bytes += event.data.size();
  }
  void OnEmptyDispatch(std::string_view) override {}
  void OnRetry(uint64_t) override {}
  void OnOversizedEvent(std::size_t) override {}
  void OnOversizedId(std::size_t) override {}

  std::size_t events = 0;
  std::size_t data_bytes = 0;
};

void BM_Parse(benchmark::State& state) {
  const auto event_size = static_cast<std::size_t>(state.range(0));
  const auto shape = static_cast<int>(state.range(1));
  const auto chunk = static_cast<std::size_t>(state.range(2));
  std::size_t events_per_stream = 0;
  const std::string stream = MakeStream(event_size, shape, &events_per_stream);
  Parser parser({});
  CountingListener listener;
  for (auto _ : state) {
    const std::string_view all(stream);
    for (std::size_t pos = 0; pos < all.size(); pos += chunk) {
      parser.Feed(all.substr(pos, chunk), listener);
    }
    benchmark::DoNotOptimize(listener.data_bytes);
  }
  if (listener.events != events_per_stream * static_cast<std::size_t>(state.iterations())) {
    state.SkipWithError("wrong number of events");
  }
  state.SetItemsProcessed(static_cast<int64_t>(listener.events));
  state.SetBytesProcessed(static_cast<int64_t>(stream.size() * state.iterations()));
  state.SetLabel(ShapeName(shape));
}

// The yardstick: find every LF in the same bytes, chunk by chunk, and do nothing else.
void BM_MemchrScan(benchmark::State& state) {
  const auto event_size = static_cast<std::size_t>(state.range(0));
  const auto shape = static_cast<int>(state.range(1));
  const auto chunk = static_cast<std::size_t>(state.range(2));
  std::size_t events_per_stream = 0;
  const std::string stream = MakeStream(event_size, shape, &events_per_stream);
  std::size_t lines = 0;
  for (auto _ : state) {
    for (std::size_t pos = 0; pos < stream.size(); pos += chunk) {
      const char* p = stream.data() + pos;
      const char* end = stream.data() + std::min(pos + chunk, stream.size());
      while (p < end) {
        const void* lf = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
        if (lf == nullptr) break;
        ++lines;
        p = static_cast<const char*>(lf) + 1;
      }
    }
    benchmark::DoNotOptimize(lines);
  }
  state.SetItemsProcessed(static_cast<int64_t>(events_per_stream * state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(stream.size() * state.iterations()));
  state.SetLabel(ShapeName(shape));
}

BENCHMARK(BM_Parse)
    ->ArgNames({"event", "shape", "chunk"})
    ->ArgsProduct({{100, 2048, 65536}, {kOneDataLine, kMultiLine, kCrlfWithFields, kUtf8},
                   {1, 1024, 65536}})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MemchrScan)
    ->ArgNames({"event", "shape", "chunk"})
    ->ArgsProduct({{100, 2048, 65536}, {kOneDataLine, kMultiLine, kCrlfWithFields, kUtf8},
                   {65536}})
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
