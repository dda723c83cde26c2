#include "sdk/replay.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "common/files.h"

namespace trainyard::internal {
namespace {

using Json = nlohmann::json;

TEST(CompareMetricsTest, RowsByNameWithinARelativeTolerance) {
  Json rows = CompareMetrics({{"epoch", 3}, {"loss", 2.0}, {"accuracy", 0.5}},
                             {{"epoch", 3}, {"loss", 2.001}, {"val_loss", 1.0}}, 1e-3);
  ASSERT_EQ(rows.size(), 3u) << rows.dump();  // epoch left out
  EXPECT_EQ(rows[0]["metric"], "accuracy");
  EXPECT_TRUE(rows[0]["replayed"].is_null());
  EXPECT_FALSE(rows[0]["within_tolerance"].get<bool>());
  EXPECT_EQ(rows[1]["metric"], "loss");
  EXPECT_NEAR(rows[1]["diff"].get<double>(), 0.001, 1e-12);
  EXPECT_TRUE(rows[1]["within_tolerance"].get<bool>()) << "0.001 <= 1e-3 * max(1, 2)";
  EXPECT_EQ(rows[2]["metric"], "val_loss");
  EXPECT_TRUE(rows[2]["diff"].is_null());
}

class LoadRecordArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = std::move(TempDir::Make("replay-test-")).value(); }
  std::string Path(const std::string& name) { return dir_->path() + "/" + name; }
  // tar -czf NAME.tar.gz -C dir/src .
  std::string Pack(const std::string& name) {
    std::string out = Path(name + ".tar.gz");
    std::string cmd = "tar -czf " + out + " -C " + Path("src") + " .";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return out;
  }
  std::unique_ptr<TempDir> dir_;
};

TEST_F(LoadRecordArchiveTest, ReadsARecordAndRefusesOtherArchives) {
  ASSERT_TRUE(yard::MakeDirs(Path("src/bundle")).ok());
  ASSERT_TRUE(
      yard::WriteFileAtomic(Path("src/record.json"),
                            R"({"format": "trainyard-record", "version": 1, "job_id": "j-7"})")
          .ok());
  yard::StatusOr<LoadedRecord> ok = LoadRecordArchive(Pack("good"));
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->record["job_id"], "j-7");

  ASSERT_TRUE(yard::WriteFileAtomic(Path("src/record.json"),
                                    R"({"format": "trainyard-record", "version": 2})")
                  .ok());
  yard::StatusOr<LoadedRecord> later = LoadRecordArchive(Pack("v2"));
  ASSERT_FALSE(later.ok());
  EXPECT_NE(later.status().message().find("record version 2 is not supported"), std::string::npos);

  std::filesystem::create_symlink("/etc/passwd", Path("src/bundle/link"));
  yard::StatusOr<LoadedRecord> linked = LoadRecordArchive(Pack("link"));
  ASSERT_FALSE(linked.ok());
  EXPECT_NE(linked.status().message().find("is not a plain file"), std::string::npos)
      << linked.status().message();

  EXPECT_FALSE(LoadRecordArchive(Path("missing.tar.gz")).ok());
}

}  // namespace
}  // namespace trainyard::internal
