#include "server/blob_collector.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/hashing.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class BlobCollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::move(Store::Open((dir_ / "state.db").string())).value();
    blobs_ =
        std::make_unique<BlobStore>(std::move(BlobStore::Open((dir_ / "blobs").string())).value());
  }

  // A chunk uploaded by ann `age` ago.
  std::string Chunk(const std::string& data, fs::file_time_type::duration age) {
    std::string h = Sha256Hex(data);
    EXPECT_TRUE(blobs_->Put(h, data).ok());
    EXPECT_TRUE(store_->AddBlobOwners("ann", {h}).ok());
    fs::last_write_time(blobs_->PathOf(h), Now() - age);
    return h;
  }
  static fs::file_time_type Now() { return fs::file_time_type::clock::now(); }

  test_support::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  std::unique_ptr<Store> store_;
  std::unique_ptr<BlobStore> blobs_;
};

TEST_F(BlobCollectorTest, RemovesOnlyOldChunksThatNothingNames) {
  std::string orphan = Chunk("uploaded for a submit that never came", 25h);
  std::string fresh = Chunk("uploaded a minute ago, its submit is on the way", 1min);
  std::string bundle = Chunk("print('a job's bundle')", 48h);
  std::string resume = Chunk("a checkpoint a requeued job resumes from", 48h);
  std::string artifact = Chunk("the newest version of a checkpoint", 48h);
  std::string older = Chunk("an older version, named by its artifact event only", 48h);
  JobRecord job;
  job.id = "job-1";
  job.user = "ann";
  job.state = job_state::kSucceeded;
  job.spec = {{"bundle", {{"files", {{{"path", "train.py"}, {"chunks", {{bundle, 23}}}}}}}}};
  job.sched.resume_from = Json{{"entry", {{"chunks", {{resume, 40}}}}}};
  ASSERT_TRUE(store_->InsertJob(job).ok());
  ASSERT_TRUE(
      store_
          ->UpsertArtifact("job-1", "checkpoints", {{"path", "c"}, {"chunks", {{artifact, 34}}}}, 7)
          .ok());
  ASSERT_TRUE(store_
                  ->AppendEvents(
                      "job-1", {Json{{"kind", "artifact"}, {"entry", {{"chunks", {{older, 50}}}}}}},
                      1.0, nullptr)
                  .ok());
  // A half-written upload of a server that died, and one being written now.
  fs::path dead = fs::path(blobs_->root()) / "ab" / ".tmp-abababababababab-1-0";
  fs::path live = fs::path(blobs_->root()) / "ab" / ".tmp-abababababababab-2-0";
  fs::create_directories(dead.parent_path());
  for (const fs::path& p : {dead, live}) std::ofstream(p) << "half";
  fs::last_write_time(dead, Now() - 30h);

  StatusOr<BlobCollection> c = CollectBlobs(store_.get(), blobs_.get(), 24h);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->removed, 2) << c->ToString();
  EXPECT_EQ(c->referenced, 4) << c->ToString();
  EXPECT_FALSE(blobs_->Has(orphan));
  EXPECT_FALSE(fs::exists(dead));
  for (const std::string& kept : {fresh, bundle, resume, artifact, older})
    EXPECT_TRUE(blobs_->Has(kept)) << kept;
  EXPECT_TRUE(fs::exists(live));
  EXPECT_FALSE(store_->UserOwnsBlob("ann", orphan).value()) << "its owners are forgotten with it";
  EXPECT_TRUE(store_->UserOwnsBlob("ann", fresh).value());
}

TEST_F(BlobCollectorTest, AChunkAskedAboutOrUploadedAgainIsFreshAgain) {
  std::string asked = Chunk("a client asked whether the server has this", 30h);
  std::string again = Chunk("a client uploaded this again", 30h);
  EXPECT_TRUE(blobs_->Touch(asked));  // what POST /v1/blobs/missing does for chunks it finds
  ASSERT_TRUE(blobs_->Put(again, "a client uploaded this again").ok());
  StatusOr<BlobCollection> c = CollectBlobs(store_.get(), blobs_.get(), 24h);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->removed, 0);
  EXPECT_TRUE(blobs_->Has(asked));
  EXPECT_TRUE(blobs_->Has(again));
  EXPECT_FALSE(blobs_->Touch(Sha256Hex("not there")));
}

TEST_F(BlobCollectorTest, AChunkTouchedAfterTheListingIsKept) {
  std::string h = Chunk("named by a submit while the collector runs", 30h);
  fs::file_time_type cutoff = Now() - 24h;
  std::vector<std::string> old = blobs_->OlderThan(cutoff);
  ASSERT_EQ(old.size(), 1u);
  blobs_->Touch(h);  // between the listing and the removal
  uint64_t bytes = 0;
  EXPECT_FALSE(blobs_->RemoveIfOlderThan(old[0], cutoff, &bytes));
  EXPECT_TRUE(blobs_->Has(h));
}

}  // namespace
}  // namespace yard
