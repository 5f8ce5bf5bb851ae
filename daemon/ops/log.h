// Logging for people (text) and for log shippers (one JSON object per line).
//
// Every line that concerns one stream carries its name: in text as "[name]", in JSON as the
// "stream" member. Secret values (header values, secret librdkafka properties) must never be
// passed here; callers redact them first (config::RedactedHeaders and friends).
#pragma once

#include <cstdint>
#include <chrono>
#include <initializer_list>
#include <map>
#include <span>
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
void Log(spdlog::level::level_enum level, std::string_view stream, std::string_view message,
         std::span<const LogField> fields);

// Holds back lines that repeat too often: a feed that fails every second must not flood the
// log. Per key (e.g. a stream's message text), the first `burst` lines pass in full; after that,
// while the lines keep coming, one line per `window` passes and reports how many were held back
// since the last one written. A key that has been quiet for a whole window gets its burst back.
// So a stream that fails forever writes at most burst + 1 lines per window per key.
class LogRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogRateLimiter(std::chrono::milliseconds window = std::chrono::seconds(60), int burst = 5)
      : window_(window), burst_(burst) {}

  // True when a line with `key` may be written at `now`; then *suppressed is the number of
  // lines with that key held back since the last one written (and is reset). A held-back line
  // leaves *suppressed alone.
  bool Allow(std::string_view key, Clock::time_point now, uint64_t* suppressed);

  std::chrono::milliseconds window() const { return window_; }

 private:
  struct Entry {
    Clock::time_point last_seen;
    Clock::time_point last_written;
    int burst_used = 0;
    uint64_t held_back = 0;
  };
  std::chrono::milliseconds window_;
  int burst_;
  std::map<std::string, Entry, std::less<>> entries_;  // keys are a few fixed message texts
};

// Escapes `text` as the inside of a JSON string (no quotes added).
void AppendJsonEscaped(std::string& out, std::string_view text);

}  // namespace sse2kafka::ops
