#include "config/yaml_reader.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <unordered_map>

#include "config/env_expansion.h"

namespace sse2kafka::config {

namespace {

std::string Lowercase(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

// Edit distance counting a swap of neighbours as one edit (optimal string alignment), so
// `max_dealy` is one step from `max_delay`. Keys are short; the quadratic table is fine.
std::size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string UnknownKeyMessage(std::string_view key, std::span<const std::string_view> known) {
  // Keys longer than any known one by far cannot be typos of them; skip the distance table.
  constexpr std::size_t kLongestComparedKey = 64;
  const std::string lower = Lowercase(key);
  std::string_view best;
  std::size_t best_distance = 0;
  if (key.size() <= kLongestComparedKey) {
    for (std::string_view candidate : known) {
      const std::size_t distance = EditDistance(lower, candidate);
      if (best.empty() || distance < best_distance) {
        best = candidate;
        best_distance = distance;
      }
    }
  }
  const std::size_t allowed = key.size() <= 4 ? 1 : key.size() <= 8 ? 2 : 3;
  if (!best.empty() && best_distance <= allowed) {
    return "unknown key; did you mean `" + std::string(best) + "`?";
  }
  std::string message = "unknown key; expected one of: ";
  for (std::size_t i = 0; i < known.size(); ++i) {
    if (i > 0) message += ", ";
    message += known[i];
  }
  return message;
}

// False for a node made by YAML::Node() (the `key` of list items and the root), which is
// "defined" and null to yaml-cpp but was never in the document.
bool HasPosition(const YAML::Node& node) { return !node.Mark().is_null(); }

// "1KiB" for 1024, "1000" for 1000: sizes in messages as the user would write them.
std::string ShowSize(std::size_t bytes) {
  if (bytes >= (std::size_t{1} << 30) && bytes % (std::size_t{1} << 30) == 0) {
    return std::to_string(bytes >> 30) + "GiB";
  }
  if (bytes >= (std::size_t{1} << 20) && bytes % (std::size_t{1} << 20) == 0) {
    return std::to_string(bytes >> 20) + "MiB";
  }
  if (bytes >= (std::size_t{1} << 10) && bytes % (std::size_t{1} << 10) == 0) {
    return std::to_string(bytes >> 10) + "KiB";
  }
  return std::to_string(bytes);
}

}  // namespace

void Diagnostics::Add(SourceLocation location, std::string key_path, std::string message) {
  errors_.push_back(ConfigError{std::move(location), std::move(key_path), std::move(message)});
}

void Diagnostics::AddWarning(SourceLocation location, std::string key_path, std::string message) {
  warnings_.push_back(ConfigError{std::move(location), std::move(key_path), std::move(message), true});
}

namespace {
std::vector<ConfigError> InFileOrder(std::vector<ConfigError> list) {
  std::stable_sort(list.begin(), list.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::make_pair(a.location.line, a.location.column) <
           std::make_pair(b.location.line, b.location.column);
  });
  return list;
}
}  // namespace

std::vector<ConfigError> Diagnostics::TakeSorted() { return InFileOrder(std::move(errors_)); }

std::vector<ConfigError> Diagnostics::TakeSortedWarnings() { return InFileOrder(std::move(warnings_)); }

std::string ChildPath(std::string_view parent, std::string_view key) {
  std::string path(parent);
  if (!path.empty()) path += '.';
  if (key.empty()) return path + "\"\"";
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : key) {
    if (c > 0x20 && c < 0x7f && c != ':' && c != '%') {
      path += static_cast<char>(c);
    } else {
      path += '%';
      path += kHex[c >> 4];
      path += kHex[c & 0xf];
    }
  }
  return path;
}

std::string ItemPath(std::string_view parent, std::size_t index) {
  return std::string(parent) + "[" + std::to_string(index) + "]";
}

std::string Shown(std::string_view text) {
  constexpr std::size_t kMaxShown = 60;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string shown = "`";
  for (std::size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      shown += "\\x";
      shown += kHex[c >> 4];
      shown += kHex[c & 0xf];
    } else {
      shown += static_cast<char>(c);
    }
  }
  if (text.size() > kMaxShown) shown += "...";
  return shown + "`";
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "an empty value";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Scalar:
      return Shown(node.Scalar());
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

YamlReader::YamlReader(std::string file, const EnvLookup& env, Diagnostics& diagnostics)
    : file_(std::move(file)), env_(env), diagnostics_(diagnostics) {}

SourceLocation YamlReader::LocationOf(const YAML::Node& node) const {
  const YAML::Mark mark = node.Mark();
  return SourceLocation{file_, std::max(mark.line, 0) + 1, std::max(mark.column, 0) + 1};
}

SourceLocation YamlReader::LocationOf(const Field& field) const {
  if (field.value.IsNull() && HasPosition(field.key)) return LocationOf(field.key);
  return LocationOf(field.value);
}

SourceLocation YamlReader::KeyLocationOf(const Field& field) const {
  return LocationOf(HasPosition(field.key) ? field.key : field.value);
}

void YamlReader::Error(const Field& field, std::string message) {
  diagnostics_.Add(LocationOf(field), field.path, std::move(message));
}

void YamlReader::KeyError(const Field& field, std::string message) {
  diagnostics_.Add(KeyLocationOf(field), field.path, std::move(message));
}

void YamlReader::Error(SourceLocation at, std::string key_path, std::string message) {
  diagnostics_.Add(std::move(at), std::move(key_path), std::move(message));
}

void YamlReader::Warning(SourceLocation at, std::string key_path, std::string message) {
  diagnostics_.AddWarning(std::move(at), std::move(key_path), std::move(message));
}

void YamlReader::MissingKey(const Field& mapping, std::string_view key, std::string message) {
  diagnostics_.Add(LocationOf(mapping), ChildPath(mapping.path, key), std::move(message));
}

std::optional<std::vector<Field>> YamlReader::Entries(const Field& field, bool values_are_secret) {
  if (field.value.IsNull()) return std::vector<Field>{};
  if (!field.value.IsMap()) {
    const std::string found =
        values_are_secret && field.value.IsScalar() ? "a string" : Describe(field.value);
    Error(field, "expected a mapping (key: value lines or { ... }), found " + found);
    return std::nullopt;
  }
  std::vector<Field> entries;
  std::unordered_map<std::string, std::size_t> index_of_name;
  for (auto it = field.value.begin(); it != field.value.end(); ++it) {
    Field entry;
    entry.key = it->first;
    entry.value = it->second;
    if (!entry.key.IsScalar()) {
      entry.path = field.path;
      KeyError(entry, "expected a key name, found " + Describe(entry.key));
      continue;
    }
    entry.name = entry.key.Scalar();
    entry.path = ChildPath(field.path, entry.name);
    const auto [first, inserted] = index_of_name.emplace(entry.name, entries.size());
    if (!inserted) {
      KeyError(entry, "duplicate key; it is already set at line " +
                          std::to_string(KeyLocationOf(entries[first->second]).line));
      continue;
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::optional<std::vector<Field>> YamlReader::Items(const Field& field) {
  if (!field.value.IsSequence()) {
    Error(field, "expected a list (- item lines or [ ... ]), found " + Describe(field.value));
    return std::nullopt;
  }
  std::vector<Field> items;
  std::size_t index = 0;
  for (auto it = field.value.begin(); it != field.value.end(); ++it, ++index) {
    items.push_back(Field{ItemPath(field.path, index), "", YAML::Node(), *it});
  }
  return items;
}

std::vector<Field> YamlReader::KnownOnly(std::vector<Field> entries,
                                         std::span<const std::string_view> known) {
  std::vector<Field> kept;
  for (Field& entry : entries) {
    if (std::find(known.begin(), known.end(), entry.name) == known.end()) {
      KeyError(entry, UnknownKeyMessage(entry.name, known));
    } else {
      kept.push_back(std::move(entry));
    }
  }
  return kept;
}

std::optional<std::string> YamlReader::String(const Field& field) {
  if (!field.value.IsScalar()) {
    std::string hint;
    if (field.value.IsNull()) hint = " (write \"\" for an empty string; quote null or ~ to mean the text)";
    Error(field, "expected a string, found " + Describe(field.value) + hint);
    return std::nullopt;
  }
  Expansion expansion = ExpandEnvironment(field.value.Scalar(), env_);
  if (!expansion.problems.empty()) {
    for (std::string& problem : expansion.problems) Error(field, std::move(problem));
    return std::nullopt;
  }
  return std::move(expansion.text);
}

std::optional<std::string> YamlReader::NonEmptyString(const Field& field) {
  std::optional<std::string> text = String(field);
  if (text && text->empty()) {
    Error(field, "expected a non-empty string, found an empty one");
    return std::nullopt;
  }
  return text;
}

std::optional<bool> YamlReader::Bool(const Field& field) {
  std::optional<std::string> text = String(field);
  if (!text) return std::nullopt;
  const std::string lower = Lowercase(*text);
  if (lower == "true") return true;
  if (lower == "false") return false;
  Error(field, "expected true or false, found " + Shown(*text));
  return std::nullopt;
}

std::optional<Duration> YamlReader::DurationValue(const Field& field) {
  std::optional<std::string> text = String(field);
  if (!text) return std::nullopt;
  std::optional<Duration> duration = ParseDuration(*text);
  if (!duration) {
    Error(field,
          "expected a duration: a whole number with a unit ms, s, m or h (250ms, 5s, 2m, 1h), "
          "or 0; found " +
              Shown(*text));
  }
  return duration;
}

std::optional<std::size_t> YamlReader::Size(const Field& field, std::size_t min, std::size_t max) {
  std::optional<std::string> text = String(field);
  if (!text) return std::nullopt;
  std::optional<std::size_t> size = ParseSize(*text);
  if (!size) {
    std::string hint;
    const std::string lower = Lowercase(*text);
    for (std::string_view decimal : {"kb", "mb", "gb"}) {
      if (lower.size() > decimal.size() && lower.ends_with(decimal)) {
        hint = " (decimal units are not accepted: write KiB, MiB or GiB, which are powers of 1024)";
      }
    }
    Error(field,
          "expected a size: a number of bytes, or a whole number with a unit B, KiB, MiB "
          "or GiB (512KiB, 1MiB); found " +
              Shown(*text) + hint);
    return std::nullopt;
  }
  if (*size < min || *size > max) {
    Error(field, "must be between " + ShowSize(min) + " and " + ShowSize(max) + ", found " + Shown(*text));
    return std::nullopt;
  }
  return size;
}

std::optional<int64_t> YamlReader::Integer(const Field& field, int64_t min, int64_t max) {
  std::optional<std::string> text = String(field);
  if (!text) return std::nullopt;
  int64_t number = 0;
  const char* end = text->data() + text->size();
  const auto [stop, error] = std::from_chars(text->data(), end, number);
  if (text->empty() || error != std::errc() || stop != end) {
    Error(field, "expected a whole number, found " + Shown(*text));
    return std::nullopt;
  }
  if (number < min || number > max) {
    Error(field, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", found " +
                     std::to_string(number));
    return std::nullopt;
  }
  return number;
}

std::optional<std::vector<std::string>> YamlReader::StringList(const Field& field,
                                                               std::string_view what_is_missing) {
  std::optional<std::vector<Field>> items = Items(field);
  if (!items) return std::nullopt;
  if (items->empty()) {
    Error(field, "expected at least one " + std::string(what_is_missing));
    return std::nullopt;
  }
  std::vector<std::string> strings;
  bool ok = true;
  for (const Field& item : *items) {
    std::optional<std::string> text = NonEmptyString(item);
    if (text) {
      strings.push_back(std::move(*text));
    } else {
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return strings;
}

}  // namespace sse2kafka::config
