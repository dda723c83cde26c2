#include "client/transfer.h"

#include <fcntl.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <thread>
#include <unordered_set>
#include <vector>

#include "client/connection_pool.h"
#include "common/bundle.h"
#include "common/files.h"
#include "common/hash_cache.h"
#include "common/hashing.h"

namespace yard {
namespace {

// ---- Connections ------------------------------------------------------------

// Whether a worker keeps its connection between requests. Yes, now that the
// server sets TCP_NODELAY: without it httplib writes a reply's headers and
// body apart, and on a reused connection every reply waited for this side's
// delayed ACK (40 ms; 20 MB/s per worker). Measured with 256 MiB: 500 MB/s
// kept alive against 446 fresh. See bench/README.md, "Artifacts".
constexpr bool kKeepAlive = true;

// ---- The server's own blob folder, on the same machine ----------------------

// Chunk `c` read from the blob folder `dir` of a server on this machine
// (HttpClient::local_blobs; the layout of common/blob_store.h) and checked
// against its hash piece by piece as it is read, as a fetched chunk is.
// nullopt, for the caller to fetch it over HTTP instead, when it cannot be
// read there (no such folder or blob, or not ours to read: only chunks the
// server delivered to us by name are asked for, and only with our own
// permissions) or when it is not the chunk (damaged on disk: never used).
std::optional<std::string> ReadLocalChunk(const std::string& dir, const ChunkRef& c) {
  if (dir.empty() || !IsSha256Hex(c.hash)) return std::nullopt;
  std::string path = dir + "/" + c.hash.substr(0, 2) + "/" + c.hash;
  // O_NONBLOCK: a FIFO put there must not hold the worker (then refused: not S_ISREG).
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  struct stat st;
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) != c.size)
    return std::nullopt;
  constexpr size_t kPiece = 256 << 10;  // hashed while still in cache
  std::string bytes(c.size, '\0');
  Sha256 hash;
  for (uint64_t done = 0; done < c.size;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(kPiece, c.size - done));
    StatusOr<size_t> got = ReadAt(fd.get(), bytes.data() + done, want, done, path);
    if (!got.ok() || *got != want) return std::nullopt;
    hash.Update(bytes.data() + done, want);
    done += want;
  }
  if (hash.FinishHex() != c.hash) return std::nullopt;
  return bytes;
}

// One worker's connection to the blob routes, opened on first use and
// opened afresh after a transport failure (the embedded server may have
// moved to another port). Built on HttpClient's address and token so that
// HttpClient itself keeps its connection policy. Not thread-safe: one per
// thread.
class BlobConnection {
 public:
  explicit BlobConnection(const HttpClient& http) : http_(http) {}

  StatusOr<std::unordered_set<std::string>> Missing(const std::vector<std::string>& hashes) {
    YARD_ASSIGN_OR_RETURN(httplib::Client * cli, Open());
    std::string body = Json{{"hashes", hashes}}.dump();
    auto r = cli->Post("/v1/blobs/missing", Headers(), body, "application/json");
    YARD_RETURN_IF_ERROR(Check(r, "POST /v1/blobs/missing"));
    Json reply = Json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    if (!reply.is_object() || !reply.contains("missing") || !reply["missing"].is_array()) {
      return Internal("POST /v1/blobs/missing: reply without \"missing\"");
    }
    std::unordered_set<std::string> missing;
    for (const Json& h : reply["missing"]) {
      if (h.is_string()) missing.insert(h.get<std::string>());
    }
    return missing;
  }

  // The body goes from `bytes` to the socket: a content provider, because
  // httplib copies a body given as a pointer into its request first.
  Status Put(const std::string& hash, std::string_view bytes) {
    YARD_ASSIGN_OR_RETURN(httplib::Client * cli, Open());
    auto provide = [bytes](size_t offset, size_t length, httplib::DataSink& sink) {
      return sink.write(bytes.data() + offset, std::min(length, bytes.size() - offset));
    };
    auto r =
        cli->Put("/v1/blobs/" + hash, Headers(), bytes.size(), provide, "application/octet-stream");
    return Check(r, "PUT /v1/blobs/" + hash);
  }

  // Fetches chunk `c` and checks it in the same pass: each piece is hashed
  // as it arrives (still in cache) while it is copied into a buffer of the
  // chunk's size, so the check costs no second walk over memory and the
  // buffer never grows. Internal if the bytes are not the chunk's.
  // On the server's machine the chunk is read from its blob folder
  // instead, checked the same way (ReadLocalChunk); over HTTP if that fails.
  StatusOr<std::string> GetVerified(const ChunkRef& c) {
    if (std::optional<std::string> local = ReadLocalChunk(http_.local_blobs(), c))
      return std::move(*local);
    YARD_ASSIGN_OR_RETURN(httplib::Client * cli, Open());
    std::string bytes, error_body;
    bytes.reserve(c.size);  // filled as pieces arrive: not zero-filled first
    uint64_t got = 0;
    bool overflow = false;
    int status = 0;
    Sha256 hash;
    auto r = cli->Get(
        "/v1/blobs/" + c.hash, Headers(),
        [&](const httplib::Response& res) {
          status = res.status;
          return true;
        },
        [&](const char* data, size_t n) {
          if (status != 200) return error_body.append(data, std::min<size_t>(n, 4096)), true;
          if (n > c.size - got) return overflow = true, false;  // more than the chunk holds
          bytes.append(data, n);
          hash.Update(data, n);
          got += n;
          return true;
        });
    if (!overflow) {
      if (!r) return Check(r, "GET /v1/blobs/" + c.hash);
      if (status != 200) return StatusFromHttp(status, error_body);
    }
    if (overflow || got != c.size || hash.FinishHex() != c.hash) {
      if (overflow) cli_.reset();  // the rest of the body is still on the connection
      return Internal("chunk " + c.hash + " arrived damaged (its content does not match its " +
                      "hash or size): try again");
    }
    return bytes;
  }

 private:
  StatusOr<httplib::Client*> Open() {
    // One left idle past the server's keep-alive is not reused (KeepIdleFor).
    if (cli_ && !KeepIdleFor(last_used_, std::chrono::milliseconds(1500))) cli_.reset();
    if (cli_) return cli_.get();
    YARD_ASSIGN_OR_RETURN(std::string url, http_.BaseUrl());
    std::unique_ptr<httplib::Client> cli = NewServerConnection(url, http_.tls_trust());
    if (!cli) return InvalidArgument("bad server URL '" + url + "'");
    url_ = url;
    cli->set_read_timeout(120, 0);
    cli->set_keep_alive(kKeepAlive);
    cli_ = std::move(cli);
    return cli_.get();
  }

  httplib::Headers Headers() const {
    httplib::Headers h;
    if (!http_.token().empty()) h.emplace("Authorization", "Bearer " + http_.token());
    return h;
  }

  Status Check(const httplib::Result& r, const std::string& what) {
    last_used_ = std::chrono::steady_clock::now();
    if (!r) {
      std::string tls =
          ExplainTlsFailure(*cli_, url_, http_.tls_trust(), static_cast<int>(r.error()));
      cli_.reset();
      if (!tls.empty()) return FailedPrecondition(what + ": " + tls);
      return Unavailable(what + ": " + httplib::to_string(r.error()) +
                         " (is the server running? check `yard server` or YARD_SERVER)");
    }
    return StatusFromHttp(r->status, r->body);
  }

  const HttpClient& http_;
  std::unique_ptr<httplib::Client> cli_;
  std::string url_;                                  // cli_'s
  std::chrono::steady_clock::time_point last_used_;  // cli_'s last exchange ended
};

Status Call(const CallRetry& retry, const std::function<Status()>& call) {
  return retry ? retry(call) : call();
}

StatusOr<std::string> ReadRange(int fd, const std::string& path, uint64_t offset, uint64_t size) {
  std::string buf(size, '\0');
  YARD_ASSIGN_OR_RETURN(size_t got, ReadAt(fd, buf.data(), size, offset, "reading " + path));
  if (got < size) return Internal(path + " changed while being sent: retry");
  return buf;
}

// ---- Uploading --------------------------------------------------------------

// One upload. The producer (the caller's thread) cuts chunks and Offer()s
// them; they are grouped, and each full group is queued for a worker, which
// asks the server which of the group's chunks it lacks and PUTs those. The
// queue holds at most `concurrency` groups, so the producer waits when the
// network is the bottleneck and memory stays ~2 x concurrency groups.
class UploadSession {
 public:
  UploadSession(const HttpClient& http, const UploadOptions& o, uint64_t total_bytes,
                const ChunkUploader::ChunksStored& stored = nullptr)
      : http_(http), o_(o), total_(total_bytes), stored_(stored) {}
  ~UploadSession() { (void)Close(); }  // joins the workers on early returns

  // Producer thread only. Returns a worker's failure, so the producer stops.
  // `file_offset`: where the chunk is in its file, for the ChunksStored
  // callback (ignored without one).
  // `borrowed`: `bytes` stay valid and unchanged until Finish returns, so
  // they are sent from where they are instead of copied into the group.
  Status Offer(const ChunkRef& ref, std::string_view bytes, uint64_t file_offset = 0,
               bool borrowed = false) {
    if (!seen_.insert(ref.hash).second) {
      AddDone(bytes.size());  // a repeat within this upload: sent once
      return Status::Ok();
    }
    Item item{ref, std::string(), nullptr, 0, file_offset};
    if (borrowed) {
      item.borrowed = bytes;
    } else {
      item.bytes = bytes;
    }
    group_.items.push_back(std::move(item));
    group_.size += bytes.size();
    return group_.size >= o_.group_bytes ? Enqueue() : FirstError();
  }

  // As Offer, for a chunk not read: `ref.size` bytes at `offset` of the file
  // at `path`, read only if the server lacks it. Such chunks are asked
  // about up to kMaxAsk at a time: an unchanged file costs one question.
  Status OfferKnown(const ChunkRef& ref, const std::string& path, uint64_t offset) {
    if (!seen_.insert(ref.hash).second) {
      AddDone(ref.size);
      return Status::Ok();
    }
    if (group_.paths.empty() || *group_.paths.back() != path)
      group_.paths.push_back(std::make_shared<const std::string>(path));
    group_.items.push_back({ref, std::string(), group_.paths.back(), offset, offset});
    return group_.items.size() >= kMaxAsk ? Enqueue() : FirstError();
  }

  // Sends what is left, waits for the workers; the first failure, if any.
  Status Finish(TransferStats* stats) {
    Status s = Enqueue();
    Status closed = Close();
    if (s.ok()) s = closed;
    if (stats) {
      MutexLock lock(mu_);
      stats->chunks_total += seen_.size();
      stats->chunks_sent += chunks_sent_;
      stats->bytes_sent += bytes_sent_;
    }
    return s;
  }

 private:
  // Hashes per POST /v1/blobs/missing at most (~70 bytes of JSON each).
  static constexpr size_t kMaxAsk = 8192;

  struct Item {
    ChunkRef ref;
    std::string bytes;                        // held, or
    std::shared_ptr<const std::string> path;  // where to read it if missing
    uint64_t offset = 0;
    uint64_t file_offset = 0;   // for stored_
    std::string_view borrowed;  // or the caller's (Offer's `borrowed`)
    std::string_view Bytes() const { return borrowed.empty() ? bytes : borrowed; }
  };
  struct Group {
    std::vector<Item> items;
    std::vector<std::shared_ptr<const std::string>> paths;
    size_t size = 0;  // bytes held
  };

  Status Enqueue() {
    if (group_.items.empty()) return FirstError();
    MutexLock lock(mu_);
    cv_.wait(lock.unique(),
             [&]() REQUIRES(mu_) { return !error_.ok() || queue_.size() < Concurrency(); });
    if (!error_.ok()) return error_;
    queue_.push_back(std::move(group_));
    group_ = Group();
    if (workers_.size() < Concurrency() && idle_ == 0) workers_.emplace_back([this] { Work(); });
    cv_.notify_all();
    return Status::Ok();
  }

  void Work() {
    BlobConnection conn(http_);
    for (;;) {
      Group g;
      {
        MutexLock lock(mu_);
        ++idle_;
        cv_.wait(lock.unique(),
                 [&]() REQUIRES(mu_) { return closed_ || !queue_.empty() || !error_.ok(); });
        --idle_;
        if (!error_.ok() || queue_.empty()) return;
        g = std::move(queue_.front());
        queue_.pop_front();
        cv_.notify_all();
      }
      Status s = Send(conn, g);
      if (!s.ok()) return Fail(s);
    }
  }

  Status Send(BlobConnection& conn, Group& g) {
    std::vector<std::string> hashes;
    for (const Item& item : g.items) hashes.push_back(item.ref.hash);
    std::unordered_set<std::string> missing;
    YARD_RETURN_IF_ERROR(Call(o_.retry, [&]() -> Status {
      YARD_ASSIGN_OR_RETURN(missing, conn.Missing(hashes));
      return Status::Ok();
    }));
    for (Item& item : g.items) {
      if (missing.count(item.ref.hash)) {
        if (item.path) YARD_RETURN_IF_ERROR(ReadKnown(item));
        Status s = Call(o_.retry, [&] { return conn.Put(item.ref.hash, item.Bytes()); });
        if (!s.ok() && item.path && s.code() == Code::kInvalidArgument)
          s = s.WithContext(*item.path + " changed since its chunks were remembered: upload again");
        if (!s.ok()) return s.WithContext("uploading chunk " + item.ref.hash);
        MutexLock lock(mu_);
        chunks_sent_++;
        bytes_sent_ += item.ref.size;
      }
      AddDone(item.ref.size);
    }
    if (stored_) TellStored(g);
    return Status::Ok();
  }

  // Every chunk of `g` is now held for the caller: told as runs of
  // chunks that follow each other in the file.
  void TellStored(const Group& g) const {
    std::vector<ChunkRef> run;
    uint64_t start = 0, end = 0;
    for (const Item& item : g.items) {
      if (!run.empty() && item.file_offset != end) {
        stored_(start, run);
        run.clear();
      }
      if (run.empty()) start = end = item.file_offset;
      run.push_back(item.ref);
      end += item.ref.size;
    }
    if (!run.empty()) stored_(start, run);
  }

  // A known chunk the server lacks, read from its file.
  static Status ReadKnown(Item& item) {
    ScopedFd fd(::open(item.path->c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return ErrnoStatus("cannot open " + *item.path);
    YARD_ASSIGN_OR_RETURN(item.bytes, ReadRange(fd.get(), *item.path, item.offset, item.ref.size));
    return Status::Ok();
  }

  void AddDone(uint64_t n) {
    uint64_t done = done_ += n;
    if (o_.progress) o_.progress->Update(done, std::max(done, total_));
  }

  void Fail(const Status& s) {
    MutexLock lock(mu_);
    if (error_.ok()) error_ = s;
    cv_.notify_all();
  }

  Status FirstError() {
    MutexLock lock(mu_);
    return error_;
  }

  Status Close() {
    {
      MutexLock lock(mu_);
      closed_ = true;
      cv_.notify_all();
    }
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    return FirstError();
  }

  size_t Concurrency() const { return static_cast<size_t>(std::max(1, o_.concurrency)); }

  const HttpClient& http_;
  const UploadOptions& o_;
  const uint64_t total_;
  const ChunkUploader::ChunksStored stored_;  // may be empty
  std::unordered_set<std::string> seen_;      // producer only
  Group group_;                               // producer only: being filled
  std::atomic<uint64_t> done_{0};
  Mutex mu_;
  std::condition_variable cv_;
  std::deque<Group> queue_ GUARDED_BY(mu_);
  size_t idle_ GUARDED_BY(mu_) = 0;  // workers waiting for a group
  bool closed_ GUARDED_BY(mu_) = false;
  Status error_ GUARDED_BY(mu_);  // the first failure
  uint64_t chunks_sent_ GUARDED_BY(mu_) = 0;
  uint64_t bytes_sent_ GUARDED_BY(mu_) = 0;
  std::vector<std::thread> workers_;
};

// What PackDirectory will read, for the progress total: regular files not
// ignored by the root's own .gitignore/.yardignore, .git and .yard skipped.
// Nested ignore files are not read, so this may overestimate; it is only
// an estimate for a progress bar.
uint64_t EstimateFolderBytes(const std::string& root) {
  namespace fs = std::filesystem;
  IgnoreRules rules;
  for (const char* name : {".gitignore", ".yardignore"}) {
    StatusOr<std::string> text = ReadFile(root + "/" + name);
    if (text.ok()) rules.AddFile("", *text);
  }
  uint64_t total = 0;
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    fs::file_type type = it->symlink_status(type_ec).type();
    std::string rel = it->path().lexically_relative(root).generic_string();
    std::string name = it->path().filename().string();
    bool dir = type == fs::file_type::directory;
    if (name == ".git" || name == ".yard" || rules.IsIgnored(rel, dir)) {
      if (dir) it.disable_recursion_pending();
      continue;
    }
    std::error_code size_ec;
    if (type == fs::file_type::regular) total += it->file_size(size_ec);
  }
  return total;
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// ---- Downloading ------------------------------------------------------------

// Runs `work(conn, i)` for i in [0, n) on up to `parallel` threads, each
// with its own connection; returns the first error.
Status ParallelFor(const HttpClient& http, size_t n, int parallel,
                   const std::function<Status(BlobConnection&, size_t)>& work) {
  std::atomic<size_t> next{0};
  Mutex mu;
  Status first;
  auto run = [&] {
    BlobConnection conn(http);
    for (size_t i; (i = next++) < n;) {
      Status s = work(conn, i);
      if (!s.ok()) {
        MutexLock lock(mu);
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

// Writes all of `data` at `offset`, at most kMaxBytesPerWrite per call
// (a chunk is up to 4 MiB; see common/files.h for why smaller writes).
Status WriteAt(int fd, const std::string& path, std::string_view data, uint64_t offset) {
  return WriteVectorAll(fd, {{const_cast<char*>(data.data()), data.size()}}, offset,
                        "cannot write " + path);
}

// The server answers 429 past a user's calls in flight (64 by default):
// several mirrors at once (a sweep) can get there. Such a chunk is asked
// for again after a pause, for a minute at most, as the answer says to.
StatusOr<std::string> GetPatiently(BlobConnection& conn, const ChunkRef& c) {
  for (int attempt = 1;; ++attempt) {
    StatusOr<std::string> fetched = conn.GetVerified(c);
    if (fetched.ok() || fetched.status().code() != Code::kTooManyRequests || attempt >= 60)
      return fetched;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(1000, 50 * attempt)));
  }
}

// Writes `entry`'s content into `fd` (the temporary file `tmp`), which
// holds already the chunks `in_place` names (by offset; may be null).
class EntryFetch {
 public:
  EntryFetch(const HttpClient& http, const FileEntry& entry, const std::string& dest,
             const FileEntry* previous, const DownloadOptions& o,
             const std::map<uint64_t, ChunkRef>* in_place)
      : http_(http), entry_(entry), dest_(dest), o_(o), in_place_(in_place) {
    if (!previous) return;
    uint64_t off = 0;
    for (const auto& c : previous->chunks) {
      old_.try_emplace(c.hash, off, c.size);
      off += c.size;
    }
  }

  Status Run(int fd, const std::string& tmp) {
    std::vector<uint64_t> offsets;
    uint64_t off = 0;
    for (const ChunkRef& c : entry_.chunks) {
      offsets.push_back(off);
      off += c.size;
    }
    ScopedFd old(old_.empty() ? -1 : ::open(dest_.c_str(), O_RDONLY | O_CLOEXEC));
    return ParallelFor(http_, entry_.chunks.size(), o_.parallel,
                       [&](BlobConnection& conn, size_t i) {
                         const ChunkRef& c = entry_.chunks[i];
                         if (!InPlace(offsets[i], c)) {
                           YARD_ASSIGN_OR_RETURN(std::string bytes, Fetch(conn, old.get(), c));
                           YARD_RETURN_IF_ERROR(WriteAt(fd, tmp, bytes, offsets[i]));
                         }
                         uint64_t done = done_ += c.size;
                         if (o_.progress) {
                           o_.progress->Update(o_.progress_offset + done,
                                               o_.progress_total ? o_.progress_total : entry_.size);
                         }
                         return Status::Ok();
                       });
  }

  uint64_t chunks_fetched() const { return chunks_fetched_; }
  uint64_t bytes_fetched() const { return bytes_fetched_; }

 private:
  // The chunk was fetched early (and checked then) at the same offset.
  bool InPlace(uint64_t offset, const ChunkRef& c) const {
    if (!in_place_) return false;
    auto it = in_place_->find(offset);
    return it != in_place_->end() && it->second == c;
  }

  // The chunk from the previous local version if it is there unchanged,
  // else from the server; checked against its hash either way.
  StatusOr<std::string> Fetch(BlobConnection& conn, int old_fd, const ChunkRef& c) {
    auto it = old_.find(c.hash);
    if (old_fd >= 0 && it != old_.end()) {
      StatusOr<std::string> local = ReadRange(old_fd, dest_, it->second.first, it->second.second);
      if (local.ok() && Sha256Hex(*local) == c.hash) return local;
    }
    StatusOr<std::string> fetched = GetPatiently(conn, c);
    if (!fetched.ok()) return fetched.status().WithContext(entry_.path);
    std::string bytes = std::move(*fetched);
    chunks_fetched_++;
    bytes_fetched_ += bytes.size();
    return bytes;
  }

  const HttpClient& http_;
  const FileEntry& entry_;
  const std::string dest_;
  const DownloadOptions& o_;
  const std::map<uint64_t, ChunkRef>* in_place_;
  std::map<std::string, std::pair<uint64_t, uint64_t>> old_;  // hash -> (offset, size)
  std::atomic<uint64_t> done_{0}, chunks_fetched_{0}, bytes_fetched_{0};
};

// DownloadEntry, into the early fetch's temporary file when there is one.
Status WriteEntry(const HttpClient& client, const FileEntry& entry, const std::string& dest_root,
                  const FileEntry* previous, TransferStats* stats, const DownloadOptions& options,
                  ArtifactMirror::Early* early) {
  if (!IsSafeRelativePath(entry.path))
    return InvalidArgument("unsafe artifact path '" + entry.path + "'");
  std::string dest = dest_root + "/" + entry.path;
  YARD_RETURN_IF_ERROR(MakeDirs(std::filesystem::path(dest).parent_path().string()));
  if (entry.is_link()) return Status::Ok();  // links are not mirrored: their targets are
  std::string tmp = early ? early->tmp : dest + ".yard-part";
  EntryFetch fetch(client, entry, dest, previous, options, early ? &early->have : nullptr);
  Status s;
  {
    ScopedFd own(early ? -1 : ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    int fd = early ? early->fd : own.get();
    if (fd < 0) return ErrnoStatus("cannot create " + tmp);
    s = fetch.Run(fd, tmp);
    // An early file may reach past the entry (chunks of another version).
    if (s.ok() && ::ftruncate(fd, static_cast<off_t>(entry.size)) != 0)
      s = ErrnoStatus("cannot truncate " + tmp);
    ::fchmod(fd, entry.mode & 0777);
  }
  if (s.ok() && ::rename(tmp.c_str(), dest.c_str()) != 0)
    s = ErrnoStatus("cannot rename to " + dest);
  if (!s.ok()) ::unlink(tmp.c_str());
  if (s.ok() && stats) {
    stats->files++;
    stats->bytes_total += entry.size;
    stats->chunks_total += entry.chunks.size();
    stats->chunks_sent += fetch.chunks_fetched();
    stats->bytes_sent += fetch.bytes_fetched();
  }
  return s;
}

}  // namespace

ChunkUploader::ChunkUploader(const HttpClient* http, UploadOptions options)
    : http_(http), options_(std::move(options)) {}

StatusOr<FileEntry> ChunkUploader::Upload(const std::string& path, TransferStats* stats,
                                          const ChunksStored& stored) const {
  UploadSession session(*http_, options_, FileSize(path), stored);
  FileEntry entry;
  Status s = ChunkFile(path, options_.chunker, [&](const ChunkRef& ref, std::string_view bytes) {
    uint64_t offset = entry.size;
    entry.chunks.push_back(ref);
    entry.size += ref.size;
    return session.Offer(ref, bytes, offset);
  });
  Status finished = session.Finish(stats);
  YARD_RETURN_IF_ERROR(s.ok() ? finished : s);
  if (stats) {
    stats->files++;
    stats->bytes_total += entry.size;
  }
  return entry;
}

StatusOr<Manifest> UploadDirectory(const HttpClient& client, const std::string& root,
                                   TransferStats* stats, const UploadOptions& options) {
  UploadSession session(client, options, options.progress ? EstimateFolderBytes(root) : 0);
  PackOptions pack;
  pack.chunker = options.chunker;
  HashCache cache(options.hash_cache_dir, options.chunker);
  if (!options.hash_cache_dir.empty()) {
    pack.hash_cache = &cache;
    pack.known = [&](const ChunkRef& ref, const std::string& path, uint64_t offset) {
      return session.OfferKnown(ref, path, offset);
    };
  }
  StatusOr<Manifest> m = PackDirectory(
      root, pack,
      [&](const ChunkRef& ref, std::string_view bytes) { return session.Offer(ref, bytes); });
  Status finished = session.Finish(stats);
  if (!m.ok()) return m.status();
  YARD_RETURN_IF_ERROR(finished);
  if (stats) {
    stats->files += m->files.size();
    stats->bytes_total += m->TotalBytes();
  }
  return m;
}

StatusOr<Manifest> UploadMemoryFiles(const HttpClient& client, const std::vector<MemoryFile>& files,
                                     TransferStats* stats, const UploadOptions& options) {
  uint64_t total = 0;
  std::set<std::string> paths;
  for (const MemoryFile& f : files) {
    total += f.head.size() + f.body.size();
    if (!IsSafeRelativePath(f.path))
      return InvalidArgument("'" + f.path +
                             "' is not a relative path inside the bundle: name the " +
                             "file like 'data/x.npy'");
    if (!paths.insert(f.path).second)
      return InvalidArgument("two files named '" + f.path + "' in one upload: name them apart");
  }
  UploadSession session(client, options, total);
  Manifest m;
  Status s;
  for (const MemoryFile& f : files) {
    FileEntry& e = m.files.emplace_back();
    e.path = f.path;
    e.mode = f.mode;
    // Chunks inside the body are sent from it; those holding head bytes are
    // ChunkPrefixed's own copies, gone when it returns, so the session copies them.
    std::less_equal<const char*> le;
    const char* body_end = f.body.data() + f.body.size();
    s = ChunkPrefixed(
        f.head, f.body, options.chunker, [&](const ChunkRef& ref, std::string_view b) {
          bool in_body = le(f.body.data(), b.data()) && le(b.data() + b.size(), body_end);
          uint64_t offset = e.size;
          e.chunks.push_back(ref);
          e.size += ref.size;
          return session.Offer(ref, b, offset, /*borrowed=*/in_body);
        });
    if (!s.ok()) break;
  }
  Status finished = session.Finish(stats);
  YARD_RETURN_IF_ERROR(s.ok() ? finished : s);
  std::sort(m.files.begin(), m.files.end(),
            [](const FileEntry& a, const FileEntry& b) { return a.path < b.path; });
  if (stats) {
    stats->files += m.files.size();
    stats->bytes_total += m.TotalBytes();
  }
  return m;
}

StatusOr<Manifest> UploadDirectory(const HttpClient& client, const std::string& root,
                                   TransferStats* stats, int parallel) {
  UploadOptions options;
  options.concurrency = parallel;
  return UploadDirectory(client, root, stats, options);
}

Status UploadManifestChunks(const HttpClient& client, const Manifest& m, const std::string& root,
                            TransferStats* stats, const UploadOptions& options) {
  UploadSession session(client, options, m.TotalBytes());
  Status s;
  for (const FileEntry& f : m.files) {
    if (f.is_link() || f.chunks.empty()) continue;
    std::string path = root + "/" + f.path;
    ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
      s = ErrnoStatus("cannot open " + path);
      break;
    }
    uint64_t off = 0;
    for (const ChunkRef& c : f.chunks) {
      StatusOr<std::string> bytes = ReadRange(fd.get(), path, off, c.size);
      if (bytes.ok() && Sha256Hex(*bytes) != c.hash)
        bytes = Internal(path + " changed while being sent: retry");
      s = bytes.ok() ? session.Offer(c, *bytes) : bytes.status();
      if (!s.ok()) break;
      off += c.size;
    }
    if (!s.ok()) break;
  }
  Status finished = session.Finish(stats);
  YARD_RETURN_IF_ERROR(s.ok() ? finished : s);
  if (stats) {
    stats->files += m.files.size();
    stats->bytes_total += m.TotalBytes();
  }
  return Status::Ok();
}

Status DownloadEntry(const HttpClient& client, const FileEntry& entry, const std::string& dest_root,
                     const FileEntry* previous, TransferStats* stats,
                     const DownloadOptions& options) {
  return WriteEntry(client, entry, dest_root, previous, stats, options, nullptr);
}

ArtifactMirror::Early::~Early() {
  if (fd >= 0) ::close(fd);
  if (!tmp.empty()) ::unlink(tmp.c_str());  // gone already once renamed into place
}

ArtifactMirror::ArtifactMirror(const HttpClient& client, std::map<std::string, std::string> dirs,
                               ProgressFactory progress)
    : client_(client), dirs_(std::move(dirs)), progress_(std::move(progress)) {
  for (int i = 0; i < kMirrorWorkers; ++i) workers_.emplace_back([this] { Run(); });
  for (int i = 0; i < kEarlyWorkers; ++i) workers_.emplace_back([this] { RunEarly(); });
}

ArtifactMirror::~ArtifactMirror() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

bool ArtifactMirror::Takes(const Json& event) {
  std::string kind = event.is_object() ? event.value("kind", "") : "";
  return kind == "artifact" || kind == "artifact_part";
}

void ArtifactMirror::Add(const Json& event) {
  std::string dir_name = event.value("dir", "");
  auto dir = dirs_.find(dir_name);
  if (dir == dirs_.end() || dir->second.empty()) return;
  if (event.value("kind", "") == "artifact_part") {
    MutexLock lock(mu_);
    return AddPart(dir->second, event);
  }
  StatusOr<FileEntry> entry = FileEntryFromJson(event.value("entry", Json()));
  MutexLock lock(mu_);
  if (!entry.ok()) {
    if (first_error_.ok()) first_error_ = entry.status();
    return;
  }
  // A newer version replaces a queued older one of the same path.
  for (auto& q : queue_)
    if (q.root == dir->second && q.entry.path == entry->path) {
      q.entry = *entry;
      return;
    }
  queue_.push_back({dir_name, dir->second, *entry});
  cv_.notify_all();
}

// A part is a hint: one that does not parse, or whose file cannot be made,
// is left out (the artifact event fetches what it names). Chunks of the
// previous version written at that path are not fetched: the artifact
// event's write copies them from it.
void ArtifactMirror::AddPart(const std::string& root, const Json& event) {
  StatusOr<ArtifactPart> part = ArtifactPartFromJson(event);
  if (!part.ok()) return;
  std::string key = root + "/" + part->path;
  std::set<std::string> local;
  if (auto w = written_.find(key); w != written_.end())
    for (const ChunkRef& c : w->second.chunks) local.insert(c.hash);
  std::shared_ptr<Early>& early = early_[key];
  if (!early) {
    auto made = std::make_shared<Early>();
    if (MakeDirs(std::filesystem::path(key).parent_path().string()).ok()) {
      // Named apart from any other mirror's (another process mirroring
      // into the same folder), and never opened if it exists: chunks are
      // trusted in it because this mirror alone wrote them.
      made->tmp = key + ".yard-early-" + std::to_string(::getpid()) + "-" +
                  std::to_string(++early_files_made_);
      made->fd = ::open(made->tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (made->fd < 0) made->tmp.clear();
    }
    if (made->fd < 0) return (void)early_.erase(key);
    early = std::move(made);
  }
  uint64_t offset = part->offset;
  for (const ChunkRef& c : part->chunks) {
    auto have = early->have.find(offset);
    if (!local.count(c.hash) && (have == early->have.end() || !(have->second == c)))
      early->pending.emplace_back(offset, c);
    offset += c.size;
  }
  cv_.notify_all();
}

// Fetches the pending chunks of early files, each checked against its
// hash as it arrives; a chunk that fails is left to the artifact event.
void ArtifactMirror::RunEarly() {
  BlobConnection conn(client_);
  MutexLock lock(mu_);
  for (;;) {
    std::shared_ptr<Early> early;
    cv_.wait(lock.unique(), [&]() REQUIRES(mu_) {
      for (const auto& [key, e] : early_)
        if (!e->pending.empty()) {
          early = e;
          break;
        }
      return stop_ || early;
    });
    if (stop_) return;
    auto [offset, chunk] = early->pending.front();
    early->pending.pop_front();
    early->in_flight++;
    lock.Unlock();
    StatusOr<std::string> bytes = GetPatiently(conn, chunk);
    bool in = bytes.ok() && WriteAt(early->fd, early->tmp, *bytes, offset).ok();
    lock.Lock();
    if (in) {
      early->have[offset] = chunk;
      chunks_fetched_early_++;
    }
    early->in_flight--;
    cv_.notify_all();
  }
}

std::shared_ptr<ArtifactMirror::Early> ArtifactMirror::TakeEarly(const Queued& q) {
  auto taken = early_.find(q.key());
  if (taken == early_.end() && !q.entry.chunks.empty()) {
    // A file written under another name and renamed into place: its early
    // chunks are under that name (in the same folder tree), and its first
    // chunk is this entry's.
    const ChunkRef& first = q.entry.chunks.front();
    std::string prefix = q.root + "/";
    for (auto it = early_.begin(); it != early_.end(); ++it) {
      if (it->first.compare(0, prefix.size(), prefix) != 0) continue;
      auto have = it->second->have.find(0);
      bool named = have != it->second->have.end() && have->second == first;
      for (const auto& [offset, c] : it->second->pending)
        named = named || (offset == 0 && c == first);
      if (named) {
        taken = it;
        break;
      }
    }
  }
  if (taken == early_.end()) return nullptr;
  std::shared_ptr<Early> early = taken->second;
  early_.erase(taken);
  early->pending.clear();  // fetched by the write if the entry names them
  return early;
}

Status ArtifactMirror::Drain() {
  MutexLock lock(mu_);
  cv_.wait(lock.unique(), [&]() REQUIRES(mu_) { return queue_.empty() && writing_.empty(); });
  return first_error_;
}

// A worker takes the oldest queued file no other worker is writing (a
// newer version of a file being written waits for that write to end).
void ArtifactMirror::Run() {
  MutexLock lock(mu_);
  for (;;) {
    auto next = queue_.end();
    cv_.wait(lock.unique(), [&]() REQUIRES(mu_) {
      next = std::find_if(queue_.begin(), queue_.end(),
                          [&](const Queued& q) REQUIRES(mu_) { return !writing_.count(q.key()); });
      return (stop_ && queue_.empty()) || next != queue_.end();
    });
    if (next == queue_.end()) return;
    Queued q = std::move(*next);
    queue_.erase(next);
    std::string key = q.key();
    writing_.insert(key);
    auto prev = written_.find(key);
    std::optional<FileEntry> previous;
    if (prev != written_.end()) previous = prev->second;
    std::shared_ptr<Early> early = TakeEarly(q);
    // Its fetches in flight end before the write uses its file.
    if (early) cv_.wait(lock.unique(), [&]() REQUIRES(mu_) { return early->in_flight == 0; });
    bool show_progress = progress_ && !progress_shown_;
    progress_shown_ = progress_shown_ || show_progress;
    lock.Unlock();
    Status s = Write(q, previous ? &*previous : nullptr, early.get(), show_progress);
    early.reset();  // its file is renamed into place, or removed
    lock.Lock();
    if (show_progress) progress_shown_ = false;
    if (s.ok()) written_[key] = q.entry;
    if (!s.ok() && first_error_.ok()) first_error_ = s.WithContext("mirroring " + key);
    writing_.erase(key);
    cv_.notify_all();
  }
}

Status ArtifactMirror::Write(const Queued& q, const FileEntry* previous, Early* early,
                             bool show_progress) {
  std::unique_ptr<ProgressReporter> progress;
  if (show_progress) progress = progress_(q.dir_name + "/" + q.entry.path);
  DownloadOptions options;
  options.progress = progress.get();
  Status s = WriteEntry(client_, q.entry, q.root, previous, nullptr, options, early);
  if (progress) progress->Finish();
  if (s.ok()) files_written_++;
  return s;
}

}  // namespace yard
