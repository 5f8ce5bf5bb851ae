#include "config/yaml_document.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "config/yaml_reader.h"

namespace sse2kafka::config {

namespace {

// Remembers where each document starts and ignores everything else.
class DocumentStarts : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
  }
  void OnMapEnd() override {}

  std::vector<YAML::Mark> marks;
};

SourceLocation At(const std::string& file_name, const YAML::Mark& mark) {
  return SourceLocation{file_name, std::max(mark.line, 0) + 1, std::max(mark.column, 0) + 1};
}

YamlDocument Failed(SourceLocation at, std::string message) {
  YamlDocument document;
  document.error = ConfigError{std::move(at), "", std::move(message)};
  return document;
}

}  // namespace

YamlDocument ParseYamlDocument(std::string_view text, const std::string& file_name) {
  const std::string input(text);
  try {
    std::istringstream stream(input);
    YAML::Parser parser(stream);
    DocumentStarts starts;
    // Three, not two: a parser stuck on a token that follows a `---` repeats the position
    // of the token, not of the `---`.
    for (int i = 0; i < 3 && parser.HandleNextDocument(starts); ++i) {
    }
    for (std::size_t i = 1; i < starts.marks.size(); ++i) {
      const YAML::Mark& mark = starts.marks[i];
      if (mark.pos != starts.marks[i - 1].pos) continue;
      const std::size_t pos = static_cast<std::size_t>(std::max(mark.pos, 0));
      const std::string found = pos < input.size() ? Shown(input.substr(pos, 1)) : "text";
      return Failed(At(file_name, mark), "invalid YAML: unexpected " + found + " where a value should start");
    }
    if (starts.marks.size() > 1) {
      return Failed(At(file_name, starts.marks[1]),
                    "only one YAML document is allowed; remove the second `---` and what follows");
    }
    if (starts.marks.empty()) {
      return Failed(SourceLocation{file_name, 1, 1},
                    "the config is empty; expected a mapping with at least `kafka` and `streams`");
    }
    YamlDocument document;
    document.root = YAML::Load(input);
    if (document.root.IsNull()) {
      return Failed(At(file_name, starts.marks[0]),
                    "the config is empty; expected a mapping with at least `kafka` and `streams`");
    }
    return document;
  } catch (const YAML::DeepRecursion& e) {
    return Failed(At(file_name, e.mark), "invalid YAML: lists and mappings nest too deeply (" +
                                             std::to_string(e.depth()) + " levels)");
  } catch (const YAML::Exception& e) {
    return Failed(At(file_name, e.mark), "invalid YAML: " + e.msg);
  }
}

}  // namespace sse2kafka::config
