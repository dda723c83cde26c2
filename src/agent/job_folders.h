// Removing the folders of finished job attempts from an instance.
//
// An attempt's folder (<work_dir>/jobs/<job>-<attempt>, see job_setup.h)
// holds its bundle copy and every checkpoint, log and output it wrote. All
// of that is on the server once the attempt's records are delivered: the
// artifact watcher stores a file before its artifact record is spooled, and
// the exit record comes after the final scan. The spool deletes an
// attempt's file only when its exit (or abandonment) is acknowledged, so
// "no spool file" is the proof that the folder is no longer needed.
// Without this, a cooling instance that runs job after job keeps a copy of
// every checkpoint it ever wrote until its disk is full.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <utility>

namespace yard {

// The names, under the jobs folder, of emptied attempt folders kept for
// the next attempts (JobPaths::Create renames one into place): making five
// folders and removing five costs ≈ 0.5 ms of CPU per job on ext4, an
// eighth of the agent's share of a no-op job (bench/README.md). Two: the
// agent empties a delivered folder while the attempt it just started may
// not have taken the spare yet. Not attempts' names (no "-N"), so never
// taken for one.
inline constexpr const char* kSpareJobFolders[] = {".spare", ".spare.1"};

// Removes every attempt folder under `jobs_dir` except `keep` (a folder
// name, e.g. the attempt about to start) whose spool file no longer exists
// (`spool_path(job, attempt)`); folders whose name is not <job>-<attempt>
// are left alone. Returns how many were removed. Errors are ignored: a
// folder that cannot be removed now is tried again next time.
//
// Some of them, while a spare name is free, become spares instead:
// everything in it is removed but its four folders (work, checkpoints,
// logs, outputs), which are emptied. Only a plain one: the folder and its
// four are real folders (no links), with the permission bits of
// `jobs_dir`, and nothing else is in it but files and folders to remove;
// any other is removed whole.
using SpoolPathFn = std::function<std::string(const std::string& job, long long attempt)>;
int RemoveDeliveredJobFolders(const std::string& jobs_dir, const std::string& keep,
                              const SpoolPathFn& spool_path);

// RemoveDeliveredJobFolders for an agent that starts attempt after attempt:
// the jobs folder is listed once (the folders an earlier run of the agent
// left), then only the attempts started since are looked at, each until
// its folder is gone (a spool stat per attempt still undelivered, instead
// of a listing and a stat per folder at every start). Not thread-safe: one
// caller (the agent's starter thread).
class DeliveredFolderSweeper {
 public:
  DeliveredFolderSweeper(std::string jobs_dir, SpoolPathFn spool_path)
      : jobs_dir_(std::move(jobs_dir)), spool_path_(std::move(spool_path)) {}
  // `started`: the attempt folder's name of the attempt just started (kept
  // now, looked at from the next call on). Returns how many were removed
  // (or emptied into spares), as RemoveDeliveredJobFolders.
  int Sweep(const std::string& started);
  // The attempts still waiting for their records to be delivered (tests).
  size_t waiting() const { return waiting_.size(); }

 private:
  std::string jobs_dir_;
  SpoolPathFn spool_path_;
  bool listed_ = false;
  std::set<std::string> waiting_;  // attempt folder names
};

}  // namespace yard
