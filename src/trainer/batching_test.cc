#include "trainer/batching.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace yard::trainer {
namespace {

TEST(SplitEvenlyTest, LargerShardsFirst) {
  EXPECT_EQ(SplitEvenly(5, 2), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(SplitEvenly(8, 2), (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(SplitEvenly(7, 3), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_EQ(SplitEvenly(1, 2), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(SplitEvenly(5, 1), (std::vector<int64_t>{5}));
}

TEST(EpochOrderTest, IsAPermutationFixedBySeedAndEpoch) {
  std::vector<int64_t> a = EpochOrder(100, 7, 3, true);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 100; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(a, EpochOrder(100, 7, 3, true));
  EXPECT_NE(a, EpochOrder(100, 7, 4, true));
  EXPECT_NE(a, EpochOrder(100, 8, 3, true));
}

TEST(EpochOrderTest, IdentityWithoutShuffle) {
  EXPECT_EQ(EpochOrder(4, 7, 3, false), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_TRUE(EpochOrder(0, 1, 1, true).empty());
}

}  // namespace
}  // namespace yard::trainer
