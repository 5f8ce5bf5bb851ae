#include "state/checkpoint_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace sse2kafka::state {
namespace {

namespace fs = std::filesystem;
using Checkpoints = std::map<std::string, std::string, std::less<>>;

// A directory under the system temp dir, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "checkpoint_store_test.XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    for (const auto& entry : fs::recursive_directory_iterator(path_, ec)) {
      if (entry.is_directory()) fs::permissions(entry.path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Bit-at-a-time CRC-32, written independently of the store's table-driven one.
uint32_t ReferenceCrc32(std::string_view bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : bytes) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

std::string WithCrcLine(const std::string& body) {
  char line[32];
  std::snprintf(line, sizeof line, "crc32 %08x\n", ReferenceCrc32(body));
  return body + line;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFile(const fs::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

std::vector<fs::path> CorruptCopies(const fs::path& dir) {
  std::vector<fs::path> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind("checkpoints.corrupt-", 0) == 0) found.push_back(entry.path());
  }
  return found;
}

struct OpenResult {
  std::unique_ptr<CheckpointStore> store;
  std::string error;
  std::vector<std::string> warnings;
};

OpenResult OpenStore(const fs::path& dir, bool reset_on_corrupt = false) {
  OpenResult result;
  result.store = CheckpointStore::Open({dir.string(), reset_on_corrupt}, &result.error, &result.warnings);
  return result;
}

struct FileIdentity {
  ino_t inode;
  timespec mtime;
};

FileIdentity Identify(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return {st.st_ino, st.st_mtim};
}

// Waits for a child with a deadline; kills it if it does not finish. Returns its exit status or -1.
int WaitForChild(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    int status = 0;
    pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (done < 0 || std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Exit codes of a child that tries to open the store.
constexpr int kChildRefusedAsLocked = 10;
constexpr int kChildOpened = 11;
constexpr int kChildOtherError = 12;

int OpenInChildProcess(const fs::path& dir) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string error;
    std::vector<std::string> warnings;
    auto store = CheckpointStore::Open({dir.string(), false}, &error, &warnings);
    int code = store ? kChildOpened
                     : (error.find("another sse2kafka") != std::string::npos ? kChildRefusedAsLocked
                                                                             : kChildOtherError);
    ::_exit(code);
  }
  if (pid < 0) return -1;
  return WaitForChild(pid);
}

Checkpoints SampleCheckpoints() {
  return {
      {"plain", "12345"},
      {"quotes", R"(he said "hi" and left)"},
      {"backslash", R"(C:\path\to\"x"\)"},
      {"tabs-and-controls", std::string("a\tb\x01\x1f" "c")},
      {"unicode", "caf\xC3\xA9 \xF0\x9F\x99\x82 \xE2\x80\xA8 \xE6\x97\xA5\xE6\x9C\xAC"},
      {"json-looking", R"([{"topic":"eqiad.mediawiki.recentchange","partition":0,"offset":123}])"},
      {"empty", ""},
      {"long", std::string(100 * 1024, 'x') + "end"},
      {"with.dots_and-dashes", "id"},
  };
}

TEST(CheckpointStoreTest, ReferenceCrcMatchesTheStandardCheckValue) {
  EXPECT_EQ(ReferenceCrc32("123456789"), 0xCBF43926u);
}

TEST(CheckpointStoreTest, CreatesMissingDirectoryAndParents) {
  TempDir tmp;
  const fs::path dir = tmp.path() / "a" / "b" / "state";
  OpenResult r = OpenStore(dir);
  ASSERT_TRUE(r.store) << r.error;
  EXPECT_TRUE(r.warnings.empty());
  EXPECT_TRUE(fs::is_directory(dir));
  EXPECT_TRUE(fs::exists(dir / "lock"));
  EXPECT_FALSE(fs::exists(dir / "checkpoints"));
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0700, 0700u);
  EXPECT_EQ(st.st_mode & 0007, 0u) << "others must not read checkpoints";
  EXPECT_FALSE(r.store->dirty());
  EXPECT_TRUE(r.store->checkpoints().empty());
}

TEST(CheckpointStoreTest, RoundTripKeepsEveryIdExactly) {
  TempDir tmp;
  const Checkpoints expected = SampleCheckpoints();
  {
    OpenResult r = OpenStore(tmp.path());
    ASSERT_TRUE(r.store) << r.error;
    for (const auto& [stream, id] : expected) r.store->Set(stream, id);
    EXPECT_TRUE(r.store->dirty());
    std::string error;
    ASSERT_TRUE(r.store->Flush(&error)) << error;
    EXPECT_FALSE(r.store->dirty());
  }
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  EXPECT_EQ(r.store->checkpoints(), expected);
  EXPECT_EQ(r.store->Get("long"), expected.at("long"));
  EXPECT_EQ(r.store->Get("empty"), std::optional<std::string>(""));
  EXPECT_EQ(r.store->Get("never"), std::nullopt);
  EXPECT_FALSE(r.store->dirty());
  EXPECT_FALSE(fs::exists(tmp.path() / "checkpoints.tmp"));
}

TEST(CheckpointStoreTest, FileFollowsTheDocumentedFormat) {
  TempDir tmp;
  {
    OpenResult r = OpenStore(tmp.path());
    ASSERT_TRUE(r.store) << r.error;
    r.store->Set("b", "2");
    r.store->Set("a", "say \"1\"");
    std::string error;
    ASSERT_TRUE(r.store->Flush(&error)) << error;
  }
  const std::string body =
      "sse2kafka-checkpoints 1\n"
      "{\"stream\":\"a\",\"last_event_id\":\"say \\\"1\\\"\"}\n"
      "{\"stream\":\"b\",\"last_event_id\":\"2\"}\n";
  EXPECT_EQ(ReadFile(tmp.path() / "checkpoints"), WithCrcLine(body));
}

TEST(CheckpointStoreTest, AcceptsAHandWrittenFile) {
  TempDir tmp;
  WriteFile(tmp.path() / "checkpoints",
            WithCrcLine("sse2kafka-checkpoints 1\n{\"last_event_id\":\"x\\ty\",\"stream\":\"s\",\"extra\":1}\n"));
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  EXPECT_EQ(r.store->Get("s"), std::optional<std::string>("x\ty"));
}

TEST(CheckpointStoreTest, AcceptsTheExampleInTheHeaderComment) {
  TempDir tmp;
  WriteFile(tmp.path() / "checkpoints",
            "sse2kafka-checkpoints 1\n"
            "{\"stream\":\"wiki\",\"last_event_id\":\"[{\\\"topic\\\":\\\"eqiad.edits\\\"}]\"}\n"
            "crc32 d371f644\n");
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  EXPECT_EQ(r.store->Get("wiki"), std::optional<std::string>(R"([{"topic":"eqiad.edits"}])"));
}

TEST(CheckpointStoreTest, HeaderOnlyFileHoldsNoCheckpoints) {
  TempDir tmp;
  WriteFile(tmp.path() / "checkpoints", WithCrcLine("sse2kafka-checkpoints 1\n"));
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  EXPECT_TRUE(r.store->checkpoints().empty());
}

TEST(CheckpointStoreTest, SetMarksDirtyOnlyWhenTheValueChanges) {
  TempDir tmp;
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  std::string error;
  r.store->Set("s", "1");
  EXPECT_TRUE(r.store->dirty());
  ASSERT_TRUE(r.store->Flush(&error)) << error;
  r.store->Set("s", "1");
  EXPECT_FALSE(r.store->dirty());
  r.store->Set("s", "2");
  EXPECT_TRUE(r.store->dirty());
  EXPECT_EQ(r.store->Get("s"), std::optional<std::string>("2"));
}

TEST(CheckpointStoreTest, RemoveForgetsAndPersists) {
  TempDir tmp;
  {
    OpenResult r = OpenStore(tmp.path());
    ASSERT_TRUE(r.store) << r.error;
    r.store->Set("keep", "k");
    r.store->Set("drop", "d");
    std::string error;
    ASSERT_TRUE(r.store->Flush(&error)) << error;
    r.store->Remove("unknown");
    EXPECT_FALSE(r.store->dirty());
    r.store->Remove("drop");
    EXPECT_TRUE(r.store->dirty());
    EXPECT_EQ(r.store->Get("drop"), std::nullopt);
    ASSERT_TRUE(r.store->Flush(&error)) << error;
  }
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  EXPECT_EQ(r.store->checkpoints(), (Checkpoints{{"keep", "k"}}));
}

TEST(CheckpointStoreTest, SecondOpenInTheSameProcessFailsUntilTheFirstCloses) {
  TempDir tmp;
  OpenResult first = OpenStore(tmp.path());
  ASSERT_TRUE(first.store) << first.error;
  OpenResult second = OpenStore(tmp.path());
  EXPECT_FALSE(second.store);
  EXPECT_NE(second.error.find("another sse2kafka"), std::string::npos) << second.error;
  EXPECT_NE(second.error.find(tmp.path().string()), std::string::npos) << second.error;
  first.store.reset();
  OpenResult third = OpenStore(tmp.path());
  EXPECT_TRUE(third.store) << third.error;
}

TEST(CheckpointStoreTest, OpenFromAnotherProcessFailsWhileLocked) {
  TempDir tmp;
  {
    OpenResult held = OpenStore(tmp.path());
    ASSERT_TRUE(held.store) << held.error;
    EXPECT_EQ(OpenInChildProcess(tmp.path()), kChildRefusedAsLocked);
  }
  EXPECT_EQ(OpenInChildProcess(tmp.path()), kChildOpened);
}

TEST(CheckpointStoreTest, DirectoryPathThatIsAFileFails) {
  TempDir tmp;
  const fs::path file = tmp.path() / "not-a-dir";
  WriteFile(file, "x");
  OpenResult r = OpenStore(file);
  EXPECT_FALSE(r.store);
  EXPECT_NE(r.error.find(file.string()), std::string::npos) << r.error;
  EXPECT_FALSE(OpenStore(file / "below").store);
}

TEST(CheckpointStoreTest, EmptyDirectoryOptionFails) {
  std::string error;
  std::vector<std::string> warnings;
  EXPECT_FALSE(CheckpointStore::Open({"", false}, &error, &warnings));
  EXPECT_FALSE(error.empty());
}

TEST(CheckpointStoreTest, UnwritableDirectoryFailsAtOpen) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes to read-only directories";
  TempDir tmp;
  ASSERT_TRUE(OpenStore(tmp.path()).store);  // creates the lock file
  fs::permissions(tmp.path(), fs::perms::owner_read | fs::perms::owner_exec);
  OpenResult r = OpenStore(tmp.path());
  EXPECT_FALSE(r.store);
  EXPECT_NE(r.error.find("not writable"), std::string::npos) << r.error;
}

// A valid file with three checkpoints, the subject of the corruption tests.
std::string ValidFile() {
  return WithCrcLine(
      "sse2kafka-checkpoints 1\n"
      "{\"stream\":\"a\",\"last_event_id\":\"1\"}\n"
      "{\"stream\":\"b\",\"last_event_id\":\"two\"}\n"
      "{\"stream\":\"c\",\"last_event_id\":\"\"}\n");
}

// Writes `content` as the checkpoint file of a fresh directory and checks that Open refuses it
// with a message naming the file, then that reset_on_corrupt sets it aside intact.
void ExpectCorrupt(const std::string& content, const std::string& reason_fragment, const std::string& label) {
  SCOPED_TRACE(label);
  TempDir tmp;
  const fs::path file = tmp.path() / "checkpoints";
  WriteFile(file, content);

  OpenResult failed = OpenStore(tmp.path());
  EXPECT_FALSE(failed.store);
  EXPECT_NE(failed.error.find(file.string()), std::string::npos) << failed.error;
  EXPECT_NE(failed.error.find("corrupt"), std::string::npos) << failed.error;
  EXPECT_NE(failed.error.find(reason_fragment), std::string::npos) << failed.error;
  EXPECT_EQ(ReadFile(file), content) << "a refused file must be left alone";

  OpenResult reset = OpenStore(tmp.path(), /*reset_on_corrupt=*/true);
  ASSERT_TRUE(reset.store) << reset.error;
  EXPECT_TRUE(reset.store->checkpoints().empty());
  ASSERT_EQ(reset.warnings.size(), 1u);
  EXPECT_NE(reset.warnings[0].find(file.string()), std::string::npos) << reset.warnings[0];
  EXPECT_FALSE(fs::exists(file));
  const auto copies = CorruptCopies(tmp.path());
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_NE(reset.warnings[0].find(copies[0].string()), std::string::npos) << reset.warnings[0];
  EXPECT_EQ(ReadFile(copies[0]), content);
}

TEST(CheckpointStoreTest, ValidFileIsAccepted) {
  TempDir tmp;
  WriteFile(tmp.path() / "checkpoints", ValidFile());
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  EXPECT_EQ(r.store->checkpoints(), (Checkpoints{{"a", "1"}, {"b", "two"}, {"c", ""}}));
}

TEST(CheckpointStoreTest, EmptyFileIsCorrupt) { ExpectCorrupt("", "empty", "empty"); }

TEST(CheckpointStoreTest, TruncationAnywhereIsCorrupt) {
  const std::string valid = ValidFile();
  for (std::size_t size = 1; size < valid.size(); ++size) {
    ExpectCorrupt(valid.substr(0, size), "", "truncated to " + std::to_string(size) + " bytes");
  }
}

TEST(CheckpointStoreTest, EveryFlippedBitIsCorrupt) {
  const std::string valid = ValidFile();
  for (std::size_t i = 0; i < valid.size(); ++i) {
    for (int bit : {0x01, 0x20, 0x80}) {
      std::string damaged = valid;
      damaged[i] = static_cast<char>(damaged[i] ^ bit);
      ExpectCorrupt(damaged, "", "byte " + std::to_string(i) + " ^ " + std::to_string(bit));
    }
  }
}

TEST(CheckpointStoreTest, ChecksumMismatchIsNamed) {
  std::string damaged = ValidFile();
  damaged[30] = 'X';
  ExpectCorrupt(damaged, "checksum mismatch", "changed content");
}

TEST(CheckpointStoreTest, AppendedGarbageIsCorrupt) {
  ExpectCorrupt(ValidFile() + "{\"stream\":\"d\",\"last_event_id\":\"4\"}\n", "checksum", "appended line");
}

TEST(CheckpointStoreTest, OtherVersionIsCorrupt) {
  ExpectCorrupt(WithCrcLine("sse2kafka-checkpoints 2\n{\"stream\":\"a\",\"last_event_id\":\"1\"}\n"),
                "unsupported format version \"2\"", "version 2");
  ExpectCorrupt(WithCrcLine("sse2kafka-checkpoints \n"), "unsupported format version", "no version");
  ExpectCorrupt(WithCrcLine("something else 1\n"), "not an sse2kafka checkpoint file", "foreign header");
}

TEST(CheckpointStoreTest, BadLinesWithAValidChecksumAreCorrupt) {
  const std::string header = "sse2kafka-checkpoints 1\n";
  ExpectCorrupt(WithCrcLine(header + "{\"stream\":\"a\",\"last_event_id\":\"1\"\n"), "line 2", "bad JSON");
  ExpectCorrupt(WithCrcLine(header + "[\"a\",\"1\"]\n"), "line 2", "array");
  ExpectCorrupt(WithCrcLine(header + "\n"), "line 2", "blank line");
  ExpectCorrupt(WithCrcLine(header + "{\"stream\":\"a\"}\n"), "line 2", "no id");
  ExpectCorrupt(WithCrcLine(header + "{\"stream\":\"a\",\"last_event_id\":1}\n"), "line 2", "numeric id");
  ExpectCorrupt(WithCrcLine(header + "{\"stream\":\"\",\"last_event_id\":\"1\"}\n"), "line 2", "empty stream");
  ExpectCorrupt(WithCrcLine(header + "{\"stream\":\"a\",\"last_event_id\":\"1\"}\n" +
                            "{\"stream\":\"a\",\"last_event_id\":\"2\"}\n"),
                "listed twice", "duplicate stream");
}

TEST(CheckpointStoreTest, ChecksumLineMustBeLowerCaseHex) {
  std::string upper = ValidFile();
  for (std::size_t i = upper.size() - 9; i < upper.size() - 1; ++i) upper[i] = static_cast<char>(std::toupper(upper[i]));
  if (upper != ValidFile()) ExpectCorrupt(upper, "", "upper-case checksum");
  ExpectCorrupt("sse2kafka-checkpoints 1\ncrc32 1234567\n", "not a checksum", "short checksum");
}

TEST(CheckpointStoreTest, RepeatedResetsKeepEveryCorruptCopy) {
  TempDir tmp;
  const fs::path file = tmp.path() / "checkpoints";
  for (int round = 0; round < 3; ++round) {
    WriteFile(file, "garbage " + std::to_string(round));
    OpenResult r = OpenStore(tmp.path(), true);
    ASSERT_TRUE(r.store) << r.error;
    EXPECT_EQ(r.warnings.size(), 1u);
  }
  EXPECT_EQ(CorruptCopies(tmp.path()).size(), 3u);
}

TEST(CheckpointStoreTest, ResetStoreWritesAFreshFile) {
  TempDir tmp;
  WriteFile(tmp.path() / "checkpoints", "not a checkpoint file\n");
  {
    OpenResult r = OpenStore(tmp.path(), true);
    ASSERT_TRUE(r.store) << r.error;
    r.store->Set("s", "after-reset");
    std::string error;
    ASSERT_TRUE(r.store->Flush(&error)) << error;
  }
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  EXPECT_EQ(r.store->checkpoints(), (Checkpoints{{"s", "after-reset"}}));
}

TEST(CheckpointStoreTest, FlushWhenNotDirtyTouchesNothing) {
  TempDir tmp;
  const fs::path file = tmp.path() / "checkpoints";
  {
    OpenResult r = OpenStore(tmp.path());
    ASSERT_TRUE(r.store) << r.error;
    std::string error;
    ASSERT_TRUE(r.store->Flush(&error)) << error;
    EXPECT_FALSE(fs::exists(file)) << "a store with nothing to say writes no file";
    r.store->Set("s", "1");
    ASSERT_TRUE(r.store->Flush(&error)) << error;
  }
  const FileIdentity before = Identify(file);
  // mtime has nanosecond resolution on most filesystems; a rewrite would also change the inode.
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  std::string error;
  ASSERT_TRUE(r.store->Flush(&error)) << error;
  r.store->Set("s", "1");
  ASSERT_TRUE(r.store->Flush(&error)) << error;
  const FileIdentity after = Identify(file);
  EXPECT_EQ(after.inode, before.inode);
  EXPECT_EQ(after.mtime.tv_sec, before.mtime.tv_sec);
  EXPECT_EQ(after.mtime.tv_nsec, before.mtime.tv_nsec);

  r.store->Set("s", "2");
  ASSERT_TRUE(r.store->Flush(&error)) << error;
  EXPECT_NE(Identify(file).inode, before.inode) << "a real flush replaces the file by rename";
}

TEST(CheckpointStoreTest, FlushFailureKeepsDataDirtyAndOldFileIntact) {
  TempDir tmp;
  const fs::path file = tmp.path() / "checkpoints";
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  std::string error;
  r.store->Set("s", "old");
  ASSERT_TRUE(r.store->Flush(&error)) << error;
  const std::string old_content = ReadFile(file);

  // A directory where the temp file goes makes the write fail, even for root.
  fs::create_directory(tmp.path() / "checkpoints.tmp");
  r.store->Set("s", "new");
  error.clear();
  EXPECT_FALSE(r.store->Flush(&error));
  EXPECT_NE(error.find("checkpoints.tmp"), std::string::npos) << error;
  EXPECT_TRUE(r.store->dirty());
  EXPECT_EQ(ReadFile(file), old_content);

  fs::remove(tmp.path() / "checkpoints.tmp");
  ASSERT_TRUE(r.store->Flush(&error)) << error;
  EXPECT_FALSE(r.store->dirty());
  r.store.reset();
  OpenResult reopened = OpenStore(tmp.path());
  ASSERT_TRUE(reopened.store) << reopened.error;
  EXPECT_EQ(reopened.store->Get("s"), std::optional<std::string>("new"));
}

TEST(CheckpointStoreTest, FlushFailsWhenTheDirectoryBecomesReadOnly) {
  if (::geteuid() == 0) GTEST_SKIP() << "root writes to read-only directories";
  TempDir tmp;
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  fs::permissions(tmp.path(), fs::perms::owner_read | fs::perms::owner_exec);
  r.store->Set("s", "1");
  std::string error;
  EXPECT_FALSE(r.store->Flush(&error));
  EXPECT_NE(error.find(tmp.path().string()), std::string::npos) << error;
  EXPECT_TRUE(r.store->dirty());
  fs::permissions(tmp.path(), fs::perms::owner_all);
  EXPECT_TRUE(r.store->Flush(&error)) << error;
  EXPECT_FALSE(r.store->dirty());
}

TEST(CheckpointStoreTest, LeftoverTempFileFromACrashIsIgnoredAndReplaced) {
  TempDir tmp;
  WriteFile(tmp.path() / "checkpoints", ValidFile());
  WriteFile(tmp.path() / "checkpoints.tmp", "half a file from a crash");
  OpenResult r = OpenStore(tmp.path());
  ASSERT_TRUE(r.store) << r.error;
  EXPECT_EQ(r.store->Get("b"), std::optional<std::string>("two"));
  r.store->Set("b", "three");
  std::string error;
  ASSERT_TRUE(r.store->Flush(&error)) << error;
  EXPECT_FALSE(fs::exists(tmp.path() / "checkpoints.tmp"));
}

TEST(CheckpointStoreTest, TenThousandStreamsFlushAndLoadIdentically) {
  TempDir tmp;
  Checkpoints expected;
  for (int i = 0; i < 10000; ++i) {
    expected.emplace("stream-" + std::to_string(i),
                     "{\"topic\":\"t" + std::to_string(i % 7) + "\",\"offset\":" + std::to_string(i * 7919) + "}");
  }
  using Clock = std::chrono::steady_clock;
  Clock::duration flush_time{};
  {
    OpenResult r = OpenStore(tmp.path());
    ASSERT_TRUE(r.store) << r.error;
    for (const auto& [stream, id] : expected) r.store->Set(stream, id);
    std::string error;
    const auto start = Clock::now();
    ASSERT_TRUE(r.store->Flush(&error)) << error;
    flush_time = Clock::now() - start;
  }
  const auto start = Clock::now();
  OpenResult r = OpenStore(tmp.path());
  const auto load_time = Clock::now() - start;
  ASSERT_TRUE(r.store) << r.error;
  EXPECT_EQ(r.store->checkpoints(), expected);

  const auto flush_ms = std::chrono::duration_cast<std::chrono::milliseconds>(flush_time).count();
  const auto load_ms = std::chrono::duration_cast<std::chrono::milliseconds>(load_time).count();
  std::cout << "10000 streams, " << fs::file_size(tmp.path() / "checkpoints") << " bytes: flush " << flush_ms
            << " ms, load " << load_ms << " ms\n";
  testing::Test::RecordProperty("flush_10000_ms", static_cast<int>(flush_ms));
  testing::Test::RecordProperty("load_10000_ms", static_cast<int>(load_ms));
  // Generous bounds (shared CI machines, sanitizers): a flush per second must stay cheap.
  EXPECT_LT(flush_ms, 5000);
  EXPECT_LT(load_ms, 5000);
}

}  // namespace
}  // namespace sse2kafka::state
