// AwsProvider: instances are EC2 instances, rented through EC2's Query API
// (aws::Ec2Api). docs/providers.md ("AWS") has the whole story; in short:
//
//   Launch     records the instance and queues RunInstances (one instance,
//              spot market options for the "spot" market, tags, user-data)
//              on the provider's worker thread; it never waits on EC2. The
//              controller sees the instance "requested" (GrantsLater). With
//              root_volume_gb the worker first asks DescribeImages for the
//              AMI's root device (once per region and AMI): a missing AMI
//              fails the job, naming the AMI, the region and options.ami.
//   outcomes   EC2's answer and the instance's state come back through
//              TakeLaunchOutcomes: "running" is the grant; a capacity answer
//              (Ec2ErrorKind::kCapacity, or the instance ended before it
//              ran) refuses the attempt, so the next machine id is tried;
//              credentials, permissions and bad requests are fatal to the job.
//   watching   the worker lists the instances tagged with this server's id
//              every poll_interval_s (one DescribeInstances). A granted
//              instance that EC2 ends (a spot interruption) is reported through
//              TakeInterruptions with EC2's state reason; a tagged instance
//              this server does not know is terminated and logged (after a
//              restart: the store's instances are adopted, the rest ended).
//   Terminate  TerminateInstances on the worker (at once when the EC2 id is
//              known; when RunInstances is still out, as soon as it answers).
//   prices     DescribeSpotPriceHistory for the types launched as spot without
//              a catalog spot price, refreshed every spot_price_refresh_s;
//              SpotPricePerHour answers from memory for the instance's zone.
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
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "aws/ec2.h"
#include "common/thread_annotations.h"
#include "providers/provider.h"
#include "providers/ssh_tunnel.h"

namespace yard {

// providers.aws in the catalog file (docs/providers.md).
struct AwsSettings {
  std::string region;        // required
  std::string endpoint_url;  // "" = AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL, AWS's own
  std::string connect;       // "direct" or "tunnel"
  std::string server_url;    // what agents dial; "" = the server's own URL
  double poll_interval_s = 3;
  double spot_price_refresh_s = 3600;
  std::string server_id;  // the trainyard:server tag (home/server_id)
  TunnelSettings tunnel;  // connect "tunnel": how to reach instances over SSH
  std::string home;       // the server's state folder (server.json, instances/)

  // `home`: the server's state folder, where server_id is made once.
  static StatusOr<AwsSettings> FromJson(const nlohmann::json& j, const std::string& home);
};

// What a machine type asks of EC2: its options, checked (unknown keys are
// refused, naming the key).
struct AwsLaunchSpec {
  std::string instance_type;  // default: the type's name
  std::string ami;            // default: DefaultAmi(region, gpus)
  std::string subnet_id;
  std::vector<std::string> security_group_ids;
  std::string key_name;
  std::string iam_instance_profile;
  int root_volume_gb = 0;

  static StatusOr<AwsLaunchSpec> ForType(const MachineType& type, const std::string& region);
};

// The documented default image of a region: AWS's Deep Learning Base AMI
// (OSS NVIDIA driver, Ubuntu 22.04) for GPU types, Canonical's Ubuntu 22.04
// for CPU types, as EC2 resolves them at launch from AWS's public SSM
// parameters ("resolve:ssm:/aws/service/..."), so the newest image of the
// region is used. "" for a region the table lacks.
std::string DefaultAmi(const std::string& region, bool gpu);

// The user-data of connect "direct": a bash script (bash and curl or
// python3) that downloads `yard` and `yard-shim` from the server
// (GET /v1/agent/binaries/NAME with the agent token), checks their SHA-256
// and starts `yard agent` (watching IMDS for spot notices on a spot
// instance). It works under $TRAINYARD_DIR (default /var/lib/trainyard).
// What an EC2 instance's agent gets in its environment besides its token,
// as "NAME=value": on a spot instance YARD_PREEMPTION_WATCH=imds, so that it
// watches IMDSv2 for EC2's two-minute interruption notice
// (agent/preemption_watcher.h); nothing on an on-demand one. Both connect
// modes start the agent with it: "direct" in its user-data, "tunnel" over SSH.
std::vector<std::string> Ec2AgentEnvironment(bool spot);

struct DirectBootstrap {
  std::string server_url;
  std::string agent_token;
  std::string instance_id;
  std::string yard_sha256;
  std::string shim_sha256;  // "" = no yard-shim (the agent falls back to `yard shim`)
  bool spot = false;        // Ec2AgentEnvironment(spot) is exported for the agent
  // The server's TLS fingerprint (AgentLaunchInfo::server_fingerprint): the
  // agent's download checks it, and the agent gets it.
  std::string server_fingerprint;
};
std::string DirectUserData(const DirectBootstrap& b);

// SHA-256 of the server's `yard` binary and of the `yard-shim` beside it
// ("" when it is missing).
struct AgentBinaryHashes {
  std::string yard;
  std::string shim;
};
StatusOr<AgentBinaryHashes> HashAgentBinaries(const std::string& yard_binary);

class AwsProvider : public Provider {
 public:
  // With `start_worker` false nothing runs on its own: tests call RunTasks
  // and PollOnce. `tunnels` (connect "tunnel" only; null: AwsTunnels over
  // ssh) reaches the instances: tests pass a fake.
  AwsProvider(AwsSettings settings, std::shared_ptr<aws::Ec2Api> ec2, bool start_worker = true,
              std::unique_ptr<InstanceTunnels> tunnels = nullptr);
  ~AwsProvider() override;

  std::string name() const override { return "aws"; }
  // EC2 does not say how many it would grant; the launch answers.
  int Available(const MachineType& type) override { return kUnknownCapacity; }
  Status Launch(const MachineType& type, const AgentLaunchInfo& agent,
                InstanceRecord* inst) override;
  bool GrantsLater() const override { return true; }
  std::vector<LaunchOutcome> TakeLaunchOutcomes() override;
  Status Terminate(const InstanceRecord& inst) override;
  bool IsAlive(const InstanceRecord& inst) override { return true; }  // losses are interruptions
  bool Adopt(const InstanceRecord& inst) override;
  // The first call (after the controller's recovery) starts the watching.
  void Tick(double now) override;
  std::vector<Interruption> TakeInterruptions() override;
  std::optional<double> SpotPricePerHour(const InstanceRecord& inst) override;
  // connect "tunnel": SshTunnel::CountedSilence of the instance's tunnel.
  double CountedSilence(const InstanceRecord& inst, double silent_s) override;
  // ec2_instance_id, availability_zone and the addresses, once RunInstances
  // has answered.
  nlohmann::json KnownInfo(const InstanceRecord& inst) override;

  // Runs the queued EC2 calls now (tests).
  void RunTasks();
  // One round of watching: DescribeInstances, spot prices (the worker's work).
  void PollOnce();

  static constexpr int kUnknownCapacity = 1000;

 private:
  struct Entry {
    std::string ec2_id;  // "" until RunInstances answers (or the poll finds it)
    std::string instance_type;
    std::string zone;
    std::string private_ip;  // as RunInstances or the last listing said
    std::string public_ip;
    bool spot = false;
    bool launching = false;          // RunInstances not answered yet
    bool granted = false;            // reported running (or adopted past "requested")
    bool ending = false;             // Terminate was called
    bool adopted = false;            // from the store after a restart, not yet seen
    int missing = 0;                 // polls in a row that did not list it
    std::string agent_token;         // connect "tunnel": the agent's, for its start over SSH
    std::string server_fingerprint;  // and the server's TLS fingerprint for it
  };

  void Post(std::function<void()> task);
  void RunInstance(const std::string& id, const std::string& type_name, aws::RunInstanceRequest req,
                   AgentLaunchInfo agent, std::string url);
  // The root device of AMI `ami` (DescribeImages, cached per region and
  // AMI), for options.root_volume_gb of type `type_name`. On failure
  // `*fatal` says whether the job must fail (a missing AMI, a refused
  // permission) rather than try the next type.
  StatusOr<std::string> RootDevice(const std::string& type_name, const std::string& ami,
                                   bool* fatal);
  void TerminateNow(const std::vector<std::string>& ec2_ids);
  StatusOr<std::string> ServerUrl(const AgentLaunchInfo& agent) const;
  StatusOr<AgentBinaryHashes> Hashes(const std::string& yard_binary);
  // Applies one listed EC2 instance to `entries_`.
  void Observe(const aws::Ec2Instance& ec2, std::set<std::string>* seen,
               std::vector<std::string>* to_terminate) REQUIRES(mu_);
  // What to do with entries the listing did not show.
  void Unseen(const std::set<std::string>& seen) REQUIRES(mu_);
  void Refuse(const std::string& id, const std::string& message, bool fatal) REQUIRES(mu_);
  void RefreshSpotPrices();
  void WorkerMain();

  const AwsSettings settings_;
  const std::shared_ptr<aws::Ec2Api> ec2_;
  Mutex hash_mu_;
  std::map<std::string, AgentBinaryHashes> hashes_ GUARDED_BY(hash_mu_);  // by binary path
  Mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, Entry> entries_ GUARDED_BY(mu_);  // by our instance id
  std::vector<LaunchOutcome> outcomes_ GUARDED_BY(mu_);
  std::vector<Interruption> interrupted_ GUARDED_BY(mu_);
  std::deque<std::function<void()>> tasks_ GUARDED_BY(mu_);
  // (instance type, zone) -> $/h, and when each type was last asked.
  std::map<std::pair<std::string, std::string>, double> spot_prices_ GUARDED_BY(mu_);
  std::map<std::string, std::chrono::steady_clock::time_point> spot_asked_ GUARDED_BY(mu_);
  std::set<std::string> spot_types_ GUARDED_BY(mu_);  // to price
  // (region, AMI) -> its root device name
  std::map<std::pair<std::string, std::string>, std::string> root_devices_ GUARDED_BY(mu_);
  bool watching_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  std::string last_poll_error_ GUARDED_BY(mu_);
  std::thread worker_;
  std::unique_ptr<InstanceTunnels> tunnels_;  // connect "tunnel" only
};

}  // namespace yard
