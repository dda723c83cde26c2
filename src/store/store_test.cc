#include "store/store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <stdexcept>

#include "common/hashing.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;

class StoreTest : public testing::Test {
 protected:
  void SetUp() override {
    StatusOr<std::unique_ptr<Store>> store = Store::Open((dir_ / "state.db").string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }
  void TearDown() override { store_.reset(); }

  JobRecord NewJob(const std::string& id) {
    JobRecord j;
    j.id = id;
    j.user = "ann";
    j.state = job_state::kRunning;
    EXPECT_TRUE(store_->InsertJob(j).ok());
    return j;
  }

  test_support::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, EventsAreNumberedGaplesslyAcrossAppends) {
  JobRecord job = NewJob("job-1");
  for (int round = 0; round < 3; ++round) {
    std::vector<Json> events = {{{"kind", "output"}, {"data", "a\n"}},
                                {{"kind", "output"}, {"data", "b\n"}}};
    ASSERT_TRUE(store_->AppendEvents(job.id, events, 1.0, nullptr).ok());
  }
  StatusOr<std::vector<EventRecord>> read = store_->ReadEvents(job.id, 0, 100);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->size(), 6u);
  for (size_t i = 0; i < read->size(); ++i) EXPECT_EQ((*read)[i].seq, static_cast<int64_t>(i + 1));
  EXPECT_EQ(store_->GetJob(job.id)->last_seq, 6);
}

// Checkpoints run inside the commit that crosses the mark, under the store's
// lock (store.cc, Open): the WAL grows past SQLite's 1000 pages to about
// kWalCheckpointPages before one runs, and checkpoints still keep it bounded.
// The WAL file is reused from its start after a checkpoint, never shrunk, so
// its size is the most it held between two checkpoints.
TEST_F(StoreTest, TheWalIsCheckpointedEveryKWalCheckpointPagesNotEvery1000) {
  JobRecord job = NewJob("job-1");
  const std::string message(6000, 'x');  // two pages a row, with overflow
  const uint64_t wal_page = 4096 + 24;   // a page and its frame header
  const int pages_written = 3 * Store::kWalCheckpointPages;
  for (int i = 0; i < pages_written / 2; ++i) {
    ASSERT_TRUE(
        store_->AppendEvents(job.id, {{{"kind", "log"}, {"message", message}}}, 1.0, nullptr).ok());
  }
  uint64_t wal_bytes = fs::file_size(dir_ / "state.db-wal");
  EXPECT_GT(wal_bytes, 2000 * wal_page) << "checkpointed at SQLite's default of 1000 pages";
  EXPECT_LT(wal_bytes, (Store::kWalCheckpointPages + 200) * wal_page) << "never checkpointed";
  StatusOr<std::vector<EventRecord>> read = store_->ReadEvents(job.id, 0, pages_written);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->size(), static_cast<size_t>(pages_written / 2));
}

// Event streams are written from the stored text as it is: it must be the
// event's whole JSON on one line, newlines and quotes in output escaped.
TEST_F(StoreTest, EventTextIsTheWholeEventOnOneLine) {
  JobRecord job = NewJob("job-1");
  std::string tricky = "line 1\nline \"2\"\r\n\x01 \xc3\xa9t\xc3\xa9\n";
  ASSERT_TRUE(
      store_->AppendEvents(job.id, {{{"kind", "output"}, {"data", tricky}}}, 2.5, nullptr).ok());
  StatusOr<std::vector<StoredEvent>> text = store_->ReadEventText(job.id, 0, 10);
  ASSERT_TRUE(text.ok());
  ASSERT_EQ(text->size(), 1u);
  EXPECT_EQ((*text)[0].seq, 1);
  EXPECT_EQ((*text)[0].json.find('\n'), std::string::npos);
  EXPECT_EQ((*text)[0].json.find('\r'), std::string::npos);
  Json parsed = Json::parse((*text)[0].json);
  EXPECT_EQ(parsed["data"], tricky);
  EXPECT_EQ(parsed["seq"], 1);
  EXPECT_EQ(parsed["time"], 2.5);
  EXPECT_EQ(parsed, store_->ReadEvents(job.id, 0, 10)->at(0).body);
  EXPECT_TRUE(store_->ReadEventText(job.id, 1, 10)->empty());
}

// Output bytes given apart are stored exactly (no JSON text can hold them)
// and come back apart from the event's JSON, or inside it for ReadEvents.
TEST_F(StoreTest, OutputBytesAreStoredExactlyApartFromTheJson) {
  JobRecord job = NewJob("job-1");
  const std::string bytes("\xff\xfe bad \0 NUL \xe2\x82\n", 17);
  std::vector<NewEvent> events;
  events.emplace_back(Json{{"kind", "output"}}, bytes);
  events.emplace_back(Json{{"kind", "metric"}, {"values", {{"loss", 1}}}});
  ASSERT_TRUE(store_->AppendEventsWithOutput(job.id, std::move(events), 3.0, nullptr).ok());
  StatusOr<std::vector<StoredEvent>> text = store_->ReadEventText(job.id, 0, 10);
  ASSERT_TRUE(text.ok());
  ASSERT_EQ(text->size(), 2u);
  ASSERT_TRUE((*text)[0].output);
  EXPECT_EQ(*(*text)[0].output, bytes);
  EXPECT_EQ(Json::parse((*text)[0].json), Json::parse(R"({"kind":"output","seq":1,"time":3.0})"));
  EXPECT_FALSE((*text)[1].output);
  EXPECT_EQ(store_->ReadEvents(job.id, 0, 10)->at(0).body["data"].get<std::string>(), bytes);
}

std::string ReadWhole(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Output bytes are written to the job's output log (one write per append),
// not into SQLite, and read back from there.
TEST_F(StoreTest, OutputBytesGoToTheJobsLogNotTheDatabase) {
  JobRecord job = NewJob("job-1");
  for (const char* piece : {"one\n", "two\n"}) {
    std::vector<NewEvent> events;
    events.emplace_back(Json{{"kind", "output"}}, piece);
    events.emplace_back(Json{{"kind", "metric"}, {"values", {{"loss", 1}}}});
    ASSERT_TRUE(store_->AppendEventsWithOutput(job.id, std::move(events), 1.0, nullptr).ok());
  }
  EXPECT_EQ(ReadWhole(dir_ / "output" / "job-1.out"), "one\ntwo\n");
  StatusOr<std::unique_ptr<sql::Db>> db = sql::Db::Open((dir_ / "state.db").string());
  ASSERT_TRUE(db.ok());
  StatusOr<sql::Stmt> blobs = (*db)->Prepare("SELECT COUNT(*) FROM events WHERE data IS NOT NULL");
  ASSERT_TRUE(blobs.ok() && blobs->Step().value());
  EXPECT_EQ(blobs->Int(0), 0);
  StatusOr<std::vector<StoredEvent>> text = store_->ReadEventText(job.id, 0, 10);
  ASSERT_TRUE(text.ok());
  ASSERT_EQ(text->size(), 4u);
  EXPECT_EQ((*text)[2].output, std::optional<std::string>("two\n"));
  EXPECT_FALSE((*text)[3].output) << "a metric after output has no bytes";
}

// Bytes written to the log whose rows were never committed (a transaction
// rolled back, or a server killed between the write and the commit) are
// never read, and the next output overwrites them: what is read is exactly
// what was stored, across a restart too.
TEST_F(StoreTest, OutputOfAnUncommittedAppendIsNeverRead) {
  JobRecord job = NewJob("job-1");
  auto append = [&](const std::string& bytes) {
    std::vector<NewEvent> events;
    events.emplace_back(Json{{"kind", "output"}}, bytes);
    return store_->AppendEventsWithOutput(job.id, std::move(events), 1.0, nullptr).status();
  };
  ASSERT_TRUE(append("kept 1\n").ok());
  Status rolled_back = store_->Transaction([&] {
    EXPECT_TRUE(append("ROLLED BACK\n").ok());
    return Internal("give up");
  });
  ASSERT_FALSE(rolled_back.ok());
  ASSERT_TRUE(append("kept 2\n").ok());
  // A killed server: bytes past the last commit, then a restart.
  store_.reset();
  {
    std::ofstream(dir_ / "output" / "job-1.out", std::ios::app)
        << "TORN GARBAGE WRITTEN BEFORE A KILL";
  }
  store_ = std::move(Store::Open((dir_ / "state.db").string())).value();
  ASSERT_TRUE(append("kept 3\n").ok());
  std::string all;
  for (const StoredEvent& e : store_->ReadEventText(job.id, 0, 10).value()) all += e.output.value();
  EXPECT_EQ(all, "kept 1\nkept 2\nkept 3\n");
}

// A log cut short (a power cut after the rows were committed) yields the
// bytes that are there instead of failing every read of the stream.
TEST_F(StoreTest, AnOutputLogCutShortYieldsWhatIsThere) {
  JobRecord job = NewJob("job-1");
  std::vector<NewEvent> events;
  events.emplace_back(Json{{"kind", "output"}}, "0123456789");
  events.emplace_back(Json{{"kind", "output"}}, "abcdef");
  ASSERT_TRUE(store_->AppendEventsWithOutput(job.id, std::move(events), 1.0, nullptr).ok());
  fs::resize_file(dir_ / "output" / "job-1.out", 12);
  StatusOr<std::vector<StoredEvent>> text = store_->ReadEventText(job.id, 0, 10);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  ASSERT_EQ(text->size(), 2u);
  EXPECT_EQ((*text)[0].output, std::optional<std::string>("0123456789"));
  EXPECT_EQ((*text)[1].output, std::optional<std::string>("ab"));
}

// A reader of a fast stream holds a bounded amount: ReadEventText stops
// once `max_bytes` are read (but always returns one event).
TEST_F(StoreTest, ReadEventTextStopsAtItsByteBound) {
  JobRecord job = NewJob("job-1");
  const std::string piece(1000, 'x');
  std::vector<NewEvent> events;
  for (int i = 0; i < 10; ++i) events.emplace_back(Json{{"kind", "output"}}, piece);
  ASSERT_TRUE(store_->AppendEventsWithOutput(job.id, std::move(events), 1.0, nullptr).ok());
  EXPECT_EQ(store_->ReadEventText(job.id, 0, 100, 2500)->size(), 3u);
  EXPECT_EQ(store_->ReadEventText(job.id, 0, 100, 1)->size(), 1u);
  EXPECT_EQ(store_->ReadEventText(job.id, 0, 100)->size(), 10u);
}

// Statements are cached per connection; running the same statement again
// while an earlier use is still open must not disturb either.
TEST_F(StoreTest, ReusedStatementsKeepWorkingWhenNested) {
  NewJob("job-1");
  NewJob("job-2");
  Status s = store_->Transaction([&]() -> Status {
    for (int i = 0; i < 50; ++i) {
      StatusOr<JobRecord> one = store_->GetJob("job-1");
      if (!one.ok()) return one.status();
      JobRecord changed = *one;
      changed.message = "pass " + std::to_string(i);
      YARD_RETURN_IF_ERROR(store_->UpdateJob(changed));
    }
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(store_->GetJob("job-1")->message, "pass 49");
  EXPECT_EQ(store_->JobsInStates({job_state::kRunning})->size(), 2u);
  EXPECT_EQ(store_->GetJob("nope").status().code(), Code::kNotFound);
  EXPECT_EQ(store_->GetJob("job-2")->id, "job-2") << "a failed lookup leaves the statement usable";
}

TEST_F(StoreTest, AFailedTransactionRollsBackAndTheNextOneWorks) {
  JobRecord job = NewJob("job-1");
  Status s = store_->Transaction([&]() -> Status {
    job.message = "not kept";
    YARD_RETURN_IF_ERROR(store_->UpdateJob(job));
    return Internal("boom");
  });
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(store_->GetJob("job-1")->message, "");
  job.message = "kept";
  EXPECT_TRUE(store_->Transaction([&] { return store_->UpdateJob(job); }).ok());
  EXPECT_EQ(store_->GetJob("job-1")->message, "kept");
}

// Found with fuzz/spool_fuzzer.cc: a record whose "kind" was not a string
// made nlohmann::json throw inside the controller's transaction, which then
// stayed open: every later write joined it ("nested") and none was ever
// committed. A throwing `fn` rolls back too, and the exception goes on.
TEST_F(StoreTest, ATransactionThatThrowsRollsBackAndTheNextOneCommits) {
  JobRecord job = NewJob("job-1");
  EXPECT_THROW((void)store_->Transaction([&]() -> Status {
    job.message = "not kept";
    YARD_RETURN_IF_ERROR(store_->UpdateJob(job));
    throw std::runtime_error("a bug in the caller");
  }),
               std::runtime_error);
  EXPECT_EQ(store_->GetJob("job-1")->message, "");
  job.message = "kept";
  EXPECT_TRUE(store_->Transaction([&] { return store_->UpdateJob(job); }).ok());
  // Committed: another connection sees it.
  StatusOr<std::unique_ptr<Store>> other = Store::Open((dir_ / "state.db").string());
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_EQ((*other)->GetJob("job-1")->message, "kept");
}

// A full disk inside a transaction whose code only logs the failed write
// (as the controller's group commits do): none of it is stored, the error
// comes back, and the transaction is not left open (every later one would
// join it and never be stored).
TEST_F(StoreTest, AWriteThatFailsInsideATransactionRollsBackAllOfIt) {
  JobRecord job = NewJob("job-1");
  ASSERT_TRUE(store_->SetMaxPagesForTesting(1).ok());  // no room to grow: a full disk
  Status logged_only;
  Status s = store_->Transaction([&]() -> Status {
    job.message = "made in the same transaction";
    EXPECT_TRUE(store_->UpdateJob(job).ok());
    // (Output bytes go to the job's log, not SQLite: a big JSON event fills it.)
    NewEvent big(Json{{"kind", "metric"}, {"values", {{"x", std::string(4 << 20, 'x')}}}});
    logged_only = store_->AppendEventsWithOutput(job.id, {big}, 1.0, &job).status();
    return Status::Ok();  // the failure above is only logged
  });
  EXPECT_EQ(logged_only.code(), Code::kInsufficientStorage) << logged_only.ToString();
  EXPECT_EQ(s.code(), Code::kInsufficientStorage) << s.ToString();
  EXPECT_EQ(store_->GetJob("job-1")->message, "") << "nothing of the transaction is stored";
  EXPECT_TRUE(store_->ReadEvents("job-1", 0, 10)->empty());
  // Room again: the next transaction is a transaction of its own and commits.
  ASSERT_TRUE(store_->SetMaxPagesForTesting(0).ok());
  job.message = "kept";
  EXPECT_TRUE(store_->Transaction([&] { return store_->UpdateJob(job); }).ok());
  store_.reset();  // another connection sees it: it was committed
  store_ = std::move(Store::Open((dir_ / "state.db").string())).value();
  EXPECT_EQ(store_->GetJob("job-1")->message, "kept");
}

// The methods a Transaction's `fn` calls join it only on the thread running
// it: another thread's call waits for the commit and never sees (or joins)
// the transaction's uncommitted writes. Also: a Transaction nested in `fn`,
// and an exception out of `fn`, leave the lock free for other threads.
TEST_F(StoreTest, OtherThreadsWaitForATransactionAndNeverJoinIt) {
  JobRecord job = NewJob("job-1");
  std::promise<void> inside;
  std::future<std::string> seen;
  Status s = store_->Transaction([&]() -> Status {
    job.message = "written inside";
    YARD_RETURN_IF_ERROR(store_->UpdateJob(job));
    YARD_RETURN_IF_ERROR(store_->Transaction([&] { return store_->UpdateJob(job); }));
    seen = std::async(std::launch::async, [&] {
      inside.set_value();
      return store_->GetJob("job-1")->message;  // blocks until the commit
    });
    inside.get_future().wait();
    // The reader is started and must be held off: it cannot finish yet.
    EXPECT_EQ(seen.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(seen.get(), "written inside");

  EXPECT_THROW(store_->Transaction([&]() -> Status { throw std::runtime_error("boom"); }),
               std::runtime_error);
  auto other = std::async(std::launch::async, [&] { return store_->GetJob("job-1").ok(); });
  ASSERT_EQ(other.wait_for(std::chrono::seconds(60)), std::future_status::ready)
      << "a throwing fn left the lock held";
  EXPECT_TRUE(other.get());
}

// Dropping what 5 -> 6 adds turns today's file into one of version 5.
const std::string kVersion6Columns =
    "ALTER TABLE events DROP COLUMN out_off; ALTER TABLE events DROP COLUMN out_len; ";
// Dropping what 4 -> 5 (and 5 -> 6) adds turns today's file into one of version 4.
const std::string kVersion5Columns =
    kVersion6Columns +
    "ALTER TABLE tokens DROP COLUMN scope; ALTER TABLE tokens DROP COLUMN expires_at; "
    "ALTER TABLE tokens DROP COLUMN last_used; ALTER TABLE tokens DROP COLUMN revoked_at; ";

// Output stored by a version-5 server (bytes in events.data) still reads
// after the migration, beside output stored since in the job's log.
TEST_F(StoreTest, AVersion5FilesOutputReadsBesideNewOutput) {
  NewJob("job-1");
  store_.reset();
  std::string path = (dir_ / "state.db").string();
  {
    StatusOr<std::unique_ptr<sql::Db>> db = sql::Db::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(
        (*db)
            ->Exec(kVersion6Columns +
                   "INSERT INTO events(job_id, seq, time, kind, body, data) VALUES("
                   "'job-1', 1, 1.0, 'output', '{\"kind\":\"output\",\"seq\":1,\"time\":1.0}', "
                   "X'6f6c640a'); UPDATE jobs SET last_seq = 1; PRAGMA user_version = 5;")
            .ok());
  }
  StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  store_ = std::move(store).value();
  std::vector<NewEvent> events;
  events.emplace_back(Json{{"kind", "output"}}, "new\n");
  ASSERT_TRUE(store_->AppendEventsWithOutput("job-1", std::move(events), 2.0, nullptr).ok());
  StatusOr<std::vector<StoredEvent>> text = store_->ReadEventText("job-1", 0, 10);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  ASSERT_EQ(text->size(), 2u);
  EXPECT_EQ((*text)[0].output, std::optional<std::string>("old\n"));
  EXPECT_EQ((*text)[1].output, std::optional<std::string>("new\n"));
}

TEST_F(StoreTest, AVersion3FileGetsCredentialColumnsAndLosesItsSharedAgentTokens) {
  // A version-3 file: today's minus what 3 -> 4 adds, with an instance and
  // a shared agent token of that time.
  InstanceRecord inst;
  inst.id = "inst-old";
  inst.user = "ann";
  inst.state = "idle";
  ASSERT_TRUE(store_->UpsertInstance(inst).ok());
  StatusOr<std::string> user_token = store_->CreateToken("ann", "admin");
  ASSERT_TRUE(user_token.ok());
  store_.reset();
  std::string path = (dir_ / "state.db").string();
  {
    StatusOr<std::unique_ptr<sql::Db>> db = sql::Db::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)
                    ->Exec("ALTER TABLE instances DROP COLUMN bootstrap_hash; "
                           "ALTER TABLE instances DROP COLUMN credential_hash; " +
                           kVersion5Columns +
                           "INSERT INTO tokens(hash, user, kind, created_at) VALUES('h', 'agents', "
                           "'agent', 0); "
                           "PRAGMA user_version = 3;")
                    .ok());
  }
  StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  store_ = std::move(store).value();
  StatusOr<InstanceRecord> read = store_->GetInstance("inst-old");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->user, "ann");
  EXPECT_EQ(read->bootstrap_hash, "");
  EXPECT_EQ(read->credential_hash, "");
  EXPECT_TRUE(store_->FindToken(*user_token).ok()) << "user tokens stay";
  EXPECT_EQ(store_->CreateToken("agents", "agent").status().code(), Code::kInvalidArgument);
  inst.bootstrap_hash = "b";
  inst.credential_hash = "c";
  ASSERT_TRUE(store_->UpsertInstance(inst).ok());
  EXPECT_EQ(store_->GetInstance("inst-old")->credential_hash, "c");
  StatusOr<std::unique_ptr<sql::Db>> db = sql::Db::Open(path);
  ASSERT_TRUE(db.ok());
  StatusOr<sql::Stmt> agents = (*db)->Prepare("SELECT COUNT(*) FROM tokens WHERE kind = 'agent'");
  ASSERT_TRUE(agents.ok());
  ASSERT_TRUE(agents->Step().value());
  EXPECT_EQ(agents->Int(0), 0) << "the shared agent token is gone";
}

TEST_F(StoreTest, AVersion4FilesTokensKeepFullScopeAndNeverExpire) {
  store_.reset();
  std::string path = (dir_ / "state.db").string();
  {
    StatusOr<std::unique_ptr<sql::Db>> db = sql::Db::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)
                    ->Exec(kVersion5Columns +
                           "INSERT INTO tokens(hash, user, kind, created_at) "
                           "VALUES('" +
                           Sha256Hex("yut_old") +
                           "', 'ann', 'user', 5), "
                           "('" +
                           Sha256Hex("yut_scraper") +
                           "', 'prom', 'metrics', 6); "
                           "PRAGMA user_version = 4;")
                    .ok());
  }
  StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  store_ = std::move(store).value();
  StatusOr<TokenRecord> old = store_->FindToken("yut_old");
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ(old->user, "ann");
  EXPECT_EQ(old->scope, "admin") << "a token of before scopes could do everything: it still can";
  EXPECT_EQ(old->expires_at, 0);
  EXPECT_EQ(old->revoked_at, 0);
  EXPECT_EQ(old->created_at, 5);
  EXPECT_EQ(store_->FindToken("yut_scraper")->scope, "metrics");
  StatusOr<std::vector<TokenRecord>> all = store_->ListTokens("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 2u);
  EXPECT_EQ(store_->ListTokens("ann")->size(), 1u);
}

TEST_F(StoreTest, AJobsScheduleSurvivesTheStoreFieldByField) {
  JobRecord job = NewJob("j1");
  job.sched.machine = 2;
  job.sched.attempts = {{"p2.xlarge:spot", "no capacity"}, {"p3.2xlarge", "quota"}};
  job.sched.requested_at = 10.5;
  job.sched.held_capacity = "local";
  job.sched.waiting_since = 3.25;
  job.sched.next_check = 13;
  job.sched.run_instance = "inst-1";
  job.sched.restarts = 1;
  job.sched.resume_from = Json{{"dir", "checkpoints"}, {"entry", {{"path", "a.pt"}}}};
  job.sched.no_pipeline = true;
  job.sched.pipelined_at = 11;
  job.sched.pipelined_requested_at = 9;
  job.sched.output_bytes = 1234;
  job.sched.output_capped = true;
  ASSERT_TRUE(store_->UpdateJob(job).ok());
  StatusOr<JobRecord> back = store_->GetJob("j1");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->sched.ToJson(), job.sched.ToJson());
  EXPECT_EQ(back->sched.attempts.size(), 2u);
  EXPECT_EQ(back->sched.attempts[1].reason, "quota");
  EXPECT_EQ(back->sched.requested_at, std::optional<double>(10.5));
  EXPECT_EQ(back->sched.held_capacity, std::optional<std::string>("local"));
  EXPECT_EQ(back->sched.resume_from, job.sched.resume_from);
}

TEST(JobScheduleTest, UnsetIsAbsentAndUnknownOrMistypedKeysNeitherThrowNorVanish) {
  JobSchedule empty;
  EXPECT_EQ(empty.ToJson(), (Json{{"machine", 0}}));
  // An older server's column, a newer server's key, and a value of the
  // wrong type (read as unset, where `.get<double>()` used to throw).
  Json stored = {{"machine", 1},
                 {"requested_at", "soon"},
                 {"waiting_since", 4.0},
                 {"attempts", {{{"machine", "a"}, {"reason", "r"}}}},
                 {"future_key", {1, 2}}};
  JobSchedule s = JobSchedule::FromJson(stored);
  EXPECT_EQ(s.machine, 1u);
  EXPECT_FALSE(s.requested_at.has_value());
  EXPECT_EQ(s.waiting_since, std::optional<double>(4.0));
  ASSERT_EQ(s.attempts.size(), 1u);
  EXPECT_EQ(s.attempts[0].machine, "a");
  Json again = s.ToJson();
  EXPECT_EQ(again["future_key"], (Json{1, 2})) << "a newer server's state is kept";
  EXPECT_FALSE(again.contains("requested_at"));
  EXPECT_EQ(JobSchedule::FromJson(Json("not an object")).ToJson(), empty.ToJson());
}

TEST(SqlDbTest, TheSameStatementOpenTwiceAtOnceGivesTwoCursors) {
  StatusOr<std::unique_ptr<sql::Db>> db = sql::Db::Open(":memory:");
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE((*db)->Exec("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1), (2);").ok());
  const char* kSelect = "SELECT v FROM t ORDER BY v";
  StatusOr<sql::Stmt> outer = (*db)->Prepare(kSelect);
  ASSERT_TRUE(outer.ok());
  ASSERT_TRUE(outer->Step().value());
  EXPECT_EQ(outer->Int(0), 1);
  {
    // The cached statement is busy: this one is a fresh copy from the start.
    StatusOr<sql::Stmt> inner = (*db)->Prepare(kSelect);
    ASSERT_TRUE(inner.ok());
    ASSERT_TRUE(inner->Step().value());
    EXPECT_EQ(inner->Int(0), 1);
  }
  ASSERT_TRUE(outer->Step().value());
  EXPECT_EQ(outer->Int(0), 2) << "the first cursor was not disturbed";
}

TEST(SqlDbTest, AReturnedStatementStartsOverWithoutOldBindings) {
  StatusOr<std::unique_ptr<sql::Db>> db = sql::Db::Open(":memory:");
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE((*db)->Exec("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1), (2);").ok());
  const char* kSelect = "SELECT count(*) FROM t WHERE ?1 IS NULL OR v = ?1";
  {
    StatusOr<sql::Stmt> first = (*db)->Prepare(kSelect);
    first->Bind(1, int64_t{2});
    ASSERT_TRUE(first->Step().value());
    EXPECT_EQ(first->Int(0), 1);
  }  // left mid-result, with a binding: handed back reset and cleared
  StatusOr<sql::Stmt> again = (*db)->Prepare(kSelect);
  ASSERT_TRUE(again->Step().value());
  EXPECT_EQ(again->Int(0), 2);
}

// YARD_HOME on a small tmpfs of its own (as tests/soak/test_disk_full.py
// makes one), for the store to run out of room; skipped where mounting is
// not allowed (it needs root or CAP_SYS_ADMIN).
class StoreOnASmallDiskTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "store_disk_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    mnt_ = pattern;
    if (::mount("tmpfs", mnt_.c_str(), "tmpfs", 0, "size=4m") != 0)
      GTEST_SKIP() << "cannot mount a tmpfs at " << mnt_ << ": " << std::strerror(errno);
    mounted_ = true;
    home_ = mnt_ / "home";
    fs::create_directories(home_);
  }
  void TearDown() override {
    if (mounted_) {
      EXPECT_EQ(::umount(mnt_.c_str()), 0) << std::strerror(errno);
    }
    fs::remove_all(mnt_);
  }
  // Writes a filler file until the disk has no byte left.
  void Fill() {
    int fd = ::open((mnt_ / "filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    std::string block(4096, 'f');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    EXPECT_EQ(errno, ENOSPC);
    ::close(fd);
  }
  void Unfill() { fs::remove(mnt_ / "filler"); }

  fs::path mnt_, home_;
  bool mounted_ = false;
};

// The output a job sends while YARD_HOME's disk is full: its output log is
// not written, and the error says which folder is full and what to do
// (507 insufficient_storage); nothing of the batch is stored, and once
// there is room the next batch is stored after the earlier ones.
TEST_F(StoreOnASmallDiskTest, AFullDiskNamesTheOutputLogsFolder) {
  std::unique_ptr<Store> store = Store::Open((home_ / "state.db").string()).value();
  JobRecord job;
  job.id = "job-1";
  job.user = "ann";
  job.state = job_state::kRunning;
  ASSERT_TRUE(store->InsertJob(job).ok());
  auto append = [&](const std::string& bytes) {
    std::vector<NewEvent> events;
    events.emplace_back(Json{{"kind", "output"}}, bytes);
    return store->AppendEventsWithOutput(job.id, std::move(events), 1.0, nullptr).status();
  };
  ASSERT_TRUE(append("before\n").ok());
  Fill();
  Status full = append(std::string(64 << 10, 'x') + "\n");
  std::string output = (home_ / "output").string();
  EXPECT_EQ(full.code(), Code::kInsufficientStorage) << full.ToString();
  EXPECT_EQ(HttpStatusFor(full.code()), 507);
  EXPECT_NE(full.message().find("output log " + output + "/job-1.out"), std::string::npos)
      << full.message();
  EXPECT_NE(full.message().find("the disk holding " + output +
                                " is full. Free space there (`df -h " + output + "`"),
            std::string::npos)
      << full.message();
  Unfill();
  ASSERT_TRUE(append("after\n").ok());
  std::string text;
  for (const EventRecord& e : store->ReadEvents(job.id, 0, 10).value())
    text += e.body.value("data", "");
  EXPECT_EQ(text, "before\nafter\n") << "nothing of the failed batch";
}

TEST(SqlDbTest, AFullDiskSaysWhichFolderAndWhatToDoAndWritesAgainOnceThereIsRoom) {
  test_support::TempDir tmp;
  fs::path dir = tmp.path();
  {
    StatusOr<std::unique_ptr<sql::Db>> db = sql::Db::Open((dir / "state.db").string());
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec("CREATE TABLE t (v BLOB); INSERT INTO t VALUES (zeroblob(100));").ok());
    // SQLite's own way of running out of room: the same SQLITE_FULL as a full disk.
    ASSERT_TRUE((*db)->Exec("PRAGMA max_page_count = 8;").ok());
    Status full = (*db)->Exec("INSERT INTO t VALUES (zeroblob(1000000));");
    EXPECT_EQ(full.code(), Code::kInsufficientStorage) << full.ToString();
    EXPECT_EQ(HttpStatusFor(full.code()), 507)
        << "the server's disk, not the 413 of a request too large";
    EXPECT_EQ(std::string(CodeName(full.code())), "insufficient_storage");
    EXPECT_NE(full.message().find("the disk holding " + dir.string() + " is full"),
              std::string::npos)
        << full.message();
    EXPECT_NE(full.message().find("Free space there"), std::string::npos) << full.message();
    ASSERT_TRUE((*db)->Exec("PRAGMA max_page_count = 1000000;").ok());
    EXPECT_TRUE((*db)->Exec("INSERT INTO t VALUES (zeroblob(1000000));").ok())
        << "room again: writes work";
  }
}

}  // namespace
}  // namespace yard
