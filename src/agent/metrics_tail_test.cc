#include "agent/metrics_tail.h"

#include <gtest/gtest.h>

#include <fstream>

#include "agent/agent_testing.h"

namespace yard {
namespace {

using agent_testing::TempDir;

void AppendTo(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::app) << text;
}

TEST(MetricsTailTest, MissingFileIsNoError) {
  TempDir dir;
  MetricsTail tail(dir.path() + "/metrics.jsonl");
  EXPECT_TRUE(tail.Poll(false).empty());
  EXPECT_TRUE(tail.Poll(true).empty());
}

TEST(MetricsTailTest, CompleteObjectLinesBecomeMetrics) {
  TempDir dir;
  std::string path = dir.path() + "/metrics.jsonl";
  MetricsTail tail(path);
  AppendTo(path, "{\"loss\": 0.5, \"epoch\": 1}\n{\"loss\": 0.");
  auto records = tail.Poll(false);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0], Json::parse(R"({"kind":"metric","values":{"loss":0.5,"epoch":1}})"));
  AppendTo(path, "25}\n");
  records = tail.Poll(false);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["values"]["loss"], 0.25);
}

TEST(MetricsTailTest, BadLinesBecomeOutputNamingTheLine) {
  TempDir dir;
  std::string path = dir.path() + "/metrics.jsonl";
  MetricsTail tail(path);
  AppendTo(path, "{\"a\":1}\n\nnot json\n[1,2]\n");
  auto records = tail.Poll(false);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0]["kind"], "metric");
  EXPECT_EQ(records[1]["kind"], "output");
  std::string data = records[1]["data"];
  EXPECT_EQ(data.rfind("yard: ignored metric line 3: not JSON", 0), 0u) << data;
  EXPECT_EQ(data.back(), '\n');
  EXPECT_EQ(records[2]["data"], "yard: ignored metric line 4: not a JSON object\n");
}

TEST(MetricsTailTest, FinalPollTakesAnUnterminatedLine) {
  TempDir dir;
  std::string path = dir.path() + "/metrics.jsonl";
  MetricsTail tail(path);
  AppendTo(path, "{\"acc\":0.9}");
  EXPECT_TRUE(tail.Poll(false).empty());
  auto records = tail.Poll(true);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["values"]["acc"], 0.9);
}

TEST(MetricsTailTest, TruncatedFileIsReadAgain) {
  TempDir dir;
  std::string path = dir.path() + "/metrics.jsonl";
  MetricsTail tail(path);
  AppendTo(path, "{\"a\":1}\n{\"a\":2}\n");
  EXPECT_EQ(tail.Poll(false).size(), 2u);
  std::ofstream(path, std::ios::trunc) << "{\"b\":3}\n";
  auto records = tail.Poll(false);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["values"]["b"], 3);
}

TEST(MetricsTailTest, OverlongLineIsReportedOnce) {
  TempDir dir;
  std::string path = dir.path() + "/metrics.jsonl";
  MetricsTail tail(path);
  AppendTo(path, std::string(MetricsTail::kMaxLine + 10, 'x'));
  auto records = tail.Poll(false);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["kind"], "output");
  AppendTo(path, "xxx\n{\"ok\":1}\n");
  records = tail.Poll(false);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["values"]["ok"], 1);
}

}  // namespace
}  // namespace yard
