#include "client/machine_menu.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

Json Types() {
  return Json::parse(R"([{"name": "a", "cpus": 2, "gpus": 0, "spot_price": 0.01},
                         {"name": "b", "cpus": 8, "gpus": 1, "gpu_model": "T4", "default": true,
                          "available": 3}])");
}

TEST(MachineMenuTest, ListsEveryTypeAndMarksTheDefault) {
  std::string menu = MachineMenu(Types());
  EXPECT_EQ(menu.rfind("Choose machines, in order of preference:\n", 0), 0u) << menu;
  EXPECT_NE(menu.find("   1) a                    2 cpus  0 gpus"), std::string::npos) << menu;
  EXPECT_NE(menu.find("   2) b                    8 cpus  1 gpus T4"), std::string::npos) << menu;
  EXPECT_NE(menu.find("3 available  (default)\n"), std::string::npos) << menu;
  EXPECT_EQ(MachinePrompt(Types()), "Numbers or names, comma-separated [2]: ");
}

TEST(MachineMenuTest, TakesNumbersNamesAndTheDefault) {
  EXPECT_EQ(*ParseMachineChoice(Types(), ""), std::vector<std::string>{"b"});
  EXPECT_EQ(*ParseMachineChoice(Types(), " 2, a:spot "), (std::vector<std::string>{"b", "a:spot"}));
  StatusOr<std::vector<std::string>> bad = ParseMachineChoice(Types(), "7");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("no machine number 7 (1-2)"), std::string::npos);
  EXPECT_TRUE(ParseMachineChoice(Json::array(), "")->empty());
}

}  // namespace
}  // namespace yard
