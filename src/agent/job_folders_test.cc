#include "agent/job_folders.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "agent/agent_testing.h"

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

TEST_F(JobFoldersTest, AMissingJobsFolderIsNoError) {
  EXPECT_EQ(RemoveDeliveredJobFolders(dir_.path() + "/none", "",
                                      [](const std::string&, long long) { return std::string(); }),
            0);
}

}  // namespace
}  // namespace yard
