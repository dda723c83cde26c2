// Collects chunks nothing needs: those a client uploaded for a submit that
// never came, and temporary files of uploads that died half-way. Disk stays
// bounded without ever touching a chunk still in use.
//
// A chunk goes only when both hold:
//   - no job (spec, scheduling state: the bundle, the checkpoint to resume
//     from), artifact or non-output event names its hash (Store::ReferencedHashes);
//   - its file was last written, uploaded again or asked about (POST
//     /v1/blobs/missing touches what it finds) before now - grace. A client
//     names a chunk in a submit right after asking about or uploading it,
//     and an agent in an artifact record right after uploading it, so a
//     chunk in such a window is never older than the grace.
// The candidates are listed before the references are read, and each is
// removed only if still older than the cutoff (BlobStore::RemoveIfOlderThan),
// so a chunk touched meanwhile stays.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "common/blob_store.h"
#include "common/status.h"
#include "common/thread_annotations.h"
#include "store/store.h"

namespace yard {

struct BlobCollection {
  int64_t old = 0;         // files older than the grace
  int64_t referenced = 0;  // of those, kept: something names them
  int64_t removed = 0;     // chunks and leftover temporary files removed
  uint64_t bytes = 0;      // freed
  std::string ToString() const;
};

// One collection. `now` is the file clock's now (a parameter for tests).
StatusOr<BlobCollection> CollectBlobs(
    Store* store, BlobStore* blobs, std::chrono::seconds grace,
    std::filesystem::file_time_type now = std::filesystem::file_time_type::clock::now());

// Collects every `interval` on a thread of its own, logging what it freed.
class BlobCollector {
 public:
  BlobCollector(Store* store, BlobStore* blobs, std::chrono::seconds grace,
                std::chrono::seconds interval);
  ~BlobCollector();  // stops the thread
  void Start();

 private:
  Store* store_;
  BlobStore* blobs_;
  const std::chrono::seconds grace_, interval_;
  Mutex mu_;
  std::condition_variable cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace yard
