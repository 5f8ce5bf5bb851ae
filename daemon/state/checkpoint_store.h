// Per-stream Last-Event-ID checkpoints, kept in memory and written to one file in a directory.
//
// The store is owned by one thread. Set/Remove only change memory; the caller batches writes by
// calling Flush on a timer (state.flush_interval) and at shutdown, so a burst of acknowledgements
// costs one fsync, and an idle bridge costs none.
//
// Directory layout (all names fixed):
//   <dir>/lock              empty file; an exclusive flock(2) on it is held while the store lives,
//                           so two daemons never share checkpoints
//   <dir>/checkpoints       the checkpoint file (format below)
//   <dir>/checkpoints.tmp   written by Flush, then renamed over `checkpoints`
//   <dir>/checkpoints.corrupt-<unix time>[.<n>]   a corrupt file set aside by reset_on_corrupt
//
// Checkpoint file format, version 1 (UTF-8 text, every line ends with LF), here with one stream:
//   sse2kafka-checkpoints 1
//   {"stream":"wiki","last_event_id":"[{\"topic\":\"eqiad.edits\"}]"}
//   crc32 d371f644
// Between the first and the last line: one JSON object per stream, sorted by stream name, with
// the string members "stream" (non-empty) and "last_event_id" (any string, JSON-escaped).
// The last line is the CRC-32 (IEEE 802.3, as zlib's crc32) in 8 lower-case hex digits of every
// byte before that line. A file is accepted only when all of this verifies; anything else
// (empty, truncated, checksum mismatch, other version, a line that is not such an object, a
// stream listed twice) is corrupt. Writing a new file and renaming it over the old one means a
// crash leaves either the old or the new file, never a mix; the checksum catches what rename
// cannot (a torn write on a filesystem that does not order data before the rename, bit rot).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sse2kafka::state {

class CheckpointStore {
 public:
  struct Options {
    std::string dir;
    // When the checkpoint file is corrupt: false fails Open; true moves the file aside and
    // starts with no checkpoints (every stream then starts at the live edge).
    bool reset_on_corrupt = false;
  };

  // Opens the store in options.dir: creates the directory (and missing parents, mode 0750) when
  // missing, takes the lock, and loads the checkpoint file (none yet: no checkpoints).
  // On success returns the store; a corrupt file that was set aside adds a message to *warnings.
  // On failure returns nullptr and sets *error to a message naming the path: directory cannot be
  // created or is not writable, another sse2kafka holds the lock (in this process or another),
  // the file cannot be read, or it is corrupt and reset_on_corrupt is false.
  static std::unique_ptr<CheckpointStore> Open(const Options& options, std::string* error,
                                               std::vector<std::string>* warnings);

  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;
  // Releases the lock. Does not flush: unflushed changes are lost, as they would be in a crash.
  ~CheckpointStore();

  // The stream's checkpoint; nullopt when it has none (never set, or removed). An empty string
  // is a checkpoint too (the stream was read before any event carried an ID).
  std::optional<std::string> Get(std::string_view stream) const;

  // Sets the stream's checkpoint in memory; marks the store dirty when the value changed.
  // `last_event_id` may hold any bytes; invalid UTF-8 is stored as U+FFFD (the SSE parser only
  // produces valid UTF-8).
  void Set(std::string_view stream, std::string_view last_event_id);

  // Forgets the stream's checkpoint (a stream removed from the config); dirty when it had one.
  void Remove(std::string_view stream);

  // True when memory holds changes the file does not.
  bool dirty() const { return dirty_; }

  // When dirty, writes every checkpoint durably (temp file, write, fsync, rename over the file,
  // fsync the directory) and returns true. When not dirty, touches nothing and returns true.
  // On failure (disk full, permissions, I/O error) returns false, sets *error naming the path
  // and the system error, leaves the old file in place and the store dirty for the next try.
  bool Flush(std::string* error);

  // Every checkpoint, sorted by stream name (for tests and status output).
  const std::map<std::string, std::string, std::less<>>& checkpoints() const { return checkpoints_; }

 private:
  CheckpointStore(std::string dir, int dir_fd, int lock_fd);

  std::string dir_;
  int dir_fd_;   // the directory, for openat/renameat/fsync even if the path is renamed
  int lock_fd_;  // holds the flock
  std::map<std::string, std::string, std::less<>> checkpoints_;
  bool dirty_ = false;
};

}  // namespace sse2kafka::state
