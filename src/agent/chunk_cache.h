// ChunkCache: the agent's local chunk store (<work_dir>/chunks), filled
// from GET /v1/blobs/{hash} on a miss, so that a bundle sent again, or a job
// run again on this instance, costs no transfer.
//
// An agent on the server's own machine (local and sim instances) also reads
// the server's blob store: a chunk there is neither fetched nor cached, but
// copied from the store's file into the job's folder (AsFiles).
#pragma once

#include <optional>
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
  // `server_store`: the server's blob store, read only. Call before use.
  void UseServerStore(BlobStore server_store) { server_store_.emplace(std::move(server_store)); }

  // The bytes of chunk `hash`: from the cache, else fetched (retrying
  // Unavailable until `stop`), verified and kept.
  StatusOr<std::string> Get(const std::string& hash) const;
  // Fetches into the cache every chunk of `hashes` it lacks, `concurrency`
  // at a time. Returns the first failure.
  Status Prefetch(const std::vector<std::string>& hashes, int concurrency) const;
  // Get() as a ChunkSource for Materialize.
  ChunkSource AsSource() const;
  // Where a chunk is on this machine (the server's store first, then this
  // cache), for Materialize to copy from; "" when in neither.
  ChunkFileSource AsFiles() const;

 private:
  StatusOr<std::string> Fetch(const std::string& hash) const;

  mutable BlobStore store_;  // its Put is thread-safe
  std::optional<BlobStore> server_store_;
  const HttpClient* http_;
  const StopSignal* stop_;
};

}  // namespace yard
