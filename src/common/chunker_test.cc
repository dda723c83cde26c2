#include "common/chunker.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/hashing.h"
#include "common/random_bytes_testing.h"

namespace yard {
namespace {

using test_support::RandomBytes;

std::vector<ChunkRef> Chunks(std::string_view data, const ChunkerParams& p = {}) {
  std::vector<ChunkRef> out;
  Status s = ChunkBuffer(data, p, [&](const ChunkRef& ref, std::string_view) {
    out.push_back(ref);
    return Status::Ok();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// Chunks of `after` whose hash is not among the chunks of `before`.
size_t NewChunks(const std::vector<ChunkRef>& before, const std::vector<ChunkRef>& after) {
  std::set<std::string> old;
  for (const auto& c : before) old.insert(c.hash);
  size_t n = 0;
  for (const auto& c : after) n += old.count(c.hash) == 0;
  return n;
}

std::string TempPath(const std::string& name) {
  return testing::TempDir() + "/chunker_test_" + std::to_string(::getpid()) + "_" + name;
}

TEST(ChunkerTest, BoundariesAreDeterministicAndPinned) {
  ChunkerParams p{.min_size = 1024, .avg_size = 4096, .max_size = 16384};
  std::string data = RandomBytes(64 * 1024, 42);
  std::vector<uint64_t> sizes;
  for (const auto& c : Chunks(data, p)) sizes.push_back(c.size);
  for (int i = 0; i < 3; ++i) {
    std::vector<uint64_t> again;
    for (const auto& c : Chunks(data, p)) again.push_back(c.size);
    EXPECT_EQ(again, sizes);
  }
  // Pinned: the gear table and masks are a stored-format property, so these
  // cut points must not change across builds or machines.
  std::vector<uint64_t> pinned = {8619, 5702, 5466, 4182, 4104, 1639, 4873, 5439,
                                  4135, 5220, 4146, 2046, 4137, 4796, 1032};
  EXPECT_EQ(sizes, pinned);
}

// A header and a buffer chunk as the two joined (a .npy written to disk):
// the same refs and bytes, and every chunk past the header's is a view into
// the buffer itself, not a copy. Prefixes from empty to several chunks long,
// data shorter and longer than max_size.
TEST(ChunkerTest, PrefixedChunksAreThoseOfTheJoinedBytesAndViewTheData) {
  ChunkerParams p{.min_size = 1024, .avg_size = 4096, .max_size = 16384};
  for (size_t prefix_size : {size_t{0}, size_t{128}, size_t{5000}, size_t{40000}}) {
    for (size_t data_size :
         {size_t{0}, size_t{100}, size_t{16384}, size_t{16385}, size_t{300000}}) {
      std::string prefix = RandomBytes(prefix_size, 7), data = RandomBytes(data_size, 8);
      std::vector<ChunkRef> got;
      std::string joined;
      size_t views = 0;
      ASSERT_TRUE(ChunkPrefixed(prefix, data, p, [&](const ChunkRef& ref, std::string_view bytes) {
                    EXPECT_EQ(ref.hash, Sha256Hex(bytes));
                    std::less_equal<const char*> le;
                    views += le(data.data(), bytes.data()) &&
                             le(bytes.data() + bytes.size(), data.data() + data.size());
                    got.push_back(ref);
                    joined.append(bytes);
                    return Status::Ok();
                  }).ok());
      std::vector<ChunkRef> want = Chunks(prefix + data, p);
      EXPECT_EQ(got, want) << prefix_size << " + " << data_size;
      EXPECT_EQ(joined, prefix + data);
      // Only the chunks holding a byte of the prefix were copied.
      size_t copied = 0;
      for (uint64_t at = 0; copied < want.size() && at < prefix_size; at += want[copied++].size) {
      }
      EXPECT_EQ(views, want.size() - copied) << prefix_size << " + " << data_size;
    }
  }
}

TEST(ChunkerTest, SizesWithinBoundsAndConcatenationIsInput) {
  ChunkerParams p;
  std::string data = RandomBytes(20 << 20, 1);
  std::string joined;
  std::vector<uint64_t> sizes;
  ASSERT_TRUE(ChunkBuffer(data, p, [&](const ChunkRef& ref, std::string_view bytes) {
                EXPECT_EQ(ref.size, bytes.size());
                EXPECT_EQ(ref.hash, Sha256Hex(bytes));
                joined.append(bytes);
                sizes.push_back(ref.size);
                return Status::Ok();
              }).ok());
  EXPECT_EQ(joined, data);
  ASSERT_GT(sizes.size(), 4u);
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    EXPECT_GE(sizes[i], p.min_size);
    EXPECT_LE(sizes[i], p.max_size);
  }
  EXPECT_LE(sizes.back(), p.max_size);
  std::printf("[ info ] 20 MiB -> %zu chunks, mean %.0f KiB\n", sizes.size(),
              20.0 * 1024 / sizes.size());
}

TEST(ChunkerTest, MaxSizeCutsUniformData) {
  ChunkerParams p{.min_size = 1024, .avg_size = 4096, .max_size = 16384};
  std::string zeros(100000, '\0');  // gear hash of a constant run never hits the mask
  auto chunks = Chunks(zeros, p);
  ASSERT_EQ(chunks.size(), 7u);
  for (size_t i = 0; i + 1 < chunks.size(); ++i) EXPECT_EQ(chunks[i].size, 16384u);
  EXPECT_EQ(chunks.back().size, 100000u - 6 * 16384);
}

TEST(ChunkerTest, OneByteChangeChangesAtMostTwoChunks) {
  std::string data = RandomBytes(20 << 20, 7);
  auto before = Chunks(data);
  for (size_t pos : {size_t{0}, size_t{5'000'000}, size_t{13'333'333}, data.size() - 1}) {
    std::string changed = data;
    changed[pos] = static_cast<char>(changed[pos] ^ 0x5a);
    auto after = Chunks(changed);
    EXPECT_LE(NewChunks(before, after), 2u) << "at " << pos;
    EXPECT_LE(NewChunks(after, before), 2u) << "at " << pos;
  }
}

TEST(ChunkerTest, OneByteInsertionChangesAtMostTwoChunks) {
  std::string data = RandomBytes(20 << 20, 8);
  auto before = Chunks(data);
  for (size_t pos : {size_t{0}, size_t{3'000'001}, size_t{17'000'000}, data.size()}) {
    std::string changed = data;
    changed.insert(pos, 1, 'x');
    auto after = Chunks(changed);
    EXPECT_LE(NewChunks(before, after), 2u) << "at " << pos;
    EXPECT_LE(NewChunks(after, before), 2u) << "at " << pos;
  }
}

TEST(ChunkerTest, NeedsMoreDataUnlessAtEof) {
  ChunkerParams p{.min_size = 1024, .avg_size = 4096, .max_size = 16384};
  std::string zeros(8000, '\0');
  EXPECT_EQ(NextChunkBoundary(zeros, p, /*at_eof=*/false), 0u);
  EXPECT_EQ(NextChunkBoundary(zeros, p, /*at_eof=*/true), 8000u);
  EXPECT_EQ(NextChunkBoundary(zeros.substr(0, 100), p, false), 0u);
  EXPECT_EQ(NextChunkBoundary(zeros.substr(0, 100), p, true), 100u);
  EXPECT_EQ(NextChunkBoundary("", p, true), 0u);
  EXPECT_EQ(NextChunkBoundary(std::string(20000, '\0'), p, false), 16384u);
  // A cut found in a prefix is the cut found in the whole.
  std::string data = RandomBytes(40000, 3);
  size_t whole = NextChunkBoundary(data, p, true);
  ASSERT_LT(whole, 16384u);
  EXPECT_EQ(NextChunkBoundary(std::string_view(data).substr(0, whole), p, false), whole);
}

TEST(ChunkerTest, RejectsBadParams) {
  auto ok = [](const ChunkRef&, std::string_view) { return Status::Ok(); };
  EXPECT_EQ(ChunkBuffer("x", {.min_size = 1024, .avg_size = 3000, .max_size = 8192}, ok).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(ChunkBuffer("x", {.min_size = 8192, .avg_size = 4096, .max_size = 16384}, ok).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(ChunkFile("/nonexistent", {.min_size = 1, .avg_size = 4096, .max_size = 1}, ok).code(),
            Code::kInvalidArgument);
}

TEST(ChunkerTest, VisitorErrorStops) {
  std::string data = RandomBytes(8 << 20, 9);
  int calls = 0;
  Status s = ChunkBuffer(data, {}, [&](const ChunkRef&, std::string_view) {
    ++calls;
    return Cancelled("stop");
  });
  EXPECT_EQ(s.code(), Code::kCancelled);
  EXPECT_EQ(calls, 1);
}

TEST(ChunkerTest, ChunkFileMatchesChunkBuffer) {
  // Larger than the 8 MiB read buffer, so tails are carried across reads.
  std::string data = RandomBytes(27 << 20, 11);
  std::string path = TempPath("file");
  std::ofstream(path, std::ios::binary).write(data.data(), data.size());
  std::vector<ChunkRef> from_file;
  std::string joined;
  ASSERT_TRUE(ChunkFile(path, {}, [&](const ChunkRef& ref, std::string_view bytes) {
                from_file.push_back(ref);
                joined.append(bytes);
                return Status::Ok();
              }).ok());
  auto from_buffer = Chunks(data);
  ASSERT_EQ(from_file.size(), from_buffer.size());
  for (size_t i = 0; i < from_file.size(); ++i) {
    EXPECT_EQ(from_file[i].hash, from_buffer[i].hash);
    EXPECT_EQ(from_file[i].size, from_buffer[i].size);
  }
  EXPECT_EQ(joined, data);
  std::remove(path.c_str());
}

TEST(ChunkerTest, ChunkFileEmptyAndMissing) {
  std::string path = TempPath("empty");
  std::ofstream(path, std::ios::binary).close();
  int calls = 0;
  auto count = [&](const ChunkRef&, std::string_view) {
    ++calls;
    return Status::Ok();
  };
  EXPECT_TRUE(ChunkFile(path, {}, count).ok());
  EXPECT_EQ(calls, 0);
  std::remove(path.c_str());
  EXPECT_EQ(ChunkFile(path, {}, count).code(), Code::kNotFound);
}

// Not an assertion: prints throughput so a regression is visible in the log.
TEST(ChunkerTest, ThroughputLog) {
  std::string data = RandomBytes(64 << 20, 13);
  std::string path = TempPath("perf");
  std::ofstream(path, std::ios::binary).write(data.data(), data.size());
  auto noop = [](const ChunkRef&, std::string_view) { return Status::Ok(); };
  auto rate = [&](auto&& fn) {
    auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(fn().ok());
    std::chrono::duration<double> secs = std::chrono::steady_clock::now() - start;
    return data.size() / secs.count() / 1e6;
  };
  double boundaries = rate([&] {
    std::string_view rest = data;
    while (!rest.empty()) rest.remove_prefix(NextChunkBoundary(rest, {}, true));
    return Status::Ok();
  });
  double hash_only = rate([&] {
    Sha256Hex(data);
    return Status::Ok();
  });
  double buffer = rate([&] { return ChunkBuffer(data, {}, noop); });
  double file = rate([&] { return ChunkFile(path, {}, noop); });
  std::printf("[ info ] MB/s: boundaries %.0f, sha256 %.0f, ChunkBuffer %.0f, ChunkFile %.0f\n",
              boundaries, hash_only, buffer, file);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace yard
