// The ops layer as the process sees it: log lines as written to stderr (captured by pointing
// file descriptor 2 at a temporary file), the journal priority prefix, the log rate limiter,
// signals through signalfd, and sd_notify messages on a socket the test listens on.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ops/log.h"
#include "ops/service_notifier.h"
#include "ops/signals.h"

namespace sse2kafka::ops {
namespace {

using std::chrono::milliseconds;
using Json = nlohmann::json;

// Points stderr (fd 2) at a temporary file for the object's lifetime.
class StderrCapture {
 public:
  StderrCapture() {
    std::string pattern = (std::filesystem::temp_directory_path() / "ops_test_stderr_XXXXXX").string();
    fd_ = mkstemp(pattern.data());
    if (fd_ < 0) return;
    path_ = pattern;
    std::fflush(stderr);
    saved_ = dup(STDERR_FILENO);
    dup2(fd_, STDERR_FILENO);
  }
  ~StderrCapture() {
    Restore();
    if (fd_ >= 0) close(fd_);
    if (!path_.empty()) unlink(path_.c_str());
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  bool ok() const { return fd_ >= 0 && saved_ >= 0; }
  // The file's device and inode, as systemd would put them in JOURNAL_STREAM.
  std::string DevIno() const {
    struct stat st {};
    fstat(fd_, &st);
    return std::to_string(static_cast<unsigned long long>(st.st_dev)) + ":" +
           std::to_string(static_cast<unsigned long long>(st.st_ino));
  }
  // Everything written to stderr so far, split into lines (without the LFs).
  std::vector<std::string> Lines() const {
    std::fflush(stderr);
    std::string text;
    char buf[4096];
    for (off_t offset = 0; offset < (1 << 24);) {
      const ssize_t n = pread(fd_, buf, sizeof buf, offset);
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
      offset += n;
    }
    std::vector<std::string> lines;
    std::size_t start = 0;
    for (std::size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
      lines.push_back(text.substr(start, nl - start));
      start = nl + 1;
    }
    if (start < text.size()) lines.push_back(text.substr(start));  // an unterminated last line
    return lines;
  }

 private:
  void Restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    saved_ = -1;
  }

  int fd_ = -1;
  int saved_ = -1;
  std::string path_;
};

// Restores an environment variable when the test ends.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// "2026-11-23T21:07:52.123Z": RFC 3339 UTC with milliseconds.
bool IsIsoMillisUtc(std::string_view s) {
  constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (s.size() != kShape.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (kShape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != kShape[i]) return false;
  }
  return true;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override { journal_ = std::make_unique<ScopedEnv>("JOURNAL_STREAM", std::nullopt); }
  void TearDown() override {
    // Later tests (and gtest) must not write into a capture file that is gone.
    SetupLogging(LogFormat::kText, "info");
  }
  std::unique_ptr<ScopedEnv> journal_;
};

// ---- JSON ------------------------------------------------------------------------------------

TEST_F(LogTest, JsonLinesAreJsonObjectsWithTypedFields) {
  StderrCapture capture;
  ASSERT_TRUE(capture.ok());
  ASSERT_TRUE(SetupLogging(LogFormat::kJson, "debug"));
  Log(spdlog::level::info, "wiki", "connected",
      {{"url", "http://example.test/stream"}, {"status", 200}, {"attempt", 3},
       {"delay_ms", static_cast<int64_t>(-1500)}, {"note", "say \"hi\"\n\tbye\\"}});
  Log(spdlog::level::warn, "", "process-wide line");
  Log(spdlog::level::debug, "s2", "debug detail", {{"big", static_cast<unsigned long long>(1) << 40}});
  Log(spdlog::level::trace, "s2", "below the level");
  spdlog::error("library says {}", "\"quoted\"\x01");  // not through Log: still a JSON object

  const std::vector<std::string> lines = capture.Lines();
  ASSERT_EQ(lines.size(), 4u) << ::testing::PrintToString(lines);
  std::vector<Json> parsed;
  for (const std::string& line : lines) {
    Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << "not a JSON object: " << line;
    ASSERT_TRUE(j.contains("ts") && j["ts"].is_string()) << line;
    EXPECT_TRUE(IsIsoMillisUtc(j["ts"].get<std::string>())) << line;
    parsed.push_back(std::move(j));
  }

  EXPECT_EQ(parsed[0]["level"], "info");
  EXPECT_EQ(parsed[0]["msg"], "connected");
  EXPECT_EQ(parsed[0]["stream"], "wiki");
  EXPECT_EQ(parsed[0]["url"], "http://example.test/stream");
  EXPECT_TRUE(parsed[0]["status"].is_number_integer());
  EXPECT_EQ(parsed[0]["status"], 200);
  EXPECT_EQ(parsed[0]["attempt"], 3);
  EXPECT_EQ(parsed[0]["delay_ms"], -1500);
  EXPECT_TRUE(parsed[0]["note"].is_string());
  EXPECT_EQ(parsed[0]["note"], "say \"hi\"\n\tbye\\");

  EXPECT_EQ(parsed[1]["level"], "warn");
  EXPECT_EQ(parsed[1]["msg"], "process-wide line");
  EXPECT_FALSE(parsed[1].contains("stream")) << lines[1];

  EXPECT_EQ(parsed[2]["level"], "debug");
  EXPECT_EQ(parsed[2]["big"], int64_t{1} << 40);

  EXPECT_EQ(parsed[3]["level"], "error");
  EXPECT_EQ(parsed[3]["msg"], "library says \"quoted\"\x01");
}

// Field values can hold bytes from the network (a failed response's body, cut at 512 bytes,
// perhaps inside a UTF-8 sequence). The line must stay JSON, which is UTF-8 (RFC 8259 §8.1).
TEST_F(LogTest, JsonLineStaysValidJsonWhenAFieldHoldsInvalidUtf8) {
  StderrCapture capture;
  ASSERT_TRUE(capture.ok());
  ASSERT_TRUE(SetupLogging(LogFormat::kJson, "info"));
  Log(spdlog::level::warn, "s", "request failed",
      {{"body", "caf\xe9 \xe2\x82"}, {"status", 500}, {"valid", "caf\xc3\xa9 \xe2\x9c\x93"}});
  const std::vector<std::string> lines = capture.Lines();
  ASSERT_EQ(lines.size(), 1u);
  const Json j = Json::parse(lines[0], nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(j.is_object()) << "not valid JSON: " << lines[0];
  EXPECT_EQ(j["status"], 500);
  EXPECT_EQ(j["valid"], "caf\xc3\xa9 \xe2\x9c\x93") << "valid UTF-8 must pass unchanged";
}

// ---- text ------------------------------------------------------------------------------------

TEST_F(LogTest, TextLinesShowStreamInBracketsAndKeyValueFields) {
  StderrCapture capture;
  ASSERT_TRUE(capture.ok());
  ASSERT_TRUE(SetupLogging(LogFormat::kText, "info"));
  Log(spdlog::level::info, "wiki", "connected",
      {{"url", "http://example.test/s"}, {"status", 200}, {"reason", "two words"}, {"empty", ""},
       {"quote", "a\"b"}});
  Log(spdlog::level::warn, "", "process-wide line", {{"n", 1}});
  Log(spdlog::level::debug, "wiki", "hidden below info");

  const std::vector<std::string> lines = capture.Lines();
  ASSERT_EQ(lines.size(), 2u) << ::testing::PrintToString(lines);
  ASSERT_GT(lines[0].size(), 24u);
  EXPECT_TRUE(IsIsoMillisUtc(lines[0].substr(0, 24))) << lines[0];
  EXPECT_EQ(lines[0].substr(24),
            " info  [wiki] connected url=http://example.test/s status=200 reason=\"two words\" empty=\"\" "
            "quote=\"a\\\"b\"");
  EXPECT_THAT(lines[1], ::testing::EndsWith(" process-wide line n=1"));
  EXPECT_THAT(lines[1], ::testing::Not(::testing::HasSubstr("[")));
  EXPECT_THAT(lines[1], ::testing::HasSubstr("warn"));
}

TEST_F(LogTest, UnknownLevelIsRefusedAndChangesNothing) {
  StderrCapture capture;
  ASSERT_TRUE(capture.ok());
  ASSERT_TRUE(SetupLogging(LogFormat::kJson, "info"));
  EXPECT_FALSE(SetupLogging(LogFormat::kText, "verbose"));
  EXPECT_FALSE(SetLogLevel("loud"));
  Log(spdlog::level::info, "s", "still json");
  ASSERT_TRUE(SetLogLevel("warn"));
  Log(spdlog::level::info, "s", "now hidden");
  Log(spdlog::level::warn, "s", "shown");
  const std::vector<std::string> lines = capture.Lines();
  ASSERT_EQ(lines.size(), 2u) << ::testing::PrintToString(lines);
  EXPECT_TRUE(Json::parse(lines[0], nullptr, false).is_object()) << lines[0];
  EXPECT_THAT(lines[0], ::testing::HasSubstr("still json"));
  EXPECT_THAT(lines[1], ::testing::HasSubstr("shown"));
}

TEST(AppendJsonEscapedTest, EscapesQuotesBackslashesAndControlCharacters) {
  std::string out = "[";
  AppendJsonEscaped(out, std::string("a\"b\\c\n\r\t\x01\x1f\x7f", 11));
  out += "]";
  EXPECT_EQ(out, "[a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f\\u007f]");
  const Json j = Json::parse("\"" + out + "\"", nullptr, false);
  EXPECT_TRUE(j.is_string());
}

// ---- journal ---------------------------------------------------------------------------------

TEST_F(LogTest, JournalPriorityPrefixWhenJournalStreamNamesStderr) {
  StderrCapture capture;
  ASSERT_TRUE(capture.ok());
  ScopedEnv env("JOURNAL_STREAM", capture.DevIno());
  ASSERT_TRUE(SetupLogging(LogFormat::kText, "debug"));
  Log(spdlog::level::debug, "s", "d");
  Log(spdlog::level::info, "s", "i");
  Log(spdlog::level::warn, "s", "w");
  Log(spdlog::level::err, "s", "e");
  ASSERT_TRUE(SetupLogging(LogFormat::kJson, "info"));
  Log(spdlog::level::err, "s", "json error");

  const std::vector<std::string> lines = capture.Lines();
  ASSERT_EQ(lines.size(), 5u) << ::testing::PrintToString(lines);
  EXPECT_THAT(lines[0], ::testing::StartsWith("<7>"));
  EXPECT_THAT(lines[1], ::testing::StartsWith("<6>"));
  EXPECT_THAT(lines[2], ::testing::StartsWith("<4>"));
  EXPECT_THAT(lines[3], ::testing::StartsWith("<3>"));
  ASSERT_THAT(lines[4], ::testing::StartsWith("<3>{"));
  const Json j = Json::parse(lines[4].substr(3), nullptr, false);
  ASSERT_TRUE(j.is_object()) << lines[4];
  EXPECT_EQ(j["msg"], "json error");
}

TEST_F(LogTest, NoJournalPrefixWhenJournalStreamNamesAnotherFile) {
  StderrCapture capture;
  ASSERT_TRUE(capture.ok());
  const std::string dev_ino = capture.DevIno();
  const std::string other = dev_ino.substr(0, dev_ino.find(':')) + ":" +
                            std::to_string(std::stoull(dev_ino.substr(dev_ino.find(':') + 1)) + 1);
  ScopedEnv env("JOURNAL_STREAM", other);
  ASSERT_TRUE(SetupLogging(LogFormat::kText, "info"));
  Log(spdlog::level::warn, "s", "w");
  const std::vector<std::string> lines = capture.Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], ::testing::Not(::testing::StartsWith("<")));
  EXPECT_TRUE(IsIsoMillisUtc(lines[0].substr(0, 24))) << lines[0];
}

// ---- rate limiter ----------------------------------------------------------------------------

TEST(LogRateLimiterTest, BurstPassesThenOneLineAWindowReportsWhatWasHeldBack) {
  LogRateLimiter limiter(milliseconds(1000), 3);
  const LogRateLimiter::Clock::time_point t0{std::chrono::hours(100)};
  uint64_t suppressed = 99;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limiter.Allow("disconnected", t0 + milliseconds(i), &suppressed)) << i;
    EXPECT_EQ(suppressed, 0u);
  }
  suppressed = 99;
  EXPECT_FALSE(limiter.Allow("disconnected", t0 + milliseconds(3), &suppressed));
  EXPECT_FALSE(limiter.Allow("disconnected", t0 + milliseconds(500), &suppressed));
  EXPECT_EQ(suppressed, 99u) << "a held-back line must not touch *suppressed";

  // Another key has its own budget.
  EXPECT_TRUE(limiter.Allow("request failed", t0 + milliseconds(500), &suppressed));
  EXPECT_EQ(suppressed, 0u);

  EXPECT_FALSE(limiter.Allow("disconnected", t0 + milliseconds(1001), &suppressed));
  // One window after the last line written, one line passes with the count of those held back.
  EXPECT_TRUE(limiter.Allow("disconnected", t0 + milliseconds(1002), &suppressed));
  EXPECT_EQ(suppressed, 3u);
  // Still failing: no new burst, one line a window.
  EXPECT_FALSE(limiter.Allow("disconnected", t0 + milliseconds(1003), &suppressed));
  EXPECT_FALSE(limiter.Allow("disconnected", t0 + milliseconds(1900), &suppressed));
  EXPECT_TRUE(limiter.Allow("disconnected", t0 + milliseconds(2002), &suppressed));
  EXPECT_EQ(suppressed, 2u);
  // Quiet for a whole window: the burst is back.
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limiter.Allow("disconnected", t0 + milliseconds(5000 + i), &suppressed)) << i;
    EXPECT_EQ(suppressed, 0u);
  }
  EXPECT_FALSE(limiter.Allow("disconnected", t0 + milliseconds(5003), &suppressed));
}

TEST(LogRateLimiterTest, AKeyThatFailsForeverWritesBurstPlusOneLinePerWindow) {
  LogRateLimiter limiter(milliseconds(60000), 5);
  const LogRateLimiter::Clock::time_point t0{std::chrono::hours(100)};
  uint64_t suppressed = 0;
  uint64_t reported = 0;
  int written = 0;
  constexpr int kAttempts = 10 * 60 * 31;  // 31 a second for 10 minutes
  for (int i = 0; i < kAttempts; ++i) {
    if (limiter.Allow("reconnecting", t0 + milliseconds(i * 1000 / 31), &suppressed)) {
      ++written;
      reported += suppressed;
    }
  }
  EXPECT_LE(written, 5 + 10);
  EXPECT_GE(written, 5 + 9);
  EXPECT_GE(reported + static_cast<uint64_t>(written), static_cast<uint64_t>(kAttempts) - 31 * 60)
      << "every line is written or counted, but for the last window's";
}

// ---- signals ---------------------------------------------------------------------------------

bool WaitReadable(int fd, milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(timeout.count())) == 1 && (p.revents & POLLIN);
}

TEST(SignalReceiverTest, RaisedSignalsBecomeProcessSignals) {
  std::string error;
  std::unique_ptr<SignalReceiver> receiver = SignalReceiver::Create(&error);
  ASSERT_NE(receiver, nullptr) << error;
  ASSERT_GE(receiver->fd(), 0);
  ProcessSignal signal = ProcessSignal::kTerminate;
  EXPECT_FALSE(receiver->Next(&signal)) << "nothing is pending yet";

  // The signals are blocked now, so raise() leaves them pending for the signalfd.
  ASSERT_EQ(raise(SIGHUP), 0);
  ASSERT_TRUE(WaitReadable(receiver->fd(), milliseconds(5000)));
  ASSERT_TRUE(receiver->Next(&signal));
  EXPECT_EQ(signal, ProcessSignal::kReload);
  EXPECT_FALSE(receiver->Next(&signal));

  ASSERT_EQ(raise(SIGTERM), 0);
  ASSERT_TRUE(WaitReadable(receiver->fd(), milliseconds(5000)));
  ASSERT_TRUE(receiver->Next(&signal));
  EXPECT_EQ(signal, ProcessSignal::kTerminate);

  ASSERT_EQ(raise(SIGINT), 0);
  ASSERT_TRUE(WaitReadable(receiver->fd(), milliseconds(5000)));
  ASSERT_TRUE(receiver->Next(&signal));
  EXPECT_EQ(signal, ProcessSignal::kInterrupt);
  EXPECT_FALSE(receiver->Next(&signal));
}

// ---- service manager -------------------------------------------------------------------------

// A datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  NotifySocket() {
    std::string pattern = (std::filesystem::temp_directory_path() / "ops_test_notify_XXXXXX").string();
    if (!mkdtemp(pattern.data())) return;
    dir_ = pattern;
    path_ = dir_ + "/notify";
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path_.size() >= sizeof addr.sun_path) return;
    std::copy(path_.begin(), path_.end(), addr.sun_path);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~NotifySocket() {
    if (fd_ >= 0) close(fd_);
    if (!path_.empty()) unlink(path_.c_str());
    if (!dir_.empty()) rmdir(dir_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  bool ok() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  // The next datagram; nullopt when none comes within a few seconds.
  std::optional<std::string> Receive() const {
    if (!WaitReadable(fd_, milliseconds(5000))) return std::nullopt;
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<std::size_t>(n));
  }
  bool Empty() const { return !WaitReadable(fd_, milliseconds(0)); }

 private:
  int fd_ = -1;
  std::string dir_;
  std::string path_;
};

TEST(ServiceNotifierTest, SendsStateChangesToNotifySocket) {
  NotifySocket socket;
  ASSERT_TRUE(socket.ok());
  ScopedEnv env("NOTIFY_SOCKET", socket.path());
  ServiceNotifier notifier;

  notifier.Ready("2 streams");
  EXPECT_EQ(socket.Receive(), "READY=1\nSTATUS=2 streams");
  notifier.Status("reloading config");
  EXPECT_EQ(socket.Receive(), "STATUS=reloading config");
  notifier.WatchdogPing();
  EXPECT_EQ(socket.Receive(), "WATCHDOG=1");
  notifier.Reloading();
  const std::optional<std::string> reloading = socket.Receive();
  ASSERT_TRUE(reloading.has_value());
  const std::string prefix = "RELOADING=1\nMONOTONIC_USEC=";
  EXPECT_EQ(reloading->substr(0, prefix.size()), prefix);
  EXPECT_TRUE(AllDigits(reloading->substr(std::min(prefix.size(), reloading->size())))) << *reloading;
  notifier.Stopping();
  EXPECT_EQ(socket.Receive(), "STOPPING=1");
  EXPECT_TRUE(socket.Empty());
}

TEST(ServiceNotifierTest, WithoutNotifySocketEveryCallIsANoOp) {
  ScopedEnv env("NOTIFY_SOCKET", std::nullopt);
  ServiceNotifier notifier;
  notifier.Ready("x");
  notifier.Reloading();
  notifier.Status("y");
  notifier.WatchdogPing();
  notifier.Stopping();
  SUCCEED();
}

TEST(ServiceNotifierTest, WatchdogIntervalIsHalfTheTimeoutSetForThisProcess) {
  {
    ScopedEnv usec("WATCHDOG_USEC", std::nullopt);
    ScopedEnv pid("WATCHDOG_PID", std::nullopt);
    EXPECT_EQ(ServiceNotifier().WatchdogInterval(), std::nullopt);
  }
  {
    ScopedEnv usec("WATCHDOG_USEC", "3000000");
    ScopedEnv pid("WATCHDOG_PID", std::to_string(getpid()));
    EXPECT_EQ(ServiceNotifier().WatchdogInterval(), std::optional<milliseconds>(milliseconds(1500)));
  }
  {
    // Set for another process (a parent that did not unset it): not ours.
    ScopedEnv usec("WATCHDOG_USEC", "3000000");
    ScopedEnv pid("WATCHDOG_PID", std::to_string(getpid() + 1));
    EXPECT_EQ(ServiceNotifier().WatchdogInterval(), std::nullopt);
  }
}

}  // namespace
}  // namespace sse2kafka::ops
