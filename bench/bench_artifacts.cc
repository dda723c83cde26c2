// Artifacts: a running job writes a 256 MiB checkpoint of random bytes into
// $YARD_CHECKPOINT_DIR; the client mirrors it (ArtifactMirror into a folder
// of the same disk). MB/s from the job's file being complete to the local
// copy complete and verified, against `cp` of the same file on the same
// disk. Target: >= half of cp. The mirror checks every chunk against its
// SHA-256 as it arrives and renames the file into place only when all
// passed, so the copy is verified when Drain() returns; the benchmark then
// hashes the whole copy once more (not timed) to confirm it equals the
// job's file.
//
// Usage: bench_artifacts [MiB]   (default 256; rates in MB = 10^6 bytes/s)
#include <sys/stat.h>

#include "bench_common.h"
#include "common/hashing.h"

namespace yard::bench {
namespace {

// Writes the checkpoint, says when it was complete (wall clock), its hash
// and path, then goes on "training" until cancelled.
std::vector<std::string> Command(uint64_t bytes) {
  return {"sh", "-c",
          "f=\"$YARD_CHECKPOINT_DIR/ckpt.bin\"; head -c " + std::to_string(bytes) +
              " /dev/urandom > \"$f\"; echo \"written $(date +%s.%N)\"; sha256sum \"$f\"; "
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
  double running = 0;   // "running" event stored
  double written = 0;   // the job's file complete (printed by the job)
  double event_stored = 0, event_got = 0;  // artifact event: stored, in our hands
  double mirrored = 0;  // local copy in place, every chunk checked (the end of the timing)
  double verified = 0;  // local copy hashed again as a whole (the benchmark's own check)
  std::string job_hash, job_path, local_hash;
};

// Picks the job's "written T", "<sha256>  <file>" and "path P" lines out of
// an output event (which may hold several lines).
void ParseJobLines(const std::string& data, Timeline* tl) {
  size_t start = 0;
  for (size_t nl; (nl = data.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string line = data.substr(start, nl - start);
    if (line.rfind("written ", 0) == 0) tl->written = std::atof(line.c_str() + 8);
    else if (line.rfind("path ", 0) == 0) tl->job_path = line.substr(5);
    else if (line.size() > 64 && line[64] == ' ') tl->job_hash = line.substr(0, 64);
  }
}

Timeline MirrorCheckpoint(const BenchHome& home, const Json& bundle, uint64_t bytes,
                          const std::string& dest) {
  Timeline tl;
  const HttpClient& client = home.client();
  ArtifactMirror mirror(client, {{"checkpoints", dest}});
  std::string id = SubmitJob(client, bundle, Command(bytes), 600, "bench artifacts");
  Must(FollowEvents(client, id, FollowOptions{}, [&](const Json& ev) {
         std::string kind = ev.value("kind", "");
         if (kind == "state" && ev.value("state", "") == "running") tl.running = ev["time"];
         if (kind == "state" && IsFinalState(ev.value("state", "")))
           Die("artifact job ended early: " + ev.dump());
         if (kind == "output") ParseJobLines(ev["data"], &tl);
         if (kind == "artifact" && ev["entry"].value("size", uint64_t{0}) == bytes &&
             tl.verified == 0) {
           tl.event_got = WallNow();
           tl.event_stored = ev["time"];
           mirror.Add(ev);
           Must(mirror.Drain(), "mirroring");
           tl.mirrored = WallNow();
           tl.local_hash = Sha256OfFile(dest + "/ckpt.bin");  // not the mirror's: a cross-check
           tl.verified = WallNow();
         }
         // Done once the copy is verified and the job told us its hash.
         return tl.verified == 0 || tl.job_hash.empty() || tl.job_path.empty();
       }),
       "following " + id);
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
  std::printf("  cp of the job's file (median of 3): %.3f s (%.0f MB/s)\n", cp_s, cp_rate);
  std::printf("  timeline (s after the file was complete):\n");
  std::printf("    job running -> file complete     %7.3f s (head -c from /dev/urandom)\n",
              tl.written - tl.running);
  std::printf("    first chunk stored on the server %7.3f s (agent notices the file: inotify "
              "IN_CLOSE_WRITE)\n", blobs.first - tl.written);
  std::printf("    last of %d chunks stored          %7.3f s (agent chunks, hashes, uploads: "
              "%.0f MB/s)\n", blobs.count, blobs.last - tl.written, mb / (blobs.last - blobs.first));
  std::printf("    artifact event stored            %7.3f s\n", tl.event_stored - tl.written);
  std::printf("    artifact event at the follower   %7.3f s\n", tl.event_got - tl.written);
  std::printf("    local copy in place, verified    %7.3f s (mirror alone: %.3f s, %.0f MB/s; every "
              "chunk checked on arrival)\n", from_written, mirror_alone, mb / mirror_alone);
  std::printf("    (whole copy hashed again by the benchmark, not timed: %.3f s)\n",
              tl.verified - tl.mirrored);
  std::printf("  %s (whole run, %.1f s)\n", DescribeCpu(cpu, run_s).c_str(), run_s);
  std::printf("  from job start (running) to verified: %.3f s (%.0f MB/s)\n",
              tl.mirrored - tl.running, mb / (tl.mirrored - tl.running));
  double rate = mb / from_written;
  std::printf("RESULT artifacts: %.0f MB/s (file complete -> copy verified) vs cp %.0f MB/s: "
              "ratio %.3f; mirror alone %.0f MB/s, ratio %.3f (target: >= 0.5) %s\n",
              rate, cp_rate, rate / cp_rate, mb / mirror_alone, mb / mirror_alone / cp_rate,
              Verdict(same && rate / cp_rate >= 0.5));
  return 0;
}

}  // namespace
}  // namespace yard::bench

int main(int argc, char** argv) { return yard::bench::Main(argc, argv); }
