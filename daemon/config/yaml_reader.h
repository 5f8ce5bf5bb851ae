// Typed reading of YAML values for the config loader. Every read checks the node's shape,
// expands environment references in scalars (never in keys) and, when something is wrong,
// reports it to a Diagnostics list with the node's position and key path and returns nullopt,
// so the caller carries on and the user sees every problem at once.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "config/loader.h"

namespace sse2kafka::config {

// The problems found so far, and the warnings (valid, but probably not what was meant).
class Diagnostics {
 public:
  void Add(SourceLocation location, std::string key_path, std::string message);
  void AddWarning(SourceLocation location, std::string key_path, std::string message);
  std::size_t count() const { return errors_.size(); }
  // Every problem, in file order (line, then column; problems without a position first).
  std::vector<ConfigError> TakeSorted();
  // Every warning, in file order.
  std::vector<ConfigError> TakeSortedWarnings();

 private:
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
};

// One value in the document and the way to it.
struct Field {
  std::string path;  // key path, e.g. "streams[0].reconnect.max_delay"; "" for the root
  std::string name;  // the mapping key as written; "" for list items and the root
  YAML::Node key;    // the key's node; YAML::Node() (no position) for list items and the root
  YAML::Node value;
};

// Key paths. A key made only of printable ASCII other than ':' is used as it is (so
// `kafka.properties.compression.type`); other bytes are written as %XX, and an empty key as "".
std::string ChildPath(std::string_view parent, std::string_view key);
std::string ItemPath(std::string_view parent, std::size_t index);

// `text` between backticks for a message, control bytes escaped, long text shortened.
std::string Shown(std::string_view text);

class YamlReader {
 public:
  // `env` and `diagnostics` must outlive the reader.
  YamlReader(std::string file, const EnvLookup& env, Diagnostics& diagnostics);

  const std::string& file() const { return file_; }
  SourceLocation LocationOf(const YAML::Node& node) const;
  // Where a message about the field's value points: the value, or its key when the value is
  // empty (yaml-cpp places an empty value at the start of the next token).
  SourceLocation LocationOf(const Field& field) const;
  SourceLocation KeyLocationOf(const Field& field) const;

  void Error(const Field& field, std::string message);     // at the value
  void KeyError(const Field& field, std::string message);  // at the key
  void Error(SourceLocation at, std::string key_path, std::string message);
  void Warning(SourceLocation at, std::string key_path, std::string message);
  // A required key absent from the mapping `mapping`: reported at the mapping.
  void MissingKey(const Field& mapping, std::string_view key, std::string message);

  // The entries of a mapping, in file order; an empty value counts as an empty mapping.
  // Keys that are not strings, and keys repeated within the mapping, are reported and left out.
  // nullopt, after reporting, when the value is something else; the message shows a scalar
  // found instead unless `values_are_secret` (headers, whose values may be credentials).
  std::optional<std::vector<Field>> Entries(const Field& field, bool values_are_secret = false);
  // The items of a list. nullopt, after reporting, when the value is not a list.
  std::optional<std::vector<Field>> Items(const Field& field);
  // Reports every entry whose key is not in `known`, with the closest known key as a
  // suggestion, and returns the others.
  std::vector<Field> KnownOnly(std::vector<Field> entries, std::span<const std::string_view> known);

  // A scalar with environment references expanded. Numbers and booleans are scalars too, so
  // `5` and `true` read as their text.
  std::optional<std::string> String(const Field& field);
  std::optional<std::string> NonEmptyString(const Field& field);
  // true or false (any letter case).
  std::optional<bool> Bool(const Field& field);
  // ParseDuration's syntax.
  std::optional<Duration> DurationValue(const Field& field);
  // ParseSize's syntax, within [min, max] bytes.
  std::optional<std::size_t> Size(const Field& field, std::size_t min, std::size_t max);
  // A decimal integer within [min, max].
  std::optional<int64_t> Integer(const Field& field, int64_t min, int64_t max);
  // The value matching one of the names exactly; a message listing them when it is none.
  template <typename Enum>
  std::optional<Enum> Choice(const Field& field,
                             std::initializer_list<std::pair<std::string_view, Enum>> choices);
  // A non-empty list of non-empty strings; `what_is_missing` completes the message for an
  // empty list ("expected at least one ...").
  std::optional<std::vector<std::string>> StringList(const Field& field, std::string_view what_is_missing);

 private:
  std::string file_;
  const EnvLookup& env_;
  Diagnostics& diagnostics_;
};

// What a node is, for "found ..." in messages: "a list", "a mapping", "an empty value", or
// the scalar's text.
std::string Describe(const YAML::Node& node);

template <typename Enum>
std::optional<Enum> YamlReader::Choice(const Field& field,
                                       std::initializer_list<std::pair<std::string_view, Enum>> choices) {
  std::optional<std::string> text = String(field);
  if (!text) return std::nullopt;
  for (const auto& [name, value] : choices) {
    if (*text == name) return value;
  }
  std::string expected;
  std::size_t i = 0;
  for (const auto& choice : choices) {
    if (i > 0) expected += i + 1 == choices.size() ? " or " : ", ";
    expected += choice.first;
    ++i;
  }
  Error(field, "expected " + expected + ", found " + Shown(*text));
  return std::nullopt;
}

}  // namespace sse2kafka::config
