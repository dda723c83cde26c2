// SshProvider: instances are `yard agent` processes on hosts you own,
// reached with the system's `ssh` client. docs/providers.md has the whole
// story; in short:
//
//   hosts      each machine type of provider "ssh" lists its hosts in
//              options.hosts (address, port, user, key, slots); a host runs
//              at most `slots` agents (default 1). The type's cpus, memory
//              and gpus describe one host.
//   Launch     picks a free host, then over ssh (SshRemote: BatchMode, no
//              prompts):
//                1. probe: reachable? which `yard` build does it have
//                   (sha256 of <remote_dir>/bin/yard)?
//                2. copy the static `yard-portable` built beside the server's
//                   `yard` (PortableYard) as bin/yard, when that is not this
//                   exact build (verified by sha256 on arrival, renamed into
//                   place): it runs on any x86-64 Linux;
//                3. start `yard agent` detached (setsid, output to
//                   <remote_dir>/instances/<id>/agent.log), its token on
//                   stdin, never in argv.
//              Any failure there (an unreachable host, a refused login) is
//              an error that is not ResourceExhausted: the controller records
//              the attempt with its reason and falls back to the next type.
//   confirm    a worker thread then watches the agent's log until it says
//              it registered; an agent that dies first is reported through
//              TakeInterruptions with the tail of its log.
//   Terminate  SIGTERM to the agent's pid (checked to be ours), on the
//              worker thread: the scheduler never waits on a slow host.
//
// Launch holds the caller (the scheduler) for the probe, copy and start:
// about 0.1 s on a LAN, plus the copy when the build changed, and up to
// connect_timeout_s for a host that drops packets.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/command_runner.h"
#include "common/thread_annotations.h"
#include "providers/provider.h"
#include "providers/ssh_remote.h"

namespace yard {

// The hosts of every ssh machine type of `catalog` (options.hosts: objects
// {address, port, user, key, slots} or strings "user@address:port").
StatusOr<std::map<std::string, std::vector<SshHost>>> SshHostsByType(const Catalog& catalog,
                                                                     const SshSettings& settings);

class SshProvider : public Provider {
 public:
  SshProvider(SshSettings settings, std::map<std::string, std::vector<SshHost>> hosts,
              std::unique_ptr<CommandRunner> runner);
  ~SshProvider() override;  // finishes queued terminations first

  std::string name() const override { return "ssh"; }
  int Available(const MachineType& type) override;
  Status Launch(const MachineType& type, const AgentLaunchInfo& agent,
                InstanceRecord* inst) override;
  Status Terminate(const InstanceRecord& inst) override;
  bool IsAlive(const InstanceRecord& inst) override;
  bool Adopt(const InstanceRecord& inst) override;
  std::vector<Interruption> TakeInterruptions() override;

  // Waits until the worker has nothing queued (tests).
  void Drain();
  // What the server holds of each attempt: an ended instance's spool files
  // whose every record it holds are removed from the host. Without it they
  // stay. Set once, before the first Terminate.
  void SetSpoolDelivered(SpoolDelivered delivered) { delivered_ = std::move(delivered); }

 private:
  struct Agent {
    SshHost host;
    std::string pid;
    std::string dir;  // remote
    bool confirmed = false;
    std::chrono::steady_clock::time_point started;
  };

  StatusOr<std::string> ServerUrl(const AgentLaunchInfo& agent, const SshHost& host) const;
  std::optional<SshHost> Reserve(const std::string& type, const std::string& instance_id);
  void Release(const std::string& instance_id);
  // One look at a starting agent; true when there is nothing more to watch.
  bool Confirm(const std::string& instance_id);
  void Post(std::function<void()> task);
  // Runs the terminate script on the worker, then removes the spool files
  // it reported whose records the server holds.
  void EndOnHost(const SshHost& host, const std::string& instance_id, const std::string& pid,
                 const std::string& dir);
  void WorkerMain();

  const SshSettings settings_;
  const std::map<std::string, std::vector<SshHost>> hosts_;  // by machine type
  const std::unique_ptr<CommandRunner> runner_;
  SshRemote remote_;  // over runner_
  Mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, int> used_ GUARDED_BY(mu_);      // host name -> agents
  std::map<std::string, Agent> agents_ GUARDED_BY(mu_);  // by instance id
  std::vector<Interruption> interrupted_ GUARDED_BY(mu_);
  std::deque<std::function<void()>> tasks_ GUARDED_BY(mu_);
  bool busy_ GUARDED_BY(mu_) = false;  // a task runs
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread worker_;
  SpoolDelivered delivered_;
};

// The files of a `yard agent --spool-report` (one JSON object a line) whose
// every record `delivered` says the server holds.
std::vector<std::string> DeliveredSpoolFiles(const std::string& report,
                                             const SpoolDelivered& delivered);

}  // namespace yard
