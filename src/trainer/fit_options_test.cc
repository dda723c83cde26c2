#include "trainer/fit_options.h"

#include <gtest/gtest.h>

namespace yard::trainer {
namespace {

TEST(FitOptionsTest, DefaultsFromEmptyObject) {
  for (const char* text : {"", "{}", "  "}) {
    auto o = ParseFitKwargs(text);
    ASSERT_TRUE(o.ok()) << o.status().ToString();
    EXPECT_EQ(o->loss, LossKind::kCrossEntropy);
    EXPECT_EQ(o->optimizer, OptimizerKind::kAdam);
    EXPECT_DOUBLE_EQ(o->learning_rate, 1e-3);
    EXPECT_TRUE(o->metrics.empty());
    EXPECT_TRUE(o->shuffle);
  }
}

TEST(FitOptionsTest, ParsesEveryKey) {
  auto o = ParseFitKwargs(R"({"loss": "nll", "optimizer": "sgd", "learning_rate": 0.1,
      "metrics": ["accuracy", "accuracy"], "shuffle": false, "momentum": 0.9, "weight_decay": 1e-4})");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->loss, LossKind::kNll);
  EXPECT_EQ(o->optimizer, OptimizerKind::kSgd);
  EXPECT_DOUBLE_EQ(o->learning_rate, 0.1);
  EXPECT_EQ(o->metrics, std::vector<MetricKind>{MetricKind::kAccuracy});
  EXPECT_FALSE(o->shuffle);
  EXPECT_DOUBLE_EQ(o->momentum, 0.9);
  EXPECT_DOUBLE_EQ(o->weight_decay, 1e-4);
}

void ExpectError(const std::string& json, const std::vector<std::string>& parts) {
  auto o = ParseFitKwargs(json);
  ASSERT_FALSE(o.ok()) << json;
  EXPECT_EQ(o.status().code(), Code::kInvalidArgument);
  for (const auto& p : parts) {
    EXPECT_NE(o.status().message().find(p), std::string::npos)
        << o.status().message() << " lacks " << p;
  }
}

TEST(FitOptionsTest, UnknownNamesAreNamedWithTheAllowedOnes) {
  ExpectError(R"({"loss": "hinge"})",
              {"unknown loss \"hinge\"", "cross_entropy", "mse", "bce_with_logits"});
  ExpectError(R"({"optimizer": "rmsprop"})", {"unknown optimizer \"rmsprop\"", "adam, adamw, sgd"});
  ExpectError(R"({"metrics": ["f1"]})", {"unknown metric \"f1\"", "accuracy"});
  ExpectError(R"({"callbacks": []})", {"unknown key \"callbacks\"", "loss", "weight_decay"});
}

TEST(FitOptionsTest, FlagsOwnBatchSizeEpochsAndValidationData) {
  ExpectError(R"({"epochs": 3})", {"may not set \"epochs\"", "--epochs"});
  ExpectError(R"({"batch_size": 3})", {"--batch-size"});
  ExpectError(R"({"validation_data": 1})", {"--val-x"});
}

TEST(FitOptionsTest, RefusesBadValuesAndCombinations) {
  ExpectError("[1]", {"JSON object"});
  ExpectError("{", {"not valid JSON"});
  ExpectError(R"({"learning_rate": 0})", {"learning_rate must be > 0"});
  ExpectError(R"({"learning_rate": "fast"})", {"learning_rate must be a number"});
  ExpectError(R"({"shuffle": 1})", {"shuffle must be true or false"});
  ExpectError(R"({"momentum": 0.9})", {"momentum applies to optimizer sgd only"});
  ExpectError(R"({"loss": "mse", "metrics": ["accuracy"]})",
              {"accuracy needs a classification loss"});
  ExpectError(R"({"metrics": ["mae"]})", {"takes class ids"});
}

}  // namespace
}  // namespace yard::trainer
