#include "sse/parser.h"

#include <cstring>
#include <limits>

#include "sse/line_scan.h"

// How the standard's algorithm maps onto bytes.
//
// The standard decodes the whole response as UTF-8 first and then splits lines on CR, LF and
// CRLF. Every character the line syntax looks at (CR, LF, ':', ' ', NUL) is ASCII, and the
// UTF-8 decoder never lets an ASCII byte be swallowed by a broken multi-byte sequence: it ends
// the sequence with one U+FFFD and decodes the ASCII byte again. So splitting the raw bytes
// into lines and fields first and decoding each value on its own gives exactly the standard's
// result, and lets the common all-ASCII line go straight from the chunk to the data buffer.
// Field names are compared as raw bytes: a name containing a non-ASCII byte matches none of
// the four known names either before or after decoding.
//
// Every line, whether it lies inside one chunk or is split across several, goes through the
// same LineBytes(...)* LineEnd sequence, so the result never depends on where chunks end.

namespace sse2kafka::sse {
namespace {

constexpr unsigned char kByteOrderMark[3] = {0xEF, 0xBB, 0xBF};

// Field names are at most five bytes long, so a colon is looked for in the first six bytes
// only: a line without one there names an unknown field, whatever follows.
constexpr std::size_t kNameProbe = 6;

bool ContainsNul(const char* p, std::size_t n) {
  if (n >= 32) return std::memchr(p, '\0', n) != nullptr;
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] == '\0') return true;
  }
  return false;
}

std::uint64_t AppendDigit(std::uint64_t value, unsigned digit) {
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  if (value > (kMax - digit) / 10) return kMax;
  return value * 10 + digit;
}

}  // namespace

Parser::Parser(Limits limits) : limits_(limits), avx2_(CpuHasAvx2()) {}

void Parser::Feed(std::string_view bytes, ParserListener& listener) {
  const char* p = bytes.data();
  const char* const end = p + bytes.size();
  if (at_stream_start_) {
    SkipByteOrderMark(p, end, listener);
    if (at_stream_start_) return;  // every byte so far may still be part of a BOM
  }
  ProcessBytes(p, end, listener);
  // data_view_ points into `bytes`, which the caller may reuse once Feed returns.
  if (data_in_view_) MaterializeDataView();
}

void Parser::EndOfStream() {
  // "Once the end of the file is reached, any pending data must be discarded": the unfinished
  // line, the data and event type buffers, and a half-received UTF-8 sequence.
  ClearEventBuffers();
  line_state_ = LineState::kStart;
  field_ = Field::kNone;
  name_len_ = 0;
  id_value_.clear();
  line_oversized_ = false;
  discarding_event_ = false;
  id_in_block_ = false;
  block_bytes_ = 0;
  at_stream_start_ = true;
  bom_matched_ = 0;
  after_cr_ = false;
  // The standard would let the next response start with the last event ID buffer as it was,
  // so an `id` line of the unfinished block would apply to the next response's first dispatch.
  // Browsers do not do that: a reconnect starts a fresh parse whose buffer holds the last event
  // ID string, which only dispatches change. An id the server sent for an event that never
  // completed must not become a checkpoint (it would skip that event on the next resume), so
  // the buffer is reset to the string here and last_event_id() is left as it is.
  id_buffer_ = last_event_id_;
}

void Parser::SetLastEventId(std::string_view id) {
  last_event_id_.assign(id);
  id_buffer_.assign(id);
}

void Parser::SkipByteOrderMark(const char*& p, const char* end, ParserListener& listener) {
  while (p < end && bom_matched_ < sizeof kByteOrderMark &&
         static_cast<unsigned char>(*p) == kByteOrderMark[bom_matched_]) {
    ++bom_matched_;
    ++p;
  }
  if (bom_matched_ == sizeof kByteOrderMark) {
    at_stream_start_ = false;
    return;
  }
  if (p == end) return;  // a BOM prefix so far; the next chunk decides
  at_stream_start_ = false;
  // Not a BOM after all: the bytes held back are ordinary content.
  const char* held = reinterpret_cast<const char*>(kByteOrderMark);
  ProcessBytes(held, held + bom_matched_, listener);
}

void Parser::ProcessBytes(const char* p, const char* end, ParserListener& listener) {
  if (after_cr_ && p < end) {
    after_cr_ = false;
    if (*p == '\n') ++p;  // the LF of a CRLF split between chunks
  }
  while (p < end) {
    const char* eol;
    if (line_state_ == LineState::kStart && (*p == '\n' || *p == '\r')) {
      eol = p;
      BlankLine(listener);
    } else {
      const LineScan scan = ScanLine(p, end, avx2_);
      const auto n = static_cast<std::size_t>(scan.end - p);
      if (scan.end == end) {
        LineBytes(p, n, scan.ascii, false);
        return;
      }
      if (line_state_ == LineState::kStart) {
        WholeLine(p, n, scan.ascii, listener);
      } else {
        if (n > 0) LineBytes(p, n, scan.ascii, true);
        LineEnd(listener);
      }
      eol = scan.end;
    }
    p = eol + 1;
    if (*eol == '\r') {
      if (p == end) {
        after_cr_ = true;
        return;
      }
      if (*p == '\n') ++p;
    }
  }
}

Parser::Field Parser::KnownField(const char* name, std::size_t n) const {
  Field field = Field::kNone;
  if (n == 4 && std::memcmp(name, "data", 4) == 0) {
    field = Field::kData;
  } else if (n == 2 && name[0] == 'i' && name[1] == 'd') {
    field = Field::kId;
  } else if (n == 5 && std::memcmp(name, "event", 5) == 0) {
    field = Field::kEvent;
  } else if (n == 5 && std::memcmp(name, "retry", 5) == 0) {
    field = Field::kRetry;
  }
  if (discarding_event_ && (field == Field::kData || field == Field::kEvent)) {
    return Field::kNone;  // part of the event being dropped
  }
  return field;
}

// A line that lies whole inside the chunk: the same steps as LineBytes + LineEnd, without the
// bookkeeping for lines that continue in the next chunk.
void Parser::WholeLine(const char* p, std::size_t n, bool ascii, ParserListener& listener) {
  block_bytes_ += n;
  std::size_t colon = 0;
  if (n > 4 && p[4] == ':' && std::memcmp(p, "data", 4) == 0) {
    colon = 4;  // the usual line, recognised without a search
  } else {
    const std::size_t probe = n < kNameProbe ? n : kNameProbe;
    while (colon < probe && p[colon] != ':') ++colon;
    if (colon == probe && n >= kNameProbe) return;  // unknown field
  }
  // Without a colon the whole line is the name and the value is empty.
  const Field field = KnownField(p, colon);
  if (field == Field::kNone) return;
  const char* value = p + n;
  std::size_t value_n = 0;
  if (colon < n) {
    value = p + colon + 1;
    value_n = n - colon - 1;
    if (value_n > 0 && *value == ' ') {
      ++value;
      --value_n;
    }
  }
  if (field == Field::kData) {
    WholeDataValue(value, value_n, ascii, listener);
    return;
  }
  if (field == Field::kEvent) {
    WholeEventValue(value, value_n, ascii, listener);
    return;
  }
  if (field == Field::kId) {
    if (ContainsNul(value, value_n)) return;
    if (value_n > limits_.max_id_size) {
      listener.OnOversizedId(value_n);
      return;
    }
    AcceptId(value, value_n, listener);
    return;
  }
  field_ = field;
  BeginValue();
  if (value_n > 0) AppendValue(value, value_n, ascii, true);
  if (line_oversized_) {
    // AppendValue dropped the line (and set up skipping the rest of it, which is no more).
    line_oversized_ = false;
    line_state_ = LineState::kStart;
    ReportOversized(listener);
  } else {
    EndValue(listener);
  }
  field_ = Field::kNone;
}

// The value of a `data` line that lies whole in the chunk: what BeginValue, AppendData and
// EndValue do for it, in one step, with the same limit decisions.
void Parser::WholeDataValue(const char* p, std::size_t n, bool ascii, ParserListener& listener) {
  const std::size_t others = type_.size() + id_buffer_.size();
  const bool fits = data_.size() + n + 1 + others <= limits_.max_event_size;
  if (!data_in_view_ && data_.empty()) {
    if (fits && (ascii || IsValidUtf8(p, n))) {
      data_view_ = std::string_view(p, n);
      data_in_view_ = true;
      return;
    }
  } else if (data_in_view_) {
    MaterializeDataView();
    if (data_.size() + n + 1 + others > limits_.max_event_size) {
      ReportOversized(listener);
      return;
    }
  }
  if (!fits) {
    ReportOversized(listener);
    return;
  }
  if (ascii || IsValidUtf8(p, n)) {
    data_.append(p, n);
  } else {
    const std::size_t cap = limits_.max_event_size - others - 1;
    decoder_.Reset();
    if (!decoder_.Append(p, n, data_, cap) || !decoder_.Finish(data_, cap)) {
      ReportOversized(listener);
      return;
    }
  }
  data_.push_back('\n');
}

// The value of an `event` line that lies whole in the chunk: BeginValue, AppendType and
// EndValue in one step, with the same limit decisions.
void Parser::WholeEventValue(const char* p, std::size_t n, bool ascii, ParserListener& listener) {
  const std::size_t others = DataSize() + id_buffer_.size();
  if (n + others > limits_.max_event_size) {
    ReportOversized(listener);
    return;
  }
  if (ascii || IsValidUtf8(p, n)) {
    type_.assign(p, n);
    return;
  }
  const std::size_t cap = limits_.max_event_size - others;
  type_.clear();
  decoder_.Reset();
  if (!decoder_.Append(p, n, type_, cap) || !decoder_.Finish(type_, cap)) {
    ReportOversized(listener);
  }
}

void Parser::LineBytes(const char* p, std::size_t n, bool ascii, bool line_complete) {
  block_bytes_ += n;
  switch (line_state_) {
    case LineState::kStart:
    case LineState::kName: {
      // The name may continue in the next chunk: keep its first bytes, enough to tell the
      // known names apart.
      const std::size_t room = kNameProbe - name_len_;
      const std::size_t probe = n < room ? n : room;
      std::size_t colon = 0;
      while (colon < probe && p[colon] != ':') ++colon;
      if (colon == probe) {
        if (n >= room) {
          line_state_ = LineState::kSkip;  // a name of six or more bytes: unknown field
          return;
        }
        std::memcpy(name_ + name_len_, p, n);
        name_len_ += n;
        line_state_ = LineState::kName;
        return;
      }
      std::memcpy(name_ + name_len_, p, colon);
      name_len_ += colon;
      const Field field = KnownField(name_, name_len_);
      if (field == Field::kNone) {
        line_state_ = LineState::kSkip;  // comment (empty name), unknown field, dropped field
        return;
      }
      field_ = field;
      BeginValue();
      n -= colon + 1;
      p += colon + 1;
      line_state_ = LineState::kValueStart;
      [[fallthrough]];
    }
    case LineState::kValueStart:
      if (n == 0) return;
      if (*p == ' ') {  // "If value starts with a U+0020 SPACE character, remove it"
        ++p;
        --n;
      }
      line_state_ = LineState::kValue;
      // The value starts in this piece, so it is whole when the line ends in it too.
      AppendValue(p, n, ascii, line_complete);
      return;
    case LineState::kValue:
      AppendValue(p, n, ascii, false);
      return;
    case LineState::kSkip:
      return;
  }
}

void Parser::BeginValue() {
  decoder_.Reset();
  value_in_view_ = false;
  switch (field_) {
    case Field::kEvent:
      // The line replaces the buffer; clearing it now keeps the bytes counted against the
      // limit growing steadily while the value arrives. If the line never ends, the whole
      // block is discarded anyway.
      type_.clear();
      break;
    case Field::kId:
      id_value_.clear();
      id_value_size_ = 0;
      id_has_nul_ = false;
      break;
    case Field::kRetry:
      retry_valid_ = true;
      retry_digits_ = 0;
      retry_value_ = 0;
      break;
    case Field::kData:
    case Field::kNone:
      break;
  }
}

void Parser::AppendValue(const char* p, std::size_t n, bool ascii, bool whole_value) {
  switch (field_) {
    case Field::kData:
      AppendData(p, n, ascii, whole_value);
      return;
    case Field::kEvent:
      AppendType(p, n, ascii);
      return;
    case Field::kId:
      AppendId(p, n);
      return;
    case Field::kRetry:
      AppendRetry(p, n);
      return;
    case Field::kNone:
      return;
  }
}

// The limit checks below compare raw input sizes against the limit before decoding. That is
// sound because decoding never shrinks input (U+FFFD is three bytes and replaces one to three),
// and it keeps a huge line from being buffered before it is found too big. Whether an event is
// oversized thus depends only on its final decoded size, never on how its bytes were chunked.
void Parser::AppendData(const char* p, std::size_t n, bool ascii, bool whole_value) {
  const std::size_t others = type_.size() + id_buffer_.size();
  if (whole_value && !data_in_view_ && data_.empty() && n + 1 + others <= limits_.max_event_size &&
      (ascii || IsValidUtf8(p, n))) {
    data_view_ = std::string_view(p, n);
    data_in_view_ = true;
    value_in_view_ = true;
    return;
  }
  if (data_in_view_) MaterializeDataView();
  // + 1 for the LF that ends every data line.
  if (data_.size() + decoder_.pending() + n + 1 + others > limits_.max_event_size) {
    DropCurrentLine();
    return;
  }
  if (ascii && decoder_.pending() == 0) {
    data_.append(p, n);
  } else if (!decoder_.Append(p, n, data_, limits_.max_event_size - others - 1)) {
    DropCurrentLine();
  }
}

void Parser::AppendType(const char* p, std::size_t n, bool ascii) {
  const std::size_t others = DataSize() + id_buffer_.size();
  if (type_.size() + decoder_.pending() + n + others > limits_.max_event_size) {
    DropCurrentLine();
    return;
  }
  if (ascii && decoder_.pending() == 0) {
    type_.append(p, n);
  } else if (!decoder_.Append(p, n, type_, limits_.max_event_size - others)) {
    DropCurrentLine();
  }
}

void Parser::AppendId(const char* p, std::size_t n) {
  id_value_size_ += n;
  if (!id_has_nul_ && std::memchr(p, '\0', n) != nullptr) id_has_nul_ = true;
  if (id_has_nul_ || id_value_size_ > limits_.max_id_size) {
    id_value_.clear();  // the value will be ignored: stop holding it
    return;
  }
  id_value_.append(p, n);
}

void Parser::AppendRetry(const char* p, std::size_t n) {
  retry_digits_ += n;
  for (std::size_t i = 0; i < n && retry_valid_; ++i) {
    const unsigned digit = static_cast<unsigned char>(p[i]) - static_cast<unsigned>('0');
    if (digit > 9) {
      retry_valid_ = false;
    } else {
      retry_value_ = AppendDigit(retry_value_, digit);
    }
  }
}

void Parser::LineEnd(ParserListener& listener) {
  switch (line_state_) {
    case LineState::kStart:
      BlankLine(listener);
      break;
    case LineState::kName: {
      // "Otherwise, the string is not empty but does not contain a U+003A COLON character":
      // the whole line is the field name and the value is empty.
      const Field field = KnownField(name_, name_len_);
      if (field != Field::kNone) {
        field_ = field;
        BeginValue();
        EndValue(listener);
      }
      break;
    }
    case LineState::kValueStart:
    case LineState::kValue:
      EndValue(listener);
      break;
    case LineState::kSkip:
      if (line_oversized_) {
        // Reported only now, when the whole line is known, so that bytes_seen is the same
        // however the line was chunked.
        line_oversized_ = false;
        ReportOversized(listener);
      }
      break;
  }
  line_state_ = LineState::kStart;
  field_ = Field::kNone;
  name_len_ = 0;
}

void Parser::EndValue(ParserListener& listener) {
  switch (field_) {
    case Field::kData:
      if (!value_in_view_) {
        if (data_in_view_) MaterializeDataView();
        const std::size_t others = type_.size() + id_buffer_.size();
        if (others >= limits_.max_event_size ||
            !decoder_.Finish(data_, limits_.max_event_size - others - 1)) {
          ReportOversized(listener);
          return;
        }
        data_.push_back('\n');
      }
      break;
    case Field::kEvent: {
      const std::size_t others = DataSize() + id_buffer_.size();
      if (others > limits_.max_event_size ||
          !decoder_.Finish(type_, limits_.max_event_size - others)) {
        ReportOversized(listener);
        return;
      }
      break;
    }
    case Field::kId:
      // "If the field value does not contain U+0000 NULL, then set the last event ID buffer
      // to the field value. Otherwise, ignore the field."
      if (id_has_nul_) return;
      if (id_value_size_ > limits_.max_id_size) {
        listener.OnOversizedId(id_value_size_);
        return;
      }
      AcceptId(id_value_.data(), id_value_.size(), listener);
      return;
    case Field::kRetry:
      // "If the field value consists of only ASCII digits": an empty value has none.
      if (retry_valid_ && retry_digits_ > 0) listener.OnRetry(retry_value_);
      return;
    case Field::kNone:
      return;
  }
  if (HeldBytes() > limits_.max_event_size) ReportOversized(listener);
}

// Sets the last event ID buffer to a complete `id` value that has no NUL and is not too long.
void Parser::AcceptId(const char* p, std::size_t n, ParserListener& listener) {
  if (IsValidUtf8(p, n)) {
    id_buffer_.assign(p, n);
  } else {
    id_buffer_.clear();
    Utf8Decoder id_decoder;
    const std::size_t no_cap = std::numeric_limits<std::size_t>::max();
    id_decoder.Append(p, n, id_buffer_, no_cap);
    id_decoder.Finish(id_buffer_, no_cap);
  }
  id_in_block_ = true;
  // An id of a dropped event still counts (see EndDroppedBlock); only a live event can grow
  // past the limit through it.
  if (!discarding_event_ && HeldBytes() > limits_.max_event_size) ReportOversized(listener);
}

void Parser::BlankLine(ParserListener& listener) {
  if (discarding_event_) {
    EndDroppedBlock(listener);
  } else {
    Dispatch(listener);
  }
}

void Parser::Dispatch(ParserListener& listener) {
  // "Set the last event ID string of the event source to the value of the last event ID
  // buffer." The two differ only after an `id` line in this block.
  if (id_in_block_) last_event_id_ = id_buffer_;
  const bool in_block = id_in_block_;
  id_in_block_ = false;
  block_bytes_ = 0;
  if (DataSize() == 0) {
    // "If the data buffer is an empty string, set the data buffer and the event type buffer
    // to the empty string and return."
    type_.clear();
    listener.OnEmptyDispatch(last_event_id_);
    return;
  }
  Event event;
  // "If the data buffer's last character is a U+000A LINE FEED (LF) character, then remove
  // the last character from the data buffer." Every data line ends in LF, so it always is.
  event.data = data_in_view_ ? data_view_ : std::string_view(data_.data(), data_.size() - 1);
  event.type = type_.empty() ? std::string_view("message") : std::string_view(type_);
  event.last_event_id = last_event_id_;
  event.id_in_block = in_block;
  listener.OnEvent(event);
  ClearEventBuffers();
}

// An oversized event ends here. Its data is gone, but it was an event of the stream all the
// same: the standard would have set the last event ID string at this blank line, and a
// checkpoint that stopped before it would make every resume replay (and drop) it again. So
// an `id` line of the dropped block applies as usual, and the listener hears of the block's
// end through OnEmptyDispatch, which is how it learns that the checkpoint may move past it.
// An id that was on the line which crossed the limit, or inside a line dropped unread, is
// simply not known, and the last event ID stays what the block's other id lines made it.
void Parser::EndDroppedBlock(ParserListener& listener) {
  discarding_event_ = false;
  if (id_in_block_) last_event_id_ = id_buffer_;
  id_in_block_ = false;
  block_bytes_ = 0;
  ClearEventBuffers();
  listener.OnEmptyDispatch(last_event_id_);
}

void Parser::DropCurrentLine() {
  line_oversized_ = true;
  line_state_ = LineState::kSkip;
  ClearEventBuffers();
}

void Parser::ReportOversized(ParserListener& listener) {
  discarding_event_ = true;
  ClearEventBuffers();
  listener.OnOversizedEvent(block_bytes_);
}

void Parser::ClearEventBuffers() {
  data_.clear();  // keeps its capacity: the next event reuses it
  type_.clear();
  data_view_ = {};
  data_in_view_ = false;
  value_in_view_ = false;
  decoder_.Reset();
}

void Parser::MaterializeDataView() {
  data_.assign(data_view_.data(), data_view_.size());
  data_.push_back('\n');
  data_view_ = {};
  data_in_view_ = false;
  value_in_view_ = false;
}

}  // namespace sse2kafka::sse
