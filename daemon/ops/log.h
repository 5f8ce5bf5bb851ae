// Logging for people (text) and for log shippers (one JSON object per line).
//
// Every line that concerns one stream carries its name: in text as "[name]", in JSON as the
// "stream" member. Secret values (header values, secret librdkafka properties) must never be
// passed here; callers redact them first (config::RedactedHeaders and friends).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace sse2kafka::ops {

enum class LogFormat { kText, kJson };

// Installs the process-wide spdlog logger writing to stderr in `format` at `level` (one of
// trace|debug|info|warn|error). Returns false for an unknown level name (nothing changes).
bool SetupLogging(LogFormat format, std::string_view level);

// Changes only the level (e.g. after a config reload). False for an unknown level name.
bool SetLogLevel(std::string_view level);

// One key/value detail of a log line. Numbers stay numbers in JSON.
struct LogField {
  LogField(std::string_view k, std::string_view v) : key(k), text(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), text(v) {}
  LogField(std::string_view k, const char* v) : key(k), text(v) {}
  LogField(std::string_view k, long long v) : key(k), number(v), is_number(true) {}
  LogField(std::string_view k, long v) : key(k), number(v), is_number(true) {}
  LogField(std::string_view k, int v) : key(k), number(v), is_number(true) {}
  LogField(std::string_view k, unsigned long long v)
      : key(k), number(static_cast<int64_t>(v)), is_number(true) {}
  LogField(std::string_view k, unsigned long v)
      : key(k), number(static_cast<int64_t>(v)), is_number(true) {}
  LogField(std::string_view k, unsigned v) : key(k), number(v), is_number(true) {}

  std::string_view key;
  std::string_view text;
  int64_t number = 0;
  bool is_number = false;
};

// Writes one line at `level`. `stream` may be empty for process-wide lines.
void Log(spdlog::level::level_enum level, std::string_view stream, std::string_view message,
         std::initializer_list<LogField> fields = {});

// Escapes `text` as the inside of a JSON string (no quotes added).
void AppendJsonEscaped(std::string& out, std::string_view text);

}  // namespace sse2kafka::ops
