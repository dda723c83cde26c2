#include "agent/environment.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/fake_command_runner.h"
#include "common/temp_dir_testing.h"

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

std::string Pip(const std::string& spec) {
  std::string note;
  return CondaSpecToPip(spec, &note);
}

TEST(CondaSpecToPip, ConvertsCondaVersionSyntax) {
  EXPECT_EQ(Pip("numpy"), "numpy");
  // One `=` is conda's fuzzy match: 1.24 means any 1.24.x.
  EXPECT_EQ(Pip("numpy=1.24"), "numpy==1.24.*");
  EXPECT_EQ(Pip("numpy=1.24.*"), "numpy==1.24.*");
  EXPECT_EQ(Pip("numpy==1.24.3"), "numpy==1.24.3");
  EXPECT_EQ(Pip("scipy >=1.10, <2"), "scipy>=1.10,<2");
  EXPECT_EQ(Pip("conda-forge::pandas=2.0"), "pandas==2.0.*");
  EXPECT_EQ(Pip("pandas 2.0.3"), "pandas==2.0.3");
  EXPECT_EQ(Pip("pandas 2.0*"), "pandas==2.0.*");
  EXPECT_EQ(Pip("scikit-learn>=1.2"), "scikit-learn>=1.2");
}

TEST(CondaSpecToPip, DropsBuildStringsSayingSo) {
  std::string note;
  EXPECT_EQ(CondaSpecToPip("numpy=1.24=py311h64a7726_0", &note), "numpy==1.24.*");
  EXPECT_NE(note.find("py311h64a7726_0"), std::string::npos);
  note.clear();
  EXPECT_EQ(CondaSpecToPip("pandas 2.0.3 py311_0", &note), "pandas==2.0.3");
  EXPECT_NE(note.find("py311_0"), std::string::npos);
}

TEST(CondaSpecToPip, SkipsWhatPipCannotInstallWithAReason) {
  for (const char* spec : {"python=3.11", "pip", "Python", "__glibc>=2.17",
                           "numpy[version='>=1.2']", "numpy 1.2|1.3"}) {
    std::string note;
    EXPECT_EQ(CondaSpecToPip(spec, &note), "") << spec;
    EXPECT_FALSE(note.empty()) << spec;
  }
  std::string note;
  CondaSpecToPip("python=3.11", &note);
  EXPECT_NE(note.find("python3"), std::string::npos);
}

TEST(ParseEnvironmentYml, SplitsCondaAndPipEntries) {
  StatusOr<CondaRequirements> r = ParseEnvironmentYml(
      "name: demo\nchannels: [conda-forge]\ndependencies:\n"
      "  - python=3.11\n  - pip\n  - numpy=1.24\n"
      "  - pip:\n    - tinypkg==1.0\n    - --extra-index-url http://127.0.0.1:1/\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->conda, std::vector<std::string>({"numpy==1.24.*"}));
  EXPECT_EQ(r->pip,
            std::vector<std::string>({"tinypkg==1.0", "--extra-index-url http://127.0.0.1:1/"}));
  ASSERT_EQ(r->notes.size(), 2u);
  EXPECT_EQ(r->notes[0].rfind("skipped python=3.11 (", 0), 0u) << r->notes[0];
  EXPECT_EQ(r->notes[1].rfind("skipped pip (", 0), 0u) << r->notes[1];
}

TEST(ParseEnvironmentYml, BadYamlOrShapeIsAnErrorWithTheLine) {
  StatusOr<CondaRequirements> bad = ParseEnvironmentYml("dependencies:\n  - numpy\n - [oops\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line"), std::string::npos) << bad.status().message();
  StatusOr<CondaRequirements> shape = ParseEnvironmentYml("dependencies: numpy\n");
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.status().message().find("dependencies must be a list"), std::string::npos);
  StatusOr<CondaRequirements> pip = ParseEnvironmentYml("dependencies:\n  - pip: tinypkg\n");
  ASSERT_FALSE(pip.ok());
  EXPECT_NE(pip.status().message().find("pip must be a list"), std::string::npos);
  EXPECT_TRUE(ParseEnvironmentYml("").ok());
}

class ManifestTest : public ::testing::Test {
 protected:
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  test_support::TempDir tmp_;
  std::filesystem::path dir_ = tmp_.path();
};

TEST_F(ManifestTest, NoManifestMeansNoEnvironment) {
  StatusOr<EnvironmentManifest> m = ReadEnvironmentManifest(dir_.string());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->source, "");
}

TEST_F(ManifestTest, EnvironmentYmlResolvesToPipLinesThatKeyTheCache) {
  Write("environment.yml",
        "dependencies:\n  - python=3.11\n  - numpy=1.24\n  - pip:\n    - tinypkg\n");
  StatusOr<EnvironmentManifest> m = ReadEnvironmentManifest(dir_.string());
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->source, "environment.yml");
  EXPECT_EQ(m->requirements, "numpy==1.24.*\ntinypkg\n");
  EXPECT_EQ(m->optional, std::vector<std::string>({"numpy==1.24.*"}));
  ASSERT_EQ(m->notes.size(), 1u);
  EXPECT_NE(m->notes[0].find("skipped python=3.11"), std::string::npos);
  // The same packages through requirements.txt share the cached venv; a
  // comment or the skipped python pin does not change it.
  Write("environment.yml", "# pinned\ndependencies:\n  - numpy=1.24\n  - pip:\n    - tinypkg\n");
  StatusOr<EnvironmentManifest> again = ReadEnvironmentManifest(dir_.string());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(EnvironmentKey(again->requirements, "Python 3.11.2"),
            EnvironmentKey(m->requirements, "Python 3.11.2"));
}

TEST_F(ManifestTest, RequirementsTxtWinsOverEnvironmentYmlAndSaysSo) {
  Write("requirements.txt", "tinypkg==1.0  # pinned\n");
  Write("environment.yml", "dependencies: [[[\n");  // not even read
  StatusOr<EnvironmentManifest> m = ReadEnvironmentManifest(dir_.string());
  ASSERT_TRUE(m.ok()) << m.status().message();
  EXPECT_EQ(m->source, "requirements.txt");
  EXPECT_EQ(m->requirements, "tinypkg==1.0\n");
  ASSERT_EQ(m->notes.size(), 1u);
  EXPECT_NE(m->notes[0].find("environment.yml ignored"), std::string::npos);
}

TEST_F(ManifestTest, BadEnvironmentYmlNamesTheFileAndTheParserError) {
  Write("environment.yaml", "dependencies:\n  - numpy\n  pip: [\n");
  StatusOr<EnvironmentManifest> m = ReadEnvironmentManifest(dir_.string());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().message().rfind("environment.yaml: ", 0), 0u) << m.status().message();
  EXPECT_NE(m.status().message().find("line"), std::string::npos) << m.status().message();
}

TEST_F(ManifestTest, SetUpWithNothingToInstallLeavesTheEnvironmentAlone) {
  Write("environment.yml", "dependencies:\n  - python=3.11\n  - pip\n");
  EnvMap env = {{"PATH", "/usr/bin"}};
  std::vector<std::string> said;
  FakeCommandRunner none([](const CommandSpec& c) -> StatusOr<CommandResult> {
    ADD_FAILURE() << "ran " << c.argv.back();
    return Result(1, "");
  });
  Status s = SetUpJobEnvironment(&none, (dir_ / "agent").string(), dir_.string(), &env,
                                 [&](const std::string& line) { said.push_back(line); });
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(env, (EnvMap{{"PATH", "/usr/bin"}}));
  ASSERT_EQ(said.size(), 3u);
  EXPECT_NE(said[2].find("nothing for pip to install"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "agent" / "envs"));
}

// A fake python3/pip: `python3 -m venv DIR` makes DIR; `pip install` and
// `pip download` answer as `pip_ok` says; every call is recorded.
class FakePython {
 public:
  FakePython()
      : runner_([this](const CommandSpec& c) -> StatusOr<CommandResult> { return Answer(c); }) {}
  CommandRunner* runner() { return &runner_; }
  // The tool part of each call (after the `sh -c 'cd DIR && exec "$@"'` prefix).
  std::vector<std::string> Calls() {
    std::vector<std::string> out;
    for (const CommandSpec& c : runner_.calls()) {
      std::string line;
      size_t from = c.argv[0] == "sh" ? 5 : 0;
      for (size_t i = from; i < c.argv.size(); ++i) line += (line.empty() ? "" : " ") + c.argv[i];
      out.push_back(line);
    }
    return out;
  }
  std::function<bool(const std::string& what)> pip_ok = [](const std::string&) { return true; };

 private:
  StatusOr<CommandResult> Answer(const CommandSpec& c) {
    const std::vector<std::string>& a = c.argv;
    if (a[0] == "python3") return Result(0, "Python 3.11.2\n");
    if (std::find(a.begin(), a.end(), "venv") != a.end()) {
      std::filesystem::create_directories(a.back());
      return Result(0, "");
    }
    bool ok = pip_ok(a.back());
    return Result(ok ? 0 : 1, "",
                  ok ? "" : "ERROR: No matching distribution found for " + a.back());
  }
  FakeCommandRunner runner_;
};

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_F(ManifestTest, AVenvIsBuiltOnceWithPipAndThenReused) {
  Write("requirements.txt", "tinypkg==1.0\n");
  FakePython python;
  EnvMap env = {{"PATH", "/usr/bin"}};
  std::vector<std::string> said;
  auto say = [&](const std::string& line) { said.push_back(line); };
  std::string agent = (dir_ / "agent").string();
  ASSERT_TRUE(SetUpJobEnvironment(python.runner(), agent, dir_.string(), &env, say).ok());
  std::vector<std::string> calls = python.Calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0], "python3 --version");
  EXPECT_TRUE(Contains(calls[1], "python3 -m venv --system-site-packages " + agent + "/envs/"));
  EXPECT_TRUE(Contains(calls[2], "/bin/python -m pip install --disable-pip-version-check -r " +
                                     (dir_ / "requirements.txt").string()));
  EXPECT_EQ(env["VIRTUAL_ENV"].rfind(agent + "/envs/", 0), 0u);
  EXPECT_EQ(env["PATH"], env["VIRTUAL_ENV"] + "/bin:/usr/bin");
  EXPECT_TRUE(Contains(said.back(), "(built)")) << said.back();

  EnvMap again = {{"PATH", "/usr/bin"}};
  ASSERT_TRUE(SetUpJobEnvironment(python.runner(), agent, dir_.string(), &again, say).ok());
  EXPECT_EQ(python.Calls().size(), 4u) << "only python3 --version: the venv is reused";
  EXPECT_EQ(again["VIRTUAL_ENV"], env["VIRTUAL_ENV"]);
  EXPECT_TRUE(Contains(said.back(), "(cached)")) << said.back();
}

TEST_F(ManifestTest, AFailedPipInstallSaysPipsErrorAndCachesNothing) {
  Write("requirements.txt", "nosuchpkg==9\n");
  FakePython python;
  python.pip_ok = [](const std::string&) { return false; };
  EnvMap env;
  std::string agent = (dir_ / "agent").string();
  Status s =
      SetUpJobEnvironment(python.runner(), agent, dir_.string(), &env, [](const std::string&) {});
  ASSERT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_TRUE(Contains(s.message(), "pip install -r requirements.txt failed")) << s.message();
  EXPECT_TRUE(Contains(s.message(), "No matching distribution")) << s.message();
  EXPECT_FALSE(env.count("VIRTUAL_ENV"));
  // Nothing half-built is kept: the next try builds again.
  python.pip_ok = [](const std::string&) { return true; };
  ASSERT_TRUE(
      SetUpJobEnvironment(python.runner(), agent, dir_.string(), &env, [](const std::string&) {
      }).ok());
  EXPECT_TRUE(Contains(python.Calls().back(), "pip install"));
}

TEST_F(ManifestTest, CondaEntriesPipCannotServeAreSkippedAndSaid) {
  Write("environment.yml",
        "dependencies:\n  - numpy=1.24\n  - condaonly=2\n  - pip:\n    - tinypkg\n");
  FakePython python;
  // The first install (with condaonly) fails; pip cannot download condaonly.
  python.pip_ok = [&python](const std::string& what) {
    if (what == "condaonly==2.*") return false;
    bool first_install = python.Calls().size() <= 3;
    return !(Contains(what, ".yard-environment.txt") && first_install);
  };
  EnvMap env;
  std::vector<std::string> said;
  Status s = SetUpJobEnvironment(python.runner(), (dir_ / "agent").string(), dir_.string(), &env,
                                 [&](const std::string& line) { said.push_back(line); });
  ASSERT_TRUE(s.ok()) << s.message();
  std::string all;
  for (const auto& line : said) all += line + "\n";
  EXPECT_TRUE(Contains(all, "environment.yml: skipped condaonly==2.*: pip cannot serve it")) << all;
  std::ifstream resolved(dir_ / ".yard-environment.txt");
  std::string text((std::istreambuf_iterator<char>(resolved)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "numpy==1.24.*\ntinypkg\n") << "installed again without the unservable entry";
}

}  // namespace
}  // namespace yard
