// The slurm provider against a scripted Slurm (FakeCommandRunner): what it
// asks sbatch for, how it reads squeue and sinfo, what it reports.
#include "providers/slurm_provider.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "common/clock.h"
#include "common/fake_command_runner.h"
#include "common/files.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;

MachineType Type(const std::string& name, int cpus,
                 nlohmann::json options = nlohmann::json::object()) {
  MachineType t;
  t.name = name;
  t.provider = "slurm";
  t.cpus = cpus;
  t.options = std::move(options);
  return t;
}

bool Has(const std::vector<std::string>& argv, const std::string& arg) {
  return std::find(argv.begin(), argv.end(), arg) != argv.end();
}

class SlurmProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    settings_.work_dir = dir_.string();
    settings_.pending_timeout_s = 100;
  }

  // Squeue answers from `squeue_`, sinfo from `sinfo_`, sbatch with job 42.
  StatusOr<CommandResult> Answer(const CommandSpec& s) {
    std::string tool = s.argv[0];
    std::lock_guard<std::mutex> lock(mu_);
    if (tool == "sbatch") return Result(0, "42\n");
    if (tool == "squeue") return squeue_;
    if (tool == "sinfo") return Result(0, sinfo_);
    if (tool == "scancel") return scancel_;
    return Result(127, "", "unexpected " + tool);
  }
  void Make() {
    auto runner =
        std::make_unique<FakeCommandRunner>([this](const CommandSpec& s) { return Answer(s); });
    runner_ = runner.get();
    provider_ = std::make_unique<SlurmProvider>(settings_, std::move(runner), &clock_,
                                                /*start_poller=*/false);
  }
  void Squeue(const std::string& rows) {
    std::lock_guard<std::mutex> lock(mu_);
    squeue_ = Result(0, rows);
  }
  InstanceRecord LaunchOne(const MachineType& type) {
    InstanceRecord inst;
    inst.id = "inst-1";
    EXPECT_TRUE(provider_->Launch(type, agent_, &inst).ok());
    return inst;
  }

  test_support::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  SlurmSettings settings_;
  AgentLaunchInfo agent_{"http://10.0.0.1:8080", "", "secret-token", "/opt/yard/yard", ""};
  MachineType type_ = Type("slurm-1", 1);
  std::mutex mu_;
  CommandResult squeue_ = Result(0, "");
  CommandResult scancel_ = Result(0, "");
  std::string sinfo_ = "n1|debug*|idle|0/2/0/2\nn2|debug*|mix|1/1/0/2\nn3|gpu|idle|0/8/0/8\n";
  FakeClock clock_;  // Monotonic() times pending and vanished jobs
  FakeCommandRunner* runner_ = nullptr;
  std::unique_ptr<SlurmProvider> provider_;
};

TEST_F(SlurmProviderTest, SbatchAsksForTheTypeAndKeepsTheTokenOutOfArgvAndFiles) {
  Make();
  MachineType big = Type("big", 4, {{"partition", "gpu"}, {"nodes", 2}, {"time", "1:00:00"}});
  big.memory_gb = 16;
  big.gpus = 2;
  InstanceRecord inst = LaunchOne(big);
  auto calls = runner_->CallsOf("sbatch");
  ASSERT_EQ(calls.size(), 1u);
  const auto& argv = calls[0].argv;
  for (const char* want :
       {"--partition=gpu", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=4", "--mem=16384M",
        "--gres=gpu:2", "--time=1:00:00", "--no-requeue", "--job-name=yard-inst-1", "--parsable"})
    EXPECT_TRUE(Has(argv, want)) << want;
  for (const auto& a : argv) EXPECT_EQ(a.find("secret-token"), std::string::npos) << a;
  EXPECT_EQ(calls[0].env, std::vector<std::string>{"YARD_AGENT_TOKEN=secret-token"});
  // The token crosses into the allocation by name; not everything else does.
  auto exported = std::find_if(argv.begin(), argv.end(),
                               [](const std::string& a) { return a.rfind("--export=", 0) == 0; });
  ASSERT_NE(exported, argv.end());
  EXPECT_NE(exported->find("YARD_AGENT_TOKEN"), std::string::npos) << *exported;
  EXPECT_NE(*exported, "--export=ALL");
  std::string script = *ReadFile(argv.back());
  EXPECT_NE(script.find(
                "exec '/opt/yard/yard' agent --server 'http://10.0.0.1:8080' --instance 'inst-1'"),
            std::string::npos)
      << script;
  EXPECT_EQ(script.find("secret-token"), std::string::npos);
  EXPECT_EQ(inst.info["slurm_job_id"], "42");
  EXPECT_EQ(inst.info["nodes"], 2);
}

TEST(SbatchExportListTest, TheServersSecretsStayBehindAndTheAgentsOwnGoByName) {
  std::vector<std::string> server_env = {"PATH=/usr/bin",
                                         "HOME=/root",
                                         "SLURM_CONF=/etc/slurm/slurm.conf",
                                         "AWS_REGION=eu-west-1",
                                         "AWS_ACCESS_KEY_ID=AKIDSERVER",
                                         "AWS_SECRET_ACCESS_KEY=server-secret",
                                         "YARD_TOKEN=admin-token",
                                         "DB_PASSWORD=hunter2",
                                         "GITHUB_TOKEN=ghp",
                                         "PATH=/usr/bin",  // once in the list
                                         "BAD,NAME=x",
                                         "bash-func%%=()"};
  std::vector<std::string> agent_env = {"YARD_AGENT_TOKEN=bootstrap",
                                        "YARD_SERVER_FINGERPRINT=AB:CD"};
  EXPECT_EQ(SbatchExportList(server_env, agent_env),
            "AWS_REGION,HOME,PATH,SLURM_CONF,YARD_AGENT_TOKEN,YARD_SERVER_FINGERPRINT");
}

TEST_F(SlurmProviderTest, TheAgentConfinesJobsAndHidesEveryInstanceAndTheServersHome) {
  settings_.server_home = "/shared/yard home";
  Make();
  LaunchOne(Type("cpu", 1));
  auto calls = runner_->CallsOf("sbatch");
  ASSERT_EQ(calls.size(), 1u);
  std::string script = *ReadFile(calls[0].argv.back());
  EXPECT_NE(script.find(" --sandbox-if-possible --sandbox-show-host --sandbox-hide '" +
                        dir_.string() + "' --sandbox-hide '/shared/yard home'\n"),
            std::string::npos)
      << script;
}

TEST_F(SlurmProviderTest, TheServersTlsFingerprintGoesBesideTheToken) {
  agent_.server_url = "https://10.0.0.1:8080";
  agent_.server_fingerprint = std::string(95, 'A');
  Make();
  LaunchOne(Type("cpu", 1));
  auto calls = runner_->CallsOf("sbatch");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].env,
            (std::vector<std::string>{"YARD_AGENT_TOKEN=secret-token",
                                      "YARD_SERVER_FINGERPRINT=" + agent_.server_fingerprint}));
  EXPECT_NE(ReadFile(calls[0].argv.back())->find("--server 'https://10.0.0.1:8080'"),
            std::string::npos);
}

TEST_F(SlurmProviderTest, JobSettingsBecomeTheSbatchFlagsOverTheTypesOptions) {
  Make();
  MachineType type = Type("cpu", 2, {{"partition", "debug"}, {"time", "4:00:00"}, {"mem", "1G"}});
  for (const char* key : {"partition", "time", "mem", "gres", "qos", "account"})
    EXPECT_TRUE(provider_->JobSettingKeys(type).count(key)) << key;
  EXPECT_FALSE(provider_->JobSettingKeys(type).count("sbatch_args")) << "any flag at all: no";
  EXPECT_FALSE(provider_->JobSettingKeys(type).count("nodes")) << "what the type is";

  LaunchOne(type.WithSettings({{"partition", "gpu"}, {"time", "0:30:00"}, {"qos", "low"}}));
  auto calls = runner_->CallsOf("sbatch");
  ASSERT_EQ(calls.size(), 1u);
  const auto& argv = calls[0].argv;
  for (const char* want :
       {"--partition=gpu", "--time=0:30:00", "--qos=low", "--mem=1G", "--cpus-per-task=2"})
    EXPECT_TRUE(Has(argv, want)) << want;
  EXPECT_FALSE(Has(argv, "--partition=debug")) << "the setting replaces the catalog's partition";
  EXPECT_FALSE(Has(argv, "--time=4:00:00"));
}

TEST_F(SlurmProviderTest, PartitionSettingIsWhereCapacityIsCounted) {
  Make();
  provider_->PollOnce();
  MachineType type = Type("cpu", 2);  // the default partition (debug): n1 has 2 idle, n2 1
  EXPECT_EQ(provider_->Available(type), 1);
  EXPECT_EQ(provider_->Available(type.WithSettings({{"partition", "gpu"}})), 4)
      << "n3: 8 idle CPUs";
}

TEST_F(SlurmProviderTest, SbatchRefusalIsAFailedAttemptWithSlurmsReason) {
  Make();
  runner_->SetAnswer([](const CommandSpec&) {
    return StatusOr<CommandResult>(
        Result(1, "", "sbatch: error: invalid partition specified: nope\n"));
  });
  InstanceRecord inst;
  inst.id = "inst-1";
  Status s = provider_->Launch(type_, agent_, &inst);
  EXPECT_NE(s.code(), Code::kResourceExhausted);
  EXPECT_NE(s.message().find("invalid partition specified: nope"), std::string::npos)
      << s.message();
  EXPECT_FALSE(provider_->IsAlive(inst));
}

TEST_F(SlurmProviderTest, AvailableCountsFreeCpusOfThePartitionLessOurPendingJobs) {
  Make();
  EXPECT_EQ(provider_->Available(type_), 0);  // nothing known before the first poll
  provider_->PollOnce();
  EXPECT_EQ(provider_->Available(type_), 3);  // default partition: 2 + 1 idle CPUs
  MachineType gpu = Type("g", 4, {{"partition", "gpu"}});
  EXPECT_EQ(provider_->Available(gpu), 2);
  MachineType two = Type("two", 1, {{"nodes", 2}});
  EXPECT_EQ(provider_->Available(two), 1);
  LaunchOne(type_);
  EXPECT_EQ(provider_->Available(type_), 2);  // pending: not in sinfo's count yet
}

TEST_F(SlurmProviderTest, NodeFailureIsReportedOnceWithSlurmsStateAndReason) {
  Make();
  InstanceRecord inst = LaunchOne(type_);
  Squeue("42|RUNNING|n1|None\n");
  provider_->PollOnce();
  EXPECT_TRUE(provider_->TakeInterruptions().empty());
  Squeue("42|NODE_FAIL|n1|NodeDown\n");
  provider_->PollOnce();
  EXPECT_TRUE(provider_->IsAlive(inst));  // until the reason is taken
  auto taken = provider_->TakeInterruptions();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].instance_id, "inst-1");
  EXPECT_EQ(taken[0].reason,
            "Slurm job 42 on n1 NODE_FAIL (NodeDown): a node of the allocation failed");
  EXPECT_FALSE(provider_->IsAlive(inst));
  provider_->PollOnce();
  EXPECT_TRUE(provider_->TakeInterruptions().empty());
  EXPECT_TRUE(runner_->CallsOf("scancel").empty());  // nothing of it is left
}

TEST_F(SlurmProviderTest, RequeuedOrTooLongPendingJobsAreReportedAndCancelled) {
  Make();
  LaunchOne(type_);
  Squeue("42|RUNNING|n1|None\n");
  provider_->PollOnce();
  Squeue("42|PENDING||BeginTime\n");
  provider_->PollOnce();
  auto taken = provider_->TakeInterruptions();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_NE(taken[0].reason.find("Slurm requeued it"), std::string::npos) << taken[0].reason;
  ASSERT_EQ(runner_->CallsOf("scancel").size(), 1u);  // cancelled in the same round
  EXPECT_EQ(runner_->CallsOf("scancel")[0].argv[1], "42");

  Make();
  LaunchOne(type_);
  Squeue("42|PENDING||Resources\n");
  clock_.AdvanceMonotonic(100.5);  // pending_timeout_s is 100
  provider_->PollOnce();
  taken = provider_->TakeInterruptions();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_NE(taken[0].reason.find("still pending after 100 s (Resources): withdrawn"),
            std::string::npos)
      << taken[0].reason;
  EXPECT_EQ(runner_->CallsOf("scancel").size(), 1u);
}

// ---- the pending timeout and the vanish grace, on the provider's clock

TEST_F(SlurmProviderTest, APendingJobIsWithdrawnAtThePendingTimeoutNotBefore) {
  Make();  // pending_timeout_s = 100
  LaunchOne(type_);
  Squeue("42|PENDING||Priority\n");
  clock_.AdvanceMonotonic(99);
  provider_->PollOnce();
  EXPECT_TRUE(provider_->TakeInterruptions().empty()) << "99 s pending: it may still start";
  EXPECT_TRUE(runner_->CallsOf("scancel").empty());
  clock_.Advance(3600);  // the wall clock steps (NTP): nothing is timed by it
  provider_->PollOnce();
  EXPECT_TRUE(provider_->TakeInterruptions().empty());
  clock_.AdvanceMonotonic(2);
  provider_->PollOnce();
  std::vector<Interruption> taken = provider_->TakeInterruptions();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_NE(
      taken[0].reason.find("Slurm job 42 was still pending after 100 s (Priority): withdrawn"),
      std::string::npos)
      << taken[0].reason;
  ASSERT_EQ(runner_->CallsOf("scancel").size(), 1u);
  EXPECT_EQ(runner_->CallsOf("scancel")[0].argv[1], "42");
}

TEST_F(SlurmProviderTest, AJobMissingFromSqueueIsGoneOnlyAfterTheGrace) {
  Make();
  LaunchOne(type_);
  Squeue("");  // sbatch answered, squeue does not list it yet
  clock_.AdvanceMonotonic(9);
  provider_->PollOnce();
  EXPECT_TRUE(provider_->TakeInterruptions().empty()) << "squeue may lag sbatch";
  clock_.AdvanceMonotonic(2);
  provider_->PollOnce();
  std::vector<Interruption> taken = provider_->TakeInterruptions();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_NE(taken[0].reason.find("Slurm job 42 is gone from squeue"), std::string::npos)
      << taken[0].reason;
  EXPECT_TRUE(runner_->CallsOf("scancel").empty()) << "nothing to cancel";
}

TEST_F(SlurmProviderTest, TerminateScancelsAndRetriesUntilSlurmHasIt) {
  Make();
  InstanceRecord inst = LaunchOne(type_);
  scancel_ = Result(1, "", "scancel: error: Unable to contact slurm controller\n");
  EXPECT_FALSE(provider_->Terminate(inst).ok());
  EXPECT_FALSE(provider_->IsAlive(inst));
  provider_->PollOnce();
  EXPECT_EQ(runner_->CallsOf("scancel").size(), 2u);
  scancel_ = Result(0, "");
  provider_->PollOnce();
  provider_->PollOnce();
  EXPECT_EQ(runner_->CallsOf("scancel").size(), 3u);  // done: not asked again
  EXPECT_TRUE(runner_->CallsOf("squeue").empty());    // a terminated job is not watched
}

TEST_F(SlurmProviderTest, AnAdoptedJobThatIsGoneIsReported) {
  Make();
  InstanceRecord inst;
  inst.id = "inst-9";
  inst.info = {{"slurm_job_id", "7"}};
  EXPECT_TRUE(provider_->Adopt(inst));
  runner_->SetAnswer([](const CommandSpec& s) {
    return StatusOr<CommandResult>(s.argv[0] == "squeue" ? Result(0, "7|TIMEOUT|n2|TimeLimit\n")
                                                         : Result(0, ""));
  });
  provider_->PollOnce();
  auto taken = provider_->TakeInterruptions();
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].reason,
            "Slurm job 7 on n2 TIMEOUT (TimeLimit): the allocation reached its time limit");
}

TEST(SlurmSettingsTest, TyposAreErrorsThatNameTheKey) {
  StatusOr<SlurmSettings> s = SlurmSettings::FromJson({{"poll_interval", 1}}, "/h");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("unknown key \"poll_interval\""), std::string::npos);
  MachineType t = Type("t", 1, {{"partiton", "x"}});
  EXPECT_FALSE(SlurmRequest::ForType(t).ok());
  t.options = {{"nodes", 0}};
  EXPECT_FALSE(SlurmRequest::ForType(t).ok());
  EXPECT_EQ(SlurmSettings::FromJson(nlohmann::json::object(), "/h")->work_dir, "/h/instances");
  EXPECT_EQ(SlurmSettings::FromJson(nlohmann::json::object(), "/h")->server_home, "/h");
}

}  // namespace
}  // namespace yard
