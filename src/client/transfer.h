// Moving files between a folder and the server as content-addressed chunks:
// only chunks the server lacks (for this user) travel up; a file mirrored
// down reuses the chunks of its previous local version.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "client/http_client.h"
#include "common/manifest.h"
#include "common/status.h"

namespace yard {

struct TransferStats {
  uint64_t files = 0;
  uint64_t bytes_total = 0;
  uint64_t chunks_total = 0;
  uint64_t chunks_sent = 0;
  uint64_t bytes_sent = 0;
};

// Packs `root` (honouring .gitignore/.yardignore) and uploads the chunks the
// server asks for, `parallel` at a time. Returns the folder's manifest.
StatusOr<Manifest> UploadDirectory(const HttpClient& client, const std::string& root,
                                   TransferStats* stats, int parallel = 4);

// Uploads the chunks of `m` (whose files are under `root`) that the server
// lacks, re-reading them from the files by offset.
Status UploadManifestChunks(const HttpClient& client, const Manifest& m, const std::string& root,
                            TransferStats* stats, int parallel = 4);

// Writes one artifact file entry under `dest_root` (atomically), fetching
// chunks from the server. `previous`, if given, is the entry last written
// at that path: its chunks are copied from the local file instead.
Status DownloadEntry(const HttpClient& client, const FileEntry& entry, const std::string& dest_root,
                     const FileEntry* previous, TransferStats* stats);

// Mirrors artifact events into local folders in the background, so output
// keeps flowing while a large checkpoint downloads. Only the newest version
// of a path is written when several are queued.
class ArtifactMirror {
 public:
  // `dirs` maps an artifact dir ("checkpoints", "logs", "outputs") to a
  // local folder; artifacts of unmapped dirs are skipped.
  ArtifactMirror(const HttpClient& client, std::map<std::string, std::string> dirs);
  ~ArtifactMirror();

  // Queues an `artifact` event ({"dir", "entry"}).
  void Add(const Json& event);
  // Waits until everything queued is written. Returns the first error.
  Status Drain();
  uint64_t files_written() const { return files_written_; }

 private:
  void Run();

  const HttpClient& client_;
  const std::map<std::string, std::string> dirs_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::string, FileEntry>> queue_;  // GUARDED_BY(mu_)
  std::map<std::string, FileEntry> written_;  // local path -> entry, worker only
  Status first_error_;                        // GUARDED_BY(mu_)
  bool busy_ = false;                         // GUARDED_BY(mu_)
  bool stop_ = false;                         // GUARDED_BY(mu_)
  std::atomic<uint64_t> files_written_{0};
  std::thread worker_;
};

}  // namespace yard
