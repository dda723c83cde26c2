#include "common/blob_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/files.h"
#include "common/hashing.h"
#include "common/temp_dir_testing.h"

namespace yard {
namespace {

namespace fs = std::filesystem;

class BlobStoreTest : public testing::Test {
 protected:
  BlobStore OpenStore() {
    StatusOr<BlobStore> store = BlobStore::Open(dir_ + "/nested/blobs");
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return std::move(store).value();
  }

  // Files whose name starts with ".tmp-" anywhere under the store.
  int TempFiles() {
    int n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      n += e.path().filename().string().rfind(".tmp-", 0) == 0;
    }
    return n;
  }

  test_support::TempDir tmp_;
  std::string dir_ = tmp_.path();
};

TEST_F(BlobStoreTest, PutGetHas) {
  BlobStore store = OpenStore();
  std::string data = "hello blobs";
  std::string hash = Sha256Hex(data);
  EXPECT_FALSE(store.Has(hash));
  EXPECT_EQ(store.Get(hash).status().code(), Code::kNotFound);
  ASSERT_TRUE(store.Put(hash, data).ok());
  EXPECT_TRUE(store.Has(hash));
  StatusOr<std::string> got = store.Get(hash);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, data);
  EXPECT_EQ(store.PathOf(hash), dir_ + "/nested/blobs/" + hash.substr(0, 2) + "/" + hash);
  EXPECT_TRUE(fs::is_regular_file(store.PathOf(hash)));
  EXPECT_TRUE(store.Put(hash, data).ok());  // again: harmless
  EXPECT_EQ(TempFiles(), 0);
}

TEST_F(BlobStoreTest, EmptyAndLargeBlobs) {
  BlobStore store = OpenStore();
  std::string big(5 << 20, 'z');
  for (const std::string& data : {std::string(), big}) {
    ASSERT_TRUE(store.Put(Sha256Hex(data), data).ok());
    EXPECT_EQ(*store.Get(Sha256Hex(data)), data);
  }
}

// Each 4-byte word holds its own index, so a piece written at the wrong
// offset, twice or not at all shows.
std::string NumberedWords(size_t bytes) {
  std::string s(bytes, '\0');
  for (size_t i = 0; i < bytes; i += 4) {
    uint32_t word = static_cast<uint32_t>(i / 4);
    std::memcpy(s.data() + i, &word, std::min<size_t>(4, bytes - i));
  }
  return s;
}

TEST_F(BlobStoreTest, BlobsWrittenInSeveralCallsHaveEveryByteInPlace) {
  BlobStore store = OpenStore();
  for (size_t size : {kMaxBytesPerWrite + 1, 3 * kMaxBytesPerWrite + 11, size_t{4} << 20}) {
    std::string data = NumberedWords(size);
    ASSERT_TRUE(store.Put(Sha256Hex(data), data).ok());
    StatusOr<std::string> got = store.Get(Sha256Hex(data));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_TRUE(*got == data) << size << " bytes came back as " << got->size();
  }
}

TEST_F(BlobStoreTest, RejectsWrongHashAndBadNames) {
  BlobStore store = OpenStore();
  std::string wrong = Sha256Hex("other");
  Status s = store.Put(wrong, "data");
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("does not match"), std::string::npos);
  EXPECT_FALSE(store.Has(wrong));
  EXPECT_EQ(store.Put("../../etc/passwd", "x").code(), Code::kInvalidArgument);
  EXPECT_EQ(store.Get("../x").status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(store.Has("../x"));
  EXPECT_EQ(TempFiles(), 0);
}

// PutHashed stores only when the hash the receiver computed from the bytes
// equals the name: the server's streamed PUT relies on it (routes_blobs.cc).
TEST_F(BlobStoreTest, PutHashedStoresOnlyWhatItsOwnHashNames) {
  BlobStore store = OpenStore();
  std::string name = Sha256Hex("data");
  Status s = store.PutHashed(name, "data", Sha256Hex("other"));
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("does not match"), std::string::npos);
  EXPECT_FALSE(store.Has(name));
  ASSERT_TRUE(store.PutHashed(name, "data", Sha256Hex("data")).ok());
  EXPECT_EQ(*store.Get(name), "data");
  EXPECT_EQ(TempFiles(), 0);
}

TEST_F(BlobStoreTest, OpenToReadGivesTheBlobAndItsSize) {
  BlobStore store = OpenStore();
  std::string data(300 << 10, 'x');
  std::string name = Sha256Hex(data);
  uint64_t size = 0;
  EXPECT_EQ(store.OpenToRead(name, &size).status().code(), Code::kNotFound);
  ASSERT_TRUE(store.Put(name, data).ok());
  StatusOr<ScopedFd> fd = store.OpenToRead(name, &size);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  EXPECT_EQ(size, data.size());
  std::string back(data.size() + 1, '\0');
  EXPECT_EQ(::pread(fd->get(), back.data(), back.size(), 0), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(back.substr(0, data.size()), data);
  EXPECT_EQ(store.OpenToRead("../x", &size).status().code(), Code::kInvalidArgument);
}

TEST_F(BlobStoreTest, MissingKeepsInputOrder) {
  BlobStore store = OpenStore();
  std::vector<std::string> hashes;
  for (const char* s : {"a", "b", "c", "d"}) hashes.push_back(Sha256Hex(s));
  ASSERT_TRUE(store.Put(hashes[1], "b").ok());
  ASSERT_TRUE(store.Put(hashes[3], "d").ok());
  EXPECT_EQ(store.Missing(hashes), (std::vector<std::string>{hashes[0], hashes[2]}));
  EXPECT_TRUE(store.Missing({}).empty());
}

TEST_F(BlobStoreTest, RepairsTruncatedBlob) {
  BlobStore store = OpenStore();
  std::string data = "whole content";
  std::string hash = Sha256Hex(data);
  ASSERT_TRUE(store.Put(hash, data).ok());
  std::ofstream(store.PathOf(hash), std::ios::trunc).close();  // as after a power loss
  ASSERT_TRUE(store.Put(hash, data).ok());
  EXPECT_EQ(*store.Get(hash), data);
}

TEST_F(BlobStoreTest, ConcurrentPutsOfSameHash) {
  BlobStore store = OpenStore();
  std::string data(1 << 20, 'q');
  std::string hash = Sha256Hex(data);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 5; ++k) failures += !store.Put(hash, data).ok();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(*store.Get(hash), data);
  EXPECT_EQ(TempFiles(), 0);
}

}  // namespace
}  // namespace yard
