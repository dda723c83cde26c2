#include "server/dashboard_output.h"

#include <gtest/gtest.h>

#include "common/temp_dir_testing.h"

namespace yard {
namespace {

class OutputCacheTest : public testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(Store::Open(dir_.path() + "/state.db")).value();
    JobRecord j;
    j.id = "job-1";
    j.user = "ann";
    j.state = job_state::kRunning;
    ASSERT_TRUE(store_->InsertJob(j).ok());
  }
  void Append(std::vector<Json> events) {
    ASSERT_TRUE(store_->AppendEvents("job-1", std::move(events), 1.0, nullptr).ok());
  }
  static Json Out(const std::string& data) { return {{"kind", "output"}, {"data", data}}; }

  test_support::TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(OutputCacheTest, LinesSpanChunksAndTheTailCountsFromTheEnd) {
  OutputCache cache(store_.get());
  Append({Out("a\nb"), {{"kind", "metric"}, {"values", {{"epoch", 1}}}}, Out("c\nd\n"), Out("e")});
  OutputLines tail = *cache.Lines("job-1", -2, 2);
  EXPECT_EQ(tail.total, 4);
  EXPECT_EQ(tail.from, 2);
  EXPECT_EQ(tail.lines, (std::vector<std::string>{"d", "e"}));
  EXPECT_TRUE(tail.partial);
  EXPECT_EQ(tail.seq, 4);
  EXPECT_EQ(cache.Lines("job-1", 0, 10)->lines, (std::vector<std::string>{"a", "bc", "d", "e"}));
  EXPECT_TRUE(cache.Lines("job-1", 9, 10)->lines.empty());
}

TEST_F(OutputCacheTest, LaterEventsAreReadOnTheNextCall) {
  OutputCache cache(store_.get());
  Append({Out("x\n")});
  EXPECT_EQ(cache.Lines("job-1", 0, 10)->total, 1);
  EXPECT_FALSE(cache.Lines("job-1", 0, 10)->partial);
  Append({Out("y\nz\n"), {{"kind", "state"}, {"state", "succeeded"}}});
  OutputLines all = *cache.Lines("job-1", 0, 10);
  EXPECT_EQ(all.lines, (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_EQ(all.seq, 3);
  auto [timeline, seq] = *cache.Timeline("job-1");
  ASSERT_EQ(timeline.size(), 1u);
  EXPECT_EQ(timeline[0]["state"], "succeeded");
  EXPECT_EQ(*cache.Text("job-1"), "x\ny\nz\n");
}

TEST_F(OutputCacheTest, SearchGivesEachMatchingLineOnceAndSaysWhenThereIsMore) {
  OutputCache cache(store_.get());
  Append({Out("loss 1 loss\nnothing\nloss 2\nloss 3\n")});
  OutputMatches m = *cache.Search("job-1", "loss", 10);
  EXPECT_EQ(m.lines, (std::vector<int64_t>{0, 2, 3}));
  EXPECT_FALSE(m.more);
  m = *cache.Search("job-1", "loss", 2);
  EXPECT_EQ(m.lines, (std::vector<int64_t>{0, 2}));
  EXPECT_TRUE(m.more);
  EXPECT_TRUE(cache.Search("job-1", "", 10)->lines.empty());
}

TEST_F(OutputCacheTest, AnEmptyLogHasNoLines) {
  OutputCache cache(store_.get());
  OutputLines l = *cache.Lines("job-1", -1000, 1000);
  EXPECT_EQ(l.total, 0);
  EXPECT_TRUE(l.lines.empty());
  EXPECT_FALSE(l.partial);
}

}  // namespace
}  // namespace yard
