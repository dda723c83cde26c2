// The cost of TLS: two servers in the same run, one plain HTTP and one with
// `--tls self-signed` (clients and agents pinning its fingerprint), each
// with its own warm local-1cpu instances; measured on each, interleaved so
// that the machine's load falls on both alike:
//   - API calls: GET /v1/health on a kept-alive connection, and on a new
//     connection each (the TLS handshake);
//   - warm start: POST /v1/jobs -> first output line at a follower;
//   - throughput: N no-op jobs on two warm instances, submitted from 8 threads.
// Reports TLS / plain ratios. Target: throughput and warm start within 10 %.
//
// Usage: bench_tls [warm-start runs] [throughput jobs]   (default 20, 300)
#include <atomic>
#include <mutex>
#include <set>

#include "bench_common.h"
#include "client/tls_trust.h"

namespace yard::bench {
namespace {

struct Side {
  const char* name;
  BenchHome* home;
  Json bundle;
};

// Calls per second of GET /v1/health: on one kept-alive connection, or on a
// new connection each (a new client each time, as a fresh CLI would).
double HealthRate(const BenchHome& home, int n, bool fresh) {
  StatusOr<std::string> url = ReadServerUrl(home.path());
  TlsTrust trust = ReadServerTrust(home.path());
  HttpClient kept(*url, "");
  kept.set_tls_trust(trust);
  double t0 = MonoNow();
  for (int i = 0; i < n; ++i) {
    if (fresh) {
      HttpClient once(*url, "");
      once.set_tls_trust(trust);
      Must(once.Get("/v1/health"), "GET /v1/health");
    } else {
      Must(kept.Get("/v1/health"), "GET /v1/health");
    }
  }
  return n / (MonoNow() - t0);
}

// POST /v1/jobs -> the job's first output event in our hands, seconds.
double WarmStart(const Side& s) {
  double t0 = MonoNow(), first = 0;
  std::string id =
      SubmitJob(s.home->client(), s.bundle, {"echo", "hi"}, 600, "bench tls warm start");
  FollowToEnd(s.home->client(), id, [&](const Json& ev) {
    if (ev.value("kind", "") == "output" && first == 0) first = MonoNow() - t0;
  });
  return first;
}

// Jobs per second: `n` no-op jobs from 8 submitters until all are final.
double Throughput(const Side& s, int n) {
  std::atomic<int> next{0};
  std::mutex mu;
  std::vector<std::string> ids;
  double t0 = MonoNow();
  std::vector<std::thread> workers;
  for (int t = 0; t < 8; ++t)
    workers.emplace_back([&] {
      while (next++ < n) {
        std::string id =
            SubmitJob(s.home->client(), s.bundle, {"true"}, 600, "bench tls throughput");
        std::lock_guard<std::mutex> lock(mu);
        ids.push_back(id);
      }
    });
  for (auto& w : workers) w.join();
  // Polled as bench_throughput does: one GET for all, not a stream per job.
  std::set<std::string> want(ids.begin(), ids.end());
  for (;;) {
    Json list =
        Must(s.home->client().Get("/v1/jobs?limit=" + std::to_string(n + 100)), "GET /v1/jobs");
    size_t final_jobs = 0;
    for (const Json& j : list["jobs"])
      final_jobs += want.count(j["id"]) && IsFinalState(j.value("state", ""));
    if (final_jobs == want.size()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return n / (MonoNow() - t0);
}

void WarmTwoInstances(const Side& s) {
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i)
    ids.push_back(SubmitJob(s.home->client(), s.bundle, {"sleep", "1"}, 600, "warm-up"));
  for (const std::string& id : ids)
    if (FollowToEnd(s.home->client(), id) != "succeeded")
      Die(std::string(s.name) + ": warm-up job failed");
}

int Main(int argc, char** argv) {
  int runs = argc > 1 ? std::atoi(argv[1]) : 20;
  int jobs = argc > 2 ? std::atoi(argv[2]) : 300;
  std::printf(
      "== tls: plain HTTP and TLS (self-signed, pinned) servers side by side; %d warm starts, "
      "%d-job throughput each\n",
      runs, jobs);
  PrintMachine();
  std::vector<std::string> flags = {"--max-active-jobs", std::to_string(jobs + 10)};
  BenchHome plain_home(flags);
  std::vector<std::string> tls_flags = flags;
  tls_flags.insert(tls_flags.end(), {"--tls", "self-signed"});
  BenchHome tls_home(tls_flags);
  std::printf("  plain: %s\n  tls:   %s (fingerprint %s)\n",
              ReadServerUrl(plain_home.path())->c_str(), ReadServerUrl(tls_home.path())->c_str(),
              ReadServerTrust(tls_home.path()).fingerprint.c_str());
  Side sides[2] = {{"plain", &plain_home, UploadTinyBundle(plain_home)},
                   {"tls", &tls_home, UploadTinyBundle(tls_home)}};
  for (Side& s : sides) WarmTwoInstances(s);

  double kept[2], fresh[2];
  for (int i = 0; i < 2; ++i) {
    kept[i] = HealthRate(*sides[i].home, 2000, false);
    fresh[i] = HealthRate(*sides[i].home, 300, true);
  }
  std::vector<double> warm[2];
  for (int r = 0; r < runs + 1; ++r)  // alternating; the first of each is a warm-up
    for (int i = 0; i < 2; ++i) {
      double t = WarmStart(sides[i]);
      if (r > 0) warm[i].push_back(t);
    }
  double rate[2];
  for (int i = 0; i < 2; ++i) rate[i] = Throughput(sides[i], jobs);

  for (int i = 0; i < 2; ++i)
    std::printf(
        "  %-5s GET /v1/health kept-alive %7.0f/s, new connection each %6.0f/s; warm start median "
        "%6.2f ms p90 %6.2f ms; throughput %6.1f jobs/s\n",
        sides[i].name, kept[i], fresh[i], Median(warm[i]) * 1e3, P90(warm[i]) * 1e3, rate[i]);
  double handshake_ms = (1 / fresh[1] - 1 / fresh[0]) * 1e3;
  std::printf("  a new TLS connection costs %.2f ms more than a plain one (handshake, both ends)\n",
              handshake_ms);
  double warm_ratio = Median(warm[1]) / Median(warm[0]), tput_ratio = rate[1] / rate[0];
  std::printf(
      "RESULT tls_warm_start: median %.2f ms with TLS vs %.2f ms plain: ratio %.3f (target: <= "
      "1.10) %s\n",
      Median(warm[1]) * 1e3, Median(warm[0]) * 1e3, warm_ratio, Verdict(warm_ratio <= 1.10));
  std::printf(
      "RESULT tls_throughput: %.1f jobs/s with TLS vs %.1f plain: ratio %.3f (target: >= 0.90) "
      "%s\n",
      rate[1], rate[0], tput_ratio, Verdict(tput_ratio >= 0.90));
  std::printf("RESULT tls_api_calls: kept-alive %.3f of plain, new connection each %.3f of plain\n",
              kept[1] / kept[0], fresh[1] / fresh[0]);
  return 0;
}

}  // namespace
}  // namespace yard::bench

int main(int argc, char** argv) { return yard::bench::Main(argc, argv); }
