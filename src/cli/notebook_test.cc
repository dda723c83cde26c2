#include "cli/notebook.h"

#include <gtest/gtest.h>

namespace yard::cli {
namespace {

TEST(NotebookRunnerSource, IsTheWholeRunnerScript) {
  std::string_view src = NotebookRunnerSource();
  EXPECT_EQ(src.substr(0, 3), "\"\"\"");
  EXPECT_NE(src.find("def main(argv):"), std::string_view::npos);
  EXPECT_NE(src.find("if __name__ == \"__main__\":\n    sys.exit(main(sys.argv[1:]))"),
            std::string_view::npos);
}

}  // namespace
}  // namespace yard::cli
