#include "agent/chunk_uploader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "agent/agent_testing.h"

namespace yard {
namespace {

using agent_testing::FakeServer;
using agent_testing::FakeState;
using agent_testing::TempDir;

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return s;
}

class ChunkUploaderTest : public testing::Test {
 protected:
  ChunkUploaderTest()
      : state_(std::make_shared<FakeState>()),
        server_(state_),
        http_(server_.url(), state_->token) {
    options_.chunker = {16 * 1024, 64 * 1024, 256 * 1024};
    options_.group_bytes = 256 * 1024;
    options_.queue_bytes = 512 * 1024;
  }

  std::string WriteFile(const std::string& content) {
    std::string path = dir_.path() + "/file.bin";
    std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
    return path;
  }

  // The file as the server would rebuild it from the entry.
  std::string Rebuild(const FileEntry& e) {
    std::lock_guard<std::mutex> lock(state_->mu);
    std::string out;
    for (const ChunkRef& c : e.chunks) out += state_->blobs.at(c.hash);
    return out;
  }

  int Puts() {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->blob_puts;
  }

  TempDir dir_;
  std::shared_ptr<FakeState> state_;
  FakeServer server_;
  HttpClient http_;
  StopSignal stop_;
  ChunkUploaderOptions options_;
};

TEST_F(ChunkUploaderTest, UploadsEveryChunkOnceAndRebuildsTheFile) {
  std::string content = RandomBytes(3 << 20, 1);
  ChunkUploader uploader(&http_, &stop_, options_);
  StatusOr<FileEntry> e = uploader.Upload(WriteFile(content));
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->size, content.size());
  EXPECT_GT(e->chunks.size(), 10u);
  EXPECT_EQ(Rebuild(*e), content);
  std::lock_guard<std::mutex> lock(state_->mu);
  EXPECT_EQ(static_cast<size_t>(state_->blob_puts), state_->blobs.size());
}

TEST_F(ChunkUploaderTest, SendsOnlyWhatTheServerLacks) {
  std::string content = RandomBytes(2 << 20, 2);
  ChunkUploader uploader(&http_, &stop_, options_);
  ASSERT_TRUE(uploader.Upload(WriteFile(content)).ok());
  int puts_before = Puts();
  content.replace(1 << 20, 10, "0123456789");
  StatusOr<FileEntry> e = uploader.Upload(WriteFile(content));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(Rebuild(*e), content);
  EXPECT_LE(Puts() - puts_before, 2);
}

TEST_F(ChunkUploaderTest, RepeatedChunksAreSentOnce) {
  std::string block = RandomBytes(300 * 1024, 3);
  std::string content = block + block + block + block;
  ChunkUploader uploader(&http_, &stop_, options_);
  StatusOr<FileEntry> e = uploader.Upload(WriteFile(content));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(Rebuild(*e), content);
  std::lock_guard<std::mutex> lock(state_->mu);
  EXPECT_EQ(static_cast<size_t>(state_->blob_puts), state_->blobs.size());
}

TEST_F(ChunkUploaderTest, EmptyFileHasNoChunks) {
  ChunkUploader uploader(&http_, &stop_, options_);
  StatusOr<FileEntry> e = uploader.Upload(WriteFile(""));
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size, 0u);
  EXPECT_TRUE(e->chunks.empty());
}

TEST_F(ChunkUploaderTest, MissingFileIsAnError) {
  ChunkUploader uploader(&http_, &stop_, options_);
  EXPECT_FALSE(uploader.Upload(dir_.path() + "/nope").ok());
}

TEST_F(ChunkUploaderTest, ServerDownRetriesUntilStopped) {
  std::string path = WriteFile(RandomBytes(100000, 4));
  server_.Stop();
  ChunkUploader uploader(&http_, &stop_, options_);
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop_.Notify();
  });
  EXPECT_EQ(uploader.Upload(path).status().code(), Code::kCancelled);
  stopper.join();
}

}  // namespace
}  // namespace yard
