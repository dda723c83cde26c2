// FileLock: an exclusive flock(2) on a file, held while the object lives.
// The one lock file helper of the tree (embedded server start, environment
// and image builds).
#pragma once

#include <string>

#include "common/files.h"

namespace yard {

class FileLock {
 public:
  // Creates `path` if needed (0644) and blocks until the lock is ours. The
  // descriptor is O_CLOEXEC: a process started while the lock is held (pip,
  // podman) does not inherit it, so the lock ends with this object and not
  // with the longest-lived child. ok() is false when `path` cannot be
  // opened (errno tells why); nothing is locked then.
  explicit FileLock(const std::string& path);
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool ok() const { return fd_.get() >= 0; }

 private:
  ScopedFd fd_;  // closing it releases the lock
};

}  // namespace yard
