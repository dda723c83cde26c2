#include <gtest/gtest.h>

#include "common/files.h"

namespace yard {
namespace {

TEST(BuildIdTest, AFilesBuildIdIsWhatItSaysWhenItRuns) {
  std::string self = SelfBuildId();
  ASSERT_GE(self.size(), 16u) << "the test binary was linked without --build-id";
  EXPECT_EQ(BuildIdOf(SelfExecutable()), self);
  EXPECT_EQ(BuildIdOf("/nonexistent/yard"), "");
  EXPECT_EQ(BuildIdOf("/etc/hostname"), "") << "not ELF";
}

}  // namespace
}  // namespace yard
