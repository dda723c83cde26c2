#include "common/file_copy.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "common/files.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

using test_support::TempDir;

std::string Random(size_t n) {
  std::mt19937 rng(7);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class CopyRangeTest : public testing::Test {
 protected:
  CopyRangeTest() {
    src_path_ = dir_.path() + "/src";
    std::ofstream(src_path_, std::ios::binary) << data_;
  }
  ScopedFd OpenDst(const std::string& path) {
    return ScopedFd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  }
  TempDir dir_;
  std::string data_ = Random(3 << 20);
  std::string src_path_;
};

// Every way, and every fallback (the better ways switched off, as on a
// filesystem without reflinks or copy_file_range), gives the same bytes.
TEST_F(CopyRangeTest, EveryWayCopiesTheSameBytes) {
  for (CopyWays ways : {CopyWays{true, true}, CopyWays{false, true}, CopyWays{false, false}}) {
    ScopedFd src(::open(src_path_.c_str(), O_RDONLY | O_CLOEXEC));
    std::string dst_path = dir_.path() + "/dst";
    ScopedFd dst = OpenDst(dst_path);
    // A range in the middle, written at an offset, then the start.
    StatusOr<CopyWay> way = CopyRange(src.get(), 1000, dst.get(), 5000, 2 << 20, "src", ways);
    ASSERT_TRUE(way.ok()) << way.status().ToString();
    if (!ways.kernel) {
      EXPECT_EQ(*way, CopyWay::kReadWrite);
    }
    EXPECT_NE(*way, CopyWay::kClone) << "a range is never cloned";
    ASSERT_TRUE(CopyRange(src.get(), 0, dst.get(), 0, 5000, "src", ways).ok());
    std::string got = Slurp(dst_path);
    ASSERT_EQ(got.size(), 5000u + (2 << 20));
    EXPECT_EQ(got.substr(0, 5000), data_.substr(0, 5000));
    EXPECT_EQ(got.substr(5000), data_.substr(1000, 2 << 20));
  }
}

// A whole file is cloned where the filesystem shares blocks and copied
// where it does not; either way the copy is a file of its own.
TEST_F(CopyRangeTest, AWholeFileIsClonedOrCopiedAndIndependent) {
  ScopedFd src(::open(src_path_.c_str(), O_RDONLY | O_CLOEXEC));
  std::string dst_path = dir_.path() + "/whole";
  ScopedFd dst = OpenDst(dst_path);
  StatusOr<CopyWay> way = CopyRange(src.get(), 0, dst.get(), 0, data_.size(), "src");
  ASSERT_TRUE(way.ok()) << way.status().ToString();
  std::printf("whole-file copy on this filesystem: %s\n", CopyWayName(*way));
  ASSERT_EQ(::pwrite(dst.get(), "X", 1, 0), 1);
  EXPECT_EQ(Slurp(src_path_), data_) << "a write to the copy must not reach the source";
  EXPECT_EQ(Slurp(dst_path).substr(1), data_.substr(1));
}

// Across filesystems (tmpfs and the test folder) there is no reflink and,
// on many kernels, no copy_file_range either: it falls back to a copy.
TEST_F(CopyRangeTest, AcrossFilesystemsFallsBackToACopy) {
  if (!std::filesystem::is_directory("/dev/shm")) GTEST_SKIP() << "no /dev/shm";
  std::string shm = "/dev/shm/yard_copy_test_" + std::to_string(::getpid());
  std::ofstream(shm, std::ios::binary) << data_;
  ScopedFd src(::open(shm.c_str(), O_RDONLY | O_CLOEXEC));
  std::string dst_path = dir_.path() + "/from_shm";
  ScopedFd dst = OpenDst(dst_path);
  StatusOr<CopyWay> way = CopyRange(src.get(), 0, dst.get(), 0, data_.size(), shm);
  ::unlink(shm.c_str());
  ASSERT_TRUE(way.ok()) << way.status().ToString();
  EXPECT_NE(*way, CopyWay::kClone);
  EXPECT_EQ(Slurp(dst_path), data_);
}

TEST_F(CopyRangeTest, ASourceThatEndsEarlyIsAnError) {
  ScopedFd src(::open(src_path_.c_str(), O_RDONLY | O_CLOEXEC));
  ScopedFd dst = OpenDst(dir_.path() + "/short");
  for (CopyWays ways : {CopyWays{}, CopyWays{false, false}}) {
    StatusOr<CopyWay> way = CopyRange(src.get(), data_.size() - 10, dst.get(), 0, 100, "src", ways);
    ASSERT_FALSE(way.ok());
    EXPECT_NE(way.status().message().find("ended before"), std::string::npos)
        << way.status().ToString();
  }
}

}  // namespace
}  // namespace yard
