#include "common/strings.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

TEST(SplitNonEmptyTest, DropsEmptyParts) {
  EXPECT_EQ(SplitNonEmpty("a,,b,", ','), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(SplitNonEmpty("x\n\ny\n", '\n'), (std::vector<std::string>{"x", "y"}));
  EXPECT_TRUE(SplitNonEmpty("", ',').empty());
}

}  // namespace
}  // namespace yard
