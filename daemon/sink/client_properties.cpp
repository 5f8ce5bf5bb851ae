#include "sink/client_properties.h"

#include <algorithm>
#include <array>

namespace sse2kafka::sink {
namespace {

// Connection-level properties, matched whole.
constexpr std::array<std::string_view, 13> kCommonNames = {
    "security.protocol",
    "enable.ssl.certificate.verification",
    "enable.sasl.oauthbearer.unsecure.jwt",
    "client.id",
    "client.rack",
    "connections.max.idle.ms",
    "metadata.max.age.ms",
    "topic.metadata.propagation.max.ms",
    "broker.version.fallback",
    "debug",
    "log_level",
    "log.connection.close",
    "log.thread.name",
};

// Families of connection-level properties, matched by how their names start. The trailing dot
// (or the full stem) keeps a prefix from catching an unrelated name.
constexpr std::array<std::string_view, 7> kCommonPrefixes = {
    "ssl.", "sasl.", "socket.", "broker.address.", "reconnect.backoff.", "topic.metadata.refresh.", "api.version.",
};

}  // namespace

bool IsCommonClientProperty(std::string_view name) {
  if (std::find(kCommonNames.begin(), kCommonNames.end(), name) != kCommonNames.end()) return true;
  return std::any_of(kCommonPrefixes.begin(), kCommonPrefixes.end(),
                     [&](std::string_view prefix) { return name.starts_with(prefix) && name.size() > prefix.size(); });
}

PropertyList CommonClientProperties(const PropertyList& user_properties) {
  PropertyList common;
  for (const auto& property : user_properties) {
    if (IsCommonClientProperty(property.first)) common.push_back(property);
  }
  return common;
}

}  // namespace sse2kafka::sink
