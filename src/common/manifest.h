// Manifest: the description of a set of files (a bundle or an artifact set)
// as paths, modes, sizes and content-addressed chunk lists. The wire/JSON
// form is documented in docs/formats.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/chunker.h"
#include "common/status.h"

namespace yard {

struct FileEntry {
  std::string path;      // relative, '/'-separated, no '.', '..' or empty parts
  uint32_t mode = 0644;  // permission bits only
  uint64_t size = 0;
  std::vector<ChunkRef> chunks;  // concatenated in order they are the file
  std::string link_target;       // non-empty: this entry is a symlink, chunks empty
  bool is_link() const { return !link_target.empty(); }
};

struct Manifest {
  std::vector<FileEntry> files;  // sorted by path

  uint64_t TotalBytes() const;
  // Every chunk hash referenced, without duplicates.
  std::vector<std::string> ChunkHashes() const;

  nlohmann::json ToJson() const;
  // Parses and validates shape (types, hashes, no unknown keys); does not
  // check path safety.
  static StatusOr<Manifest> FromJson(const nlohmann::json& j);
};

// JSON for a single entry (used by artifact events).
nlohmann::json FileEntryToJson(const FileEntry& e);
StatusOr<FileEntry> FileEntryFromJson(const nlohmann::json& j);

// Chunks of a file still being uploaded: the `artifact_part` record and
// event (docs/api.md), `chunks` being consecutive in the file from
// `offset`. The agent sends them so a mirror can fetch while the upload
// goes on; the file's `artifact` event still decides what the file is.
struct ArtifactPart {
  std::string dir, path;
  uint64_t offset = 0;
  std::vector<ChunkRef> chunks;
};
// {"kind": "artifact_part", "dir", "path", "offset", "chunks": [[hash, size], ...]}
nlohmann::json ArtifactPartToJson(const ArtifactPart& p);
// Parses one, checking `path` and `chunks` as a manifest entry's (safe
// path, lower-case hashes, sizes > 0) and `offset` (a whole number; with
// the chunks, at most 2^53). The event's own keys (`kind`, `instance`,
// `seq`, `time`) are not read; other keys are refused. Does not check `dir`.
StatusOr<ArtifactPart> ArtifactPartFromJson(const nlohmann::json& j);

struct ManifestLimits {
  uint64_t max_files = 200000;
  uint64_t max_total_bytes = 64ull << 30;
  uint64_t max_path_length = 4096;
};

// True if `path` is a safe relative path: non-empty, not absolute, no empty,
// '.' or '..' components, no NUL or backslash.
bool IsSafeRelativePath(const std::string& path);

// Checks every path is safe and valid UTF-8, no duplicates, no entry below
// another (a file, or a symlink of the manifest), sizes match chunk sums,
// modes are within 0777, symlinks resolve (lexically, expanding the
// manifest's own links) inside the root. InvalidArgument naming the first
// offending entry otherwise; ResourceExhausted when max_files or
// max_total_bytes is exceeded.
Status ValidateManifest(const Manifest& m, const ManifestLimits& limits = {});

}  // namespace yard
