#include "server/blob_collector.h"

#include <cstdio>
#include <vector>

#include "common/hashing.h"

namespace yard {

std::string BlobCollection::ToString() const {
  return std::to_string(removed) + " chunk files removed (" + std::to_string(bytes >> 20) +
         " MiB freed); " + std::to_string(referenced) + " old ones kept, still named by a job";
}

StatusOr<BlobCollection> CollectBlobs(Store* store, BlobStore* blobs, std::chrono::seconds grace,
                                      std::filesystem::file_time_type now) {
  BlobCollection c;
  std::filesystem::file_time_type cutoff = now - grace;
  // Candidates first, references second: a chunk named after this read was
  // touched after the listing, and RemoveIfOlderThan keeps it.
  std::vector<std::string> old = blobs->OlderThan(cutoff);
  c.old = static_cast<int64_t>(old.size());
  if (old.empty()) return c;
  YARD_ASSIGN_OR_RETURN(auto referenced, store->ReferencedHashes());
  std::vector<std::string> gone;
  for (const std::string& path : old) {
    std::string name = path.substr(path.find('/') + 1);
    bool chunk = IsSha256Hex(name);
    if (chunk && referenced.count(name)) {
      ++c.referenced;
      continue;
    }
    if (!blobs->RemoveIfOlderThan(path, cutoff, &c.bytes)) continue;  // touched meanwhile
    ++c.removed;
    if (chunk) gone.push_back(name);
  }
  if (!gone.empty()) YARD_RETURN_IF_ERROR(store->RemoveBlobOwners(gone));
  return c;
}

BlobCollector::BlobCollector(Store* store, BlobStore* blobs, std::chrono::seconds grace,
                             std::chrono::seconds interval)
    : store_(store), blobs_(blobs), grace_(grace), interval_(interval) {}

BlobCollector::~BlobCollector() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BlobCollector::Start() {
  thread_ = std::thread([this] {
    MutexLock lock(mu_);
    while (!cv_.wait_for(lock.unique(), interval_, [this]() REQUIRES(mu_) { return stop_; })) {
      lock.Unlock();
      StatusOr<BlobCollection> c = CollectBlobs(store_, blobs_, grace_);
      if (!c.ok()) {
        std::fprintf(stderr, "yard server: collecting unused chunks: %s\n",
                     c.status().ToString().c_str());
      } else if (c->removed > 0) {
        std::fprintf(stderr, "yard server: unused chunks: %s\n", c->ToString().c_str());
      }
      lock.Lock();
    }
  });
}

}  // namespace yard
