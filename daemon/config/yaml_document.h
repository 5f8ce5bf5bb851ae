// The config text as one YAML document, or the one error that prevents reading it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <string_view>

#include "config/loader.h"

namespace sse2kafka::config {

struct YamlDocument {
  YAML::Node root;                   // the document's root node when error is empty
  std::optional<ConfigError> error;  // a syntax error, no document, or more than one
};

// Parses `text` as exactly one YAML document. Never loops: yaml-cpp 0.7's LoadAll spins
// forever (allocating) on a document that starts with a stray `,` (jbeder/yaml-cpp#1040), so
// documents are counted with a parser that is asked for at most three, and a parser that
// stops advancing is reported as a syntax error. Nesting beyond yaml-cpp's depth guard is an error.
YamlDocument ParseYamlDocument(std::string_view text, const std::string& file_name);

}  // namespace sse2kafka::config
