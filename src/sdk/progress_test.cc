#include "sdk/progress.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

namespace trainyard::internal {
namespace {

using Json = nlohmann::json;

Json Metric(Json values) { return {{"kind", "metric"}, {"values", std::move(values)}}; }

TEST(HistoryFromEventsTest, OneColumnPerMetricOneValuePerEpochNewestWins) {
  std::vector<Json> events = {
      Metric({{"event", "replicas"}, {"devices", 1}}),
      Metric({{"epoch", 1}, {"loss", 0.9}, {"accuracy", 0.5}, {"samples_per_s", 100}}),
      Metric({{"epoch", 2}, {"loss", 0.7}, {"accuracy", nullptr}, {"samples_per_s", 100}}),
      // A requeued attempt ran epoch 2 again, then 3.
      Metric({{"epoch", 2}, {"loss", 0.6}, {"accuracy", 0.7}}),
      Metric({{"epoch", 3}, {"loss", 0.5}, {"accuracy", 0.8}, {"val_loss", 0.55}}),
      {{"kind", "output"}, {"data", "Epoch 3/3 - loss: 0.5\n"}},
  };
  History h = HistoryFromEvents(events);
  ASSERT_EQ(h.size(), 3u) << "loss, accuracy, val_loss; no bookkeeping keys";
  EXPECT_EQ(h["loss"], (std::vector<double>{0.9, 0.6, 0.5}));
  EXPECT_EQ(h["accuracy"], (std::vector<double>{0.5, 0.7, 0.8}));
  ASSERT_EQ(h["val_loss"].size(), 3u);
  EXPECT_TRUE(std::isnan(h["val_loss"][0]));
  EXPECT_EQ(h["val_loss"][2], 0.55);
}

// The cases the Python SDK's test reads too (tests/sdk/history_cases.json):
// both faces of the one history rule give the same columns, values, NaNs
// and epochs for the same event stream.
TEST(HistoryFromEventsTest, SharedCasesWithThePythonSdk) {
  std::ifstream f(std::string(YARD_SOURCE_DIR) + "/tests/sdk/history_cases.json");
  ASSERT_TRUE(f) << "tests/sdk/history_cases.json is missing";
  std::stringstream text;
  text << f.rdbuf();
  Json doc = Json::parse(text.str());
  ASSERT_FALSE(doc["cases"].empty());
  for (const Json& c : doc["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto [history, epochs] = HistoryWithEpochs(c["events"].get<std::vector<Json>>());
    EXPECT_EQ(epochs, c["epochs"].get<std::vector<int64_t>>());
    ASSERT_EQ(history.size(), c["history"].size());
    for (const auto& [key, want] : c["history"].items()) {
      ASSERT_TRUE(history.count(key)) << key;
      const std::vector<double>& got = history[key];
      ASSERT_EQ(got.size(), want.size()) << key;
      for (size_t i = 0; i < got.size(); ++i) {
        if (want[i].is_null())
          EXPECT_TRUE(std::isnan(got[i])) << key << "[" << i << "]";
        else
          EXPECT_EQ(got[i], want[i].get<double>()) << key << "[" << i << "]";
      }
    }
  }
}

TEST(FormatValuesTest, KerasOrder) {
  EXPECT_EQ(FormatValues({{"val_accuracy", 0.5}, {"accuracy", 0.25}, {"val_loss", 1}, {"loss", 2}}),
            "loss: 2.0000 - accuracy: 0.2500 - val_loss: 1.0000 - val_accuracy: 0.5000");
}

TEST(ProgressTrackerTest, EpochLinesFromMetricsOutputByLineAndTail) {
  std::vector<Progress> seen;
  ProgressTracker t("j-1", 2, [&](const Progress& p) { seen.push_back(p); });
  t.OnEvent({{"kind", "state"}, {"state", "running"}, {"instance", "local-1"}});
  t.OnEvent({{"kind", "output"}, {"data", "Training on 1 rep"}});
  t.OnEvent({{"kind", "output"}, {"data", "lica\nEpoch 1/2 - loss: 0.5000 - 0.1s\n"}});
  t.OnEvent(Metric({{"epoch", 1}, {"loss", 0.5}, {"samples_per_s", 10}}));
  t.OnEvent({{"kind", "output"}, {"data", "no newline"}});
  t.Close();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].kind, Progress::Kind::kState);
  EXPECT_EQ(seen[0].text, "j-1 running on local-1");
  EXPECT_EQ(seen[1].kind, Progress::Kind::kOutput);
  EXPECT_EQ(seen[1].text, "Training on 1 replica");
  EXPECT_EQ(seen[2].kind, Progress::Kind::kEpoch);
  EXPECT_EQ(seen[2].text, "Epoch 1/2 - loss: 0.5000");
  EXPECT_EQ(seen[2].epoch, 1);
  EXPECT_EQ(seen[2].epochs, 2);
  EXPECT_EQ(seen[3].text, "no newline");
  EXPECT_EQ(t.last_output(),
            (std::vector<std::string>{"Training on 1 replica", "Epoch 1/2 - loss: 0.5000 - 0.1s",
                                      "no newline"}));
}

}  // namespace
}  // namespace trainyard::internal
