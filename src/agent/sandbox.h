// Sandbox: confines the jobs of local instances (providers local and sim),
// whose agents share the machine with the server, its home and the other
// instances, and of SSH hosts, EC2 instances and Slurm nodes that can
// (their agents' --sandbox-if-possible), so that a job is a tenant, not an
// insider.
//
// A confined job runs under bubblewrap (`bwrap`, Debian's `bubblewrap`),
// between its shim and its command:
//
//   yard-shim --sandboxed ... -- bwrap ARGS -- yard-shim --exec -- COMMAND...
//
// In mount, PID, IPC and UTS namespaces of its own, in a session of its own,
// without any capability (also when the agent runs as root) and with
// no_new_privs, the job sees:
//   - the system read-only: /usr (and /bin, /lib... as they are: links into
//     /usr or folders), /etc minus the host's secrets (shadow files, ssh host
//     keys, the munge key), /opt, /sys;
//   - its own /proc, which shows only the sandbox's processes (never the
//     agent's environment or memory), and a minimal /dev plus the GPUs'
//     /dev/nvidia* nodes when there are any;
//   - an empty private /tmp, /var/tmp and $HOME (tmpfs);
//   - read-only: `readable` (the folder of `yard`, where yard-train and the
//     shim sit; the agent's Python environments) and the folders on its PATH and PYTHONPATH and the
//     Python installations they and its program lead to (PythonFolders);
//   - read-write: `writable` (the instance's job folders; all of the
//     instance's jobs are its one user's) and `also_writable` (the warm
//     runners' folder: their cached code and ready files);
// and never `hidden` (the agent's own folder, with its credential, spool,
// log and chunk cache; YARD_HOME, with the server's database, blobs, tokens
// and the other instances), not even below a visible folder.
// The network is shared: jobs download data, and the server's port answers
// nothing without a credential, which the job does not have.
//
// Cancel keeps its guarantees: the shim outside the sandbox sees every
// process inside by its host pid and ends them (SIGTERM, then SIGKILL after
// the grace); it only leaves bwrap's own two processes to exit by themselves
// when the job's command does (see shim.h, --sandboxed).
//
// When the agent runs as root, jobs enter a sandbox built once from the
// same prefix instead of a bwrap each (sandbox_template.h): the same view,
// made for a fraction of the cost.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

#include "agent/job_setup.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace yard {

struct SandboxSpec {
  std::string writable;  // absolute; visible read-write
  // More read-write folders, absolute, when they exist (the warm runners'
  // folder: a runner writes its ready file there).
  std::vector<std::string> also_writable;
  std::vector<std::string> readable;  // absolute; visible read-only when they exist
  std::vector<std::string> hidden;    // absolute; never visible (spec.readable may lie below)
  // The host's whole file system read-only instead of the system folders
  // alone (hosts whose data jobs read: an SSH host's /data), minus /run
  // (its sockets) and what is hidden or private as above.
  bool show_host = false;
  // The command's argv[0]: when absolute (the SDK runs its own
  // sys.executable), the Python installation it belongs to is readable too.
  std::string program;
};

// The argv prefix, ending in "--", that runs a command confined as above:
// bwrap and its arguments. `env` is the job's environment: its PATH and
// PYTHONPATH (with spec.program's folder) decide which other folders are
// readable (PythonFolders; none below a hidden folder; one named through a
// link is shown where it is named too), its HOME which path is a private
// empty folder. FailedPrecondition, saying what to install, when bwrap is missing.
StatusOr<std::vector<std::string>> SandboxPrefix(const SandboxSpec& spec, const EnvMap& env);

// The folders (absolute, lexically normal as named, links kept; existing) of
// the Python installations that a PATH value (":"-separated) leads to,
// outside the system folders: each
// folder on it; the parent of a `bin` or `shims` folder when that parent is
// a Python installation (a venv with pyvenv.cfg, or a prefix with
// lib/python3*, or a pyenv root with versions/); and for a venv, the
// installation named by pyvenv.cfg's `home`.
std::vector<std::string> PythonFolders(const std::string& path_var);

// SandboxPrefix's results, remembered per input (spec and the job's PATH,
// PYTHONPATH and HOME) while the file system they came from is unchanged.
//
// Why: SandboxPrefix resolves every path it is given (weakly_canonical: a
// stat and a readlink per component) and looks into each Python
// installation on PATH; ≈ 0.5 ms of CPU per job, an eighth of the agent's
// share of a no-op job (bench/README.md), for the same answer each time.
//
// When a remembered prefix is used: every path it was computed from and
// every absolute path it names, with all their ancestors, are the same
// files as then (lstat: device, inode, type; or still missing), and the
// folders and files whose contents it read (a venv's pyvenv.cfg, lib/ and
// the folder holding them, /dev for the GPUs) have the same mtime. A change
// made in the same second as the look (a timestamp too coarse to tell
// before from after) keeps the prefix from being remembered at all, as git
// does with a racily clean index. So a folder that appears on PATH, a venv
// made anew, a link pointed elsewhere: the next job gets a fresh prefix.
// Thread-safe.
class SandboxPrefixCache {
 public:
  StatusOr<std::vector<std::string>> Get(const SandboxSpec& spec, const EnvMap& env);
  // How many times Get computed a prefix rather than reusing one (tests).
  int computed() const;

 private:
  struct Watched {
    std::string path;
    bool contents = false;  // its mtime matters too (a folder listed, a file read)
  };
  struct Seen {
    bool exists = false;
    dev_t dev = 0;
    ino_t ino = 0;
    mode_t mode = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const Seen& o) const;
  };
  struct Entry {
    std::vector<std::string> key;
    std::vector<std::string> prefix;
    std::vector<std::pair<Watched, Seen>> watched;
  };
  static std::vector<std::string> Key(const SandboxSpec& spec, const EnvMap& env);
  static std::vector<Watched> WatchList(const SandboxSpec& spec, const EnvMap& env,
                                        const std::vector<std::string>& prefix);
  static Seen Look(const Watched& w);
  static bool StillSame(const Entry& e);

  mutable Mutex mu_;
  std::vector<Entry> entries_ GUARDED_BY(mu_);  // newest last, a few at most
  int computed_ GUARDED_BY(mu_) = 0;
};

// Whether this machine can confine jobs: runs `true` in a sandbox whose
// writable folder is `writable` (an existing folder). FailedPrecondition
// saying why not (bwrap missing, user namespaces refused) and what to do.
// For agents on hosts Trainyard does not set up (SSH): they confine jobs
// when they can, and say so when they cannot.
Status CheckSandboxWorks(const std::string& writable);

}  // namespace yard
