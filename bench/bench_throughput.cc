// Throughput: N no-op jobs (`true`) on two warm local-1cpu instances,
// submitted as fast as several threads can, until all are final; jobs/s
// against sequential posix_spawn+wait of `true`. Target: >= 500 jobs/s.
//
// Usage: bench_throughput [jobs] [submitter threads]   (default 1000, 8)
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>

#include "agent/job_process.h"
#include "agent/shim_zygote.h"
#include "bench_common.h"

namespace yard::bench {
namespace {

// Sequential posix_spawn + waitpid of `true`: processes per second.
double SpawnRate(int n) {
  double t0 = MonoNow();
  for (int i = 0; i < n; ++i) {
    pid_t pid;
    char* argv[] = {const_cast<char*>("true"), nullptr};
    if (posix_spawnp(&pid, "true", nullptr, nullptr, argv, environ) != 0) Die("spawn true");
    WaitChild(pid);
  }
  return n / (MonoNow() - t0);
}

// Starts two instances: two overlapping jobs with a cool-down, so each gets
// its own instance, which then cools.
std::set<std::string> WarmTwoInstances(const BenchHome& home, const Json& bundle) {
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i)
    ids.push_back(SubmitJob(home.client(), bundle, {"sleep", "1"}, 600, "bench warm-up"));
  std::set<std::string> instances;
  for (const std::string& id : ids) {
    if (FollowToEnd(home.client(), id) != "succeeded") Die("warm-up job " + id + " failed");
    instances.insert(Must(home.client().Get("/v1/jobs/" + id), "GET job")["job"]["instance"]);
  }
  return instances;
}

// Submits `n` jobs from `threads` threads; returns their ids.
std::vector<std::string> SubmitAll(const BenchHome& home, const Json& bundle, int n, int threads,
                                   double* seconds) {
  std::atomic<int> next{0};
  std::mutex mu;
  std::vector<std::string> ids;
  double t0 = MonoNow();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      while (next++ < n) {
        std::string id = SubmitJob(home.client(), bundle, {"true"}, 600, "bench throughput");
        std::lock_guard<std::mutex> lock(mu);
        ids.push_back(id);
      }
    });
  }
  for (auto& w : workers) w.join();
  *seconds = MonoNow() - t0;
  return ids;
}

// Waits until every job of `ids` is final; returns them. While jobs run it
// looks at one job only (GET /v1/jobs/ID of the last submitted, every 50 ms),
// and lists all jobs once that one is final (the queue is served in order, so
// the others are final or about to be). Listing all N jobs every 250 ms, as
// this did before, read, parsed and serialised ≈ 10 rows per job on the
// server during the run: a cost of the benchmark, not of dispatch, that
// competed with it for the same 2 cores and was counted in its CPU per job.
std::map<std::string, Json> WaitAllFinal(const HttpClient& client,
                                         const std::vector<std::string>& ids) {
  std::set<std::string> want(ids.begin(), ids.end());
  std::string limit = std::to_string(ids.size() + 100);
  const std::string& last = ids.back();
  while (!IsFinalState(Must(client.Get("/v1/jobs/" + last), "GET job")["job"].value("state", "")))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (;;) {
    Json list = Must(client.Get("/v1/jobs?limit=" + limit), "GET /v1/jobs");
    std::map<std::string, Json> final_jobs;
    for (const Json& j : list["jobs"])
      if (want.count(j["id"]) && IsFinalState(j.value("state", ""))) final_jobs[j["id"]] = j;
    if (final_jobs.size() == want.size()) return final_jobs;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Per-job phases from the events of a sample of jobs.
void PrintPhases(const HttpClient& client, const std::vector<std::string>& ids) {
  std::vector<double> waited, dispatch, service;
  for (size_t i = 0; i < ids.size(); i += std::max<size_t>(1, ids.size() / 100)) {
    double queued = 0, starting = 0, running = 0, final_t = 0;
    FollowToEnd(client, ids[i], [&](const Json& ev) {
      if (ev.value("kind", "") != "state") return;
      std::string st = ev.value("state", "");
      if (st == "requesting" && queued == 0) queued = ev["time"];
      if (st == "waiting" && queued == 0) queued = ev["time"];
      if (st == "starting") starting = ev["time"];
      if (st == "running") running = ev["time"];
      if (IsFinalState(st)) final_t = ev["time"];
    });
    waited.push_back(starting - queued);
    dispatch.push_back(running - starting);
    service.push_back(final_t - running);
  }
  auto row = [](const char* name, const std::vector<double>& v, const char* what) {
    double mean = 0;
    int slow = 0;
    for (double x : v) {
      mean += x / v.size();
      slow += x > 0.5;
    }
    std::printf("    %-24s median %8.2f ms  mean %8.2f ms  p90 %8.2f ms  >0.5 s: %d  (%s)\n", name,
                Median(v) * 1e3, mean * 1e3, P90(v) * 1e3, slow, what);
  };
  std::printf("  phases of %zu sampled jobs (server event times):\n", waited.size());
  row("submitted -> starting", waited, "queue wait for a free instance");
  row("starting -> running", dispatch, "assignment reaches the agent's long poll");
  row("running -> final", service, "agent: folder, shim, job, exit record stored");
  // What two instances could do if every job took the typical cycle.
  double cycle = Median(dispatch) + Median(service);
  std::printf("    two instances at the median cycle (%.2f ms) would do %.0f jobs/s\n", cycle * 1e3,
              2 / cycle);
}

// Sequential posix_spawn + wait of `argv`, `n` times.
struct SpawnCost {
  double per_s = 0;   // processes per second (wall clock)
  double cpu_ms = 0;  // CPU per process (user + system, from RUSAGE_CHILDREN)
};

double ChildCpuSeconds() {
  rusage r;
  getrusage(RUSAGE_CHILDREN, &r);
  return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) * 1e-6;
}

SpawnCost MeasureSpawn(const std::vector<std::string>& argv, int n) {
  double cpu0 = ChildCpuSeconds(), t0 = MonoNow();
  for (int i = 0; i < n; ++i) {
    PipedChild c = SpawnPiped(argv);
    close(c.out_fd);
    WaitChild(c.pid);
  }
  return {n / (MonoNow() - t0), (ChildCpuSeconds() - cpu0) / n * 1e3};
}

// JobProcess::Start of `true` (unconfined) and its end, `n` times: CPU per
// job of this process, its reaped children and, with `zygote`, the zygote's
// forks (agent/shim_zygote.h) against yard-shim spawned per job.
SpawnCost MeasureJobStart(ShimZygote* zygote, int n) {
  JobSpawnOptions options;
  options.argv = {"true"};
  options.env = {{"PATH", "/usr/bin:/bin"}};
  options.shim_executable = YardBinary();
  options.zygote = zygote;
  auto cpu = [&] {
    rusage self;
    getrusage(RUSAGE_SELF, &self);
    double s = self.ru_utime.tv_sec + self.ru_stime.tv_sec +
               (self.ru_utime.tv_usec + self.ru_stime.tv_usec) * 1e-6;
    pid_t z = zygote ? zygote->zygote_pid() : -1;
    return s + ChildCpuSeconds() + (z > 0 ? CpuSeconds(z) : 0);
  };
  double cpu0 = 0, t0 = 0;
  for (int i = -1; i < n; ++i) {  // job -1 only starts the zygote
    if (i == 0) cpu0 = cpu(), t0 = MonoNow();
    StatusOr<std::unique_ptr<JobProcess>> job = JobProcess::Start(options);
    if (!job.ok()) Die("JobProcess::Start: " + job.status().ToString());
    std::string out;
    while ((*job)->ReadAvailable(&out)) {
      pollfd p{(*job)->output_fd(), POLLIN, 0};
      poll(&p, 1, 100);
    }
    (*job)->Wait();
  }
  return {n / (MonoNow() - t0), (cpu() - cpu0) / n * 1e3};
}

int Main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  int threads = argc > 2 ? std::atoi(argv[2]) : 8;
  std::printf("== throughput: %d no-op jobs on two warm local-1cpu instances, %d submitters\n", n,
              threads);
  PrintMachine();
  double spawn_rate = SpawnRate(std::min(n, 1000));
  // What the agent's per-job shim costs: yard-shim (what the agent runs
  // when it sits beside yard) and its fallback, the whole yard binary.
  SpawnCost plain = MeasureSpawn({"true"}, 200);
  SpawnCost shim = MeasureSpawn({YARD_BINARY, "shim", "--grace-ms", "5000", "--", "true"}, 200);
  std::string small_shim =
      std::string(YARD_BINARY).substr(0, std::string(YARD_BINARY).rfind('/') + 1) + "yard-shim";
  std::printf(
      "  posix_spawn+wait of `true`: %.0f/s, %.2f ms CPU each; of `yard shim -- true`: "
      "%.0f/s, %.2f ms CPU each\n",
      plain.per_s, plain.cpu_ms, shim.per_s, shim.cpu_ms);
  if (access(small_shim.c_str(), X_OK) == 0) {
    SpawnCost small = MeasureSpawn({small_shim, "--grace-ms", "5000", "--", "true"}, 200);
    std::printf(
        "  posix_spawn+wait of `yard-shim -- true` (what the agent runs): %.0f/s, %.2f ms "
        "CPU each\n",
        small.per_s, small.cpu_ms);
  }
  {
    ShimZygote zygote(YardBinary());
    SpawnCost spawned = MeasureJobStart(nullptr, 200), forked = MeasureJobStart(&zygote, 200);
    std::printf(
        "  JobProcess of `true`, unconfined: yard-shim spawned %.0f/s, %.2f ms CPU each; forked "
        "by the zygote %.0f/s, %.2f ms CPU each\n",
        spawned.per_s, spawned.cpu_ms, forked.per_s, forked.cpu_ms);
  }
  // The per-user quota (5 active jobs by default) would make most jobs wait
  // wait_new_job_interval_s between looks: lift it, this measures dispatch.
  std::vector<std::string> flags;
  if (ServerHasFlag("--max-active-jobs")) flags = {"--max-active-jobs", std::to_string(n + 10)};
  std::printf("  server flags: %s\n",
              flags.empty() ? "(none)" : (flags[0] + " " + flags[1]).c_str());
  BenchHome home(flags);
  Json bundle = UploadTinyBundle(home);
  std::set<std::string> instances = WarmTwoInstances(home, bundle);
  std::printf("  warm instances: %zu\n", instances.size());

  CpuSample cpu0 = SampleCpu(home);
  double wall0 = WallNow(), t0 = MonoNow(), submit_s = 0;
  std::vector<std::string> ids = SubmitAll(home, bundle, n, threads, &submit_s);
  std::map<std::string, Json> jobs = WaitAllFinal(home.client(), ids);
  double seen_s = MonoNow() - t0;
  CpuSample cpu1 = SampleCpu(home);
  double last_final = 0;
  int succeeded = 0;
  std::map<std::string, int> per_instance;
  for (const auto& [id, j] : jobs) {
    last_final = std::max(last_final, j.value("updated_at", 0.0));
    succeeded += j.value("state", "") == "succeeded";
    per_instance[j.value("instance", "")]++;
  }
  double elapsed = last_final - wall0;  // to the last job's final state, server time
  double rate = n / elapsed;
  std::printf("  submitted %d jobs in %.2f s (%.0f submissions/s); %d succeeded\n", n, submit_s,
              n / submit_s, succeeded);
  for (const auto& [inst, count] : per_instance)
    std::printf("    %s ran %d\n", inst.c_str(), count);
  std::printf("  all final %.2f s after the first POST (%.2f s as seen by polling)\n", elapsed,
              seen_s);
  std::printf(
      "  CPU per job: server %.2f ms, agents with shims and jobs %.2f ms, this "
      "client %.2f ms; %.2f of %u cores busy on average\n",
      (cpu1.server - cpu0.server) / n * 1e3, (cpu1.agents - cpu0.agents) / n * 1e3,
      (cpu1.bench - cpu0.bench) / n * 1e3,
      (cpu1.server - cpu0.server + cpu1.agents - cpu0.agents + cpu1.bench - cpu0.bench) / seen_s,
      std::thread::hardware_concurrency());
  CpuSample used = cpu1 - cpu0;
  double cpu_per_job = (used.server + used.agents + used.bench) / n;
  unsigned cores = std::thread::hardware_concurrency();
  std::printf("  CPU budget for 500 jobs/s on %u cores: %.2f ms per job; spent: %.2f ms\n", cores,
              cores / 500.0 * 1e3, cpu_per_job * 1e3);
  PrintPhases(home.client(), ids);
  std::printf(
      "RESULT throughput: %.1f jobs/s vs sequential posix_spawn+wait %.0f/s: ratio %.4f "
      "(target: >= 500 jobs/s) %s\n",
      rate, spawn_rate, rate / spawn_rate, Verdict(rate >= 500));
  return 0;
}

}  // namespace
}  // namespace yard::bench

int main(int argc, char** argv) { return yard::bench::Main(argc, argv); }
