// Packing a folder into a manifest of chunks, and materializing a manifest
// back into a folder safely.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "common/chunker.h"
#include "common/manifest.h"
#include "common/status.h"

namespace yard {

// Receives each chunk produced while packing (e.g. to keep it for upload).
using ChunkSink = std::function<Status(const ChunkRef&, std::string_view bytes)>;
// Returns the bytes of a chunk by hash (e.g. from a BlobStore or the server).
using ChunkSource = std::function<StatusOr<std::string>(const std::string& hash)>;

struct PackOptions {
  ChunkerParams chunker;
  // Honour .gitignore and .yardignore files (root and nested). Patterns
  // follow gitignore syntax: '#', '!', trailing '/', leading '/', '*', '?',
  // '**', character classes. Entries named .git or .yard are skipped always.
  bool use_ignore_files = true;
};

// Walks `root` and returns the manifest of its regular files and symlinks,
// sorted by path, calling `sink` for every chunk (duplicates included).
// Symlinks are recorded, not followed; other file types are left out. Fails
// (naming the entry) when the manifest would not pass ValidateManifest, e.g.
// for a link pointing outside `root`.
StatusOr<Manifest> PackDirectory(const std::string& root, const PackOptions& options,
                                 const ChunkSink& sink);

// Writes every entry of `m` under `dest` (created if needed). Validates the
// manifest first (ValidateManifest) and refuses, without writing anything,
// a manifest with unsafe paths or links pointing out of `dest`. Each file is
// written to a temporary name then renamed; its hash is checked per chunk.
Status Materialize(const Manifest& m, const std::string& dest, const ChunkSource& source);

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
