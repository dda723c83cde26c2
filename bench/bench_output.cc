// Output: a job prints 200 MB of lines; MB/s of output events reaching a
// follower (bytes of "data" counted until the final state) against the same
// command's output read from a plain pipe. Target: >= half of the pipe.
//
// Usage: bench_output [megabytes]   (default 200; 1 MB = 10^6 bytes)
#include "bench_common.h"

namespace yard::bench {
namespace {

// `yes` of a 100-byte line (99 characters and the newline), cut to `bytes`.
std::vector<std::string> Command(uint64_t bytes) {
  std::string line(99, 'x');
  for (size_t i = 0; i < line.size(); ++i) line[i] = static_cast<char>('a' + i % 26);
  return {"sh", "-c", "yes '" + line + "' | head -c " + std::to_string(bytes)};
}

struct Streamed {
  uint64_t bytes = 0;
  uint64_t events = 0;
  double total = 0;                    // POST sent -> final state at the follower
  double streaming = 0;                // first output -> last output at the follower
  double running_t = 0;                // server time of "running"
  double first_stored = 0;             // server time of the first output event
  double last_stored = 0;              // server time of the last output event
  double first_got = 0, last_got = 0;  // our wall times
};

Streamed FollowOutput(const HttpClient& client, const Json& bundle, uint64_t bytes) {
  Streamed s;
  double t0 = MonoNow();
  std::string id = SubmitJob(client, bundle, Command(bytes), 600, "bench output");
  std::string state = FollowToEnd(client, id, [&](const Json& ev) {
    std::string kind = ev.value("kind", "");
    if (kind == "state" && ev.value("state", "") == "running") s.running_t = ev["time"];
    if (kind != "output") return;
    double now = WallNow();
    if (s.events++ == 0) {
      s.first_got = now;
      s.first_stored = ev["time"];
    }
    s.last_got = now;
    s.last_stored = ev["time"];
    s.bytes += ev["data"].get_ref<const std::string&>().size();
  });
  s.total = MonoNow() - t0;
  s.streaming = s.last_got - s.first_got;
  if (state != "succeeded") Die("output job " + id + " ended " + state);
  return s;
}

// Line latency at a normal rate: a job prints its wall clock 100 times a
// second; each line's age when it reaches the follower (same host, same
// clock).
std::vector<double> LineLatencies(const HttpClient& client, const Json& bundle) {
  std::vector<std::string> command = {
      "python3", "-c",
      "import time\nfor i in range(300):\n    print(repr(time.time()), flush=True)\n"
      "    time.sleep(0.01)\n"};
  std::vector<double> ages;
  std::string pending;
  std::string id = SubmitJob(client, bundle, command, 600, "bench output latency");
  std::string state = FollowToEnd(client, id, [&](const Json& ev) {
    if (ev.value("kind", "") != "output") return;
    double now = WallNow();
    pending += ev["data"].get_ref<const std::string&>();
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1)) {
      double printed = std::atof(pending.substr(0, nl).c_str());
      if (printed > 0) ages.push_back(now - printed);
    }
  });
  if (state != "succeeded") Die("latency job " + id + " ended " + state);
  return ages;
}

int Main(int argc, char** argv) {
  double mb = argc > 1 ? std::atof(argv[1]) : 200;
  uint64_t bytes = static_cast<uint64_t>(mb * 1e6);
  std::printf("== output: a job prints %.0f MB of 100-byte lines; MB/s at a follower\n", mb);
  PrintMachine();

  // The reference: the median of three runs through a plain pipe.
  uint64_t piped = 0;
  std::vector<double> runs;
  for (int i = 0; i < 3; ++i) {
    double t0 = MonoNow();
    piped = RunDrained(Command(bytes));
    runs.push_back(MonoNow() - t0);
  }
  double pipe_s = Median(runs);
  double pipe_rate = piped / pipe_s / 1e6;

  BenchHome home;
  Json bundle = UploadTinyBundle(home);
  RunJobToEnd(home.client(), bundle, {"true"}, 600);  // a warm instance
  CpuSample cpu0 = SampleCpu(home);
  Streamed s = FollowOutput(home.client(), bundle, bytes);
  CpuSample cpu = SampleCpu(home) - cpu0;
  std::vector<double> ages = LineLatencies(home.client(), bundle);
  double rate = s.bytes / s.total / 1e6;
  std::printf("  plain pipe (median of 3): %llu bytes in %.3f s\n",
              static_cast<unsigned long long>(piped), pipe_s);
  std::printf("  follower: %llu bytes in %llu output events (%.1f KB/event) in %.3f s\n",
              static_cast<unsigned long long>(s.bytes), static_cast<unsigned long long>(s.events),
              s.bytes / 1e3 / std::max<uint64_t>(1, s.events), s.total);
  std::printf("  %s\n", DescribeCpu(cpu, s.total).c_str());
  std::printf("  where the time goes (server event times):\n");
  std::printf("    running -> first output stored   %8.3f s\n", s.first_stored - s.running_t);
  std::printf("    first -> last output stored      %8.3f s (%.1f MB/s into the store)\n",
              s.last_stored - s.first_stored, s.bytes / (s.last_stored - s.first_stored) / 1e6);
  std::printf("    last stored -> last at follower  %8.3f s\n", s.last_got - s.last_stored);
  std::printf("    first -> last at follower        %8.3f s (%.1f MB/s)\n", s.streaming,
              s.bytes / s.streaming / 1e6);
  std::printf(
      "  line latency at 100 lines/s (%zu lines): median %.1f ms, p99 %.1f ms "
      "(target: p99 <= 20 ms)\n",
      ages.size(), Median(ages) * 1e3, Quantile(ages, 0.99) * 1e3);
  std::printf(
      "RESULT output: %.1f MB/s vs plain pipe %.1f MB/s: ratio %.3f "
      "(target: >= 0.5) %s\n",
      rate, pipe_rate, rate / pipe_rate, Verdict(rate / pipe_rate >= 0.5));
  return 0;
}

}  // namespace
}  // namespace yard::bench

int main(int argc, char** argv) { return yard::bench::Main(argc, argv); }
