#include "agent/artifact_watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include "agent/agent_log.h"
#include "common/thread_annotations.h"

namespace yard {

namespace fs = std::filesystem;

namespace {
// After the job has ended nothing should write its files; a file changing
// that often during its final sync is given up with a message.
constexpr int kFinalTries = 3;

// One thread per process that closes descriptors for others. Never
// destroyed (its thread lives as long as the process), so it outlives
// every watcher, static ones included.
class BackgroundCloser {
 public:
  static BackgroundCloser& Get() {
    static BackgroundCloser* closer = new BackgroundCloser();
    return *closer;
  }
  void Close(int fd) {
    MutexLock lock(mu_);
    fds_.push_back(fd);
    cv_.notify_one();
  }

 private:
  BackgroundCloser() {
    std::thread([this] { Run(); }).detach();
  }
  void Run() {
    MutexLock lock(mu_);
    for (;;) {
      cv_.wait(lock.unique(), [this]() REQUIRES(mu_) { return !fds_.empty(); });
      int fd = fds_.front();
      fds_.pop_front();
      lock.Unlock();
      ::close(fd);
      lock.Lock();
    }
  }
  Mutex mu_;
  std::condition_variable cv_;
  std::deque<int> fds_ GUARDED_BY(mu_);
};
}  // namespace

void CloseInBackground(int fd) {
  if (fd >= 0) BackgroundCloser::Get().Close(fd);
}

std::optional<std::pair<FileStamp, uint32_t>> StatRegularFile(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  FileStamp stamp{static_cast<uint64_t>(st.st_size),
                  st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec,
                  static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
  return std::make_pair(stamp, static_cast<uint32_t>(st.st_mode & 0777));
}

ArtifactWatcher::ArtifactWatcher(std::vector<Dir> dirs, Upload upload, Emit emit)
    : dirs_(std::move(dirs)), upload_(std::move(upload)), emit_(std::move(emit)) {}

ArtifactWatcher::~ArtifactWatcher() {
  Stop();
  // Closing an inotify instance that had watches waits for the kernel's RCU
  // grace period (≈ 15 ms here, more under load): it would sit between a job
  // and the next on the instance (the runner is joined before the next starts).
  CloseInBackground(inotify_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void ArtifactWatcher::Start(std::chrono::milliseconds interval) {
  interval_ = interval;
  OpenInotify();
  async_ = true;
  thread_ = std::thread([this, interval] {
    if (inotify_fd_ < 0) {
      while (!stop_.WaitFor(interval)) Scan(/*final=*/false);
      return;
    }
    auto next_scan = std::chrono::steady_clock::now() + interval;
    while (!stop_.stopped()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          next_scan - std::chrono::steady_clock::now());
      WaitAndSyncClosed(std::max(left, std::chrono::milliseconds(0)));
      if (stop_.stopped() || std::chrono::steady_clock::now() < next_scan) continue;
      Scan(/*final=*/false);
      next_scan = std::chrono::steady_clock::now() + interval;
    }
  });
}

void ArtifactWatcher::Stop() {
  stop_.Notify();
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  WaitForSyncs();
}

void ArtifactWatcher::WaitForSyncs() {
  std::vector<std::thread> workers;
  {
    MutexLock lock(mu_);
    sync_cv_.wait(lock.unique(),
                  [&]() REQUIRES(mu_) { return sync_queue_.empty() && syncs_busy_ == 0; });
    syncs_stop_ = true;
    sync_cv_.notify_all();
    workers.swap(sync_workers_);
  }
  for (std::thread& t : workers) t.join();
}

void ArtifactWatcher::StartSync(const Dir& dir, const std::string& rel, FileState* state) {
  if (!async_ || syncs_stop_) return SyncNow(dir, rel, state, /*final=*/false);
  state->syncing = true;
  sync_queue_.push_back({&dir, rel, next_turn_++});
  if (syncs_idle_ == 0 && sync_workers_.size() < static_cast<size_t>(kParallelSyncs))
    sync_workers_.emplace_back([this] { SyncWorker(); });
  sync_cv_.notify_one();
}

void ArtifactWatcher::SyncWorker() {
  MutexLock lock(mu_);
  for (;;) {
    ++syncs_idle_;
    sync_cv_.wait(lock.unique(),
                  [&]() REQUIRES(mu_) { return syncs_stop_ || !sync_queue_.empty(); });
    --syncs_idle_;
    if (sync_queue_.empty()) return;
    SyncJob job = std::move(sync_queue_.front());
    sync_queue_.pop_front();
    ++syncs_busy_;
    lock.Unlock();
    RunSyncJob(job);
    lock.Lock();
    --syncs_busy_;
    sync_cv_.notify_all();
  }
}

// Syncs a copy of the file's state without the lock (the upload takes
// long), then writes the outcome back. Nothing else writes the state of a
// file while it is `syncing`.
void ArtifactWatcher::RunSyncJob(const SyncJob& job) {
  std::string key = job.dir->name + "/" + job.rel;
  FileState copy;
  {
    MutexLock lock(mu_);
    copy = files_[key];
  }
  EmitInTurn(job.turn, Sync(*job.dir, job.rel, &copy, /*final=*/false));
  MutexLock lock(mu_);
  FileState& state = files_[key];
  state.seen = copy.seen;
  state.synced = copy.synced;
  state.failed = copy.failed;
  state.syncing = false;
  if (!state.again) return;
  state.again = false;
  auto info = StatRegularFile(job.dir->folder + "/" + job.rel);
  if (!info || state.synced == info->first || state.failed == info->first) return;
  state.seen = info->first;
  StartSync(*job.dir, job.rel, &state);
}

// The entry read from an inode while it had `stamp` describes it for as
// long as it keeps that stamp, under any name: Sync checks the stamp again
// after, as it does after an upload of its own.
StatusOr<FileEntry> ArtifactWatcher::UploadOnce(const std::string& path, const FileStamp& stamp,
                                                const ChunkUploader::ChunksStored& stored) {
  MutexLock lock(uploads_mu_);
  uploads_cv_.wait(lock.unique(), [&]() REQUIRES(uploads_mu_) { return !uploading_.count(stamp); });
  if (auto done = uploaded_.find(stamp); done != uploaded_.end()) return done->second;
  uploading_.insert(stamp);
  lock.Unlock();
  StatusOr<FileEntry> entry = upload_(path, stored);
  lock.Lock();
  uploading_.erase(stamp);
  uploads_cv_.notify_all();
  if (!entry.ok()) return entry;
  if (uploaded_.emplace(stamp, *entry).second) uploaded_order_.push_back(stamp);
  if (uploaded_order_.size() > kRememberedUploads) {
    uploaded_.erase(uploaded_order_.front());
    uploaded_order_.pop_front();
  }
  return entry;
}

void ArtifactWatcher::EmitRecord(Json record) {
  MutexLock lock(emit_mu_);
  emit_(std::move(record));
}

// Turns are taken from the queue in order, so the job whose turn it is has
// a worker (or is the caller) and never waits for a later one: no cycle.
void ArtifactWatcher::EmitInTurn(uint64_t turn, std::optional<Json> record) {
  MutexLock lock(emit_mu_);
  emit_cv_.wait(lock.unique(), [&]() REQUIRES(emit_mu_) { return emit_turn_ == turn; });
  if (record) emit_(std::move(*record));
  ++emit_turn_;
  emit_cv_.notify_all();
}

// Without inotify (or an eventfd to wake from it) the watcher only scans.
void ArtifactWatcher::OpenInotify() {
  inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  wake_fd_ = inotify_fd_ < 0 ? -1 : ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (inotify_fd_ >= 0 && wake_fd_ < 0) {
    ::close(inotify_fd_);
    inotify_fd_ = -1;
  }
  if (inotify_fd_ < 0) return AgentLog("inotify unavailable: artifacts are found by scanning only");
  for (size_t i = 0; i < dirs_.size(); ++i) Watch(i, "");
}

// Watches a folder and (recursively) the folders already in it; folders
// made later are added as inotify reports them.
void ArtifactWatcher::Watch(size_t dir_index, const std::string& rel_folder) {
  std::string folder = dirs_[dir_index].folder + (rel_folder.empty() ? "" : "/" + rel_folder);
  int wd = ::inotify_add_watch(inotify_fd_, folder.c_str(),
                               IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ONLYDIR);
  if (wd < 0) return;  // gone, or out of watches: scans still find its files
  watches_[wd] = {dir_index, rel_folder};
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::error_code type_ec;
    if (it->symlink_status(type_ec).type() != fs::file_type::directory) continue;
    std::string name = it->path().filename().string();
    Watch(dir_index, rel_folder.empty() ? name : rel_folder + "/" + name);
  }
}

void ArtifactWatcher::WaitAndSyncClosed(std::chrono::milliseconds timeout) {
  pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  if (::poll(fds, 2, static_cast<int>(timeout.count())) <= 0 || !(fds[0].revents & POLLIN)) return;
  alignas(inotify_event) char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(inotify_fd_, buf, sizeof buf);
    if (n <= 0) return;
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      HandleEvent(ev->wd, ev->mask, ev->len ? std::string(ev->name) : "");
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
  }
}

void ArtifactWatcher::HandleEvent(int wd, uint32_t mask, const std::string& name) {
  auto w = watches_.find(wd);
  if (w == watches_.end()) return;
  if (mask & IN_IGNORED) return (void)watches_.erase(w);  // the folder is gone
  if (name.empty()) return;
  auto [dir_index, folder] = w->second;
  std::string rel = folder.empty() ? name : folder + "/" + name;
  if (mask & IN_ISDIR) {
    if (mask & (IN_CREATE | IN_MOVED_TO)) Watch(dir_index, rel);
    return;
  }
  if ((mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) && IsSafeRelativePath(rel)) {
    SyncClosed(dirs_[dir_index], rel);
  }
}

// A writer closed the file, or it was renamed into place: it is taken as
// finished without waiting for a second scan. A file closed again and
// again (a log opened per line) is synced this way at most once per scan
// interval; the scans take care of it in between.
void ArtifactWatcher::SyncClosed(const Dir& dir, const std::string& rel) {
  MutexLock lock(mu_);
  FileState* state = &files_[dir.name + "/" + rel];
  if (state->syncing) return (void)(state->again = true);
  auto info = StatRegularFile(dir.folder + "/" + rel);
  if (!info || state->synced == info->first || state->failed == info->first) return;
  auto now = std::chrono::steady_clock::now();
  if (now - state->closed_sync < interval_) return;
  state->closed_sync = now;
  state->seen = info->first;
  StartSync(dir, rel, state);
}

void ArtifactWatcher::MarkSynced(const std::string& dir_name, const std::string& rel) {
  MutexLock lock(mu_);  // no worker runs yet (see the header): taken for the analysis
  for (const Dir& d : dirs_) {
    if (d.name != dir_name) continue;
    auto info = StatRegularFile(d.folder + "/" + rel);
    if (info) files_[dir_name + "/" + rel].synced = info->first;
  }
}

void ArtifactWatcher::MarkAllSynced() {
  for (const Dir& d : dirs_)
    ForEachFile(d, [&](const std::string& rel) { MarkSynced(d.name, rel); });
}

void ArtifactWatcher::Scan(bool final) {
  // Oldest first, so that records come in the order the files were written
  // (see the header). Vanished files keep their state: should one come back
  // unchanged, it needs no second sync.
  struct Found {
    const Dir* dir;
    std::string rel;
    int64_t mtime_ns;
  };
  std::vector<Found> found;
  for (const Dir& d : dirs_) {
    ForEachFile(d, [&](const std::string& rel) {
      auto info = StatRegularFile(d.folder + "/" + rel);
      if (info) found.push_back({&d, rel, info->first.mtime_ns});
    });
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const Found& a, const Found& b) { return a.mtime_ns < b.mtime_ns; });
  for (const Found& f : found) {
    MutexLock lock(mu_);
    Consider(*f.dir, f.rel, &files_[f.dir->name + "/" + f.rel], final);
  }
}

void ArtifactWatcher::ForEachFile(const Dir& dir,
                                  const std::function<void(const std::string& rel)>& fn) const {
  std::error_code ec;
  fs::recursive_directory_iterator it(dir.folder, fs::directory_options::skip_permission_denied,
                                      ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    fs::file_type type = it->symlink_status(type_ec).type();
    if (type == fs::file_type::directory && !dir.skip_folders.empty()) {
      std::string name = it->path().filename().string();
      for (const std::string& skip : dir.skip_folders)
        if (name == skip) it.disable_recursion_pending();
      continue;
    }
    if (type != fs::file_type::regular) continue;
    std::string rel = it->path().lexically_relative(dir.folder).generic_string();
    if (IsSafeRelativePath(rel)) fn(rel);
  }
}

void ArtifactWatcher::Consider(const Dir& dir, const std::string& rel, FileState* state,
                               bool final) {
  if (state->syncing) return;  // a worker has it; it looks again when done
  auto info = StatRegularFile(dir.folder + "/" + rel);
  if (!info) return;
  const FileStamp& now = info->first;
  bool stable = state->seen == now;
  state->seen = now;
  if (state->synced == now) return;
  if (dir.max_file_bytes && now.size > dir.max_file_bytes) {
    if (final && state->failed != now)
      SyncFailed(
          dir, rel, state,
          ResourceExhausted("it has " + std::to_string(now.size >> 20) + " MiB, over the " +
                            std::to_string(dir.max_file_bytes >> 20) +
                            " MiB a file of this "
                            "folder may have; write it under $YARD_OUTPUT_DIR to have it synced"),
          true);
    return;
  }
  if (!final && (!stable || state->failed == now)) return;
  if (final) return SyncNow(dir, rel, state, final);
  StartSync(dir, rel, state);
}

void ArtifactWatcher::SyncNow(const Dir& dir, const std::string& rel, FileState* state,
                              bool final) {
  if (std::optional<Json> record = Sync(dir, rel, state, final)) EmitRecord(std::move(*record));
}

namespace {

// Gathers the runs of chunks an upload reports stored (from its workers, in
// any order), joins neighbours, and hands out each run that reaches
// `min_bytes` as an artifact_part record. What is left when the upload
// ends is not told: the artifact record names it.
class PartGatherer {
 public:
  PartGatherer(std::string dir, std::string path, uint64_t min_bytes,
               std::function<void(Json)> emit)
      : dir_(std::move(dir)), path_(std::move(path)), min_(min_bytes), emit_(std::move(emit)) {}

  void Add(uint64_t offset, const std::vector<ChunkRef>& chunks) {
    std::optional<ArtifactPart> ready;
    {
      MutexLock lock(mu_);
      auto it = Join(offset, chunks);
      if (it->second.bytes >= min_) {
        ready = ArtifactPart{dir_, path_, it->first, std::move(it->second.chunks)};
        runs_.erase(it);
      }
    }
    if (ready) emit_(ArtifactPartToJson(*ready));
  }

 private:
  struct Run {
    std::vector<ChunkRef> chunks;
    uint64_t bytes = 0;
  };

  // Adds the run, joined with the run that ends where it starts and the
  // one that starts where it ends; returns where the joined run is.
  std::map<uint64_t, Run>::iterator Join(uint64_t offset, const std::vector<ChunkRef>& chunks)
      REQUIRES(mu_) {
    Run run{chunks, 0};
    for (const ChunkRef& c : chunks) run.bytes += c.size;
    if (auto next = runs_.find(offset + run.bytes); next != runs_.end()) {
      run.chunks.insert(run.chunks.end(), next->second.chunks.begin(), next->second.chunks.end());
      run.bytes += next->second.bytes;
      runs_.erase(next);
    }
    auto it = runs_.lower_bound(offset);
    if (it == runs_.begin() || std::prev(it)->first + std::prev(it)->second.bytes != offset)
      return runs_.emplace(offset, std::move(run)).first;
    --it;
    it->second.chunks.insert(it->second.chunks.end(), run.chunks.begin(), run.chunks.end());
    it->second.bytes += run.bytes;
    return it;
  }

  const std::string dir_, path_;
  const uint64_t min_;
  const std::function<void(Json)> emit_;
  Mutex mu_;
  std::map<uint64_t, Run> runs_ GUARDED_BY(mu_);  // by offset, not told yet
};

}  // namespace

std::optional<Json> ArtifactWatcher::Sync(const Dir& dir, const std::string& rel, FileState* state,
                                          bool final) {
  std::string path = dir.folder + "/" + rel;
  for (int tries = 0; tries < (final ? kFinalTries : 1); ++tries) {
    FileStamp before = *state->seen;
    std::optional<PartGatherer> parts;
    ChunkUploader::ChunksStored stored;
    if (before.size >= kPartBytes) {
      parts.emplace(dir.name, rel, kPartBytes, [this](Json part) { EmitRecord(std::move(part)); });
      stored = [&parts](uint64_t offset, const std::vector<ChunkRef>& chunks) {
        parts->Add(offset, chunks);
      };
    }
    StatusOr<FileEntry> entry = UploadOnce(path, before, stored);
    if (!entry.ok()) {
      SyncFailed(dir, rel, state, entry.status(), final);
      return std::nullopt;
    }
    auto after = StatRegularFile(path);
    if (!after) return std::nullopt;  // deleted meanwhile
    state->seen = after->first;
    if (after->first != before) continue;  // written meanwhile: not this version
    entry->path = rel;
    entry->mode = after->second;
    state->synced = before;
    return Json{{"kind", "artifact"}, {"dir", dir.name}, {"entry", FileEntryToJson(*entry)}};
  }
  if (final) SyncFailed(dir, rel, state, Unavailable("it kept changing while being read"), true);
  return std::nullopt;
}

void ArtifactWatcher::SyncFailed(const Dir& dir, const std::string& rel, FileState* state,
                                 const Status& why, bool final) {
  if (why.code() == Code::kCancelled) return;  // the agent is stopping
  state->failed = state->seen;
  std::string what = "could not sync " + dir.name + "/" + rel + ": " + why.message();
  AgentLog(what);
  if (final) EmitRecord({{"kind", "output"}, {"data", "yard: " + what + "\n"}});
}

}  // namespace yard
