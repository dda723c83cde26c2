#include "client/transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "common/bundle.h"
#include "common/files.h"
#include "common/hashing.h"

namespace yard {
namespace {

constexpr size_t kMissingBatch = 5000;

struct ChunkLocation {
  std::string path;
  uint64_t offset;
  uint64_t size;
};

StatusOr<std::string> ReadRange(const std::string& path, uint64_t offset, uint64_t size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open " + path);
  std::string buf(size, '\0');
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, buf.data() + done, size - done, static_cast<off_t>(offset + done));
    if (n <= 0) {
      ::close(fd);
      return n == 0 ? Internal(path + " changed while being sent: retry") : ErrnoStatus("read " + path);
    }
    done += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return buf;
}

// Asks the server which of `hashes` it needs, in batches.
StatusOr<std::vector<std::string>> AskMissing(const HttpClient& client,
                                              const std::vector<std::string>& hashes) {
  std::vector<std::string> missing;
  for (size_t i = 0; i < hashes.size(); i += kMissingBatch) {
    size_t end = std::min(hashes.size(), i + kMissingBatch);
    Json body = {{"hashes", std::vector<std::string>(hashes.begin() + i, hashes.begin() + end)}};
    YARD_ASSIGN_OR_RETURN(Json reply, client.Post("/v1/blobs/missing", body));
    for (const auto& h : reply.value("missing", Json::array())) missing.push_back(h);
  }
  return missing;
}

// Runs `work(i)` for i in [0, n) on `parallel` threads; returns the first error.
Status ParallelFor(size_t n, int parallel, const std::function<Status(size_t)>& work) {
  std::atomic<size_t> next{0};
  std::mutex mu;
  Status first;
  auto run = [&] {
    for (size_t i; (i = next++) < n;) {
      Status s = work(i);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (first.ok()) first = s;
        next = n;
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < parallel && static_cast<size_t>(t) < n; ++t) threads.emplace_back(run);
  run();
  for (auto& t : threads) t.join();
  return first;
}

}  // namespace

Status UploadManifestChunks(const HttpClient& client, const Manifest& m, const std::string& root,
                            TransferStats* stats, int parallel) {
  std::map<std::string, ChunkLocation> where;
  for (const auto& f : m.files) {
    uint64_t off = 0;
    for (const auto& c : f.chunks) {
      where.try_emplace(c.hash, ChunkLocation{root + "/" + f.path, off, c.size});
      off += c.size;
    }
  }
  std::vector<std::string> hashes;
  for (const auto& [h, loc] : where) hashes.push_back(h);
  YARD_ASSIGN_OR_RETURN(std::vector<std::string> missing, AskMissing(client, hashes));
  std::mutex stats_mu;
  Status s = ParallelFor(missing.size(), parallel, [&](size_t i) -> Status {
    const ChunkLocation& loc = where.at(missing[i]);
    YARD_ASSIGN_OR_RETURN(std::string bytes, ReadRange(loc.path, loc.offset, loc.size));
    if (Sha256Hex(bytes) != missing[i]) return Internal(loc.path + " changed while being sent: retry");
    YARD_RETURN_IF_ERROR(client.PutBytes("/v1/blobs/" + missing[i], bytes).status());
    std::lock_guard<std::mutex> lock(stats_mu);
    if (stats) { stats->chunks_sent++; stats->bytes_sent += bytes.size(); }
    return Status::Ok();
  });
  if (stats) {
    stats->files += m.files.size();
    stats->bytes_total += m.TotalBytes();
    stats->chunks_total += hashes.size();
  }
  return s;
}

StatusOr<Manifest> UploadDirectory(const HttpClient& client, const std::string& root,
                                   TransferStats* stats, int parallel) {
  PackOptions opts;
  // Chunk bytes are not kept while packing: missing chunks are re-read by
  // offset, so a large folder never sits in memory.
  YARD_ASSIGN_OR_RETURN(Manifest m, PackDirectory(root, opts, [](const ChunkRef&, std::string_view) {
    return Status::Ok();
  }));
  YARD_RETURN_IF_ERROR(UploadManifestChunks(client, m, root, stats, parallel));
  return m;
}

Status DownloadEntry(const HttpClient& client, const FileEntry& entry, const std::string& dest_root,
                     const FileEntry* previous, TransferStats* stats) {
  if (!IsSafeRelativePath(entry.path)) return InvalidArgument("unsafe artifact path '" + entry.path + "'");
  std::string dest = dest_root + "/" + entry.path;
  YARD_RETURN_IF_ERROR(MakeDirs(std::filesystem::path(dest).parent_path().string()));
  if (entry.is_link()) return Status::Ok();  // links are not mirrored: their targets are
  std::map<std::string, std::pair<uint64_t, uint64_t>> old;  // hash -> (offset, size)
  if (previous) {
    uint64_t off = 0;
    for (const auto& c : previous->chunks) { old.try_emplace(c.hash, off, c.size); off += c.size; }
  }
  std::string tmp = dest + ".yard-part";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("cannot create " + tmp);
  Status s;
  for (const auto& c : entry.chunks) {
    StatusOr<std::string> bytes = Internal("unset");
    auto it = old.find(c.hash);
    if (it != old.end()) bytes = ReadRange(dest, it->second.first, it->second.second);
    if (!bytes.ok() || Sha256Hex(*bytes) != c.hash) {
      bytes = client.GetBytes("/v1/blobs/" + c.hash);
      if (bytes.ok() && stats) { stats->chunks_sent++; stats->bytes_sent += bytes->size(); }
    }
    if (!bytes.ok()) { s = bytes.status(); break; }
    if (::write(fd, bytes->data(), bytes->size()) != static_cast<ssize_t>(bytes->size())) {
      s = ErrnoStatus("cannot write " + tmp);
      break;
    }
  }
  ::fchmod(fd, entry.mode & 0777);
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), dest.c_str()) != 0) s = ErrnoStatus("cannot rename to " + dest);
  if (!s.ok()) ::unlink(tmp.c_str());
  if (s.ok() && stats) { stats->files++; stats->bytes_total += entry.size; }
  return s;
}

ArtifactMirror::ArtifactMirror(const HttpClient& client, std::map<std::string, std::string> dirs)
    : client_(client), dirs_(std::move(dirs)), worker_([this] { Run(); }) {}

ArtifactMirror::~ArtifactMirror() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void ArtifactMirror::Add(const Json& event) {
  auto dir = dirs_.find(event.value("dir", ""));
  if (dir == dirs_.end() || dir->second.empty()) return;
  StatusOr<FileEntry> entry = FileEntryFromJson(event.value("entry", Json()));
  std::lock_guard<std::mutex> lock(mu_);
  if (!entry.ok()) {
    if (first_error_.ok()) first_error_ = entry.status();
    return;
  }
  // A newer version replaces a queued older one of the same path.
  for (auto& q : queue_)
    if (q.first == dir->second && q.second.path == entry->path) { q.second = *entry; return; }
  queue_.emplace_back(dir->second, *entry);
  cv_.notify_all();
}

Status ArtifactMirror::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return queue_.empty() && !busy_; });
  return first_error_;
}

void ArtifactMirror::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;
    auto [root, entry] = queue_.front();
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    std::string key = root + "/" + entry.path;
    auto prev = written_.find(key);
    Status s = DownloadEntry(client_, entry, root, prev == written_.end() ? nullptr : &prev->second,
                             nullptr);
    if (s.ok()) { written_[key] = entry; files_written_++; }
    lock.lock();
    if (!s.ok() && first_error_.ok()) first_error_ = s.WithContext("mirroring " + key);
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace yard
