// Incremental parser for the WHATWG HTML "event stream interpretation"
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
//
// The parser takes the bytes of one HTTP response body in arbitrary chunks and reports every
// event the algorithm dispatches. It does no I/O and knows nothing about where the bytes come
// from or where events go.
//
// Memory is bounded: the bytes the parser holds for one event (data, event type, id, and the
// current unfinished line) never exceed Limits::max_event_size; an event that would exceed it
// is dropped whole (its lines up to the blank line that ends it are discarded) and reported
// through ParserListener::OnOversizedEvent. The stream goes on with the next event.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

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
  virtual void OnEmptyDispatch(std::string_view last_event_id) = 0;

  // A `retry` field with a value of ASCII digits only; the value in milliseconds
  // (saturated at UINT64_MAX for absurdly long digit strings).
  virtual void OnRetry(uint64_t milliseconds) = 0;

  // An event was dropped because it grew beyond Limits::max_event_size. `bytes_seen` is how
  // many bytes of it had arrived when the limit was hit.
  virtual void OnOversizedEvent(std::size_t bytes_seen) = 0;

  // An `id` field was ignored because its value is longer than Limits::max_id_size.
  virtual void OnOversizedId(std::size_t id_size) = 0;
};

class Parser {
 public:
  struct Limits {
    std::size_t max_event_size = 900 * 1024;  // data + type + id + pending line, in bytes
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
  // ID survives, as it does across reconnects of an EventSource.
  void EndOfStream();

  // Sets the last event ID (and the last event ID buffer), e.g. from a checkpoint at start.
  void SetLastEventId(std::string_view id);

  // The last event ID string: the ID set by the most recent dispatch (or SetLastEventId).
  const std::string& last_event_id() const { return last_event_id_; }

  const Limits& limits() const { return limits_; }

 private:
  // Implementation state; see parser.cpp.
  void ProcessLine(std::string_view line, ParserListener& listener);
  void ProcessField(std::string_view name, std::string_view value, ParserListener& listener);
  void Dispatch(ParserListener& listener);
  void AppendDecoded(std::string_view bytes, std::string& out);

  Limits limits_;
  std::string last_event_id_;         // "last event ID string" of the standard
  std::string id_buffer_;             // "last event ID buffer"
  std::string data_;                  // "data buffer"
  std::string type_;                  // "event type buffer"
  std::string line_;                  // an unfinished line carried over between chunks
  std::string decoded_;               // scratch for UTF-8 repair, reused
  bool id_in_block_ = false;
  bool at_stream_start_ = true;       // a BOM may follow
  bool after_cr_ = false;             // last chunk ended in CR: a leading LF belongs to it
  bool discarding_event_ = false;     // oversized: drop lines until the blank line
  std::size_t event_bytes_ = 0;       // bytes held for the current event
  std::size_t discarded_bytes_ = 0;
  unsigned char utf8_pending_[4] = {};  // an incomplete UTF-8 sequence at a chunk's end
  std::size_t utf8_pending_len_ = 0;
};

}  // namespace sse2kafka::sse
