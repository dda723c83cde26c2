// BlobStore: content-addressed chunk storage on local disk.
//
// Layout: <root>/<first two hex chars>/<full hash>. Writes go to a temporary
// file and are renamed into place, so a reader never sees a partial blob and
// a process crash leaves no corrupt one. Blobs are not fsynced: after a power
// loss one may be truncated, which the next Put of it repairs (see Put).
// Blob files are read-only (0444) and replaced, never written in place.
// They are never hard-linked into a job's folder (common/bundle.h,
// Materialize: a job on a local instance runs as the store's owner and
// could make a link writable again); reflinks and copies are.
// Thread-safe: concurrent Puts of the same hash are harmless.
//
// Collection (server/blob_collector.h): a blob's file time is when it was
// last put or touched; RemoveIfOlderThan takes the same lock as Put's
// rename and Touch, so a blob put or touched after the collector looked is
// never removed.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/files.h"
#include "common/status.h"

namespace yard {

class BlobStore {
 public:
  // Creates `root` if needed.
  static StatusOr<BlobStore> Open(const std::string& root);

  bool Has(const std::string& hash) const;
  // Returns the subset of `hashes` not present, in input order.
  std::vector<std::string> Missing(const std::vector<std::string>& hashes) const;
  // Verifies sha256(bytes) == hash (InvalidArgument otherwise) and stores
  // it; a blob already there is touched instead.
  Status Put(const std::string& hash, std::string_view bytes);
  // As Put, for bytes whose SHA-256 the caller has computed itself from
  // the bytes as they arrived (`bytes_sha256`, hex), e.g. piece by piece
  // while receiving them: stored only if it equals `hash`. Never a hash the
  // sender claims.
  Status PutHashed(const std::string& hash, std::string_view bytes,
                   const std::string& bytes_sha256);
  // Sets the blob's file time to now (someone is about to name it); false
  // when it is not there.
  bool Touch(const std::string& hash);
  // Blobs, and leftover temporary files of uploads that never finished,
  // whose file time is before `cutoff`, as paths under the root
  // ("ab/<hash>", "ab/.tmp-...").
  std::vector<std::string> OlderThan(std::filesystem::file_time_type cutoff) const;
  // Removes `name` (a path from OlderThan) if its time is still before
  // `cutoff`; returns whether it did, and adds its size to *bytes.
  bool RemoveIfOlderThan(const std::string& name, std::filesystem::file_time_type cutoff,
                         uint64_t* bytes);
  // Reads a blob. NotFound if absent.
  StatusOr<std::string> Get(const std::string& hash) const;
  // Opens a blob to read it piece by piece (GET /v1/blobs sends it so,
  // without reading it whole first); its size in *size. NotFound if absent.
  StatusOr<ScopedFd> OpenToRead(const std::string& hash, uint64_t* size) const;
  // Path of a blob (whether or not it exists). REQUIRES: IsSha256Hex(hash).
  std::string PathOf(const std::string& hash) const;
  const std::string& root() const { return root_; }

 private:
  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  std::string root_;
  // Orders renames into place and touches against removals.
  std::shared_ptr<std::mutex> mu_ = std::make_shared<std::mutex>();
};

}  // namespace yard
