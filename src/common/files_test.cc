#include "common/files.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/temp_dir_testing.h"

namespace yard {
namespace {

iovec Piece(std::string& s) { return {s.data(), s.size()}; }

TEST(WriteWindowTest, TakesWholePiecesUpToTheBoundAndCutsTheLastShort) {
  std::string a(40 << 10, 'a'), b(40 << 10, 'b'), c(10, 'c');
  std::vector<iovec> iov = {Piece(a), Piece(b), Piece(c)};
  std::vector<iovec> w = WriteWindow(iov, 0, 64 << 10);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].iov_base, a.data());
  EXPECT_EQ(w[0].iov_len, a.size());
  EXPECT_EQ(w[1].iov_base, b.data());
  EXPECT_EQ(w[1].iov_len, (64u << 10) - a.size());
  // From the second piece on: the rest fits.
  w = WriteWindow(iov, 1, 64 << 10);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].iov_len, b.size());
  EXPECT_EQ(w[1].iov_len, c.size());
}

TEST(WriteWindowTest, ABigPieceIsCutToTheBound) {
  std::string big(1 << 20, 'x');
  std::vector<iovec> iov = {Piece(big)};
  std::vector<iovec> w = WriteWindow(iov, 0, kMaxBytesPerWrite);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].iov_len, kMaxBytesPerWrite);
}

// Pieces around and across the per-call bound land at their offsets, byte
// for byte, with and without an explicit offset.
TEST(WriteVectorAllTest, WritesEveryByteOfPiecesLargerAndSmallerThanOneCall) {
  test_support::TempDir dir;
  std::string path = dir.path() + "/f";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  std::vector<std::string> parts;
  for (size_t size : {size_t{5}, kMaxBytesPerWrite - 3, size_t{7}, 3 * kMaxBytesPerWrite + 11,
                      size_t{1}, kMaxBytesPerWrite}) {
    std::string p(size, '\0');
    for (size_t i = 0; i < size; ++i) p[i] = static_cast<char>((i * 131 + parts.size()) & 0xff);
    parts.push_back(std::move(p));
  }
  std::vector<iovec> iov;
  std::string expected;
  for (std::string& p : parts) {
    iov.push_back(Piece(p));
    expected += p;
  }
  ASSERT_TRUE(WriteVectorAll(fd, iov, std::nullopt, "writing the test file").ok());
  // Then the same again at an offset past the end (pwritev; a gap of zeros).
  uint64_t at = expected.size() + 100;
  ASSERT_TRUE(WriteVectorAll(fd, iov, at, "writing the test file").ok());
  ::close(fd);
  StatusOr<std::string> got = ReadFile(path);
  ASSERT_TRUE(got.ok());
  std::string want = expected + std::string(100, '\0') + expected;
  ASSERT_EQ(got->size(), want.size());
  EXPECT_TRUE(*got == want);
}

}  // namespace
}  // namespace yard
