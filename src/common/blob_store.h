// BlobStore: content-addressed chunk storage on local disk.
//
// Layout: <root>/<first two hex chars>/<full hash>. Writes go to a temporary
// file and are renamed into place, so a reader never sees a partial blob and
// a process crash leaves no corrupt one. Blobs are not fsynced: after a power
// loss one may be truncated, which the next Put of it repairs (see Put).
// Thread-safe: concurrent Puts of the same hash are harmless.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace yard {

class BlobStore {
 public:
  // Creates `root` if needed.
  static StatusOr<BlobStore> Open(const std::string& root);

  bool Has(const std::string& hash) const;
  // Returns the subset of `hashes` not present, in input order.
  std::vector<std::string> Missing(const std::vector<std::string>& hashes) const;
  // Verifies sha256(bytes) == hash (InvalidArgument otherwise) and stores it.
  Status Put(const std::string& hash, std::string_view bytes);
  // Reads a blob. NotFound if absent.
  StatusOr<std::string> Get(const std::string& hash) const;
  // Path of a blob (whether or not it exists). REQUIRES: IsSha256Hex(hash).
  std::string PathOf(const std::string& hash) const;
  const std::string& root() const { return root_; }

 private:
  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  std::string root_;
};

}  // namespace yard
