// Scheduler benchmark (issue 3): placements per second and the scheduler's
// time per decision as the queue grows, in one process with in-memory fake
// agents (a thousand real processes on two cores would measure contention,
// not the scheduler).
//
// For each queue depth Q (1k, 10k, 100k): Q no-op jobs are queued for the
// simulated type "node" while its 1,000 instances are being granted (zero
// provisioning delay); fake agents register, take work and report exit 0 at
// once. Measured: jobs placed per second from the first assignment to the
// last, and pass time / placements. The store is the real SQLite store on
// disk: every placement is written through as in production.
//
// Reference in the same run: Slurm documents 500 jobs/s; the target is
// >= 5,000 placements/s with per-decision time not growing with Q.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <thread>

#include "common/hashing.h"
#include "common/manifest.h"
#include "providers/sim_provider.h"
#include "server/controller.h"

namespace yard {
namespace {

class NoProcessSpawner : public AgentSpawner {
 public:
  StatusOr<int> Start(const AgentLaunchInfo&, const std::string& id, const std::string&,
                      const std::vector<std::string>&, const std::vector<std::string>&) override {
    std::lock_guard<std::mutex> lock(mu);
    started.push_back(id);
    return static_cast<int>(started.size());
  }
  bool Alive(int, const std::string&) override { return true; }
  void Stop(int, const std::string&, bool) override {}
  std::vector<std::string> TakeStarted() {
    std::lock_guard<std::mutex> lock(mu);
    return std::exchange(started, {});
  }
  std::mutex mu;
  std::vector<std::string> started;
};

struct Result {
  int queued;
  double placements_per_s;
  double us_per_decision;
  double seconds;
};

Result RunOnce(int queued, int instances) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("yard-sched-bench-" + std::to_string(queued));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto store = std::move(Store::Open(dir / "state.db")).value();
  auto blobs = std::move(BlobStore::Open(dir / "blobs")).value();
  RealClock clock;
  NoProcessSpawner spawner;
  Json scenario = {{"version", 1}, {"types", {{"node", {{"capacity", {{0, instances}}}}}}}};
  SimProvider sim(std::move(SimScenario::FromJson(scenario)).value(), dir / "inst", &clock, &spawner);
  Json catalog = {{"version", 1}, {"types", {{{"name", "node"}, {"provider", "sim"}}}}};
  ControllerOptions opts;
  opts.default_machine = "node";
  opts.quota = {1 << 30, 1 << 30};  // one user owns the whole cluster
  Controller ctl(store.get(), &blobs, std::move(Catalog::FromJson(catalog)).value(),
                 {{"sim", &sim}}, AgentLaunchInfo{}, &clock, opts);
  std::string data = "true\n";
  std::string h = Sha256Hex(data);
  (void)blobs.Put(h, data);
  (void)store->AddBlobOwners("bench", {h});
  Manifest m;
  m.files.push_back(FileEntry{"job.sh", 0644, data.size(), {{h, data.size()}}, ""});
  Json spec = {{"command", {"true"}}, {"bundle", m.ToJson()}, {"machines", {"node"}},
               {"cool_down_s", 3600}, {"wait_request_s", 1e9}};  // queued, never falling back
  for (int i = 0; i < queued; ++i) (void)ctl.SubmitJob("bench", spec);

  std::vector<std::pair<std::string, uint64_t>> agents;  // id, last work version seen
  std::atomic<int> done{0};
  auto start = std::chrono::steady_clock::now();
  ctl.Start();
  // Fake agents: register what the sim started, then take work and finish it.
  while (done < queued) {
    for (const auto& id : spawner.TakeStarted()) {
      (void)ctl.RegisterAgent(id);
      agents.emplace_back(id, 0);
    }
    // Like a real agent's long poll, look only when the instance was woken.
    for (auto& [id, seen] : agents) {
      uint64_t v = ctl.notifier().Version("inst:" + id);
      if (v == seen) continue;
      seen = v;
      StatusOr<Json> work = ctl.PollWork(id, 0);
      if (!work.ok() || !work->contains("assign")) continue;
      const Json& a = (*work)["assign"];
      Json records = {{{"kind", "exit"}, {"exit_code", 0}, {"message", "exit code 0"}}};
      (void)ctl.AcceptAgentRecords(id, a["job"], a["attempt"], 1, records);
      ++done;
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ctl.Stop();
  Controller::PassStats st = ctl.pass_stats();
  fs::remove_all(dir);
  return {queued, queued / seconds, st.placements ? st.pass_seconds / st.placements * 1e6 : 0, seconds};
}

}  // namespace
}  // namespace yard

int main(int argc, char** argv) {
  int instances = 1000;
  std::vector<int> depths = {1000, 10000, 100000};
  if (argc > 1 && std::string(argv[1]) == "--quick") depths = {1000, 10000};
  std::printf("scheduler: %d instances, zero provisioning delay, in-process fake agents\n", instances);
  std::printf("%10s %14s %16s %10s %14s\n", "queued", "placements/s", "us/decision", "seconds", "vs slurm 500/s");
  for (int q : depths) {
    yard::Result r = yard::RunOnce(q, instances);
    std::printf("%10d %14.0f %16.1f %10.2f %13.1fx\n", r.queued, r.placements_per_s, r.us_per_decision,
                r.seconds, r.placements_per_s / 500.0);
    std::fflush(stdout);
  }
  return 0;
}
