// Upload (issue 4): MB/s of sending a 1 GiB array — a .npy file of random
// float32, as online_fit writes its data — through the path the Python SDK
// uses (UploadDirectory of the folder holding it, to the embedded server of
// a fresh YARD_HOME), against `cp` of the same file on the same disk. Then
// the same upload again: every chunk is on the server, so nothing should be
// sent, and it should take about as long as reading and hashing the file.
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
    Die("only " + std::to_string(free_bytes >> 20) + " MiB free under " + dir +
        ": need about " + std::to_string(static_cast<uint64_t>(64 * kSpaceFactor)) +
        " MiB even for a 64 MiB run; free some space or point TMPDIR elsewhere");
  }
  std::printf("  NOTE: %llu MiB free under %s is short of %.1f x %llu MiB: running with %llu MiB "
              "instead\n",
              static_cast<unsigned long long>(free_bytes >> 20), dir.c_str(), kSpaceFactor,
              static_cast<unsigned long long>(bytes >> 20),
              static_cast<unsigned long long>(fit >> 20));
  return fit;
}

// A version 1.0 .npy of `count` random float32 in [0, 1), written in 4 MiB
// blocks (xorshift: random enough that no two chunks are alike).
void WriteNpy(const std::string& path, uint64_t count) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(count) + ",), }";
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
    if (std::fwrite(block.data(), sizeof(float), n, f) != n) Die("writing " + path + " (disk full?)");
    done += n;
  }
  if (std::fclose(f) != 0) Die("writing " + path + " (disk full?)");
}

struct Upload {
  double seconds = 0;
  TransferStats stats;
};

// One upload of `dir` as the SDK does it (client.upload_directory).
Upload UploadOnce(const BenchHome& home, const std::string& dir) {
  Upload u;
  double t0 = MonoNow();
  Must(UploadDirectory(home.client(), dir, &u.stats, UploadOptions{}).status(), "uploading " + dir);
  u.seconds = MonoNow() - t0;
  return u;
}

int Main(int argc, char** argv) {
  double mib = argc > 1 ? std::atof(argv[1]) : 1024;
  std::printf("== upload: a %.0f MiB .npy of random float32 through UploadDirectory (the SDK's "
              "path) to a local server\n", mib);
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

  CpuSample cpu0 = SampleCpu(home);
  Upload first = UploadOnce(home, data);
  CpuSample cpu = SampleCpu(home) - cpu0;
  Upload second = UploadOnce(home, data);
  double first_rate = mb / first.seconds, second_rate = mb / second.seconds;

  std::printf("  cp of the file (median of 3): %.3f s (%.0f MB/s)\n", Median(cps), cp_rate);
  std::printf("  first upload:  %.3f s (%.0f MB/s), %llu of %llu chunks sent (%.0f MB)\n",
              first.seconds, first_rate, static_cast<unsigned long long>(first.stats.chunks_sent),
              static_cast<unsigned long long>(first.stats.chunks_total), first.stats.bytes_sent / 1e6);
  std::printf("    %s\n", DescribeCpu(cpu, first.seconds).c_str());
  std::printf("  second upload: %.3f s (%.0f MB/s), %llu of %llu chunks sent\n", second.seconds,
              second_rate, static_cast<unsigned long long>(second.stats.chunks_sent),
              static_cast<unsigned long long>(second.stats.chunks_total));
  bool nothing_resent = second.stats.chunks_sent == 0;
  std::printf("RESULT upload: %.0f MB/s (%.0f MiB .npy, first upload) vs cp %.0f MB/s: ratio %.3f; "
              "second upload %.0f MB/s, ratio %.3f, %llu chunks sent (should be 0) %s\n",
              first_rate, static_cast<double>(bytes) / (1 << 20), cp_rate, first_rate / cp_rate,
              second_rate, second_rate / cp_rate,
              static_cast<unsigned long long>(second.stats.chunks_sent),
              Verdict(nothing_resent && first_rate / cp_rate >= 0.5));
  return 0;
}

}  // namespace
}  // namespace yard::bench

int main(int argc, char** argv) { return yard::bench::Main(argc, argv); }
