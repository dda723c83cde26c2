#include "server/job_queue.h"

#include <gtest/gtest.h>

#include <vector>

namespace yard {
namespace {

// The groups' keys, first place first.
std::vector<std::string> Keys(const JobQueue& q) {
  std::vector<std::string> out;
  for (const auto& [order, key] : q.groups()) out.push_back(key);
  return out;
}

TEST(JobQueueTest, GroupsAreOrderedByTheirFirstJob) {
  JobQueue q;
  q.PushBack("j1", "ann A");
  q.PushBack("j2", "bob A");
  q.PushBack("j3", "ann A");
  EXPECT_EQ(Keys(q), (std::vector<std::string>{"ann A", "bob A"}));
  EXPECT_EQ(*q.Head("ann A"), "j1");
  q.Remove("j1");
  EXPECT_EQ(Keys(q), (std::vector<std::string>{"bob A", "ann A"})) << "j3 is behind j2";
  EXPECT_EQ(*q.Head("ann A"), "j3");
  EXPECT_EQ(q.group_count(), 2u);
  q.Remove("j3");
  EXPECT_EQ(q.Head("ann A"), nullptr);
  EXPECT_EQ(q.group_count(), 1u);
}

TEST(JobQueueTest, PushFrontGoesBeforeEveryQueuedJob) {
  JobQueue q;
  q.PushBack("j1", "A");
  q.PushBack("j2", "B");
  q.PushFront("requeued", "B");
  EXPECT_EQ(Keys(q), (std::vector<std::string>{"B", "A"}));
  EXPECT_EQ(*q.Head("B"), "requeued");
}

TEST(JobQueueTest, ParkedJobKeepsItsPlace) {
  JobQueue q;
  q.PushBack("j1", "A");
  q.PushBack("j2", "A");
  q.Park("j1");
  EXPECT_TRUE(q.Contains("j1"));
  EXPECT_EQ(q.GroupOf("j1"), "");
  EXPECT_EQ(*q.Head("A"), "j2");
  EXPECT_EQ(q.size(), 2u);
  q.SetGroup("j1", "A");
  EXPECT_EQ(*q.Head("A"), "j1") << "back before j2";
}

TEST(JobQueueTest, MovingAJobToAnotherGroupKeepsItsPlace) {
  JobQueue q;
  q.PushBack("j1", "A then B, step 0");
  q.PushBack("j2", "B, step 0");
  q.SetGroup("j1", "A then B, step 1");
  EXPECT_EQ(Keys(q), (std::vector<std::string>{"A then B, step 1", "B, step 0"}));
  EXPECT_EQ(q.HeadOrder("A then B, step 0"), std::nullopt);
}

TEST(JobQueueTest, QuotaBlockIsForgottenWithItsGroup) {
  JobQueue q;
  q.PushBack("j1", "A");
  q.set_quota_blocked_at("A", 50);
  EXPECT_EQ(q.quota_blocked_at("A"), 50);
  q.Remove("j1");
  q.PushBack("j2", "A");
  EXPECT_LT(q.quota_blocked_at("A"), 0);
}

}  // namespace
}  // namespace yard
