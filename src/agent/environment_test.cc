#include "agent/environment.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

TEST(EnvironmentKey, IgnoresCommentsBlankLinesAndSpaces) {
  std::string a = "numpy==1.24\n# pinned\n\n  tinypkg>=1.0  \n";
  std::string b = "numpy==1.24   # the one Debian ships\ntinypkg>=1.0\n";
  EXPECT_EQ(NormalizeRequirements(a), "numpy==1.24\ntinypkg>=1.0\n");
  EXPECT_EQ(EnvironmentKey(a, "Python 3.11.2"), EnvironmentKey(b, "Python 3.11.2\n"));
  EXPECT_EQ(EnvironmentKey(a, "Python 3.11.2").size(), 64u);
}

TEST(EnvironmentKey, ChangesWithRequirementsOrderOrPython) {
  std::string base = EnvironmentKey("a==1\nb==2\n", "Python 3.11.2");
  EXPECT_NE(base, EnvironmentKey("a==1\nb==3\n", "Python 3.11.2"));
  EXPECT_NE(base, EnvironmentKey("b==2\na==1\n", "Python 3.11.2"));
  EXPECT_NE(base, EnvironmentKey("a==1\nb==2\n", "Python 3.12.0"));
}

TEST(ActivateEnvironment, PutsVenvFirstOnPath) {
  EnvMap env = {{"PATH", "/usr/bin"}, {"PYTHONHOME", "/x"}};
  ActivateEnvironment("/w/envs/k", &env);
  EXPECT_EQ(env["PATH"], "/w/envs/k/bin:/usr/bin");
  EXPECT_EQ(env["VIRTUAL_ENV"], "/w/envs/k");
  EXPECT_EQ(env.count("PYTHONHOME"), 0u);
  EnvMap untouched = {{"PATH", "/usr/bin"}};
  ActivateEnvironment("", &untouched);
  EXPECT_EQ(untouched.size(), 1u);
}

}  // namespace
}  // namespace yard
