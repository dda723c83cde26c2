#include "common/hash_cache.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "common/hashing.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

using test_support::TempDir;
using SystemClock = std::chrono::system_clock;

class HashCacheTest : public testing::Test {
 protected:
  HashCacheTest() : cache_(dir_.path() + "/cache", ChunkerParams{}) {
    path_ = dir_.path() + "/data.bin";
    std::ofstream(path_, std::ios::binary) << std::string(HashCache::kMinFileBytes, 'x');
    EXPECT_EQ(::lstat(path_.c_str(), &st_), 0);
    chunks_ = {{Sha256Hex("a"), HashCache::kMinFileBytes - 1}, {Sha256Hex("b"), 1}};
  }

  // A read that began `after` the file's last change.
  SystemClock::time_point ReadStart(std::chrono::milliseconds after) const {
    return SystemClock::time_point(std::chrono::seconds(st_.st_ctim.tv_sec) +
                                   std::chrono::nanoseconds(st_.st_ctim.tv_nsec) + after);
  }

  TempDir dir_;
  HashCache cache_;
  std::string path_;
  struct stat st_;
  std::vector<ChunkRef> chunks_;
};

TEST_F(HashCacheTest, RemembersASettledFileUntilItsIdentityChanges) {
  EXPECT_FALSE(cache_.Lookup(path_, st_));
  cache_.Remember(path_, st_, ReadStart(std::chrono::seconds(1)), chunks_);
  auto found = cache_.Lookup(path_, st_);
  ASSERT_TRUE(found);
  EXPECT_EQ(*found, chunks_);
  struct stat other = st_;
  other.st_mtim.tv_nsec ^= 1;
  EXPECT_FALSE(cache_.Lookup(path_, other));
  other = st_;
  other.st_ino++;
  EXPECT_FALSE(cache_.Lookup(path_, other));
  // Another chunker makes other chunks: not the same entry.
  HashCache other_params(dir_.path() + "/cache", ChunkerParams{64 * 1024, 128 * 1024, 512 * 1024});
  EXPECT_FALSE(other_params.Lookup(path_, st_));
}

// git's "racily clean" rule: a write in the same timestamp tick as the read
// could leave the times unchanged, so such a file is not remembered.
TEST_F(HashCacheTest, AFileChangedJustBeforeItsReadIsNotRemembered) {
  cache_.Remember(path_, st_, ReadStart(HashCache::kSettled / 2), chunks_);
  EXPECT_FALSE(cache_.Lookup(path_, st_));
}

TEST_F(HashCacheTest, AFileChangedDuringItsReadIsNotRemembered) {
  struct stat before = st_;
  before.st_size -= 1;  // what lstat said when the read began
  cache_.Remember(path_, before, ReadStart(std::chrono::seconds(1)), chunks_);
  EXPECT_FALSE(cache_.Lookup(path_, st_));
}

TEST_F(HashCacheTest, SmallFilesAndChunksThatDoNotAddUpAreNotTrusted) {
  std::string small = dir_.path() + "/small.bin";
  std::ofstream(small) << "tiny";
  struct stat st;
  ASSERT_EQ(::lstat(small.c_str(), &st), 0);
  cache_.Remember(small, st, ReadStart(std::chrono::seconds(1)), {{Sha256Hex("tiny"), 4}});
  EXPECT_FALSE(cache_.Lookup(small, st));
  cache_.Remember(path_, st_, ReadStart(std::chrono::seconds(1)), {{Sha256Hex("a"), 5}});
  EXPECT_FALSE(cache_.Lookup(path_, st_));
}

TEST_F(HashCacheTest, NoFolderRemembersNothing) {
  HashCache off("", ChunkerParams{});
  off.Remember(path_, st_, ReadStart(std::chrono::seconds(1)), chunks_);
  EXPECT_FALSE(off.Lookup(path_, st_));
}

}  // namespace
}  // namespace yard
