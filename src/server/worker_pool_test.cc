#include "server/worker_pool.h"

#include <atomic>
#include <future>

#include <gtest/gtest.h>

#include "common/wait_testing.h"

namespace yard {
namespace {

using namespace std::chrono_literals;

using test_support::WaitFor;

TEST(WorkerPoolTest, ATaskRunsAtOnceWhileEveryOtherThreadIsHeld) {
  WorkerPool pool({/*min_threads=*/2, /*max_threads=*/300, /*idle_exit=*/30s});
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> holding{0};
  for (int i = 0; i < 200; ++i)  // 200 open streams, each holding its thread
    pool.enqueue([&holding, released] {
      ++holding;
      released.wait();
    });
  ASSERT_TRUE(WaitFor([&] { return holding == 200; })) << holding;
  std::promise<void> ran;
  pool.enqueue([&ran] { ran.set_value(); });
  EXPECT_EQ(ran.get_future().wait_for(5s), std::future_status::ready) << "the health check waited";
  release.set_value();
}

TEST(WorkerPoolTest, BeyondMaxThreadsTasksWaitTheirTurnAndAllRun) {
  WorkerPool pool({1, 4, 30s});
  std::atomic<int> ran{0};
  for (int i = 0; i < 50; ++i)
    pool.enqueue([&ran] {
      std::this_thread::sleep_for(1ms);
      ++ran;
    });
  ASSERT_TRUE(WaitFor([&] { return ran == 50; }));
  EXPECT_LE(pool.threads(), 4u);
}

TEST(WorkerPoolTest, IdleThreadsGoAwayDownToTheMinimum) {
  WorkerPool pool({2, 100, 50ms});
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> holding{0};
  for (int i = 0; i < 20; ++i)
    pool.enqueue([&holding, released] {
      ++holding;
      released.wait();
    });
  ASSERT_TRUE(WaitFor([&] { return holding == 20; }));
  EXPECT_GE(pool.threads(), 20u);
  release.set_value();
  EXPECT_TRUE(WaitFor([&] { return pool.threads() == 2; })) << pool.threads();
}

TEST(WorkerPoolTest, ShutdownRunsWhatWasQueuedThenJoins) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool({1, 1, 30s});
    for (int i = 0; i < 10; ++i)
      pool.enqueue([&ran] {
        std::this_thread::sleep_for(1ms);
        ++ran;
      });
    pool.shutdown();
    EXPECT_EQ(ran, 10);
    pool.enqueue([&ran] { ++ran; });  // after shutdown: dropped, as httplib stops accepting first
  }
  EXPECT_EQ(ran, 10);
}

}  // namespace
}  // namespace yard
