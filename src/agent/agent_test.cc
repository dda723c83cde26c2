// End-to-end tests of the agent against the fake server: real jobs run
// through the `yard shim` of this build (YARD_BINARY).
#include "agent/agent.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/agent_testing.h"
#include "agent/event_spool.h"
#include "agent/output_splitter.h"
#include "common/bundle.h"
#include "common/fake_command_runner.h"
#include "common/hashing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;
using agent_testing::FakeServer;
using agent_testing::FakeState;
using agent_testing::TempDir;
using agent_testing::WaitFor;
using namespace std::chrono_literals;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class AgentTest : public testing::Test {
 protected:
  AgentTest() : state_(std::make_shared<FakeState>()) { StartServer(); }
  ~AgentTest() override { StopAgent(); }

  void StartServer() {
    server_ = std::make_unique<FakeServer>(state_);
    std::lock_guard<std::mutex> lock(url_mu_);
    url_ = server_->url();
  }
  // The URL stays: the agent's calls are refused until StartServer().
  void StopServer() { server_->Stop(); }

  AgentConfig Config() {
    AgentConfig c;
    c.server = [this]() -> StatusOr<std::string> {
      std::lock_guard<std::mutex> lock(url_mu_);
      return url_;
    };
    c.token = state_->token;
    c.instance_id = "i-1";
    c.work_dir = work_.path();
    c.yard_binary = YARD_BINARY;
    c.artifact_scan_interval = 20ms;
    c.kill_grace = 1000ms;
    return c;
  }

  void StartAgent(AgentConfig config) {
    run_done_ = false;
    agent_ = std::make_unique<Agent>(std::move(config));
    run_ = std::thread([this] {
      run_status_ = agent_->Run();
      run_done_ = true;
    });
  }
  void StartAgent() { StartAgent(Config()); }

  void StopAgent() {
    if (!agent_) return;
    agent_->Stop();
    run_.join();
    agent_.reset();
  }

  // Packs `files` into a bundle whose chunks the server holds.
  Manifest Bundle(const std::map<std::string, std::string>& files) {
    std::string root = bundles_.path() + "/b" + std::to_string(++bundle_count_);
    for (const auto& [path, content] : files) {
      fs::create_directories(fs::path(root + "/" + path).parent_path());
      std::ofstream(root + "/" + path, std::ios::binary) << content;
    }
    auto m = PackDirectory(root, PackOptions{}, [this](const ChunkRef& c, std::string_view b) {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->blobs[c.hash] = std::string(b);
      return Status::Ok();
    });
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : Manifest{};
  }

  static Json Assignment(const std::string& job, const std::string& script,
                         const Manifest& bundle = {}) {
    return {{"job", job},
            {"attempt", 1},
            {"command", {"sh", "-c", script}},
            {"bundle", bundle.ToJson()},
            {"env", Json::object()}};
  }
  void Assign(const Json& assignment) { state_->Push({{"assign", assignment}}); }
  void Assign(const std::string& job, const std::string& script, const Manifest& bundle = {}) {
    Assign(Assignment(job, script, bundle));
  }

  Json WaitExit(const std::string& job, std::chrono::milliseconds timeout = 20s) {
    EXPECT_TRUE(WaitFor([&] { return !state_->Exit(job).is_null(); }, timeout))
        << "no exit record for " << job << "; output so far: " << state_->Output(job);
    return state_->Exit(job);
  }
  bool OutputHas(const std::string& job, const std::string& text) {
    return state_->Output(job).find(text) != std::string::npos;
  }
  std::string JobDir(const std::string& job) { return work_.path() + "/jobs/" + job + "-1"; }
  std::string SpoolFile(const std::string& job) {
    return work_.path() + "/spool/" + job + "-1.spool";
  }
  // Lets a job blocked on `while [ ! -f ../go ]` go on.
  // The job may be taken (its poll answered) before its folder is made:
  // wait for the folder, or the file would be written nowhere and the job
  // would wait for ever (seen under ASan, where starting is slower).
  void Go(const std::string& job) {
    ASSERT_TRUE(WaitFor([&] { return std::filesystem::is_directory(JobDir(job)); }))
        << "no folder for " << job;
    std::ofstream go(JobDir(job) + "/go");
    go << "go";
    go.close();
    ASSERT_TRUE(go) << "could not write " << JobDir(job) << "/go";
  }

  static constexpr const char* kWaitForGo = "while [ ! -f ../go ]; do sleep 0.01; done; ";

  TempDir work_, bundles_;
  int bundle_count_ = 0;
  std::shared_ptr<FakeState> state_;
  std::unique_ptr<FakeServer> server_;
  std::mutex url_mu_;
  std::string url_;
  std::unique_ptr<Agent> agent_;
  std::thread run_;
  Status run_status_;
  std::atomic<bool> run_done_{false};
};

TEST_F(AgentTest, OutputArrivesCompleteInOrderWithGaplessSequence) {
  StartAgent();
  std::string expected;
  for (int i = 1; i <= 3000; ++i) expected += "line " + std::to_string(i) + "\n";
  expected += "to-stderr\ntail";
  Assign("job-out",
         "i=1; while [ $i -le 3000 ]; do echo \"line $i\"; i=$((i+1)); done; "
         "echo to-stderr >&2; printf tail");
  Json exit = WaitExit("job-out");
  EXPECT_EQ(exit["exit_code"], 0);
  EXPECT_EQ(exit["message"], "exit code 0");
  EXPECT_EQ(exit["cancelled"], false);
  EXPECT_EQ(state_->Output("job-out"), expected);
  std::vector<Json> records = state_->Records("job-out");
  EXPECT_EQ(records.back()["kind"], "exit");
  std::lock_guard<std::mutex> lock(state_->mu);
  int64_t next = 1;
  for (const auto& call : state_->events_calls) {
    EXPECT_EQ(call.http_status, 200);
    EXPECT_EQ(call.first, next) << "a gap or a resend without cause";
    next = call.first + static_cast<int64_t>(call.count);
  }
  EXPECT_EQ(next - 1, static_cast<int64_t>(records.size()));
}

// The job's output pipe holds 1 MiB, not Linux's 64 KiB: a job printing in
// bulk runs on while the pump is not scheduled. The job reads the size of
// its own stdout (F_GETPIPE_SZ is 1032).
TEST_F(AgentTest, AJobsOutputPipeHoldsAMebibyte) {
  StartAgent();
  Assign("job-pipe", "python3 -c 'import fcntl; print(fcntl.fcntl(1, 1032))'");
  EXPECT_EQ(WaitExit("job-pipe")["exit_code"], 0);
  EXPECT_EQ(state_->Output("job-pipe"), "1048576\n");
}

// A job printing in bulk (`yes | head`): rounds of up to 1 MiB, each read
// into the pump's one reused buffer, deliver every byte exactly and in
// order (a buffer cleared or overwritten before its pieces were spooled
// would lose or change bytes).
TEST_F(AgentTest, BulkOutputArrivesExactly) {
  StartAgent();
  Assign("job-bulk", "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 16000000");
  EXPECT_EQ(WaitExit("job-bulk")["exit_code"], 0);
  std::string line = "0123456789abcdefghijklmnopqrstuvwxyz\n", expected;
  while (expected.size() < 16000000) expected += line;
  expected.resize(16000000);
  EXPECT_TRUE(state_->Output("job-bulk") == expected) << "the bytes differ";
}

// An agent asked to confine jobs where it can, on a host that cannot, runs
// them unconfined and tells each job so (the SSH host's user reads it in
// the job's log); a host that can confines them and says nothing.
TEST_F(AgentTest, AJobThatRunsUnconfinedIsToldWhy) {
  AgentConfig config = Config();
  config.unconfined_reason = "bubblewrap is not installed";
  StartAgent(std::move(config));
  Assign("job-open", "echo ran");
  EXPECT_EQ(WaitExit("job-open")["exit_code"], 0);
  bool told = false;
  for (const Json& r : state_->Records("job-open"))
    told |= r["kind"] == "decision" && r["message"].get<std::string>().find(
                                           "the job runs unconfined: it can read what the "
                                           "agent's user can read on this host (bubblewrap "
                                           "is not installed)") != std::string::npos;
  EXPECT_TRUE(told) << state_->Output("job-open");
}

TEST_F(AgentTest, ALineReachesTheServerWithoutWaitingForMore) {
  StartAgent();
  Assign("job-fast", std::string("echo ready; ") + kWaitForGo + "echo now; sleep 30");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-fast", "ready\n"); }));
  auto go = std::chrono::steady_clock::now();
  Go("job-fast");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-fast", "now\n"); }, 5s));
  std::lock_guard<std::mutex> lock(state_->mu);
  EXPECT_LT(state_->output_seen["now\n"] - go, 1s);
}

TEST_F(AgentTest, MetricLinesBecomeMetricRecords) {
  StartAgent();
  Assign("job-m", R"(printf '{"loss": 1.5}\nnot json\n{"acc": 0.9}' > "$YARD_METRICS")");
  WaitExit("job-m");
  std::vector<Json> got;
  for (const Json& r : state_->Records("job-m")) {
    if (r["kind"] != "exit") got.push_back(r);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], Json::parse(R"({"kind":"metric","values":{"loss":1.5}})"));
  EXPECT_EQ(got[1]["kind"], "output");
  EXPECT_EQ(got[1]["data"].get<std::string>().rfind("yard: ignored metric line 2: not JSON", 0),
            0u);
  EXPECT_EQ(got[2], Json::parse(R"({"kind":"metric","values":{"acc":0.9}})"));
}

TEST_F(AgentTest, CheckpointIsSyncedWhileTheJobRuns) {
  StartAgent();
  Assign("job-ck", std::string("printf weights-v1 > \"$YARD_CHECKPOINT_DIR/ckpt.bin\"; ") +
                       kWaitForGo + "echo done");
  Json artifact;
  ASSERT_TRUE(WaitFor([&] {
    for (const Json& r : state_->Records("job-ck")) {
      if (r["kind"] == "artifact") artifact = r;
    }
    return !artifact.is_null();
  }));
  EXPECT_TRUE(state_->Exit("job-ck").is_null()) << "the job is still waiting";
  EXPECT_EQ(artifact["dir"], "checkpoints");
  StatusOr<FileEntry> e = FileEntryFromJson(artifact["entry"]);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->path, "ckpt.bin");
  std::string content;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    for (const ChunkRef& c : e->chunks) content += state_->blobs[c.hash];
  }
  EXPECT_EQ(content, "weights-v1");
  Go("job-ck");
  EXPECT_EQ(WaitExit("job-ck")["exit_code"], 0);
}

TEST_F(AgentTest, FilesWrittenJustBeforeExitAreSyncedBeforeTheExitRecord) {
  StartAgent();
  Assign("job-last",
         "mkdir -p \"$YARD_OUTPUT_DIR/sub\"; printf result > \"$YARD_OUTPUT_DIR/sub/r.txt\"; "
         "printf log > \"$YARD_LOG_DIR/events.log\"");
  WaitExit("job-last");
  std::vector<Json> records = state_->Records("job-last");
  std::set<std::string> synced;
  for (const Json& r : records) {
    if (r["kind"] == "artifact")
      synced.insert(r["dir"].get<std::string>() + "/" + r["entry"]["path"].get<std::string>());
  }
  EXPECT_EQ(synced, (std::set<std::string>{"outputs/sub/r.txt", "logs/events.log"}));
  EXPECT_EQ(records.back()["kind"], "exit");
}

TEST_F(AgentTest, RetriedBatchesLoseNothingAndDoubleNothing) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->refuse_events = 3;
    state_->lose_event_replies = 3;
  }
  StartAgent();
  std::string expected;
  for (int i = 1; i <= 500; ++i) expected += "n " + std::to_string(i) + "\n";
  Assign("job-r",
         "i=1; while [ $i -le 500 ]; do echo \"n $i\"; "
         "[ $((i % 50)) -eq 0 ] && sleep 0.05; i=$((i+1)); done; true");
  WaitExit("job-r");
  // The exit record may be stored by a call whose reply is "lost": the
  // agent is done once it has seen the acknowledgement and dropped its spool.
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(SpoolFile("job-r")); }));
  EXPECT_EQ(state_->Output("job-r"), expected);
  std::lock_guard<std::mutex> lock(state_->mu);
  EXPECT_EQ(state_->refuse_events, 0);
  EXPECT_EQ(state_->lose_event_replies, 0);
  int refused = 0;
  for (const auto& call : state_->events_calls) refused += call.http_status == 503;
  EXPECT_EQ(refused, 6);
}

TEST_F(AgentTest, GapReplyMakesTheAgentResendFromAcked) {
  StartAgent();
  Assign("job-gap", std::string("echo a; ") + kWaitForGo + "echo b");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-gap", "a\n"); }));
  {
    // The server "loses" what it had acknowledged (e.g. restored state).
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->events[{"job-gap", 1}].clear();
  }
  Go("job-gap");
  WaitExit("job-gap");
  EXPECT_EQ(state_->Output("job-gap"), "a\nb\n");
}

TEST_F(AgentTest, CancelEndsTheJobWithCancelledTrue) {
  StartAgent();
  Assign("job-c", "echo started; sleep 30");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-c", "started\n"); }));
  auto start = std::chrono::steady_clock::now();
  state_->Push({{"cancel", "job-c"}});
  Json exit = WaitExit("job-c");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(exit["cancelled"], true);
  EXPECT_EQ(exit["message"].get<std::string>().rfind("cancelled", 0), 0u) << exit;
}

// Pipelining: the server may send the next assignment while a job runs.
TEST_F(AgentTest, AQueuedAssignmentStartsTheMomentTheJobEndsWithoutAnotherPoll) {
  StartAgent();
  Assign("job-a", std::string(kWaitForGo) + "echo a");
  Assign("job-b", "echo b");
  // Both taken; the agent waits in its next long poll (20 s).
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->work.empty() && state_->polls >= 3;
  }));
  int polls = state_->Polls();
  EXPECT_TRUE(state_->Exit("job-b").is_null()) << "job-b waits for job-a";
  Go("job-a");
  EXPECT_EQ(WaitExit("job-a")["exit_code"], 0);
  EXPECT_EQ(WaitExit("job-b", 10s)["exit_code"], 0);
  EXPECT_EQ(state_->Output("job-b"), "b\n");
  EXPECT_EQ(state_->Polls(), polls) << "job-b started without waiting for a poll";
}

// The next assignment with the answer to the exit record (docs/api.md, work=1).
TEST_F(AgentTest, TheNextJobComesWithTheExitsAnswerAndStartsWithoutAPoll) {
  StartAgent();
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->work_with_exit.push_back({{"assign", Assignment("job-n2", "echo two")}});
  }
  Assign("job-n1", std::string(kWaitForGo) + "echo one");
  // job-n1 taken; the agent waits in its next long poll.
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->work.empty() && state_->polls >= 2;
  }));
  int polls = state_->Polls();
  Go("job-n1");
  EXPECT_EQ(WaitExit("job-n1")["exit_code"], 0);
  EXPECT_EQ(WaitExit("job-n2", 10s)["exit_code"], 0);
  EXPECT_EQ(state_->Output("job-n2"), "two\n");
  EXPECT_EQ(state_->Polls(), polls) << "job-n2 came with job-n1's exit, not by a poll";
  std::lock_guard<std::mutex> lock(state_->mu);
  EXPECT_GT(state_->events_asking_work, 0);
}

TEST_F(AgentTest, ACancelThatOvertakesTheAssignmentFromTheExitsAnswerEndsItUnstarted) {
  StartAgent();
  // The server chose job-o2 with job-o1's exit, then the user cancelled it:
  // the poll brings the cancel before the exit's answer brings job-o2.
  state_->Push({{"cancel", "job-o2"}});
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->work.empty() && state_->polls >= 2;
  }));
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->work_with_exit.push_back({{"assign", Assignment("job-o2", "echo ran")}});
  }
  Assign("job-o1", "echo one");
  EXPECT_EQ(WaitExit("job-o1")["exit_code"], 0);
  Json exit = WaitExit("job-o2");
  EXPECT_EQ(exit["cancelled"], true) << exit;
  EXPECT_EQ(exit["message"], "cancelled before it started");
  EXPECT_EQ(state_->Output("job-o2"), "");
  EXPECT_FALSE(fs::exists(JobDir("job-o2")));
}

TEST_F(AgentTest, QueuedAssignmentsCancelledOrRevokedBeforeTheyStartNeverRun) {
  StartAgent();
  Assign("job-a", std::string(kWaitForGo) + "echo a");
  Assign("job-b", "echo b");
  Assign("job-c", "echo c");
  state_->Push({{"cancel", "job-b"}});
  state_->Push({{"revoke", "job-c"}, {"attempt", 1}});
  Json b = WaitExit("job-b"), c = WaitExit("job-c");
  EXPECT_TRUE(state_->Exit("job-a").is_null()) << "both answered while job-a runs";
  EXPECT_EQ(b["cancelled"], true);
  EXPECT_EQ(b["message"], "cancelled before it started");
  EXPECT_EQ(c["revoked"], true) << c;
  EXPECT_EQ(c["cancelled"], false);
  Go("job-a");
  EXPECT_EQ(WaitExit("job-a")["exit_code"], 0);
  EXPECT_EQ(state_->Output("job-b"), "");
  EXPECT_EQ(state_->Output("job-c"), "");
  EXPECT_FALSE(fs::exists(JobDir("job-b")));
  EXPECT_FALSE(fs::exists(JobDir("job-c")));
}

TEST_F(AgentTest, ARevokeOfAJobThatHasStartedIsIgnored) {
  StartAgent();
  Assign("job-d", std::string("echo started; ") + kWaitForGo + "echo d");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-d", "started\n"); }));
  state_->Push({{"revoke", "job-d"}, {"attempt", 1}});
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->work.empty();
  }));
  Go("job-d");
  Json exit = WaitExit("job-d");
  EXPECT_EQ(exit["exit_code"], 0);
  EXPECT_FALSE(exit.contains("revoked"));
  EXPECT_EQ(state_->Output("job-d"), "started\nd\n");
}

TEST_F(AgentTest, RecordsWrittenWhileTheServerIsDownArriveWhenItReturns) {
  StartAgent();
  Assign("job-s", std::string("echo one; ") + kWaitForGo + "echo two");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-s", "one\n"); }));
  StopServer();
  Go("job-s");
  ASSERT_TRUE(
      WaitFor([&] { return ReadAll(SpoolFile("job-s")).find("\"exit\"") != std::string::npos; }));
  StartServer();  // on a new port: the agent asks its resolver again
  Json exit = WaitExit("job-s");
  EXPECT_EQ(exit["exit_code"], 0);
  EXPECT_EQ(state_->Output("job-s"), "one\ntwo\n");
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(SpoolFile("job-s")); }));
}

TEST_F(AgentTest, ARestartedAgentSendsWhatTheLastOneSpooled) {
  StartAgent();
  Assign("job-rs", std::string("echo one; ") + kWaitForGo + "echo two");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-rs", "one\n"); }));
  StopServer();
  Go("job-rs");
  ASSERT_TRUE(
      WaitFor([&] { return ReadAll(SpoolFile("job-rs")).find("\"exit\"") != std::string::npos; }));
  StopAgent();
  StartServer();
  StartAgent();
  WaitExit("job-rs");
  EXPECT_EQ(state_->Output("job-rs"), "one\ntwo\n");
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(SpoolFile("job-rs")); }));
  std::lock_guard<std::mutex> lock(state_->mu);
  EXPECT_EQ(state_->registers, 2);
}

TEST_F(AgentTest, ALeftoverTheServerRefusesIsDroppedWithoutBlockingNewJobs) {
  {
    auto spool = EventSpool::Open(work_.path() + "/spool");
    ASSERT_TRUE(spool.ok());
    ASSERT_TRUE((*spool)->Append("ghost", 1, {{"kind", "output"}, {"data", "boo"}}).ok());
  }
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->unknown_jobs.insert("ghost");
  }
  StartAgent();
  Assign("job-new", "echo fine");
  EXPECT_EQ(WaitExit("job-new")["exit_code"], 0);
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(SpoolFile("ghost")); }));
}

TEST_F(AgentTest, TheChunkCacheSavesFetchingABundleTwice) {
  StartAgent();
  Manifest bundle = Bundle({{"hello.txt", "hello from the bundle\n"}, {"sub/x.py", "print(1)\n"}});
  Assign("job-b1", "cat hello.txt sub/x.py", bundle);
  EXPECT_EQ(WaitExit("job-b1")["exit_code"], 0);
  EXPECT_EQ(state_->Output("job-b1"), "hello from the bundle\nprint(1)\n");
  int gets = 0;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    gets = state_->blob_gets;
  }
  EXPECT_GE(gets, 1);
  Assign("job-b2", "cat hello.txt", bundle);
  WaitExit("job-b2");
  EXPECT_EQ(state_->Output("job-b2"), "hello from the bundle\n");
  std::lock_guard<std::mutex> lock(state_->mu);
  EXPECT_EQ(state_->blob_gets, gets);
}

TEST_F(AgentTest, AFinishedJobsFolderIsRemovedOnceItsRecordsAreDelivered) {
  StartAgent();
  Assign("job-f1", "printf weights > \"$YARD_CHECKPOINT_DIR/epoch-001.pt\"");
  EXPECT_EQ(WaitExit("job-f1")["exit_code"], 0);
  ASSERT_TRUE(fs::exists(JobDir("job-f1") + "/checkpoints/epoch-001.pt"));
  // Delivered: the spool deletes the attempt's file once the exit is acked.
  ASSERT_TRUE(WaitFor([&] { return !fs::exists(SpoolFile("job-f1")); }));
  Assign("job-f2", std::string("echo started; ") + kWaitForGo);
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-f2", "started\n"); }));
  // Removed once the next job has started (not on its way to starting).
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(JobDir("job-f1")); }));
  EXPECT_TRUE(fs::exists(JobDir("job-f2") + "/work"));
  Go("job-f2");
  EXPECT_EQ(WaitExit("job-f2")["exit_code"], 0);
}

TEST_F(AgentTest, AJobGetsItsEnvironmentAndFolders) {
  AgentConfig config = Config();
  config.job_env = {{"FROM_CONFIG", "c"}, {"BOTH", "config"}};
  StartAgent(config);
  Json a = Assignment(
      "job-env",
      "echo \"$YARD_JOB_ID|$FROM_CONFIG|$BOTH|$PYTHONUNBUFFERED|${YARD_RESUME_FROM-unset}\"; "
      "pwd; echo \"$YARD_CHECKPOINT_DIR|$YARD_LOG_DIR|$YARD_OUTPUT_DIR|$YARD_METRICS\"");
  a["env"] = {{"BOTH", "assign"}};
  Assign(a);
  WaitExit("job-env");
  std::string dir = fs::canonical(JobDir("job-env")).string();
  EXPECT_EQ(state_->Output("job-env"), "job-env|c|assign|1|unset\n" + dir + "/work\n" + dir +
                                           "/checkpoints|" + dir + "/logs|" + dir + "/outputs|" +
                                           dir + "/metrics.jsonl\n");
}

TEST_F(AgentTest, AResumedJobFindsItsCheckpoint) {
  StartAgent();
  FileEntry ckpt;
  ckpt.path = "epoch3.ckpt";
  ckpt.size = 11;
  ckpt.chunks.push_back({Sha256Hex("saved-state"), 11});
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->blobs[Sha256Hex("saved-state")] = "saved-state";
  }
  Json a = Assignment("job-res", "cat \"$YARD_RESUME_FROM\"; echo; echo \"$YARD_RESUME_FROM\"");
  a["resume_from"] = {{"dir", "checkpoints"}, {"entry", FileEntryToJson(ckpt)}};
  Assign(a);
  WaitExit("job-res");
  std::string dir = fs::canonical(JobDir("job-res")).string();
  EXPECT_EQ(state_->Output("job-res"), "saved-state\n" + dir + "/checkpoints/epoch3.ckpt\n");
  for (const Json& r : state_->Records("job-res")) EXPECT_NE(r["kind"], "artifact") << r;
}

// ---- the tools a job needs, through the injected CommandRunner

// A fake python3 and pip (no real venv, nothing installed): `python3 -m venv
// DIR` makes DIR; `pip install` succeeds when `pip_ok`, else fails as pip
// does for a package that does not exist.
FakeCommandRunner::Answer FakePythonTools(bool pip_ok) {
  return [pip_ok](const CommandSpec& c) -> StatusOr<CommandResult> {
    const std::vector<std::string>& a = c.argv;
    if (a[0] == "python3" && a.size() == 2) return Result(0, "Python 3.11.2\n");
    if (std::find(a.begin(), a.end(), "venv") != a.end()) {
      fs::create_directories(a.back());
      return Result(0, "");
    }
    if (pip_ok) return Result(0, "Successfully installed tinypkg-1.0\n");
    return Result(1, "", "ERROR: No matching distribution found for nosuchpkg==9\n");
  };
}

// True if some call ran `python -m pip install`.
bool RanPipInstall(FakeCommandRunner& tools) {
  for (const CommandSpec& c : tools.calls())
    for (size_t i = 0; i + 2 < c.argv.size(); ++i)
      if (c.argv[i] == "-m" && c.argv[i + 1] == "pip" && c.argv[i + 2] == "install") return true;
  return false;
}

TEST_F(AgentTest, AJobsRequirementsAreInstalledThroughTheAgentsRunnerBeforeItRuns) {
  FakeCommandRunner tools(FakePythonTools(/*pip_ok=*/true));
  AgentConfig config = Config();
  config.commands = &tools;
  StartAgent(config);
  Assign("job-pip", "echo \"venv=$VIRTUAL_ENV\"", Bundle({{"requirements.txt", "tinypkg==1.0\n"}}));
  Json exit = WaitExit("job-pip");
  EXPECT_EQ(exit["exit_code"], 0) << exit;
  EXPECT_TRUE(RanPipInstall(tools));
  EXPECT_TRUE(OutputHas("job-pip", "(built)")) << state_->Output("job-pip");
  // The job ran in the venv the fake pip "built" under the agent's envs/.
  EXPECT_TRUE(OutputHas("job-pip", "venv=")) << state_->Output("job-pip");
  EXPECT_TRUE(OutputHas("job-pip", "/envs/")) << state_->Output("job-pip");
}

TEST_F(AgentTest, AFailedPipInstallFailsTheJobWithPipsErrorBeforeItRuns) {
  FakeCommandRunner tools(FakePythonTools(/*pip_ok=*/false));
  AgentConfig config = Config();
  config.commands = &tools;
  StartAgent(config);
  Assign("job-nopip", "echo the-command-ran", Bundle({{"requirements.txt", "nosuchpkg==9\n"}}));
  Json exit = WaitExit("job-nopip");
  EXPECT_EQ(exit["exit_code"], 1) << exit;
  std::string message = exit.value("message", "");
  EXPECT_NE(message.find("pip install -r requirements.txt failed"), std::string::npos) << exit;
  EXPECT_NE(message.find("No matching distribution found for nosuchpkg==9"), std::string::npos)
      << exit;
  EXPECT_FALSE(OutputHas("job-nopip", "the-command-ran")) << state_->Output("job-nopip");
}

TEST_F(AgentTest, AnImageThatCannotBePulledFailsTheJobWithPodmansErrorBeforeItRuns) {
  FakeCommandRunner podman([](const CommandSpec& c) -> StatusOr<CommandResult> {
    if (c.argv.size() > 2 && c.argv[1] == "image" && c.argv[2] == "exists") return Result(1, "");
    if (c.argv.size() > 1 && c.argv[1] == "pull")
      return Result(125, "", "Error: initializing source docker://nope: no route to host\n");
    ADD_FAILURE() << "unexpected podman call: " << c.argv[1];
    return Result(125, "");
  });
  AgentConfig config = Config();
  config.commands = &podman;
  StartAgent(config);
  Json a = Assignment("job-img", "echo the-command-ran");
  a["image"] = "nope";
  Assign(a);
  Json exit = WaitExit("job-img");
  EXPECT_EQ(exit["exit_code"], 1) << exit;
  std::string message = exit.value("message", "");
  EXPECT_NE(message.find("could not be pulled"), std::string::npos) << exit;
  EXPECT_NE(message.find("no route to host"), std::string::npos) << exit;
  EXPECT_FALSE(OutputHas("job-img", "the-command-ran")) << state_->Output("job-img");
  ASSERT_EQ(podman.CallsOf("podman").size(), 2u) << "image exists, then pull";
}

TEST_F(AgentTest, ABundleThatCannotBeFetchedEndsWithAnExitRecord) {
  StartAgent();
  Manifest m;
  FileEntry e;
  e.path = "gone.txt";
  e.size = 6;
  e.chunks.push_back({Sha256Hex("absent"), 6});
  m.files.push_back(e);
  Assign("job-nb", "true", m);
  Json exit = WaitExit("job-nb");
  EXPECT_EQ(exit["exit_code"], 1);
  EXPECT_NE(exit["message"].get<std::string>().find("could not prepare the job"), std::string::npos)
      << exit;
  EXPECT_TRUE(OutputHas("job-nb", "yard: could not prepare the job"));
}

TEST_F(AgentTest, ACommandThatCannotRunExitsWith127) {
  StartAgent();
  state_->Push({{"assign",
                 {{"job", "job-127"},
                  {"attempt", 1},
                  {"command", {"no-such-command-for-yard"}},
                  {"env", Json::object()}}}});
  EXPECT_EQ(WaitExit("job-127")["exit_code"], 127);
}

TEST_F(AgentTest, ABadAssignmentEndsWithAnExitRecord) {
  StartAgent();
  state_->Push({{"assign", {{"job", "job-bad"}, {"attempt", 1}, {"command", "not a list"}}}});
  Json exit = WaitExit("job-bad");
  EXPECT_EQ(exit["exit_code"], 1);
  EXPECT_NE(exit["message"].get<std::string>().find("bad assignment"), std::string::npos);
}

TEST_F(AgentTest, TerminateEndsTheJobAndRun) {
  StartAgent();
  Assign("job-t", "echo started; sleep 30");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-t", "started\n"); }));
  state_->Push({{"terminate", true}});
  ASSERT_TRUE(WaitFor([&] { return run_done_.load(); }));
  EXPECT_TRUE(run_status_.ok()) << run_status_.ToString();
  // Run waited for the exit record to be acknowledged.
  EXPECT_EQ(state_->Exit("job-t")["cancelled"], true);
}

TEST_F(AgentTest, StopReturnsPromptlyDuringALongPoll) {
  StartAgent();
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->polls > 0;
  }));
  auto start = std::chrono::steady_clock::now();
  StopAgent();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(run_status_.ok());
}

TEST_F(AgentTest, StopEndsARunningJob) {
  StartAgent();
  Assign("job-stop", "echo started; sleep 30");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-stop", "started\n"); }));
  auto start = std::chrono::steady_clock::now();
  StopAgent();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(AgentTest, ABadTokenEndsRun) {
  AgentConfig config = Config();
  config.token = "wrong";
  StartAgent(config);
  ASSERT_TRUE(WaitFor([&] { return run_done_.load(); }));
  EXPECT_EQ(run_status_.code(), Code::kUnauthenticated) << run_status_.ToString();
}

TEST_F(AgentTest, RegisterIsRetriedWhileTheServerStarts) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->refuse_registers = 3;
  }
  StopServer();
  StartAgent();
  std::this_thread::sleep_for(
      100ms);  // some refused connections first (not needed for correctness)
  StartServer();
  Assign("job-late", "echo hi");
  EXPECT_EQ(WaitExit("job-late")["exit_code"], 0);
  std::lock_guard<std::mutex> lock(state_->mu);
  EXPECT_EQ(state_->registers, 1);
}

TEST_F(AgentTest, HeartbeatsFlow) {
  StartAgent();
  EXPECT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> lock(state_->mu);
        return state_->heartbeats >= 2;
      },
      10s));
}

// ---- spot interruptions (preemption_watcher.h) ----

// The instance metadata service as the test wants it: a notice appears
// when the test sets it. Shared by the test and the agent's watcher.
struct FakeImds {
  std::mutex mu;
  std::map<std::string, std::string> bodies;
  void Set(const std::string& path, const std::string& body) {
    std::lock_guard<std::mutex> lock(mu);
    bodies[path] = body;
  }
  struct Source : MetadataSource {
    std::shared_ptr<FakeImds> imds;
    StatusOr<std::string> Get(const std::string& path) override {
      std::lock_guard<std::mutex> lock(imds->mu);
      auto it = imds->bodies.find(path);
      if (it == imds->bodies.end()) return NotFound(path);
      return it->second;
    }
  };
};

std::string Rfc3339In(double seconds) {
  std::time_t t = std::time(nullptr) + static_cast<std::time_t>(seconds);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

class PreemptionTest : public AgentTest {
 protected:
  AgentConfig WatchingConfig() {
    AgentConfig c = Config();
    c.preemption.enabled = true;
    c.preemption.poll_interval = 20ms;
    c.preemption.margin = 0ms;
    c.preemption.source = [imds = imds_] {
      auto s = std::make_unique<FakeImds::Source>();
      s->imds = imds;
      return s;
    };
    return c;
  }
  void Notice(double seconds_left) {
    imds_->Set("meta-data/spot/instance-action",
               R"({"action": "terminate", "time": ")" + Rfc3339In(seconds_left) + "\"}");
  }
  std::vector<std::string> Decisions(const std::string& job) {
    std::vector<std::string> out;
    for (const Json& r : state_->Records(job))
      if (r["kind"] == "decision") out.push_back(r["message"]);
    return out;
  }
  Json Preempted() {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->preempted.empty() ? Json() : state_->preempted.back();
  }
  std::shared_ptr<FakeImds> imds_ = std::make_shared<FakeImds>();
};

TEST_F(PreemptionTest, NoticeReachesTheJobWhichCheckpointsThenTheInstanceIsReported) {
  StartAgent(WatchingConfig());
  // A job that does what the runners do: on SIGUSR1, read the notice file,
  // write a checkpoint, exit.
  Assign("job-spot",
         "trap 'echo got USR1; cat \"$YARD_PREEMPTION_NOTICE\"; "
         "printf mid-epoch > \"$YARD_CHECKPOINT_DIR/epoch-001-step-7.ckpt\"; exit 75' USR1; "
         "[ ! -e \"$YARD_PREEMPTION_NOTICE\" ] && echo no notice yet; "
         "while :; do sleep 0.02; done");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-spot", "no notice yet\n"); }));
  Notice(60);
  ASSERT_TRUE(WaitFor([&] { return !Preempted().is_null(); }, 20s))
      << "output: " << state_->Output("job-spot");
  EXPECT_TRUE(OutputHas("job-spot", "got USR1\n{\"action\": \"terminate\""));
  EXPECT_TRUE(state_->Exit("job-spot").is_null()) << "the server requeues it: no exit record";
  std::vector<Json> records = state_->Records("job-spot");
  bool checkpoint = false;
  for (const Json& r : records)
    checkpoint |= r["kind"] == "artifact" && r["entry"]["path"] == "epoch-001-step-7.ckpt";
  EXPECT_TRUE(checkpoint) << "the mid-epoch checkpoint is delivered before the report";
  EXPECT_EQ(Preempted()["records_held"], records.size()) << "every record came before the report";
  EXPECT_EQ(Preempted()["action"], "terminate");
  std::vector<std::string> decisions = Decisions("job-spot");
  ASSERT_EQ(decisions.size(), 2u);
  EXPECT_EQ(decisions[0].rfind("spot interruption notice: EC2 will terminate this instance at ", 0),
            0u);
  EXPECT_NE(decisions[0].find("told the job (SIGUSR1, $YARD_PREEMPTION_NOTICE)"), std::string::npos)
      << decisions[0];
  EXPECT_NE(decisions[1].find("exit code 75"), std::string::npos) << decisions[1];
  ASSERT_TRUE(WaitFor([&] { return run_done_.load(); }, 10s)) << "the agent stops after the report";
  EXPECT_TRUE(run_status_.ok()) << run_status_.ToString();
}

TEST_F(PreemptionTest, AJobThatIgnoresTheNoticeIsStoppedAtItsTime) {
  StartAgent(WatchingConfig());
  Assign("job-deaf", "trap '' USR1; echo running; while :; do sleep 0.02; done");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-deaf", "running\n"); }));
  auto noticed = std::chrono::steady_clock::now();
  Notice(2);  // whole seconds: between 1 and 2 s from now
  ASSERT_TRUE(WaitFor([&] { return !Preempted().is_null(); }, 20s));
  EXPECT_GE(std::chrono::steady_clock::now() - noticed, 900ms) << "it had until the notice's time";
  std::vector<std::string> decisions = Decisions("job-deaf");
  ASSERT_EQ(decisions.size(), 3u);
  EXPECT_EQ(decisions[1], "the job has not exited by the interruption's deadline: stopping it");
  EXPECT_TRUE(state_->Exit("job-deaf").is_null());
}

TEST_F(PreemptionTest, RebalanceRecommendationIsShownAndTheJobGoesOn) {
  StartAgent(WatchingConfig());
  Assign("job-reb", std::string("echo started; ") + kWaitForGo + "echo finished");
  ASSERT_TRUE(WaitFor([&] { return OutputHas("job-reb", "started\n"); }));
  imds_->Set("meta-data/events/recommendations/rebalance",
             R"({"noticeTime": "2026-12-06T03:03:00Z"})");
  ASSERT_TRUE(WaitFor([&] { return !Decisions("job-reb").empty(); }));
  EXPECT_EQ(Decisions("job-reb")[0].rfind(
                "rebalance recommendation from EC2 (at 2026-12-06T03:03:00Z)", 0),
            0u);
  Go("job-reb");
  EXPECT_EQ(WaitExit("job-reb")["exit_code"], 0);
  EXPECT_TRUE(OutputHas("job-reb", "finished\n"));
  EXPECT_TRUE(Preempted().is_null());
  EXPECT_EQ(Decisions("job-reb").size(), 1u);
}

TEST_F(PreemptionTest, AnIdleInstanceIsReportedAtOnce) {
  StartAgent(WatchingConfig());
  ASSERT_TRUE(WaitFor([&] {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->registers == 1;
  }));
  Notice(60);
  ASSERT_TRUE(WaitFor([&] { return !Preempted().is_null(); }, 10s));
  ASSERT_TRUE(WaitFor([&] { return run_done_.load(); }, 10s));
}

}  // namespace
}  // namespace yard
