#include "agent/artifact_watcher.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "agent/agent_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;
using agent_testing::TempDir;

class ArtifactWatcherTest : public testing::Test {
 protected:
  void SetUp() override {
    for (const char* d : {"checkpoints", "logs"}) fs::create_directories(dir_.path() + "/" + d);
  }

  ArtifactWatcher MakeWatcher() {
    return ArtifactWatcher(
        {{"checkpoints", dir_.path() + "/checkpoints"}, {"logs", dir_.path() + "/logs"}},
        [this](const std::string& path, const ChunkUploader::ChunksStored&) -> StatusOr<FileEntry> {
          uploads_.push_back(path);
          ++upload_count_;
          if (during_upload_) during_upload_(path);
          if (fail_) return Internal("disk on fire");
          FileEntry e;
          e.size = fs::file_size(path);
          e.chunks.push_back({std::string(64, 'a'), e.size});
          return e;
        },
        [this](Json r) { records_.push_back(std::move(r)); });
  }

  void Write(const std::string& rel, const std::string& content) {
    std::string path = dir_.path() + "/" + rel;
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path, std::ios::trunc) << content;
  }

  // Moves the file's mtime so that a rewrite within the clock's granularity
  // still counts as a change.
  void Touch(const std::string& rel, int seconds_ahead) {
    fs::last_write_time(dir_.path() + "/" + rel,
                        fs::file_time_type::clock::now() + std::chrono::seconds(seconds_ahead));
  }

  TempDir dir_;
  std::vector<std::string> uploads_;
  std::atomic<int> upload_count_{0};
  std::vector<Json> records_;
  bool fail_ = false;
  std::function<void(const std::string&)> during_upload_;
};

// A large file's chunks are told as artifact_part records while it
// uploads, before its artifact record: runs stored out of order are joined,
// each part names consecutive chunks from its offset and at least
// kPartBytes, and a small file gets none.
TEST_F(ArtifactWatcherTest, ALargeFilesStoredChunksAreToldInPartsBeforeItsRecord) {
  constexpr uint64_t kChunk = 1 << 20;
  const uint64_t chunks = ArtifactWatcher::kPartBytes / kChunk * 2 + 3;  // two parts and a rest
  std::vector<Json> records;
  ArtifactWatcher w(
      {{"checkpoints", dir_.path() + "/checkpoints"}},
      [&](const std::string& path,
          const ChunkUploader::ChunksStored& stored) -> StatusOr<FileEntry> {
        FileEntry e;
        e.size = fs::file_size(path);
        for (uint64_t i = 0; i * kChunk < e.size; ++i) {
          std::string hash = std::string(60, 'a') + std::to_string(1000 + i);
          e.chunks.push_back({hash, std::min(kChunk, e.size - i * kChunk)});
        }
        if (stored) {
          // Stored in pairs, each pair's second chunk told before its first.
          for (size_t i = 0; i + 1 < e.chunks.size(); i += 2) {
            stored((i + 1) * kChunk, {e.chunks[i + 1]});
            stored(i * kChunk, {e.chunks[i]});
          }
        }
        return e;
      },
      [&](Json r) { records.push_back(std::move(r)); });
  std::string big(chunks * kChunk - 100, 'x');
  Write("checkpoints/big.bin", big);
  Write("checkpoints/small.bin", "tiny");
  w.Scan(/*final=*/true);
  std::vector<Json> parts, artifacts;
  for (const Json& r : records) (r["kind"] == "artifact_part" ? parts : artifacts).push_back(r);
  ASSERT_EQ(artifacts.size(), 2u);
  ASSERT_EQ(parts.size(), 2u);  // 2 x kPartBytes; the rest only in the artifact record
  const Json& big_record = artifacts[0]["entry"]["path"] == "big.bin" ? artifacts[0] : artifacts[1];
  std::vector<Json> big_chunks = big_record["entry"]["chunks"];
  for (const Json& p : parts) {
    StatusOr<ArtifactPart> part = ArtifactPartFromJson(p);
    ASSERT_TRUE(part.ok()) << part.status().message();
    EXPECT_EQ(part->dir, "checkpoints");
    EXPECT_EQ(part->path, "big.bin");
    uint64_t bytes = 0;
    for (size_t i = 0; i < part->chunks.size(); ++i) {
      size_t at = part->offset / kChunk + i;  // every chunk where the file has it
      EXPECT_EQ(part->chunks[i].hash, big_chunks.at(at)[0]);
      bytes += part->chunks[i].size;
    }
    EXPECT_GE(bytes, ArtifactWatcher::kPartBytes);
  }
  // Both parts came while the upload ran, before the file's record.
  size_t big_index = std::find(records.begin(), records.end(), big_record) - records.begin();
  for (const Json& p : parts)
    EXPECT_LT(std::find(records.begin(), records.end(), p) - records.begin(), big_index);
}

// Open inotify instances of this process.
int InotifyDescriptors() {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/self/fd", ec)) {
    std::error_code link_ec;
    n += fs::read_symlink(e.path(), link_ec).string() == "anon_inode:inotify";
  }
  return n;
}

TEST_F(ArtifactWatcherTest, AnEndedWatchersInotifyInstanceIsClosedInTheBackground) {
  int before = InotifyDescriptors();
  {
    ArtifactWatcher w = MakeWatcher();
    w.Start(std::chrono::milliseconds(20));
    EXPECT_EQ(InotifyDescriptors(), before + 1);
  }  // its close waits for the kernel: not here, but it does happen
  EXPECT_TRUE(agent_testing::WaitFor([&] { return InotifyDescriptors() == before; },
                                     std::chrono::seconds(10)));
}

TEST(CloseInBackgroundTest, ClosesTheDescriptorSoon) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  CloseInBackground(fds[0]);
  EXPECT_TRUE(agent_testing::WaitFor([&] { return ::fcntl(fds[0], F_GETFD) == -1; },
                                     std::chrono::seconds(10)));
  ::close(fds[1]);
  CloseInBackground(-1);  // nothing to close: ignored
}

TEST_F(ArtifactWatcherTest, SyncsAFileStableAcrossTwoScans) {
  ArtifactWatcher w = MakeWatcher();
  Write("checkpoints/sub/ckpt.bin", "v1");
  w.Scan(false);
  EXPECT_TRUE(records_.empty());
  w.Scan(false);
  ASSERT_EQ(records_.size(), 1u);
  EXPECT_EQ(records_[0]["kind"], "artifact");
  EXPECT_EQ(records_[0]["dir"], "checkpoints");
  EXPECT_EQ(records_[0]["entry"]["path"], "sub/ckpt.bin");
  EXPECT_EQ(records_[0]["entry"]["size"], 2);
  w.Scan(false);
  EXPECT_EQ(records_.size(), 1u);  // unchanged: not again
}

TEST_F(ArtifactWatcherTest, AChangedFileWaitsUntilStableAgain) {
  ArtifactWatcher w = MakeWatcher();
  Write("logs/events.out", "a");
  w.Scan(false);
  w.Scan(false);
  ASSERT_EQ(records_.size(), 1u);
  Write("logs/events.out", "ab");
  Touch("logs/events.out", 5);
  w.Scan(false);
  EXPECT_EQ(records_.size(), 1u);
  w.Scan(false);
  ASSERT_EQ(records_.size(), 2u);
  EXPECT_EQ(records_[1]["dir"], "logs");
  EXPECT_EQ(records_[1]["entry"]["size"], 2);
}

TEST_F(ArtifactWatcherTest, FinalScanSyncsUnstableFiles) {
  ArtifactWatcher w = MakeWatcher();
  Write("checkpoints/last.bin", "x");
  w.Scan(true);
  ASSERT_EQ(records_.size(), 1u);
  w.Scan(true);
  EXPECT_EQ(records_.size(), 1u);
}

TEST_F(ArtifactWatcherTest, AFileChangedDuringUploadIsNotReported) {
  ArtifactWatcher w = MakeWatcher();
  Write("checkpoints/c.bin", "1");
  w.Scan(false);
  during_upload_ = [&](const std::string&) {
    Write("checkpoints/c.bin", "22");
    Touch("checkpoints/c.bin", 7);
    during_upload_ = nullptr;
  };
  w.Scan(false);
  EXPECT_EQ(uploads_.size(), 1u);
  EXPECT_TRUE(records_.empty());
  w.Scan(false);  // the new version, unchanged since the upload's end
  ASSERT_EQ(records_.size(), 1u);
  EXPECT_EQ(records_[0]["entry"]["size"], 2);
}

TEST_F(ArtifactWatcherTest, FailedSyncIsNotRetriedUntilChangedButFinalSaysWhy) {
  ArtifactWatcher w = MakeWatcher();
  fail_ = true;
  Write("checkpoints/c.bin", "1");
  w.Scan(false);
  w.Scan(false);
  w.Scan(false);
  EXPECT_EQ(uploads_.size(), 1u);
  EXPECT_TRUE(records_.empty());
  w.Scan(true);
  ASSERT_EQ(records_.size(), 1u);
  EXPECT_EQ(records_[0]["kind"], "output");
  EXPECT_NE(records_[0]["data"].get<std::string>().find("checkpoints/c.bin: disk on fire"),
            std::string::npos);
}

TEST_F(ArtifactWatcherTest, KeepsModeAndSkipsSymlinks) {
  ArtifactWatcher w = MakeWatcher();
  Write("checkpoints/run.sh", "#!/bin/sh\n");
  fs::permissions(dir_.path() + "/checkpoints/run.sh", fs::perms(0755));
  fs::create_symlink("/etc/passwd", dir_.path() + "/checkpoints/link");
  w.Scan(true);
  ASSERT_EQ(records_.size(), 1u);
  EXPECT_EQ(records_[0]["entry"]["path"], "run.sh");
  EXPECT_EQ(records_[0]["entry"]["mode"], 0755);
}

TEST_F(ArtifactWatcherTest, MarkSyncedSkipsAFileTheAgentWrote) {
  ArtifactWatcher w = MakeWatcher();
  Write("checkpoints/resume.bin", "r");
  w.MarkSynced("checkpoints", "resume.bin");
  w.Scan(true);
  EXPECT_TRUE(records_.empty());
}

// The job's working folder: what was there before it ran (its bundle) is
// not synced, nor interpreter caches or files over the size limit; what it
// wrote or changed is.
TEST_F(ArtifactWatcherTest, WorkFolderSyncsWhatTheJobWroteOrChangedOnly) {
  Write("work/train.py", "print()");
  Write("work/data/x.csv", "1,2");
  ArtifactWatcher w(
      {{"work", dir_.path() + "/work", {"__pycache__"}, 10}},
      [this](const std::string& path, const ChunkUploader::ChunksStored&) -> StatusOr<FileEntry> {
        uploads_.push_back(path);
        FileEntry e;
        e.size = fs::file_size(path);
        return e;
      },
      [this](Json r) { records_.push_back(std::move(r)); });
  w.MarkAllSynced();
  Write("work/model.keras", "weights");
  Write("work/data/x.csv", "1,2,3");
  Touch("work/data/x.csv", 5);
  Write("work/__pycache__/train.cpython-311.pyc", "bytecode");
  Write("work/big.bin", "more than ten bytes");
  w.Scan(/*final=*/true);
  std::vector<std::string> synced;
  for (const Json& r : records_)
    if (r["kind"] == "artifact") synced.push_back(r["entry"]["path"]);
  std::sort(synced.begin(), synced.end());
  EXPECT_EQ(synced, (std::vector<std::string>{"data/x.csv", "model.keras"}));
  ASSERT_EQ(records_.size(), 3u);
  auto said = std::find_if(records_.begin(), records_.end(), [](const Json& r) {
    return r["kind"] == "output" &&
           r.value("data", "").find("could not sync work/big.bin: it has 0 MiB, over the 0 MiB") !=
               std::string::npos;
  });
  EXPECT_NE(said, records_.end()) << Json(records_).dump();
}

TEST_F(ArtifactWatcherTest, ThreadScansOnItsOwn) {
  ArtifactWatcher w = MakeWatcher();
  Write("checkpoints/a", "a");
  w.Start(std::chrono::milliseconds(5));
  EXPECT_TRUE(agent_testing::WaitFor([&] { return upload_count_ > 0; }));
  w.Stop();
}

}  // namespace
}  // namespace yard

namespace yard {
namespace {

// inotify: a file closed after writing is synced at once, not after two
// scans (the interval here is far longer than the test may take).
TEST_F(ArtifactWatcherTest, AClosedFileIsSyncedWithoutWaitingForScans) {
  fs::create_directories(dir_.path() + "/checkpoints/epoch1");
  ArtifactWatcher w = MakeWatcher();
  w.Start(std::chrono::minutes(10));
  Write("checkpoints/epoch1/model.pt", "weights");
  EXPECT_TRUE(agent_testing::WaitFor([&] { return upload_count_ > 0; }, std::chrono::seconds(10)));
  w.Stop();
  ASSERT_EQ(records_.size(), 1u);
  EXPECT_EQ(records_[0]["entry"]["path"], "epoch1/model.pt");
}

}  // namespace
}  // namespace yard

namespace yard {
namespace {

// An upload fake for the tests with the watcher's own thread: it records
// (under a lock) what started, and holds an upload of `hold` until released.
class HeldUploads {
 public:
  ArtifactWatcher::Upload Upload() {
    return
        [this](const std::string& path, const ChunkUploader::ChunksStored&) -> StatusOr<FileEntry> {
          std::unique_lock<std::mutex> lock(mu_);
          std::string name = fs::path(path).filename().string();
          started_.push_back(name);
          cv_.notify_all();
          FileEntry e;
          e.size = fs::file_size(path);  // read before the hold, as the real upload opens it first
          if (name == hold_)
            cv_.wait_for(lock, std::chrono::seconds(60), [&] { return released_; });
          e.chunks.push_back({std::string(64, 'a'), e.size});
          finished_.push_back(name);
          cv_.notify_all();
          return e;
        };
  }
  ArtifactWatcher::Emit Emit() {
    return [this](Json r) {
      std::lock_guard<std::mutex> lock(mu_);
      records_.push_back(std::move(r));
      cv_.notify_all();
    };
  }
  void Hold(const std::string& name) { hold_ = name; }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  // Wait (generously) until `name`'s upload started `n` times / `n`
  // records came; false on timeout.
  bool WaitForStarts(const std::string& name, int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30),
                        [&] { return std::count(started_.begin(), started_.end(), name) >= n; });
  }
  bool WaitForFinish(const std::string& name) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30),
                        [&] { return std::count(finished_.begin(), finished_.end(), name) >= 1; });
  }
  bool WaitForRecords(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return records_.size() >= n; });
  }
  std::vector<Json> Records() {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }
  int Starts(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(std::count(started_.begin(), started_.end(), name));
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string hold_;
  bool released_ = false;
  std::vector<std::string> started_;
  std::vector<std::string> finished_;  // uploads returned
  std::vector<Json> records_;
};

// Checkpoints written one after another upload at once: the second is
// uploaded while the first's upload is still running. Its record still
// comes after the first's: the server resumes from the checkpoint reported
// last, which must be the one written last.
TEST_F(ArtifactWatcherTest, CheckpointsWrittenOneAfterAnotherUploadAtOnceAndAreReportedInOrder) {
  HeldUploads uploads;
  uploads.Hold("first.pt");
  ArtifactWatcher w({{"checkpoints", dir_.path() + "/checkpoints"}}, uploads.Upload(),
                    uploads.Emit());
  w.Start(std::chrono::minutes(10));  // inotify alone: no scan comes
  Write("checkpoints/first.pt", "one");
  ASSERT_TRUE(uploads.WaitForStarts("first.pt", 1));
  Write("checkpoints/second.pt", "two");
  ASSERT_TRUE(uploads.WaitForFinish("second.pt"));  // while the first is held
  uploads.Release();
  w.Stop();  // waits for the first's sync
  std::vector<Json> records = uploads.Records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0]["entry"]["path"], "first.pt");
  EXPECT_EQ(records[1]["entry"]["path"], "second.pt");
}

// A scan finds files by name; it reports them in the order they were
// written: a step checkpoint written after the epoch's (and named so that
// it sorts before it) is reported last.
TEST_F(ArtifactWatcherTest, AScanReportsFilesInTheOrderTheyWereWritten) {
  Write("checkpoints/epoch-060.pt", "end of epoch 60");
  Write("checkpoints/epoch-060-step-00001.pt", "epoch 61, step 1");
  Write("logs/events.out", "scalars");
  Touch("checkpoints/epoch-060.pt", -30);
  Touch("logs/events.out", -20);
  Touch("checkpoints/epoch-060-step-00001.pt", -10);
  ArtifactWatcher w = MakeWatcher();
  w.Scan(/*final=*/true);
  ASSERT_EQ(records_.size(), 3u);
  EXPECT_EQ(records_[0]["entry"]["path"], "epoch-060.pt");
  EXPECT_EQ(records_[1]["entry"]["path"], "events.out");
  EXPECT_EQ(records_[2]["entry"]["path"], "epoch-060-step-00001.pt");
}

// A file written again while its sync runs is synced again (right after,
// when the watcher saw the second close during the sync; else by the scans),
// and only its last version is reported.
TEST_F(ArtifactWatcherTest, AFileWrittenAgainDuringItsSyncIsReportedInItsLastVersion) {
  HeldUploads uploads;
  uploads.Hold("model.pt");
  ArtifactWatcher w({{"checkpoints", dir_.path() + "/checkpoints"}}, uploads.Upload(),
                    uploads.Emit());
  w.Start(std::chrono::milliseconds(20));
  Write("checkpoints/model.pt", "v1");
  ASSERT_TRUE(uploads.WaitForStarts("model.pt", 1));
  Write("checkpoints/model.pt", "version 2");
  uploads.Release();
  ASSERT_TRUE(uploads.WaitForRecords(1));
  w.Stop();
  std::vector<Json> records = uploads.Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["entry"]["size"], 9);
  EXPECT_EQ(uploads.Starts("model.pt"), 2);
}

// A checkpoint written under a temporary name and renamed into place while
// the temporary file's upload (started when it was closed) still runs: the
// renamed file waits for that upload and reuses its entry, so the file is
// read and hashed once; only the renamed file is reported.
TEST_F(ArtifactWatcherTest, AFileRenamedIntoPlaceIsNotReadAgain) {
  HeldUploads uploads;
  uploads.Hold("model.pt.tmp");
  ArtifactWatcher w({{"checkpoints", dir_.path() + "/checkpoints"}}, uploads.Upload(),
                    uploads.Emit());
  w.Start(std::chrono::minutes(10));
  Write("checkpoints/model.pt.tmp", "weights of epoch 3");
  ASSERT_TRUE(uploads.WaitForStarts("model.pt.tmp", 1));
  fs::rename(dir_.path() + "/checkpoints/model.pt.tmp", dir_.path() + "/checkpoints/model.pt");
  uploads.Release();
  ASSERT_TRUE(uploads.WaitForRecords(1));
  w.Stop();
  std::vector<Json> records = uploads.Records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["entry"]["path"], "model.pt");
  EXPECT_EQ(records[0]["entry"]["size"], 18);
  EXPECT_EQ(uploads.Starts("model.pt"), 0);
  EXPECT_EQ(uploads.Starts("model.pt.tmp"), 1);
}

// A file rewritten in place (a new version, same inode) is uploaded again.
TEST_F(ArtifactWatcherTest, ARewrittenFileIsUploadedAgain) {
  HeldUploads uploads;
  ArtifactWatcher w({{"checkpoints", dir_.path() + "/checkpoints"}}, uploads.Upload(),
                    uploads.Emit());
  w.Start(std::chrono::milliseconds(20));  // a second close within this is left to the scans
  Write("checkpoints/model.pt", "v1");
  ASSERT_TRUE(uploads.WaitForRecords(1));
  Write("checkpoints/model.pt", "v2, longer");
  ASSERT_TRUE(uploads.WaitForRecords(2));
  w.Stop();
  EXPECT_EQ(uploads.Starts("model.pt"), 2);
  EXPECT_EQ(uploads.Records()[1]["entry"]["size"], 10);
}

}  // namespace
}  // namespace yard
