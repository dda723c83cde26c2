#include "agent/preemption_watcher.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <mutex>
#include <thread>

namespace yard {
namespace {

using Kind = PreemptionNotice::Kind;
using namespace std::chrono_literals;

// The metadata service as a map: a path answers its body, NotFound when
// absent; `down` makes every call fail as an unreachable service does.
struct FakeMetadata : MetadataSource {
  std::map<std::string, std::string> bodies;
  bool down = false;
  std::vector<std::string> asked;
  std::mutex mu;  // the watcher's thread reads while a test writes
  void Set(const std::string& path, const std::string& body) {
    std::lock_guard<std::mutex> lock(mu);
    bodies[path] = body;
  }
  StatusOr<std::string> Get(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu);
    asked.push_back(path);
    if (down) return Unavailable("connection refused");
    auto it = bodies.find(path);
    if (it == bodies.end()) return NotFound(path);
    return it->second;
  }
};

constexpr const char* kAction = "meta-data/spot/instance-action";
constexpr const char* kRebalance = "meta-data/events/recommendations/rebalance";

TEST(PreemptionNoticeTest, ReadsEc2sInstanceAction) {
  auto n = ParseInstanceAction(R"({"action": "terminate", "time": "2026-12-06T03:05:00Z"})");
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(n->kind, Kind::kInterruption);
  EXPECT_EQ(n->action, "terminate");
  EXPECT_EQ(n->at, 1796526300.0);
  EXPECT_EQ(n->Describe(),
            "spot interruption notice: EC2 will terminate this instance at 2026-12-06T03:05:00Z");
}

TEST(PreemptionNoticeTest, RefusesWhatIsNotANotice) {
  EXPECT_FALSE(ParseInstanceAction("<html>").ok());
  EXPECT_FALSE(ParseInstanceAction(R"({"time": "2026-12-06T03:05:00Z"})").ok());
  EXPECT_FALSE(ParseRebalance(R"({"action": "terminate"})").ok());
  auto r = ParseRebalance(R"({"noticeTime": "2026-12-06T03:03:00Z"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, Kind::kRebalance);
  EXPECT_EQ(r->at, 1796526180.0);
}

TEST(PreemptionNoticeTest, Rfc3339WithFractionsAndOffsets) {
  EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:00Z"), 0.0);
  EXPECT_EQ(ParseRfc3339("1970-01-01T01:00:00.5+01:00"), 0.5);
  EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:00-00:30"), 1800.0);
  EXPECT_FALSE(ParseRfc3339("1970-01-01 00:00:00").has_value());  // no zone
  EXPECT_FALSE(ParseRfc3339("1970-13-01T00:00:00Z").has_value());
  EXPECT_FALSE(ParseRfc3339("tomorrow").has_value());
  // A time that cannot be read leaves `at` at 0 (EC2's usual 2 minutes apply).
  EXPECT_EQ(ParseInstanceAction(R"({"action": "stop", "time": "soon"})")->at, 0.0);
}

TEST(PreemptionOptionsTest, OffUnlessAskedAndBadValuesNamed) {
  std::map<std::string, std::string> env;
  auto get = [&](const std::string& k) { return env.count(k) ? env[k] : std::string(); };
  EXPECT_FALSE(PreemptionOptionsFromEnv(get)->enabled);
  env = {{"YARD_PREEMPTION_WATCH", "imds"},
         {"AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1338"},
         {"YARD_PREEMPTION_POLL_S", "0.5"},
         {"YARD_PREEMPTION_SIGNAL", "SIGUSR2"},
         {"YARD_PREEMPTION_MARGIN_S", "3"}};
  PreemptionOptions o = PreemptionOptionsFromEnv(get).value();
  EXPECT_TRUE(o.enabled);
  EXPECT_EQ(o.imds_endpoint, "http://127.0.0.1:1338");
  EXPECT_EQ(o.poll_interval, 500ms);
  EXPECT_EQ(o.signal, SIGUSR2);
  EXPECT_EQ(o.margin, 3000ms);
  env.erase("YARD_PREEMPTION_SIGNAL");
  EXPECT_EQ(PreemptionOptionsFromEnv(get)->signal, SIGUSR1);
  for (auto [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"YARD_PREEMPTION_WATCH", "yes"},
                                                        {"YARD_PREEMPTION_POLL_S", "0"},
                                                        {"YARD_PREEMPTION_POLL_S", "2s"},
                                                        {"YARD_PREEMPTION_SIGNAL", "KILL"},
                                                        {"YARD_PREEMPTION_SIGNAL", "USR3"}}) {
    auto saved = env;
    env[key] = value;
    StatusOr<PreemptionOptions> bad = PreemptionOptionsFromEnv(get);
    ASSERT_FALSE(bad.ok()) << key << "=" << value;
    EXPECT_NE(bad.status().message().find(key), std::string::npos) << bad.status().message();
    env = saved;
  }
}

class WatcherTest : public testing::Test {
 protected:
  WatcherTest() {
    auto fake = std::make_unique<FakeMetadata>();
    md_ = fake.get();
    watcher_ = std::make_unique<PreemptionWatcher>(
        std::move(fake), &state_, 10ms, [this](const std::string& l) { log_.push_back(l); });
  }
  FakeMetadata* md_;
  PreemptionState state_;
  std::vector<std::string> log_;
  std::unique_ptr<PreemptionWatcher> watcher_;
};

TEST_F(WatcherTest, NoNoticeIsNotANotice) {
  watcher_->PollOnce();
  EXPECT_EQ(md_->asked, (std::vector<std::string>{kAction, kRebalance}));
  EXPECT_FALSE(state_.interruption());
  EXPECT_TRUE(state_.rebalances().empty());
  EXPECT_TRUE(log_.empty());
}

TEST_F(WatcherTest, InterruptionIsKeptAndPollingEnds) {
  md_->bodies[kAction] = R"({"action": "terminate", "time": "2026-12-06T03:05:00Z"})";
  watcher_->PollOnce();
  ASSERT_TRUE(state_.interruption());
  EXPECT_EQ(state_.interruption()->json, md_->bodies[kAction]);
  ASSERT_EQ(log_.size(), 1u);
  md_->asked.clear();
  md_->bodies[kAction] = R"({"action": "stop", "time": "2026-12-06T03:09:00Z"})";
  watcher_->PollOnce();
  EXPECT_TRUE(md_->asked.empty()) << "the instance is going away: nothing more to ask";
  EXPECT_EQ(state_.interruption()->action, "terminate");
}

TEST_F(WatcherTest, RebalanceIsShownOncePerNoticeTime) {
  md_->bodies[kRebalance] = R"({"noticeTime": "2026-12-06T03:03:00Z"})";
  watcher_->PollOnce();
  watcher_->PollOnce();
  ASSERT_EQ(state_.rebalances().size(), 1u);
  EXPECT_FALSE(state_.interruption());
  md_->bodies[kRebalance] = R"({"noticeTime": "2026-12-06T04:03:00Z"})";
  watcher_->PollOnce();
  EXPECT_EQ(state_.rebalances().size(), 2u);
}

TEST_F(WatcherTest, UnreachableServiceIsLoggedOnceAndRetried) {
  md_->down = true;
  watcher_->PollOnce();
  watcher_->PollOnce();
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_NE(log_[0].find("cannot ask the metadata service"), std::string::npos) << log_[0];
  md_->down = false;
  md_->bodies[kAction] = R"({"action": "hibernate", "time": "2026-12-06T03:05:00Z"})";
  watcher_->PollOnce();
  ASSERT_TRUE(state_.interruption());
  EXPECT_EQ(state_.interruption()->action, "hibernate");
  EXPECT_NE(log_[1].find("answers again"), std::string::npos) << log_[1];
}

TEST_F(WatcherTest, ThreadPollsUntilTheNotice) {
  StopSignal never;
  watcher_->Start();
  EXPECT_FALSE(state_.WaitInterruption(never, 50ms));
  md_->Set(kAction, R"({"action": "terminate", "time": "2026-12-06T03:05:00Z"})");
  EXPECT_TRUE(state_.WaitInterruption(never, 10s));
  watcher_->Stop();
}

TEST(PreemptionStateTest, WaitsForRunningAttempts) {
  PreemptionState state;
  StopSignal never;
  state.AttemptBegan();
  EXPECT_FALSE(state.WaitNoAttempt(never, std::chrono::steady_clock::now() + 20ms));
  std::thread t([&] { state.AttemptEnded(); });
  EXPECT_TRUE(state.WaitNoAttempt(never, std::chrono::steady_clock::now() + 10s));
  t.join();
}

}  // namespace
}  // namespace yard
