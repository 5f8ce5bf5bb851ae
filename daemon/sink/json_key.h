// One event's data read as JSON: whether it is JSON text at all, and the record key a JSON
// Pointer (RFC 6901) picks out of it. Parsing uses simdjson's DOM parser; the parser, a padded
// copy of the data and the key buffer are reused, so steady-state use allocates nothing.
//
// "JSON text" is what simdjson 3.0 accepts: RFC 8259 with any value at the top (bare scalars
// included), surrounding whitespace allowed, valid UTF-8, nesting up to 1024 levels. simdjson
// also refuses numbers it cannot represent (integers outside the signed and unsigned 64-bit
// ranges, magnitudes beyond a double), so data holding one counts as not JSON.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace sse2kafka::sink {

class JsonData {
 public:
  JsonData();
  ~JsonData();
  JsonData(const JsonData&) = delete;
  JsonData& operator=(const JsonData&) = delete;

  // Parses `text`, replacing what an earlier call parsed. Returns true when `text` is one JSON
  // text; false otherwise (then KeyAt finds nothing until the next successful Parse).
  bool Parse(std::string_view text);

  // The key that the member at `pointer` (e.g. "/meta/id"; "" is the whole document) gives in
  // the last parsed text: a string's value, unescaped; for a number, boolean, object or array,
  // its compact JSON text. nullopt when the member is null or missing, the pointer is
  // malformed, or the last Parse failed. The view stays valid until the next Parse or KeyAt.
  //
  // The compact JSON text is written from the parsed value, not copied from the input, so
  // equal values give equal keys however they were spelled: no whitespace, members in document
  // order, strings escaped as AppendJsonString does (json_text.h), integers exact, other
  // numbers in the shortest form that reads back as the same double (plain notation for
  // magnitudes in [1e-6, 1e21), otherwise exponent form such as 1e+21; -0 as 0).
  // So {"a": [1.50, true], "b": 1E2} gives {"a":[1.5,true],"b":100}.
  std::optional<std::string_view> KeyAt(std::string_view pointer);

 private:
  struct State;  // keeps simdjson's large header out of every file that includes this one
  std::unique_ptr<State> state_;
};

}  // namespace sse2kafka::sink
