#include "agent/job_setup.h"

#include <gtest/gtest.h>

#include <fstream>

#include "agent/agent_testing.h"
#include "common/blob_store.h"
#include "common/hashing.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

Json EntryJson(const std::string& path) {
  FileEntry e;
  e.path = path;
  e.size = 3;
  e.chunks.push_back({Sha256Hex("abc"), 3});
  return FileEntryToJson(e);
}

TEST(AssignmentTest, ParsesEveryField) {
  Json j = {{"job", "j1"},
            {"attempt", 2},
            {"command", {"python3", "train.py"}},
            {"bundle", Manifest{}.ToJson()},
            {"env", {{"A", "1"}}},
            {"resume_from", {{"dir", "checkpoints"}, {"entry", EntryJson("e/3.ckpt")}}}};
  Assignment a;
  ASSERT_TRUE(Assignment::Parse(j, &a).ok());
  EXPECT_EQ(a.job, "j1");
  EXPECT_EQ(a.attempt, 2);
  EXPECT_EQ(a.command, (std::vector<std::string>{"python3", "train.py"}));
  EXPECT_EQ(a.env, (EnvMap{{"A", "1"}}));
  ASSERT_TRUE(a.resume_from);
  EXPECT_EQ(a.resume_from->path, "e/3.ckpt");
}

TEST(AssignmentTest, ResumeFromMayBeABareEntry) {
  Json j = {{"job", "j"}, {"attempt", 1}, {"command", {"true"}}, {"resume_from", EntryJson("c")}};
  Assignment a;
  ASSERT_TRUE(Assignment::Parse(j, &a).ok());
  EXPECT_EQ(a.resume_from->path, "c");
}

TEST(AssignmentTest, BadFieldsAreNamedButJobAndAttemptKept) {
  Assignment a;
  Status st = Assignment::Parse({{"job", "j"}, {"attempt", 4}, {"command", "ls"}}, &a);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("command"), std::string::npos);
  EXPECT_EQ(a.job, "j");
  EXPECT_EQ(a.attempt, 4);
  EXPECT_FALSE(Assignment::Parse({{"attempt", 1}}, &a).ok());
  Json env_not_strings = {{"job", "j"}, {"attempt", 1}, {"command", {"x"}}, {"env", {{"A", 1}}}};
  EXPECT_FALSE(Assignment::Parse(env_not_strings, &a).ok());
  Json resume_elsewhere = {{"job", "j"},
                           {"attempt", 1},
                           {"command", {"x"}},
                           {"resume_from", {{"dir", "logs"}, {"entry", EntryJson("c")}}}};
  EXPECT_FALSE(Assignment::Parse(resume_elsewhere, &a).ok());
}

TEST(JobPathsTest, AbsoluteAndSafe) {
  JobPaths p = JobPaths::For("relative/work", "../evil", 3);
  EXPECT_EQ(p.root.front(), '/');
  EXPECT_EQ(p.root.find("/../"), std::string::npos);
  EXPECT_NE(p.root.find("/jobs/_.._evil-3"), std::string::npos) << p.root;
  EXPECT_EQ(p.metrics, p.root + "/metrics.jsonl");
}

// On the server's machine a bundle's chunks come from the server's blob
// store: nothing is fetched (the client here points at no server at all)
// and nothing enters the agent's own cache.
TEST(PrepareJobFolderTest, ChunksInTheServersStoreAreCopiedNotFetched) {
  test_support::TempDir dir;
  StatusOr<BlobStore> server = BlobStore::Open(dir.path() + "/home/blobs");
  StatusOr<BlobStore> own = BlobStore::Open(dir.path() + "/agent/chunks");
  ASSERT_TRUE(server.ok() && own.ok());
  std::string a = std::string(300000, 'a'), b = "bee";
  for (const std::string* bytes : {&a, &b})
    ASSERT_TRUE(server->Put(Sha256Hex(*bytes), *bytes).ok());
  Assignment job;
  job.job = "j";
  job.attempt = 1;
  FileEntry e;
  e.path = "data/x.npy";
  e.mode = 0644;
  e.size = a.size() + b.size();
  e.chunks = {{Sha256Hex(a), a.size()}, {Sha256Hex(b), b.size()}};
  job.bundle.files.push_back(e);
  HttpClient nowhere("http://127.0.0.1:1", "token");
  StopSignal stop;
  stop.Notify();  // a fetch would give up at once instead of retrying
  ChunkCache cache(*own, &nowhere, &stop);
  cache.UseServerStore(*server);
  JobPaths paths = JobPaths::For(dir.path() + "/agent", "j", 1);
  StatusOr<std::string> resume = PrepareJobFolder(job, paths, cache);
  ASSERT_TRUE(resume.ok()) << resume.status().ToString();
  std::ifstream in(paths.work + "/data/x.npy", std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), a + b);
  EXPECT_TRUE(own->Missing({Sha256Hex(a), Sha256Hex(b)}).size() == 2) << "nothing was cached";
}

TEST(JobEnvironmentTest, LaterSourcesWin) {
  Assignment a;
  a.job = "j";
  a.env = {{"B", "assign"}, {"YARD_JOB_ID", "forged"}};
  JobPaths p = JobPaths::For("/w", "j", 1);
  EnvMap env = JobEnvironment({{"A", "agent"}, {"B", "agent"}, {"YARD_RESUME_FROM", "stale"}},
                              {{"B", "config"}, {"C", "config"}}, a, p, "");
  EXPECT_EQ(env["A"], "agent");
  EXPECT_EQ(env["B"], "assign");
  EXPECT_EQ(env["C"], "config");
  EXPECT_EQ(env["YARD_JOB_ID"], "j");
  EXPECT_EQ(env["PYTHONUNBUFFERED"], "1");
  EXPECT_EQ(env["YARD_METRICS"], "/w/jobs/j-1/metrics.jsonl");
  EXPECT_EQ(env.count("YARD_RESUME_FROM"), 0u);
  env = JobEnvironment({}, {}, a, p, "/w/jobs/j-1/checkpoints/x");
  EXPECT_EQ(env["YARD_RESUME_FROM"], "/w/jobs/j-1/checkpoints/x");
}

TEST(JobEnvironmentTest, EnvMapFromSplitsAtTheFirstEquals) {
  EXPECT_EQ(EnvMapFrom({"A=1", "B=x=y", "junk", "=v"}), (EnvMap{{"A", "1"}, {"B", "x=y"}}));
}

}  // namespace
}  // namespace yard
