// SandboxTemplate: a job sandbox (sandbox.h) built once and entered by
// every job that would get the same one, instead of a bwrap per job.
//
// Why: bwrap costs ≈ 3.5 ms of CPU per job (its own exec, new namespaces,
// ≈ 25 bind mounts each followed by a re-read of /proc/self/mountinfo,
// pivot_root) and tens of milliseconds of wall time on a loaded machine,
// against a budget of 4 ms of CPU per job for 500 jobs/s on 2 cores.
// Entering a prepared mount namespace costs ≈ 0.3 ms (bench/README.md).
//
// How: Make() runs `bwrap PREFIX -- yard-shim --hold` once, opens the
// holder's mount namespace (/proc/PID/ns/mnt) and lets the holder go: the
// descriptor keeps the namespace. Each job's shim then enters a copy of it
// (shim/sandbox_entry.h): a PID, IPC and UTS namespace of the job's own, a
// fresh /proc, fresh empty tmpfs over every tmpfs of the template (so a job
// never sees what an earlier one wrote to /tmp, /var/tmp, $HOME, /dev/shm or
// a hidden folder's cover), / and /dev read-only, no capabilities. What the
// job sees is otherwise exactly what bwrap with PREFIX shows it; the job
// folders and the warm runners' folder are shared, as they are with bwrap.
//
// Used when the agent runs as root (joining and copying a mount namespace
// needs CAP_SYS_ADMIN); otherwise, for a prefix that makes folders
// (`--dir`, the ".." steps of a search path, which a fresh tmpfs would
// lose), and for the host view (SandboxSpec::show_host: the host's mounts
// below a tmpfs cover, /run/netns for one, cannot be carried over a fresh
// one), each job gets its own bwrap as before.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace yard {

class SandboxTemplate {
 public:
  // Builds the sandbox of `prefix` (SandboxPrefix's output, ending in "--")
  // with `shim_executable` (JobSpawnOptions::shim_executable) as the holder.
  static StatusOr<std::unique_ptr<SandboxTemplate>> Make(const std::vector<std::string>& prefix,
                                                         const std::string& shim_executable);
  ~SandboxTemplate();
  SandboxTemplate(const SandboxTemplate&) = delete;
  SandboxTemplate& operator=(const SandboxTemplate&) = delete;

  // For JobSpawnOptions::sandbox_ns_fd and sandbox_fresh.
  int mount_ns_fd() const { return ns_fd_; }
  const std::vector<std::string>& fresh() const { return fresh_; }

  // Whether a folder or file the template binds is no longer the one it
  // bound (another inode, or gone).
  bool Stale() const;

  // Whether jobs of this prefix can enter a template here (see above).
  static bool Usable(const std::vector<std::string>& prefix);
  // The mount points a job gets anew: every --tmpfs of `prefix`, and
  // /dev/shm when it has --dev /dev.
  static std::vector<std::string> FreshMounts(const std::vector<std::string>& prefix);

 private:
  struct Source {
    std::string path;
    dev_t dev;
    ino_t ino;
  };
  SandboxTemplate(int ns_fd, std::vector<std::string> fresh, std::vector<Source> sources)
      : ns_fd_(ns_fd), fresh_(std::move(fresh)), sources_(std::move(sources)) {}
  // What the prefix binds, as it was when the template was made.
  static std::vector<Source> Sources(const std::vector<std::string>& prefix);
  int ns_fd_;
  std::vector<std::string> fresh_;
  std::vector<Source> sources_;
};

// The agent's templates: the one of the last prefix asked for (an
// instance's jobs nearly always share one), made again when a folder it
// binds was replaced since (a venv made anew: the template would still show
// the old, deleted one). Thread-safe.
class SandboxTemplates {
 public:
  explicit SandboxTemplates(std::string shim_executable) : shim_(std::move(shim_executable)) {}
  // The template of `prefix`, made now if the last one was another's. The
  // caller holds the result while it spawns the job.
  StatusOr<std::shared_ptr<const SandboxTemplate>> Get(const std::vector<std::string>& prefix);

 private:
  const std::string shim_;
  Mutex mu_;  // held while a template is made: jobs of one prefix wait for the one
  std::vector<std::string> key_ GUARDED_BY(mu_);
  std::shared_ptr<const SandboxTemplate> current_ GUARDED_BY(mu_);
};

}  // namespace yard
