// The scheduler with a provider whose grant comes later (GrantsLater): the
// real Controller and AwsProvider over an in-memory EC2 with faults
// (providers/fake_ec2_testing.h) and a fake clock. The provider's worker is
// off: Step() runs its queued EC2 calls and one round of its watching, as
// its thread would between two passes.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "common/files.h"
#include "common/hashing.h"
#include "common/manifest.h"
#include "common/temp_dir_testing.h"
#include "providers/aws_provider.h"
#include "providers/fake_ec2_testing.h"
#include "server/controller.h"

namespace yard {
namespace {

using test_support::TempDir;

class AwsSchedulingTest : public ::testing::Test {
 protected:
  // Types A (p2.xlarge) and B (g4dn.4xlarge), both aws; A without a catalog
  // spot price (EC2's is used).
  void Build(ControllerOptions opts = {}) {
    ASSERT_TRUE(WriteFileAtomic(dir_.path() + "/yard", "yard", 0755).ok());
    store_ = std::move(Store::Open(dir_.path() + "/state.db")).value();
    blobs_ =
        std::make_unique<BlobStore>(std::move(BlobStore::Open(dir_.path() + "/blobs")).value());
    settings_ = std::move(AwsSettings::FromJson({{"region", "us-east-1"}, {"connect", "direct"}},
                                                dir_.path()))
                    .value();
    NewProvider();
    Json catalog = {{"version", 1},
                    {"types",
                     {{{"name", "A"},
                       {"provider", "aws"},
                       {"gpus", 1},
                       {"on_demand_price", 0.9},
                       {"default_market", "spot"},
                       {"options", {{"instance_type", "p2.xlarge"}, {"ami", "ami-1"}}}},
                      {{"name", "B"},
                       {"provider", "aws"},
                       {"gpus", 1},
                       {"on_demand_price", 1.2},
                       {"spot_price", 0.4},
                       {"options", {{"instance_type", "g4dn.4xlarge"}, {"ami", "ami-1"}}}}}}};
    opts.default_machine = "A";
    controller_ = std::make_unique<Controller>(
        store_.get(), blobs_.get(), std::move(Catalog::FromJson(catalog)).value(),
        std::map<std::string, Provider*>{{"aws", aws_.get()}},
        AgentLaunchInfo{"http://127.0.0.1:9", "", "agent-token", dir_.path() + "/yard", ""},
        &clock_, opts);
    ASSERT_TRUE(controller_->Recover().ok());
  }

  void NewProvider() {
    aws_ = std::make_unique<AwsProvider>(settings_, ec2_, /*start_worker=*/false);
  }

  std::string Submit(std::vector<std::string> machines, Json extra = {}) {
    std::string data = "print('hi')\n";
    std::string h = Sha256Hex(data);
    EXPECT_TRUE(blobs_->Put(h, data).ok());
    EXPECT_TRUE(store_->AddBlobOwners("ann", {h}).ok());
    Manifest m;
    m.files.push_back(FileEntry{"train.py", 0644, data.size(), {{h, data.size()}}, ""});
    Json spec = {
        {"command", {"python3", "train.py"}}, {"bundle", m.ToJson()}, {"machines", machines}};
    if (extra.is_object()) spec.update(extra);
    StatusOr<JobRecord> job = controller_->SubmitJob("ann", spec);
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    return job.ok() ? job->id : "";
  }

  // A pass, the provider's EC2 calls and watching, and a pass again.
  void Step() {
    controller_->RunPass();
    aws_->RunTasks();
    aws_->PollOnce();
    aws_->RunTasks();
    controller_->RunPass();
    aws_->RunTasks();
  }

  JobRecord Job(const std::string& id) { return store_->GetJob(id).value(); }
  InstanceRecord Inst(const std::string& id) { return store_->GetInstance(id).value(); }

  std::string Events(const std::string& job_id) {
    std::string out;
    for (const auto& e : store_->ReadEvents(job_id, 0, 100000).value())
      out += e.body.value("message", "") + "\n";
    return out;
  }

  TempDir dir_;
  FakeClock clock_;
  std::shared_ptr<FakeEc2> ec2_ = std::make_shared<FakeEc2>();
  AwsSettings settings_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<AwsProvider> aws_;
  std::unique_ptr<Controller> controller_;
};

TEST_F(AwsSchedulingTest, CapacityAnswerFailsTheAttemptAtOnceAndTheNextTypeRuns) {
  Build();
  ec2_->run_faults["p2.xlarge"] = {};
  std::string job = Submit({"A", "B"}, {{"wait_request_s", 600}});
  Step();  // A refused, B requested: no time passed
  ec2_->SetAllRunning();
  Step();
  JobRecord j = Job(job);
  EXPECT_EQ(j.machine_type, "B");
  EXPECT_EQ(Inst(j.instance_id).state, instance_state::kProvisioning);
  std::string events = Events(job);
  EXPECT_NE(
      events.find("gave up on A: EC2 RunInstances: InsufficientInstanceCapacity: We currently"),
      std::string::npos)
      << events;
  EXPECT_NE(events.find("granted: new B instance"), std::string::npos) << events;
  ASSERT_EQ(ec2_->Live().size(), 1u);
  EXPECT_EQ(ec2_->Live()[0].instance_type, "g4dn.4xlarge");
  EXPECT_EQ(ec2_->Live()[0].state, "running");
  EXPECT_EQ(Inst(j.instance_id).info["ec2_instance_id"], ec2_->Live()[0].instance_id);
  // The agent dials in: the job starts there.
  ASSERT_TRUE(controller_->RegisterAgent(j.instance_id).ok());
  EXPECT_EQ(Job(job).state, job_state::kStarting);
}

// A fast boot: the agent dials in before the provider's poll has seen the
// instance running. It was left "provisioning" for ever, its agent idle.
TEST_F(AwsSchedulingTest, AnAgentThatDialsInBeforeEc2SaysRunningGetsTheJob) {
  Build();
  std::string job = Submit({"A"}, {{"wait_request_s", 600}});
  Step();
  std::string inst = Job(job).instance_id;
  ASSERT_EQ(Inst(inst).state, instance_state::kRequested);
  ASSERT_TRUE(controller_->RegisterAgent(inst).ok());
  EXPECT_EQ(Job(job).state, job_state::kStarting);
  EXPECT_NE(Events(job).find("granted: new A instance"), std::string::npos) << Events(job);
  // The record names the EC2 instance at once (what a restarted server
  // adopts, read here from the store), not only when the late "running" answer comes.
  ASSERT_EQ(ec2_->Live().size(), 1u);
  EXPECT_EQ(Inst(inst).info.value("ec2_instance_id", ""), ec2_->Live()[0].instance_id);
  ec2_->SetAllRunning();
  Step();  // the late "running" answer only adds what EC2 says of it
  EXPECT_EQ(Job(job).state, job_state::kStarting);
  ASSERT_EQ(ec2_->Live().size(), 1u);
  EXPECT_EQ(Inst(inst).info["ec2_instance_id"], ec2_->Live()[0].instance_id);
}

TEST_F(AwsSchedulingTest, InstanceStillPendingAtWaitRequestIsEndedAndTheNextTypeTried) {
  Build();
  std::string job = Submit({"A", "B"}, {{"wait_request_s", 30}});
  Step();
  std::string first = Job(job).instance_id;
  EXPECT_EQ(Inst(first).state, instance_state::kRequested);
  clock_.Advance(29.9);
  Step();
  EXPECT_EQ(Job(job).instance_id, first) << "not before wait_request_s";
  EXPECT_EQ(ec2_->runs.size(), 1u);
  clock_.Advance(0.1);
  Step();
  EXPECT_EQ(Inst(first).state, instance_state::kTerminated);
  EXPECT_NE(Events(job).find("gave up on A: not running within 30 s"), std::string::npos)
      << Events(job);
  ASSERT_EQ(ec2_->runs.size(), 2u);
  EXPECT_EQ(ec2_->runs[1].instance_type, "g4dn.4xlarge");
  std::vector<aws::Ec2Instance> live = ec2_->Live();
  ASSERT_EQ(live.size(), 1u) << "A's pending instance was terminated at EC2";
  EXPECT_EQ(live[0].instance_type, "g4dn.4xlarge");
  // Provisioning after the grant does not count against wait_request_s.
  ec2_->SetAllRunning();
  Step();
  clock_.Advance(3600);
  Step();
  EXPECT_EQ(Inst(Job(job).instance_id).state, instance_state::kProvisioning);
  EXPECT_EQ(Job(job).state, job_state::kRequesting);
}

TEST_F(AwsSchedulingTest, MissingPermissionFailsTheJobAtOnceWithoutFallback) {
  Build();
  ec2_->run_faults["p2.xlarge"] = {aws::Ec2ErrorKind::kAuth, "UnauthorizedOperation",
                                   "You are not authorized to perform this operation.",
                                   "ec2:RunInstances"};
  std::string job = Submit({"A", "B"});
  Step();
  JobRecord j = Job(job);
  EXPECT_EQ(j.state, job_state::kFailed);
  EXPECT_NE(j.message.find("UnauthorizedOperation: You are not authorized"), std::string::npos)
      << j.message;
  EXPECT_NE(j.message.find("ec2:RunInstances"), std::string::npos) << j.message;
  EXPECT_EQ(ec2_->runs.size(), 1u) << "B was never asked for";
  EXPECT_TRUE(ec2_->Live().empty());
}

TEST_F(AwsSchedulingTest, CancelWhilePendingOrProvisioningEndsTheEc2Instance) {
  Build();
  std::string pending = Submit({"A"});
  std::string booting = Submit({"B"});
  Step();
  // B's instance runs (granted, provisioning); A's stays pending.
  for (auto& [id, i] : ec2_->instances)
    if (i.instance_type == "g4dn.4xlarge") ec2_->SetState(id, "running");
  Step();
  ASSERT_EQ(Inst(Job(booting).instance_id).state, instance_state::kProvisioning);
  ASSERT_EQ(Inst(Job(pending).instance_id).state, instance_state::kRequested);
  ASSERT_TRUE(controller_->CancelJob("ann", pending).ok());
  ASSERT_TRUE(controller_->CancelJob("ann", booting).ok());
  aws_->RunTasks();
  EXPECT_TRUE(ec2_->Live().empty());
  EXPECT_EQ(Inst(Job(pending).instance_id).state, instance_state::kTerminated);
  EXPECT_EQ(Inst(Job(booting).instance_id).state, instance_state::kTerminated);
}

TEST_F(AwsSchedulingTest, AgentThatNeverDialsInIsEndedAtTheProvisioningTimeout) {
  ControllerOptions opts;
  opts.provisioning_timeout_s = 300;
  Build(opts);
  ec2_->start_running = true;
  std::string job = Submit({"A"}, {{"max_restarts", 0}});
  Step();
  std::string inst = Job(job).instance_id;
  ASSERT_EQ(Inst(inst).state, instance_state::kProvisioning);
  std::string ec2_id = Inst(inst).info["ec2_instance_id"];
  clock_.AdvanceMonotonic(299);
  Step();
  EXPECT_EQ(Inst(inst).state, instance_state::kProvisioning) << "not before the timeout";
  clock_.AdvanceMonotonic(2);
  Step();
  aws_->RunTasks();
  EXPECT_EQ(Inst(inst).state, instance_state::kLost);
  EXPECT_EQ(ec2_->instances[ec2_id].state, "terminated");
}

TEST_F(AwsSchedulingTest, JobEndWithoutCoolDownEndsTheEc2InstanceAndBillsEc2sSpotPrice) {
  Build();
  ec2_->start_running = true;
  ec2_->spot_prices = {{"p2.xlarge", "us-east-1b", 0.27, 0}, {"p2.xlarge", "us-east-1c", 0.5, 0}};
  std::string job = Submit({"A:spot"});
  Step();
  std::string inst = Job(job).instance_id;
  ASSERT_TRUE(controller_->RegisterAgent(inst).ok());
  Json work = controller_->PollWork(inst, 0).value();
  ASSERT_TRUE(work.contains("assign"));
  clock_.Advance(3600);
  Json exit = Json::array({{{"kind", "exit"}, {"exit_code", 0}, {"message", "done"}}});
  ASSERT_TRUE(controller_->AcceptAgentRecords(inst, job, work["assign"]["attempt"], 1, exit).ok());
  aws_->RunTasks();
  EXPECT_EQ(Inst(inst).state, instance_state::kTerminated);
  EXPECT_TRUE(ec2_->Live().empty());
  Json cost = controller_->CostFor("ann").value();
  EXPECT_NEAR(cost["total"].get<double>(), 0.27, 1e-9)
      << "one hour at EC2's spot price in us-east-1b";
}

TEST_F(AwsSchedulingTest, RestartKeepsTheRequestAndItsClock) {
  Build();
  std::string job = Submit({"A", "B"}, {{"wait_request_s", 30}});
  Step();
  std::string first = Job(job).instance_id;
  clock_.Advance(20);
  controller_.reset();
  Build();  // same store, a new controller and provider: adopts the request
  aws_->Tick(0);
  Step();
  EXPECT_EQ(Inst(first).state, instance_state::kRequested) << "still pending at EC2";
  clock_.Advance(10);
  Step();
  EXPECT_EQ(Inst(first).state, instance_state::kTerminated) << "30 s after the first request";
  EXPECT_EQ(ec2_->runs.back().instance_type, "g4dn.4xlarge");
}

}  // namespace
}  // namespace yard
