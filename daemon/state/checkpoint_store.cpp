#include "state/checkpoint_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <utility>

namespace sse2kafka::state {
namespace {

constexpr char kLockName[] = "lock";
constexpr char kFileName[] = "checkpoints";
constexpr char kTempName[] = "checkpoints.tmp";
constexpr std::string_view kHeaderPrefix = "sse2kafka-checkpoints ";
constexpr std::string_view kHeader = "sse2kafka-checkpoints 1";
constexpr std::string_view kCrcPrefix = "crc32 ";
constexpr mode_t kDirMode = 0750;
constexpr mode_t kFileMode = 0640;

constexpr std::array<uint32_t, 256> MakeCrc32Table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

// CRC-32 with the reflected IEEE polynomial, identical to zlib's crc32().
uint32_t Crc32(std::string_view bytes) {
  static constexpr std::array<uint32_t, 256> kTable = MakeCrc32Table();
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : bytes) crc = kTable[(crc ^ c) & 0xFFu] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

std::string ErrnoText(int err) { return std::strerror(err); }

std::string Join(const std::string& dir, std::string_view name) {
  std::string path = dir;
  if (path.empty() || path.back() != '/') path += '/';
  path += name;
  return path;
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// mkdir -p with kDirMode for every directory it creates.
bool MakeDirectories(const std::string& dir, std::string* error) {
  for (std::size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), kDirMode) == 0 || errno == EEXIST) continue;
    const int err = errno;
    *error = "cannot create state directory " + prefix + ": " + ErrnoText(err);
    return false;
  }
  return true;
}

bool ReadWholeFile(int dir_fd, const char* name, const std::string& path, std::string* content,
                   bool* exists, std::string* error) {
  Fd fd(::openat(dir_fd, name, O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT) {
      *exists = false;
      return true;
    }
    *error = "cannot open checkpoint file " + path + ": " + ErrnoText(err);
    return false;
  }
  *exists = true;
  content->clear();
  char buffer[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      *error = "cannot read checkpoint file " + path + ": " + ErrnoText(err);
      return false;
    }
    if (n == 0) return true;
    content->append(buffer, static_cast<std::size_t>(n));
  }
}

// Parses a version-1 file. Returns false with a reason (without the path) when it is corrupt.
bool ParseCheckpoints(std::string_view content, std::map<std::string, std::string, std::less<>>* out,
                      std::string* reason) {
  if (content.empty()) {
    *reason = "the file is empty";
    return false;
  }
  if (content.back() != '\n') {
    *reason = "truncated: the last line is incomplete";
    return false;
  }
  std::size_t last_line_start = content.rfind('\n', content.size() - 2);
  if (last_line_start == std::string_view::npos) {
    *reason = "truncated: no checksum line";
    return false;
  }
  ++last_line_start;
  std::string_view body = content.substr(0, last_line_start);
  std::string_view crc_line = content.substr(last_line_start, content.size() - 1 - last_line_start);
  if (crc_line.size() != kCrcPrefix.size() + 8 || crc_line.substr(0, kCrcPrefix.size()) != kCrcPrefix ||
      crc_line.find_first_not_of("0123456789abcdef", kCrcPrefix.size()) != std::string_view::npos) {
    *reason = "truncated or damaged: the last line is not a checksum";
    return false;
  }
  uint32_t stored = static_cast<uint32_t>(std::stoul(std::string(crc_line.substr(kCrcPrefix.size())), nullptr, 16));
  uint32_t computed = Crc32(body);
  if (stored != computed) {
    char text[80];
    std::snprintf(text, sizeof text, "checksum mismatch (file says %08x, content has %08x)", stored, computed);
    *reason = text;
    return false;
  }

  std::size_t line_end = body.find('\n');
  std::string_view header = body.substr(0, line_end);
  if (header != kHeader) {
    if (header.substr(0, kHeaderPrefix.size()) == kHeaderPrefix) {
      *reason = "unsupported format version \"" + std::string(header.substr(kHeaderPrefix.size())) +
                "\" (this sse2kafka reads version 1)";
    } else {
      *reason = "not an sse2kafka checkpoint file (bad first line)";
    }
    return false;
  }

  out->clear();
  int line_number = 1;
  for (std::size_t start = line_end + 1; start < body.size(); start = line_end + 1) {
    ++line_number;
    line_end = body.find('\n', start);
    std::string_view line = body.substr(start, line_end - start);
    nlohmann::json entry = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const std::string where = "line " + std::to_string(line_number) + ": ";
    if (entry.is_discarded() || !entry.is_object()) {
      *reason = where + "not a JSON object";
      return false;
    }
    auto stream = entry.find("stream");
    auto id = entry.find("last_event_id");
    if (stream == entry.end() || !stream->is_string() || stream->get_ref<const std::string&>().empty() ||
        id == entry.end() || !id->is_string()) {
      *reason = where + "needs a non-empty string \"stream\" and a string \"last_event_id\"";
      return false;
    }
    if (!out->emplace(stream->get<std::string>(), id->get<std::string>()).second) {
      *reason = where + "stream \"" + stream->get<std::string>() + "\" is listed twice";
      return false;
    }
  }
  return true;
}

// Moves a corrupt file aside under a name no earlier reset used. Returns the new path.
bool SetAside(int dir_fd, const std::string& dir, std::string* aside, std::string* error) {
  const std::string stem = std::string(kFileName) + ".corrupt-" + std::to_string(std::time(nullptr));
  for (int n = 0; n < 1000; ++n) {
    std::string name = n == 0 ? stem : stem + "." + std::to_string(n);
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) continue;
    if (::renameat(dir_fd, kFileName, dir_fd, name.c_str()) != 0) {
      const int err = errno;
      *error = "cannot move corrupt checkpoint file " + Join(dir, kFileName) + " aside: " + ErrnoText(err);
      return false;
    }
    // Best effort: if the rename is lost in a crash, the next start finds and sets aside the file again.
    ::fsync(dir_fd);
    *aside = Join(dir, name);
    return true;
  }
  *error = "cannot move corrupt checkpoint file " + Join(dir, kFileName) + " aside: too many earlier copies";
  return false;
}

bool WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string Serialize(const std::map<std::string, std::string, std::less<>>& checkpoints) {
  std::string out;
  out.reserve(64 + checkpoints.size() * 64);
  out += kHeader;
  out += '\n';
  auto quoted = [](const std::string& text) {
    return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  };
  for (const auto& [stream, id] : checkpoints) {
    // Written by hand rather than as a json object, which would sort "last_event_id" first.
    out += "{\"stream\":";
    out += quoted(stream);
    out += ",\"last_event_id\":";
    out += quoted(id);
    out += "}\n";
  }
  char crc_line[32];
  std::snprintf(crc_line, sizeof crc_line, "crc32 %08x\n", Crc32(out));
  out += crc_line;
  return out;
}

}  // namespace

std::unique_ptr<CheckpointStore> CheckpointStore::Open(const Options& options, std::string* error,
                                                       std::vector<std::string>* warnings) {
  const std::string& dir = options.dir;
  if (dir.empty()) {
    *error = "state directory is not set";
    return nullptr;
  }
  if (!MakeDirectories(dir, error)) return nullptr;
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() < 0) {
    const int err = errno;
    *error = "cannot open state directory " + dir + ": " + ErrnoText(err);
    return nullptr;
  }
  const std::string lock_path = Join(dir, kLockName);
  Fd lock_fd(::openat(dir_fd.get(), kLockName, O_RDONLY | O_CREAT | O_CLOEXEC, kFileMode));
  if (lock_fd.get() < 0) {
    const int err = errno;
    *error = "cannot create lock file " + lock_path + ": " + ErrnoText(err);
    return nullptr;
  }
  if (::flock(lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      *error = "state directory " + dir + " is in use: another sse2kafka holds the lock on " + lock_path +
               " (only one instance may use a state directory)";
    } else {
      *error = "cannot lock " + lock_path + ": " + ErrnoText(err);
    }
    return nullptr;
  }
  // Without this, a read-only directory would only show up at the first Flush, long after start.
  if (::faccessat(dir_fd.get(), ".", W_OK, AT_EACCESS) != 0) {
    const int err = errno;
    *error = "state directory " + dir + " is not writable: " + ErrnoText(err);
    return nullptr;
  }

  std::unique_ptr<CheckpointStore> store(new CheckpointStore(dir, dir_fd.release(), lock_fd.release()));
  const std::string path = Join(dir, kFileName);
  std::string content;
  bool exists = false;
  if (!ReadWholeFile(store->dir_fd_, kFileName, path, &content, &exists, error)) return nullptr;
  if (!exists) return store;
  std::string reason;
  if (ParseCheckpoints(content, &store->checkpoints_, &reason)) return store;

  store->checkpoints_.clear();
  if (!options.reset_on_corrupt) {
    *error = "checkpoint file " + path + " is corrupt: " + reason +
             "; repair or remove it, or set state.on_corrupt: reset to move it aside and start over";
    return nullptr;
  }
  std::string aside;
  if (!SetAside(store->dir_fd_, dir, &aside, error)) return nullptr;
  if (warnings != nullptr) {
    warnings->push_back("checkpoint file " + path + " was corrupt (" + reason + "); moved it to " + aside +
                        " and starting every stream without a checkpoint");
  }
  return store;
}

CheckpointStore::CheckpointStore(std::string dir, int dir_fd, int lock_fd)
    : dir_(std::move(dir)), dir_fd_(dir_fd), lock_fd_(lock_fd) {}

CheckpointStore::~CheckpointStore() {
  ::close(lock_fd_);
  ::close(dir_fd_);
}

std::optional<std::string> CheckpointStore::Get(std::string_view stream) const {
  auto it = checkpoints_.find(stream);
  if (it == checkpoints_.end()) return std::nullopt;
  return it->second;
}

void CheckpointStore::Set(std::string_view stream, std::string_view last_event_id) {
  auto it = checkpoints_.find(stream);
  if (it == checkpoints_.end()) {
    checkpoints_.emplace(std::string(stream), std::string(last_event_id));
    dirty_ = true;
  } else if (it->second != last_event_id) {
    it->second.assign(last_event_id);
    dirty_ = true;
  }
}

void CheckpointStore::Remove(std::string_view stream) {
  auto it = checkpoints_.find(stream);
  if (it == checkpoints_.end()) return;
  checkpoints_.erase(it);
  dirty_ = true;
}

bool CheckpointStore::Flush(std::string* error) {
  if (!dirty_) return true;
  const std::string content = Serialize(checkpoints_);
  const std::string temp_path = Join(dir_, kTempName);
  const std::string file_path = Join(dir_, kFileName);
  Fd fd(::openat(dir_fd_, kTempName, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, kFileMode));
  if (fd.get() < 0) {
    const int err = errno;
    *error = "cannot create " + temp_path + ": " + ErrnoText(err);
    return false;
  }
  // Reads errno before anything else can change it, then removes the half-written temp file.
  auto fail = [&](std::string_view what, const std::string& path) {
    const int err = errno;
    *error = std::string(what) + " " + path + ": " + ErrnoText(err);
    ::unlinkat(dir_fd_, kTempName, 0);
    return false;
  };
  if (!WriteAll(fd.get(), content)) return fail("cannot write", temp_path);
  if (::fsync(fd.get()) != 0) return fail("cannot sync", temp_path);
  if (::close(fd.release()) != 0) return fail("cannot write", temp_path);
  if (::renameat(dir_fd_, kTempName, dir_fd_, kFileName) != 0) return fail("cannot rename over", file_path);
  // The rename is durable only once the directory is; until then the old file may come back.
  if (::fsync(dir_fd_) != 0) {
    const int err = errno;
    *error = "cannot sync state directory " + dir_ + ": " + ErrnoText(err);
    return false;
  }
  dirty_ = false;
  return true;
}

}  // namespace sse2kafka::state
