#include "server/notifier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace yard {
namespace {

using namespace std::chrono_literals;

TEST(NotifierTest, NotifyWakesAWaiterThatSawTheOldVersion) {
  Notifier n;
  uint64_t seen = n.Version("job:a");
  std::atomic<uint64_t> got{0};
  std::thread waiter([&] { got = n.Wait("job:a", seen, 10s); });
  while (n.KeysHeld() == 0) std::this_thread::yield();  // the waiter is in
  n.Notify("job:a");
  waiter.join();
  EXPECT_NE(got.load(), seen);
  EXPECT_EQ(got.load(), n.Version("job:a"));
}

TEST(NotifierTest, AForgottenKeyIsDroppedAndAnOldVersionStillWakes) {
  Notifier n;
  n.Notify("job:a");
  n.Notify("job:b");
  uint64_t seen_a = n.Version("job:a");
  EXPECT_EQ(n.KeysHeld(), 2u);
  n.Notify("job:a");  // news the waiter has not read yet...
  n.Forget("job:a");  // ...then the job ends
  EXPECT_EQ(n.KeysHeld(), 1u);
  // The key comes back above every version it had: no stranded waiter.
  EXPECT_NE(n.Wait("job:a", seen_a, 5s), seen_a);
}

TEST(NotifierTest, AKeyForgottenWhileWaitedOnGoesWhenTheLastWaiterReturns) {
  Notifier n;
  uint64_t seen = n.Version("inst:x");
  std::thread waiter([&] { n.Wait("inst:x", seen, 300ms); });
  while (n.KeysHeld() == 0) std::this_thread::yield();
  n.Forget("inst:x");
  EXPECT_EQ(n.KeysHeld(), 1u) << "kept while waited on";
  waiter.join();
  EXPECT_EQ(n.KeysHeld(), 0u);
}

TEST(NotifierTest, ManyFinishedJobsLeaveNoEntries) {
  Notifier n;
  for (int i = 0; i < 1000; ++i) {
    std::string key = "job:" + std::to_string(i);
    n.Notify(key);
    n.Notify(key);
    n.Forget(key);
  }
  EXPECT_EQ(n.KeysHeld(), 0u);
}

}  // namespace
}  // namespace yard
