#include "sink/json_key.h"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <vector>

#include "sink/json_text.h"

namespace sse2kafka::sink {
namespace {

void AppendNumber(std::string& out, double value) {
  char text[64];
  const double magnitude = std::fabs(value);
  std::to_chars_result result;
  if (magnitude == 0) {
    out.push_back('0');
    return;
  }
  if (magnitude >= 1e-6 && magnitude < 1e21) {
    result = std::to_chars(text, text + sizeof text, value, std::chars_format::fixed);
  } else {
    result = std::to_chars(text, text + sizeof text, value, std::chars_format::scientific);
  }
  out.append(text, result.ptr);
}

template <typename Integer>
void AppendInteger(std::string& out, Integer value) {
  char text[24];
  const std::to_chars_result result = std::to_chars(text, text + sizeof text, value);
  out.append(text, result.ptr);
}

// Writes `element` as compact JSON. Recursion is bounded by simdjson's nesting limit.
void AppendCompactJson(std::string& out, simdjson::dom::element element) {
  using simdjson::dom::element_type;
  switch (element.type()) {
    case element_type::ARRAY: {
      out.push_back('[');
      bool first = true;
      // A named copy: iterating the temporary result directly would dangle.
      const simdjson::dom::array array = element.get_array().value_unsafe();
      for (simdjson::dom::element item : array) {
        if (!first) out.push_back(',');
        first = false;
        AppendCompactJson(out, item);
      }
      out.push_back(']');
      return;
    }
    case element_type::OBJECT: {
      out.push_back('{');
      bool first = true;
      const simdjson::dom::object object = element.get_object().value_unsafe();
      for (simdjson::dom::key_value_pair member : object) {
        if (!first) out.push_back(',');
        first = false;
        AppendJsonString(out, member.key);
        out.push_back(':');
        AppendCompactJson(out, member.value);
      }
      out.push_back('}');
      return;
    }
    case element_type::STRING:
      AppendJsonString(out, element.get_string().value_unsafe());
      return;
    case element_type::INT64:
      AppendInteger(out, element.get_int64().value_unsafe());
      return;
    case element_type::UINT64:
      AppendInteger(out, element.get_uint64().value_unsafe());
      return;
    case element_type::DOUBLE:
      AppendNumber(out, element.get_double().value_unsafe());
      return;
    case element_type::BOOL:
      out.append(element.get_bool().value_unsafe() ? "true" : "false");
      return;
    case element_type::NULL_VALUE:
      out.append("null");
      return;
  }
}

}  // namespace

struct JsonData::State {
  simdjson::dom::parser parser;
  std::vector<char> padded;  // the text being parsed, followed by SIMDJSON_PADDING bytes
  simdjson::dom::element root;
  bool valid = false;
  std::string key;  // compact JSON text of the last non-string key
};

JsonData::JsonData() : state_(std::make_unique<State>()) {}

JsonData::~JsonData() = default;

bool JsonData::Parse(std::string_view text) {
  State& s = *state_;
  // simdjson reads whole SIMD blocks past the end of its input, so it needs padding after the
  // text; copying into a buffer that only ever grows keeps that allocation-free.
  const std::size_t needed = text.size() + simdjson::SIMDJSON_PADDING;
  if (s.padded.size() < needed) s.padded.resize(needed);
  std::copy(text.begin(), text.end(), s.padded.begin());
  s.valid = s.parser.parse(s.padded.data(), text.size(), false).get(s.root) == simdjson::SUCCESS;
  return s.valid;
}

std::optional<std::string_view> JsonData::KeyAt(std::string_view pointer) {
  State& s = *state_;
  if (!s.valid) return std::nullopt;
  simdjson::dom::element member;
  if (s.root.at_pointer(pointer).get(member) != simdjson::SUCCESS) return std::nullopt;
  switch (member.type()) {
    case simdjson::dom::element_type::NULL_VALUE:
      return std::nullopt;
    case simdjson::dom::element_type::STRING:
      return member.get_string().value_unsafe();
    default:
      s.key.clear();
      AppendCompactJson(s.key, member);
      return std::string_view(s.key);
  }
}

}  // namespace sse2kafka::sink
