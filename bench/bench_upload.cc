// Upload (issue 4): MB/s of sending a 1 GiB array — a .npy file of random
// float32, as online_fit writes its data — through the path the Python SDK
// uses (UploadDirectory of the folder holding it, to the embedded server of
// a fresh YARD_HOME), against `cp` of the same file on the same disk. Then
// the same upload again: every chunk is on the server, so nothing should be
// sent, and since the file is unchanged (its chunks are remembered by its
// identity, common/hash_cache.h) it is not even read: one "missing" question.
//
// Usage: bench_upload [MiB]   (default 1024; rates in MB = 10^6 bytes/s)
// Needs about 3.2 x the size free where TMPDIR (or /tmp) is: the file, the
// cp copy and the server's chunks; with less it shrinks and says so.
#include <sys/statvfs.h>

#include "bench_common.h"

namespace yard::bench {
namespace {

constexpr double kSpaceFactor = 3.2;  // the file, the cp copy, the server's blobs, slack

// Free bytes on the filesystem of `path`.
uint64_t FreeBytes(const std::string& path) {
  struct statvfs s;
  if (statvfs(path.c_str(), &s) != 0) Die("statvfs " + path + ": " + std::strerror(errno));
  return static_cast<uint64_t>(s.f_bavail) * s.f_frsize;
}

// The size to use: the one asked for, or less if the disk is short.
uint64_t FitToDisk(uint64_t bytes, const std::string& dir) {
  uint64_t free_bytes = FreeBytes(dir);
  if (bytes * kSpaceFactor <= free_bytes) return bytes;
  uint64_t fit = static_cast<uint64_t>(free_bytes / kSpaceFactor) & ~uint64_t{(1 << 20) - 1};
  if (fit < (64u << 20)) {
    Die("only " + std::to_string(free_bytes >> 20) + " MiB free under " + dir + ": need about " +
        std::to_string(static_cast<uint64_t>(64 * kSpaceFactor)) +
        " MiB even for a 64 MiB run; free some space or point TMPDIR elsewhere");
  }
  std::printf(
      "  NOTE: %llu MiB free under %s is short of %.1f x %llu MiB: running with %llu MiB "
      "instead\n",
      static_cast<unsigned long long>(free_bytes >> 20), dir.c_str(), kSpaceFactor,
      static_cast<unsigned long long>(bytes >> 20), static_cast<unsigned long long>(fit >> 20));
  return fit;
}

// A version 1.0 .npy of `count` random float32 in [0, 1), written in 4 MiB
// blocks (xorshift: random enough that no two chunks are alike).
void WriteNpy(const std::string& path, uint64_t count) {
  std::string header =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(count) + ",), }";
  size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string magic = "\x93NUMPY\x01";
  magic += '\0';
  magic += static_cast<char>(header.size() & 0xff);
  magic += static_cast<char>(header.size() >> 8);
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) Die("cannot create " + path);
  std::fwrite(magic.data(), 1, magic.size(), f);
  std::fwrite(header.data(), 1, header.size(), f);
  std::vector<float> block(1 << 20);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (uint64_t done = 0; done < count;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(block.size(), count - done));
    for (size_t i = 0; i < n; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      block[i] = static_cast<float>(x >> 40) / static_cast<float>(1 << 24);
    }
    if (std::fwrite(block.data(), sizeof(float), n, f) != n)
      Die("writing " + path + " (disk full?)");
    done += n;
  }
  if (std::fclose(f) != 0) Die("writing " + path + " (disk full?)");
}

double LoadAverage() {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : -1;
}

// "per GB: server 0.80 s, client 1.10 s of CPU".
std::string CpuPerGb(const CpuSample& d, double gb) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "per GB: server %.2f s, client %.2f s of CPU", d.server / gb,
                d.bench / gb);
  return buf;
}

struct Upload {
  double seconds = 0;
  TransferStats stats;
};

// One upload of `dir` as `yard fit` does it (UploadDirectory remembering the
// chunks of large files; here in the bench's own cache folder, so that no
// earlier run's entries count).
Upload UploadOnce(const BenchHome& home, const std::string& dir) {
  Upload u;
  UploadOptions options;
  options.hash_cache_dir = home.path() + "/hash-cache";
  double t0 = MonoNow();
  Must(UploadDirectory(home.client(), dir, &u.stats, options).status(), "uploading " + dir);
  u.seconds = MonoNow() - t0;
  return u;
}

// The page cache holds the file in both runs and in cp's: rates compare
// CPU work, not the disk.

int Main(int argc, char** argv) {
  double mib = argc > 1 ? std::atof(argv[1]) : 1024;
  std::printf(
      "== upload: a %.0f MiB .npy of random float32 through UploadDirectory (the SDK's "
      "path) to a local server\n",
      mib);
  PrintMachine();
  BenchHome home;
  uint64_t bytes = FitToDisk(static_cast<uint64_t>(mib * 1024 * 1024), home.path());
  std::string data = home.path() + "/data";
  Must(MakeDirs(data), "creating " + data);
  std::string npy = data + "/train_x.npy";
  WriteNpy(npy, bytes / sizeof(float));
  double mb = static_cast<double>(std::filesystem::file_size(npy)) / 1e6;

  // The reference: median of three `cp` runs of the file on the same disk.
  std::vector<double> cps;
  for (int i = 0; i < 3; ++i) {
    std::string to = home.path() + "/cp-copy.npy";
    cps.push_back(CopySeconds(npy, to));
    ::unlink(to.c_str());
  }
  double cp_rate = mb / Median(cps);

  // The file's last change must be older than HashCache::kSettled when the
  // first upload reads it, or it is not remembered (a racily clean file).
  std::this_thread::sleep_for(2 * HashCache::kSettled);
  double load = LoadAverage();
  CpuSample cpu0 = SampleCpu(home);
  Upload first = UploadOnce(home, data);
  CpuSample cpu1 = SampleCpu(home);
  Upload second = UploadOnce(home, data);
  CpuSample cpu2 = SampleCpu(home);
  double first_rate = mb / first.seconds, second_rate = mb / second.seconds;
  double cp_s = Median(cps);

  std::printf("  load average before: %.2f\n", load);
  std::printf("  cp of the file (median of 3): %.3f s (%.0f MB/s)\n", cp_s, cp_rate);
  std::printf("  first upload:  %.3f s (%.0f MB/s), %llu of %llu chunks sent (%.0f MB)\n",
              first.seconds, first_rate, static_cast<unsigned long long>(first.stats.chunks_sent),
              static_cast<unsigned long long>(first.stats.chunks_total),
              first.stats.bytes_sent / 1e6);
  std::printf("    %s; %s\n", DescribeCpu(cpu1 - cpu0, first.seconds).c_str(),
              CpuPerGb(cpu1 - cpu0, mb / 1e3).c_str());
  std::printf("  second upload: %.3f s (%.0f MB/s; %.3f of cp's time), %llu of %llu chunks sent\n",
              second.seconds, second_rate, second.seconds / cp_s,
              static_cast<unsigned long long>(second.stats.chunks_sent),
              static_cast<unsigned long long>(second.stats.chunks_total));
  std::printf("    %s\n", DescribeCpu(cpu2 - cpu1, second.seconds).c_str());
  bool nothing_resent = second.stats.chunks_sent == 0;
  bool meets = nothing_resent && first_rate / cp_rate >= 0.5 && second.seconds / cp_s <= 0.2;
  std::printf(
      "RESULT upload: %.0f MB/s (%.0f MiB .npy, first upload) vs cp %.0f MB/s: ratio %.3f "
      "(goal >= 0.5); second upload %.3f s = %.3f of cp's time (goal <= 0.2), %llu chunks "
      "sent (should be 0); load %.1f %s\n",
      first_rate, static_cast<double>(bytes) / (1 << 20), cp_rate, first_rate / cp_rate,
      second.seconds, second.seconds / cp_s,
      static_cast<unsigned long long>(second.stats.chunks_sent), load, Verdict(meets));
  return 0;
}

}  // namespace
}  // namespace yard::bench

int main(int argc, char** argv) { return yard::bench::Main(argc, argv); }
