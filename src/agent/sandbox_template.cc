#include "agent/sandbox_template.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "agent/agent_log.h"
#include "agent/job_process.h"
#include "shim/proc_tree.h"

namespace yard {

namespace {

// Generous: bwrap waits for a CPU like anything else on a loaded machine.
constexpr auto kHolderReadyTimeout = std::chrono::seconds(60);

// Reads the holder's output until it says "ready".
Status AwaitReady(JobProcess* holder) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + kHolderReadyTimeout;
  while (out.find("ready\n") == std::string::npos) {
    if (std::chrono::steady_clock::now() >= deadline)
      return DeadlineExceeded("the sandbox template was not ready within 60 s; its output: " + out);
    struct pollfd p = {holder->output_fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    if (!holder->ReadAvailable(&out) && out.find("ready\n") == std::string::npos)
      return FailedPrecondition("the sandbox template's bwrap ended (" + holder->Wait().Describe() +
                                "); its output: " + out);
  }
  return Status::Ok();
}

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// A descriptor of the mount namespace of the deepest descendant of `root`
// whose namespace is not ours: the holder's (bwrap's init shares it).
StatusOr<int> OpenHolderMountNs(pid_t root) {
  struct stat own;
  if (stat("/proc/self/ns/mnt", &own) != 0)
    return ErrnoStatus("reading the agent's mount namespace");
  std::vector<ProcEntry> tree = DescendantEntries(root);  // breadth first
  for (auto it = tree.rbegin(); it != tree.rend(); ++it) {
    std::string path = "/proc/" + std::to_string(it->pid) + "/ns/mnt";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    if (fstat(fd, &st) == 0 && !SameFile(st, own)) return fd;
    ::close(fd);
  }
  return FailedPrecondition("the sandbox template's holder has no mount namespace of its own");
}

}  // namespace

SandboxTemplate::~SandboxTemplate() { ::close(ns_fd_); }

bool SandboxTemplate::Usable(const std::vector<std::string>& prefix) {
  const std::vector<std::string> whole_root = {"--ro-bind", "/", "/"};
  return geteuid() == 0 && !prefix.empty() &&
         std::find(prefix.begin(), prefix.end(), "--dir") == prefix.end() &&
         std::search(prefix.begin(), prefix.end(), whole_root.begin(), whole_root.end()) ==
             prefix.end();
}

std::vector<std::string> SandboxTemplate::FreshMounts(const std::vector<std::string>& prefix) {
  std::vector<std::string> fresh;
  for (size_t i = 0; i + 1 < prefix.size(); ++i) {
    if (prefix[i] == "--tmpfs") fresh.push_back(prefix[i + 1]);
    if (prefix[i] == "--dev" && prefix[i + 1] == "/dev") fresh.push_back("/dev/shm");
  }
  return fresh;
}

std::vector<SandboxTemplate::Source> SandboxTemplate::Sources(
    const std::vector<std::string>& prefix) {
  std::vector<Source> sources;
  for (size_t i = 0; i + 2 < prefix.size(); ++i) {
    if (prefix[i] != "--ro-bind" && prefix[i] != "--bind" && prefix[i] != "--dev-bind") continue;
    struct stat st;
    if (stat(prefix[i + 1].c_str(), &st) == 0)
      sources.push_back({prefix[i + 1], st.st_dev, st.st_ino});
    i += 2;
  }
  return sources;
}

bool SandboxTemplate::Stale() const {
  for (const Source& s : sources_) {
    struct stat st;
    if (stat(s.path.c_str(), &st) != 0 || st.st_dev != s.dev || st.st_ino != s.ino) return true;
  }
  return false;
}

StatusOr<std::unique_ptr<SandboxTemplate>> SandboxTemplate::Make(
    const std::vector<std::string>& prefix, const std::string& shim_executable) {
  // Before bwrap binds them: a folder replaced meanwhile reads as stale.
  std::vector<Source> sources = Sources(prefix);
  int in[2];
  if (pipe2(in, O_CLOEXEC) != 0) return ErrnoStatus("creating the sandbox template's pipe");
  JobSpawnOptions holder;
  holder.argv = ShimCommand(shim_executable);
  holder.argv.push_back("--hold");
  holder.env = {{"PATH", "/usr/bin:/bin"}};
  holder.shim_executable = shim_executable;
  holder.stdin_fd = in[0];
  holder.sandbox = prefix;
  holder.kill_grace = std::chrono::milliseconds(0);
  StatusOr<std::unique_ptr<JobProcess>> process = JobProcess::Start(holder);
  ::close(in[0]);
  if (!process.ok()) {
    ::close(in[1]);
    return process.status().WithContext("starting the sandbox template");
  }
  Status ready = AwaitReady(process->get());
  StatusOr<int> fd = ready.ok() ? OpenHolderMountNs((*process)->pid()) : StatusOr<int>(ready);
  ::close(in[1]);  // the holder ends; the descriptor keeps the namespace
  if (ready.ok()) (*process)->Wait();
  process->reset();
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<SandboxTemplate>(
      new SandboxTemplate(*fd, FreshMounts(prefix), std::move(sources)));
}

StatusOr<std::shared_ptr<const SandboxTemplate>> SandboxTemplates::Get(
    const std::vector<std::string>& prefix) {
  MutexLock lock(mu_);
  if (current_ && key_ == prefix && !current_->Stale()) return current_;
  current_.reset();
  key_.clear();
  auto start = std::chrono::steady_clock::now();
  YARD_ASSIGN_OR_RETURN(std::unique_ptr<SandboxTemplate> made,
                        SandboxTemplate::Make(prefix, shim_));
  AgentLog("made the sandbox that confined jobs enter (" +
           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count()) +
           " ms)");
  current_ = std::move(made);
  key_ = prefix;
  return current_;
}

}  // namespace yard
