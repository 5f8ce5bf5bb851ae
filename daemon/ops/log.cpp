#include "ops/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <optional>

namespace sse2kafka::ops {
namespace {

// Our own structured lines reach the formatter as JSON members prefixed with this byte, so
// that lines from libraries that call spdlog directly still become valid JSON objects.
constexpr char kStructuredMarker = '\x1e';

std::optional<spdlog::level::level_enum> ParseLevel(std::string_view name) {
  if (name == "trace") return spdlog::level::trace;
  if (name == "debug") return spdlog::level::debug;
  if (name == "info") return spdlog::level::info;
  if (name == "warn") return spdlog::level::warn;
  if (name == "error") return spdlog::level::err;
  return std::nullopt;
}

std::string_view LevelName(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

void AppendTimestamp(std::string& out, spdlog::log_clock::time_point tp) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(tp.time_since_epoch());
  const std::time_t secs = static_cast<std::time_t>(ms.count() / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  const int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                              tm.tm_min, tm.tm_sec, static_cast<int>(ms.count() % 1000));
  out.append(buf, static_cast<std::size_t>(n));
}

// One JSON object per line: {"ts":..., "level":..., "msg":..., "stream":..., fields...}.
class JsonLineFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line;
    line.reserve(msg.payload.size() + 64);
    line += "{\"ts\":\"";
    AppendTimestamp(line, msg.time);
    line += "\",\"level\":\"";
    line += LevelName(msg.level);
    line += "\",";
    std::string_view payload(msg.payload.data(), msg.payload.size());
    if (!payload.empty() && payload.front() == kStructuredMarker) {
      line.append(payload.substr(1));
    } else {
      line += "\"msg\":\"";
      AppendJsonEscaped(line, payload);
      line += '"';
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonLineFormatter>();
  }
};

// The logger's name records its format, so Log needs no state of its own.
constexpr std::string_view kTextLoggerName = "sse2kafka";
constexpr std::string_view kJsonLoggerName = "sse2kafka-json";

bool JsonLogging() { return spdlog::default_logger_raw()->name() == kJsonLoggerName; }

// sd-daemon(3) priority prefixes: journald reads "<N>" at the start of a line as its priority.
int SyslogPriority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug: return 7;
    case spdlog::level::info: return 6;
    case spdlog::level::warn: return 4;
    case spdlog::level::err: return 3;
    default: return 2;
  }
}

class JournalPriorityFormatter final : public spdlog::formatter {
 public:
  explicit JournalPriorityFormatter(std::unique_ptr<spdlog::formatter> inner) : inner_(std::move(inner)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const char prefix[] = {'<', static_cast<char>('0' + SyslogPriority(msg.level)), '>'};
    dest.append(prefix, prefix + sizeof prefix);
    inner_->format(msg, dest);
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JournalPriorityFormatter>(inner_->clone());
  }

 private:
  std::unique_ptr<spdlog::formatter> inner_;
};

// systemd sets JOURNAL_STREAM=<dev>:<inode> when stderr is connected to the journal.
bool StderrIsJournal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (!stream) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

// The length of the well-formed UTF-8 sequence (RFC 3629) that `s` starts with; 0 if none.
std::size_t Utf8SequenceLength(std::string_view s) {
  const auto byte = [s](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  std::size_t n = 0;
  unsigned char low = 0x80, high = 0xbf;  // allowed range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    n = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    n = 3;
    if (lead == 0xe0) low = 0xa0;   // overlong
    if (lead == 0xed) high = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    n = 4;
    if (lead == 0xf0) low = 0x90;   // overlong
    if (lead == 0xf4) high = 0x8f;  // above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n || byte(1) < low || byte(1) > high) return 0;
  for (std::size_t i = 2; i < n; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xbf) return 0;
  }
  return n;
}

}  // namespace

void AppendJsonEscaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      // JSON text is UTF-8: bytes from the network that are not become U+FFFD.
      const std::size_t n = Utf8SequenceLength(text.substr(i));
      if (n == 0) {
        out += "\xef\xbf\xbd";
      } else {
        out.append(text.substr(i, n));
        i += n - 1;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

bool SetupLogging(LogFormat format, std::string_view level) {
  const auto parsed = ParseLevel(level);
  if (!parsed) return false;
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>(
      std::string(format == LogFormat::kJson ? kJsonLoggerName : kTextLoggerName), sink);
  std::unique_ptr<spdlog::formatter> formatter;
  if (format == LogFormat::kJson) {
    formatter = std::make_unique<JsonLineFormatter>();
  } else {
    formatter = std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %-5l %v",
                                                            spdlog::pattern_time_type::utc);
  }
  if (StderrIsJournal()) {
    formatter = std::make_unique<JournalPriorityFormatter>(std::move(formatter));
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(*parsed);
  logger->flush_on(spdlog::level::trace);  // a daemon's log must not lag behind a crash
  spdlog::set_default_logger(logger);
  return true;
}

bool SetLogLevel(std::string_view level) {
  const auto parsed = ParseLevel(level);
  if (!parsed) return false;
  spdlog::set_level(*parsed);
  return true;
}

void Log(spdlog::level::level_enum level, std::string_view stream, std::string_view message,
         std::initializer_list<LogField> fields) {
  Log(level, stream, message, std::span<const LogField>(fields.begin(), fields.size()));
}

bool LogRateLimiter::Allow(std::string_view key, Clock::time_point now, uint64_t* suppressed) {
  auto it = entries_.find(key);
  if (it == entries_.end()) it = entries_.emplace(std::string(key), Entry{now, now, 0, 0}).first;
  Entry& e = it->second;
  if (now - e.last_seen >= window_) e.burst_used = 0;  // quiet for a window: a fresh burst
  e.last_seen = now;
  const bool in_burst = e.burst_used < burst_;
  if (!in_burst && now - e.last_written < window_) {
    ++e.held_back;
    return false;
  }
  if (in_burst) ++e.burst_used;
  e.last_written = now;
  *suppressed = e.held_back;
  e.held_back = 0;
  return true;
}

void Log(spdlog::level::level_enum level, std::string_view stream, std::string_view message,
         std::span<const LogField> fields) {
  if (!spdlog::should_log(level)) return;
  std::string line;
  if (JsonLogging()) {
    line += kStructuredMarker;
    line += "\"msg\":\"";
    AppendJsonEscaped(line, message);
    line += '"';
    if (!stream.empty()) {
      line += ",\"stream\":\"";
      AppendJsonEscaped(line, stream);
      line += '"';
    }
    for (const LogField& f : fields) {
      line += ",\"";
      AppendJsonEscaped(line, f.key);
      line += "\":";
      if (f.is_number) {
        line += std::to_string(f.number);
      } else {
        line += '"';
        AppendJsonEscaped(line, f.text);
        line += '"';
      }
    }
  } else {
    if (!stream.empty()) {
      line += '[';
      line += stream;
      line += "] ";
    }
    line += message;
    for (const LogField& f : fields) {
      line += ' ';
      line += f.key;
      line += '=';
      if (f.is_number) {
        line += std::to_string(f.number);
      } else if (f.text.find_first_of(" \"=") != std::string_view::npos || f.text.empty()) {
        line += '"';
        AppendJsonEscaped(line, f.text);
        line += '"';
      } else {
        line += f.text;
      }
    }
  }
  spdlog::log(level, "{}", line);
}

}  // namespace sse2kafka::ops
