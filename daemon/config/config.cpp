#include "config/config.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace sse2kafka::config {

namespace {

std::string Lowercase(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

}  // namespace

bool IsSecretProperty(std::string_view name) {
  const std::string lower = Lowercase(name);
  for (std::string_view word : {"password", "secret", "token"}) {
    if (lower.find(word) != std::string::npos) return true;
  }
  return lower == "ssl.key.pem" || lower == "sasl.oauthbearer.config";
}

std::string RedactedHeaders(const std::vector<Header>& headers) {
  std::string text;
  for (const auto& [name, value] : headers) {
    if (!text.empty()) text += ", ";
    text += name;
    text += ": ***";
  }
  return text;
}

std::string RedactedProperties(const std::vector<Header>& properties) {
  std::string text;
  for (const auto& [name, value] : properties) {
    if (!text.empty()) text += ", ";
    text += name;
    text += '=';
    text += IsSecretProperty(name) ? std::string_view("***") : std::string_view(value);
  }
  return text;
}

std::vector<std::string> RoutedTopics(const std::vector<StreamConfig>& streams) {
  std::set<std::string> topics;
  for (const StreamConfig& s : streams) {
    if (s.topics.empty()) {
      topics.insert(s.topic);
    } else {
      for (const TopicRoute& route : s.topics) topics.insert(route.topic);
    }
  }
  return {topics.begin(), topics.end()};
}

}  // namespace sse2kafka::config
