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

}  // namespace yard
