#include "common/file_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "common/files.h"
#include "common/temp_dir_testing.h"

extern char** environ;

namespace yard {
namespace {

using test_support::TempDir;

// True when someone holds the lock on `path` (tried on a descriptor of our own).
bool Locked(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  EXPECT_GE(fd.get(), 0) << path;
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return false;
  EXPECT_EQ(errno, EWOULDBLOCK);
  return true;
}

TEST(FileLockTest, HoldsTheLockWhileAlive) {
  TempDir dir;
  std::string path = dir.path() + "/build.lock";
  {
    FileLock lock(path);
    ASSERT_TRUE(lock.ok());
    EXPECT_TRUE(Locked(path));
  }
  EXPECT_FALSE(Locked(path)) << "the lock outlived its FileLock";
}

// The environment builder held its lock on a descriptor without O_CLOEXEC:
// pip inherited it and kept the lock as long as pip (or anything it left
// behind) lived.
TEST(FileLockTest, AChildStartedUnderTheLockDoesNotKeepIt) {
  TempDir dir;
  std::string path = dir.path() + "/build.lock";
  pid_t child = -1;
  {
    FileLock lock(path);
    ASSERT_TRUE(lock.ok());
    char* argv[] = {const_cast<char*>("sleep"), const_cast<char*>("60"), nullptr};
    ASSERT_EQ(::posix_spawnp(&child, "sleep", nullptr, nullptr, argv, environ), 0);
  }
  bool locked = Locked(path);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_FALSE(locked) << "a child process inherited the lock";
}

TEST(FileLockTest, TryLockTakesAFreeLockAndRefusesAHeldOne) {
  TempDir dir;
  std::string path = dir.path() + "/server.lock";
  {
    std::unique_ptr<FileLock> first = FileLock::TryLock(path);
    ASSERT_NE(first, nullptr) << "a free lock (the file made): " << std::strerror(errno);
    EXPECT_TRUE(Locked(path));
    std::unique_ptr<FileLock> second = FileLock::TryLock(path);
    EXPECT_EQ(second, nullptr) << "two holders of one lock";
    EXPECT_EQ(errno, EWOULDBLOCK);
  }
  EXPECT_NE(FileLock::TryLock(path), nullptr) << "free again once the holder is gone";
}

TEST(FileLockTest, HeldElsewhereLooksWithoutTakingOrCreating) {
  TempDir dir;
  std::string path = dir.path() + "/server.lock";
  EXPECT_FALSE(FileLock::HeldElsewhere(path));
  EXPECT_FALSE(::access(path.c_str(), F_OK) == 0) << "a look created the file";
  {
    FileLock lock(path);
    ASSERT_TRUE(lock.ok());
    EXPECT_TRUE(FileLock::HeldElsewhere(path));
  }
  EXPECT_FALSE(FileLock::HeldElsewhere(path));
  EXPECT_FALSE(Locked(path)) << "the look kept the lock";
}

TEST(FileLockTest, AnUnopenablePathIsNotOk) {
  TempDir dir;
  FileLock lock(dir.path() + "/no/such/folder/x.lock");
  EXPECT_FALSE(lock.ok());
}

}  // namespace
}  // namespace yard
