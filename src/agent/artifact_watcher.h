// ArtifactWatcher: mirrors the files a job writes under its checkpoint, log
// and output folders to the server while it runs (and, scanned once at its
// end, those it wrote in its working folder: JobRunner::MakeWorkWatcher).
//
// A file is synced once it has changed since its last sync and then stayed
// the same (size and mtime) across two consecutive scans, so that a file
// still being written is not sent half-done; or at once when inotify says
// a writer closed it (IN_CLOSE_WRITE) or it was renamed into place
// (IN_MOVED_TO), the usual end of writing a checkpoint. Scans remain the
// fallback (files kept open, inotify unavailable or out of watches). A sync uploads the file's
// chunks and, if the file still has the (size, mtime) it had before the
// upload, emits {"kind":"artifact","dir":D,"entry":<file entry>} with the
// path relative to D's folder; otherwise it is tried again later.
// Symlinks and paths that are not safe relative paths are skipped.
//
// While the Start() thread runs, syncs go to up to kParallelSyncs workers,
// so checkpoints written one after another upload at once instead of in
// turn (each upload reads, hashes and sends with workers of its own): the
// thread goes on noticing files while earlier ones upload. A file is synced
// by one worker at a time; a file closed again during its sync is synced
// again right after. Stop() waits for the syncs in flight.
//
// Records come in the order the files were finished, whatever order their
// uploads end in: a sync's record waits for the records of the syncs
// started before it, and a scan considers files oldest (mtime) first. The
// server resumes a preempted job from the checkpoint reported last, so that
// must be the one written last (a small step checkpoint must not be
// overtaken by the bigger end-of-epoch one written just before it).
//
// A file written under a temporary name and renamed into place is read and
// hashed once: the upload of the temporary file (started when it was
// closed) is remembered by its stamp, inode included, and the renamed file
// with that stamp reuses its entry (waiting for it if it is still running)
// instead of reading the file again.
//
// While a file of at least kPartBytes uploads, the chunks the server holds
// already are told in `artifact_part` records (docs/api.md) of at least
// kPartBytes each, as soon as they are stored, so that a mirror can fetch
// them while the rest is still being sent. They come before the file's
// `artifact` record (which alone says what the file is), are not ordered
// with other files' records, and a file whose sync fails or that changes
// meanwhile may have had parts but gets no record.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/stop_signal.h"
#include "client/http_client.h"
#include "client/transfer.h"
#include "common/manifest.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace yard {

// Closes `fd` (when >= 0) soon, on a thread of its own: for descriptors
// whose close blocks (an inotify instance with watches waits for an RCU
// grace period, ≈ 15 ms) where the caller must not wait.
void CloseInBackground(int fd);

// What tells one version of a file from the next. A rename keeps all four:
// a file renamed into place is the version that was written.
struct FileStamp {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  uint64_t device = 0, inode = 0;
  auto operator<=>(const FileStamp&) const = default;
};

class ArtifactWatcher {
 public:
  // Uploads a file's chunks and returns its entry (path and mode are set by
  // the watcher), telling `stored` the chunks the server holds as it goes
  // (may be called with none). See ChunkUploader::Upload (client/transfer.h).
  // Called from several threads at once (for different files).
  using Upload = std::function<StatusOr<FileEntry>(const std::string& path,
                                                   const ChunkUploader::ChunksStored& stored)>;
  // Receives each record (artifact, or an output line about a failed sync);
  // called from several threads, never at once.
  using Emit = std::function<void(Json record)>;
  struct Dir {
    std::string name;    // "checkpoints", "logs", "outputs", "work"
    std::string folder;  // where it is on disk
    // Names of folders, at any depth, whose files are not synced
    // (interpreter caches in the job's working folder).
    std::vector<std::string> skip_folders = {};
    // Files larger than this are not synced (the final scan says so); 0: any.
    uint64_t max_file_bytes = 0;
  };

  static constexpr int kParallelSyncs = 2;
  // The least bytes an artifact_part record names (and so the least size
  // of a file that gets any): fewer, larger events; the first one comes
  // after this much is stored.
  static constexpr uint64_t kPartBytes = 8 << 20;

  ArtifactWatcher(std::vector<Dir> dirs, Upload upload, Emit emit);
  ~ArtifactWatcher();  // Stop()s

  // Scans every `interval` on a thread of its own until Stop(), syncing
  // files inotify reports finished in between. Once only.
  void Start(std::chrono::milliseconds interval);
  // Ends the scanning thread (after the scan in progress) and waits for the
  // syncs it started.
  void Stop();

  // One scan (see above). With `final` (the job has ended) every file
  // changed since its last sync is synced, stable or not, and a file that
  // cannot be synced gets an output record saying why.
  // REQUIRES: not called while the Start() thread runs.
  void Scan(bool final);

  // Takes the file's present state as synced: the agent wrote it itself
  // (a checkpoint to resume from) and the server has it.
  void MarkSynced(const std::string& dir_name, const std::string& relative_path);
  // Takes every file present now in every dir as synced: they are the job's
  // input (its bundle), so only files written or changed after this are
  // synced. REQUIRES: not called while the Start() thread runs.
  void MarkAllSynced();

 private:
  struct FileState {
    std::optional<FileStamp> seen;                      // at the previous scan
    std::optional<FileStamp> synced;                    // at the last sync
    std::optional<FileStamp> failed;                    // at the last failed sync
    std::chrono::steady_clock::time_point closed_sync;  // the last sync inotify started
    bool syncing = false;                               // a sync worker has it
    bool again = false;  // closed again while syncing: sync once more after
  };
  struct SyncJob {
    const Dir* dir;
    std::string rel;
    uint64_t turn;  // its place in the order of records (see above)
  };
  // Calls `fn(rel)` for each regular file under `dir` at a safe relative path.
  void ForEachFile(const Dir& dir, const std::function<void(const std::string& rel)>& fn) const;
  void Consider(const Dir& dir, const std::string& rel, FileState* state, bool final) REQUIRES(mu_);
  // Uploads the file; returns its artifact record, or nothing (failed,
  // changed meanwhile, gone).
  std::optional<Json> Sync(const Dir& dir, const std::string& rel, FileState* state, bool final);
  // Sync, then the record out at once (no worker runs: see StartSync).
  void SyncNow(const Dir& dir, const std::string& rel, FileState* state, bool final);
  // Syncs now, or hands the sync to a worker while the Start() thread runs.
  void StartSync(const Dir& dir, const std::string& rel, FileState* state) REQUIRES(mu_);
  void SyncWorker();
  // upload_(path) for the file version `stamp`, or the entry of an upload
  // of that version already made (see above).
  StatusOr<FileEntry> UploadOnce(const std::string& path, const FileStamp& stamp,
                                 const ChunkUploader::ChunksStored& stored);
  void RunSyncJob(const SyncJob& job);
  void WaitForSyncs();
  void EmitRecord(Json record);
  // Waits until every sync job before `turn` has ended, emits `record` (if
  // any) and lets the next one's record out.
  void EmitInTurn(uint64_t turn, std::optional<Json> record);
  void SyncFailed(const Dir& dir, const std::string& rel, FileState* state, const Status& why,
                  bool final);
  // inotify (watcher thread only).
  void OpenInotify();
  void Watch(size_t dir_index, const std::string& rel_folder);
  void WaitAndSyncClosed(std::chrono::milliseconds timeout);
  void HandleEvent(int wd, uint32_t mask, const std::string& name);
  void SyncClosed(const Dir& dir, const std::string& rel);

  std::vector<Dir> dirs_;
  Upload upload_;
  Emit emit_;
  Mutex emit_mu_;  // emit_ is called by one thread at a time
  std::condition_variable emit_cv_;
  uint64_t emit_turn_ GUARDED_BY(emit_mu_) = 0;  // the sync job whose record is next
  // Guards files_ and the sync queue while workers may run; a FileState
  // being synced by a worker is written back only by that worker.
  Mutex mu_;
  std::condition_variable sync_cv_;
  std::map<std::string, FileState> files_ GUARDED_BY(mu_);  // by "<dir name>/<relative path>"
  bool async_ = false;                                      // Start() ran: syncs go to workers
  std::deque<SyncJob> sync_queue_ GUARDED_BY(mu_);
  int syncs_busy_ GUARDED_BY(mu_) = 0;  // jobs taken, not done
  int syncs_idle_ GUARDED_BY(mu_) = 0;
  uint64_t next_turn_ GUARDED_BY(mu_) = 0;  // given to the next sync job queued
  bool syncs_stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> sync_workers_;
  // Uploads by file version, for UploadOnce: running ones, and the last
  // kRememberedUploads done (oldest first in uploaded_order_).
  static constexpr size_t kRememberedUploads = 32;
  Mutex uploads_mu_;
  std::condition_variable uploads_cv_;
  std::set<FileStamp> uploading_ GUARDED_BY(uploads_mu_);
  std::map<FileStamp, FileEntry> uploaded_ GUARDED_BY(uploads_mu_);
  std::deque<FileStamp> uploaded_order_ GUARDED_BY(uploads_mu_);
  StopSignal stop_;
  std::thread thread_;
  std::chrono::milliseconds interval_{200};
  int inotify_fd_ = -1;
  int wake_fd_ = -1;  // an eventfd: Stop() wakes the thread out of poll()
  std::map<int, std::pair<size_t, std::string>>
      watches_;  // wd -> (dir index, folder relative to it)
};

// lstat of a regular file: its stamp and permission bits; nullopt for
// anything else (missing, a folder, a symlink).
std::optional<std::pair<FileStamp, uint32_t>> StatRegularFile(const std::string& path);

}  // namespace yard
