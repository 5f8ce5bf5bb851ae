// Environment references in config values: ${NAME}, ${NAME:-default}, ${NAME-default}, $$.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/loader.h"

namespace sse2kafka::config {

struct Expansion {
  std::string text;                   // the value with every reference replaced
  std::vector<std::string> problems;  // one message per problem; text is meaningless if any
};

// Replaces references with POSIX shell meaning:
//   ${NAME}           the variable's value; an unset variable is a problem
//   ${NAME:-default}  the default when NAME is unset or empty
//   ${NAME-default}   the default when NAME is unset
//   $$                a literal $; a $ followed by anything else is literal too
// A default may itself hold references (up to 8 levels); they are only looked up when the
// default is used. A malformed reference (no name, no closing brace, another operator) ends
// the scan and is then the only problem reported for the value. Messages name variables,
// never their values.
Expansion ExpandEnvironment(std::string_view text, const EnvLookup& env);

}  // namespace sse2kafka::config
