#include "agent/chunk_uploader.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
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

namespace yard {
namespace {

// A measurement, not a check: run with --gtest_also_run_disabled_tests.
// Compares uploading a 256 MiB file (default chunker) with `cp` of it.
TEST(ChunkUploaderPerfTest, DISABLED_UploadVersusCp) {
  TempDir dir;
  std::string path = dir.path() + "/big.bin";
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 256; ++i) out << RandomBytes(1 << 20, 100 + i);
  }
  auto cpu = [] {
    rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  };
  auto time = [&](const std::function<void()>& f) {
    auto start = std::chrono::steady_clock::now();
    double cpu_start = cpu();
    f();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("  %.3f s wall, %.3f s cpu\n", s, cpu() - cpu_start);
    return s;
  };
  std::string copy = dir.path() + "/copy.bin";
  double cp_s = time([&] { ASSERT_EQ(std::system(("cp " + path + " " + copy).c_str()), 0); });
  auto state = std::make_shared<FakeState>();
  FakeServer server(state);
  HttpClient http(server.url(), state->token);
  StopSignal stop;
  ChunkUploader uploader(&http, &stop);
  double up_s = time([&] { ASSERT_TRUE(uploader.Upload(path).ok()); });
  double again_s = time([&] { ASSERT_TRUE(uploader.Upload(path).ok()); });
  time([&] {
    ASSERT_TRUE(ChunkFile(path, ChunkerParams{}, [](const ChunkRef&, std::string_view) {
                  return Status::Ok();
                }).ok());
  });
  std::printf("cp %.3f s, upload %.3f s (%.2f of cp speed), unchanged again %.3f s\n", cp_s, up_s,
              cp_s / up_s, again_s);
}

}  // namespace
}  // namespace yard
