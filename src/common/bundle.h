// Packing a folder into a manifest of chunks, and materializing a manifest
// back into a folder safely.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "common/chunker.h"
#include "common/hash_cache.h"
#include "common/manifest.h"
#include "common/status.h"

namespace yard {

// Receives each chunk produced while packing (e.g. to keep it for upload).
using ChunkSink = std::function<Status(const ChunkRef&, std::string_view bytes)>;
// Receives each chunk of a file whose chunks `PackOptions::hash_cache`
// remembered: not read, it is `ref.size` bytes at `offset` of the file at
// `path`, which had that content when it was remembered (a file changed
// since in a way its identity does not show is caught by the server's hash
// check of what is sent).
using KnownChunkSink =
    std::function<Status(const ChunkRef&, const std::string& path, uint64_t offset)>;
// Returns the bytes of a chunk by hash (e.g. from a BlobStore or the server).
using ChunkSource = std::function<StatusOr<std::string>(const std::string& hash)>;

struct PackOptions {
  ChunkerParams chunker;
  // Honour .gitignore and .yardignore files (root and nested). Patterns
  // follow gitignore syntax: '#', '!', trailing '/', leading '/', '*', '?',
  // '**', character classes. Entries named .git or .yard are skipped always.
  bool use_ignore_files = true;
  // With a cache, a large file it remembers unchanged is not read: its
  // chunks go to `known` instead of the sink (both must then be set); a
  // file read is remembered. Null: every file is read.
  const HashCache* hash_cache = nullptr;
  KnownChunkSink known;
};

// Walks `root` and returns the manifest of its regular files and symlinks,
// sorted by path, calling `sink` for every chunk (duplicates included).
// Symlinks are recorded, not followed; other file types are left out. Fails
// (naming the entry) when the manifest would not pass ValidateManifest, e.g.
// for a link pointing outside `root`.
StatusOr<Manifest> PackDirectory(const std::string& root, const PackOptions& options,
                                 const ChunkSink& sink);

// Where a chunk already is on this machine: the path of a file holding
// exactly its bytes (a blob store's file), or "" when it is not here.
using ChunkFileSource = std::function<std::string(const std::string& hash)>;

// Writes every entry of `m` under `dest` (created if needed). Validates the
// manifest first (ValidateManifest) and refuses, without writing anything,
// a manifest with unsafe paths or links pointing out of `dest`. Each file is
// written to a temporary name then renamed; its hash is checked per chunk
// before the rename, so nothing unverified ever has an entry's name.
//
// A chunk that `local` finds is copied from its file without passing
// through this process (common/file_copy.h: a reflink where the filesystem
// can, else the kernel's copy) and then hashed where it landed; one that
// does not match (a damaged file) is taken from `source` instead. The
// entry is always a file of its own, never a hard link: a job may write to
// it without reaching the blob store. Others come from `source`.
Status Materialize(const Manifest& m, const std::string& dest, const ChunkSource& source,
                   const ChunkFileSource& local = nullptr);

// Matcher for gitignore-style pattern files; exposed for tests.
class IgnoreRules {
 public:
  // Adds the patterns of one ignore file found in folder `base` ('' = root).
  void AddFile(const std::string& base, std::string_view contents);
  // True if relative `path` (a dir when is_dir) is ignored.
  bool IsIgnored(const std::string& path, bool is_dir) const;

 private:
  struct Rule {
    std::string base;
    std::string pattern;
    bool negate = false;
    bool dir_only = false;
    bool anchored = false;
  };
  std::vector<Rule> rules_;
};

}  // namespace yard
