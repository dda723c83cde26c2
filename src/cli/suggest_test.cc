#include "cli/suggest.h"

#include <gtest/gtest.h>

namespace yard::cli {
namespace {

TEST(SuggestTest, EditDistanceCountsInsertionsDeletionsAndSubstitutions) {
  EXPECT_EQ(EditDistance("fit", "fit"), 0u);
  EXPECT_EQ(EditDistance("fitt", "fit"), 1u);
  EXPECT_EQ(EditDistance("runing", "running"), 1u);
  EXPECT_EQ(EditDistance("jbos", "jobs"), 1u);  // a swap
  EXPECT_EQ(EditDistance("lcoal", "local"), 1u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
}

TEST(SuggestTest, NearestNamesALikelyTypoAndNothingFarAway) {
  std::vector<std::string> commands = {"init", "fit", "submit", "jobs", "status", "logs"};
  EXPECT_EQ(Nearest("fitt", commands), "fit");
  EXPECT_EQ(Nearest("stauts", commands), "status");
  EXPECT_EQ(Nearest("--machine", {"--machines", "--description"}), "--machines");
  EXPECT_EQ(Nearest("deploy", commands), "");
  EXPECT_EQ(DidYouMean("runing", {"waiting", "running"}), "; did you mean 'running'?");
  EXPECT_EQ(DidYouMean("zzz", {"waiting", "running"}), "");
}

}  // namespace
}  // namespace yard::cli
