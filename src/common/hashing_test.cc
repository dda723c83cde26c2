#include "common/hashing.h"

#include <gtest/gtest.h>

#include <string>

namespace yard {
namespace {

TEST(HashingTest, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(HashingTest, IncrementalMatchesOneShot) {
  std::string data;
  for (int i = 0; i < 100000; ++i) data.push_back(static_cast<char>(i * 7919));
  Sha256 h;
  h.Update(std::string_view(data).substr(0, 12345));
  h.Update(data.data() + 12345, data.size() - 12345);
  EXPECT_EQ(h.FinishHex(), Sha256Hex(data));
}

TEST(HashingTest, IsSha256Hex) {
  EXPECT_TRUE(IsSha256Hex(Sha256Hex("x")));
  EXPECT_FALSE(IsSha256Hex(""));
  EXPECT_FALSE(IsSha256Hex(std::string(63, 'a')));
  EXPECT_FALSE(IsSha256Hex(std::string(65, 'a')));
  EXPECT_FALSE(IsSha256Hex(std::string(64, 'A')));  // upper case is not canonical
  EXPECT_FALSE(IsSha256Hex(std::string(63, 'a') + "g"));
  EXPECT_TRUE(IsSha256Hex(std::string(64, '0')));
}

}  // namespace
}  // namespace yard
