#include "common/file_copy.h"

#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>

namespace yard {
namespace {

bool IsWholeFileIntoEmpty(int src, uint64_t src_off, int dst, uint64_t dst_off, uint64_t size) {
  struct stat s, d;
  return src_off == 0 && dst_off == 0 && ::fstat(src, &s) == 0 && ::fstat(dst, &d) == 0 &&
         static_cast<uint64_t>(s.st_size) == size && d.st_size == 0;
}

// The errors by which a filesystem (or a kernel) says "not this way".
bool Unsupported(int err) {
  return err == EXDEV || err == EOPNOTSUPP || err == ENOTTY || err == EINVAL || err == ENOSYS ||
         err == EBADF || err == ETXTBSY || err == EPERM;
}

// copy_file_range until done; false (nothing lost: *done tells how far it
// got) when the kernel will not, so the caller goes on another way.
StatusOr<bool> KernelCopy(int src, uint64_t src_off, int dst, uint64_t dst_off, uint64_t size,
                          uint64_t* done, const std::string& what) {
  while (*done < size) {
    loff_t in = static_cast<loff_t>(src_off + *done), out = static_cast<loff_t>(dst_off + *done);
    ssize_t n = ::copy_file_range(src, &in, dst, &out, size - *done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && Unsupported(errno)) return false;
    if (n < 0) return ErrnoStatus("copying " + what);
    if (n == 0) return Internal(what + " ended before its " + std::to_string(size) + " bytes");
    *done += static_cast<uint64_t>(n);
  }
  return true;
}

Status ReadWriteCopy(int src, uint64_t src_off, int dst, uint64_t dst_off, uint64_t size,
                     uint64_t done, const std::string& what) {
  constexpr size_t kBuf = 1 << 20;
  auto buf = std::make_unique_for_overwrite<char[]>(kBuf);
  while (done < size) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(kBuf, size - done));
    ssize_t n = ::pread(src, buf.get(), want, static_cast<off_t>(src_off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("reading " + what);
    if (n == 0) return Internal(what + " ended before its " + std::to_string(size) + " bytes");
    for (ssize_t w = 0; w < n;) {
      ssize_t m = ::pwrite(dst, buf.get() + w, static_cast<size_t>(n - w),
                           static_cast<off_t>(dst_off + done + static_cast<uint64_t>(w)));
      if (m < 0 && errno == EINTR) continue;
      if (m < 0) return ErrnoStatus("writing a copy of " + what);
      w += m;
    }
    done += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

}  // namespace

StatusOr<CopyWay> CopyRange(int src, uint64_t src_off, int dst, uint64_t dst_off, uint64_t size,
                            const std::string& what, CopyWays ways) {
  if (ways.clone && size > 0 && IsWholeFileIntoEmpty(src, src_off, dst, dst_off, size) &&
      ::ioctl(dst, FICLONE, src) == 0)
    return CopyWay::kClone;
  uint64_t done = 0;
  if (ways.kernel) {
    YARD_ASSIGN_OR_RETURN(bool copied, KernelCopy(src, src_off, dst, dst_off, size, &done, what));
    if (copied) return CopyWay::kKernel;
  }
  YARD_RETURN_IF_ERROR(ReadWriteCopy(src, src_off, dst, dst_off, size, done, what));
  return CopyWay::kReadWrite;
}

const char* CopyWayName(CopyWay way) {
  switch (way) {
    case CopyWay::kClone:
      return "clone";
    case CopyWay::kKernel:
      return "kernel copy";
    case CopyWay::kReadWrite:
      return "read and write";
  }
  return "?";
}

}  // namespace yard
