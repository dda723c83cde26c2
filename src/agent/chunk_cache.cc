#include "agent/chunk_cache.h"

#include <atomic>
#include <mutex>
#include <thread>

#include "agent/retry.h"
#include "common/hashing.h"

namespace yard {

StatusOr<std::string> ChunkCache::Get(const std::string& hash) const {
  if (!IsSha256Hex(hash)) return InvalidArgument("bad chunk hash '" + hash + "'");
  if (store_.Has(hash)) {
    StatusOr<std::string> bytes = store_.Get(hash);
    if (bytes.ok()) return bytes;
    // Unreadable cache entry: fetch it again.
  }
  return Fetch(hash);
}

StatusOr<std::string> ChunkCache::Fetch(const std::string& hash) const {
  StatusOr<std::string> bytes =
      RetryUnavailable(*stop_, [&] { return http_->GetBytes("/v1/blobs/" + hash); });
  if (!bytes.ok()) return bytes.status().WithContext("fetching chunk " + hash);
  // Put verifies the hash, so a corrupt transfer never enters the cache.
  YARD_RETURN_IF_ERROR(store_.Put(hash, *bytes));
  return bytes;
}

Status ChunkCache::Prefetch(const std::vector<std::string>& hashes, int concurrency) const {
  std::vector<std::string> missing = store_.Missing(hashes);
  if (server_store_) missing = server_store_->Missing(missing);  // copied from there instead
  std::atomic<size_t> next{0};
  std::mutex mu;
  Status first_error;
  auto work = [&] {
    for (size_t i; (i = next++) < missing.size();) {
      Status st = StatusOf(Fetch(missing[i]));
      if (st.ok()) continue;
      std::lock_guard<std::mutex> lock(mu);
      if (first_error.ok()) first_error = st;
      next = missing.size();  // the others stop too
    }
  };
  std::vector<std::thread> workers;
  for (int i = 1; i < concurrency && static_cast<size_t>(i) < missing.size(); ++i) {
    workers.emplace_back(work);
  }
  work();
  for (std::thread& t : workers) t.join();
  return first_error;
}

ChunkSource ChunkCache::AsSource() const {
  return [this](const std::string& hash) { return Get(hash); };
}

ChunkFileSource ChunkCache::AsFiles() const {
  return [this](const std::string& hash) -> std::string {
    if (!IsSha256Hex(hash)) return "";
    if (server_store_ && server_store_->Has(hash)) return server_store_->PathOf(hash);
    return store_.Has(hash) ? store_.PathOf(hash) : "";
  };
}

}  // namespace yard
