#include "agent/job_process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "agent/sandbox.h"
#include "agent/sandbox_template.h"
#include "agent/shim_zygote.h"
#include "common/temp_dir_testing.h"
#include "common/wait_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Processes take their time to end: five seconds at most here.
bool WaitForProcesses(const std::function<bool()>& condition,
                      std::chrono::milliseconds timeout = 5s) {
  return test_support::WaitFor(condition, timeout);
}

bool Gone(pid_t pid) { return kill(pid, 0) == -1 && errno == ESRCH; }

struct Stat {
  char state = 0;
  pid_t ppid = 0;
  pid_t pgid = 0;
};

// Fields of /proc/<pid>/stat after the name.
std::optional<Stat> ReadStat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  std::istringstream rest(line.substr(line.rfind(')') + 1));
  Stat stat;
  if (!(rest >> stat.state >> stat.ppid >> stat.pgid)) return std::nullopt;
  return stat;
}

// Gone, or a zombie that some process outside our control (init) will reap.
bool Dead(pid_t pid) {
  std::optional<Stat> stat = ReadStat(pid);
  return Gone(pid) || (stat && stat->state == 'Z');
}

struct Result {
  std::string output;
  ExitInfo exit;
};

// Reads the job's output until EOF, then waits for it.
Result RunToEnd(JobProcess& job, std::chrono::seconds timeout = 10s) {
  Result result;
  auto deadline = Clock::now() + timeout;
  while (job.ReadAvailable(&result.output)) {
    if (Clock::now() >= deadline) {
      ADD_FAILURE() << "job still running after " << timeout.count() << " s: " << result.output;
      break;
    }
    pollfd p{job.output_fd(), POLLIN, 0};
    poll(&p, 1, 100);
  }
  result.exit = job.Wait();
  return result;
}

// Reads output until it contains `needle`.
bool ReadUntil(JobProcess& job, std::string* out, const std::string& needle) {
  return WaitForProcesses([&] {
    job.ReadAvailable(out);
    return out->find(needle) != std::string::npos;
  });
}

class JobProcessTest : public ::testing::Test {
 protected:
  // A failing test must not leave its jobs' processes behind.
  void TearDown() override {
    // Only real pids: kill(-1, ...) or kill(0, ...) would reach every
    // process we may signal, or our whole group.
    for (pid_t pid : seen_pids_) {
      if (pid > 0 && !Dead(pid)) kill(pid, SIGKILL);
    }
  }

  JobSpawnOptions Shell(const std::string& script) {
    JobSpawnOptions options;
    options.argv = {"sh", "-c", script};
    options.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"}};
    options.cwd = dir_.string();
    options.shim_executable = YARD_BINARY;
    return options;
  }

  std::unique_ptr<JobProcess> Start(const JobSpawnOptions& options) {
    StatusOr<std::unique_ptr<JobProcess>> job = JobProcess::Start(options);
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    return job.ok() ? std::move(job).value() : nullptr;
  }

  Result Run(const std::string& script) {
    auto job = Start(Shell(script));
    return job ? RunToEnd(*job) : Result{};
  }

  // The pid a job wrote to `name` in the job's folder, once it is there.
  pid_t AwaitPidFile(const std::string& name) {
    pid_t pid = 0;
    bool found = WaitForProcesses([&] {
      std::ifstream in(dir_ / name);
      return static_cast<bool>(in >> pid) && pid > 0;
    });
    EXPECT_TRUE(found) << "no pid in " << name;
    if (!found) return 0;
    seen_pids_.push_back(pid);
    return pid;
  }

  test_support::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  std::vector<pid_t> seen_pids_;
};

// The job writes the pid of a `sleep` that has left the job's session and
// been re-parented (setsid -f forks, and its parent exits at once).
constexpr char kEscapee[] = "setsid -f sh -c 'echo $$ > escaped.pid; exec sleep 1000'; ";

TEST(ExitInfoTest, Describe) {
  EXPECT_EQ((ExitInfo{3, 0}).Describe(), "exit code 3");
  EXPECT_EQ((ExitInfo{137, 9}).Describe(), "killed by signal 9 (Killed)");
}

TEST_F(JobProcessTest, ExitCodesPropagate) {
  EXPECT_EQ(Run("exit 0").exit.exit_code, 0);
  Result three = Run("exit 3");
  EXPECT_EQ(three.exit.exit_code, 3);
  EXPECT_EQ(three.exit.signal, 0);
}

TEST_F(JobProcessTest, DeathBySignalIsReportedAsSuch) {
  Result killed = Run("kill -KILL $$");
  EXPECT_EQ(killed.exit.exit_code, 128 + SIGKILL);
  EXPECT_EQ(killed.exit.signal, SIGKILL);
  Result termed = Run("kill -TERM $$");
  EXPECT_EQ(termed.exit.exit_code, 128 + SIGTERM);
  EXPECT_EQ(termed.exit.signal, SIGTERM);
}

TEST_F(JobProcessTest, StdoutAndStderrArriveInOrderOnOnePipe) {
  Result r = Run("echo a; echo b >&2; echo c");
  EXPECT_EQ(r.output, "a\nb\nc\n");
  EXPECT_EQ(r.exit.exit_code, 0);
}

TEST_F(JobProcessTest, LargeOutputArrivesWhole) {
  Result r = Run("head -c 3000000 /dev/zero");
  EXPECT_EQ(r.output.size(), 3000000u);
}

TEST_F(JobProcessTest, ExecFailureGives127AndAMessage) {
  JobSpawnOptions options = Shell("");
  options.argv = {"no-such-command-for-yard", "x"};
  auto job = Start(options);
  ASSERT_TRUE(job);
  Result r = RunToEnd(*job);
  EXPECT_EQ(r.exit.exit_code, 127);
  EXPECT_EQ(r.output, "yard: cannot run 'no-such-command-for-yard': No such file or directory\n");
}

TEST_F(JobProcessTest, EnvAndCwdAreApplied) {
  JobSpawnOptions options = Shell("echo \"[$FOO][${YARD_TEST_LEAK-unset}]\"; pwd -P");
  options.env["FOO"] = "bar baz";
  setenv("YARD_TEST_LEAK", "leaked", 1);  // the agent's own: must not reach the job
  auto job = Start(options);
  ASSERT_TRUE(job);
  Result r = RunToEnd(*job);
  EXPECT_EQ(r.output, "[bar baz][unset]\n" + fs::canonical(dir_).string() + "\n");
}

TEST_F(JobProcessTest, CommandIsLookedUpOnTheJobsPath) {
  fs::create_directory(dir_ / "bin");
  std::ofstream(dir_ / "bin" / "yard-test-tool") << "#!/bin/sh\necho tool ran\n";
  fs::permissions(dir_ / "bin" / "yard-test-tool", fs::perms::owner_all);
  JobSpawnOptions options = Shell("");
  options.argv = {"yard-test-tool"};
  options.env["PATH"] = (dir_ / "bin").string() + ":/usr/bin:/bin";
  auto job = Start(options);
  ASSERT_TRUE(job);
  EXPECT_EQ(RunToEnd(*job).output, "tool ran\n");
}

TEST_F(JobProcessTest, BadStartIsAnError) {
  JobSpawnOptions missing_cwd = Shell("true");
  missing_cwd.cwd = (dir_ / "nope").string();
  EXPECT_FALSE(JobProcess::Start(missing_cwd).ok());
  JobSpawnOptions no_command = Shell("true");
  no_command.argv.clear();
  EXPECT_EQ(JobProcess::Start(no_command).status().code(), Code::kInvalidArgument);
  JobSpawnOptions missing_shim = Shell("true");
  missing_shim.shim_executable = (dir_ / "no-yard").string();
  EXPECT_EQ(JobProcess::Start(missing_shim).status().code(), Code::kNotFound);
}

TEST_F(JobProcessTest, ShimRejectsBadUsage) {
  char shim[] = "shim", grace[] = "--grace-ms", bad[] = "soon", dashes[] = "--", cmd[] = "true";
  char* no_separator[] = {shim, cmd, nullptr};
  EXPECT_EQ(RunShim(2, no_separator), 2);
  char* bad_grace[] = {shim, grace, bad, dashes, cmd, nullptr};
  EXPECT_EQ(RunShim(5, bad_grace), 2);
  char* no_command[] = {shim, dashes, nullptr};
  EXPECT_EQ(RunShim(2, no_command), 2);
}

TEST_F(JobProcessTest, ListDescendantsPutsChildrenFirst) {
  auto job = Start(Shell("sleep 1000 & sleep 1000 & echo ready; wait"));
  ASSERT_TRUE(job);
  std::string out;
  ASSERT_TRUE(ReadUntil(*job, &out, "ready"));
  std::vector<pid_t> tree = ListDescendants(job->pid());
  ASSERT_EQ(tree.size(), 3u);
  std::optional<Stat> command = ReadStat(tree[0]);
  ASSERT_TRUE(command);
  EXPECT_EQ(command->ppid, job->pid());
  EXPECT_EQ(command->pgid, tree[0]) << "the command leads its own process group";
  for (size_t i = 1; i < tree.size(); ++i) {
    std::optional<Stat> child = ReadStat(tree[i]);
    ASSERT_TRUE(child);
    EXPECT_EQ(child->ppid, tree[0]);
  }
}

TEST_F(JobProcessTest, TerminateEndsTheWholeTree) {
  JobSpawnOptions options =
      Shell(std::string(kEscapee) + "sh -c 'echo $$ > child.pid; exec sleep 1000' & wait");
  options.kill_grace = 10s;
  auto job = Start(options);
  ASSERT_TRUE(job);
  pid_t escaped = AwaitPidFile("escaped.pid");
  pid_t child = AwaitPidFile("child.pid");
  ASSERT_TRUE(escaped > 0 && child > 0);
  ASSERT_EQ(kill(escaped, 0), 0);
  ASSERT_EQ(kill(child, 0), 0);
  auto start = Clock::now();
  job->Terminate();
  Result r = RunToEnd(*job);
  // Everyone obeyed SIGTERM, so the 10 s grace was not waited out.
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_EQ(r.exit.signal, SIGTERM);
  EXPECT_TRUE(WaitForProcesses([&] { return Gone(escaped); }));
  EXPECT_TRUE(WaitForProcesses([&] { return Gone(child); }));
  job->Terminate();  // after exit: harmless
}

TEST_F(JobProcessTest, CancelledCommandReportsItsOwnStatus) {
  auto job =
      Start(Shell("trap 'echo term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"));
  ASSERT_TRUE(job);
  std::string out;
  ASSERT_TRUE(ReadUntil(*job, &out, "ready\n"));
  job->Terminate();
  Result r = RunToEnd(*job);
  // (sh also reports its `sleep` "Terminated" by the same SIGTERM.)
  EXPECT_TRUE((out + r.output).ends_with("term\n")) << out + r.output;
  EXPECT_EQ(r.exit.exit_code, 7);
}

TEST_F(JobProcessTest, LeftoversAreEndedWhenTheCommandExits) {
  auto job = Start(
      Shell(std::string(kEscapee) + "while [ ! -s escaped.pid ]; do sleep 0.01; done; exit 4"));
  ASSERT_TRUE(job);
  Result r = RunToEnd(*job);
  EXPECT_EQ(r.exit.exit_code, 4);
  pid_t escaped = AwaitPidFile("escaped.pid");
  ASSERT_GT(escaped, 0);
  EXPECT_TRUE(WaitForProcesses([&] { return Gone(escaped); }));
}

TEST_F(JobProcessTest, CommandIgnoringTermIsKilledAfterTheGrace) {
  JobSpawnOptions options = Shell("trap '' TERM; echo ready; while :; do sleep 0.05; done");
  options.kill_grace = 200ms;
  auto job = Start(options);
  ASSERT_TRUE(job);
  std::string out;
  ASSERT_TRUE(ReadUntil(*job, &out, "ready\n"));
  auto start = Clock::now();
  job->Terminate();
  Result r = RunToEnd(*job);
  EXPECT_GE(Clock::now() - start, 200ms);
  EXPECT_LT(Clock::now() - start, 3s);
  EXPECT_EQ(r.exit.signal, SIGKILL);
  EXPECT_NE(r.output.find("sending SIGKILL"), std::string::npos) << r.output;
}

TEST_F(JobProcessTest, LeftoverIgnoringTermIsKilledAfterTheGrace) {
  JobSpawnOptions options = Shell(
      "setsid -f sh -c \"trap '' TERM; echo \\$\\$ > stubborn.pid; while :; do sleep 0.05; done\"; "
      "while [ ! -s stubborn.pid ]; do sleep 0.01; done");
  options.kill_grace = 200ms;
  auto job = Start(options);
  ASSERT_TRUE(job);
  auto start = Clock::now();
  Result r = RunToEnd(*job);
  EXPECT_GE(Clock::now() - start, 200ms);
  EXPECT_EQ(r.exit.exit_code, 0);
  pid_t stubborn = AwaitPidFile("stubborn.pid");
  ASSERT_GT(stubborn, 0);
  EXPECT_TRUE(WaitForProcesses([&] { return Gone(stubborn); }));
}

TEST_F(JobProcessTest, DestructorKillsTheTree) {
  auto job = Start(Shell(std::string(kEscapee) + "sleep 1000"));
  ASSERT_TRUE(job);
  pid_t escaped = AwaitPidFile("escaped.pid");
  pid_t shim = job->pid();
  ASSERT_GT(escaped, 0);
  job.reset();
  EXPECT_TRUE(Gone(shim));  // reaped by the destructor
  EXPECT_TRUE(WaitForProcesses([&] { return Dead(escaped); }));
}

TEST_F(JobProcessTest, AgentDeathEndsTheJob) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t agent = fork();
  ASSERT_GE(agent, 0);
  if (agent == 0) {  // a stand-in agent that dies without cleaning up
    JobSpawnOptions options = Shell(std::string(kEscapee) + "sleep 1000");
    options.kill_grace = 200ms;
    auto job = JobProcess::Start(options);
    if (!job.ok() || AwaitPidFile("escaped.pid") <= 0) _exit(1);
    pid_t shim = (*job)->pid();
    (void)!write(fds[1], &shim, sizeof shim);
    _exit(0);
  }
  close(fds[1]);
  pid_t shim = 0;
  ASSERT_EQ(read(fds[0], &shim, sizeof shim), static_cast<ssize_t>(sizeof shim));
  close(fds[0]);
  int status;
  ASSERT_EQ(waitpid(agent, &status, 0), agent);
  pid_t escaped = AwaitPidFile("escaped.pid");
  EXPECT_TRUE(WaitForProcesses([&] { return Dead(shim); }));
  EXPECT_TRUE(WaitForProcesses([&] { return Dead(escaped); }));
}

// The file a running process executes, as the kernel sees it.
std::string ExecutableOf(pid_t pid) {
  std::error_code ec;
  return fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec).filename().string();
}

TEST_F(JobProcessTest, TheSmallShimBesideYardRunsTheJob) {
  ASSERT_TRUE(fs::exists(fs::path(YARD_BINARY).parent_path() / kShimName))
      << "yard-shim is built beside yard";
  auto job = Start(Shell("echo ready; exec sleep 1000"));
  ASSERT_TRUE(job);
  std::string out;
  ASSERT_TRUE(ReadUntil(*job, &out, "ready\n"));
  EXPECT_EQ(ExecutableOf(job->pid()), kShimName);
  job->Terminate();
  EXPECT_EQ(RunToEnd(*job).exit.signal, SIGTERM);
}

// Tests that ship only `yard`, and hosts with an old copy, still run jobs:
// through `yard shim`, which keeps every guarantee of the small shim.
TEST_F(JobProcessTest, WithoutTheSmallShimYardShimEndsTheTree) {
  fs::create_symlink(YARD_BINARY, dir_ / "yard");
  JobSpawnOptions options =
      Shell(std::string(kEscapee) + "while [ ! -s escaped.pid ]; do sleep 0.01; done; exit 4");
  options.shim_executable = (dir_ / "yard").string();
  auto job = Start(options);
  ASSERT_TRUE(job);
  EXPECT_EQ(ExecutableOf(job->pid()), "yard");
  Result r = RunToEnd(*job);
  EXPECT_EQ(r.exit.exit_code, 4);
  pid_t escaped = AwaitPidFile("escaped.pid");
  ASSERT_GT(escaped, 0);
  EXPECT_TRUE(WaitForProcesses([&] { return Gone(escaped); }));
}

TEST_F(JobProcessTest, TheSmallShimCanBeNamedDirectly) {
  JobSpawnOptions options = Shell("exit 5");
  options.shim_executable = (fs::path(YARD_BINARY).parent_path() / kShimName).string();
  auto job = Start(options);
  ASSERT_TRUE(job);
  EXPECT_EQ(RunToEnd(*job).exit.exit_code, 5);
}

// ---- shims forked by the agent's zygote (shim_zygote.h) ----

class ZygoteJobTest : public JobProcessTest {
 protected:
  JobSpawnOptions Forked(const std::string& script) {
    JobSpawnOptions options = Shell(script);
    options.zygote = &zygote_;
    return options;
  }
  ShimZygote zygote_{YARD_BINARY};
};

TEST_F(ZygoteJobTest, TheShimIsOurChildAndTheJobsBytesAndStatusAreExact) {
  setenv("YARD_TEST_AGENT_SECRET", "agent-only", 1);  // must reach neither job nor shim
  auto job =
      Start(Forked("printf 'a\\0b\\n'; echo err >&2; echo \"[${YARD_TEST_AGENT_SECRET-unset}]\"; "
                   "pwd -P; exit 3"));
  ASSERT_TRUE(job);
  pid_t shim = job->pid();
  std::optional<Stat> stat = ReadStat(shim);
  ASSERT_TRUE(stat);
  EXPECT_EQ(stat->ppid, getpid()) << "forked with CLONE_PARENT: ours to wait for";
  EXPECT_NE(shim, zygote_.zygote_pid());
  std::ifstream environ("/proc/" + std::to_string(shim) + "/environ");
  std::string env((std::istreambuf_iterator<char>(environ)), std::istreambuf_iterator<char>());
  EXPECT_EQ(env.find("agent-only"), std::string::npos);
  Result r = RunToEnd(*job);
  EXPECT_EQ(r.output,
            std::string("a\0b\nerr\n[unset]\n", 16) + fs::canonical(dir_).string() + "\n");
  EXPECT_EQ(r.exit.exit_code, 3);
  EXPECT_EQ(r.exit.signal, 0);
  unsetenv("YARD_TEST_AGENT_SECRET");
}

TEST_F(ZygoteJobTest, DeathBySignalAndExecFailureReadAsWithASpawnedShim) {
  auto job = Start(Forked("kill -KILL $$"));
  ASSERT_TRUE(job);
  Result killed = RunToEnd(*job);
  EXPECT_EQ(killed.exit.signal, SIGKILL);
  EXPECT_EQ(killed.exit.exit_code, 128 + SIGKILL);
  JobSpawnOptions missing = Forked("");
  missing.argv = {"no-such-command-for-yard"};
  job = Start(missing);
  ASSERT_TRUE(job);
  Result r = RunToEnd(*job);
  EXPECT_EQ(r.exit.exit_code, 127);
  EXPECT_EQ(r.output, "yard: cannot run 'no-such-command-for-yard': No such file or directory\n");
}

TEST_F(ZygoteJobTest, AZygoteThatDiedIsReplacedAndTheNextJobRunsOnce) {
  auto job = Start(Forked("exit 0"));
  ASSERT_TRUE(job);
  EXPECT_EQ(RunToEnd(*job).exit.exit_code, 0);
  pid_t first = zygote_.zygote_pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_TRUE(WaitForProcesses([&] { return Dead(first); }));
  job = Start(Forked("echo ran >> runs; echo ok"));
  ASSERT_TRUE(job);
  EXPECT_EQ(RunToEnd(*job).output, "ok\n");
  std::ifstream runs(dir_ / "runs");
  std::string all((std::istreambuf_iterator<char>(runs)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all, "ran\n");
  pid_t second = zygote_.zygote_pid();
  EXPECT_GT(second, 0);
  EXPECT_NE(second, first);
  EXPECT_FALSE(Dead(second));
}

TEST_F(ZygoteJobTest, ACancelRightAfterTheForkEndsTheJobAndLeavesNothing) {
  // Terminate as soon as Start returns: the shim may not have read its go
  // yet, or be setting up; whatever it reached, it ends and nothing stays.
  for (int i = 0; i < 20; ++i) {
    fs::remove(dir_ / "escaped.pid");
    auto job = Start(Forked(std::string(kEscapee) + "sleep 1000"));
    ASSERT_TRUE(job);
    job->Terminate();
    Result r = RunToEnd(*job);
    EXPECT_NE(r.exit.exit_code, 0) << r.output;
    std::ifstream in(dir_ / "escaped.pid");
    pid_t escaped = 0;
    if (in >> escaped && escaped > 0) {
      seen_pids_.push_back(escaped);
      EXPECT_TRUE(WaitForProcesses([&] { return Dead(escaped); })) << escaped;
    }
  }
}

TEST_F(ZygoteJobTest, AMissingFolderIsAnErrorAndTheZygoteServesOn) {
  JobSpawnOptions missing_cwd = Forked("true");
  missing_cwd.cwd = (dir_ / "nope").string();
  StatusOr<std::unique_ptr<JobProcess>> failed = JobProcess::Start(missing_cwd);
  EXPECT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("nope"), std::string::npos)
      << failed.status().ToString();
  pid_t zygote = zygote_.zygote_pid();
  auto job = Start(Forked("exit 6"));
  ASSERT_TRUE(job);
  EXPECT_EQ(RunToEnd(*job).exit.exit_code, 6);
  EXPECT_EQ(zygote_.zygote_pid(), zygote);
}

TEST_F(ZygoteJobTest, AShimWithoutAZygoteIsSpawnedPerJob) {
  // An older yard-shim (no --zygote) beside `yard`: it ends at once; jobs
  // still run, each through a spawned shim, and no zygote is tried again.
  fs::create_directory(dir_ / "bin");
  fs::create_symlink(YARD_BINARY, dir_ / "bin" / "yard");
  std::ofstream(dir_ / "bin" / kShimName)
      << "#!/bin/sh\n"
      << "[ \"$1\" = --zygote ] && exit 2\n"
      << "exec " << fs::path(YARD_BINARY).parent_path() / kShimName << " \"$@\"\n";
  fs::permissions(dir_ / "bin" / kShimName, fs::perms::owner_all);
  ShimZygote old((dir_ / "bin" / "yard").string());
  for (int i = 0; i < 3; ++i) {
    JobSpawnOptions options = Shell("exit 4");
    options.shim_executable = (dir_ / "bin" / "yard").string();
    options.zygote = &old;
    auto job = Start(options);
    ASSERT_TRUE(job);
    EXPECT_EQ(RunToEnd(*job).exit.exit_code, 4);
    EXPECT_EQ(old.zygote_pid(), -1);
  }
}

// In JobProcessTest, not ZygoteJobTest: fork() must not copy a process
// whose other threads may hold a lock (the fixture's zygote owner thread,
// starting up, can hold ASan's allocator lock; the child then hung for ever
// in its own zygote's thread start). Only the child makes a zygote.
TEST_F(JobProcessTest, AgentDeathEndsTheZygoteAndTheJobItForked) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t agent = fork();
  ASSERT_GE(agent, 0);
  if (agent == 0) {                              // a stand-in agent that dies without cleaning up
    auto* zygote = new ShimZygote(YARD_BINARY);  // never destroyed: the agent just dies
    JobSpawnOptions options = Shell(std::string(kEscapee) + "sleep 1000");
    options.zygote = zygote;
    options.kill_grace = 200ms;
    auto job = JobProcess::Start(options);
    if (!job.ok() || AwaitPidFile("escaped.pid") <= 0) _exit(1);
    pid_t pids[2] = {(*job)->pid(), zygote->zygote_pid()};
    (void)!write(fds[1], pids, sizeof pids);
    _exit(0);
  }
  close(fds[1]);
  pid_t pids[2] = {0, 0};
  ASSERT_EQ(read(fds[0], pids, sizeof pids), static_cast<ssize_t>(sizeof pids));
  close(fds[0]);
  int status;
  ASSERT_EQ(waitpid(agent, &status, 0), agent);
  pid_t escaped = AwaitPidFile("escaped.pid");
  ASSERT_GT(pids[0], 0);
  ASSERT_GT(pids[1], 0) << "the job was forked by the zygote";
  seen_pids_.insert(seen_pids_.end(), {pids[0], pids[1]});
  EXPECT_TRUE(WaitForProcesses([&] { return Dead(pids[0]); })) << "the shim";
  EXPECT_TRUE(WaitForProcesses([&] { return Dead(escaped); })) << "the job's escapee";
  EXPECT_TRUE(WaitForProcesses([&] { return Dead(pids[1]); })) << "the zygote";
}

// ---- confined jobs (sandbox.h): the same guarantees through bwrap ----
// Each test runs three times: with a bwrap per job, entering a sandbox
// template made once per test (sandbox_template.h; needs root), and the
// same with the shim forked by a zygote (shim_zygote.h), as the agent does.

enum SandboxWay { kBwrapPerJob, kEnteredTemplate, kEnteredTemplateByZygote };

class SandboxedJobTest : public JobProcessTest, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    JobProcessTest::SetUp();
    if (GetParam() != kBwrapPerJob && geteuid() != 0) GTEST_SKIP() << "sandbox templates need root";
  }

  // The test's folder is the job's; `secret/` beside it must stay unseen.
  // $HOME is a private tmpfs.
  JobSpawnOptions Confined(const std::string& script) {
    JobSpawnOptions options = Shell(script);
    fs::create_directories(dir_ / "job");
    fs::create_directories(dir_ / "secret");
    std::ofstream(dir_ / "secret" / "token") << "yit_hidden\n";
    options.cwd = (dir_ / "job").string();
    options.env["HOME"] = (dir_ / "home").string();
    SandboxSpec spec;
    spec.writable = options.cwd;
    spec.readable = {fs::path(YARD_BINARY).parent_path().string()};
    spec.hidden = {(dir_ / "secret").string()};
    StatusOr<std::vector<std::string>> prefix = SandboxPrefix(spec, options.env);
    EXPECT_TRUE(prefix.ok()) << prefix.status().ToString();
    if (prefix.ok()) options.sandbox = *prefix;
    if (GetParam() == kBwrapPerJob || !prefix.ok()) return options;
    if (GetParam() == kEnteredTemplateByZygote) options.zygote = &zygote_;
    if (!template_) {
      StatusOr<std::unique_ptr<SandboxTemplate>> made = SandboxTemplate::Make(*prefix, YARD_BINARY);
      EXPECT_TRUE(made.ok()) << made.status().ToString();
      if (made.ok()) template_ = std::move(made).value();
    }
    if (template_) {
      options.sandbox_ns_fd = template_->mount_ns_fd();
      options.sandbox_fresh = template_->fresh();
    }
    return options;
  }

  std::unique_ptr<SandboxTemplate> template_;  // the parameter's: one per test
  ShimZygote zygote_{YARD_BINARY};

  // Host pids of the job's processes whose command line is `cmdline`,
  // once there are `n`.
  std::vector<pid_t> AwaitProcesses(JobProcess& job, const std::string& cmdline, size_t n) {
    std::vector<pid_t> found;
    WaitForProcesses([&] {
      found.clear();
      for (pid_t pid : ListDescendants(job.pid())) {
        std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
        std::string args((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::replace(args.begin(), args.end(), '\0', ' ');
        if (args == cmdline + " ") found.push_back(pid);
      }
      return found.size() >= n;
    });
    seen_pids_.insert(seen_pids_.end(), found.begin(), found.end());
    return found;
  }
};

TEST_P(SandboxedJobTest, ExitCodesSignalsAndExecFailuresReadAsUnconfined) {
  auto job = Start(Confined("echo in; exit 3"));
  ASSERT_TRUE(job);
  Result r = RunToEnd(*job);
  EXPECT_EQ(r.output, "in\n");
  EXPECT_EQ(r.exit.exit_code, 3);
  EXPECT_EQ(r.exit.signal, 0);
  job = Start(Confined("kill -9 $$"));
  ASSERT_TRUE(job);
  EXPECT_EQ(RunToEnd(*job).exit.signal, SIGKILL);
  JobSpawnOptions missing = Confined("");
  missing.argv = {"no-such-command-for-yard"};
  job = Start(missing);
  ASSERT_TRUE(job);
  r = RunToEnd(*job);
  EXPECT_EQ(r.exit.exit_code, 127);
  EXPECT_EQ(r.output, "yard: cannot run 'no-such-command-for-yard': No such file or directory\n");
}

TEST_P(SandboxedJobTest, TheJobSeesItsFolderButNotTheHiddenOneNorOtherProcesses) {
  auto job = Start(
      Confined("echo out > here.txt; cat ../secret/token " + (dir_ / "secret/token").string() +
               " 2>/dev/null || echo unreadable; echo procs $(ls /proc | grep -c '^[0-9]')"));
  ASSERT_TRUE(job);
  Result r = RunToEnd(*job);
  EXPECT_EQ(r.output.rfind("unreadable\nprocs ", 0), 0u) << r.output;
  EXPECT_EQ(r.output.find("yit_hidden"), std::string::npos) << r.output;
  // bwrap's init, sh, and ls/grep of the pipeline: a handful, not the host's.
  int procs = std::atoi(r.output.substr(r.output.find("procs ") + 6).c_str());
  EXPECT_GT(procs, 0);
  EXPECT_LE(procs, 5) << r.output;
  std::ifstream written(dir_ / "job" / "here.txt");
  std::string line;
  EXPECT_TRUE(std::getline(written, line) && line == "out");
}

TEST_P(SandboxedJobTest, TerminateEndsTheWholeTreeAndTheCommandReportsItsOwnStatus) {
  JobSpawnOptions options = Confined(std::string(kEscapee) +
                                     "sh -c 'exec sleep 1000' & trap 'echo term; exit 7' TERM; "
                                     "echo ready; while :; do sleep 0.05; done");
  options.kill_grace = 10s;
  auto job = Start(options);
  ASSERT_TRUE(job);
  std::string out;
  ASSERT_TRUE(ReadUntil(*job, &out, "ready\n"));
  std::vector<pid_t> sleeps = AwaitProcesses(*job, "sleep 1000", 2);  // the escaped one, the child
  ASSERT_EQ(sleeps.size(), 2u);
  auto start = Clock::now();
  job->Terminate();
  Result r = RunToEnd(*job);
  EXPECT_LT(Clock::now() - start, 5s) << "everyone obeyed SIGTERM: no grace waited out";
  EXPECT_TRUE((out + r.output).find("term\n") != std::string::npos) << out + r.output;
  EXPECT_EQ(r.exit.exit_code, 7) << "the command's own status, not bwrap's";
  for (pid_t pid : sleeps) EXPECT_TRUE(WaitForProcesses([&] { return Dead(pid); })) << pid;
}

TEST_P(SandboxedJobTest, LeftoversAndTermIgnorersAreEnded) {
  JobSpawnOptions options = Confined(
      "sh -c \"trap '' TERM; exec sleep 1000\" & "
      "sh -c 'echo started; exec sleep 1000' & sleep 0.3; exit 4");
  options.kill_grace = 300ms;
  auto job = Start(options);
  ASSERT_TRUE(job);
  std::vector<pid_t> sleeps = AwaitProcesses(*job, "sleep 1000", 2);
  ASSERT_EQ(sleeps.size(), 2u);
  Result r = RunToEnd(*job);
  EXPECT_EQ(r.exit.exit_code, 4);
  for (pid_t pid : sleeps) EXPECT_TRUE(WaitForProcesses([&] { return Dead(pid); })) << pid;
}

TEST_P(SandboxedJobTest, ASignalMeantForTheJobReachesTheConfinedCommand) {
  // The spot interruption notice's SIGUSR1: bwrap passes none on.
  auto job =
      Start(Confined("trap 'echo usr1; exit 0' USR1; echo ready; while :; do sleep 0.05; done"));
  ASSERT_TRUE(job);
  std::string out;
  ASSERT_TRUE(ReadUntil(*job, &out, "ready\n"));
  ASSERT_TRUE(job->Signal(SIGUSR1).ok());
  Result r = RunToEnd(*job);
  // (Its group's `sleep` gets it too: sh may say "User defined signal 1".)
  EXPECT_NE((out + r.output).find("usr1\n"), std::string::npos) << out + r.output;
  EXPECT_EQ(r.exit.exit_code, 0);
  EXPECT_EQ(r.exit.signal, 0);
}

TEST_P(SandboxedJobTest, AJobHasNoCapabilityEvenAsRoot) {
  auto job = Start(
      Confined("grep -E '^Cap(Eff|Prm|Bnd)|^NoNewPrivs' /proc/self/status; "
               "mkdir -p m; mount -t tmpfs none m 2>/dev/null && echo mounted || echo refused"));
  ASSERT_TRUE(job);
  Result r = RunToEnd(*job);
  // (bwrap leaves the bounding set; no_new_privs keeps exec from using it.)
  EXPECT_NE(r.output.find("CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("NoNewPrivs:\t1\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("refused\n"), std::string::npos) << r.output;
}

TEST_P(SandboxedJobTest, NothingAJobLeavesOutsideItsFolderReachesTheNextJob) {
  // What an earlier job of the same sandbox wrote to /tmp, /var/tmp, $HOME,
  // /dev/shm or the hidden folder's cover is gone for the next; its folder
  // stays (the instance's folders are shared by design).
  const std::string places = "/tmp /var/tmp \"$HOME\" /dev/shm " + (dir_ / "secret").string();
  auto job = Start(Confined("for d in " + places +
                            "; do echo left > \"$d/left\" || echo \"unwritable $d\"; done; "
                            "echo kept > kept; echo root 2>/dev/null > /left; echo done"));
  ASSERT_TRUE(job);
  Result first = RunToEnd(*job);
  EXPECT_EQ(first.output, "done\n");
  job = Start(Confined("for d in " + places +
                       " /; do ls -A \"$d\" | grep -x left; done; cat kept; "
                       "ls -A /tmp"));
  ASSERT_TRUE(job);
  Result second = RunToEnd(*job);
  // /tmp holds only the ways to the folders the sandbox binds from below it:
  // the job's (dir_) and the build's (when the tree itself is under /tmp).
  std::set<std::string> ways;
  for (const fs::path& bound : {dir_, fs::path(YARD_BINARY).parent_path()}) {
    std::string path = bound.string();
    if (path.rfind("/tmp/", 0) == 0) ways.insert(path.substr(5, path.find('/', 5) - 5));
  }
  std::string expected = "kept\n";
  for (const std::string& way : ways) expected += way + "\n";
  EXPECT_EQ(second.output, expected) << second.output;
}

TEST_P(SandboxedJobTest, JobsOfOneTemplateRunSideBySideApart) {
  // Two at once: each its own /tmp and its own processes only.
  auto a =
      Start(Confined("echo a > /tmp/mine; echo ready; while [ ! -e go ]; do sleep 0.02; done; "
                     "cat /tmp/mine; ls /proc | grep -c '^[0-9]'"));
  ASSERT_TRUE(a);
  std::string out;
  ASSERT_TRUE(ReadUntil(*a, &out, "ready\n"));
  auto b = Start(Confined("cat /tmp/mine 2>/dev/null || echo none; echo b > /tmp/mine; touch go"));
  ASSERT_TRUE(b);
  EXPECT_EQ(RunToEnd(*b).output, "none\n");
  Result r = RunToEnd(*a);
  EXPECT_EQ((out + r.output).substr(0, 8), "ready\na\n") << out + r.output;
  EXPECT_LE(std::atoi((out + r.output).substr(8).c_str()), 5) << out + r.output;
}

TEST_F(JobProcessTest, TheShimRefusesToEnterAnythingButAnotherMountNamespace) {
  // The agent's own mount namespace (or any other descriptor) would run the
  // job unconfined: the shim must not start the command at all.
  int own = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
  int file = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(own, 0);
  ASSERT_GE(file, 0);
  for (int fd : {own, file}) {
    JobSpawnOptions options = Shell("touch ran");
    options.sandbox_ns_fd = fd;
    options.sandbox_fresh = {"/tmp"};
    auto job = Start(options);
    ASSERT_TRUE(job);
    Result r = RunToEnd(*job);
    EXPECT_EQ(r.exit.exit_code, 125) << r.output;
    EXPECT_NE(r.output.find("is not a sandbox's mount namespace"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(dir_ / "ran"));
  }
  close(own);
  close(file);
}

std::string SandboxWayName(const ::testing::TestParamInfo<int>& info) {
  switch (info.param) {
    case kBwrapPerJob:
      return "BwrapPerJob";
    case kEnteredTemplate:
      return "EnteredTemplate";
    default:
      return "EnteredTemplateByZygote";
  }
}

INSTANTIATE_TEST_SUITE_P(PerJobAndTemplate, SandboxedJobTest,
                         ::testing::Values(kBwrapPerJob, kEnteredTemplate,
                                           kEnteredTemplateByZygote),
                         SandboxWayName);

}  // namespace
}  // namespace yard
