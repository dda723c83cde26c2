#include "agent/sandbox.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "common/command_runner.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;
using test_support::TempDir;

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

size_t IndexOf(const std::vector<std::string>& v, std::initializer_list<std::string> seq) {
  std::vector<std::string> want(seq);
  auto it = std::search(v.begin(), v.end(), want.begin(), want.end());
  return it == v.end() ? std::string::npos : static_cast<size_t>(it - v.begin());
}

TEST(SandboxTest, PythonFoldersAreTheVenvAndThePythonItWasMadeFrom) {
  TempDir t;
  fs::path base = fs::canonical(t.path());
  fs::create_directories(base / "py/lib/python3.11");
  fs::create_directories(base / "py/bin");
  fs::create_directories(base / "venv/bin");
  std::ofstream(base / "venv/pyvenv.cfg") << "home = " << (base / "py/bin").string() << "\n";
  fs::create_directories(base / "home/bin");  // a plain folder: only itself
  std::string path = (base / "venv/bin").string() + ":/usr/bin:" + (base / "home/bin").string() +
                     ":relative/bin:" + (base / "missing").string();
  std::vector<std::string> got = PythonFolders(path);
  EXPECT_EQ(got, (std::vector<std::string>{(base / "venv/bin").string(), (base / "venv").string(),
                                           (base / "py").string(), (base / "home/bin").string()}));
}

// Every file and folder from `root` down as if last changed an hour ago:
// older than the cache's "racily clean" window.
void AgeTree(const fs::path& root) {
  auto hour_ago = fs::file_time_type::clock::now() - std::chrono::hours(1);
  for (const auto& e : fs::recursive_directory_iterator(root)) fs::last_write_time(e, hour_ago);
  fs::last_write_time(root, hour_ago);
}

TEST(SandboxTest, ARememberedPrefixIsReusedUntilAFolderItDependsOnChanges) {
  TempDir t;
  fs::path base = fs::canonical(t.path());
  fs::create_directories(base / "jobs");
  fs::create_directories(base / "venv/bin");
  std::ofstream(base / "venv/pyvenv.cfg") << "home = /usr/bin\n";
  SandboxSpec spec;
  spec.writable = (base / "jobs").string();
  EnvMap env = {{"PATH", (base / "venv/bin").string() + ":" + (base / "later/bin").string()},
                {"HOME", (base / "home").string()}};
  AgeTree(base);
  SandboxPrefixCache cache;
  StatusOr<std::vector<std::string>> first = cache.Get(spec, env);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*first, *SandboxPrefix(spec, env));
  StatusOr<std::vector<std::string>> again = cache.Get(spec, env);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *first);
  EXPECT_EQ(cache.computed(), 1) << "nothing changed: the remembered prefix serves";
  // Another environment is another prefix.
  EnvMap other = env;
  other["PATH"] = (base / "venv/bin").string();
  EXPECT_EQ(*cache.Get(spec, other), *SandboxPrefix(spec, other));
  EXPECT_EQ(cache.computed(), 2);

  // A folder on PATH that did not exist appears: the next job sees it.
  std::string later = (base / "later/bin").string();
  EXPECT_EQ(IndexOf(*first, {"--ro-bind", later, later}), std::string::npos);
  fs::create_directories(later);
  StatusOr<std::vector<std::string>> after = cache.Get(spec, env);
  ASSERT_TRUE(after.ok());
  EXPECT_NE(IndexOf(*after, {"--ro-bind", later, later}), std::string::npos);
  EXPECT_EQ(cache.computed(), 3);
  // Only folders came and went (their identity is what counts): remembered.
  EXPECT_EQ(*cache.Get(spec, env), *after);
  EXPECT_EQ(cache.computed(), 3);
  // What it reads (lib/ beside a bin/ on PATH) changed within the racy
  // window: not remembered, computed each time until it is older.
  fs::create_directories(base / "later/lib");
  EXPECT_EQ(*cache.Get(spec, env), *after);
  EXPECT_EQ(cache.computed(), 4);
  EXPECT_EQ(*cache.Get(spec, env), *after);
  EXPECT_EQ(cache.computed(), 5);

  // A venv's folder replaced by a link elsewhere (a venv made anew and
  // swapped in): the prefix binds where the link leads now.
  AgeTree(base);
  EXPECT_EQ(*cache.Get(spec, env), *after);
  int before_swap = cache.computed();
  fs::create_directories(base / "venv2/bin");
  fs::rename(base / "venv", base / "venv-old");
  fs::create_directory_symlink(base / "venv2", base / "venv");
  AgeTree(base);
  StatusOr<std::vector<std::string>> swapped = cache.Get(spec, env);
  ASSERT_TRUE(swapped.ok());
  EXPECT_EQ(cache.computed(), before_swap + 1);
  EXPECT_EQ(*swapped, *SandboxPrefix(spec, env));
  std::string now_real = (base / "venv2/bin").string(), named = (base / "venv/bin").string();
  EXPECT_NE(IndexOf(*swapped, {"--ro-bind", now_real, named}), std::string::npos);
}

TEST(SandboxTest, AFileMadeBesideAFolderOnPathKeepsThePrefixButAVenvMadeThereDoesNot) {
  TempDir t;
  fs::path base = fs::canonical(t.path());
  fs::create_directories(base / "jobs");
  fs::create_directories(base / "tools/bin");  // as `yard`'s folder, or ~/bin
  SandboxSpec spec;
  spec.writable = (base / "jobs").string();
  EnvMap env = {{"PATH", (base / "tools/bin").string() + ":/usr/bin"}};
  AgeTree(base);
  SandboxPrefixCache cache;
  StatusOr<std::vector<std::string>> first = cache.Get(spec, env);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(cache.computed(), 1);
  // Files come and go beside bin/ (a log, an editor's temporary file).
  std::ofstream(base / "tools/notes.txt") << "x\n";
  fs::create_directories(base / "tools/build-output");
  EXPECT_EQ(*cache.Get(spec, env), *first);
  EXPECT_EQ(cache.computed(), 1) << "nothing the prefix depends on changed";
  // tools/ becomes a venv: its folder and the Python it names are bound now.
  fs::create_directories(base / "py/bin");
  std::ofstream(base / "tools/pyvenv.cfg") << "home = " << (base / "py/bin").string() << "\n";
  AgeTree(base);
  StatusOr<std::vector<std::string>> venv = cache.Get(spec, env);
  ASSERT_TRUE(venv.ok());
  EXPECT_EQ(cache.computed(), 2);
  EXPECT_EQ(*venv, *SandboxPrefix(spec, env));
  std::string py = (base / "py").string();
  EXPECT_NE(IndexOf(*venv, {"--ro-bind", py, py}), std::string::npos);
  // A lib/python3.x appearing beside bin/ makes it an installation as well.
  fs::remove(base / "tools/pyvenv.cfg");
  AgeTree(base);
  EXPECT_EQ(*cache.Get(spec, env), *SandboxPrefix(spec, env));
  int before_lib = cache.computed();
  fs::create_directories(base / "tools/lib/python3.11");
  AgeTree(base);
  StatusOr<std::vector<std::string>> lib = cache.Get(spec, env);
  ASSERT_TRUE(lib.ok());
  EXPECT_EQ(cache.computed(), before_lib + 1);
  std::string tools = (base / "tools").string();
  EXPECT_NE(IndexOf(*lib, {"--ro-bind", tools, tools}), std::string::npos);
}

TEST(SandboxTest, HiddenFoldersAreMaskedAndTheJobFoldersMountedOverThem) {
  TempDir t;
  fs::path base = fs::canonical(t.path());
  fs::create_directories(base / "home/instances/inst-1/jobs");
  fs::create_directories(base / "home/instances/inst-1/envs");
  fs::create_directories(base / "home/instances/inst-1/warm");
  fs::create_directories(base / "tools");
  SandboxSpec spec;
  spec.writable = (base / "home/instances/inst-1/jobs").string();
  spec.also_writable = {(base / "home/instances/inst-1/warm").string()};
  spec.readable = {(base / "tools").string(), (base / "home/instances/inst-1/envs").string()};
  spec.hidden = {(base / "home").string()};
  StatusOr<std::vector<std::string>> argv =
      SandboxPrefix(spec, {{"PATH", "/usr/bin"}, {"HOME", "/root"}});
  ASSERT_TRUE(argv.ok()) << argv.status().ToString();
  const std::vector<std::string>& a = *argv;
  EXPECT_EQ(a.back(), "--");
  EXPECT_TRUE(Has(a, "--unshare-pid")) << "its own /proc: not the agent's environ";
  size_t proc = IndexOf(a, {"--proc", "/proc"});
  size_t home = IndexOf(a, {"--tmpfs", "/root"});
  size_t tools = IndexOf(a, {"--ro-bind", (base / "tools").string(), (base / "tools").string()});
  size_t hidden = IndexOf(a, {"--tmpfs", (base / "home").string()});
  std::string envs = (base / "home/instances/inst-1/envs").string();
  size_t env_bind = IndexOf(a, {"--ro-bind", envs, envs});
  size_t jobs = IndexOf(a, {"--bind", spec.writable, spec.writable});
  ASSERT_NE(proc, std::string::npos);
  ASSERT_NE(home, std::string::npos) << "an empty private HOME";
  ASSERT_NE(tools, std::string::npos);
  ASSERT_NE(hidden, std::string::npos);
  ASSERT_NE(env_bind, std::string::npos);
  ASSERT_NE(jobs, std::string::npos);
  EXPECT_LT(tools, hidden);
  EXPECT_LT(hidden, env_bind) << "what the job needs from the hidden folder comes over the mask";
  EXPECT_LT(hidden, jobs);
  std::string warm = (base / "home/instances/inst-1/warm").string();
  size_t warm_bind = IndexOf(a, {"--bind", warm, warm});
  ASSERT_NE(warm_bind, std::string::npos) << "a warm runner writes its ready file there";
  EXPECT_LT(hidden, warm_bind);
  EXPECT_EQ(IndexOf(a, {"--ro-bind", "/", "/"}), std::string::npos) << "never the whole root";
  if (fs::exists("/etc/shadow")) {
    EXPECT_NE(IndexOf(a, {"--ro-bind", "/dev/null", "/etc/shadow"}), std::string::npos);
  }
}

// The pids of `pid`'s children (its main thread's), from /proc.
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> pids;
  for (pid_t p; in >> p;) pids.push_back(p);
  return pids;
}

// Whether `pid` has ended: no such process, or a zombie (orphans may come
// to this test process when it runs as its pid namespace's init).
bool Ended(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  return !in.is_open() || stat.empty() || close == std::string::npos ||
         stat.compare(close + 1, 3, " Z ") == 0;
}

bool WaitFor(const std::function<bool()>& done, std::chrono::seconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// bwrap killed (as the agent ends a job's tree, or dies) must not leave its
// sandbox behind: its first process, the sandbox's init, dies with it.
TEST(SandboxTest, TheSandboxDiesWithBwrap) {
  TempDir t;
  SandboxSpec spec;
  spec.writable = fs::canonical(t.path()).string();
  StatusOr<std::vector<std::string>> prefix = SandboxPrefix(spec, {{"PATH", "/usr/bin:/bin"}});
  ASSERT_TRUE(prefix.ok()) << prefix.status().ToString();
  std::vector<std::string> argv = *prefix;
  argv.push_back("/bin/sleep");
  argv.push_back("1000");
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t bwrap = ::fork();
  ASSERT_GE(bwrap, 0);
  if (bwrap == 0) {
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  pid_t init = 0;
  bool running = WaitFor(
      [&]() {
        std::vector<pid_t> kids = ChildrenOf(bwrap);
        if (kids.empty()) return false;
        init = kids[0];
        return !ChildrenOf(init).empty();  // the sandbox's init has started sleep
      },
      std::chrono::seconds(20));
  if (!running) {
    ::kill(bwrap, SIGKILL);
    ::waitpid(bwrap, nullptr, 0);
    GTEST_SKIP() << "bubblewrap cannot confine here (no user namespaces?)";
  }
  ASSERT_GT(init, 0);
  ::kill(bwrap, SIGKILL);
  ::waitpid(bwrap, nullptr, 0);
  bool gone = WaitFor([&]() { return Ended(init); }, std::chrono::seconds(10));
  if (!gone) ::kill(init, SIGKILL);  // not left behind by the test either
  EXPECT_TRUE(gone) << "the sandbox (pid " << init << ") outlived its bwrap";
}

TEST(SandboxTest, TheProgramsVenvIsShownWhereItIsNamedAndNothingDerivedPiercesAHiddenFolder) {
  TempDir t;
  fs::path base = fs::canonical(t.path());
  fs::create_directories(base / "real/venv/bin");
  std::ofstream(base / "real/venv/pyvenv.cfg") << "home = /usr/bin\n";
  fs::create_directories(base / "tree");
  fs::create_directory_symlink(base / "real/venv", base / "tree/venv");  // a worktree's .venv link
  fs::create_directories(base / "home/instances/inst-1/jobs");
  fs::create_directories(base / "home/bin");
  fs::create_directories(base / "lib/python");
  SandboxSpec spec;
  spec.writable = (base / "home/instances/inst-1/jobs").string();
  spec.hidden = {(base / "home").string()};
  spec.program = (base / "tree/venv/bin/python").string();  // not on PATH: the SDK's sys.executable
  EnvMap env = {{"PATH", (base / "home/bin").string() + ":/usr/bin"},
                {"PYTHONPATH", (base / "lib/python").string()}};
  StatusOr<std::vector<std::string>> argv = SandboxPrefix(spec, env);
  ASSERT_TRUE(argv.ok()) << argv.status().ToString();
  const std::vector<std::string>& a = *argv;
  std::string real = (base / "real/venv").string(), named = (base / "tree/venv").string();
  EXPECT_NE(IndexOf(a, {"--ro-bind", real, real}), std::string::npos);
  EXPECT_NE(IndexOf(a, {"--ro-bind", real, named}), std::string::npos)
      << "where the job looks for it";
  std::string lib = (base / "lib/python").string();
  EXPECT_NE(IndexOf(a, {"--ro-bind", lib, lib}), std::string::npos) << "PYTHONPATH";
  std::string hidden_bin = (base / "home/bin").string();
  EXPECT_FALSE(Has(a, hidden_bin)) << "a PATH entry inside a hidden folder stays hidden";
}

TEST(SandboxTest, APathEntryWithDotDotIsWalkableInsideTheSandbox) {
  // The README's own command: cd examples/digits && PATH="$PWD/../../.venv/bin:$PATH".
  TempDir t;
  fs::path base = fs::canonical(t.path());
  fs::create_directories(base / "repo/.venv/bin");
  std::ofstream(base / "repo/.venv/pyvenv.cfg") << "home = /usr/bin\n";
  fs::create_directories(base / "repo/examples/digits");
  fs::create_directories(base / "home/jobs");
  SandboxSpec spec;
  spec.writable = (base / "home/jobs").string();
  spec.hidden = {(base / "home").string()};
  EnvMap env = {{"PATH", (base / "repo/examples/digits/../../.venv/bin").string() + ":/usr/bin"}};
  StatusOr<std::vector<std::string>> argv = SandboxPrefix(spec, env);
  ASSERT_TRUE(argv.ok()) << argv.status().ToString();
  std::string venv = (base / "repo/.venv").string(),
              steps = (base / "repo/examples/digits").string();
  EXPECT_NE(IndexOf(*argv, {"--ro-bind", venv, venv}), std::string::npos);
  EXPECT_NE(IndexOf(*argv, {"--dir", steps}), std::string::npos)
      << "the folders before '..' exist inside, or python3 is another one further down PATH";
  EXPECT_EQ(IndexOf(*argv, {"--ro-bind", steps, steps}), std::string::npos)
      << "made empty, not shown";
}

// The host view (SSH hosts): the host's own files read-only, so that a job
// reads the data kept there, but never a hidden folder (the agent's), the
// host's sockets under /run, nor a way to write outside its folder.
TEST(SandboxTest, TheHostViewShowsTheHostsDataButNotHiddenFoldersNorRun) {
  // Outside /tmp, which is private in any sandbox.
  fs::path cwd = fs::current_path();
  fs::path base = (cwd.string().rfind("/tmp/", 0) == 0 ? fs::path("/srv") : cwd) /
                  ("sandbox-host-view-" + std::to_string(::getpid()));
  std::error_code ec;
  if (!fs::create_directories(base / "agent/jobs", ec) || ec)
    GTEST_SKIP() << "cannot write " << base;
  fs::create_directories(base / "data");
  std::ofstream(base / "data/x.txt") << "dataset";
  std::ofstream(base / "agent/credential") << "secret";
  SandboxSpec spec;
  spec.writable = (base / "agent/jobs").string();
  spec.hidden = {(base / "agent").string()};
  spec.show_host = true;
  StatusOr<std::vector<std::string>> argv = SandboxPrefix(spec, {{"PATH", "/usr/bin:/bin"}});
  ASSERT_TRUE(argv.ok()) << argv.status().ToString();
  CommandSpec run;
  run.argv = *argv;
  run.argv.insert(run.argv.end(),
                  {"sh", "-c",
                   "cat " + (base / "data/x.txt").string() + "; echo; ls -A " +
                       (base / "agent").string() + "; ls -A /run | wc -l; touch " +
                       (base / "data/y").string() + " 2>/dev/null || echo read-only"});
  StatusOr<CommandResult> ran = ProcessCommandRunner().Run(run);
  fs::remove_all(base);
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  EXPECT_EQ(ran->out, "dataset\njobs\n0\nread-only\n") << ran->err;
}

// The host view runs what the job's PATH leads to where it is named: a
// folder reached through an absolute link (a worktree's .venv) was bound
// again there, and bwrap failed making its mount point through the link
// ("Can't mkdir ...": the EC2 agent's jobs in the e2e test all failed so).
// A folder under the job's private $HOME is still shown.
TEST(SandboxTest, TheHostViewRunsProgramsOnAPathThroughALinkAndUnderHome) {
  fs::path cwd = fs::current_path();
  fs::path base = (cwd.string().rfind("/tmp/", 0) == 0 ? fs::path("/srv") : cwd) /
                  ("sandbox-host-link-" + std::to_string(::getpid()));
  std::error_code ec;
  if (!fs::create_directories(base / "agent/jobs", ec) || ec)
    GTEST_SKIP() << "cannot write " << base;
  for (const char* dir : {"real/venv/bin", "home/tools/bin"}) fs::create_directories(base / dir);
  std::ofstream(base / "real/venv/bin/linked-tool") << "#!/bin/sh\necho linked\n";
  std::ofstream(base / "home/tools/bin/home-tool") << "#!/bin/sh\necho home\n";
  for (const char* tool : {"real/venv/bin/linked-tool", "home/tools/bin/home-tool"})
    fs::permissions(base / tool, fs::perms::owner_all | fs::perms::others_exec);
  fs::create_directories(base / "tree");
  fs::create_directory_symlink(base / "real/venv", base / "tree/venv");
  SandboxSpec spec;
  spec.writable = (base / "agent/jobs").string();
  spec.hidden = {(base / "agent").string()};
  spec.show_host = true;
  EnvMap env = {{"PATH", (base / "tree/venv/bin").string() + ":" +
                             (base / "home/tools/bin").string() + ":/usr/bin:/bin"},
                {"HOME", (base / "home").string()}};
  StatusOr<std::vector<std::string>> argv = SandboxPrefix(spec, env);
  ASSERT_TRUE(argv.ok()) << argv.status().ToString();
  CommandSpec run;
  run.argv = *argv;
  run.argv.insert(run.argv.end(),
                  {"env", "PATH=" + env["PATH"], "sh", "-c", "linked-tool; home-tool"});
  StatusOr<CommandResult> ran = ProcessCommandRunner().Run(run);
  fs::remove_all(base);
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  EXPECT_EQ(ran->out, "linked\nhome\n") << ran->err;
}

// bubblewrap is installed here (scripts/setup.sh), and the tests run as
// root: a sandbox can be made.
TEST(SandboxTest, CheckSandboxWorksWhereBubblewrapCanConfine) {
  TempDir t;
  EXPECT_TRUE(CheckSandboxWorks(t.path()).ok()) << CheckSandboxWorks(t.path()).message();
}

// A sandbox bubblewrap cannot make (here: its writable folder is missing)
// is refused with bubblewrap's own reason and what the host needs.
TEST(SandboxTest, CheckSandboxWorksSaysWhyItCannot) {
  TempDir t;
  Status s = CheckSandboxWorks(t.path() + "/missing");
  ASSERT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("bubblewrap cannot make a sandbox on this machine"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("missing"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("user namespaces"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace yard
