#include "agent/job_folders.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "agent/agent_testing.h"
#include "agent/job_setup.h"

namespace yard {
namespace {

namespace fs = std::filesystem;
using agent_testing::TempDir;

class JobFoldersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    jobs_ = dir_.path() + "/jobs";
    spool_ = dir_.path() + "/spool";
    fs::create_directories(jobs_);
    fs::create_directories(spool_);
  }
  void Folder(const std::string& name) {
    fs::create_directories(jobs_ + "/" + name + "/checkpoints");
    std::ofstream(jobs_ + "/" + name + "/checkpoints/epoch-001.pt") << "weights";
  }
  void Spooled(const std::string& name) { std::ofstream(spool_ + "/" + name + ".jsonl") << "{}\n"; }
  int Remove(const std::string& keep) {
    return RemoveDeliveredJobFolders(
        jobs_, keep, [this](const std::string& job, long long attempt) {
          return spool_ + "/" + job + "-" + std::to_string(attempt) + ".jsonl";
        });
  }
  std::set<std::string> Left() {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(jobs_)) out.insert(e.path().filename().string());
    return out;
  }

  TempDir dir_;
  std::string jobs_, spool_;
};

TEST_F(JobFoldersTest, DeliveredAttemptsGoUndeliveredAndTheKeptOneStay) {
  Folder("job-aaa-1");  // delivered
  Folder("job-aaa-2");  // delivered (a later attempt of the same job)
  Folder("job-bbb-1");  // records still in the spool
  Spooled("job-bbb-1");
  Folder("job-ccc-1");  // about to start: kept although it has no spool file yet
  EXPECT_EQ(Remove("job-ccc-1"), 2);
  EXPECT_EQ(Left(), (std::set<std::string>{"job-bbb-1", "job-ccc-1"}));
}

TEST_F(JobFoldersTest, FoldersThatAreNotAttemptsAreLeftAlone) {
  fs::create_directories(jobs_ + "/notes");
  fs::create_directories(jobs_ + "/job-x-");
  fs::create_directories(jobs_ + "/job-x-0");
  std::ofstream(jobs_ + "/job-y-1") << "a file, not a folder";
  EXPECT_EQ(Remove(""), 0);
  EXPECT_EQ(Left(), (std::set<std::string>{"notes", "job-x-", "job-x-0", "job-y-1"}));
}

// An attempt's folder as the agent makes it (JobPaths::Create), with what
// a job leaves in it.
JobPaths UsedFolder(const std::string& work_dir, const std::string& job) {
  JobPaths p = JobPaths::For(work_dir, job, 1);
  EXPECT_TRUE(p.Create().ok());
  fs::create_directories(p.work + "/data/deep");
  std::ofstream(p.work + "/data/deep/x.csv") << "1,2\n";
  std::ofstream(p.checkpoints + "/epoch-001.pt") << "weights";
  std::ofstream(p.metrics) << "{}\n";
  return p;
}

bool EmptyFolderAt(const std::string& path) {
  return fs::is_directory(fs::symlink_status(path)) && fs::is_empty(path);
}

std::set<std::string> Names(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

TEST_F(JobFoldersTest, DeliveredFoldersAreEmptiedIntoSparesThatTheNextAttemptsTake) {
  UsedFolder(dir_.path(), "job-aaa");
  UsedFolder(dir_.path(), "job-bbb");
  UsedFolder(dir_.path(), "job-ccc");
  EXPECT_EQ(Remove(""), 3);
  // Two became spares, the third was removed: two spares are enough.
  std::set<std::string> spares(std::begin(kSpareJobFolders), std::end(kSpareJobFolders));
  ASSERT_EQ(spares.size(), 2u);
  EXPECT_EQ(Left(), spares);
  for (const std::string& spare : spares) {
    std::string path = jobs_ + "/" + spare;
    EXPECT_EQ(Names(path), (std::set<std::string>{"work", "checkpoints", "logs", "outputs"}));
    for (const std::string& sub : Names(path))
      EXPECT_TRUE(EmptyFolderAt(path + "/" + sub)) << spare << "/" << sub;
  }

  JobPaths next = JobPaths::For(dir_.path(), "job-ddd", 1);
  ASSERT_TRUE(next.Create().ok());
  EXPECT_EQ(Left().size(), 2u) << "a spare was taken";
  EXPECT_TRUE(Left().count("job-ddd-1"));
  for (const std::string* d : {&next.work, &next.checkpoints, &next.logs, &next.outputs})
    EXPECT_TRUE(EmptyFolderAt(*d)) << *d;
  EXPECT_FALSE(fs::exists(next.metrics));
  JobPaths second = JobPaths::For(dir_.path(), "job-eee", 1);
  ASSERT_TRUE(second.Create().ok());
  EXPECT_EQ(Left(), (std::set<std::string>{"job-ddd-1", "job-eee-1"})) << "both spares taken";
  // Without a spare the folders are made.
  JobPaths other = JobPaths::For(dir_.path(), "job-fff", 1);
  ASSERT_TRUE(other.Create().ok());
  EXPECT_TRUE(EmptyFolderAt(other.outputs));
  // A folder that is there already (a retried start) is kept as it is.
  std::ofstream(other.work + "/note.txt") << "kept";
  UsedFolder(dir_.path(), "job-ggg");
  EXPECT_EQ(Remove("job-fff-1"), 3);  // ddd, eee (spares), ggg (removed)
  ASSERT_TRUE(other.Create().ok());
  EXPECT_TRUE(fs::exists(other.work + "/note.txt"));
  EXPECT_EQ(Left(), (std::set<std::string>{"job-fff-1", ".spare", ".spare.1"}));
}

TEST_F(JobFoldersTest, AFolderWithALinkForOneOfItsFoldersIsRemovedNotSpared) {
  // A job replaced its outputs folder by a link out of its folder: what the
  // link leads to stays untouched, and no later attempt gets the link.
  std::string outside = dir_.path() + "/outside";
  fs::create_directories(outside);
  std::ofstream(outside + "/keep.txt") << "not the job's";
  JobPaths p = UsedFolder(dir_.path(), "job-aaa");
  fs::remove(p.outputs);
  fs::create_directory_symlink(outside, p.outputs);
  EXPECT_EQ(Remove(""), 1);
  EXPECT_EQ(Left(), std::set<std::string>{});
  EXPECT_TRUE(fs::exists(outside + "/keep.txt"));
}

TEST_F(JobFoldersTest, AFolderWhosePermissionsTheJobChangedIsRemovedNotSpared) {
  JobPaths p = UsedFolder(dir_.path(), "job-aaa");
  fs::permissions(p.work, fs::perms::owner_all);  // 0700: the next attempt would inherit it
  EXPECT_EQ(Remove(""), 1);
  EXPECT_EQ(Left(), std::set<std::string>{});
}

TEST_F(JobFoldersTest, TheSweeperListsOnceThenFollowsTheAttemptsItWasToldOf) {
  Folder("job-old-1");  // left by an earlier run of the agent, delivered
  Folder("job-old-2");  // left too, its records not delivered yet
  Spooled("job-old-2");
  DeliveredFolderSweeper sweeper(jobs_, [this](const std::string& job, long long attempt) {
    return spool_ + "/" + job + "-" + std::to_string(attempt) + ".jsonl";
  });
  Folder("job-aaa-1");
  EXPECT_EQ(sweeper.Sweep("job-aaa-1"), 1) << "job-old-1, found by the one listing";
  EXPECT_EQ(Left(), (std::set<std::string>{"job-old-2", "job-aaa-1"}));
  EXPECT_EQ(sweeper.waiting(), 2u) << "job-old-2 and job-aaa-1";

  // job-aaa-1 runs on (its spool file exists), then is delivered.
  Spooled("job-aaa-1");
  Folder("job-bbb-1");
  EXPECT_EQ(sweeper.Sweep("job-bbb-1"), 0);
  fs::remove(spool_ + "/job-aaa-1.jsonl");
  fs::remove(spool_ + "/job-old-2.jsonl");
  Spooled("job-bbb-1");
  // A folder nobody told the sweeper of (not an attempt this agent started)
  // is not looked for between starts.
  Folder("job-zzz-1");
  Folder("job-ccc-1");
  EXPECT_EQ(sweeper.Sweep("job-ccc-1"), 2) << "job-aaa-1 and job-old-2";
  EXPECT_EQ(Left(), (std::set<std::string>{"job-bbb-1", "job-ccc-1", "job-zzz-1"}));
  EXPECT_EQ(sweeper.waiting(), 2u) << "job-bbb-1 and job-ccc-1";

  // A folder removed by someone else is forgotten; a folder that could not
  // be removed (its spool file back) is looked at again next time.
  fs::remove_all(jobs_ + "/job-ccc-1");
  Folder("job-ddd-1");
  EXPECT_EQ(sweeper.Sweep("job-ddd-1"), 0);
  EXPECT_EQ(sweeper.waiting(), 2u) << "job-bbb-1 and job-ddd-1";
  fs::remove(spool_ + "/job-bbb-1.jsonl");
  Folder("job-eee-1");
  EXPECT_EQ(sweeper.Sweep("job-eee-1"), 2) << "job-bbb-1 and job-ddd-1 (no spool file)";
  EXPECT_EQ(sweeper.waiting(), 1u);
}

TEST_F(JobFoldersTest, AMissingJobsFolderIsNoError) {
  EXPECT_EQ(RemoveDeliveredJobFolders(dir_.path() + "/none", "",
                                      [](const std::string&, long long) { return std::string(); }),
            0);
}

}  // namespace
}  // namespace yard
