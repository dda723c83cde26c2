// SshRemote: what Trainyard does on another machine through OpenSSH's
// client (`ssh` in batch mode, one connection per step, each step a POSIX
// `sh` script): run a script, install the portable agent, start an agent,
// end one. Used by the ssh provider (hosts you own) and by SshTunnel (the
// AWS provider's tunnel mode). docs/providers.md, "SSH", tells the steps.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/command_runner.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace yard {

// providers.ssh in the catalog file (docs/providers.md). user, key, port
// and known_hosts are defaults for hosts that do not say.
struct SshSettings {
  std::string user;  // "" = ssh's default (the server's user)
  std::string key;   // identity file; "" = ssh's defaults
  int port = 22;
  std::string known_hosts;  // "" = ssh's default file
  std::string strict_host_key_checking = "accept-new";
  double connect_timeout_s = 5;
  std::string remote_dir = ".cache/trainyard";  // relative: to the remote home
  std::string server_url;                       // what agents dial; "" = the server's own URL
  std::string yard_binary;                      // the local binary to copy; "" = PortableYard()

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

// An agent started on a host.
struct RemoteAgent {
  std::string pid;  // on the host
  std::string dir;  // its folder there, absolute
};

class SshRemote {
 public:
  // `runner` runs ssh; it must outlive this object.
  SshRemote(SshSettings settings, CommandRunner* runner);

  // ssh's argv for `host` without the destination: batch mode, timeouts,
  // host key checking, port, key, user, then `options` (-o/-R ...).
  std::vector<std::string> Argv(const SshHost& host,
                                const std::vector<std::string>& options = {}) const;
  // Runs `script` under sh on `host` with `input` on its stdin. A script
  // that ran and failed is a result; Unavailable when ssh itself failed
  // (exit 255: unreachable, refused, authentication), with ssh's words.
  StatusOr<CommandResult> Run(const SshHost& host, const std::string& script,
                              const std::string& input = "") const;
  // Puts the local `yard` (settings.yard_binary, else PortableYard()) at
  // <remote_dir>/bin/yard, and yard-shim beside it when it was built beside
  // the local one, each unless the host has that exact file (SHA-256);
  // copies are checked on arrival and renamed into place.
  Status Install(const SshHost& host);
  // Starts `yard agent` detached (setsid, output to agent.log in
  // <remote_dir>/instances/<id>) dialing `url`, the token on its stdin,
  // with `env` ("NAME=value", e.g. YARD_PREEMPTION_WATCH=imds) exported.
  // REQUIRES: each NAME is [A-Za-z_][A-Za-z0-9_]* (else InvalidArgument).
  StatusOr<RemoteAgent> StartAgent(const SshHost& host, const std::string& url,
                                   const std::string& token, const std::string& id,
                                   const std::vector<std::string>& env = {}) const;
  // The script that ends instance `instance_id`'s agent (pid, checked to be
  // ours) and frees its folder `dir` but for agent.log and spool/. Its
  // stdout: one JSON line per spool file left (`yard agent --spool-report`:
  // {"file", "job", "attempt", "records"}).
  static std::string TerminateScript(const std::string& instance_id, const std::string& pid,
                                     const std::string& dir);
  // The script that removes `files` (names in dir/spool) and spool/ itself
  // once that leaves it empty.
  static std::string RemoveSpoolFilesScript(const std::string& dir,
                                            const std::vector<std::string>& files);
  // <remote_dir>/bin/yard for an instance folder <remote_dir>/instances/<id>.
  static std::string RemoteYardOf(const std::string& instance_dir);
  // A script prelude setting $D to remote_dir as an absolute path.
  std::string DirPrelude() const;
  const SshSettings& settings() const { return settings_; }

 private:
  std::string LocalBinary() const;
  StatusOr<std::string> LocalBinaryHash();
  Status InstallFile(const SshHost& host, const std::string& local, const std::string& name,
                     const std::string& want_sha256) const;

  const SshSettings settings_;
  CommandRunner* const runner_;
  Mutex hash_mu_;
  std::string local_hash_ GUARDED_BY(hash_mu_);
};

// The first word of `s` ("" when blank).
std::string FirstWord(const std::string& s);

}  // namespace yard
