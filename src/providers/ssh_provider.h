// SshProvider: instances are `yard agent` processes on hosts you own,
// reached with the system's `ssh` client. docs/providers.md has the whole
// story; in short:
//
//   hosts      each machine type of provider "ssh" lists its hosts in
//              options.hosts (address, port, user, key, slots); a host runs
//              at most `slots` agents (default 1). The type's cpus, memory
//              and gpus describe one host.
//   Launch     picks a free host, then over ssh (BatchMode, no prompts):
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
#include "providers/provider.h"

namespace yard {

// providers.ssh in the catalog file (docs/providers.md). user, key, port
// and known_hosts are defaults for hosts that do not say.
struct SshSettings {
  std::string user;         // "" = ssh's default (the server's user)
  std::string key;          // identity file; "" = ssh's defaults
  int port = 22;
  std::string known_hosts;  // "" = ssh's default file
  std::string strict_host_key_checking = "accept-new";
  double connect_timeout_s = 5;
  std::string remote_dir = ".cache/trainyard";  // relative: to the remote home
  std::string server_url;   // what agents dial; "" = the server's own URL
  std::string yard_binary;  // the local binary to copy; "" = PortableYard()

  static StatusOr<SshSettings> FromJson(const nlohmann::json& j, const std::string& home);
};

struct SshHost {
  std::string address;
  int port = 22;
  std::string user;
  std::string key;
  int slots = 1;
  std::string Name() const;  // "user@address:port"
};

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

 private:
  struct Agent {
    SshHost host;
    std::string pid;
    std::string dir;  // remote
    bool confirmed = false;
    std::chrono::steady_clock::time_point started;
  };

  // The remote shell script that ends instance `instance_id`'s agent (pid)
  // and frees its folder `dir`.
  static std::string TerminateScript(const std::string& instance_id, const std::string& pid,
                                     const std::string& dir);
  StatusOr<CommandResult> Ssh(const SshHost& host, const std::string& script,
                              const std::string& input = "");
  std::string LocalBinary() const;  // the `yard` to copy: yard_binary, else PortableYard()
  StatusOr<std::string> LocalBinaryHash();
  StatusOr<std::string> ServerUrl(const AgentLaunchInfo& agent, const SshHost& host) const;
  std::optional<SshHost> Reserve(const std::string& type, const std::string& instance_id);
  void Release(const std::string& instance_id);
  Status Install(const SshHost& host);  // yard, and yard-shim when built beside it
  Status InstallFile(const SshHost& host, const std::string& local, const std::string& name,
                     const std::string& want_sha256);
  StatusOr<std::string> StartAgent(const SshHost& host, const std::string& url,
                                   const std::string& token, const std::string& id);
  // One look at a starting agent; true when there is nothing more to watch.
  bool Confirm(const std::string& instance_id);
  void Post(std::function<void()> task);
  void WorkerMain();

  const SshSettings settings_;
  const std::map<std::string, std::vector<SshHost>> hosts_;  // by machine type
  const std::unique_ptr<CommandRunner> runner_;
  std::mutex hash_mu_;
  std::string local_hash_;  // GUARDED_BY(hash_mu_)
  std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, int> used_;              // host name -> agents, GUARDED_BY(mu_)
  std::map<std::string, Agent> agents_;          // by instance id, GUARDED_BY(mu_)
  std::vector<Interruption> interrupted_;        // GUARDED_BY(mu_)
  std::deque<std::function<void()>> tasks_;      // GUARDED_BY(mu_)
  bool busy_ = false;                            // a task runs, GUARDED_BY(mu_)
  bool stop_ = false;                            // GUARDED_BY(mu_)
  std::thread worker_;
};

}  // namespace yard
