// The scheduling rules, driven through the real Controller and SimProvider
// with a fake clock. Agents are played by the test (it calls the agent-side
// methods), so every provider call and instance is counted exactly.
#include "server/controller.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include <filesystem>
#include <set>

#include "common/hashing.h"
#include "common/manifest.h"
#include "common/temp_dir_testing.h"
#include "providers/sim_provider.h"

namespace yard {
namespace {

// Records agent starts and stops instead of spawning processes.
class FakeSpawner : public AgentSpawner {
 public:
  StatusOr<int> Start(const AgentLaunchInfo& agent, const std::string& id, const std::string&,
                      const std::vector<std::string>&, const std::vector<std::string>&) override {
    started.push_back(id);
    bootstrap[id] = agent.agent_token;
    return static_cast<int>(started.size());
  }
  bool Alive(int handle, const std::string&) override { return !stopped.count(handle); }
  void Stop(int handle, const std::string&, bool, std::function<void()>) override {
    stopped.insert(handle);
  }
  std::vector<std::string> started;
  std::map<std::string, std::string> bootstrap;  // instance -> the token its agent got
  std::set<int> stopped;
};

constexpr double kSpot = 0.3, kOnDemand = 0.9;

// A sim cloud whose missing capacity comes back, as on the local host.
class HeldCapacitySim : public SimProvider {
 public:
  using SimProvider::SimProvider;
  bool CapacityComesBack(const MachineType&) const override { return true; }
};

// A sim cloud that asks, at each launch, whether the HTTP layer would already
// know the agent's bootstrap: an agent a fast login away (SSH) can dial in
// before Launch returns.
class BootstrapCheckingSim : public SimProvider {
 public:
  using SimProvider::SimProvider;
  Status Launch(const MachineType& type, const AgentLaunchInfo& agent,
                InstanceRecord* inst) override {
    if (credentials)
      known_at_launch.push_back(credentials->Identify(agent.agent_token).has_value());
    return SimProvider::Launch(type, agent, inst);
  }
  const AgentCredentials* credentials = nullptr;
  std::vector<bool> known_at_launch;
};

// Ann's uploaded chunk (13 bytes), and bob's job, assigned to his instance:
// the stage for an agent of bob's naming a chunk that is not his.
struct AnnsChunkAndBobsJob {
  std::string ann_chunk, bob, bob_inst;
};

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(Store::Open(dir_ / "state.db")).value();
    blobs_ = std::make_unique<BlobStore>(std::move(BlobStore::Open(dir_ / "blobs")).value());
  }
  void TearDown() override { controller_.reset(); }

  // Builds the controller over a sim cloud with types A (spot) and B. A's
  // catalog options are {zone: a, disk: ssd}; jobs may set its zone.
  void Build(int cap_a, int cap_b, ControllerOptions opts = {}) {
    Json scenario = {{"version", 1},
                     {"types",
                      {{"A",
                        {{"capacity", {{0, cap_a}}},
                         {"settings", {"zone"}},
                         {"provisioning_delay_s", provisioning_delay_a_}}},
                       {"B", {{"capacity", {{0, cap_b}}}}}}}};
    SimScenario parsed = std::move(SimScenario::FromJson(scenario)).value();
    if (check_bootstrap_)
      sim_ = std::make_unique<BootstrapCheckingSim>(std::move(parsed), dir_ / "instances", &clock_,
                                                    &spawner_);
    else if (capacity_comes_back_)
      sim_ = std::make_unique<HeldCapacitySim>(std::move(parsed), dir_ / "instances", &clock_,
                                               &spawner_);
    else
      sim_ =
          std::make_unique<SimProvider>(std::move(parsed), dir_ / "instances", &clock_, &spawner_);
    Json catalog = {{"version", 1}, {"types", Json::array()}};
    for (const char* name : {"A", "B"})
      catalog["types"].push_back({{"name", name},
                                  {"provider", "sim"},
                                  {"cpus", 4},
                                  {"spot_price", kSpot},
                                  {"on_demand_price", kOnDemand},
                                  {"default_market", "spot"}});
    catalog["types"][0]["options"] = {{"zone", "a"}, {"disk", "ssd"}};
    opts.default_machine = "A";
    controller_ = std::make_unique<Controller>(
        store_.get(), blobs_.get(), std::move(Catalog::FromJson(catalog)).value(),
        std::map<std::string, Provider*>{{"sim", sim_.get()}}, AgentLaunchInfo{}, &clock_, opts);
    ASSERT_TRUE(controller_->Recover().ok());
  }

  Json Bundle(const std::string& user, const std::string& data = "print('hi')\n") {
    std::string h = Sha256Hex(data);
    EXPECT_TRUE(blobs_->Put(h, data).ok());
    EXPECT_TRUE(store_->AddBlobOwners(user, {h}).ok());
    Manifest m;
    m.files.push_back(FileEntry{"train.py", 0644, data.size(), {{h, data.size()}}, ""});
    return m.ToJson();
  }

  std::string Submit(const std::string& user, std::vector<std::string> machines, Json extra = {}) {
    Json spec = {
        {"command", {"python3", "train.py"}}, {"bundle", Bundle(user)}, {"machines", machines}};
    if (extra.is_object()) spec.update(extra);
    StatusOr<JobRecord> job = controller_->SubmitJob(user, spec);
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    return job.ok() ? job->id : "";
  }

  JobRecord Job(const std::string& id) { return store_->GetJob(id).value(); }

  // Plays the agents: registers every started instance not yet registered.
  void RegisterStarted() {
    for (const auto& id : spawner_.started) {
      if (registered_.insert(id).second) {
        ASSERT_TRUE(controller_->RegisterAgent(id).ok());
      }
    }
  }

  // Passes until instances granted so far have started agents, lets those
  // agents register, and passes again.
  void Settle() {
    controller_->RunPass();  // places; the provider starts agents ready now
    controller_->RunPass();  // starts agents of instances granted in the last pass
    RegisterStarted();
    controller_->RunPass();
  }

  // The agent of `job`'s instance takes it and reports `records` then exit 0.
  void RunJob(const std::string& job_id, std::vector<Json> records, int exit_code = 0) {
    std::string inst = Job(job_id).instance_id;
    Json work = controller_->PollWork(inst, 0).value();
    ASSERT_TRUE(work.contains("assign")) << work.dump();
    last_assign_ = work["assign"];
    records.push_back({{"kind", "exit"}, {"exit_code", exit_code}, {"message", "done"}});
    ASSERT_TRUE(
        controller_->AcceptAgentRecords(inst, job_id, work["assign"]["attempt"], 1, records).ok());
  }

  std::vector<Json> Events(const std::string& job_id) {
    std::vector<Json> out;
    for (const auto& e : store_->ReadEvents(job_id, 0, 100000).value()) out.push_back(e.body);
    return out;
  }

  bool HasDecision(const std::string& job_id, const std::string& text) {
    for (const auto& e : Events(job_id))
      if (e.value("message", "").find(text) != std::string::npos) return true;
    return false;
  }

  AnnsChunkAndBobsJob AnnsChunkAndBobsRunningJob() {
    Build(5, 5);
    Json ann_bundle = Bundle("ann", "ann's secret\n");
    std::string ann_chunk = ann_bundle["files"][0]["chunks"][0][0];
    std::string bob = Submit("bob", {"A"});
    Settle();
    std::string bob_inst = Job(bob).instance_id;
    EXPECT_TRUE(controller_->PollWork(bob_inst, 0).value().contains("assign"));
    return {ann_chunk, bob, bob_inst};
  }

  test_support::TempDir tmp_;
  std::filesystem::path dir_ = tmp_.path();
  FakeClock clock_;
  FakeSpawner spawner_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<SimProvider> sim_;
  std::unique_ptr<Controller> controller_;
  std::set<std::string> registered_;
  Json last_assign_;
  bool capacity_comes_back_ = false;  // Build makes a HeldCapacitySim
  bool check_bootstrap_ = false;      // Build makes a BootstrapCheckingSim
  double provisioning_delay_a_ = 0;   // Build's type A: seconds before its agent starts
};

TEST_F(ControllerTest, FallsBackToTheNextTypeAfterExactlyWaitRequest) {
  Build(/*cap_a=*/0, /*cap_b=*/1);
  std::string job = Submit("ann", {"A", "B"}, {{"wait_request_s", 30}});
  controller_->RunPass();
  clock_.Advance(29.9);
  controller_->RunPass();
  EXPECT_EQ(sim_->launches(), 0) << "B must not be requested before wait_request_s";
  clock_.Advance(0.1);
  controller_->RunPass();
  EXPECT_EQ(sim_->launches(), 1);
  EXPECT_EQ(Job(job).machine_type, "B");
  EXPECT_TRUE(HasDecision(job, "gave up on A: no capacity granted within 30 s"));
  Settle();
  EXPECT_EQ(Job(job).state, job_state::kStarting);
}

TEST_F(ControllerTest, JobsOnTheLastTypeWaitForCapacityThatComesBackInsteadOfFailing) {
  capacity_comes_back_ = true;
  Build(/*cap_a=*/1, /*cap_b=*/0);
  std::vector<std::string> jobs;
  for (int i = 0; i < 3; ++i) jobs.push_back(Submit("ann", {"A"}, {{"wait_request_s", 1}}));
  Settle();
  EXPECT_EQ(Job(jobs[0]).state, job_state::kStarting);
  clock_.Advance(600);
  Settle();
  for (int i : {1, 2}) {
    EXPECT_EQ(Job(jobs[i]).state, job_state::kRequesting) << Job(jobs[i]).message;
    EXPECT_TRUE(HasDecision(jobs[i], "waiting for A: its capacity is in use by other jobs"));
  }
  for (int i : {0, 1}) {  // each end lets the next one in, in the order they came
    RunJob(jobs[i], {});
    Settle();
    EXPECT_EQ(Job(jobs[i + 1]).state, job_state::kStarting) << Job(jobs[i + 1]).message;
    if (i == 0) {
      EXPECT_EQ(Job(jobs[2]).state, job_state::kRequesting);
    }
  }
}

TEST_F(ControllerTest, HeldCapacityOfAnEarlierTypeStillFallsBack) {
  capacity_comes_back_ = true;
  Build(/*cap_a=*/1, /*cap_b=*/1);
  std::string first = Submit("ann", {"A"});
  Settle();
  std::string second = Submit("ann", {"A", "B"}, {{"wait_request_s", 5}});
  controller_->RunPass();
  clock_.Advance(5);
  Settle();
  EXPECT_EQ(Job(second).machine_type, "B");
  EXPECT_TRUE(HasDecision(second, "gave up on A: no capacity granted within 5 s"));
}

TEST_F(ControllerTest, AllTypesEmptyFailsListingEveryAttempt) {
  Build(0, 0);
  std::string job = Submit("ann", {"A", "B:on-demand"}, {{"wait_request_s", 10}});
  for (int i = 0; i < 3; ++i) {
    controller_->RunPass();
    clock_.Advance(10);
  }
  JobRecord j = Job(job);
  EXPECT_EQ(j.state, job_state::kFailed);
  EXPECT_NE(j.message.find("A: no capacity granted within 10 s"), std::string::npos) << j.message;
  EXPECT_NE(j.message.find("B: no capacity granted within 10 s"), std::string::npos) << j.message;
  EXPECT_EQ(sim_->launches(), 0);
}

TEST_F(ControllerTest, AnAgentsBootstrapIsKnownBeforeItsLaunchStarts) {
  check_bootstrap_ = true;
  Build(5, 5);
  auto* sim = static_cast<BootstrapCheckingSim*>(sim_.get());
  sim->credentials = &controller_->credentials();
  Submit("ann", {"A"});
  controller_->RunPass();
  ASSERT_EQ(sim->known_at_launch.size(), 1u);
  EXPECT_TRUE(sim->known_at_launch[0])
      << "an agent dialling in during Launch would be told its credential is unknown and exit";
}

TEST_F(ControllerTest, CoolingInstanceIsReusedBySameUserOnly) {
  Build(5, 5);
  std::string first = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  Settle();
  std::string inst = Job(first).instance_id;
  RunJob(first, {});
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kCooling);

  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  EXPECT_EQ(Job(second).instance_id, inst) << "same user and type: the cooling instance";
  EXPECT_EQ(Job(second).state, job_state::kStarting);
  EXPECT_EQ(sim_->launches(), 1) << "no new provider call";
  RunJob(second, {});

  std::string other = Submit("bob", {"A"});
  Settle();
  EXPECT_NE(Job(other).instance_id, inst) << "another user's job never takes it";
  EXPECT_EQ(sim_->launches(), 2);
}

TEST_F(ControllerTest, SettingsReachLaunchMergedOverTheCatalogOptions) {
  Build(5, 5);
  std::string job = Submit("ann", {"A"}, {{"settings", {{"zone", "b"}}}});
  Settle();
  std::string inst = Job(job).instance_id;
  ASSERT_FALSE(inst.empty());
  EXPECT_EQ(sim_->LaunchedOptions(inst), Json({{"zone", "b"}, {"disk", "ssd"}}));
  EXPECT_EQ(store_->GetInstance(inst)->info["settings"], Json({{"zone", "b"}}));
  EXPECT_EQ(Job(job).ToApiJson()["settings"], Json({{"zone", "b"}}));

  std::string plain = Submit("ann", {"A"});
  Settle();
  EXPECT_EQ(sim_->LaunchedOptions(Job(plain).instance_id), Json({{"zone", "a"}, {"disk", "ssd"}}))
      << "without settings: the catalog's options as they are";
}

TEST_F(ControllerTest, CoolingInstanceIsReusedOnlyByJobsWithTheSameSettings) {
  Build(10, 10);
  Json zone_b = {{"cool_down_s", 600}, {"settings", {{"zone", "b"}}}};
  std::string first = Submit("ann", {"A"}, zone_b);
  Settle();
  std::string b_inst = Job(first).instance_id;
  RunJob(first, {});
  ASSERT_EQ(store_->GetInstance(b_inst)->state, instance_state::kCooling);

  std::string other_zone =
      Submit("ann", {"A"}, {{"cool_down_s", 600}, {"settings", {{"zone", "c"}}}});
  Settle();
  EXPECT_NE(Job(other_zone).instance_id, b_inst) << "launched with other settings";
  std::string none = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  Settle();
  EXPECT_NE(Job(none).instance_id, b_inst) << "a job without settings takes no instance with some";
  EXPECT_EQ(sim_->launches(), 3);
  EXPECT_EQ(sim_->LaunchedOptions(Job(other_zone).instance_id)["zone"], "c");
  EXPECT_EQ(sim_->LaunchedOptions(Job(none).instance_id)["zone"], "a");

  std::string same = Submit("ann", {"A"}, zone_b);
  EXPECT_EQ(Job(same).instance_id, b_inst) << "same settings: the cooling instance, at once";
  EXPECT_EQ(Job(same).state, job_state::kStarting);
  RunJob(none, {});
  std::string with = Submit("ann", {"A"}, {{"settings", {{"zone", "c"}}}});
  Settle();
  EXPECT_NE(Job(with).instance_id, Job(none).instance_id)
      << "a job with settings takes no instance launched without";
  EXPECT_EQ(sim_->launches(), 4);
}

TEST_F(ControllerTest, UnknownSettingIsRefusedBeforeAnyLaunch) {
  Build(5, 5);
  auto submit = [&](std::vector<std::string> machines, Json settings) {
    Json spec = {{"command", {"python3", "train.py"}},
                 {"bundle", Bundle("ann")},
                 {"machines", machines},
                 {"settings", settings}};
    return controller_->SubmitJob("ann", spec).status();
  };
  Status s = submit({"A", "B"}, {{"zone", "b"}});
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("setting 'zone' is not accepted by machine type 'B' (provider sim): "
                             "it accepts no settings"),
            std::string::npos)
      << s.message();
  s = submit({}, {{"region", "eu"}});  // the default type, A
  EXPECT_NE(s.message().find("setting 'region' is not accepted by machine type 'A' (provider sim): "
                             "it accepts zone"),
            std::string::npos)
      << s.message();
  s = submit({"A"}, {{"zone", 3}});
  EXPECT_NE(s.message().find("setting 'zone' must be a string"), std::string::npos) << s.message();
  controller_->RunPass();
  EXPECT_EQ(sim_->launches(), 0);
  EXPECT_TRUE(store_->ListJobs("ann", "", "", 10)->empty()) << "no job was created";
}

TEST_F(ControllerTest, CoolingLaterTypeBeatsNewEarlierType) {
  Build(5, 5);
  std::string warm = Submit("ann", {"B"}, {{"cool_down_s", 600}});
  Settle();
  std::string b_inst = Job(warm).instance_id;
  RunJob(warm, {});
  std::string job = Submit("ann", {"A", "B"});
  EXPECT_EQ(Job(job).instance_id, b_inst);
  EXPECT_EQ(sim_->launches(), 1);
}

TEST_F(ControllerTest, InstanceEndsWhenCoolingExpires) {
  Build(5, 5);
  std::string job = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  Settle();
  std::string inst = Job(job).instance_id;
  RunJob(job, {});
  clock_.Advance(599);
  controller_->RunPass();
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kCooling);
  clock_.Advance(1);
  controller_->RunPass();
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kTerminated);
  EXPECT_EQ(spawner_.stopped.size(), 1u) << "the provider was told to end it";
  // The finished job and the ended instance leave no notifier entry behind.
  EXPECT_EQ(controller_->notifier().Version("job:" + job),
            controller_->notifier().Version("job:none"));
  // (It read 1 while EraseInstance forgot the instance's key through a
  // reference into the map entry it had just erased.)
  EXPECT_EQ(controller_->notifier().KeysHeld(), 0u) << "neither the job's key nor the instance's";
}

// Independent check of the price curve: numeric integration, 1 s steps.
double NumericCoolingCost(double seconds) {
  double total = 0;
  for (double t = 0.5; t < seconds; t += 1.0) {
    double minutes_past = std::max(0.0, (t - 600) / 60.0);
    total += std::min(kOnDemand, kSpot + 0.01 * (kOnDemand - kSpot) * minutes_past) / 3600.0;
  }
  return total;
}

TEST_F(ControllerTest, LedgerChargesSpotThenRisesToOnDemandWhileCooling) {
  Build(5, 5);
  std::string job = Submit("ann", {"A"}, {{"cool_down_s", 24 * 3600}});
  Settle();
  clock_.Advance(3600);  // one hour running at spot
  RunJob(job, {});
  auto cooling = [&] { return controller_->CostFor("ann")->at("by_kind").value("cooling", 0.0); };
  auto price = [&] {
    return controller_->ListInstancesFor("ann", false)->at(0)["price_per_hour"].get<double>();
  };
  EXPECT_NEAR(controller_->CostFor("ann")->at("by_kind")["running"].get<double>(), kSpot, 1e-9);
  clock_.Advance(600);
  EXPECT_NEAR(cooling(), kSpot * 600 / 3600, 1e-9);
  EXPECT_NEAR(price(), kSpot, 1e-12);
  clock_.Advance(60);
  EXPECT_NEAR(price(), kSpot + 0.01 * (kOnDemand - kSpot), 1e-12);
  clock_.Advance(110 * 60 - 660);
  EXPECT_NEAR(price(), kOnDemand, 1e-12) << "on-demand at 110 minutes";
  EXPECT_NEAR(cooling(), NumericCoolingCost(110 * 60), 1e-6);
  clock_.Advance(90 * 60);
  EXPECT_NEAR(price(), kOnDemand, 1e-12) << "and it stays there";
  EXPECT_NEAR(cooling(), NumericCoolingCost(200 * 60), 1e-6);
  // Reuse ends the period: the next one starts at spot again.
  std::string next = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  RunJob(next, {});
  EXPECT_NEAR(price(), kSpot, 1e-12);
}

TEST_F(ControllerTest, SixthJobWaitsAndStartsWhenOneFinishes) {
  Build(10, 10);
  std::vector<std::string> jobs;
  for (int i = 0; i < 6; ++i)
    jobs.push_back(Submit("ann", {"A"}, {{"wait_new_job_interval_s", 10}}));
  Settle();
  EXPECT_EQ(Job(jobs[5]).state, job_state::kWaiting);
  EXPECT_NE(Job(jobs[5]).message.find("1st in line"), std::string::npos) << Job(jobs[5]).message;
  EXPECT_EQ(sim_->launches(), 5);
  RunJob(jobs[0], {});
  controller_->RunPass();
  EXPECT_EQ(Job(jobs[5]).state, job_state::kWaiting) << "looks again only after the interval";
  clock_.Advance(10);
  Settle();
  EXPECT_EQ(Job(jobs[5]).state, job_state::kStarting);
}

TEST_F(ControllerTest, WaitingJobsStartInTheOrderTheyCameWhateverTheirIntervals) {
  ControllerOptions opts;
  opts.quota = {1, 5};
  Build(5, 5, opts);
  std::string running = Submit("ann", {"A"});
  Settle();
  std::string patient = Submit("ann", {"A"}, {{"wait_new_job_interval_s", 30}});
  clock_.Advance(1);
  std::string eager = Submit("ann", {"A"}, {{"wait_new_job_interval_s", 1}});
  RunJob(running, {});
  clock_.Advance(1);  // only the later job's check is due: the slot still goes to the first
  Settle();
  EXPECT_EQ(Job(patient).state, job_state::kStarting);
  EXPECT_EQ(Job(eager).state, job_state::kWaiting);
}

TEST_F(ControllerTest, WaitingJobGivesUpAfterWaitNewJob) {
  Build(10, 10);
  for (int i = 0; i < 5; ++i) Submit("ann", {"A"});
  std::string late =
      Submit("ann", {"A"}, {{"wait_new_job_s", 30}, {"wait_new_job_interval_s", 10}});
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(10);
    controller_->RunPass();
  }
  JobRecord j = Job(late);
  EXPECT_EQ(j.state, job_state::kFailed);
  EXPECT_NE(j.message.find("gave up after waiting 30 s"), std::string::npos) << j.message;
}

TEST_F(ControllerTest, CoolingInstanceOfAnotherTypeIsEndedWhenItAloneBlocks) {
  ControllerOptions opts;
  opts.quota = {5, 2};
  Build(10, 10, opts);
  std::vector<std::string> insts;
  for (int i = 0; i < 2; ++i) {
    std::string job = Submit("ann", {"B"}, {{"cool_down_s", 600}});
    Settle();
    insts.push_back(Job(job).instance_id);
    clock_.Advance(1);
  }
  for (const auto& i : insts) {
    std::string job = store_->GetInstance(i)->job_id;
    RunJob(job, {});
    clock_.Advance(1);
  }
  std::string a_job = Submit("ann", {"A"});
  Settle();
  EXPECT_EQ(store_->GetInstance(insts[0])->state, instance_state::kTerminated) << "the oldest";
  EXPECT_EQ(store_->GetInstance(insts[1])->state, instance_state::kCooling);
  EXPECT_EQ(Job(a_job).machine_type, "A");
  EXPECT_EQ(Job(a_job).state, job_state::kStarting);
}

TEST_F(ControllerTest, PreemptedJobResumesFromNewestCheckpointWithEveryLineOnce) {
  Build(5, 5);
  std::string job = Submit("ann", {"A"});
  Settle();
  std::string first = Job(job).instance_id;
  Json work = controller_->PollWork(first, 0).value();
  std::string ckpt = "weights-epoch-2";
  std::string h = Sha256Hex(ckpt);
  ASSERT_TRUE(blobs_->Put(h, ckpt).ok());
  ASSERT_TRUE(store_->AddBlobOwners("ann", {h}).ok());  // as the agent's PUT does
  Json entry =
      FileEntryToJson(FileEntry{"epoch-2.ckpt", 0644, ckpt.size(), {{h, ckpt.size()}}, ""});
  ASSERT_TRUE(
      controller_
          ->AcceptAgentRecords(first, job, 1, 1,
                               {{{"kind", "output"}, {"data", "epoch 1\n"}},
                                {{"kind", "output"}, {"data", "epoch 2\n"}},
                                {{"kind", "artifact"}, {"dir", "checkpoints"}, {"entry", entry}}})
          .ok());
  ASSERT_TRUE(sim_->InterruptNow(first, "spot interruption").ok());
  Settle();
  JobRecord j = Job(job);
  EXPECT_EQ(j.state, job_state::kStarting);
  EXPECT_NE(j.instance_id, first);
  EXPECT_EQ(sim_->launches(), 2);
  // A late, resent batch of the first run changes nothing.
  ASSERT_TRUE(
      controller_
          ->AcceptAgentRecords(first, job, 1, 1, {{{"kind", "output"}, {"data", "epoch 1\n"}}})
          .ok());
  RunJob(job, {{{"kind", "output"}, {"data", "epoch 3\n"}}});
  EXPECT_EQ(last_assign_["resume_from"]["entry"]["path"], "epoch-2.ckpt");
  std::string out;
  for (const auto& e : Events(job))
    if (e["kind"] == "output") out += e["data"].get<std::string>();
  EXPECT_EQ(out.find("epoch 1\nepoch 2\n----- yard: instance " + first + " was preempted"), 0u)
      << out;
  EXPECT_EQ(out.substr(out.size() - 8), "epoch 3\n");
  EXPECT_EQ(Job(job).state, job_state::kSucceeded);
}

// Found with fuzz/spool_fuzzer.cc: a record whose "kind" is not a string
// threw inside the batch's store transaction (500, and the transaction left
// open). It is refused like any other bad record, and the job goes on.
TEST_F(ControllerTest, ARecordWhoseKindIsNotAStringIsRefusedAndTheJobGoesOn) {
  Build(5, 5);
  std::string job = Submit("ann", {"A"});
  Settle();
  std::string inst = Job(job).instance_id;
  ASSERT_TRUE(controller_->PollWork(inst, 0).value().contains("assign"));
  StatusOr<int64_t> bad =
      controller_->AcceptAgentRecords(inst, job, 1, 1, {{{"kind", {{"x", 1}}}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument) << bad.status().ToString();
  ASSERT_TRUE(controller_
                  ->AcceptAgentRecords(inst, job, 1, 1,
                                       {{{"kind", "output"}, {"data", "fine\n"}},
                                        {{"kind", "exit"}, {"exit_code", 0}}})
                  .ok());
  EXPECT_EQ(Job(job).state, job_state::kSucceeded);
}

TEST_F(ControllerTest, ExitFromAnInstanceTheRequeuedJobLeftDoesNotEndTheJob) {
  Build(5, 5);
  std::string job = Submit("ann", {"A"}, {{"max_restarts", 1}});
  Settle();
  std::string first = Job(job).instance_id;
  ASSERT_TRUE(controller_->PollWork(first, 0).value().contains("assign"));
  ASSERT_TRUE(
      controller_
          ->AcceptAgentRecords(first, job, 1, 1, {{{"kind", "output"}, {"data", "step 1\n"}}})
          .ok());
  ASSERT_TRUE(controller_->AgentPreempted(first, "spot interruption notice").ok());
  ASSERT_EQ(Job(job).state, job_state::kRequesting);
  ASSERT_EQ(Job(job).attempt, 1) << "the attempt counts up at the next assignment";
  // The machine goes away: its agent's last records, the job killed by
  // SIGTERM among them, arrive under the same attempt.
  ASSERT_TRUE(controller_
                  ->AcceptAgentRecords(first, job, 1, 2,
                                       {{{"kind", "output"}, {"data", "step 2\n"}},
                                        {{"kind", "exit"},
                                         {"exit_code", 143},
                                         {"message", "killed by signal 15 (Terminated)"},
                                         {"cancelled", true}}})
                  .ok());
  EXPECT_EQ(Job(job).state, job_state::kRequesting) << "the next instance decides how the job ends";
  Settle();
  EXPECT_EQ(Job(job).state, job_state::kStarting);
  RunJob(job, {{{"kind", "output"}, {"data", "step 3\n"}}});
  EXPECT_EQ(Job(job).state, job_state::kSucceeded);
  std::string out, decisions;
  for (const auto& e : Events(job)) {
    if (e["kind"] == "output") out += e["data"].get<std::string>();
    if (e["kind"] == "decision") decisions += e.value("message", "") + "\n";
  }
  EXPECT_NE(out.find("step 2\n"), std::string::npos) << "the late output is kept: " << out;
  EXPECT_NE(decisions.find("instance " + first +
                           " reported the earlier run ended after the job was requeued"),
            std::string::npos)
      << decisions;
}

// The disk fills as an agent delivers a job's last output and exit: the
// store rolls the batch back. Before, the job had ended in memory only
// (FinishJob, the instance released) and the agent's resend, once there was
// room, was stored but ended nothing: the job stayed 'running' for ever.
// Now the controller says its memory is ahead of its store (the server then
// exits and recovers from the store); a refused batch changes nothing.
TEST_F(ControllerTest, ABatchTheStoreCannotHoldStopsTheControllerAndStoresNothingOfIt) {
  std::vector<std::string> diverged;
  ControllerOptions opts;
  opts.on_store_diverged = [&](const Status& s) { diverged.push_back(s.ToString()); };
  Build(5, 5, opts);
  std::string job = Submit("ann", {"A"});
  Settle();
  std::string inst = Job(job).instance_id;
  ASSERT_TRUE(controller_->PollWork(inst, 0).value().contains("assign"));
  Json out = {{"kind", "output"}, {"data", "step 1\n"}};
  // Refused before anything changes: the agent is told, the controller goes on.
  EXPECT_EQ(controller_->AcceptAgentRecords(inst, job, 1, 5, Json::array({out})).status().code(),
            Code::kFailedPrecondition);
  EXPECT_TRUE(diverged.empty());

  ASSERT_TRUE(store_->SetMaxPagesForTesting(1).ok());  // the disk is full
  // (Output bytes go to the job's output log, not SQLite: a big metric fills it.)
  Json big = {{"kind", "metric"}, {"values", {{"x", std::string(2 << 20, 'x')}}}};
  Json exit = {{"kind", "exit"}, {"exit_code", 0}, {"message", "done"}};
  StatusOr<int64_t> acked = controller_->AcceptAgentRecords(inst, job, 1, 1, {out, big, exit});
  EXPECT_EQ(acked.status().code(), Code::kInsufficientStorage) << acked.status().ToString();
  ASSERT_EQ(diverged.size(), 1u);
  EXPECT_NE(diverged[0].find("full"), std::string::npos) << diverged[0];
  // Nothing of the batch is stored: a restarted server takes the resend whole.
  JobRecord stored = Job(job);
  EXPECT_EQ(stored.state, job_state::kRunning);
  EXPECT_EQ(stored.run_acked, 0);
  for (const Json& e : Events(job)) EXPECT_NE(e["kind"], "output") << e.dump();
  ASSERT_TRUE(store_->SetMaxPagesForTesting(0).ok());
}

TEST_F(ControllerTest, OutputPastTheJobsCapIsDroppedAfterOneMarker) {
  ControllerOptions opts;
  opts.max_output_bytes_per_job = 10;
  Build(5, 5, opts);
  std::string job = Submit("ann", {"A"});
  Settle();
  std::string inst = Job(job).instance_id;
  ASSERT_TRUE(controller_->PollWork(inst, 0).value().contains("assign"));
  auto out = [](const std::string& s) { return Json{{"kind", "output"}, {"data", s}}; };
  ASSERT_TRUE(controller_
                  ->AcceptAgentRecords(inst, job, 1, 1,
                                       {out("12345678\n"), out("abcdefgh\n"), out("dropped1\n")})
                  .ok());
  // The count is stored with the job (a restarted server goes on from it).
  EXPECT_TRUE(Job(job).sched.output_capped);
  EXPECT_EQ(Job(job).sched.output_bytes, 18);
  ASSERT_TRUE(controller_
                  ->AcceptAgentRecords(
                      inst, job, 1, 4,
                      {out("dropped2\n"),
                       {{"kind", "decision"}, {"message", "still delivered"}},
                       {{"kind", "exit"}, {"exit_code", 0}, {"message", "exited with code 0"}}})
                  .ok());
  EXPECT_EQ(Job(job).state, job_state::kSucceeded) << Json(Events(job)).dump();
  std::string text;
  int markers = 0;
  bool decision = false;
  for (const auto& e : Events(job)) {
    if (e["kind"] == "output") text += e["data"].get<std::string>();
    decision |= e["kind"] == "decision" && e["message"] == "still delivered";
  }
  for (size_t at = 0; (at = text.find("output passed the server's cap", at)) != std::string::npos;
       ++at)
    ++markers;
  EXPECT_EQ(text.find("12345678\nabcdefgh\n----- yard: this job's output passed the server's cap"),
            0u)
      << text;
  EXPECT_EQ(markers, 1) << text;
  EXPECT_EQ(text.find("dropped"), std::string::npos) << text;
  EXPECT_TRUE(decision) << "records other than output still arrive";
}

// An agent killed and started again on its machine (same instance, same
// credential) registers once more. Its job's processes ended with the agent
// before it (yard-shim follows its agent), so the job is requeued and runs
// again on the same instance as its next attempt. Before, the register was
// answered as if nothing had happened and the job stayed running for ever.
TEST_F(ControllerTest, AnAgentStartedAgainOnItsMachineGetsItsJobBackAsTheNextAttempt) {
  Build(5, 5);
  std::string job = Submit("ann", {"A"}, {{"max_restarts", 1}});
  Settle();
  std::string inst = Job(job).instance_id;
  Json work = controller_->PollWork(inst, 0).value();
  ASSERT_TRUE(work.contains("assign")) << work.dump();
  ASSERT_TRUE(
      controller_->AcceptAgentRecords(inst, job, 1, 1, {{{"kind", "output"}, {"data", "one\n"}}})
          .ok());
  // The killed agent's long poll is still open on the server: it must not
  // take the job's next attempt (its socket is gone with it).
  std::thread stale([&] { EXPECT_EQ(controller_->PollWork(inst, 30).value(), Json::object()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the poll waits in PollWork
  ASSERT_TRUE(controller_->RegisterAgent(inst).ok());           // the agent, started again
  EXPECT_EQ(Job(job).state, job_state::kRequesting);
  Settle();
  stale.join();
  EXPECT_EQ(Job(job).instance_id, inst) << "the same live instance takes it again";
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kBusy);
  EXPECT_EQ(spawner_.started.size(), 1u) << "no new instance";
  RunJob(job, {{{"kind", "output"}, {"data", "two\n"}}});
  EXPECT_EQ(last_assign_["attempt"], 2);
  EXPECT_EQ(Job(job).state, job_state::kSucceeded);
  EXPECT_TRUE(HasDecision(job, "the agent of instance " + inst + " started again on its machine"));
  std::string out;
  for (const auto& e : Events(job))
    if (e["kind"] == "output") out += e["data"].get<std::string>();
  EXPECT_EQ(out.find("one\n----- yard: the agent of instance " + inst + " started again"), 0u)
      << out;
  EXPECT_NE(out.find("two\n"), std::string::npos) << out;
}

// A register repeated before the job was handed to the agent (the answer to
// the first one was lost) leaves the assignment alone; with no restarts left
// a job taken back fails, and the instance stays for its user.
TEST_F(ControllerTest, ARegisterRepeatedBeforeTheJobWasHandedOutChangesNothing) {
  Build(5, 5);
  std::string job = Submit("ann", {"A"}, {{"max_restarts", 0}});
  Settle();
  std::string inst = Job(job).instance_id;
  ASSERT_EQ(Job(job).state, job_state::kStarting);
  ASSERT_TRUE(controller_->RegisterAgent(inst).ok());
  EXPECT_EQ(Job(job).state, job_state::kStarting);
  ASSERT_TRUE(controller_->PollWork(inst, 0).value().contains("assign"));
  ASSERT_TRUE(controller_->RegisterAgent(inst).ok());  // now a restart
  JobRecord j = Job(job);
  EXPECT_EQ(j.state, job_state::kFailed);
  EXPECT_NE(j.message.find("started again on its machine"), std::string::npos) << j.message;
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kIdle)
      << "alive and registered: kept";
}

// A restarted server adopts the simulated instances whose agents still run:
// the agent's pid is stored when it registers (SimProvider::KnownInfo) and
// the new server's sim finds the agent by it. Before, no pid was stored:
// every sim instance was lost on a restart, its job requeued, and its agent
// left running. An instance whose agent died meanwhile is lost, billed to then.
TEST_F(ControllerTest, ARestartedServerAdoptsTheSimInstancesWhoseAgentsStillRun) {
  Build(2, 0);
  std::string kept = Submit("ann", {"A"}, {{"max_restarts", 0}});
  std::string gone = Submit("ann", {"A"}, {{"max_restarts", 1}});
  Settle();
  std::string inst = Job(kept).instance_id, dead = Job(gone).instance_id;
  ASSERT_TRUE(controller_->PollWork(inst, 0).value().contains("assign"));
  ASSERT_TRUE(controller_->PollWork(dead, 0).value().contains("assign"));
  int pid = store_->GetInstance(inst)->info.value("pid", 0);
  EXPECT_GT(pid, 0) << "stored when its agent registered";
  controller_.reset();
  std::unique_ptr<SimProvider> old_sim = std::move(sim_);                    // its agents live on
  spawner_.stopped.insert(store_->GetInstance(dead)->info.value("pid", 0));  // this one died
  clock_.Advance(60);
  Build(2, 0);  // the same store: a restarted server
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kBusy);
  EXPECT_EQ(Job(kept).state, job_state::kRunning);
  EXPECT_FALSE(spawner_.stopped.count(pid)) << "its agent goes on";
  ASSERT_TRUE(
      controller_->AcceptAgentRecords(inst, kept, 1, 1, {{{"kind", "exit"}, {"exit_code", 0}}})
          .ok());
  EXPECT_EQ(Job(kept).state, job_state::kSucceeded);
  InstanceRecord lost = store_->GetInstance(dead).value();
  EXPECT_EQ(lost.state, instance_state::kLost);
  EXPECT_NE(lost.info.value("lost_because", "").find("gone when the server restarted"),
            std::string::npos);
  EXPECT_EQ(Job(gone).state, job_state::kRequesting) << "requeued";
}

// A restarted server adopts a sim instance whose agent had not registered:
// its agent is started when its provisioning delay ends, with the bootstrap
// the store knows, and takes the job. Before, it was lost (its bootstrap
// never stored), its job requeued on a new instance and the first billed.
TEST_F(ControllerTest, ARestartedServerAdoptsASimInstanceWhoseAgentHadNotStarted) {
  provisioning_delay_a_ = 30;
  Build(1, 0);
  std::string job = Submit("ann", {"A"}, {{"max_restarts", 0}});
  controller_->RunPass();  // granted; its agent starts 30 s from now
  std::string inst = Job(job).instance_id;
  ASSERT_FALSE(inst.empty());
  ASSERT_TRUE(spawner_.started.empty());
  controller_.reset();  // the server dies
  sim_.reset();
  clock_.Advance(10);
  Build(1, 0);  // the same store and instance folders: a restarted server
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kProvisioning) << "adopted, not lost";
  controller_->RunPass();
  EXPECT_TRUE(spawner_.started.empty()) << "20 s of its provisioning delay are left";
  clock_.Advance(20);
  controller_->RunPass();
  ASSERT_EQ(spawner_.started, std::vector<std::string>{inst});
  EXPECT_EQ(sim_->launches(), 0) << "no second instance";
  std::optional<TokenInfo> who = controller_->credentials().Identify(spawner_.bootstrap[inst]);
  ASSERT_TRUE(who) << "its agent has the bootstrap the store knows";
  EXPECT_EQ(who->kind, "bootstrap");
  EXPECT_EQ(who->instance, inst);
  RegisterStarted();
  controller_->RunPass();
  EXPECT_EQ(Job(job).instance_id, inst);
  RunJob(job, {});
  EXPECT_EQ(Job(job).state, job_state::kSucceeded);
  EXPECT_EQ(Job(job).attempt, 1) << "never requeued";
}

// The same for an agent that had started but not registered: it goes on
// (not started a second time) and registers with its bootstrap. One that
// never registers is reclaimed at the provisioning timeout, not leaked.
TEST_F(ControllerTest, ARestartedServerAdoptsARunningUnregisteredSimAgentAndReclaimsASilentOne) {
  ControllerOptions opts;
  opts.provisioning_timeout_s = 60;
  Build(2, 0, opts);
  std::string late = Submit("ann", {"A"}, {{"max_restarts", 0}});
  std::string silent = Submit("ann", {"A"}, {{"max_restarts", 0}});
  controller_->RunPass();
  controller_->RunPass();  // both agents start
  ASSERT_EQ(spawner_.started.size(), 2u);
  std::string inst = Job(late).instance_id, mute = Job(silent).instance_id;
  EXPECT_FALSE(store_->GetInstance(inst)->info.contains("pid")) << "not registered yet";
  controller_.reset();
  sim_.reset();
  Build(2, 0, opts);
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kProvisioning) << "adopted";
  EXPECT_EQ(store_->GetInstance(mute)->state, instance_state::kProvisioning) << "adopted";
  controller_->RunPass();
  EXPECT_EQ(spawner_.started.size(), 2u) << "their agents go on: none started again";
  ASSERT_TRUE(controller_->RegisterAgent(inst).ok());
  controller_->RunPass();
  RunJob(late, {});
  EXPECT_EQ(Job(late).state, job_state::kSucceeded);
  EXPECT_GT(store_->GetInstance(inst)->info.value("pid", 0), 0) << "stored at its register";
  // FakeSpawner's handles count its starts from 1.
  int mute_agent =
      static_cast<int>(std::find(spawner_.started.begin(), spawner_.started.end(), mute) -
                       spawner_.started.begin() + 1);
  EXPECT_FALSE(spawner_.stopped.count(mute_agent));
  clock_.AdvanceMonotonic(61);
  controller_->RunPass();
  InstanceRecord reclaimed = store_->GetInstance(mute).value();
  EXPECT_EQ(reclaimed.state, instance_state::kLost);
  EXPECT_NE(reclaimed.info.value("lost_because", "").find("did not register within"),
            std::string::npos)
      << reclaimed.info.dump();
  EXPECT_TRUE(spawner_.stopped.count(mute_agent)) << "its agent is ended";
}

// An unregistered instance whose agent died while no server ran, or whose
// launch record is gone, cannot be adopted: lost, its job requeued.
TEST_F(ControllerTest, AnUnregisteredSimInstanceWhoseAgentDiedOrWhoseRecordIsGoneIsLost) {
  Build(2, 0);
  std::string died = Submit("ann", {"A"}, {{"max_restarts", 1}});
  std::string unknown = Submit("ann", {"A"}, {{"max_restarts", 1}});
  controller_->RunPass();
  controller_->RunPass();
  ASSERT_EQ(spawner_.started.size(), 2u);
  std::string dead = Job(died).instance_id, bare = Job(unknown).instance_id;
  controller_.reset();
  sim_.reset();
  spawner_.stopped.insert(1);  // the first agent started died
  ASSERT_EQ(spawner_.started[0], dead);
  std::filesystem::remove(dir_ / "instances" / bare / SimProvider::kLaunchRecordFile);
  Build(2, 0);
  for (const std::string& id : {dead, bare}) {
    InstanceRecord lost = store_->GetInstance(id).value();
    EXPECT_EQ(lost.state, instance_state::kLost) << id;
    EXPECT_NE(lost.info.value("lost_because", "").find("gone when the server restarted"),
              std::string::npos)
        << lost.info.dump();
  }
  EXPECT_EQ(Job(died).state, job_state::kRequesting) << "requeued";
  EXPECT_EQ(Job(unknown).state, job_state::kRequesting) << "requeued";
}

TEST_F(ControllerTest, AgentReportedPreemptionRequeuesAtOnceAndEndsTheInstance) {
  Build(5, 5);
  std::string job = Submit("ann", {"A"}, {{"max_restarts", 1}});
  Settle();
  std::string first = Job(job).instance_id;
  ASSERT_TRUE(controller_->PollWork(first, 0).value().contains("assign"));
  std::string ckpt = "weights-epoch-1-step-7";
  std::string h = Sha256Hex(ckpt);
  ASSERT_TRUE(blobs_->Put(h, ckpt).ok());
  ASSERT_TRUE(store_->AddBlobOwners("ann", {h}).ok());  // as the agent's PUT does
  Json entry = FileEntryToJson(
      FileEntry{"epoch-001-step-7.ckpt", 0644, ckpt.size(), {{h, ckpt.size()}}, ""});
  ASSERT_TRUE(
      controller_
          ->AcceptAgentRecords(
              first, job, 1, 1,
              {{{"kind", "output"}, {"data", "step 7\n"}},
               {{"kind", "decision"}, {"message", "spot interruption notice: told the job"}},
               {{"kind", "artifact"}, {"dir", "checkpoints"}, {"entry", entry}}})
          .ok());
  EXPECT_EQ(
      controller_->AcceptAgentRecords(first, job, 1, 4, {{{"kind", "decision"}}}).status().code(),
      Code::kInvalidArgument)
      << "a decision needs its message";
  // Heartbeats are still fresh: without the report nothing would happen yet.
  ASSERT_TRUE(controller_->AgentPreempted(first, "spot interruption notice").ok());
  EXPECT_EQ(store_->GetInstance(first)->state, instance_state::kLost);
  EXPECT_EQ(spawner_.stopped.size(), 1u) << "the provider ended the instance";
  EXPECT_EQ(controller_->AgentPreempted(first, "again").code(), Code::kNotFound);
  Settle();
  EXPECT_EQ(Job(job).state, job_state::kStarting);
  RunJob(job, {{{"kind", "output"}, {"data", "step 8\n"}}});
  EXPECT_EQ(last_assign_["resume_from"]["entry"]["path"], "epoch-001-step-7.ckpt");
  std::string out;
  bool decision = false;
  for (const auto& e : Events(job)) {
    if (e["kind"] == "output") out += e["data"].get<std::string>();
    decision |= e["kind"] == "decision" &&
                e["message"] == "spot interruption notice: told the job" && e["instance"] == first;
  }
  EXPECT_TRUE(decision) << "the agent's decision record is in the job's events";
  EXPECT_EQ(out.find("step 7\n----- yard: instance " + first +
                     " was preempted (spot interruption notice)"),
            0u)
      << out;
  EXPECT_EQ(Job(job).state, job_state::kSucceeded);
}

TEST_F(ControllerTest, ScenarioInterruptionsTakeSpotInstances) {
  Json scenario = {{"version", 1}, {"types", {{"A", {{"interruptions", {100}}}}}}};
  sim_ = std::make_unique<SimProvider>(std::move(SimScenario::FromJson(scenario)).value(),
                                       dir_ / "instances", &clock_, &spawner_);
  Json catalog = {{"version", 1},
                  {"types", {{{"name", "A"}, {"provider", "sim"}, {"default_market", "spot"}}}}};
  controller_ = std::make_unique<Controller>(store_.get(), blobs_.get(),
                                             std::move(Catalog::FromJson(catalog)).value(),
                                             std::map<std::string, Provider*>{{"sim", sim_.get()}},
                                             AgentLaunchInfo{}, &clock_, ControllerOptions{});
  std::string job = Submit("ann", {"A"}, {{"max_restarts", 0}});
  Settle();
  clock_.Advance(100);
  controller_->RunPass();
  JobRecord j = Job(job);
  EXPECT_EQ(j.state, job_state::kFailed);
  EXPECT_NE(j.message.find("preempted (spot interruption"), std::string::npos) << j.message;
}

// ---- the grouped queue (docs/scheduling.md, "Cost of a pass") ----

// Submits `n` jobs of `user` for `machines` with one shared bundle (fast:
// the helper Submit uploads a bundle per job).
std::vector<std::string> SubmitMany(Controller* c, Json bundle, const std::string& user, int n,
                                    std::vector<std::string> machines,
                                    Json extra = Json::object()) {
  Json spec = {{"command", {"true"}}, {"bundle", bundle}, {"machines", machines}};
  spec.update(extra);
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    StatusOr<JobRecord> job = c->SubmitJob(user, spec);
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    if (job.ok()) ids.push_back(job->id);
  }
  return ids;
}

TEST_F(ControllerTest, PassOverTenThousandQueuedJobsVisitsOneJobPerGroup) {
  ControllerOptions opts;
  opts.quota = {1 << 20, 2};
  Build(/*cap_a=*/1, /*cap_b=*/100, opts);
  Json bundle = Bundle("ann");
  // ann: two running jobs fill her instance quota; bob: A's capacity is gone.
  SubmitMany(controller_.get(), bundle, "ann", 2, {"B"});
  Settle();
  std::string bob_first = SubmitMany(controller_.get(), Bundle("bob"), "bob", 1, {"A"})[0];
  Settle();
  ASSERT_EQ(Job(bob_first).state, job_state::kStarting);
  int launches = sim_->launches();
  // 10,000 queued jobs in four groups.
  SubmitMany(controller_.get(), bundle, "ann", 4000, {"B"});
  SubmitMany(controller_.get(), bundle, "ann", 3000, {"A", "B"});
  SubmitMany(controller_.get(), Bundle("bob"), "bob", 2000, {"A"});
  SubmitMany(controller_.get(), Bundle("bob"), "bob", 1000, {"A:on-demand"});
  Controller::PassStats before = controller_->pass_stats();
  for (int i = 0; i < 3; ++i) controller_->RunPass();
  Controller::PassStats after = controller_->pass_stats();
  EXPECT_EQ(after.visits - before.visits, 3u * 4) << "one visit per group and pass, not per job";
  EXPECT_EQ(after.placements, before.placements);
  EXPECT_EQ(sim_->launches(), launches);
}

TEST_F(ControllerTest, CancelledQueuedJobLeavesItsGroupAndTheNextTakesItsPlace) {
  Json scenario = {{"version", 1}, {"types", {{"A", {{"capacity", {{0, 0}, {100, 1}}}}}}}};
  sim_ = std::make_unique<SimProvider>(std::move(SimScenario::FromJson(scenario)).value(),
                                       dir_ / "instances", &clock_, &spawner_);
  Json catalog = {{"version", 1}, {"types", {{{"name", "A"}, {"provider", "sim"}}}}};
  controller_ = std::make_unique<Controller>(store_.get(), blobs_.get(),
                                             std::move(Catalog::FromJson(catalog)).value(),
                                             std::map<std::string, Provider*>{{"sim", sim_.get()}},
                                             AgentLaunchInfo{}, &clock_, ControllerOptions{});
  std::vector<std::string> jobs;
  for (int i = 0; i < 3; ++i) jobs.push_back(Submit("ann", {"A"}, {{"wait_request_s", 1000}}));
  controller_->RunPass();
  ASSERT_TRUE(controller_->CancelJob("ann", jobs[0]).ok());
  EXPECT_EQ(Job(jobs[0]).state, job_state::kCancelled);
  clock_.Advance(100);
  Settle();
  EXPECT_EQ(Job(jobs[1]).state, job_state::kStarting) << "the next in line";
  EXPECT_EQ(Job(jobs[2]).state, job_state::kRequesting);
  EXPECT_EQ(sim_->launches(), 1);
}

TEST_F(ControllerTest, PreemptedJobGoesBeforeTheQueuedJobsOfItsGroup) {
  Build(/*cap_a=*/1, /*cap_b=*/0);
  std::string first = Submit("ann", {"A"}, {{"wait_request_s", 1000}});
  Settle();
  std::string inst = Job(first).instance_id;
  std::string second = Submit("ann", {"A"}, {{"wait_request_s", 1000}});
  std::string third = Submit("ann", {"A"}, {{"wait_request_s", 1000}});
  controller_->RunPass();
  ASSERT_TRUE(sim_->InterruptNow(inst, "spot interruption").ok());
  Settle();
  EXPECT_EQ(Job(first).state, job_state::kStarting) << "requeued at the front";
  EXPECT_NE(Job(first).instance_id, inst);
  EXPECT_EQ(Job(second).state, job_state::kRequesting);
  EXPECT_EQ(Job(third).state, job_state::kRequesting);
  RunJob(first, {});
  Settle();
  EXPECT_EQ(Job(second).state, job_state::kStarting) << "then the queue's order";
  EXPECT_EQ(Job(third).state, job_state::kRequesting);
}

TEST_F(ControllerTest, JobsBehindTheFirstOfTheirGroupFallBackAtTheirOwnDeadline) {
  Build(/*cap_a=*/0, /*cap_b=*/5);
  std::string patient = Submit("ann", {"A", "B"}, {{"wait_request_s", 100}});
  std::string early = Submit("ann", {"A", "B"}, {{"wait_request_s", 30}});
  clock_.Advance(10);
  std::string late = Submit("ann", {"A", "B"}, {{"wait_request_s", 30}});
  clock_.Advance(19.5);
  controller_->RunPass();
  EXPECT_EQ(sim_->launches(), 0);
  clock_.Advance(0.5);  // t = 30: `early`, second in line, is due
  controller_->RunPass();
  EXPECT_EQ(Job(early).machine_type, "B");
  EXPECT_TRUE(HasDecision(early, "gave up on A: no capacity granted within 30 s"));
  EXPECT_FALSE(HasDecision(late, "gave up on A"));
  EXPECT_FALSE(HasDecision(patient, "gave up on A"));
  clock_.Advance(10);  // t = 40
  controller_->RunPass();
  EXPECT_EQ(Job(late).machine_type, "B");
  EXPECT_FALSE(HasDecision(patient, "gave up on A"));
  clock_.Advance(60);  // t = 100
  controller_->RunPass();
  EXPECT_EQ(Job(patient).machine_type, "B");
  EXPECT_EQ(sim_->launches(), 3);
}

TEST_F(ControllerTest, FallbackClockStandsStillWhileTheInstanceQuotaHoldsTheJob) {
  ControllerOptions opts;
  opts.quota = {5, 1};
  Build(/*cap_a=*/0, /*cap_b=*/1, opts);
  std::string busy = Submit("ann", {"B"});
  Settle();
  std::string held = Submit("ann", {"A", "B"}, {{"wait_request_s", 30}});
  for (int i = 0; i < 6; ++i) {
    clock_.Advance(10);
    controller_->RunPass();
  }  // t = 60
  EXPECT_TRUE(HasDecision(held, "instances (the limit)"));
  EXPECT_FALSE(HasDecision(held, "gave up on A")) << "held by the quota, not refused by the cloud";
  RunJob(busy, {});  // no cool-down: its instance ends, room for one
  controller_->RunPass();
  clock_.Advance(29);
  controller_->RunPass();
  EXPECT_FALSE(HasDecision(held, "gave up on A"));
  clock_.Advance(1);  // 30 s after the quota last held it
  Settle();
  EXPECT_TRUE(HasDecision(held, "gave up on A: no capacity granted within 30 s"));
  EXPECT_EQ(Job(held).state, job_state::kStarting);
  EXPECT_EQ(Job(held).machine_type, "B");
}

TEST_F(ControllerTest, LostReservedInstanceSendsItsJobBackToItsPlace) {
  Build(/*cap_a=*/1, /*cap_b=*/0);
  std::string first = Submit("ann", {"A"}, {{"wait_request_s", 1000}});
  std::string second = Submit("ann", {"A"}, {{"wait_request_s", 1000}});
  controller_->RunPass();
  std::string inst = Job(first).instance_id;
  ASSERT_FALSE(inst.empty()) << "granted, provisioning";
  ASSERT_TRUE(sim_->InterruptNow(inst, "capacity reclaimed").ok());
  registered_.insert(inst);  // its agent never registers
  controller_->RunPass();    // notices the loss; A's capacity is back
  Settle();
  EXPECT_EQ(Job(first).state, job_state::kStarting);
  EXPECT_EQ(Job(second).state, job_state::kRequesting);
  EXPECT_TRUE(HasDecision(first, "capacity reclaimed"));
}

TEST_F(ControllerTest, WaitingJobsAreLookedAtOnlyWhenTheirCheckIsDue) {
  ControllerOptions opts;
  opts.quota = {1, 5};
  Build(5, 5, opts);
  Json bundle = Bundle("ann");
  std::string running = SubmitMany(controller_.get(), bundle, "ann", 1, {"A"})[0];
  Settle();
  std::vector<std::string> waiting;
  for (int i = 0; i < 400; ++i) {  // over 8 s: one check due every 20 ms of a 10 s interval
    waiting.push_back(SubmitMany(controller_.get(), bundle, "ann", 1, {"A"},
                                 {{"wait_new_job_interval_s", 10}})[0]);
    clock_.Advance(0.02);
  }
  EXPECT_NE(Job(waiting[399]).message.find("400th in line"), std::string::npos)
      << Job(waiting[399]).message;
  RunJob(running, {});  // a slot is free; the next due check takes it
  Controller::PassStats before = controller_->pass_stats();
  controller_->RunPass();
  EXPECT_EQ(controller_->pass_stats().waiting_checks - before.waiting_checks, 0u) << "none due yet";
  clock_.Advance(2.01);  // waiting[0]'s first check is due (10 s after it came), only its
  Settle();
  EXPECT_EQ(controller_->pass_stats().waiting_checks - before.waiting_checks, 1u);
  EXPECT_EQ(Job(waiting[0]).state, job_state::kStarting);
  EXPECT_EQ(Job(waiting[1]).state, job_state::kWaiting);
}

// ---- liveness on the controller's monotonic clock (server/lifecycle.cc)

TEST_F(ControllerTest, AnInstanceSilentPastTheHeartbeatTimeoutIsLostAndItsJobRequeued) {
  ControllerOptions opts;
  opts.heartbeat_timeout_s = 10;
  Build(5, 5, opts);
  std::string job = Submit("ann", {"A"});
  Settle();
  std::string inst = Job(job).instance_id;
  ASSERT_TRUE(controller_->PollWork(inst, 0).value().contains("assign"));
  clock_.AdvanceMonotonic(9.5);
  controller_->RunPass();
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kBusy) << "not before the timeout";
  ASSERT_TRUE(controller_->Heartbeat(inst).ok());
  clock_.AdvanceMonotonic(9.5);  // 19 s since it was assigned, 9.5 s since its last heartbeat
  controller_->RunPass();
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kBusy)
      << "a heartbeat starts the count again";
  clock_.AdvanceMonotonic(1.0);
  controller_->RunPass();
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kLost);
  JobRecord j = Job(job);
  EXPECT_EQ(j.state, job_state::kRequesting);
  bool said = false;
  for (const auto& e : Events(job))
    said |=
        e.value("message", "").find("instance " + inst + " was lost (no heartbeat for 10.5 s)") !=
        std::string::npos;
  EXPECT_TRUE(said) << Json(Events(job)).dump();
}

TEST_F(ControllerTest, AWallClockStepLosesNoInstance) {
  ControllerOptions opts;
  opts.heartbeat_timeout_s = 10;
  Build(5, 5, opts);
  std::string job = Submit("ann", {"A"});
  Settle();
  std::string inst = Job(job).instance_id;
  ASSERT_TRUE(controller_->PollWork(inst, 0).value().contains("assign"));
  clock_.Set(clock_.Now() + 3600);  // NTP steps the wall clock an hour ahead
  controller_->RunPass();
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kBusy);
  EXPECT_EQ(Job(job).state, job_state::kRunning);
}

TEST_F(ControllerTest, AGrantedInstanceWhoseAgentNeverRegistersIsEndedAtTheProvisioningTimeout) {
  ControllerOptions opts;
  opts.provisioning_timeout_s = 300;
  Build(5, 5, opts);
  std::string job = Submit("ann", {"A"});
  controller_->RunPass();
  controller_->RunPass();  // granted, its agent started: it never dials in
  std::string inst = Job(job).instance_id;
  ASSERT_EQ(store_->GetInstance(inst)->state, instance_state::kProvisioning);
  ASSERT_EQ(spawner_.started.size(), 1u);
  clock_.AdvanceMonotonic(299);
  controller_->RunPass();
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kProvisioning)
      << "not before the timeout";
  clock_.AdvanceMonotonic(2);
  controller_->RunPass();
  EXPECT_EQ(store_->GetInstance(inst)->state, instance_state::kLost);
  EXPECT_EQ(spawner_.stopped.size(), 1u) << "the provider ended it: nothing left running";
  bool said = false;
  for (const auto& e : Events(job))
    said |= e.value("message", "").find("did not register within 300 s") != std::string::npos;
  EXPECT_TRUE(said) << Json(Events(job)).dump();
  registered_.insert(inst);  // its agent never comes: only the new one registers
  Settle();
  EXPECT_EQ(Job(job).state, job_state::kStarting) << "the job goes on on a new instance";
  EXPECT_NE(Job(job).instance_id, inst);
}

// ---- agent credentials (agent_credentials.h) ----

TEST_F(ControllerTest, EachInstanceGetsItsOwnSingleUseBootstrapBoundToOneCredential) {
  Build(5, 5);
  std::string ann = Submit("ann", {"A"});
  std::string bob = Submit("bob", {"A"});
  controller_->RunPass();
  controller_->RunPass();
  std::string ann_inst = Job(ann).instance_id, bob_inst = Job(bob).instance_id;
  std::string ann_boot = spawner_.bootstrap[ann_inst], bob_boot = spawner_.bootstrap[bob_inst];
  ASSERT_TRUE(AgentCredentials::IsBootstrap(ann_boot)) << ann_boot;
  EXPECT_NE(ann_boot, bob_boot);
  AgentCredentials& creds = controller_->credentials();
  std::optional<TokenInfo> who = creds.Identify(ann_boot);
  ASSERT_TRUE(who);
  EXPECT_EQ(who->kind, "bootstrap");
  EXPECT_EQ(who->instance, ann_inst);
  EXPECT_EQ(store_->GetInstance(ann_inst)->bootstrap_hash, AgentCredentials::Hash(ann_boot))
      << "only the hash is stored";

  std::string mine = AgentCredentials::NewCredential();
  ASSERT_TRUE(controller_->BindAgentCredential(ann_inst, mine).ok());
  EXPECT_TRUE(controller_->BindAgentCredential(ann_inst, mine).ok()) << "a retried register";
  Status thief = controller_->BindAgentCredential(ann_inst, AgentCredentials::NewCredential());
  EXPECT_EQ(thief.code(), Code::kUnauthenticated) << "the bootstrap is spent: " << thief.ToString();
  who = creds.Identify(mine);
  ASSERT_TRUE(who);
  EXPECT_EQ(who->kind, "agent");
  EXPECT_EQ(who->instance, ann_inst);
  EXPECT_EQ(who->user, "ann");
  EXPECT_FALSE(creds.Identify("yit_" + std::string(48, '0'))) << "an unknown credential";
  EXPECT_FALSE(creds.Identify("yut_" + std::string(48, '0'))) << "not an agent credential";

  // Both are kept (hashed) with the instance, for a restarted server; both
  // die with the instance.
  EXPECT_EQ(store_->GetInstance(ann_inst)->credential_hash, AgentCredentials::Hash(mine));
  ASSERT_TRUE(controller_->RegisterAgent(ann_inst).ok());
  registered_.insert(ann_inst);
  RunJob(ann, {});  // no cool-down: the instance ends with its job
  EXPECT_FALSE(controller_->credentials().Identify(mine));
  EXPECT_FALSE(controller_->credentials().Identify(ann_boot));
}

TEST_F(ControllerTest, AnAgentReadsOnlyTheChunksOfTheJobItRunsNow) {
  Build(5, 5);
  Json ann_bundle = Bundle("ann", "print('ann')\n"), bob_bundle = Bundle("bob", "print('bob')\n");
  std::string ann_chunk = ann_bundle["files"][0]["chunks"][0][0];
  std::string bob_chunk = bob_bundle["files"][0]["chunks"][0][0];
  std::string ann = Submit("ann", {"A"}, {{"bundle", ann_bundle}, {"cool_down_s", 600}});
  std::string bob = Submit("bob", {"A"}, {{"bundle", bob_bundle}});
  Settle();
  std::string ann_inst = Job(ann).instance_id, bob_inst = Job(bob).instance_id;
  AgentCredentials& creds = controller_->credentials();
  EXPECT_TRUE(creds.MayRead(ann_inst, ann_chunk));
  EXPECT_FALSE(creds.MayRead(ann_inst, bob_chunk));
  EXPECT_TRUE(creds.MayRead(bob_inst, bob_chunk));
  EXPECT_FALSE(creds.MayRead(bob_inst, ann_chunk)) << "another user's bundle";
  EXPECT_TRUE(creds.HasJob(ann_inst));
  RunJob(ann, {});
  EXPECT_EQ(store_->GetInstance(ann_inst)->state, instance_state::kCooling);
  EXPECT_FALSE(creds.MayRead(ann_inst, ann_chunk)) << "its job is over";
  EXPECT_FALSE(creds.HasJob(ann_inst)) << "nothing to upload while cooling";
}

TEST_F(ControllerTest, ResumingJobMayReadItsCheckpoint) {
  Build(5, 5);
  std::string job = Submit("ann", {"A"});
  Settle();
  std::string first = Job(job).instance_id;
  Json work = controller_->PollWork(first, 0).value();
  std::string data = "weights";
  std::string h = Sha256Hex(data);
  ASSERT_TRUE(blobs_->Put(h, data).ok());
  ASSERT_TRUE(store_->AddBlobOwners("ann", {h}).ok());  // as the agent's PUT does
  Json artifact = {
      {"kind", "artifact"},
      {"dir", "checkpoints"},
      {"entry", FileEntryToJson(FileEntry{"e1.pt", 0644, data.size(), {{h, data.size()}}, ""})}};
  StatusOr<int64_t> acked =
      controller_->AcceptAgentRecords(first, job, 1, 1, Json::array({artifact}));
  ASSERT_TRUE(acked.ok()) << acked.status().ToString();
  ASSERT_TRUE(sim_->InterruptNow(first, "reclaimed").ok());
  controller_->RunPass();
  Settle();
  std::string second = Job(job).instance_id;
  ASSERT_NE(second, first);
  EXPECT_TRUE(controller_->credentials().MayRead(second, h)) << "the checkpoint it resumes from";
  EXPECT_FALSE(controller_->credentials().MayRead(first, h)) << "the lost instance: nothing";
}

TEST_F(ControllerTest, RecordsAreAcceptedOnlyFromTheInstanceTheJobRunsOn) {
  Build(5, 5);
  std::string ann = Submit("ann", {"A"});
  std::string bob = Submit("bob", {"A"});
  Settle();
  std::string ann_inst = Job(ann).instance_id, bob_inst = Job(bob).instance_id;
  ASSERT_TRUE(controller_->PollWork(ann_inst, 0).value().contains("assign"));
  ASSERT_TRUE(
      controller_
          ->AcceptAgentRecords(ann_inst, ann, 1, 1, {{{"kind", "output"}, {"data", "real\n"}}})
          .ok());
  StatusOr<int64_t> injected = controller_->AcceptAgentRecords(
      bob_inst, ann, 1, 2, {{{"kind", "output"}, {"data", "INJECTED\n"}}});
  EXPECT_EQ(injected.status().code(), Code::kPermissionDenied) << injected.status().ToString();
  // Her own agent's next records and exit are not mistaken for resends.
  ASSERT_TRUE(controller_
                  ->AcceptAgentRecords(ann_inst, ann, 1, 2,
                                       {{{"kind", "output"}, {"data", "more\n"}},
                                        {{"kind", "exit"}, {"exit_code", 0}}})
                  .ok());
  EXPECT_EQ(Job(ann).state, job_state::kSucceeded);
  std::string output;
  for (const Json& e : Events(ann))
    if (e.value("kind", "") == "output") output += e.value("data", "");
  EXPECT_EQ(output, "real\nmore\n");
}

TEST_F(ControllerTest, AnArtifactCannotClaimAChunkItsInstanceDidNotUpload) {
  auto [ann_chunk, bob, bob_inst] = AnnsChunkAndBobsRunningJob();
  // Bob's agent (or a job holding its credential) names ann's chunk.
  Json claim = {
      {"kind", "artifact"},
      {"dir", "outputs"},
      {"entry", FileEntryToJson(FileEntry{"stolen.txt", 0644, 13, {{ann_chunk, 13}}, ""})}};
  StatusOr<int64_t> acked =
      controller_->AcceptAgentRecords(bob_inst, bob, 1, 1, Json::array({claim}));
  EXPECT_EQ(acked.status().code(), Code::kPermissionDenied) << acked.status().ToString();
  EXPECT_FALSE(store_->UserOwnsBlob("bob", ann_chunk).value()) << "bob gained nothing";
  // Once bob's agent uploaded those bytes itself (it holds them), it may.
  ASSERT_TRUE(store_->AddBlobOwners("bob", {ann_chunk}).ok());
  EXPECT_TRUE(controller_->AcceptAgentRecords(bob_inst, bob, 1, 1, Json::array({claim})).ok());
}

// An artifact_part names chunks too: the same check, and it is stored as
// an event for followers but is not an artifact (nothing to resume from).
TEST_F(ControllerTest, AnArtifactPartIsCheckedLikeAnArtifactAndIsNoArtifact) {
  auto [ann_chunk, bob, bob_inst] = AnnsChunkAndBobsRunningJob();
  Json part = ArtifactPartToJson({"checkpoints", "model.pt", 0, {{ann_chunk, 13}}});
  StatusOr<int64_t> acked =
      controller_->AcceptAgentRecords(bob_inst, bob, 1, 1, Json::array({part}));
  EXPECT_EQ(acked.status().code(), Code::kPermissionDenied) << acked.status().ToString();
  ASSERT_TRUE(store_->AddBlobOwners("bob", {ann_chunk}).ok());  // bob's agent uploaded them
  acked = controller_->AcceptAgentRecords(bob_inst, bob, 1, 1, Json::array({part}));
  ASSERT_TRUE(acked.ok()) << acked.status().ToString();
  bool stored = false;
  for (const Json& e : Events(bob))
    if (e.value("kind", "") == "artifact_part") {
      stored = true;
      EXPECT_EQ(e["instance"], bob_inst);
      EXPECT_TRUE(ArtifactPartFromJson(e).ok());  // as a mirror reads it
    }
  EXPECT_TRUE(stored);
  EXPECT_TRUE(store_->ListArtifacts(bob).value().empty());
}

}  // namespace
}  // namespace yard

namespace yard {
namespace {

// ---------------------------------------------------------------- pipelining

class PipelineTest : public ControllerTest {
 protected:
  // One A instance (capacity 1) running `first` (kept 600 s after it) for
  // an agent that polls with pipeline=1.
  void StartFirst(ControllerOptions opts = {}) {
    Build(1, 0, opts);
    first_ = Submit("ann", {"A"}, {{"cool_down_s", 600}});
    Settle();
    inst_ = Job(first_).instance_id;
    ASSERT_TRUE(Poll().contains("assign"));
  }
  Json Poll(bool pipeline = true) { return controller_->PollWork(inst_, 0, pipeline).value(); }
  // The agent's records for `job`'s current attempt: just its exit.
  Status Exit(const std::string& job, Json extra = {}) {
    Json exit = {{"kind", "exit"}, {"exit_code", 0}, {"message", "done"}};
    if (extra.is_object()) exit.update(extra);
    return controller_->AcceptAgentRecords(inst_, job, Job(job).attempt, 1, Json::array({exit}))
        .status();
  }
  std::string first_, inst_;
};

TEST_F(PipelineTest, AQueuedJobWaitsOnTheBusyInstanceAndRunsThereOnTheExitRecord) {
  StartFirst();
  Json bundle = Bundle("ann", "print('second')\n");
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}, {"bundle", bundle}});
  controller_->RunPass();
  EXPECT_EQ(Job(second).state, job_state::kStarting);
  EXPECT_EQ(Job(second).instance_id, inst_);
  EXPECT_TRUE(HasDecision(second, "queued on busy instance " + inst_ + " behind job " + first_));
  // Its agent gets it while the first runs, and may read its bundle already.
  Json work = Poll();
  ASSERT_TRUE(work.contains("assign")) << work.dump();
  EXPECT_EQ(work["assign"]["job"], second);
  EXPECT_TRUE(controller_->credentials().MayRead(inst_, bundle["files"][0]["chunks"][0][0]));
  EXPECT_EQ(Job(first_).state, job_state::kRunning);
  ASSERT_TRUE(Exit(first_).ok());
  EXPECT_EQ(Job(first_).state, job_state::kSucceeded);
  EXPECT_EQ(Job(second).state, job_state::kRunning) << "started by the agent as the first ended";
  EXPECT_EQ(store_->GetInstance(inst_)->state, instance_state::kBusy);
  EXPECT_EQ(store_->GetInstance(inst_)->job_id, second);
  EXPECT_FALSE(Poll().contains("assign")) << "delivered once";
  ASSERT_TRUE(Exit(second).ok());
  EXPECT_EQ(Job(second).state, job_state::kSucceeded);
  EXPECT_EQ(store_->GetInstance(inst_)->state, instance_state::kCooling);
}

// ------------------------------------- the next job with the exit's answer

class WorkWithExitTest : public PipelineTest {
 protected:
  // The agent posts `job`'s exit record with work=1 (AcceptAgentBatch's
  // next_work) as its record `first`: the answer's "work", {} when none
  // came with it.
  Json ExitWithWork(const std::string& job, int64_t first = 1) {
    Json records = Json::array({{{"kind", "exit"}, {"exit_code", 0}, {"message", "done"}}});
    std::vector<AgentRecord> split = AgentRecordsFromJson(records).value();
    Json work;
    EXPECT_TRUE(
        controller_->AcceptAgentBatch(inst_, job, Job(job).attempt, first, split, &work).ok());
    return work.is_object() ? work : Json::object();
  }
  // One record of `job`'s current attempt from the instance.
  Status Output(const std::string& job) {
    Json rec = {{"kind", "output"}, {"data", "hi\n"}};
    return controller_->AcceptAgentRecords(inst_, job, Job(job).attempt, 1, Json::array({rec}))
        .status();
  }
  // The assignment without its job id (what two like jobs share).
  static Json WithoutJob(Json assign) {
    assign.erase("job");
    return assign;
  }
};

TEST_F(WorkWithExitTest, TheExitsAnswerCarriesTheAssignmentAPollWouldGiveOnce) {
  StartFirst();
  Json bundle = Bundle("ann", "print('next')\n");
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}, {"bundle", bundle}});
  Json work = ExitWithWork(first_);
  EXPECT_EQ(Job(first_).state, job_state::kSucceeded);
  ASSERT_TRUE(work.contains("assign")) << work.dump();
  EXPECT_EQ(work["assign"]["job"], second);
  EXPECT_EQ(work["assign"]["attempt"], 1);
  EXPECT_EQ(Job(second).attempt, 1);
  EXPECT_EQ(Job(second).state, job_state::kRunning) << "delivered, as by a poll";
  EXPECT_FALSE(Poll().contains("assign")) << "not handed out twice";
  // Tied to this instance and this job, as a polled one: the instance may
  // read the job's bundle, and only it may post the attempt's records.
  EXPECT_TRUE(controller_->credentials().MayRead(inst_, bundle["files"][0]["chunks"][0][0]));
  EXPECT_EQ(controller_->AcceptAgentRecords("i-other", second, 1, 1, Json::array()).status().code(),
            Code::kPermissionDenied);
  ASSERT_TRUE(Output(second).ok());
  // An agent that does not ask (an old one) gets the third by its poll:
  // the same assignment but for the job id.
  Json exit = Json::array({{{"kind", "exit"}, {"exit_code", 0}, {"message", "done"}}});
  ASSERT_TRUE(controller_->AcceptAgentRecords(inst_, second, 1, 2, exit).ok());
  std::string third = Submit("ann", {"A"}, {{"cool_down_s", 600}, {"bundle", bundle}});
  controller_->RunPass();
  EXPECT_EQ(Job(third).state, job_state::kStarting) << "waits for the poll";
  Json polled = Poll();
  ASSERT_TRUE(polled.contains("assign")) << polled.dump();
  EXPECT_EQ(polled["assign"]["job"], third);
  EXPECT_EQ(WithoutJob(polled["assign"]), WithoutJob(work["assign"]));
  EXPECT_EQ(ExitWithWork(third, 1), Json::object()) << "nothing queued: the agent polls";
}

TEST_F(WorkWithExitTest, TheNextJobQueuedBehindTheOneThatStartsComesWithTheExitsAnswer) {
  StartFirst();
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();  // queued behind first_ on the busy instance
  ASSERT_EQ(Poll()["assign"]["job"], second) << "delivered while first_ runs";
  std::string third = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  EXPECT_EQ(Job(third).state, job_state::kRequesting) << "one job at most behind another";
  // first_ ends: second runs (the agent has it), third goes behind it and
  // comes with the answer, as the poll's pipelined assignment would.
  Json work = ExitWithWork(first_);
  EXPECT_EQ(Job(second).state, job_state::kRunning);
  ASSERT_TRUE(work.contains("assign")) << work.dump();
  EXPECT_EQ(work["assign"]["job"], third);
  EXPECT_EQ(work["assign"]["attempt"], Job(third).attempt);
  EXPECT_EQ(Job(third).instance_id, inst_);
  EXPECT_EQ(Poll(), Json::object()) << "not handed out twice";
}

TEST_F(WorkWithExitTest, ALostAnswerIsGivenAgainOrTheJobIsPlacedAgain) {
  StartFirst();
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  Json work = ExitWithWork(first_);  // the answer that carried it is lost
  ASSERT_EQ(work["assign"]["job"], second) << work.dump();
  // The agent, alive, posts the same exit batch again: the same assignment.
  EXPECT_EQ(ExitWithWork(first_), work);
  EXPECT_EQ(Job(second).attempt, 1) << "not a new attempt";
  // Once a record of its attempt arrived the agent has it: not again.
  ASSERT_TRUE(Output(second).ok());
  EXPECT_EQ(ExitWithWork(first_), Json::object());

  // Killed before it got the answer: the agent that starts again registers,
  // and the job is placed again as one handed out by a lost poll answer.
  std::string third = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  ASSERT_EQ(ExitWithWork(second, 2)["assign"]["job"], third);
  ASSERT_TRUE(controller_->RegisterAgent(inst_).ok());
  EXPECT_NE(Job(third).state, job_state::kRunning);
  Settle();
  Json again = Poll();
  ASSERT_TRUE(again.contains("assign")) << again.dump();
  EXPECT_EQ(again["assign"]["job"], third);
  EXPECT_EQ(again["assign"]["attempt"], Job(third).attempt);
  EXPECT_EQ(Job(third).state, job_state::kRunning);
}

TEST_F(WorkWithExitTest, ACancelBetweenTheChoiceAndTheStartIsHonoured) {
  StartFirst();
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  ASSERT_EQ(ExitWithWork(first_)["assign"]["job"], second);
  // The user cancels before the agent started it: the poll brings the
  // cancel, and a resent exit batch no longer brings the assignment.
  ASSERT_TRUE(controller_->CancelJob("ann", second).ok());
  EXPECT_EQ(ExitWithWork(first_), Json::object());
  EXPECT_EQ(Poll(), Json({{"cancel", second}}));
  // The agent ends it unstarted with its exit record: cancelled.
  ASSERT_TRUE(Exit(second, {{"exit_code", 1}, {"cancelled", true}}).ok());
  EXPECT_EQ(Job(second).state, job_state::kCancelled);
}

TEST_F(PipelineTest, AnAgentThatDoesNotAskGetsNoJobWhileItRunsOne) {
  Build(1, 0);
  first_ = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  Settle();
  inst_ = Job(first_).instance_id;
  ASSERT_TRUE(Poll(/*pipeline=*/false).contains("assign"));
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  EXPECT_EQ(Job(second).state, job_state::kRequesting);
  EXPECT_TRUE(Poll(false).empty());
  ASSERT_TRUE(Exit(first_).ok());
  EXPECT_EQ(Job(second).state, job_state::kStarting) << "reused at once, as before";
  EXPECT_EQ(Poll(false)["assign"]["job"], second);
}

TEST_F(PipelineTest, OnlyJobsThatCanGoNowhereElseAndOnlyBehindJobsThatKeepTheirInstance) {
  Build(1, 1);
  first_ = Submit("ann", {"A"});  // no cool-down: its instance ends with it
  Settle();
  inst_ = Job(first_).instance_id;
  ASSERT_TRUE(Poll().contains("assign"));
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  EXPECT_EQ(Job(second).state, job_state::kRequesting) << "not behind a job whose instance ends";
  std::string third = Submit("ann", {"A", "B"}, {{"cool_down_s", 600}});
  Settle();
  EXPECT_NE(Job(third).instance_id, inst_) << "a new B instance, as the fallback order says";
}

TEST_F(PipelineTest, PipelinedAssignmentsWithACancelInBetween) {
  StartFirst();
  // Not yet sent to the agent: cancelled at once, it never runs.
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  ASSERT_EQ(Job(second).state, job_state::kStarting);
  ASSERT_TRUE(controller_->CancelJob("ann", second).ok());
  EXPECT_EQ(Job(second).state, job_state::kCancelled);
  EXPECT_TRUE(Poll().empty()) << "nothing for the agent";
  // Sent: the agent is told, ends it unstarted (its exit says cancelled).
  std::string third = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  ASSERT_EQ(Poll()["assign"]["job"], third);
  ASSERT_TRUE(controller_->CancelJob("ann", third).ok());
  EXPECT_EQ(Poll()["cancel"], third);
  ASSERT_TRUE(
      Exit(third,
           {{"exit_code", 1}, {"cancelled", true}, {"message", "cancelled before it started"}})
          .ok());
  EXPECT_EQ(Job(third).state, job_state::kCancelled);
  EXPECT_EQ(Job(first_).state, job_state::kRunning) << "the running job goes on";
  // A job queued now takes the freed slot; the first's end starts it.
  std::string fourth = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  ASSERT_EQ(Poll()["assign"]["job"], fourth);
  ASSERT_TRUE(Exit(first_).ok());
  EXPECT_EQ(Job(fourth).state, job_state::kRunning);
  EXPECT_EQ(store_->GetInstance(inst_)->job_id, fourth);
}

TEST_F(PipelineTest, AJobQueuedOnAnInstanceThatDiesIsRequeued) {
  StartFirst();
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  ASSERT_EQ(Poll()["assign"]["job"], second);
  ASSERT_TRUE(sim_->InterruptNow(inst_, "reclaimed").ok());
  controller_->RunPass();
  EXPECT_EQ(store_->GetInstance(inst_)->state, instance_state::kLost);
  for (const std::string& job : {first_, second}) {
    EXPECT_NE(Job(job).instance_id, inst_) << job;
    EXPECT_TRUE(HasDecision(job, "requeued")) << job;
  }
  EXPECT_TRUE(HasDecision(second, "with this job queued behind its job " + first_));
  Settle();
  EXPECT_EQ(Job(first_).state, job_state::kStarting) << "on a new instance, first in line";
  inst_ = Job(first_).instance_id;
  ASSERT_TRUE(Poll().contains("assign"));  // its agent asks with pipeline=1
  controller_->RunPass();
  EXPECT_EQ(Job(second).state, job_state::kStarting) << "behind it again";
  EXPECT_EQ(Job(second).instance_id, inst_);
}

TEST_F(PipelineTest, AJobWaitingBehindALongOneIsTakenBackAndPlacedAgain) {
  StartFirst();
  // Delivered: the agent is asked to hand it back.
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  ASSERT_EQ(Poll()["assign"]["job"], second);
  int64_t attempt = Job(second).attempt;
  clock_.Set(clock_.Now() + Controller::kPipelineWaitS - 0.1);
  controller_->RunPass();
  EXPECT_TRUE(Poll().empty()) << "not yet";
  clock_.Set(clock_.Now() + 0.2);
  controller_->RunPass();
  Json revoke = Poll();
  EXPECT_EQ(revoke["revoke"], second) << revoke.dump();
  EXPECT_EQ(revoke["attempt"], attempt);
  ASSERT_TRUE(Exit(second, {{"exit_code", 1}, {"revoked", true}, {"message", "handed back"}}).ok());
  EXPECT_EQ(Job(second).state, job_state::kRequesting);
  EXPECT_TRUE(Job(second).instance_id.empty());
  EXPECT_EQ(Job(second).sched.restarts, 0) << "not a restart: it never ran";
  controller_->RunPass();
  EXPECT_EQ(Job(second).state, job_state::kRequesting) << "not queued behind the long job again";
  ASSERT_TRUE(Exit(first_).ok());
  EXPECT_EQ(Job(second).state, job_state::kStarting) << "it takes the instance once free";
  EXPECT_EQ(Poll()["assign"]["job"], second);
  // Not delivered: taken back without the agent.
  std::string third = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  ASSERT_EQ(Job(third).state, job_state::kStarting);
  clock_.Set(clock_.Now() + Controller::kPipelineWaitS + 0.1);
  controller_->RunPass();
  EXPECT_EQ(Job(third).state, job_state::kRequesting);
  EXPECT_TRUE(Poll().empty()) << "no revoke for what the agent never got";
}

TEST_F(PipelineTest, ARevokeThatFindsTheJobStartedLetsItRun) {
  StartFirst();
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  ASSERT_EQ(Poll()["assign"]["job"], second);
  clock_.Set(clock_.Now() + Controller::kPipelineWaitS + 0.1);
  controller_->RunPass();
  ASSERT_TRUE(Poll().contains("revoke"));
  // The agent had started it (the first ended meanwhile): it ignores the
  // revoke, and the job ends as usual.
  ASSERT_TRUE(Exit(first_).ok());
  EXPECT_EQ(Job(second).state, job_state::kRunning);
  ASSERT_TRUE(Exit(second).ok());
  EXPECT_EQ(Job(second).state, job_state::kSucceeded);
  EXPECT_EQ(store_->GetInstance(inst_)->state, instance_state::kCooling);
}

TEST_F(PipelineTest, AQueuedJobCountsAgainstTheJobQuota) {
  ControllerOptions opts;
  opts.quota.max_active_jobs = 2;
  StartFirst(opts);
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  std::string third = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  EXPECT_EQ(Job(second).state, job_state::kStarting);
  EXPECT_EQ(Job(third).state, job_state::kWaiting);
}

TEST_F(PipelineTest, AQueuedJobSurvivesAServerRestart) {
  StartFirst();
  std::string second = Submit("ann", {"A"}, {{"cool_down_s", 600}});
  controller_->RunPass();
  ASSERT_EQ(Poll()["assign"]["job"], second);
  controller_.reset();
  std::unique_ptr<SimProvider> old_sim = std::move(sim_);  // its agents live on
  Build(1, 0);  // the same store: a restarted server, adopting by the stored pid
  ASSERT_EQ(store_->GetInstance(inst_)->state, instance_state::kBusy);
  ASSERT_TRUE(Exit(first_).ok());
  EXPECT_EQ(Job(second).state, job_state::kStarting) << "its delivery was not stored: sent again";
  EXPECT_EQ(store_->GetInstance(inst_)->job_id, second);
  EXPECT_EQ(Poll()["assign"]["job"], second);  // the agent knows it already: no second run
  EXPECT_EQ(Job(second).state, job_state::kRunning);
}

}  // namespace
}  // namespace yard
