#include "common/command_runner.h"

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/temp_dir_testing.h"

using yard::test_support::TempDir;

namespace yard {
namespace {

// A long command's progress is seen while it runs: the command below goes
// on only once the line it printed first has been passed on, so without
// streaming it would run into its timeout.
TEST(ProcessCommandRunnerTest, PassesEachLineOnWhileTheCommandRuns) {
  TempDir dir;
  std::string go = dir.path() + "/go";
  CommandSpec spec;
  spec.argv = {"/bin/sh", "-c",
               "echo first; echo to-stderr >&2; "
               "while [ ! -e \"$GO\" ]; do sleep 0.01; done; printf 'last, no newline'"};
  spec.env = {"GO=" + go};
  spec.timeout = std::chrono::seconds(20);
  std::vector<std::string> lines;
  spec.on_line = [&](const std::string& line) {
    lines.push_back(line);
    if (line == "first") std::ofstream(go) << "";
  };
  ProcessCommandRunner runner;
  StatusOr<CommandResult> r = runner.Run(spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->out, "first\nlast, no newline");  // still collected
  EXPECT_EQ(r->err, "to-stderr\n");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines.front(), "first");
  EXPECT_EQ(lines.back(), "last, no newline");
}

}  // namespace
}  // namespace yard
