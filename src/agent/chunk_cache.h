// ChunkCache: the agent's local chunk store (<work_dir>/chunks), filled
// from GET /v1/blobs/{hash} on a miss, so that a bundle sent again, or a job
// run again on this instance, costs no transfer.
#pragma once

#include <string>
#include <vector>

#include "agent/stop_signal.h"
#include "client/http_client.h"
#include "common/blob_store.h"
#include "common/bundle.h"
#include "common/status.h"

namespace yard {

// Thread-safe.
class ChunkCache {
 public:
  // `http` and `stop` must outlive the cache.
  ChunkCache(BlobStore store, const HttpClient* http, const StopSignal* stop)
      : store_(std::move(store)), http_(http), stop_(stop) {}

  // The bytes of chunk `hash`: from the cache, else fetched (retrying
  // Unavailable until `stop`), verified and kept.
  StatusOr<std::string> Get(const std::string& hash) const;
  // Fetches into the cache every chunk of `hashes` it lacks, `concurrency`
  // at a time. Returns the first failure.
  Status Prefetch(const std::vector<std::string>& hashes, int concurrency) const;
  // Get() as a ChunkSource for Materialize.
  ChunkSource AsSource() const;

 private:
  StatusOr<std::string> Fetch(const std::string& hash) const;

  mutable BlobStore store_;  // its Put is thread-safe
  const HttpClient* http_;
  const StopSignal* stop_;
};

}  // namespace yard
