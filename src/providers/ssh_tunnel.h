// SshTunnel: an agent on a machine that cannot reach the server — an
// embedded server on a laptop behind NAT, listening on loopback — dialing it
// through a reverse SSH tunnel that this object keeps up. The AWS
// provider's connect "tunnel" (docs/providers.md, "AWS: the tunnel mode").
//
//   Start        on the tunnel's own thread: waits until the host's sshd
//                lets us in (a booting machine), installs the portable agent
//                (SshRemote::Install), opens the tunnel and, once it is up,
//                starts `yard agent --server http://127.0.0.1:<remote_port>`.
//   the tunnel   `ssh -R 127.0.0.1:<remote_port>:<server host>:<server port>`
//                with ExitOnForwardFailure and ServerAliveInterval, running a
//                remote command that records its sshd session's pid and says
//                "yard-tunnel-up": the forward is in place from then on.
//   supervising  when ssh exits (the network went, the laptop slept, a
//                forward was refused, someone killed it), it is started again
//                after a backoff: 0.5 s doubling to 30 s, back to 0.5 s after
//                a tunnel that stayed up 30 s. Before each start, the previous
//                tunnel's sshd session on the host is ended if it lingers (a
//                laptop that vanished never closed its connection, and that
//                session still holds the port).
//   meanwhile    the agent cannot reach the server: its job goes on, it spools
//                the job's records and retries; once the tunnel is back they
//                arrive, gapless (sequence numbers), and so do artifacts.
//
// The agent is left running by Stop: ending the machine ends it.
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <map>
#include <memory>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/command_runner.h"
#include "common/thread_annotations.h"
#include "providers/provider.h"
#include "providers/ssh_remote.h"

namespace yard {

struct TunnelSpec {
  SshHost host;
  std::string instance_id;
  std::string agent_token;
  // The server as this machine reaches it ("http://127.0.0.1:8750"); when
  // empty, the "url" of the JSON file `server_url_file` (server.json), read
  // at each start of the tunnel.
  std::string server_url;
  std::string server_url_file;
  int remote_port = 0;                 // the agent dials 127.0.0.1:remote_port on the host
  std::string log_path;                // ssh's stderr and the tunnel's own notes (appended)
  double ready_timeout_s = 600;        // how long Start waits for the host's sshd
  int alive_interval_s = 5;            // ServerAliveInterval
  int alive_count_max = 3;             // ServerAliveCountMax
  bool start_agent = true;             // false: the agent runs already (an adopted instance)
  std::vector<std::string> agent_env;  // "NAME=value" exported for the agent it starts
  std::string ssh_program;             // "" = ssh from PATH (tests put a fake here)
};

// How the tunnel is, at one moment.
struct TunnelState {
  bool up = false;
  double up_for_s = 0;         // since the tunnel last came up (0 while down)
  int starts = 0;              // tunnels started so far
  bool agent_started = false;  // the agent runs (started, or given)
  std::string failure;         // why the agent cannot be had ("" while none): final
};

class SshTunnel {
 public:
  // `remote` must outlive this object.
  SshTunnel(SshRemote* remote, TunnelSpec spec);
  ~SshTunnel();  // Stop()

  // Starts the tunnel's thread (once).
  void Start();
  // Ends the tunnel and its thread; waits for them. Idempotent.
  void Stop();
  TunnelState State() const;
  // The heartbeat silence the controller should count for the agent behind
  // this tunnel, `silent_s` being the time since its last heartbeat: none
  // while the tunnel is down, and only the time since it came back (less the
  // keepalive window, in which a dead tunnel still looks up) while it is up.
  double CountedSilence(double silent_s) const;
  // The pid of the running ssh (0 while down): tests kill it.
  pid_t TunnelPid() const;

  // The argv of the tunnel's ssh to the server at host:port (tests).
  std::vector<std::string> TunnelArgv(const std::string& server_host, int server_port) const;
  // The remote scripts: the tunnel session's command and the one that ends
  // a lingering earlier session.
  std::string SessionScript() const;
  std::string ClearScript() const;

 private:
  void Main();
  Status WaitForSsh();
  // Runs one tunnel to its end; starts the agent once it is first up.
  void RunOnce();
  StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, int* out_fd, int* in_fd);
  // The server's URL, from server_url or server_url_file.
  StatusOr<std::string> ServerUrl() const;
  // The server's host and port, from server_url or server_url_file.
  StatusOr<std::pair<std::string, int>> ServerAddress() const;
  void OnUp();
  void Note(const std::string& line) const;
  void Fail(const Status& s);
  // Waits `d` unless stopped first; true when stopped.
  bool Pause(std::chrono::milliseconds d);

  SshRemote* const remote_;
  const TunnelSpec spec_;
  mutable Mutex mu_;
  std::condition_variable wake_;
  bool started_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  pid_t pid_ GUARDED_BY(mu_) = 0;  // the running ssh
  std::optional<std::chrono::steady_clock::time_point> up_since_ GUARDED_BY(mu_);
  int starts_ GUARDED_BY(mu_) = 0;
  bool agent_started_ GUARDED_BY(mu_) = false;
  std::string failure_ GUARDED_BY(mu_);
  std::thread thread_;
};

// providers.aws.tunnel in the catalog file (docs/providers.md, "AWS: the
// tunnel mode"): how the server reaches its instances over SSH.
struct TunnelSettings {
  std::string user = "ubuntu";  // the AMI's login user (Ubuntu's; Amazon Linux: ec2-user)
  std::string key;              // private key of the type's key_name; "" = ssh's defaults
  int port = 22;
  std::string address = "public";  // "public" (else private when none) or "private"
  int remote_port = 47100;         // the agent dials 127.0.0.1:<remote_port> on the instance
  std::string known_hosts;         // "" = ssh's default file
  std::string strict_host_key_checking = "accept-new";
  double connect_timeout_s = 10;
  double ready_timeout_s = 600;  // how long a booting instance's sshd may take
  std::string remote_dir = ".cache/trainyard";

  // `j`: the "tunnel" object (null: all defaults).
  static StatusOr<TunnelSettings> FromJson(const nlohmann::json& j);
};

// The tunnels of the AWS provider's instances, by instance id (connect
// "tunnel"). AwsTunnels is the real one; the provider's tests use a fake.
class InstanceTunnels {
 public:
  virtual ~InstanceTunnels() = default;
  // Opens instance `id`'s tunnel to one of its EC2 addresses and, unless
  // `agent_runs` (an adopted instance), installs and starts its agent with
  // `token` and `agent_env` ("NAME=value") in its environment.
  virtual void Open(const std::string& id, const std::string& private_ip,
                    const std::string& public_ip, const std::string& token, bool agent_runs,
                    const std::vector<std::string>& agent_env) = 0;
  virtual void Close(const std::string& id) = 0;  // stops it; never waits
  // SshTunnel::CountedSilence of instance `id`'s tunnel (`silent_s` when none).
  virtual double CountedSilence(const std::string& id, double silent_s) const = 0;
  // Instances whose tunnel gave up (each reported once): their agent cannot be had.
  virtual std::vector<Interruption> TakeFailures() = 0;
};

// The forward target is `server_url` when set, else the URL in the
// server's server.json, read at each (re)start of a tunnel (a restarted
// server may listen on another port).
class AwsTunnels : public InstanceTunnels {
 public:
  AwsTunnels(TunnelSettings settings, std::string server_url, std::string server_url_file,
             std::string log_dir);
  ~AwsTunnels() override;  // stops every tunnel; the agents stay

  // The address is picked from both by settings.address.
  void Open(const std::string& id, const std::string& private_ip, const std::string& public_ip,
            const std::string& token, bool agent_runs,
            const std::vector<std::string>& agent_env) override;
  void Close(const std::string& id) override;  // on a thread of its own
  double CountedSilence(const std::string& id, double silent_s) const override;
  std::vector<Interruption> TakeFailures() override;

 private:
  const TunnelSettings settings_;
  const std::string server_url_, server_url_file_, log_dir_;
  ProcessCommandRunner runner_;
  SshRemote remote_;
  mutable Mutex mu_;
  std::map<std::string, std::unique_ptr<SshTunnel>> tunnels_ GUARDED_BY(mu_);
  std::map<std::string, std::string> hosts_ GUARDED_BY(mu_);  // id -> host name
  std::vector<std::thread> closers_ GUARDED_BY(mu_);          // stopping tunnels

  void Retire(std::unique_ptr<SshTunnel> t) REQUIRES(mu_);
};

}  // namespace yard
