#include "trainer/reporter.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace yard::trainer {
namespace {

EpochResult Sample() {
  EpochResult r;
  r.epoch = 3;
  r.epochs = 10;
  r.values = {{"loss", 0.41}, {"accuracy", 0.88}, {"val_loss", 0.5}, {"val_accuracy", 0.85}};
  r.seconds = 0.25;
  r.samples_per_s = 5748.4;
  return r;
}

TEST(ReporterTest, ProgressLineIsKerasLike) {
  EXPECT_EQ(ProgressLine(Sample()),
            "Epoch 3/10 - loss: 0.4100 - accuracy: 0.8800 - val_loss: 0.5000 - val_accuracy: 0.8500"
            " - 0.25s - 5748 samples/s");
}

TEST(ReporterTest, MetricsLineKeepsOrderAndNullsNonFinite) {
  EXPECT_EQ(
      MetricsLine(Sample()),
      R"({"epoch":3,"loss":0.41,"accuracy":0.88,"val_loss":0.5,"val_accuracy":0.85,"samples_per_s":5748.4})");
  EpochResult r = Sample();
  r.values = {{"loss", std::nan("")}};
  EXPECT_EQ(MetricsLine(r), R"({"epoch":3,"loss":null,"samples_per_s":5748.4})");
  EXPECT_EQ(ReplicasLine(2, {3, 2}), R"({"event":"replicas","devices":2,"shard_sizes":[3,2]})");
}

TEST(ReporterTest, AppendsToMetricsFileAndWritesEvents) {
  std::string dir = testing::TempDir() + "/reporter_test";
  std::filesystem::remove_all(dir);
  FakeClock clock;
  std::FILE* out = std::tmpfile();
  for (int run = 0; run < 2; ++run) {  // a second run appends, as after a resume
    auto r = Reporter::Open(dir + "/m/metrics.jsonl", dir + "/tb", out, &clock);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE((*r)->Replicas(1, {32}, "one replica").ok());
    ASSERT_TRUE((*r)->Epoch(Sample()).ok());
  }
  std::ifstream in(dir + "/m/metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) ++lines;
  EXPECT_EQ(lines, 4);
  int event_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/tb"))
    event_files += e.is_regular_file();
  EXPECT_EQ(event_files, 2);
  std::fclose(out);
}

}  // namespace
}  // namespace yard::trainer
