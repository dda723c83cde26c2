#include "cli/sweep_spec.h"

#include <gtest/gtest.h>

namespace yard::cli {
namespace {

std::string Refusal(const std::vector<std::string>& flags) {
  StatusOr<std::vector<SweepAxis>> got = ParseSweeps(flags);
  return got.ok() ? "accepted" : got.status().message();
}

TEST(SweepSpecTest, EachFlagIsANameAndItsValuesInOrder) {
  StatusOr<std::vector<SweepAxis>> axes = ParseSweeps({"lr=0.1,0.01", "batch-size=128"});
  ASSERT_TRUE(axes.ok()) << axes.status().ToString();
  ASSERT_EQ(axes->size(), 2u);
  EXPECT_EQ((*axes)[0].name, "lr");
  EXPECT_EQ((*axes)[0].values, (std::vector<std::string>{"0.1", "0.01"}));
  EXPECT_EQ((*axes)[1].name, "batch-size");
  EXPECT_EQ((*axes)[1].values, (std::vector<std::string>{"128"}));
  EXPECT_TRUE(ParseSweeps({}).value().empty());
}

TEST(SweepSpecTest, EmptyValuesAreRefusedNotDropped) {
  // `lr=,,` used to expand to no job at all, silently.
  EXPECT_NE(Refusal({"lr=,,"}).find("value 1 of 'lr' is empty"), std::string::npos)
      << Refusal({"lr=,,"});
  EXPECT_NE(Refusal({"lr=1,,2"}).find("value 2 of 'lr' is empty"), std::string::npos);
  EXPECT_NE(Refusal({"lr=1,"}).find("value 2 of 'lr' is empty"), std::string::npos);
  EXPECT_NE(Refusal({"lr="}).find("value 1 of 'lr' is empty"), std::string::npos);
}

TEST(SweepSpecTest, ANameOrAValueGivenTwiceIsRefused) {
  EXPECT_NE(Refusal({"lr=1", "lr=2"}).find("'lr' is given twice"), std::string::npos)
      << Refusal({"lr=1", "lr=2"});
  EXPECT_NE(Refusal({"lr=1,1"}).find("'1' is given twice"), std::string::npos);
}

TEST(SweepSpecTest, AFlagThatIsNotNameEqualsValuesSaysHowToWriteIt) {
  EXPECT_NE(Refusal({"lr"}).find("has no '='"), std::string::npos);
  EXPECT_NE(Refusal({"=1,2"}).find("is not an option name"), std::string::npos);
  EXPECT_NE(Refusal({"--lr=1"}).find("is not an option name"), std::string::npos);
  EXPECT_NE(Refusal({"l r=1"}).find("is not an option name"), std::string::npos);
  EXPECT_NE(Refusal({"lr"}).find("--sweep NAME=V1,V2"), std::string::npos);
}

}  // namespace
}  // namespace yard::cli
