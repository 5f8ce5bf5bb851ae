// Feeds arbitrary bytes to the config loader as YAML. The loader must answer with a Config or
// a list of errors for anything: deep nesting, aliases, odd encodings, malformed ${...}.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"
#include "config/loader.h"

namespace {

using sse2kafka::config::EnvLookup;
using sse2kafka::config::LoadConfigText;
using sse2kafka::config::LoadResult;
using sse2kafka::config::PropertyValidator;

// A fixed environment, so that a crash reproduces: A and B set, EMPTY set but empty.
std::optional<std::string> FuzzEnvironment(const std::string& name) {
  if (name == "A") return std::string("a");
  if (name == "B") return std::string("5s");
  if (name == "EMPTY") return std::string();
  return std::nullopt;
}

std::optional<std::string> FuzzPropertyValidator(const std::string& name, const std::string& value) {
  if (name.find("bad") != std::string::npos || value.empty()) return std::string("refused");
  return std::nullopt;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const EnvLookup env = FuzzEnvironment;
  const PropertyValidator validator = FuzzPropertyValidator;
  const LoadResult result = LoadConfigText(text, "fuzz.yaml", env, validator);
  // The result's invariants: a config exactly when there are no errors, every error with a
  // 1-based position, and every stream of a config complete and routed one way.
  if (result.config.has_value() != result.errors.empty()) std::abort();
  for (const auto& error : result.errors) {
    if (error.ToString().empty() || error.location.line < 1) std::abort();
  }
  if (result.config) {
    for (const auto& stream : result.config->streams) {
      if (stream.name.empty() || stream.url.empty()) std::abort();
      if (stream.topic.empty() == stream.topics.empty()) std::abort();
    }
  }
  (void)sse2kafka::config::ParseDuration(text);
  (void)sse2kafka::config::ParseSize(text);
  return 0;
}
