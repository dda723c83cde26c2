// FileLock: an exclusive flock(2) on a file, held while the object lives.
// The one lock file helper of the tree (the server's home, embedded server
// start, environment and image builds).
#pragma once

#include <memory>
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

  // The lock on `path` (created if needed, 0644) if no one holds it now;
  // nullptr when another holder has it (errno EWOULDBLOCK) or `path` cannot
  // be opened (errno says why). Never blocks.
  static std::unique_ptr<FileLock> TryLock(const std::string& path);
  // True if some holder has the lock on an existing `path` now. Takes
  // nothing (a lock it got for the look is let go at once) and creates
  // nothing.
  static bool HeldElsewhere(const std::string& path);

 private:
  explicit FileLock(ScopedFd fd) : fd_(std::move(fd)) {}
  ScopedFd fd_;  // closing it releases the lock
};

}  // namespace yard
