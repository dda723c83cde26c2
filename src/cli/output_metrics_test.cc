#include "cli/output_metrics.h"

#include <gtest/gtest.h>

namespace yard::cli {
namespace {

TEST(OutputMetricsTest, ReadsKerasEpochLinesAcrossProgressRedraws) {
  OutputMetrics m;
  EXPECT_FALSE(m.Add("Epoch 1/3\n"));
  EXPECT_TRUE(m.Add(" 1/32 [>....] - ETA: 3s - loss: 2.3012\r32/32 [======] - 0s 3ms/st"));
  EXPECT_TRUE(m.Add("ep - loss: 0.4321 - accuracy: 0.8800 - val_loss: 0.3900\nEpoch 2/3\n"));
  EXPECT_EQ(
      m.latest(),
      (nlohmann::json{{"epoch", 1}, {"loss", 0.4321}, {"accuracy", 0.88}, {"val_loss", 0.39}}));
}

TEST(OutputMetricsTest, ReadsLightningProgressBarPostfix) {
  OutputMetrics m;
  EXPECT_TRUE(
      m.Add("Epoch 0: 100%|##########| 32/32 [00:00<00:00, 95.1it/s, v_num=0, train_loss=0.412, "
            "val_acc=0.91]\r"));
  EXPECT_EQ(m.latest(), (nlohmann::json{{"epoch", 1}, {"train_loss", 0.412}, {"val_acc", 0.91}}));
}

TEST(OutputMetricsTest, IgnoresOrdinaryOutput) {
  OutputMetrics m;
  EXPECT_FALSE(m.Add("hello world\nlr=0.1 batch=32\n"));
  EXPECT_TRUE(m.latest().empty());
}

}  // namespace
}  // namespace yard::cli
