// The AWS provider against an in-memory EC2 (fake_ec2_testing.h): what it
// asks of EC2, and what it reports back for each of EC2's answers. The
// worker thread is off: the tests run its EC2 calls (RunTasks) and its
// watching (PollOnce) themselves.
#include "providers/aws_provider.h"

#include <gtest/gtest.h>

#include "common/command_runner.h"
#include "common/files.h"
#include "common/hashing.h"
#include "common/temp_dir_testing.h"
#include "providers/fake_ec2_testing.h"
#include "providers/remote_agent.h"

namespace yard {
namespace {

using Json = nlohmann::json;

using test_support::TempDir;

class AwsProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(WriteFileAtomic(dir_.path() + "/yard", "the yard binary", 0755).ok());
    ASSERT_TRUE(WriteFileAtomic(dir_.path() + "/yard-shim", "the shim", 0755).ok());
    agent_ = {"http://127.0.0.1:8080", "", "agent-secret", dir_.path() + "/yard", ""};
    Json settings = {{"region", "us-east-1"}, {"connect", "direct"}};
    settings_ = std::move(AwsSettings::FromJson(settings, dir_.path())).value();
    ec2_ = std::make_shared<FakeEc2>();
    provider_ = std::make_unique<AwsProvider>(settings_, ec2_, /*start_worker=*/false);
    provider_->Tick(0);
  }

  MachineType Type(const std::string& name, int gpus = 1, Json options = Json::object()) {
    MachineType t;
    t.name = name;
    t.provider = "aws";
    t.gpus = gpus;
    t.on_demand_price = 0.9;
    t.options = options;
    return t;
  }

  // Launches `id` of `type` and runs the queued RunInstances.
  InstanceRecord Launch(const std::string& id, const MachineType& type, const std::string& market) {
    InstanceRecord inst;
    inst.id = id;
    inst.user = "ann";
    inst.machine_type = type.name;
    inst.info["market"] = market;
    EXPECT_TRUE(provider_->Launch(type, agent_, &inst).ok());
    provider_->RunTasks();
    return inst;
  }

  TempDir dir_;
  AgentLaunchInfo agent_;
  AwsSettings settings_;
  std::shared_ptr<FakeEc2> ec2_;
  std::unique_ptr<AwsProvider> provider_;
};

TEST_F(AwsProviderTest, SettingsNeedARegionRefuseUnknownKeysAndKeepOneServerId) {
  StatusOr<AwsSettings> none = AwsSettings::FromJson(Json::object(), dir_.path());
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("\"region\" is required"), std::string::npos);
  StatusOr<AwsSettings> typo =
      AwsSettings::FromJson({{"region", "us-east-1"}, {"regoin", "x"}}, dir_.path());
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("unknown key \"regoin\""), std::string::npos)
      << typo.status().message();
  StatusOr<AwsSettings> again = AwsSettings::FromJson({{"region", "us-east-1"}}, dir_.path());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->server_id, settings_.server_id) << "the id is made once per home";
  EXPECT_EQ(ReadFile(dir_.path() + "/server_id").value(), settings_.server_id + "\n");
  EXPECT_EQ(again->connect, "tunnel") << "without server_url the default is the tunnel";
}

TEST_F(AwsProviderTest, TypeOptionsDefaultAndUnknownOnesAreRefusedByName) {
  AwsLaunchSpec gpu = AwsLaunchSpec::ForType(Type("g4dn.xlarge", 1), "us-east-1").value();
  EXPECT_EQ(gpu.instance_type, "g4dn.xlarge");
  EXPECT_NE(gpu.ami.find("deeplearning"), std::string::npos) << gpu.ami;
  AwsLaunchSpec cpu =
      AwsLaunchSpec::ForType(Type("cpu-box", 0, {{"instance_type", "c5.large"}}), "eu-west-1")
          .value();
  EXPECT_EQ(cpu.instance_type, "c5.large");
  EXPECT_NE(cpu.ami.find("ubuntu"), std::string::npos) << cpu.ami;
  StatusOr<AwsLaunchSpec> typo =
      AwsLaunchSpec::ForType(Type("p2.xlarge", 1, {{"amii", "ami-1"}}), "us-east-1");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("unknown key \"amii\""), std::string::npos)
      << typo.status().message();
  StatusOr<AwsLaunchSpec> far = AwsLaunchSpec::ForType(Type("p2.xlarge"), "xx-nowhere-1");
  ASSERT_FALSE(far.ok());
  EXPECT_NE(far.status().message().find("set options.ami"), std::string::npos);
}

TEST_F(AwsProviderTest, LaunchAsksForSpotWithTagsClientTokenAndTheBootstrap) {
  MachineType type = Type("p2.xlarge", 1,
                          {{"ami", "ami-123"},
                           {"subnet_id", "subnet-1"},
                           {"security_group_ids", {"sg-1", "sg-2"}},
                           {"root_volume_gb", 100},
                           {"key_name", "me"}});
  ec2_->AddImage("ami-123", "/dev/sda1");
  Launch("inst-1", type, "spot");
  Launch("inst-2", type, "on-demand");
  ASSERT_EQ(ec2_->runs.size(), 2u);
  const aws::RunInstanceRequest& r = ec2_->runs[0];
  EXPECT_TRUE(r.spot);
  EXPECT_FALSE(ec2_->runs[1].spot);
  EXPECT_EQ(r.image_id, "ami-123");
  EXPECT_EQ(r.instance_type, "p2.xlarge");
  EXPECT_EQ(r.subnet_id, "subnet-1");
  EXPECT_EQ(r.security_group_ids, (std::vector<std::string>{"sg-1", "sg-2"}));
  EXPECT_EQ(r.root_volume_gb, 100);
  EXPECT_EQ(r.key_name, "me");
  EXPECT_EQ(r.client_token, "inst-1");
  std::map<std::string, std::string> tags;
  for (const auto& t : r.tags) tags[t.key] = t.value;
  EXPECT_EQ(tags["trainyard:instance"], "inst-1");
  EXPECT_EQ(tags["trainyard:server"], settings_.server_id);
  EXPECT_EQ(tags["trainyard:user"], "ann");
  EXPECT_NE(tags["Name"].find("inst-1"), std::string::npos);
  EXPECT_EQ(r.user_data.rfind("#!/bin/bash\n", 0), 0u);
  EXPECT_NE(r.user_data.find("SERVER=" + ShellQuote("http://127.0.0.1:8080")), std::string::npos);
  EXPECT_NE(r.user_data.find("YARD_SHA256=" + ShellQuote(Sha256Hex("the yard binary"))),
            std::string::npos);
  EXPECT_NE(r.user_data.find("SHIM_SHA256=" + ShellQuote(Sha256Hex("the shim"))),
            std::string::npos);
  EXPECT_NE(r.user_data.find("agent --server \"$SERVER\" --instance \"$INSTANCE\""),
            std::string::npos);
  EXPECT_NE(r.user_data.find("export YARD_PREEMPTION_WATCH='imds'"), std::string::npos) << "spot";
  EXPECT_EQ(ec2_->runs[1].user_data.find("YARD_PREEMPTION_WATCH"), std::string::npos)
      << "on-demand";
}

// The direct mode's agent confines its jobs as an SSH host's does: when the
// machine can, else each job is told why not; never showing them the
// agents' folders (its credential, spool, bootstrap log). Before, it ran
// every job unconfined, able to read the agent's credential.
TEST(DirectUserDataTest, TheAgentConfinesJobsAndHidesTheAgentsFolders) {
  std::string script =
      DirectUserData({"https://10.0.0.1:8300", "yab_x", "inst-1", "a", "b", true, "AB:CD"});
  EXPECT_NE(script.find("WORK=\"$DIR/instances/$INSTANCE\"\n"), std::string::npos) << script;
  std::string agent = script.substr(script.find("\"$DIR/bin/yard\" agent "));
  agent = agent.substr(0, agent.find(" &\n"));
  EXPECT_NE(agent.find(" --sandbox-if-possible --sandbox-show-host --sandbox-hide "
                       "\"$DIR/instances\" >>\"$WORK/agent.log\""),
            std::string::npos)
      << agent;
  EXPECT_NE(agent.find(RemoteAgentConfinementFlags("\"$DIR/instances\"")), std::string::npos)
      << "the same flags as an SSH host's agent";
}

TEST_F(AwsProviderTest, RootVolumeResizesTheDeviceTheImageBootsFrom) {
  // Amazon Linux and Debian boot from /dev/xvda, Ubuntu from /dev/sda1: a
  // mapping of another device would add a volume and leave the root small.
  ec2_->AddImage("ami-al2023", "/dev/xvda");
  ec2_->AddImage("ami-ubuntu", "/dev/sda1");
  Launch("inst-1", Type("big-al", 0, {{"ami", "ami-al2023"}, {"root_volume_gb", 200}}), "spot");
  Launch("inst-2", Type("big-ubuntu", 0, {{"ami", "ami-ubuntu"}, {"root_volume_gb", 200}}), "spot");
  Launch("inst-3", Type("big-al-2", 0, {{"ami", "ami-al2023"}, {"root_volume_gb", 300}}),
         "on-demand");
  Launch("inst-4", Type("small", 0, {{"ami", "ami-unknown"}}), "spot");
  ASSERT_EQ(ec2_->runs.size(), 4u);
  EXPECT_EQ(ec2_->runs[0].root_device_name, "/dev/xvda");
  EXPECT_EQ(ec2_->runs[0].root_volume_gb, 200);
  EXPECT_EQ(ec2_->runs[1].root_device_name, "/dev/sda1");
  EXPECT_EQ(ec2_->runs[2].root_device_name, "/dev/xvda");
  EXPECT_EQ(ec2_->runs[3].root_volume_gb, 0);
  // Asked once per AMI (cached); not at all without root_volume_gb.
  EXPECT_EQ(ec2_->image_calls,
            (std::vector<std::vector<std::string>>{{"ami-al2023"}, {"ami-ubuntu"}}));
  EXPECT_TRUE(provider_->TakeLaunchOutcomes().empty());
}

TEST_F(AwsProviderTest, RootVolumeOfAMissingAmiFailsTheJobNamingAmiRegionAndOption) {
  ec2_->unlisted_images.insert("ami-gone");  // deregistered: listed empty
  Launch("inst-1", Type("big", 0, {{"ami", "ami-nope"}, {"root_volume_gb", 200}}), "spot");
  Launch("inst-2", Type("big2", 0, {{"ami", "ami-gone"}, {"root_volume_gb", 200}}), "spot");
  EXPECT_TRUE(ec2_->runs.empty()) << "nothing launched";
  std::vector<LaunchOutcome> out = provider_->TakeLaunchOutcomes();
  ASSERT_EQ(out.size(), 2u);
  for (const LaunchOutcome& o : out) {
    EXPECT_EQ(o.kind, LaunchOutcome::Kind::kFatal) << o.message << ": not capacity, no fallback";
    EXPECT_NE(o.message.find("is not in region us-east-1"), std::string::npos) << o.message;
  }
  EXPECT_NE(out[0].message.find("AMI ami-nope"), std::string::npos) << out[0].message;
  EXPECT_NE(out[0].message.find("InvalidAMIID.NotFound"), std::string::npos) << out[0].message;
  EXPECT_NE(out[0].message.find("set options.ami of type 'big'"), std::string::npos)
      << out[0].message;
  EXPECT_NE(out[1].message.find("AMI ami-gone"), std::string::npos) << out[1].message;
  EXPECT_NE(out[1].message.find("set options.ami of type 'big2'"), std::string::npos)
      << out[1].message;
  // A failure is not cached: the next launch asks again.
  ec2_->AddImage("ami-nope", "/dev/xvda");
  Launch("inst-3", Type("big", 0, {{"ami", "ami-nope"}, {"root_volume_gb", 200}}), "spot");
  ASSERT_EQ(ec2_->runs.size(), 1u);
  EXPECT_EQ(ec2_->runs[0].root_device_name, "/dev/xvda");
}

TEST_F(AwsProviderTest, RootVolumeWithoutDescribeImagesPermissionIsFatalAndNamesIt) {
  ec2_->images_fault =
      FakeEc2::Fault{aws::Ec2ErrorKind::kAuth, "UnauthorizedOperation",
                     "You are not authorized to perform this operation.", "ec2:DescribeImages"};
  Launch("inst-1", Type("big", 0, {{"ami", "ami-1"}, {"root_volume_gb", 200}}), "spot");
  EXPECT_TRUE(ec2_->runs.empty());
  std::vector<LaunchOutcome> out = provider_->TakeLaunchOutcomes();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, LaunchOutcome::Kind::kFatal);
  EXPECT_NE(out[0].message.find("lacks ec2:DescribeImages"), std::string::npos) << out[0].message;
  // A transient failure is not the job's fault: the attempt is refused.
  ec2_->images_fault =
      FakeEc2::Fault{aws::Ec2ErrorKind::kTransient, "InternalError", "try again", ""};
  Launch("inst-2", Type("big", 0, {{"ami", "ami-1"}, {"root_volume_gb", 200}}), "spot");
  out = provider_->TakeLaunchOutcomes();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, LaunchOutcome::Kind::kRefused) << out[0].message;
}

TEST_F(AwsProviderTest, RootVolumeOfTheDefaultSsmImagesIsSda1AndOtherSsmImagesAreRefused) {
  Launch("inst-1", Type("g4dn.xlarge", 1, {{"root_volume_gb", 200}}),
         "spot");  // the DLAMI (Ubuntu)
  ASSERT_EQ(ec2_->runs.size(), 1u);
  EXPECT_EQ(ec2_->runs[0].root_device_name, "/dev/sda1");
  EXPECT_TRUE(ec2_->image_calls.empty()) << "EC2 cannot describe an SSM parameter";
  std::string al =
      "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";
  Launch("inst-2", Type("al", 0, {{"ami", al}, {"root_volume_gb", 200}}), "spot");
  EXPECT_EQ(ec2_->runs.size(), 1u);
  std::vector<LaunchOutcome> out = provider_->TakeLaunchOutcomes();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, LaunchOutcome::Kind::kFatal);
  EXPECT_NE(out[0].message.find("set options.ami of type 'al' to an AMI id of us-east-1"),
            std::string::npos)
      << out[0].message;
}

// A fake of the tunnel mode's SSH side: what each instance's agent would
// be started with.
class FakeTunnels : public InstanceTunnels {
 public:
  struct Opened {
    std::string id, private_ip, token;
    bool agent_runs = false;
    std::vector<std::string> agent_env;
  };
  explicit FakeTunnels(std::vector<Opened>* opened) : opened_(opened) {}
  void Open(const std::string& id, const std::string& private_ip, const std::string&,
            const std::string& token, bool agent_runs,
            const std::vector<std::string>& env) override {
    opened_->push_back({id, private_ip, token, agent_runs, env});
  }
  void Close(const std::string&) override {}
  double CountedSilence(const std::string&, double silent_s) const override { return silent_s; }
  std::vector<Interruption> TakeFailures() override { return {}; }

 private:
  std::vector<Opened>* opened_;
};

TEST_F(AwsProviderTest, TunnelModeStartsASpotInstancesAgentWatchingForInterruptions) {
  std::vector<FakeTunnels::Opened> opened;
  AwsSettings tunnel = settings_;
  tunnel.connect = "tunnel";
  provider_ = std::make_unique<AwsProvider>(tunnel, ec2_, /*start_worker=*/false,
                                            std::make_unique<FakeTunnels>(&opened));
  provider_->Tick(0);
  Launch("inst-1", Type("g4dn.xlarge"), "spot");
  Launch("inst-2", Type("g4dn.xlarge"), "on-demand");
  EXPECT_TRUE(ec2_->runs[0].user_data.empty()) << "no user-data in the tunnel mode";
  ec2_->SetAllRunning();
  provider_->PollOnce();
  ASSERT_EQ(opened.size(), 2u);
  EXPECT_EQ(opened[0].id, "inst-1");
  EXPECT_EQ(opened[0].token, "agent-secret");
  EXPECT_FALSE(opened[0].agent_runs);
  EXPECT_EQ(opened[0].agent_env, std::vector<std::string>{"YARD_PREEMPTION_WATCH=imds"})
      << "a spot instance's agent watches IMDS in the tunnel mode too";
  EXPECT_EQ(opened[1].id, "inst-2");
  EXPECT_TRUE(opened[1].agent_env.empty()) << "on-demand: no watching";
  EXPECT_EQ(Ec2AgentEnvironment(true), opened[0].agent_env) << "the same as the direct mode's";
}

TEST_F(AwsProviderTest, RunningIsTheGrantWithTheEc2IdAndZone) {
  Launch("inst-1", Type("g4dn.xlarge"), "on-demand");
  provider_->PollOnce();
  EXPECT_TRUE(provider_->TakeLaunchOutcomes().empty()) << "pending is not granted";
  ec2_->SetAllRunning();
  provider_->PollOnce();
  std::vector<LaunchOutcome> out = provider_->TakeLaunchOutcomes();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, LaunchOutcome::Kind::kGranted);
  EXPECT_EQ(out[0].instance_id, "inst-1");
  EXPECT_EQ(out[0].info["ec2_instance_id"], ec2_->Live()[0].instance_id);
  EXPECT_EQ(out[0].info["availability_zone"], "us-east-1b");
  provider_->PollOnce();
  EXPECT_TRUE(provider_->TakeLaunchOutcomes().empty()) << "each outcome once";
}

TEST_F(AwsProviderTest, CapacityAnswerRefusesTheAttemptWithEc2sCode) {
  ec2_->run_faults["p2.xlarge"] = {};
  Launch("inst-1", Type("p2.xlarge"), "spot");
  std::vector<LaunchOutcome> out = provider_->TakeLaunchOutcomes();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, LaunchOutcome::Kind::kRefused);
  EXPECT_NE(out[0].message.find(
                "InsufficientInstanceCapacity: We currently do not have sufficient capacity"),
            std::string::npos)
      << out[0].message;
  EXPECT_TRUE(ec2_->Live().empty());
}

TEST_F(AwsProviderTest, MissingPermissionIsFatalAndNamesTheAction) {
  ec2_->run_faults["p2.xlarge"] = {aws::Ec2ErrorKind::kAuth, "UnauthorizedOperation",
                                   "You are not authorized to perform this operation.",
                                   "ec2:RunInstances"};
  ec2_->run_faults["g4dn.xlarge"] = {aws::Ec2ErrorKind::kBadRequest, "InvalidAMIID.NotFound",
                                     "The image id '[ami-nope]' does not exist", ""};
  Launch("inst-1", Type("p2.xlarge"), "spot");
  Launch("inst-2", Type("g4dn.xlarge"), "spot");
  std::vector<LaunchOutcome> out = provider_->TakeLaunchOutcomes();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].kind, LaunchOutcome::Kind::kFatal);
  EXPECT_NE(out[0].message.find("UnauthorizedOperation"), std::string::npos) << out[0].message;
  EXPECT_NE(out[0].message.find("lacks ec2:RunInstances"), std::string::npos) << out[0].message;
  EXPECT_EQ(out[1].kind, LaunchOutcome::Kind::kFatal);
  EXPECT_NE(out[1].message.find("InvalidAMIID.NotFound"), std::string::npos) << out[1].message;
}

TEST_F(AwsProviderTest, InstanceEndedBeforeRunningRefusesTheAttempt) {
  Launch("inst-1", Type("p2.xlarge"), "spot");
  std::string ec2_id = ec2_->Live()[0].instance_id;
  ec2_->SetState(ec2_id, "terminated", "Server.InsufficientInstanceCapacity");
  provider_->PollOnce();
  std::vector<LaunchOutcome> out = provider_->TakeLaunchOutcomes();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, LaunchOutcome::Kind::kRefused);
  EXPECT_NE(out[0].message.find("Server.InsufficientInstanceCapacity"), std::string::npos);
}

TEST_F(AwsProviderTest, TerminateBeforeRunInstancesIsSentSendsNothing) {
  InstanceRecord inst;
  inst.id = "inst-1";
  inst.user = "ann";
  inst.info["market"] = "spot";
  ASSERT_TRUE(provider_->Launch(Type("p2.xlarge"), agent_, &inst).ok());
  ASSERT_TRUE(provider_->Terminate(inst).ok());
  provider_->RunTasks();
  EXPECT_TRUE(ec2_->runs.empty());
  EXPECT_TRUE(provider_->TakeLaunchOutcomes().empty());
}

TEST_F(AwsProviderTest, TerminateEndsThePendingInstanceAndRetriesAFailedCall) {
  InstanceRecord inst = Launch("inst-1", Type("p2.xlarge"), "spot");
  ec2_->terminate_fault =
      FakeEc2::Fault{aws::Ec2ErrorKind::kTransient, "InternalError", "try again", ""};
  ASSERT_TRUE(provider_->Terminate(inst).ok());
  provider_->RunTasks();
  EXPECT_EQ(ec2_->Live().size(), 1u) << "the call failed";
  ec2_->terminate_fault.reset();
  provider_->PollOnce();  // still listed, still ours to end: ended again
  EXPECT_TRUE(ec2_->Live().empty());
  provider_->PollOnce();
  EXPECT_TRUE(provider_->TakeLaunchOutcomes().empty());
  EXPECT_TRUE(provider_->TakeInterruptions().empty()) << "our own ending is no interruption";
}

TEST_F(AwsProviderTest, SpotReclaimOfAGrantedInstanceIsAnInterruption) {
  ec2_->start_running = true;
  Launch("inst-1", Type("p2.xlarge"), "spot");
  ASSERT_EQ(provider_->TakeLaunchOutcomes().size(), 1u);
  ec2_->SetState(ec2_->Live()[0].instance_id, "terminated", "Server.SpotInstanceTermination");
  provider_->PollOnce();
  std::vector<Interruption> out = provider_->TakeInterruptions();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].instance_id, "inst-1");
  EXPECT_NE(out[0].reason.find("Server.SpotInstanceTermination"), std::string::npos)
      << out[0].reason;
}

TEST_F(AwsProviderTest, AfterARestartKnownInstancesAreAdoptedAndUnknownOnesEnded) {
  ec2_->Plant("i-known",
              {{"trainyard:server", settings_.server_id}, {"trainyard:instance", "inst-k"}});
  ec2_->Plant("i-unknown",
              {{"trainyard:server", settings_.server_id}, {"trainyard:instance", "inst-u"}});
  ec2_->Plant("i-other",
              {{"trainyard:server", "another-server"}, {"trainyard:instance", "inst-o"}});
  AwsProvider restarted(settings_, ec2_, /*start_worker=*/false);
  InstanceRecord known;
  known.id = "inst-k";
  known.state = instance_state::kBusy;
  known.info = {{"ec2_instance_id", "i-known"}, {"market", "spot"}};
  EXPECT_TRUE(restarted.Adopt(known));
  InstanceRecord lost;  // in the store, but its launch never reached EC2
  lost.id = "inst-l";
  lost.state = instance_state::kRequested;
  EXPECT_TRUE(restarted.Adopt(lost));
  restarted.PollOnce();
  EXPECT_EQ(ec2_->describes, 0) << "nothing is listed before the controller's recovery is done";
  restarted.Tick(0);
  restarted.PollOnce();
  std::set<std::string> live;
  for (const auto& i : ec2_->Live()) live.insert(i.instance_id);
  EXPECT_EQ(live, (std::set<std::string>{"i-known", "i-other"}));
  std::vector<Interruption> gone = restarted.TakeInterruptions();
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].instance_id, "inst-l");
}

TEST_F(AwsProviderTest, SpotPriceComesFromTheHistoryOfTheInstancesZone) {
  ec2_->spot_prices = {{"p2.xlarge", "us-east-1a", 0.41, 0}, {"p2.xlarge", "us-east-1b", 0.27, 0}};
  ec2_->start_running = true;
  Launch("inst-1", Type("p2.xlarge"), "spot");
  std::vector<LaunchOutcome> out = provider_->TakeLaunchOutcomes();
  ASSERT_EQ(out.size(), 1u);
  provider_->PollOnce();
  InstanceRecord inst;
  inst.id = "inst-1";
  inst.machine_type = "p2.xlarge";
  inst.info = out[0].info;
  inst.info["market"] = "spot";
  EXPECT_DOUBLE_EQ(provider_->SpotPricePerHour(inst).value(), 0.27);
  provider_->PollOnce();
  EXPECT_EQ(ec2_->spot_price_calls, 1) << "refreshed hourly, not on every poll";
}

}  // namespace
}  // namespace yard
