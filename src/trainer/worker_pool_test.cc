#include "trainer/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>

namespace yard::trainer {
namespace {

TEST(WorkerPoolTest, RunsEveryIndexOncePerCall) {
  std::atomic<int> started{0};
  WorkerPool pool(3, [&] { ++started; });
  EXPECT_EQ(pool.size(), 3);
  for (int round = 0; round < 200; ++round) {
    std::vector<int> hits(3, 0);
    pool.RunAll([&](int i) { ++hits[i]; });
    ASSERT_EQ(hits, (std::vector<int>{1, 1, 1})) << "round " << round;
  }
  EXPECT_EQ(started.load(), 2);  // index 0 runs on the caller
}

TEST(WorkerPoolTest, SizeOneRunsInline) {
  WorkerPool pool(1);
  std::thread::id ran;
  pool.RunAll([&](int) { ran = std::this_thread::get_id(); });
  EXPECT_EQ(ran, std::this_thread::get_id());
}

}  // namespace
}  // namespace yard::trainer
