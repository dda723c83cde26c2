#include "common/file_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>

namespace yard {

FileLock::FileLock(const std::string& path)
    : fd_(::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644)) {
  if (fd_.get() < 0) return;
  while (::flock(fd_.get(), LOCK_EX) != 0 && errno == EINTR) {
  }
}

std::unique_ptr<FileLock> FileLock::TryLock(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
  if (fd.get() < 0) return nullptr;
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    fd.Close();
    errno = err;  // flock's, for the caller
    return nullptr;
  }
  return std::unique_ptr<FileLock>(new FileLock(std::move(fd)));
}

bool FileLock::HeldElsewhere(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  return fd.get() >= 0 && ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
}

}  // namespace yard
