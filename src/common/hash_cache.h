// HashCache: the chunks of large files remembered by the files' identity
// (device, inode, size, modification and change times), so that packing an
// unchanged file again neither reads nor hashes it: the second upload of a
// 1 GiB array is a stat and one "missing" question (bench/README.md).
//
// One small JSON file per remembered path under the cache folder, named by
// the SHA-256 of the absolute path and the chunker parameters (a change of
// parameters makes other chunks). Written to a temporary name and renamed,
// so concurrent packers see an old entry, a new one or none.
//
// Trust: an entry only says which chunks the file had; a wrong one can only
// make the client name chunks of another version of the file, and the
// server checks every chunk it receives against its hash. To be right it
// follows git's rule for "racily clean" files: a file is remembered only if
// it was last changed (mtime and ctime) clearly before it was read, so that
// any later write, even one of the same size, moves a time the entry holds.
// Thread-safe (no state besides the folder).
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/chunker.h"

namespace yard {

class HashCache {
 public:
  // Files smaller than this are not remembered: hashing them is cheap and a
  // source folder may hold thousands of them.
  static constexpr uint64_t kMinFileBytes = 4 << 20;
  // How long before its read a file must have last changed to be
  // remembered: more than any local filesystem's timestamp granularity
  // (the kernel's coarse clock, a jiffy of 1-10 ms).
  static constexpr std::chrono::milliseconds kSettled{100};

  // `dir` is created on first Remember; "" makes a cache that remembers nothing.
  HashCache(std::string dir, ChunkerParams params);

  // The chunks of the file at `path` if it is remembered and `st` (its
  // lstat now) is still the identity remembered; nullopt otherwise.
  std::optional<std::vector<ChunkRef>> Lookup(const std::string& path, const struct stat& st) const;

  // Remembers `chunks` for the file at `path`, read from `read_start` on,
  // whose lstat was `before` when the read began; it is stat'ed again here
  // and nothing is remembered if it changed meanwhile, is small, or had
  // changed less than kSettled before `read_start`. Failures are ignored
  // (a cache).
  void Remember(const std::string& path, const struct stat& before,
                std::chrono::system_clock::time_point read_start,
                const std::vector<ChunkRef>& chunks) const;

  // $XDG_CACHE_HOME/trainyard/hashes, else ~/.cache/trainyard/hashes; ""
  // when neither variable is set.
  static std::string DefaultDir();

 private:
  std::string EntryPath(const std::string& path) const;

  std::string dir_;
  ChunkerParams params_;
};

}  // namespace yard
