// Moving files between disk and the server as content-addressed chunks: the
// one implementation, used by the CLI and the Python SDK (bundles up,
// artifacts down) and by the agent (artifacts up).
//
// Uploads cut chunks (common/chunker) while reading each file once; in
// groups of a few MiB a worker asks POST /v1/blobs/missing which the server
// lacks (for this user) and PUTs those, so asking, sending and cutting
// overlap. A large file whose chunks are remembered unchanged (hash cache)
// is not read: its chunks are asked about thousands at a time and read
// only if missing. Chunks the server has already are not sent: a second upload of
// the same data sends nothing, and an interrupted one resumes where it
// stopped. Each worker has its own connection (see kKeepAlive in
// transfer.cc for why it is not yet kept between requests). Memory stays
// bounded (a few groups) whatever the size of the data.
//
// A file mirrored down is fetched by several workers writing at each
// chunk's offset, every chunk checked against its hash; chunks of the
// previous local version of the file are copied instead of fetched. On the
// server's own machine (HttpClient::local_blobs: the embedded server) a
// chunk is read from the server's blob folder instead of over HTTP, checked
// the same way; one that cannot be read there, or is damaged, is fetched.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client/http_client.h"
#include "client/progress.h"
#include "common/chunker.h"
#include "common/hash_cache.h"
#include "common/manifest.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace yard {

struct TransferStats {
  uint64_t files = 0;
  uint64_t bytes_total = 0;
  uint64_t chunks_total = 0;  // distinct chunks
  uint64_t chunks_sent = 0;   // chunks that travelled (up: PUT, down: GET)
  uint64_t bytes_sent = 0;
};

// Runs one call to the server (`call` may be run again). The agent passes
// one that retries Unavailable until it stops; unset, each call is made once.
using CallRetry = std::function<Status(const std::function<Status()>& call)>;

struct UploadOptions {
  ChunkerParams chunker;
  int concurrency = 4;           // workers, each asking and PUTting on its own connection
  size_t group_bytes = 4 << 20;  // chunk bytes per /v1/blobs/missing call
  CallRetry retry;
  // Told bytes handled (sent, or found present) of the total; not finished
  // by the upload: its owner calls Finish(). May be null.
  ProgressReporter* progress = nullptr;
  // UploadDirectory: where the chunks of large files are remembered by the
  // files' identity (common/hash_cache.h), so that an unchanged file is
  // neither read nor hashed again; "" remembers nothing. The CLI and the
  // SDKs pass HashCache::DefaultDir().
  std::string hash_cache_dir;
};

// Uploads single files (the agent's artifacts). Thread-safe: each Upload
// is independent.
class ChunkUploader {
 public:
  // `http` must outlive the uploader.
  ChunkUploader(const HttpClient* http, UploadOptions options = {});

  // Told, from the upload's workers (several at once, in no set order),
  // each run of consecutive chunks the server now holds for the caller's
  // user: `offset` is the first one's place in the file. A chunk repeated
  // earlier in the file is not told again.
  using ChunksStored = std::function<void(uint64_t offset, const std::vector<ChunkRef>& chunks)>;

  // Uploads the chunks of the file at `path` that the server lacks and
  // returns the file's entry: size and chunks filled in, `path` empty and
  // `mode` 0644 (the caller knows better). Errors of the retry policy (e.g.
  // Cancelled) and other failures are returned. `stats` and `stored` may
  // be null.
  StatusOr<FileEntry> Upload(const std::string& path, TransferStats* stats = nullptr,
                             const ChunksStored& stored = nullptr) const;

 private:
  const HttpClient* http_;
  UploadOptions options_;
};

// Packs `root` (honouring .gitignore/.yardignore) and uploads the chunks the
// server lacks while reading each file once. Returns the folder's manifest.
// `options.progress` is given an estimate of the total up front.
StatusOr<Manifest> UploadDirectory(const HttpClient& client, const std::string& root,
                                   TransferStats* stats, const UploadOptions& options);
StatusOr<Manifest> UploadDirectory(const HttpClient& client, const std::string& root,
                                   TransferStats* stats, int parallel = 4);

// A file whose bytes are in memory: `head` followed by `body`, e.g. a .npy
// header and the array's buffer. `body` is borrowed: it must stay valid and
// unchanged until the upload returns.
struct MemoryFile {
  std::string path;  // in the manifest: relative, '/'-separated
  uint32_t mode = 0644;
  std::string head;
  std::string_view body;
};

// Uploads the chunks of `files` the server lacks straight from memory (no
// file written or read; only chunks holding a byte of a head are copied)
// and returns their manifest, sorted by path. The chunks are exactly those
// of files with the same bytes (ChunkPrefixed), so this and UploadDirectory
// deduplicate against each other. InvalidArgument, before anything is sent,
// for a path given twice or not a safe relative path.
StatusOr<Manifest> UploadMemoryFiles(const HttpClient& client, const std::vector<MemoryFile>& files,
                                     TransferStats* stats, const UploadOptions& options);

// Uploads the chunks of `m` (whose files are under `root`) that the server
// lacks, re-reading them from the files by offset; a file that no longer
// matches `m` is an error.
Status UploadManifestChunks(const HttpClient& client, const Manifest& m, const std::string& root,
                            TransferStats* stats, const UploadOptions& options);

struct DownloadOptions {
  int parallel = 4;  // chunks fetched at once
  // Told progress as `progress_offset` + bytes written of `progress_total`
  // (0: the entry's size), so one reporter can span several entries. Not
  // finished by the download. May be null.
  ProgressReporter* progress = nullptr;
  uint64_t progress_offset = 0;
  uint64_t progress_total = 0;
};

// Writes one artifact file entry under `dest_root` (atomically: a partial
// file never has the final name), fetching chunks from the server and
// checking each against its hash. `previous`, if given, is the entry last
// written at that path: its chunks are copied from the local file instead.
Status DownloadEntry(const HttpClient& client, const FileEntry& entry, const std::string& dest_root,
                     const FileEntry* previous, TransferStats* stats,
                     const DownloadOptions& options = {});

// Mirrors artifact events into local folders in the background, so output
// keeps flowing while a large checkpoint downloads. Several files are
// written at once (kMirrorWorkers, each fetching its chunks in parallel):
// checkpoints written one after another overlap on their way down. One
// path is written by one worker at a time, and only the newest version of
// a path is written when several are queued.
//
// `artifact_part` events (docs/api.md: chunks of a file the agent is still
// uploading, already held by the server) start the download before the
// file's `artifact` event: kEarlyWorkers fetch their chunks, each checked
// against its hash as it arrives, into a temporary file beside the
// destination. The `artifact` event then decides what the file is: a
// chunk fetched early is used only where the entry names the same chunk
// at the same offset; the rest is fetched then, and the file is renamed
// into place only when every chunk is in. Early chunks of a path whose
// artifact event never comes (a sync that failed, a file renamed before
// its record) are dropped, their file removed, with the mirror.
class ArtifactMirror {
 public:
  // Makes the reporter for one file's download (label: "<dir>/<path>").
  using ProgressFactory =
      std::function<std::unique_ptr<ProgressReporter>(const std::string& label)>;
  static constexpr int kMirrorWorkers = 3;
  static constexpr int kEarlyWorkers = 4;

  // `dirs` maps an artifact dir ("checkpoints", "logs", "outputs") to a
  // local folder; artifacts of unmapped dirs are skipped. `progress` may be
  // empty (no progress shown); it is called on the workers, and only while
  // no other file shows progress (one line on a terminal, not several
  // redrawn over each other).
  ArtifactMirror(const HttpClient& client, std::map<std::string, std::string> dirs,
                 ProgressFactory progress = nullptr);
  ~ArtifactMirror();

  // Whether Add takes this event: kinds `artifact` and `artifact_part`.
  static bool Takes(const Json& event);
  // Queues an `artifact` event ({"dir", "entry"}), or starts fetching the
  // chunks of an `artifact_part` event ({"dir", "path", "offset", "chunks"}).
  void Add(const Json& event);
  // Waits until every `artifact` event queued is written. Returns the
  // first error. (Early fetches of parts whose file has not been named by
  // an artifact event are not waited for.)
  Status Drain();
  uint64_t files_written() const { return files_written_; }
  // Chunks fetched early, before their file's artifact event (for tests
  // and the benchmark).
  uint64_t chunks_fetched_early() const { return chunks_fetched_early_; }

  // Chunks of a file fetched before its artifact event (see above). Under
  // the mirror's mu_ until a writer takes it (in_flight 0, out of early_).
  struct Early {
    std::string tmp;  // the temporary file they are written into
    int fd = -1;      // tmp, open for writing; closed (not removed) by the destructor
    std::map<uint64_t, ChunkRef> have;                  // offset -> chunk, checked on arrival
    std::deque<std::pair<uint64_t, ChunkRef>> pending;  // not fetched yet
    int in_flight = 0;                                  // being fetched now
    ~Early();
  };

 private:
  struct Queued {
    std::string dir_name, root;
    FileEntry entry;
    std::string key() const { return root + "/" + entry.path; }
  };
  void Run();
  void RunEarly();
  void AddPart(const std::string& root, const Json& event) REQUIRES(mu_);
  // Takes the early fetch for `q` (the same path's, or one whose first
  // chunk is the entry's: a file renamed into place) out of early_, its
  // pending chunks dropped; null if none. Its fetches in flight may still
  // run (in_flight).
  std::shared_ptr<Early> TakeEarly(const Queued& q) REQUIRES(mu_);
  Status Write(const Queued& q, const FileEntry* previous, Early* early, bool show_progress);

  const HttpClient& client_;
  const std::map<std::string, std::string> dirs_;
  const ProgressFactory progress_;
  Mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_ GUARDED_BY(mu_);
  std::set<std::string> writing_ GUARDED_BY(mu_);                        // keys a worker writes now
  std::map<std::string, FileEntry> written_ GUARDED_BY(mu_);             // local path -> entry
  std::map<std::string, std::shared_ptr<Early>> early_ GUARDED_BY(mu_);  // by key
  uint64_t early_files_made_ GUARDED_BY(mu_) = 0;  // names the temporary files apart
  Status first_error_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  bool progress_shown_ GUARDED_BY(mu_) = false;  // a worker shows progress
  std::atomic<uint64_t> files_written_{0};
  std::atomic<uint64_t> chunks_fetched_early_{0};
  std::vector<std::thread> workers_;
};

}  // namespace yard
