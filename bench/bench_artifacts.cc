// Artifacts: a running job writes a 256 MiB checkpoint of random bytes into
// $YARD_CHECKPOINT_DIR; the client mirrors it (ArtifactMirror into a folder
// of the same disk, fed the artifact_part events too, so it fetches while
// the agent still uploads). MB/s from the job's file being complete to the local
// copy complete and verified, against `cp` of the same file on the same
// disk. Target: >= half of cp. The mirror checks every chunk against its
// SHA-256 as it arrives and renames the file into place only when all
// passed, so the copy is verified when Drain() returns; the benchmark then
// hashes the whole copy once more (not timed) to confirm it equals the
// job's file.
//
// Then pipelining: the job writes N checkpoints of MiB/N each, one right
// after the other (`cp` of random files made beforehand); MB/s from the first being complete to the
// last mirrored, against `cp` of the N files in turn. Uploads, the server's stores and the mirror's
// fetches of different files overlap.
//
// Usage: bench_artifacts [MiB] [N]   (default 256 and 4; rates in MB = 10^6 bytes/s)
#include <sys/stat.h>

#include <map>

#include "bench_common.h"
#include "common/hashing.h"

namespace yard::bench {
namespace {

// Writes the checkpoint, says when it was complete (wall clock) and its
// path, then goes on "training" (idle) until cancelled. The job does not
// hash its file: coreutils' sha256sum would take a core for most of a
// second while the agent uploads (a bias of the benchmark, not of the
// path: up to 2026-12-07 18:30 it did). The benchmark hashes the job's
// file itself, after the timing.
std::vector<std::string> Command(uint64_t bytes) {
  return {"sh", "-c",
          "f=\"$YARD_CHECKPOINT_DIR/ckpt.bin\"; head -c " + std::to_string(bytes) +
              " /dev/urandom > \"$f\"; echo \"written $(date +%s.%N)\"; "
              "echo \"path $f\"; exec sleep 300"};
}

std::string Sha256OfFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("cannot open " + path);
  Sha256 h;
  std::vector<char> buf(4 << 20);
  for (ssize_t n; (n = read(fd, buf.data(), buf.size())) > 0;) h.Update(buf.data(), n);
  close(fd);
  return h.FinishHex();
}

// Times (our wall clock or the server's event times, same host).
struct Timeline {
  double running = 0;                      // "running" event stored
  double written = 0;                      // the job's file complete (printed by the job)
  double event_stored = 0, event_got = 0;  // artifact event: stored, in our hands
  double first_part = 0;                   // the first artifact_part event in our hands (0: none)
  int parts = 0;
  uint64_t chunks_early = 0;  // chunks the mirror had fetched from parts
  double mirrored = 0;        // local copy in place, every chunk checked (the end of the timing)
  double verified = 0;        // local copy hashed again as a whole (the benchmark's own check)
  std::string job_hash, job_path, local_hash;
};

// Picks the job's "written T" and "path P" lines out of an output event
// (which may hold several lines).
void ParseJobLines(const std::string& data, Timeline* tl) {
  size_t start = 0;
  for (size_t nl; (nl = data.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string line = data.substr(start, nl - start);
    if (line.rfind("written ", 0) == 0)
      tl->written = std::atof(line.c_str() + 8);
    else if (line.rfind("path ", 0) == 0)
      tl->job_path = line.substr(5);
  }
}

// The pipelined run: N files of `each` bytes, written one after the other.
struct Series {
  double first_written = 0, last_written = 0;  // the job's clock, as printed
  double mirrored = 0;                         // the last file mirrored (our clock)
  int verified = 0;                            // mirrored files equal to the job's
  std::vector<std::string> job_paths;
};

// The sources are made first, outside the watched folder (random, so no
// chunk is shared), then copied into place one right after the other.
std::vector<std::string> SeriesCommand(uint64_t each, int n) {
  std::string script = "d=\"$YARD_CHECKPOINT_DIR\"; s=$(mktemp -d); ";
  for (int i = 0; i < n; ++i)
    script +=
        "head -c " + std::to_string(each) + " /dev/urandom > \"$s/" + std::to_string(i) + "\"; ";
  for (int i = 0; i < n; ++i)
    script += "cp \"$s/" + std::to_string(i) + "\" \"$d/series-" + std::to_string(i) +
              ".bin\"; echo \"written $(date +%s.%N)\"; ";
  script += "rm -rf \"$s\"; echo \"path $d\"; exec sleep 300";
  return {"sh", "-c", script};
}

Series MirrorSeries(const BenchHome& home, const Json& bundle, uint64_t each, int n,
                    const std::string& dest) {
  Series sr;
  const HttpClient& client = home.client();
  std::string job_dir;
  int events = 0;
  {
    ArtifactMirror mirror(client, {{"checkpoints", dest}});
    std::string id =
        SubmitJob(client, bundle, SeriesCommand(each, n), 600, "bench artifacts series");
    Must(FollowEvents(client, id, FollowOptions{},
                      [&](const Json& ev) {
                        std::string kind = ev.value("kind", "");
                        if (kind == "state" && IsFinalState(ev.value("state", "")))
                          Die("artifact series job ended early: " + ev.dump());
                        if (kind == "output") {
                          std::string data = ev["data"];
                          size_t start = 0;
                          for (size_t nl; (nl = data.find('\n', start)) != std::string::npos;
                               start = nl + 1) {
                            std::string line = data.substr(start, nl - start);
                            if (line.rfind("written ", 0) == 0) {
                              double t = std::atof(line.c_str() + 8);
                              if (sr.first_written == 0) sr.first_written = t;
                              sr.last_written = t;
                            } else if (line.rfind("path ", 0) == 0) {
                              job_dir = line.substr(5);
                            }
                          }
                        }
                        if (kind == "artifact_part") mirror.Add(ev);  // fetched early
                        if (kind == "artifact" &&
                            ev["entry"].value("path", "").rfind("series-", 0) == 0 && events < n) {
                          mirror.Add(ev);
                          if (++events == n) {
                            Must(mirror.Drain(), "mirroring the series");
                            sr.mirrored = WallNow();
                          }
                        }
                        return sr.mirrored == 0 || job_dir.empty();
                      }),
         "following " + id);
    Must(client.Post("/v1/jobs/" + id + "/cancel", Json::object()).status(), "cancel");
    FollowToEnd(client, id);
  }
  for (int i = 0; i < n; ++i) {  // the job's files against their copies, untimed
    std::string name = "series-" + std::to_string(i) + ".bin";
    sr.job_paths.push_back(job_dir + "/" + name);
    if (Sha256OfFile(dest + "/" + name) == Sha256OfFile(job_dir + "/" + name)) sr.verified++;
  }
  return sr;
}

Timeline MirrorCheckpoint(const BenchHome& home, const Json& bundle, uint64_t bytes,
                          const std::string& dest) {
  Timeline tl;
  const HttpClient& client = home.client();
  ArtifactMirror mirror(client, {{"checkpoints", dest}});
  std::string id = SubmitJob(client, bundle, Command(bytes), 600, "bench artifacts");
  Must(FollowEvents(client, id, FollowOptions{},
                    [&](const Json& ev) {
                      std::string kind = ev.value("kind", "");
                      if (kind == "state" && ev.value("state", "") == "running")
                        tl.running = ev["time"];
                      if (kind == "state" && IsFinalState(ev.value("state", "")))
                        Die("artifact job ended early: " + ev.dump());
                      if (kind == "output") ParseJobLines(ev["data"], &tl);
                      if (kind == "artifact_part") {  // fetched before the artifact event
                        if (tl.first_part == 0) tl.first_part = WallNow();
                        tl.parts++;
                        mirror.Add(ev);
                      }
                      if (kind == "artifact" && ev["entry"].value("size", uint64_t{0}) == bytes &&
                          tl.verified == 0) {
                        tl.event_got = WallNow();
                        tl.event_stored = ev["time"];
                        mirror.Add(ev);
                        Must(mirror.Drain(), "mirroring");
                        tl.mirrored = WallNow();
                        tl.chunks_early = mirror.chunks_fetched_early();
                        tl.local_hash =
                            Sha256OfFile(dest + "/ckpt.bin");  // not the mirror's: a cross-check
                        tl.verified = WallNow();
                      }
                      // Done once the copy is verified and the job told us its path.
                      return tl.verified == 0 || tl.job_path.empty();
                    }),
       "following " + id);
  tl.job_hash = Sha256OfFile(tl.job_path);  // the job's file, untimed
  Must(client.Post("/v1/jobs/" + id + "/cancel", Json::object()).status(), "cancel");
  FollowToEnd(client, id);
  return tl;
}

// First and last modification times (epoch seconds) and count of the
// server's blob files written after `since`: when the agent's chunk uploads
// arrived.
struct BlobTimes {
  double first = 0, last = 0;
  int count = 0;
};

BlobTimes UploadedBlobs(const std::string& blob_dir, double since) {
  BlobTimes b;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(blob_dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (!it->is_regular_file() || ::stat(it->path().c_str(), &st) != 0) continue;
    double t = st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
    if (t < since) continue;
    b.first = b.count == 0 ? t : std::min(b.first, t);
    b.last = std::max(b.last, t);
    b.count++;
  }
  return b;
}

int Main(int argc, char** argv) {
  double mib = argc > 1 ? std::atof(argv[1]) : 256;
  int series_n = argc > 2 ? std::max(1, std::atoi(argv[2])) : 4;
  uint64_t bytes = static_cast<uint64_t>(mib * 1024 * 1024);
  double mb = bytes / 1e6;
  std::printf("== artifacts: a job writes a %.0f MiB checkpoint; ArtifactMirror copies it here\n",
              mib);
  PrintMachine();
  BenchHome home;
  Json bundle = UploadTinyBundle(home);
  RunJobToEnd(home.client(), bundle, {"true"}, 600);  // a warm instance
  std::string dest = home.path() + "/mirror";
  CpuSample cpu0 = SampleCpu(home);
  double t0 = MonoNow();
  Timeline tl = MirrorCheckpoint(home, bundle, bytes, dest);
  CpuSample cpu = SampleCpu(home) - cpu0;
  double run_s = MonoNow() - t0;
  BlobTimes blobs = UploadedBlobs(home.path() + "/blobs", tl.written);
  bool same = tl.local_hash == tl.job_hash;
  // The reference: median of three `cp` runs of the job's file on the same disk.
  std::vector<double> cps;
  for (int i = 0; i < 3; ++i) {
    std::string to = home.path() + "/cp-copy.bin";
    cps.push_back(CopySeconds(tl.job_path, to));
    ::unlink(to.c_str());
  }
  double cp_s = Median(cps);
  double cp_rate = mb / cp_s;

  double from_written = tl.mirrored - tl.written;
  double mirror_alone = tl.mirrored - tl.event_got;
  std::printf("  local copy verified: %s (sha256 %s)\n", same ? "yes" : "NO, it differs",
              tl.local_hash.substr(0, 16).c_str());
  std::printf(
      "  cp of the job's file (median of 3): %.3f s (%.0f MB/s); runs in order %.3f / %.3f / "
      "%.3f s\n",
      cp_s, cp_rate, cps[0], cps[1], cps[2]);
  std::printf(
      "    (the first cp writes into pages the kernel has not used lately, as the server's blobs "
      "and the mirror's copy do; the later ones into the pages the previous copy freed, which "
      "in a VM that reports free pages to its host can be several times cheaper)\n");
  std::printf("  timeline (s after the file was complete):\n");
  std::printf("    job running -> file complete     %7.3f s (head -c from /dev/urandom)\n",
              tl.written - tl.running);
  std::printf(
      "    first chunk stored on the server %7.3f s (agent notices the file: inotify "
      "IN_CLOSE_WRITE)\n",
      blobs.first - tl.written);
  std::printf(
      "    last of %d chunks stored          %7.3f s (agent chunks, hashes, uploads: "
      "%.0f MB/s)\n",
      blobs.count, blobs.last - tl.written, mb / (blobs.last - blobs.first));
  if (tl.parts > 0)
    std::printf(
        "    first of %d artifact_part events   %7.3f s (the mirror fetches while the upload goes "
        "on: %llu of %d chunks before the artifact event)\n",
        tl.parts, tl.first_part - tl.written, static_cast<unsigned long long>(tl.chunks_early),
        blobs.count);
  std::printf("    artifact event stored            %7.3f s\n", tl.event_stored - tl.written);
  std::printf("    artifact event at the follower   %7.3f s\n", tl.event_got - tl.written);
  std::printf(
      "    local copy in place, verified    %7.3f s (after the artifact event: %.3f s, %.0f "
      "MB/s; every chunk checked on arrival)\n",
      from_written, mirror_alone, mb / mirror_alone);
  std::printf("    (whole copy hashed again by the benchmark, not timed: %.3f s)\n",
              tl.verified - tl.mirrored);
  std::printf("  %s (whole run, %.1f s)\n", DescribeCpu(cpu, run_s).c_str(), run_s);
  std::printf("  from job start (running) to verified: %.3f s (%.0f MB/s)\n",
              tl.mirrored - tl.running, mb / (tl.mirrored - tl.running));
  double rate = mb / from_written;

  // Pipelining: N checkpoints one after the other.
  uint64_t each = bytes / static_cast<uint64_t>(series_n);
  CpuSample scpu0 = SampleCpu(home);
  double st0 = MonoNow();
  Series sr = MirrorSeries(home, bundle, each, series_n, home.path() + "/mirror-series");
  CpuSample scpu = SampleCpu(home) - scpu0;
  double series_run_s = MonoNow() - st0;
  double series_cp_s = 0;
  for (const std::string& from : sr.job_paths) {
    std::string to = home.path() + "/cp-series.bin";
    series_cp_s += CopySeconds(from, to);
    ::unlink(to.c_str());
  }
  double series_mb = each * series_n / 1e6;
  double series_s = sr.mirrored - sr.first_written;
  std::printf(
      "  pipelined: %d checkpoints of %.0f MiB written one after another (%.3f s from the "
      "first complete to the last)\n",
      series_n, each / 1048576.0, sr.last_written - sr.first_written);
  std::printf(
      "    first complete -> last mirrored, verified: %.3f s (%.0f MB/s); %d of %d equal to "
      "the job's\n",
      series_s, series_mb / series_s, sr.verified, series_n);
  std::printf("    cp of the %d files in turn: %.3f s (%.0f MB/s)\n", series_n, series_cp_s,
              series_mb / series_cp_s);
  std::printf("    %s (whole run, %.1f s)\n", DescribeCpu(scpu, series_run_s).c_str(),
              series_run_s);
  std::printf(
      "RESULT artifacts pipelined: %.0f MB/s (%d checkpoints, first complete -> last "
      "verified) vs cp %.0f MB/s: ratio %.3f\n",
      series_mb / series_s, series_n, series_mb / series_cp_s,
      series_s > 0 ? series_cp_s / series_s : 0.0);
  std::printf(
      "RESULT artifacts: %.0f MB/s (file complete -> copy verified) vs cp %.0f MB/s: "
      "ratio %.3f; after the artifact event %.0f MB/s, ratio %.3f (target: >= 0.5) %s\n",
      rate, cp_rate, rate / cp_rate, mb / mirror_alone, mb / mirror_alone / cp_rate,
      Verdict(same && rate / cp_rate >= 0.5));
  return 0;
}

}  // namespace
}  // namespace yard::bench

int main(int argc, char** argv) { return yard::bench::Main(argc, argv); }
