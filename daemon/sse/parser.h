// Incremental parser for the WHATWG HTML "event stream interpretation"
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
//
// The parser takes the bytes of one HTTP response body in arbitrary chunks and reports every
// event the algorithm dispatches. It does no I/O and knows nothing about where the bytes come
// from or where events go.
//
// Memory is bounded: the bytes the parser holds for one event (decoded data with its LFs,
// event type and last event ID buffer) never exceed Limits::max_event_size, plus at most
// Limits::max_id_size for an `id` line still arriving. Lines that cannot matter (comments,
// unknown fields, the rest of a dropped event) are skipped without being buffered, however
// long. An event whose decoded size would exceed the limit is dropped whole: its `data` and
// `event` lines up to the blank line that ends it are discarded, it is reported through
// ParserListener::OnOversizedEvent, and the stream goes on with the next event. Whether an
// event is oversized depends only on its bytes, never on how they were split into chunks.
//
// Steady state allocates nothing per event: buffers keep their capacity, and a data line that
// lies whole inside the chunk being fed is referenced rather than copied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sse/utf8.h"

namespace sse2kafka::sse {

// One dispatched event. The views stay valid only during the ParserListener::OnEvent call.
struct Event {
  std::string_view type;           // the event type; "message" when the block set none
  std::string_view data;           // lines joined by LF, final LF removed; valid UTF-8
  std::string_view last_event_id;  // the last event ID string at dispatch (may be empty)
  bool id_in_block = false;        // true when this event's own block had an `id` field
};

// Receives what the parser finds. Callbacks run synchronously inside Parser::Feed.
class ParserListener {
 public:
  virtual ~ParserListener() = default;

  // A dispatched event (its data buffer was not empty).
  virtual void OnEvent(const Event& event) = 0;

  // A block ended (blank line) with an empty data buffer. The algorithm still set the last
  // event ID string (the checkpoint may advance over it) but dispatches nothing.
  // Also called at the blank line that ends an oversized (dropped) event: `id` lines of that
  // block apply as the standard says, so a checkpoint can move past the dropped event instead
  // of having every resume replay it.
  virtual void OnEmptyDispatch(std::string_view last_event_id) = 0;

  // A `retry` field with a value of ASCII digits only; the value in milliseconds
  // (saturated at UINT64_MAX for absurdly long digit strings).
  virtual void OnRetry(uint64_t milliseconds) = 0;

  // An event is being dropped because it grew beyond Limits::max_event_size. Called once, at
  // the end of the line that crossed the limit; `bytes_seen` is the raw size of the block's
  // lines up to and including that line (line ends not counted). OnEmptyDispatch follows when
  // the block's blank line arrives; an event unfinished at EndOfStream is discarded silently.
  virtual void OnOversizedEvent(std::size_t bytes_seen) = 0;

  // An `id` field was ignored because its value (after the optional leading space, before
  // UTF-8 repair) is longer than Limits::max_id_size; `id_size` is that length. An id
  // containing NUL is ignored silently, as the standard says, whatever its length.
  virtual void OnOversizedId(std::size_t id_size) = 0;
};

class Parser {
 public:
  struct Limits {
    std::size_t max_event_size = 900 * 1024;  // decoded data + type + id buffer, in bytes
    std::size_t max_id_size = 64 * 1024;      // longer `id` values are ignored
  };

  explicit Parser(Limits limits);
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  // Parses `bytes`, the next chunk of the response body, and reports to `listener` every
  // event it completes. Any byte sequence is accepted: invalid UTF-8 is replaced by U+FFFD
  // (also across chunk boundaries), a leading UTF-8 BOM of a response is skipped.
  void Feed(std::string_view bytes, ParserListener& listener);

  // Ends the current response: an unfinished event is discarded, as the standard says at end
  // of file, and the next Feed starts a new response (a BOM is skipped again). The last event
  // ID survives, as it does across reconnects of an EventSource; an `id` line of the
  // unfinished block is discarded with it (it neither changes last_event_id() nor applies to
  // the next response's events).
  void EndOfStream();

  // Sets the last event ID (and the last event ID buffer), e.g. from a checkpoint at start.
  void SetLastEventId(std::string_view id);

  // The last event ID string: the ID set by the most recent dispatch (or SetLastEventId).
  const std::string& last_event_id() const { return last_event_id_; }

  const Limits& limits() const { return limits_; }

 private:
  // The field a line names; kNone for comments, unknown names and fields being dropped.
  enum class Field : std::uint8_t { kNone, kData, kEvent, kId, kRetry };
  // Where the parser is inside the current line. A line may arrive in several pieces.
  enum class LineState : std::uint8_t {
    kStart,       // no byte of the line seen yet
    kName,        // inside the field name, no colon yet
    kValueStart,  // colon seen; the optional single space not yet decided
    kValue,       // inside the value of a known field
    kSkip,        // the rest of the line does not matter (comment, unknown field, dropped)
  };

  void SkipByteOrderMark(const char*& p, const char* end, ParserListener& listener);
  void ProcessBytes(const char* p, const char* end, ParserListener& listener);
  void WholeLine(const char* p, std::size_t n, bool ascii, ParserListener& listener);
  void WholeDataValue(const char* p, std::size_t n, bool ascii, ParserListener& listener);
  void WholeEventValue(const char* p, std::size_t n, bool ascii, ParserListener& listener);
  void LineBytes(const char* p, std::size_t n, bool ascii, bool line_complete);
  void LineEnd(ParserListener& listener);
  void BlankLine(ParserListener& listener);
  void BeginValue();
  void AppendValue(const char* p, std::size_t n, bool ascii, bool whole_value);
  void AppendData(const char* p, std::size_t n, bool ascii, bool whole_value);
  void AppendType(const char* p, std::size_t n, bool ascii);
  void AppendId(const char* p, std::size_t n);
  void AppendRetry(const char* p, std::size_t n);
  void EndValue(ParserListener& listener);
  void AcceptId(const char* p, std::size_t n, ParserListener& listener);
  void Dispatch(ParserListener& listener);
  void EndDroppedBlock(ParserListener& listener);
  void DropCurrentLine();
  void ReportOversized(ParserListener& listener);
  void ClearEventBuffers();
  void MaterializeDataView();
  Field KnownField(const char* name, std::size_t n) const;
  std::size_t DataSize() const { return data_in_view_ ? data_view_.size() + 1 : data_.size(); }
  std::size_t HeldBytes() const { return DataSize() + type_.size() + id_buffer_.size(); }

  Limits limits_;
  bool avx2_;                  // the CPU can scan long lines with AVX2
  std::string last_event_id_;  // "last event ID string" of the standard
  std::string id_buffer_;      // "last event ID buffer"
  std::string data_;           // "data buffer", including the LF after every line
  std::string type_;           // "event type buffer"
  std::string id_value_;       // raw value of an `id` line still being received
  // A block's first data line, when it lies whole inside the chunk being fed, is referenced
  // instead of copied; it is copied into data_ when a second data line comes or the chunk ends.
  std::string_view data_view_;
  bool data_in_view_ = false;
  bool value_in_view_ = false;  // the current line's value is data_view_ (its LF is implied)
  Utf8Decoder decoder_;         // carries a UTF-8 sequence split between pieces of a value

  LineState line_state_ = LineState::kStart;
  Field field_ = Field::kNone;
  char name_[5] = {};            // a field name split between chunks (no known name is longer)
  std::size_t name_len_ = 0;
  bool id_has_nul_ = false;
  std::size_t id_value_size_ = 0;
  bool retry_valid_ = false;
  std::size_t retry_digits_ = 0;
  std::uint64_t retry_value_ = 0;

  bool id_in_block_ = false;
  bool line_oversized_ = false;     // this line pushed the event past the limit
  bool discarding_event_ = false;   // oversized: drop data and event lines until the blank line
  std::size_t block_bytes_ = 0;     // bytes of the current block's lines, line ends excluded
  bool at_stream_start_ = true;     // a BOM may follow
  std::size_t bom_matched_ = 0;     // bytes of a BOM seen at the start of the response
  bool after_cr_ = false;           // last chunk ended in CR: a leading LF belongs to it
};

}  // namespace sse2kafka::sse
