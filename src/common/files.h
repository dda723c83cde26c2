// Small file helpers used across roles.
#pragma once

#include <sys/uio.h>
#include <unistd.h>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace yard {

// Owns a file descriptor: closed when this goes away, unless Close() did it.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(ScopedFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  ScopedFd& operator=(ScopedFd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  int get() const { return fd_; }
  // Closes now, reporting the error a deferred write may surface at close.
  int Close() { return ::close(std::exchange(fd_, -1)); }

 private:
  int fd_;
};

StatusOr<std::string> ReadFile(const std::string& path);
// Writes to `path.tmp-<pid>` then renames over `path`, so readers see the
// old or the new content, never a mix. `mode` applies to the new file.
Status WriteFileAtomic(const std::string& path, std::string_view data, int mode = 0644);
// mkdir -p.
Status MakeDirs(const std::string& path);
// Writes all of `iov` with writev, or with pwritev at `offset` when one is
// given, however the kernel splits it (short writes, EINTR, IOV_MAX), at
// most kMaxBytesPerWrite per call. Empty pieces are skipped. An error names
// `what` (e.g. "writing the event spool"); a full disk names `folder` too
// when given (see ErrnoStatus).
Status WriteVectorAll(int fd, std::vector<iovec> iov, std::optional<uint64_t> offset,
                      const std::string& what, const std::string& folder = "");
// Reads up to `size` bytes at `offset` of `fd` into `out`, going on after
// short reads and EINTR; returns how many it read (fewer only where the
// file ends). An error names `what`.
StatusOr<size_t> ReadAt(int fd, char* out, size_t size, uint64_t offset, const std::string& what);
// Bytes WriteVectorAll hands the kernel per call. A larger buffered write
// makes ext4 (Linux >= 6.x) cache the file in large folios, whose
// high-order pages are, in a guest with free page reporting (virtio-balloon,
// as on this project's machines), the ones handed back to the host: each
// first touch then costs a host fault. Measured with dd on a fresh 200 MiB
// file: 0.05 s of system time in 64 KiB writes, 0.30 s in 128 KiB, 0.5 s
// in 256 KiB to 4 MiB (bench/README.md, "Output: the page cache").
inline constexpr size_t kMaxBytesPerWrite = 64 << 10;
// The pieces of `iov` from `at` (skipping consumed ones is the caller's)
// that one call writes: at most IOV_MAX pieces and `max_bytes` bytes, the
// last one cut short if need be. Exposed for tests.
std::vector<iovec> WriteWindow(const std::vector<iovec>& iov, size_t at, size_t max_bytes);
// Value of an environment variable, or `fallback` when unset or empty.
std::string EnvOr(const char* name, const std::string& fallback);
// Absolute path of the running executable (/proc/self/exe).
std::string SelfExecutable();
// The running program's GNU build id (hex; the linker's hash of its
// contents), "" if it has none. Two builds differ; copies of one do not.
std::string SelfBuildId();
// The GNU build id of the ELF executable at `path` (what SelfBuildId says
// when it runs), "" if it is unreadable, not ELF of this machine or has none.
std::string BuildIdOf(const std::string& path);
// The `yard` to copy to other machines (SSH hosts, cloud instances): the
// static `yard-portable` beside `yard` (default: the running executable)
// when it is there (docs/operations.md, "The portable agent"), else `yard`
// itself. `yard-shim`, static too, is found beside either.
std::string PortableYard(const std::string& yard);
std::string PortableYard();
// Trainyard's state folder: $YARD_HOME, else ~/.local/share/trainyard.
std::string DefaultYardHome();
// Name of the OS user running us.
std::string LocalUserName();

}  // namespace yard
