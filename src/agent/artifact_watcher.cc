#include "agent/artifact_watcher.h"

#include <sys/stat.h>

#include <filesystem>

#include "agent/agent_log.h"

namespace yard {

namespace fs = std::filesystem;

namespace {
// After the job has ended nothing should write its files; a file changing
// that often during its final sync is given up with a message.
constexpr int kFinalTries = 3;
}  // namespace

std::optional<std::pair<FileStamp, uint32_t>> StatRegularFile(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  FileStamp stamp{static_cast<uint64_t>(st.st_size),
                  st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
  return std::make_pair(stamp, static_cast<uint32_t>(st.st_mode & 0777));
}

ArtifactWatcher::ArtifactWatcher(std::vector<Dir> dirs, Upload upload, Emit emit)
    : dirs_(std::move(dirs)), upload_(std::move(upload)), emit_(std::move(emit)) {}

ArtifactWatcher::~ArtifactWatcher() { Stop(); }

void ArtifactWatcher::Start(std::chrono::milliseconds interval) {
  thread_ = std::thread([this, interval] {
    while (!stop_.WaitFor(interval)) Scan(/*final=*/false);
  });
}

void ArtifactWatcher::Stop() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void ArtifactWatcher::MarkSynced(const std::string& dir_name, const std::string& rel) {
  for (const Dir& d : dirs_) {
    if (d.name != dir_name) continue;
    auto info = StatRegularFile(d.folder + "/" + rel);
    if (info) files_[dir_name + "/" + rel].synced = info->first;
  }
}

void ArtifactWatcher::Scan(bool final) {
  for (const Dir& d : dirs_) ScanDir(d, final, &files_);
}

void ArtifactWatcher::ScanDir(const Dir& dir, bool final, std::map<std::string, FileState>* files) {
  std::error_code ec;
  fs::recursive_directory_iterator it(dir.folder, fs::directory_options::skip_permission_denied,
                                      ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (it->symlink_status(type_ec).type() != fs::file_type::regular) continue;
    std::string rel = it->path().lexically_relative(dir.folder).generic_string();
    if (!IsSafeRelativePath(rel)) continue;
    // Vanished files keep their state: should one come back unchanged, it
    // needs no second sync.
    Consider(dir, rel, &(*files)[dir.name + "/" + rel], final);
  }
}

void ArtifactWatcher::Consider(const Dir& dir, const std::string& rel, FileState* state,
                               bool final) {
  auto info = StatRegularFile(dir.folder + "/" + rel);
  if (!info) return;
  const FileStamp& now = info->first;
  bool stable = state->seen == now;
  state->seen = now;
  if (state->synced == now) return;
  if (!final && (!stable || state->failed == now)) return;
  Sync(dir, rel, state, final);
}

void ArtifactWatcher::Sync(const Dir& dir, const std::string& rel, FileState* state, bool final) {
  std::string path = dir.folder + "/" + rel;
  for (int tries = 0; tries < (final ? kFinalTries : 1); ++tries) {
    FileStamp before = *state->seen;
    StatusOr<FileEntry> entry = upload_(path);
    if (!entry.ok()) return SyncFailed(dir, rel, state, entry.status(), final);
    auto after = StatRegularFile(path);
    if (!after) return;  // deleted meanwhile
    state->seen = after->first;
    if (after->first != before) continue;  // written meanwhile: not this version
    entry->path = rel;
    entry->mode = after->second;
    emit_({{"kind", "artifact"}, {"dir", dir.name}, {"entry", FileEntryToJson(*entry)}});
    state->synced = before;
    return;
  }
  if (final) SyncFailed(dir, rel, state, Unavailable("it kept changing while being read"), true);
}

void ArtifactWatcher::SyncFailed(const Dir& dir, const std::string& rel, FileState* state,
                                 const Status& why, bool final) {
  if (why.code() == Code::kCancelled) return;  // the agent is stopping
  state->failed = state->seen;
  std::string what = "could not sync " + dir.name + "/" + rel + ": " + why.message();
  AgentLog(what);
  if (final) emit_({{"kind", "output"}, {"data", "yard: " + what + "\n"}});
}

}  // namespace yard
