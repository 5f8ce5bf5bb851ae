// Tests of the incremental event stream parser against the WHATWG HTML "event stream
// interpretation". Every case runs with the input fed whole, byte by byte, and at random split
// points (fixed seeds), and must give the same callbacks each time.
#include "sse/parser.h"
#include "support/reference_utf8_decode.h"
#include "sse/utf8.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

// Heap accounting for the whole test binary: the memory-bound and no-allocation tests read it
// around the calls they measure. Everything is single-threaded while they do.
namespace {

struct HeapStats {
  bool counting = false;
  std::size_t allocations = 0;
  std::size_t live_bytes = 0;
  std::size_t peak_live_bytes = 0;
};

HeapStats& Heap() {
  static HeapStats stats;
  return stats;
}

void* CountedAlloc(std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  HeapStats& heap = Heap();
  if (heap.counting) {
    ++heap.allocations;
    heap.live_bytes += malloc_usable_size(p);
    if (heap.live_bytes > heap.peak_live_bytes) heap.peak_live_bytes = heap.live_bytes;
  }
  return p;
}

void CountedFree(void* p) {
  if (p == nullptr) return;
  HeapStats& heap = Heap();
  if (heap.counting) {
    const std::size_t size = malloc_usable_size(p);
    heap.live_bytes = heap.live_bytes > size ? heap.live_bytes - size : 0;
  }
  std::free(p);
}

// Starts counting on construction, stops on destruction.
class HeapWindow {
 public:
  HeapWindow() {
    HeapStats& heap = Heap();
    heap.allocations = 0;
    heap.live_bytes = 0;
    heap.peak_live_bytes = 0;
    heap.counting = true;
  }
  ~HeapWindow() { Heap().counting = false; }
  HeapWindow(const HeapWindow&) = delete;
  HeapWindow& operator=(const HeapWindow&) = delete;

  std::size_t allocations() const { return Heap().allocations; }
  // Peak growth of the heap since the window opened (frees of older blocks count as zero).
  std::size_t peak_bytes() const { return Heap().peak_live_bytes; }
};

}  // namespace

void* operator new(std::size_t size) { return CountedAlloc(size); }
void* operator new[](std::size_t size) { return CountedAlloc(size); }
void operator delete(void* p) noexcept { CountedFree(p); }
void operator delete[](void* p) noexcept { CountedFree(p); }
void operator delete(void* p, std::size_t) noexcept { CountedFree(p); }
void operator delete[](void* p, std::size_t) noexcept { CountedFree(p); }

namespace sse2kafka::sse {
namespace {

using Log = std::vector<std::string>;

// Writes every callback as one line of text, so whole runs compare with one EXPECT_EQ.
class RecordingListener : public ParserListener {
 public:
  void OnEvent(const Event& event) override {
    log.push_back("event " + std::string(event.type) + " [" + std::string(event.data) +
                  "] id=" + std::string(event.last_event_id) + (event.id_in_block ? " own" : ""));
  }
  void OnEmptyDispatch(std::string_view last_event_id) override {
    log.push_back("empty id=" + std::string(last_event_id));
  }
  void OnRetry(uint64_t milliseconds) override {
    log.push_back("retry " + std::to_string(milliseconds));
  }
  void OnOversizedEvent(std::size_t bytes_seen) override {
    log.push_back("oversized " + std::to_string(bytes_seen));
  }
  void OnOversizedId(std::size_t id_size) override {
    log.push_back("oversized-id " + std::to_string(id_size));
  }

  Log log;
};

// A string literal with embedded NULs, all its bytes but the terminating one.
template <std::size_t N>
std::string Bytes(const char (&literal)[N]) {
  return std::string(literal, N - 1);
}

std::string Ev(std::string_view type, std::string_view data, std::string_view id = "",
               bool own = false) {
  return "event " + std::string(type) + " [" + std::string(data) + "] id=" + std::string(id) +
         (own ? " own" : "");
}
std::string Msg(std::string_view data) { return Ev("message", data); }
std::string Empty(std::string_view id = "") { return "empty id=" + std::string(id); }
std::string Retry(uint64_t ms) { return "retry " + std::to_string(ms); }
std::string Oversized(std::size_t n) { return "oversized " + std::to_string(n); }
std::string OversizedId(std::size_t n) { return "oversized-id " + std::to_string(n); }
// Logged by the harness after each response's EndOfStream: the parser's last_event_id().
std::string End(std::string_view id = "") { return "end id=" + std::string(id); }

// How a response is cut into chunks.
struct Chunking {
  enum Kind { kWhole, kBytes, kRandom, kFixed } kind = kWhole;
  std::uint32_t seed = 0;       // kRandom
  std::size_t max_chunk = 16;   // kRandom: sizes drawn from [1, max_chunk]
  std::size_t fixed = 0;        // kFixed

  std::string Describe() const {
    switch (kind) {
      case kWhole: return "whole";
      case kBytes: return "byte by byte";
      case kRandom: return "random seed " + std::to_string(seed) + " max " + std::to_string(max_chunk);
      case kFixed: return "chunks of " + std::to_string(fixed);
    }
    return "";
  }
};

std::vector<std::string> Cut(std::string_view bytes, const Chunking& chunking) {
  std::vector<std::string> chunks;
  std::mt19937 rng(chunking.seed);
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    std::size_t n = bytes.size() - pos;
    switch (chunking.kind) {
      case Chunking::kWhole: break;
      case Chunking::kBytes: n = 1; break;
      case Chunking::kRandom:
        n = std::uniform_int_distribution<std::size_t>(1, chunking.max_chunk)(rng);
        break;
      case Chunking::kFixed: n = chunking.fixed; break;
    }
    n = std::min(n, bytes.size() - pos);
    chunks.emplace_back(bytes.substr(pos, n));
    pos += n;
  }
  return chunks;
}

// Feeds each response (cut as asked) followed by EndOfStream. Each chunk lives in its own heap
// buffer that dies right after Feed, so a view kept past its chunk reads freed memory (which
// the sanitizer and fuzz builds catch).
Log Parse(const std::vector<std::string>& responses, const Chunking& chunking,
          Parser::Limits limits = {}, std::string_view initial_id = {}) {
  Parser parser(limits);
  if (!initial_id.empty()) parser.SetLastEventId(initial_id);
  RecordingListener listener;
  for (const std::string& response : responses) {
    for (const std::string& chunk : Cut(response, chunking)) {
      auto copy = std::make_unique<char[]>(chunk.size());
      std::memcpy(copy.get(), chunk.data(), chunk.size());
      parser.Feed(std::string_view(copy.get(), chunk.size()), listener);
    }
    parser.EndOfStream();
    listener.log.push_back(End(parser.last_event_id()));
  }
  return listener.log;
}

std::vector<Chunking> AllChunkings() {
  std::vector<Chunking> all = {{Chunking::kWhole}, {Chunking::kBytes}};
  for (std::uint32_t seed = 1; seed <= 6; ++seed) {
    all.push_back({Chunking::kRandom, seed, seed <= 3 ? 4u : 64u});
  }
  return all;
}

// The expected log must come out of every chunking.
void ExpectResponses(const std::vector<std::string>& responses, const Log& expected,
                 Parser::Limits limits = {}, std::string_view initial_id = {}) {
  for (const Chunking& chunking : AllChunkings()) {
    EXPECT_EQ(Parse(responses, chunking, limits, initial_id), expected) << chunking.Describe();
  }
}

void ExpectParse(const std::string& response, const Log& expected, Parser::Limits limits = {}) {
  ExpectResponses(std::vector<std::string>{response}, expected, limits);
}

// ---------------------------------------------------------------------------------------------
// The standard's own examples (HTML, "Server-sent events": introduction and authoring notes).

TEST(SseParserSpecExamples, ThreeMessages) {
  ExpectParse(
      "data: This is the first message.\n"
      "\n"
      "data: This is the second message, it\n"
      "data: has two lines.\n"
      "\n"
      "data: This is the third message.\n"
      "\n",
      {Msg("This is the first message."), Msg("This is the second message, it\nhas two lines."),
       Msg("This is the third message."), End()});
}

TEST(SseParserSpecExamples, EventTypes) {
  ExpectParse(
      "event: add\n"
      "data: 73857293\n"
      "\n"
      "event: remove\n"
      "data: 2153\n"
      "\n"
      "event: add\n"
      "data: 113411\n"
      "\n",
      {Ev("add", "73857293"), Ev("remove", "2153"), Ev("add", "113411"), End()});
}

TEST(SseParserSpecExamples, StockTicker) {
  ExpectParse("data: YHOO\ndata: +2\ndata: 10\n\n", {Msg("YHOO\n+2\n10"), End()});
}

TEST(SseParserSpecExamples, CommentIdsAndSpaces) {
  // First block is a comment only: the buffer is empty, nothing is dispatched. The second
  // sets the id to "1". The third's `id` line has no colon: the id becomes empty. The fourth
  // keeps the second of its two leading spaces.
  ExpectParse(
      ": test stream\n"
      "\n"
      "data: first event\n"
      "id: 1\n"
      "\n"
      "data:second event\n"
      "id\n"
      "\n"
      "data:  third event\n"
      "\n",
      {Empty(), Ev("message", "first event", "1", true), Ev("message", "second event", "", true),
       Msg(" third event"), End()});
}

TEST(SseParserSpecExamples, EmptyDataLinesAndTrailingUnfinishedEvent) {
  // "The first block fires events with the data set to the empty string, as would the last
  // block if it was followed by a blank line. The middle block fires an event with the data
  // set to a single newline character. The last block is discarded because it is not
  // followed by a blank line."
  ExpectParse("data\n\ndata\ndata\n\ndata:", {Msg(""), Msg("\n"), End()});
}

TEST(SseParserSpecExamples, SpaceAfterColonIsOptional) {
  ExpectParse("data:test\n\ndata: test\n\n", {Msg("test"), Msg("test"), End()});
}

// ---------------------------------------------------------------------------------------------
// Lines and fields.

TEST(SseParserLines, CrLfAndCrlfMixed) {
  ExpectParse("data: a\r\rdata: b\r\n\r\ndata: c\n\ndata: d\r\ndata: e\rdata: f\n\r",
              {Msg("a"), Msg("b"), Msg("c"), Msg("d\ne\nf"), End()});
}

TEST(SseParserLines, CrlfIsOneLineEndEvenSplitAcrossChunks) {
  // With CRLF read as two line ends, every event would be followed by an empty dispatch.
  ExpectParse("data: a\r\n\r\ndata: b\r\n\r\n", {Msg("a"), Msg("b"), End()});
  // A CR and the LF after it in separate Feed calls, and an empty Feed between them.
  Parser parser({});
  RecordingListener listener;
  parser.Feed("data: a\r", listener);
  parser.Feed("", listener);
  parser.Feed("\n\r", listener);
  parser.Feed("\n", listener);
  EXPECT_EQ(listener.log, Log({Msg("a")}));
}

TEST(SseParserLines, LfCrIsTwoLineEnds) {
  ExpectParse("data: a\n\rdata: b\n\n", {Msg("a"), Msg("b"), End()});
}

TEST(SseParserLines, CommentsAreIgnored) {
  ExpectParse(
      ":comment\n"
      "data: a\n"
      ": comment: with colon\n"
      ":\n"
      "data: b\n"
      "\n",
      {Msg("a\nb"), End()});
}

TEST(SseParserLines, DataWithAndWithoutColonAndSpace) {
  ExpectParse("data\n\n", {Msg(""), End()});
  ExpectParse("data:\n\n", {Msg(""), End()});
  ExpectParse("data: \n\n", {Msg(""), End()});
  ExpectParse("data:  \n\n", {Msg(" "), End()});
  ExpectParse("data:x\n\n", {Msg("x"), End()});
  ExpectParse("data: x\n\n", {Msg("x"), End()});
  ExpectParse("data:  x\n\n", {Msg(" x"), End()});
  ExpectParse("data: x \n\n", {Msg("x "), End()});
  ExpectParse("data:\tx\n\n", {Msg("\tx"), End()});
  ExpectParse("data: a:b: c\n\n", {Msg("a:b: c"), End()});
}

TEST(SseParserLines, FieldNamesAreExactAndCaseSensitive) {
  ExpectParse(
      "Data: a\n"
      "data : b\n"
      " data: c\n"
      "datax: d\n"
      "dat: e\n"
      "DATA\n"
      "foo: bar\n"
      "foo\n"
      "\n",
      {Empty(), End()});
}

TEST(SseParserLines, LongUnknownNamesAndValuesAreSkipped) {
  const std::string long_name(5000, 'n');
  ExpectParse(long_name + ": v\n" + long_name + "\nunknown: " + std::string(5000, 'v') +
                  "\ndata: ok\n\n",
              {Msg("ok"), End()});
}

TEST(SseParserLines, DataBufferKeepsEmptyLinesBetweenValues) {
  ExpectParse("data: a\ndata\ndata:\ndata: b\n\n", {Msg("a\n\n\nb"), End()});
}

TEST(SseParserLines, NulInDataIsKept) {
  ExpectParse(Bytes("data: a\0b\n\n"), {Msg(Bytes("a\0b")), End()});
}

// ---------------------------------------------------------------------------------------------
// event, id, retry, dispatch.

TEST(SseParserFields, EventTypeDefaultsAndResets) {
  ExpectParse(
      "event: a\n"
      "data: 1\n"
      "\n"
      "data: 2\n"
      "\n"
      "event:\n"
      "data: 3\n"
      "\n"
      "event: x\n"
      "event: y\n"
      "data: 4\n"
      "\n"
      "data: 5\n"
      "event: late\n"
      "\n",
      {Ev("a", "1"), Msg("2"), Msg("3"), Ev("y", "4"), Ev("late", "5"), End()});
}

TEST(SseParserFields, EventTypeWithoutDataIsDropped) {
  // The type buffer is reset by the empty dispatch, so it does not leak into the next event.
  ExpectParse("event: a\n\ndata: x\n\n", {Empty(), Msg("x"), End()});
}

TEST(SseParserFields, IdPersistsAcrossEventsAndIsSetBeforeTheDataCheck) {
  ExpectParse(
      "id: 1\n"
      "data: a\n"
      "\n"
      "data: b\n"
      "\n"
      "id: 2\n"
      "\n"
      "data: c\n"
      "\n"
      "data: d\n"
      "id: 3\n"
      "\n",
      {Ev("message", "a", "1", true), Ev("message", "b", "1"), Empty("2"),
       Ev("message", "c", "2"), Ev("message", "d", "3", true), End("3")});
}

TEST(SseParserFields, IdCanBeClearedWithAnEmptyValue) {
  ExpectParse("id: 7\ndata: a\n\nid:\ndata: b\n\ndata: c\n\n",
              {Ev("message", "a", "7", true), Ev("message", "b", "", true), Msg("c"), End()});
}

TEST(SseParserFields, IdWithNulIsIgnored) {
  ExpectParse(Bytes("id: 5\ndata: a\n\nid: 6\0x\ndata: b\n\n"),
              {Ev("message", "a", "5", true), Ev("message", "b", "5"), End("5")});
}

TEST(SseParserFields, IdLastOneInBlockWins) {
  ExpectParse("id: 1\nid: 2\ndata: a\n\n", {Ev("message", "a", "2", true), End("2")});
}

TEST(SseParserFields, IdKeepsSpacesAfterTheFirst) {
  ExpectParse("id:  x \ndata: a\n\n", {Ev("message", "a", " x ", true), End(" x ")});
}

TEST(SseParserFields, RetryDigitsOnly) {
  ExpectParse(
      "retry: 1000\n"
      "retry:250\n"
      "retry: 10a\n"
      "retry: -1\n"
      "retry: 1.5\n"
      "retry:\n"
      "retry: \n"
      "retry\n"
      "retry:  100\n"
      "retry: 0\n"
      "retry: 007\n"
      "retry: 99999999999999999999999999\n"
      "data: x\n"
      "\n",
      {Retry(1000), Retry(250), Retry(0), Retry(7),
       Retry(std::numeric_limits<std::uint64_t>::max()), Msg("x"), End()});
}

TEST(SseParserFields, RetryFiresWithoutABlankLine) {
  ExpectParse("retry: 5", {End()});  // unfinished line: discarded
  ExpectParse("retry: 5\n", {Retry(5), End()});
}

TEST(SseParserFields, BlankLinesWithoutDataAreEmptyDispatches) {
  ExpectParse("\n\n\r\n", {Empty(), Empty(), Empty(), End()});
}

// ---------------------------------------------------------------------------------------------
// Byte order mark.

TEST(SseParserBom, SkippedAtStartOfEachResponseOnly) {
  const std::string bom = "\xEF\xBB\xBF";
  ExpectResponses({bom + "data: a\n\n", bom + "data: b\n\n"},
              {Msg("a"), End(), Msg("b"), End()});
}

TEST(SseParserBom, SecondBomIsPartOfTheFieldName) {
  const std::string bom = "\xEF\xBB\xBF";
  ExpectParse(bom + bom + "data: a\n\n", {Empty(), End()});
}

TEST(SseParserBom, BomAfterTheStartIsContent) {
  const std::string bom = "\xEF\xBB\xBF";
  ExpectParse("data: a\n\n" + bom + "data: b\n\ndata: " + bom + "c\n\n",
              {Msg("a"), Empty(), Msg(bom + "c"), End()});
}

TEST(SseParserBom, PartialBomIsDecodedAsContent) {
  // EF BB followed by 'd' is an ill-formed sequence: one U+FFFD in the field name.
  ExpectParse(std::string("\xEF\xBB") + "data: a\n\ndata: b\n\n", {Empty(), Msg("b"), End()});
  ExpectParse(std::string("\xEF") + "\ndata: b\n\n", {Msg("b"), End()});
  ExpectParse("\xEF\xBB", {End()});
}

TEST(SseParserBom, OnlyABomIsAnEmptyStream) {
  ExpectParse("\xEF\xBB\xBF", {End()});
}

// ---------------------------------------------------------------------------------------------
// UTF-8 decoding with replacement.

const std::string kFffd = "\xEF\xBF\xBD";

TEST(SseParserUtf8, ValidMultibyteIsKept) {
  const std::string text = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF";
  ExpectParse("event: " + text + "\nid: " + text + "\ndata: " + text + "\n\n",
              {Ev(text, text, text, true), End(text)});
}

TEST(SseParserUtf8, OverlongFormsAreReplacedBytewise) {
  // C0 and C1 never start a sequence; E0 80 and F0 80 are overlong at the second byte.
  ExpectParse("data: \xC0\x80|\xE0\x80\x80|\xF0\x80\x80\x80\n\n",
              {Msg(kFffd + kFffd + "|" + kFffd + kFffd + kFffd + "|" + kFffd + kFffd + kFffd +
                   kFffd),
               End()});
}

TEST(SseParserUtf8, SurrogatesAndOutOfRangeAreReplaced) {
  ExpectParse("data: \xED\xA0\x80|\xF4\x90\x80\x80|\xF5|\xFF\n\n",
              {Msg(kFffd + kFffd + kFffd + "|" + kFffd + kFffd + kFffd + kFffd + "|" + kFffd +
                   "|" + kFffd),
               End()});
}

TEST(SseParserUtf8, TruncatedSequenceIsOneReplacement) {
  // Maximal subpart: a valid prefix of a sequence cut short is one U+FFFD, and the byte that
  // cut it is decoded on its own.
  ExpectParse("data: \xF0\x9F\x98|\xE2\x82\n\n", {Msg(kFffd + "|" + kFffd), End()});
  ExpectParse("data: \xE2\x82\xE2\x82\xAC\n\n", {Msg(kFffd + "\xE2\x82\xAC"), End()});
  ExpectParse("data: \xC3\n\n", {Msg(kFffd), End()});
}

TEST(SseParserUtf8, StrayContinuationBytes) {
  ExpectParse("data: \x80\xBF" "a\n\n", {Msg(kFffd + kFffd + "a"), End()});
}

TEST(SseParserUtf8, TruncatedAtEndOfStreamIsDiscardedWithTheEvent) {
  ExpectResponses({"data: a\n\ndata: \xF0\x9F", "data: b\n\n"}, {Msg("a"), End(), Msg("b"), End()});
}

TEST(SseParserUtf8, SequenceSplitAcrossChunksDecodesAsOne) {
  // The harness also splits at every byte; this case pins the split explicitly.
  Parser parser({});
  RecordingListener listener;
  parser.Feed("data: \xF0\x9F", listener);
  parser.Feed("\x98", listener);
  parser.Feed("\x80\n\n", listener);
  parser.Feed("data: \xE2", listener);
  parser.Feed("\n\n", listener);
  EXPECT_EQ(listener.log, Log({Msg("\xF0\x9F\x98\x80"), Msg(kFffd)}));
}

TEST(SseParserUtf8, InvalidBytesInTypeAndIdAreReplaced) {
  ExpectParse("event: a\xFF\nid: \xC3(\ndata: x\n\n",
              {Ev("a" + kFffd, "x", kFffd + "(", true), End(kFffd + "(")});
}

TEST(SseParserUtf8, NonAsciiFieldNameMatchesNothing) {
  ExpectParse("d\xC3\xA1ta: x\n\xFF" "data: y\n\n", {Empty(), End()});
}

// The bulk validator has a vector path for long inputs: it must agree with a plain reading of
// the Unicode standard's table of well-formed byte sequences (Table 3-7) wherever a sequence
// or an error falls relative to its 32- and 64-byte blocks.
std::size_t ReferenceValidPrefix(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    auto in = [&](std::size_t k, unsigned lo, unsigned hi) {
      return i + k < n && p[i + k] >= lo && p[i + k] <= hi;
    };
    const unsigned b = p[i];
    std::size_t len = 0;
    if (b <= 0x7F) {
      len = 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
      len = in(1, 0x80, 0xBF) ? 2 : 0;
    } else if (b == 0xE0) {
      len = in(1, 0xA0, 0xBF) && in(2, 0x80, 0xBF) ? 3 : 0;
    } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
      len = in(1, 0x80, 0xBF) && in(2, 0x80, 0xBF) ? 3 : 0;
    } else if (b == 0xED) {
      len = in(1, 0x80, 0x9F) && in(2, 0x80, 0xBF) ? 3 : 0;
    } else if (b == 0xF0) {
      len = in(1, 0x90, 0xBF) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
    } else if (b >= 0xF1 && b <= 0xF3) {
      len = in(1, 0x80, 0xBF) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
    } else if (b == 0xF4) {
      len = in(1, 0x80, 0x8F) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
    }
    if (len == 0) return i;
    i += len;
  }
  return n;
}

TEST(SseParserUtf8, BulkValidatorAgreesAtEveryPosition) {
  const std::vector<std::string> inserts = {
      "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xF4\x8F\xBF\xBF", "\xEF\xBF\xBF",
      "\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80", "\xED\x9F\xBF", "\xEE\x80\x80",
      "\xC0\x80", "\xC1\xBF", "\xE0\x9F\xBF", "\xED\xA0\x80", "\xF0\x8F\xBF\xBF",
      "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF", "\x80", "\xBF\xBF", "\xC3",
      "\xE2\x82", "\xF0\x9F\x98", "\xC3\xC3\xA9", "\xE2\x82\xAC\xAC", "\xF8\x88\x80\x80\x80"};
  for (const std::string& insert : inserts) {
    for (std::size_t pos = 0; pos < 200; ++pos) {
      for (const char* filler : {"a", "\xC3\xA9"}) {
        std::string text;
        while (text.size() < pos) text += filler;
        text.resize(pos, 'a');  // a cut two-byte filler becomes ASCII, keeping text valid
        if (!text.empty() && static_cast<unsigned char>(text.back()) == 0xC3) text.back() = 'a';
        text += insert;
        text += std::string(100, 'z');
        for (std::size_t len : {text.size(), pos + insert.size(), pos + 1}) {
          const std::string_view view(text.data(), std::min(len, text.size()));
          ASSERT_EQ(Utf8ValidPrefix(view.data(), view.size()), ReferenceValidPrefix(view))
              << "insert " << ::testing::PrintToString(insert) << " at " << pos << " len "
              << view.size();
        }
      }
    }
  }
}

TEST(SseParserUtf8, BulkValidatorAgreesOnByteCombinations) {
  const unsigned interesting[] = {0x00, 0x41, 0x80, 0x8F, 0x90, 0x9F,
                                  0xA0, 0xBF, 0xC2, 0xE0, 0xED, 0xF4};
  std::string text(140, 'x');
  for (unsigned b0 = 0; b0 < 256; ++b0) {
    for (unsigned b1 : interesting) {
      for (unsigned b2 : interesting) {
        for (unsigned b3 : interesting) {
          for (std::size_t pos : {61u, 63u, 94u}) {
            text.replace(pos, 4, {static_cast<char>(b0), static_cast<char>(b1),
                                  static_cast<char>(b2), static_cast<char>(b3)});
            const std::size_t got = Utf8ValidPrefix(text.data(), text.size());
            const std::size_t want = ReferenceValidPrefix(text);
            text.replace(pos, 4, "xxxx");
            ASSERT_EQ(got, want) << b0 << " " << b1 << " " << b2 << " " << b3 << " at " << pos;
          }
        }
      }
    }
  }
}

TEST(SseParserUtf8, BulkValidatorAgreesOnRandomText) {
  const std::vector<std::string> pieces = {
      "a", "bcdefgh", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xF4\x8F\xBF\xBF",
      "\xED\x9F\xBF", "\xFF", "\x80", "\xE2\x82", "\xF0\x9F", "\xED\xA0\x80", "\xC0\xAF"};
  std::mt19937 rng(7);
  for (int round = 0; round < 20000; ++round) {
    std::string text;
    const std::size_t target = std::uniform_int_distribution<std::size_t>(60, 400)(rng);
    // Mostly valid text, so that errors land at every depth, not only near the start.
    const std::size_t valid_pieces = 6;
    while (text.size() < target) {
      const bool error = std::uniform_int_distribution<int>(0, 40)(rng) == 0;
      const std::size_t k = error
          ? std::uniform_int_distribution<std::size_t>(valid_pieces, pieces.size() - 1)(rng)
          : std::uniform_int_distribution<std::size_t>(0, valid_pieces - 1)(rng);
      text += pieces[k];
    }
    ASSERT_EQ(Utf8ValidPrefix(text.data(), text.size()), ReferenceValidPrefix(text))
        << ::testing::PrintToString(text);
  }
}

// ---------------------------------------------------------------------------------------------
// End of stream, reconnects and the last event ID.

TEST(SseParserEndOfStream, UnfinishedEventIsDiscarded) {
  ExpectResponses({"data: a\n\ndata: b\nevent: t\n", "data: c\n\n"},
              {Msg("a"), End(), Msg("c"), End()});
}

TEST(SseParserEndOfStream, UnfinishedLineIsDiscarded) {
  ExpectResponses({"data: a\n\ndata: partial", "\n\n"},
                  {Msg("a"), End(), Empty(), Empty(), End()});
}

TEST(SseParserEndOfStream, IdOfUnfinishedBlockDoesNotApply) {
  // The id arrived but its event never completed: neither last_event_id() nor the next
  // response's first event may carry it.
  ExpectResponses({"id: 1\ndata: a\n\nid: 2\ndata: b\n", "data: c\n\n"},
              {Ev("message", "a", "1", true), End("1"), Ev("message", "c", "1"), End("1")});
}

TEST(SseParserEndOfStream, LastEventIdSurvivesReconnects) {
  ExpectResponses({"id: 9\n\n", "data: a\n\n", "data: b\n\n"},
              {Empty("9"), End("9"), Ev("message", "a", "9"), End("9"), Ev("message", "b", "9"),
               End("9")});
}

TEST(SseParserEndOfStream, CrAtEndDoesNotSwallowTheNextResponsesLf) {
  ExpectResponses({"data: a\r", "\ndata: b\n\n"}, {End(), Empty(), Msg("b"), End()});
}

TEST(SseParserEndOfStream, SetLastEventIdSeedsTheCheckpoint) {
  ExpectResponses({"data: a\n\nid: 5\ndata: b\n\n"},
              {Ev("message", "a", "41"), Ev("message", "b", "5", true), End("5")}, {}, "41");
  ExpectResponses({"id: 5\ndata: a\n"}, {End("41")}, {}, "41");
}

// ---------------------------------------------------------------------------------------------
// Limits.

Parser::Limits SmallLimits() {
  Parser::Limits limits;
  limits.max_event_size = 64;
  limits.max_id_size = 16;
  return limits;
}

TEST(SseParserLimits, EventAtTheLimitPassesOneByteMoreIsDropped) {
  const std::string at_limit(63, 'a');  // 63 + LF = 64
  const std::string over(64, 'b');      // 64 + LF = 65
  ExpectParse("data: " + at_limit + "\n\ndata: " + over + "\n\ndata: ok\n\n",
              {Msg(at_limit), Oversized(6 + 64), Empty(), Msg("ok"), End()}, SmallLimits());
}

TEST(SseParserLimits, OversizedMultiLineEventThenGoodEvent) {
  const std::string line(30, 'x');
  // Lines of 30 + LF: the third data line pushes the buffer to 93 > 64.
  ExpectParse(": c\ndata: " + line + "\ndata: " + line + "\nevent: t\ndata: " + line +
                  "\ndata: more\n\ndata: good\n\n",
              {Oversized(3 + 36 + 36 + 8 + 36), Empty(), Msg("good"), End()}, SmallLimits());
}

TEST(SseParserLimits, TypeAndIdCountTowardsTheEvent) {
  const std::string type(40, 't');
  ExpectParse("event: " + type + "\ndata: " + std::string(30, 'd') + "\n\ndata: ok\n\n",
              {Oversized(47 + 36), Empty(), Msg("ok"), End()}, SmallLimits());
  const std::string id(16, 'i');
  // 48 + LF of data and a 16-byte id: 65.
  ExpectParse("data: " + std::string(48, 'd') + "\nid: " + id + "\n\ndata: next\n\n",
              {Oversized(54 + 20), Empty(id), Ev("message", "next", id), End(id)},
              SmallLimits());
}

TEST(SseParserLimits, IdOfDroppedEventStillApplies) {
  const std::string big(100, 'x');
  ExpectParse("id: 1\ndata: a\n\nid: 2\ndata: " + big + "\nid: 3\nretry: 7\n\ndata: b\n\n",
              {Ev("message", "a", "1", true), Oversized(5 + 106), Retry(7), Empty("3"),
               Ev("message", "b", "3"), End("3")},
              SmallLimits());
}

TEST(SseParserLimits, OversizedIdIsIgnoredAndReported) {
  const std::string long_id(17, '7');
  ExpectParse("id: 1\n\nid: " + long_id + "\ndata: a\n\nid: " + std::string(16, '8') + "\n\n",
              {Empty("1"), OversizedId(17), Ev("message", "a", "1"), Empty(std::string(16, '8')),
               End(std::string(16, '8'))},
              SmallLimits());
}

TEST(SseParserLimits, HugeIdWithNulIsSilentlyIgnored) {
  ExpectParse(std::string(40, 'i').insert(0, "id: ").append(Bytes("\0\n\n")),
              {Empty(), End()}, SmallLimits());
}

TEST(SseParserLimits, LongCommentsAndUnknownFieldsNeverCount) {
  ExpectParse(":" + std::string(1000, 'c') + "\nx-long: " + std::string(1000, 'u') +
                  "\ndata: ok\n\n",
              {Msg("ok"), End()}, SmallLimits());
}

TEST(SseParserLimits, InvalidUtf8GrowsDataPastTheLimit) {
  // 30 raw bytes fit, but each becomes a 3-byte U+FFFD: 90 bytes decoded.
  ExpectParse("data: " + std::string(30, '\xFF') + "\n\ndata: " + std::string(21, '\xFF') +
                  "\n\n",
              {Oversized(36), Empty(), Msg([] {
                 std::string s;
                 for (int i = 0; i < 21; ++i) s += kFffd;
                 return s;
               }()),
               End()},
              SmallLimits());
}

TEST(SseParserLimits, OversizedEventUnfinishedAtEndOfStreamIsNotReported) {
  ExpectResponses({"data: " + std::string(100, 'x'), "data: ok\n\n"}, {End(), Msg("ok"), End()},
              SmallLimits());
}

TEST(SseParserLimits, OversizedEventEndingAtEndOfStreamResetsTheDrop) {
  ExpectResponses({"data: " + std::string(100, 'x') + "\ndata: y\n", "data: ok\n\n"},
              {Oversized(106), End(), Msg("ok"), End()}, SmallLimits());
}

TEST(SseParserLimits, TenMegabyteLineInChunksStaysBounded) {
  const std::string big = "data: " + std::string(10 * 1024 * 1024, 'x') + "\n\ndata: ok\n\n";
  std::vector<std::string> chunks = Cut(big, {Chunking::kFixed, 0, 0, 64 * 1024});
  Parser::Limits limits;  // the defaults: 900 KiB
  Parser parser(limits);
  RecordingListener listener;
  listener.log.reserve(8);
  std::size_t peak;
  {
    HeapWindow window;
    for (const std::string& chunk : chunks) parser.Feed(chunk, listener);
    peak = window.peak_bytes();
  }
  EXPECT_EQ(listener.log, Log({Oversized(6 + 10 * 1024 * 1024), Empty(), Msg("ok")}));
  // The data buffer grows to the limit at most; geometric growth and one reallocation can
  // briefly hold about three times that. Buffering the line would need over 10 MiB.
  EXPECT_LT(peak, 3 * limits.max_event_size + 64 * 1024);
}

TEST(SseParserLimits, TenMegabyteLineInOneChunkIsNotCopied) {
  const std::string big = "data: " + std::string(10 * 1024 * 1024, 'x') + "\n\ndata: ok\n\n";
  Parser parser({});
  RecordingListener listener;
  listener.log.reserve(8);
  std::size_t peak;
  {
    HeapWindow window;
    parser.Feed(big, listener);
    peak = window.peak_bytes();
  }
  EXPECT_EQ(listener.log, Log({Oversized(6 + 10 * 1024 * 1024), Empty(), Msg("ok")}));
  EXPECT_LT(peak, 64 * 1024);
}

TEST(SseParserLimits, TenMegabyteCommentInChunksIsNotBuffered) {
  const std::string big = ":" + std::string(10 * 1024 * 1024, 'c') + "\ndata: ok\n\n";
  std::vector<std::string> chunks = Cut(big, {Chunking::kFixed, 0, 0, 64 * 1024});
  Parser parser({});
  RecordingListener listener;
  listener.log.reserve(8);
  std::size_t peak;
  {
    HeapWindow window;
    for (const std::string& chunk : chunks) parser.Feed(chunk, listener);
    peak = window.peak_bytes();
  }
  EXPECT_EQ(listener.log, Log({Msg("ok")}));
  EXPECT_LT(peak, 64 * 1024);
}

TEST(SseParserLimits, DefaultLimits) {
  Parser parser({});
  EXPECT_EQ(parser.limits().max_event_size, 900u * 1024u);
  EXPECT_EQ(parser.limits().max_id_size, 64u * 1024u);
}

// ---------------------------------------------------------------------------------------------
// Steady state: no heap allocation per event.

// Counts events without allocating.
class CountingListener : public ParserListener {
 public:
  void OnEvent(const Event& event) override {
    ++events;
    bytes += event.data.size() + event.type.size() + event.last_event_id.size();
  }
  void OnEmptyDispatch(std::string_view) override { ++empty; }
  void OnRetry(uint64_t) override { ++other; }
  void OnOversizedEvent(std::size_t) override { ++other; }
  void OnOversizedId(std::size_t) override { ++other; }

  std::size_t events = 0;
  std::size_t empty = 0;
  std::size_t other = 0;
  std::size_t bytes = 0;
};

std::string SteadyStream(std::size_t events) {
  std::string stream;
  for (std::size_t i = 0; i < events; ++i) {
    const std::string id = "event-id-" + std::to_string(1000000 + i) + "-long-enough-for-heap";
    switch (i % 4) {
      case 0:
        stream += "data: {\"n\":" + std::to_string(i) + ",\"pad\":\"" + std::string(60, 'p') +
                  "\"}\n\n";
        break;
      case 1:
        stream += "event: update-with-a-long-event-type-name\nid: " + id +
                  "\ndata: line one of a multi-line event " + std::string(40, 'a') +
                  "\ndata: line two\r\n\r\n";
        break;
      case 2:
        stream += ": keep-alive\nid: " + id + "\n\n";
        break;
      default:
        stream += "id: " + id + "\ndata: caf\xC3\xA9 " + std::string(500, 'b') + "\n\n";
        break;
    }
  }
  return stream;
}

TEST(SseParserPerformance, NoAllocationPerEventInSteadyState) {
  Parser parser({});
  CountingListener listener;
  const std::string warm_up = SteadyStream(1000);
  const std::string measured = SteadyStream(10000);
  // Odd chunk sizes put line and event boundaries at many different places in the chunks.
  const std::vector<std::string> warm_chunks = Cut(warm_up, {Chunking::kFixed, 0, 0, 997});
  const std::vector<std::string> measured_chunks = Cut(measured, {Chunking::kFixed, 0, 0, 997});
  for (const std::string& chunk : warm_chunks) parser.Feed(chunk, listener);
  const std::size_t warm_events = listener.events;
  std::size_t allocations;
  {
    HeapWindow window;
    for (const std::string& chunk : measured_chunks) parser.Feed(chunk, listener);
    allocations = window.allocations();
  }
  EXPECT_EQ(listener.events - warm_events, 7500u);
  EXPECT_EQ(allocations, 0u);
}

// ---------------------------------------------------------------------------------------------
// A reference interpreter written line by line from the standard, with no concern for speed or
// memory: decode the whole response, split it into lines, run the field steps. It has no size
// limits, so it is compared with the parser under limits large enough never to trigger.

using ::sse2kafka::test_support::ReferenceDecode;

Log ReferenceInterpretation(const std::vector<std::string>& responses) {
  Log log;
  std::string last_event_id;
  for (const std::string& response : responses) {
    const std::string text = ReferenceDecode(response);
    std::string data;
    std::string type;
    std::string id_buffer = last_event_id;
    bool id_in_block = false;
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
          log.push_back(Empty(last_event_id));
        } else {
          data.pop_back();
          log.push_back(Ev(type.empty() ? "message" : type, data, last_event_id, id_in_block));
          data.clear();
          type.clear();
        }
        id_in_block = false;
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
          id_in_block = true;
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
          log.push_back(Retry(ms));
        }
      }
    }
    // End of the response: the unfinished block is discarded, last_event_id stays.
    log.push_back(End(last_event_id));
  }
  return log;
}

Parser::Limits UnlimitedLimits() {
  Parser::Limits limits;
  limits.max_event_size = std::numeric_limits<std::size_t>::max() / 4;
  limits.max_id_size = std::numeric_limits<std::size_t>::max() / 4;
  return limits;
}

TEST(SseParserReference, SpecExamplesAgreeWithTheReference) {
  const std::string stream =
      ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
      "data:  third event\n\ndata\n\ndata\ndata\n\ndata:";
  EXPECT_EQ(Parse({stream}, {Chunking::kWhole}), ReferenceInterpretation({stream}));
}

// ---------------------------------------------------------------------------------------------
// A randomised cross-check: any chunking of any mixture of the constructs above gives the
// same callbacks as feeding it whole, and, without limits, the same as the reference.

TEST(SseParserChunking, RandomStreamsGiveTheSameResultForEveryChunking) {
  const std::vector<std::string> pieces = {
      "data: a\n", "data:b\r\n", "data\r", "\n", "\r\n", "\r", "event: t\n", "id: 1\n", "id\n",
      ": c\n", "retry: 12\n", "retry: x\n", "\xEF\xBB\xBF", "\xF0\x9F\x98\x80", "\xE2\x82",
      "\xFF", Bytes("id: \0\n"), "data: " + std::string(70, 'L') + "\n",
      "id: " + std::string(20, 'I') + "\n", "x: y\n", "data: \n", "data:  x\n", "event:\n",
      "id: 2\r\n", "\xC3", "\xA9", ":\n", "retry:  5\n", "data", ":"};
  std::mt19937 rng(12345);
  for (int round = 0; round < 500; ++round) {
    std::string stream;
    const int n = std::uniform_int_distribution<int>(1, 30)(rng);
    for (int i = 0; i < n; ++i) {
      stream += pieces[std::uniform_int_distribution<std::size_t>(0, pieces.size() - 1)(rng)];
    }
    const Log whole = Parse({stream, stream}, {Chunking::kWhole}, SmallLimits());
    for (const Chunking& chunking : AllChunkings()) {
      ASSERT_EQ(Parse({stream, stream}, chunking, SmallLimits()), whole)
          << chunking.Describe() << " round " << round;
    }
    const Log reference = ReferenceInterpretation({stream, stream});
    ASSERT_EQ(Parse({stream, stream}, {Chunking::kWhole}, UnlimitedLimits()), reference)
        << "round " << round;
    ASSERT_EQ(Parse({stream, stream}, {Chunking::kRandom, 99, 8}, UnlimitedLimits()), reference)
        << "round " << round;
  }
}

}  // namespace
}  // namespace sse2kafka::sse
