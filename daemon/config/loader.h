// Loads a YAML config file into a Config, checking everything that can be checked without
// starting the bridge.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace sse2kafka::config {

// One problem found in a config, printed as "FILE:LINE:COL: KEY.PATH: message".
struct ConfigError {
  SourceLocation location;  // line 0: the file as a whole (it could not be read)
  // e.g. "streams[2].reconnect.max_delay", "defaults.headers.Authorization"; for a missing
  // key, the path it should have; empty for problems of the YAML text itself (syntax, no
  // document). Keys with bytes other than printable ASCII or with ':' show them as %XX.
  std::string key_path;
  std::string message;
  bool warning = false;  // valid, but probably not what was meant: shown, never refused
  // "FILE:LINE:COL: KEY.PATH: message"; without ":LINE:COL" when line is 0 and without
  // "KEY.PATH: " when key_path is empty. A warning: "warning: FILE line LINE col COL: KEY.PATH:
  // message", a shape no problem line has.
  std::string ToString() const;
};

// Looks up an environment variable; nullopt when unset. Injected so tests need no real env.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup ProcessEnvironment();

// Checks one librdkafka property (name, value); returns an error message or nullopt.
// Injected by main from the sink layer so the config layer knows nothing of Kafka.
using PropertyValidator =
    std::function<std::optional<std::string>(const std::string& name, const std::string& value)>;

struct LoadResult {
  std::optional<Config> config;       // set when errors is empty
  std::vector<ConfigError> errors;    // every problem found, in file order
  std::vector<ConfigError> warnings;  // valid settings that are probably mistakes, in file order
  bool ok() const { return errors.empty(); }
};

// Reads and validates the file at `path`. On success, result.config holds the typed config
// with defaults applied and environment references expanded. On failure, result.errors lists
// every problem found (not just the first), in file order; an unreadable file or a YAML syntax
// error is one error with the position YAML reports. A problem's location is the offending
// value (its key when the value is empty, the key itself for unknown or duplicate keys, the
// enclosing mapping for a missing key). Never throws for any input text.
LoadResult LoadConfigFile(const std::string& path, const EnvLookup& env,
                          const PropertyValidator& validate_property = nullptr);

// As LoadConfigFile, over text already in memory; `file_name` is used in messages.
LoadResult LoadConfigText(std::string_view yaml_text, const std::string& file_name,
                          const EnvLookup& env,
                          const PropertyValidator& validate_property = nullptr);

// Parses a whole number with a unit ms, s, m or h ("250ms", "5s", "2m", "1h", "0s"), or "0".
// nullopt for anything else: other units, fractions, signs, spaces, overflow.
std::optional<Duration> ParseDuration(std::string_view text);
// Parses a plain byte count or a whole number with a unit B, KiB, MiB or GiB ("512KiB",
// "1MiB", "100B", "4096"). nullopt for anything else, including the decimal KB/MB/GB (refused
// as ambiguous), lower-case units and overflow.
std::optional<std::size_t> ParseSize(std::string_view text);

}  // namespace sse2kafka::config
