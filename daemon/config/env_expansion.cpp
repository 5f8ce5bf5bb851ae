#include "config/env_expansion.h"

#include <optional>

namespace sse2kafka::config {

namespace {

constexpr int kMaxDefaultNesting = 8;

bool IsNameStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

// A recursive-descent reader over one value. Every Parse* call advances pos_; `evaluate`
// false means "check the syntax only", for defaults that are not used.
class Expander {
 public:
  Expander(std::string_view text, const EnvLookup& env, std::vector<std::string>& problems)
      : text_(text), env_(env), problems_(problems) {}

  // Reads until the end of the text, or until the `}` that closes the enclosing reference
  // (which starts at `enclosing`) when depth > 0, leaving it unread. False after reporting a
  // malformed reference.
  bool ParseSequence(int depth, bool evaluate, std::string& out, std::size_t enclosing = 0) {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '}' && depth > 0) return true;
      if (c == '$' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '$') {
        out += '$';
        pos_ += 2;
      } else if (c == '$' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '{') {
        if (!ParseReference(depth, evaluate, out)) return false;
      } else {
        out += c;
        ++pos_;
      }
    }
    if (depth > 0) {
      problems_.push_back("malformed `${`: missing the closing `}` of " + Quoted(enclosing));
      return false;
    }
    return true;
  }

 private:
  // At "${": reads the whole reference and appends its value.
  bool ParseReference(int depth, bool evaluate, std::string& out) {
    const std::size_t start = pos_;
    pos_ += 2;
    const std::size_t name_start = pos_;
    if (pos_ < text_.size() && IsNameStart(text_[pos_])) {
      while (pos_ < text_.size() && IsNameChar(text_[pos_])) ++pos_;
    }
    const std::string name(text_.substr(name_start, pos_ - name_start));
    if (name.empty()) {
      problems_.push_back(
          "malformed `${`: expected a variable name (letters, digits and _, not "
          "starting with a digit) in " +
          Quoted(start) + "; write $$ for a literal $");
      return false;
    }
    const std::optional<std::string> value = evaluate && env_ ? env_(name) : std::nullopt;
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      if (!evaluate) return true;
      if (!value) {
        problems_.push_back("environment variable `" + name + "` is not set (write ${" + name +
                            ":-default} to give a default)");
        return true;
      }
      out += *value;
      return true;
    }
    bool empty_counts_as_unset = false;
    if (text_.substr(pos_, 2) == ":-") {
      empty_counts_as_unset = true;
      pos_ += 2;
    } else if (pos_ < text_.size() && text_[pos_] == '-') {
      pos_ += 1;
    } else {
      problems_.push_back("malformed `${`: expected `}` or `:-default}` after the name `" + name + "` in " +
                          Quoted(start));
      return false;
    }
    if (depth + 1 > kMaxDefaultNesting) {
      problems_.push_back("malformed `${`: defaults nest deeper than " + std::to_string(kMaxDefaultNesting) +
                          " levels");
      return false;
    }
    const bool use_default = evaluate && (!value || (empty_counts_as_unset && value->empty()));
    std::string fallback;
    if (!ParseSequence(depth + 1, use_default, fallback, start)) return false;
    ++pos_;  // the closing brace ParseSequence stopped at
    if (!evaluate) return true;
    out += use_default ? fallback : *value;
    return true;
  }

  // The reference starting at `start`, shortened for a message.
  std::string Quoted(std::size_t start) const {
    constexpr std::size_t kMax = 40;
    std::string_view shown = text_.substr(start, kMax);
    std::string quoted = "`" + std::string(shown);
    if (start + kMax < text_.size()) quoted += "...";
    return quoted + "`";
  }

  std::string_view text_;
  const EnvLookup& env_;
  std::vector<std::string>& problems_;
  std::size_t pos_ = 0;
};

}  // namespace

Expansion ExpandEnvironment(std::string_view text, const EnvLookup& env) {
  Expansion expansion;
  if (text.find('$') == std::string_view::npos) {
    expansion.text = std::string(text);
    return expansion;
  }
  Expander expander(text, env, expansion.problems);
  if (!expander.ParseSequence(0, true, expansion.text)) {
    // The malformed reference is the problem; what was looked up before it does not matter.
    expansion.problems.erase(expansion.problems.begin(), expansion.problems.end() - 1);
  }
  return expansion;
}

}  // namespace sse2kafka::config
