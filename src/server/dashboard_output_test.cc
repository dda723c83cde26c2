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
  // Appends output records as agents send them since schema 3: the bytes
  // apart from the JSON body (AppendEventsWithOutput), exactly as printed.
  void AppendRaw(const std::vector<std::string>& outputs) {
    std::vector<NewEvent> events;
    for (const auto& o : outputs) events.emplace_back(Json{{"kind", "output"}}, o);
    ASSERT_TRUE(store_->AppendEventsWithOutput("job-1", std::move(events), 1.0, nullptr).ok());
  }
  // An output event of an older store: its bytes inline in "data".
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

TEST_F(OutputCacheTest, RawOutputRecordsKeepTheirBytesAndMixWithInlineOnes) {
  OutputCache cache(store_.get());
  // A line split across records, bytes that are not UTF-8, a NUL, a CR.
  AppendRaw({"caf\xe9 1\nhal", std::string("f\0way\r\n", 7)});
  Append({{{"kind", "metric"}, {"values", {{"epoch", 1}, {"loss", 0.5}}}}, Out("inline\n")});
  AppendRaw({"", "tail \xff"});  // an empty record adds nothing
  OutputLines all = *cache.Lines("job-1", 0, 10);
  EXPECT_EQ(all.lines, (std::vector<std::string>{"caf\xe9 1", std::string("half\0way\r", 9),
                                                 "inline", "tail \xff"}));
  EXPECT_EQ(all.total, 4);
  EXPECT_TRUE(all.partial);
  EXPECT_EQ(all.seq, 6);
  EXPECT_EQ(*cache.Text("job-1"), std::string("caf\xe9 1\nhalf\0way\r\ninline\ntail \xff", 30));
  // The timeline holds the metric alone: raw records are output, not events to list.
  auto [timeline, seq] = *cache.Timeline("job-1");
  ASSERT_EQ(timeline.size(), 1u);
  EXPECT_EQ(timeline[0]["kind"], "metric");
  EXPECT_EQ(seq, 6);
  EXPECT_EQ(cache.Search("job-1", "\xe9", 10)->lines, (std::vector<int64_t>{0}));
  EXPECT_EQ(cache.Search("job-1", "lf", 10)->lines,
            (std::vector<int64_t>{1}));  // "half" spans two records
  // Read on from where the last call stopped: the partial line goes on.
  AppendRaw({" end\n"});
  EXPECT_EQ(cache.Lines("job-1", -1, 1)->lines, (std::vector<std::string>{"tail \xff end"}));
  EXPECT_FALSE(cache.Lines("job-1", -1, 1)->partial);
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
