// WarmPool / WarmRunner against a fake trainyard/runner.py that speaks the
// warm protocol without TensorFlow: it writes the ready file at once, and
// as a job prints what a test needs to see (its folder, a late-bound
// variable, whether stdin is /dev/null) and exits with the code it is given.
#include "agent/warm_runner.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "common/process.h"
#include "common/temp_dir_testing.h"
#include "common/wait_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kFakeRunner = R"PY(import json, os, sys, time

def main(args):
    st = os.fstat(0)
    null = os.stat(os.devnull)
    print(f"job={os.environ.get('YARD_JOB_ID')} cwd={os.getcwd()} args={args} "
          f"stdin_null={(st.st_dev, st.st_ino) == (null.st_dev, null.st_ino)} pid={os.getpid()}",
          flush=True)
    if args and args[0] == "sleep":
        time.sleep(60)
    return int(os.environ.get("FAKE_EXIT", "0"))

if __name__ == "__main__":
    if sys.argv[1:2] == ["--warm"]:
        with open(sys.argv[2] + ".tmp", "w") as f:  # atomically, as the real runner
            json.dump({"framework": "fake", "import_s": 0.0, "ready_at": time.time()}, f)
        os.replace(sys.argv[2] + ".tmp", sys.argv[2])
        line = sys.stdin.readline()
        if not line.strip():
            sys.exit(0)
        req = json.loads(line)
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["cwd"])
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, 0)
        sys.exit(main(req["argv"][3:]))
    sys.exit(main(sys.argv[1:]))
)PY";

using test_support::WaitFor;

// Gone or a zombie (the state letter after the name in /proc/<pid>/stat).
bool Dead(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return true;
  return line.substr(line.rfind(')') + 2, 1) == "Z";
}

struct Result {
  std::string output;
  ExitInfo exit;
};

Result RunToEnd(JobProcess& job) {
  Result result;
  auto deadline = Clock::now() + 20s;
  while (job.ReadAvailable(&result.output) && Clock::now() < deadline) {
    pollfd p{job.output_fd(), POLLIN, 0};
    poll(&p, 1, 100);
  }
  result.exit = job.Wait();
  return result;
}

class WarmRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override { pool_ = std::make_unique<WarmPool>((root_ / "warm").string()); }
  void TearDown() override { pool_.reset(); }

  // A job folder holding the fake runner (`runner` as its text).
  JobSpawnOptions Job(const std::string& name, const std::string& runner = kFakeRunner) {
    fs::path work = root_ / name;
    fs::create_directories(work / "trainyard");
    std::ofstream(work / "trainyard" / "__init__.py") << "";
    std::ofstream(work / "trainyard" / "runner.py") << runner;
    JobSpawnOptions o;
    o.argv = {"python3", "-m", "trainyard.runner", "fit_spec.json"};
    o.env = EnvMapFrom(CurrentEnvironment());
    o.env["YARD_JOB_ID"] = name;
    o.env["PYTHONUNBUFFERED"] = "1";
    o.cwd = work.string();
    o.kill_grace = 2000ms;
    o.shim_executable = YARD_BINARY;
    return o;
  }

  // Prewarms from `previous` and waits until the warm runner is ready.
  pid_t Prewarm(const JobSpawnOptions& previous) {
    pool_->Prewarm(previous);
    EXPECT_TRUE(pool_->WaitIdle(10s));
    pid_t pid = pool_->warm_pid();
    EXPECT_GT(pid, 0);
    EXPECT_TRUE(WaitFor([&] {
      for (auto& e : fs::directory_iterator(root_ / "warm"))
        if (e.path().extension() == ".json" && e.path().filename().string().rfind("ready-", 0) == 0)
          return true;
      return false;
    }));
    return pid;
  }

  test_support::TempDir tmp_;
  fs::path root_ = tmp_.path();
  std::unique_ptr<WarmPool> pool_;
};

TEST(WarmEligibility, OnlyTheShippedRunnerInAPlainFolder) {
  EXPECT_TRUE(IsRunnerCommand({"python3", "-m", "trainyard.runner", "fit_spec.json"}));
  EXPECT_TRUE(IsRunnerCommand({"/usr/bin/python", "-m", "trainyard.runner", "s.json"}));
  EXPECT_FALSE(IsRunnerCommand({"python3", "train.py"}));
  EXPECT_FALSE(IsRunnerCommand({"python3", "-m", "trainyard.runner", "--warm"}));
  EXPECT_FALSE(IsRunnerCommand({"yard-train", "--model", "model.pt", "x"}));
}

TEST(WarmEligibility, LateBoundVariablesDoNotCount) {
  EnvMap a = {{"PATH", "/bin"}, {"YARD_JOB_ID", "j-1"}, {"TRAINYARD_LOGICAL_CPUS", "2"}};
  EnvMap b = {{"PATH", "/bin"}, {"YARD_JOB_ID", "j-2"}, {"CUDA_VISIBLE_DEVICES", "0"}};
  EXPECT_EQ(EnvDifferences(WithoutLateBound(a), WithoutLateBound(b)),
            std::vector<std::string>{"CUDA_VISIBLE_DEVICES"});
}

TEST_F(WarmRunnerTest, ServesTheNextJobWithItsFolderEnvironmentAndExitCode) {
  pid_t warm = Prewarm(Job("j-1"));
  JobSpawnOptions next = Job("j-2");
  next.env["FAKE_EXIT"] = "3";
  std::string note;
  // FAKE_EXIT is not late-bound: the warm runner must refuse...
  EXPECT_EQ(pool_->Take(next, &note), nullptr);
  EXPECT_NE(note.find("cold start"), std::string::npos) << note;
  EXPECT_NE(note.find("FAKE_EXIT"), std::string::npos) << note;
  EXPECT_TRUE(WaitFor([&] { return Dead(warm); }));
  // ...and the next prewarm takes the job's environment.
  warm = Prewarm(next);
  JobSpawnOptions third = Job("j-3");
  third.env["FAKE_EXIT"] = "3";
  note.clear();
  std::unique_ptr<JobProcess> process = pool_->Take(third, &note);
  ASSERT_NE(process, nullptr) << note;
  EXPECT_EQ(note.rfind("yard: warm runner (tensorflow imported ", 0), 0u) << note;
  EXPECT_EQ(process->pid(), warm);
  Result r = RunToEnd(*process);
  EXPECT_EQ(r.exit.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("job=j-3 cwd=" + third.cwd + " args=['fit_spec.json'] stdin_null=True"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(pool_->warm_pid(), -1);  // single use
}

TEST_F(WarmRunnerTest, AJobRightBehindThePrewarmWaitsForTheSpawn) {
  pool_->Prewarm(Job("j-1"));
  std::string note;
  std::unique_ptr<JobProcess> process = pool_->Take(Job("j-2"), &note);
  ASSERT_NE(process, nullptr) << note;
  EXPECT_EQ(note.rfind("yard: warm runner (tensorflow ", 0), 0u) << note;
  Result r = RunToEnd(*process);
  EXPECT_EQ(r.exit.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("job=j-2 "), std::string::npos) << r.output;
}

TEST_F(WarmRunnerTest, AnotherRunnerVersionStartsCold) {
  pid_t warm = Prewarm(Job("j-1"));
  std::string note;
  EXPECT_EQ(pool_->Take(Job("j-2", std::string(kFakeRunner) + "# changed\n"), &note), nullptr);
  EXPECT_NE(note.find("another runner version"), std::string::npos) << note;
  EXPECT_TRUE(WaitFor([&] { return Dead(warm); }));
}

TEST_F(WarmRunnerTest, OwnEnvironmentStartsCold) {
  pid_t warm = Prewarm(Job("j-1"));
  JobSpawnOptions next = Job("j-2");
  std::ofstream(fs::path(next.cwd) / "requirements.txt") << "numpy\n";
  std::string note;
  EXPECT_EQ(pool_->Take(next, &note), nullptr);
  EXPECT_NE(note.find("own environment (requirements.txt)"), std::string::npos) << note;
  EXPECT_TRUE(WaitFor([&] { return Dead(warm); }));
}

TEST_F(WarmRunnerTest, OtherCommandsLeaveTheWarmRunnerAlone) {
  pid_t warm = Prewarm(Job("j-1"));
  JobSpawnOptions echo = Job("j-2");
  echo.argv = {"echo", "hi"};
  std::string note;
  EXPECT_EQ(pool_->Take(echo, &note), nullptr);
  EXPECT_EQ(note, "");
  EXPECT_EQ(pool_->warm_pid(), warm);
  EXPECT_FALSE(Dead(warm));
}

TEST_F(WarmRunnerTest, CancelEndsTheWarmServedJobLikeAColdOne) {
  Prewarm(Job("j-1"));
  JobSpawnOptions next = Job("j-2");
  next.argv[3] = "sleep";
  std::string note;
  std::unique_ptr<JobProcess> process = pool_->Take(next, &note);
  ASSERT_NE(process, nullptr) << note;
  std::string out;
  ASSERT_TRUE(WaitFor([&] {
    process->ReadAvailable(&out);
    return out.find("pid=") != std::string::npos;
  })) << out;
  pid_t python = std::stoi(out.substr(out.find("pid=") + 4));
  process->Terminate();
  Result r = RunToEnd(*process);
  EXPECT_EQ(r.exit.signal, SIGTERM) << r.exit.Describe();
  EXPECT_TRUE(Dead(python));
}

TEST_F(WarmRunnerTest, StoppingThePoolEndsTheWarmRunner) {
  pid_t warm = Prewarm(Job("j-1"));
  std::vector<pid_t> tree = ListDescendants(warm);
  ASSERT_FALSE(tree.empty());
  pool_.reset();
  EXPECT_TRUE(Dead(warm));
  for (pid_t p : tree) EXPECT_TRUE(WaitFor([&] { return Dead(p); })) << p;
}

TEST_F(WarmRunnerTest, ARunnerThatDiesWhileIdleIsDropped) {
  pid_t warm = Prewarm(Job("j-1"));
  for (pid_t p : ListDescendants(warm)) kill(p, SIGKILL);
  EXPECT_TRUE(WaitFor([&] { return pool_->warm_pid() == -1; }, 10s));
  std::string note;
  EXPECT_EQ(pool_->Take(Job("j-2"), &note), nullptr);
}

}  // namespace
}  // namespace yard
