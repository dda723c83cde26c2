#include "trainer/npy.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace yard::trainer {
namespace {

NpyArray Floats(std::vector<int64_t> shape, std::vector<float> values) {
  NpyArray a;
  a.dtype = NpyDType::kFloat32;
  a.shape = std::move(shape);
  a.data.resize(values.size() * 4);
  std::memcpy(a.data.data(), values.data(), a.data.size());
  return a;
}

TEST(NpyTest, RoundTripsFloat32Matrix) {
  std::string bytes = EncodeNpy(Floats({2, 3}, {1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(bytes.size() % 64, 24u);  // header padded to 64, then 24 data bytes
  auto a = ParseNpy(bytes, "x.npy");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->dtype, NpyDType::kFloat32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->rows(), 2);
  float v[6];
  std::memcpy(v, a->data.data(), sizeof v);
  EXPECT_EQ(v[5], 6.0f);
}

TEST(NpyTest, ReadsNumpyStyleHeaders) {
  // As numpy writes them: 1-D shape "(3,)", int64, version 2.0 length field.
  std::string header = "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }";
  header.append(128 - 12 - header.size() - 1, ' ');
  header += '\n';
  std::string bytes = std::string("\x93NUMPY\x02\x00", 8);
  bytes += static_cast<char>(header.size());
  bytes += std::string(3, '\0');
  bytes += header;
  bytes += std::string(24, '\0');
  auto a = ParseNpy(bytes, "y.npy");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->dtype, NpyDType::kInt64);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{3}));
}

std::string WithHeader(const std::string& dict, size_t data_bytes) {
  NpyArray a = Floats({1}, {0});
  std::string good = EncodeNpy(a);
  std::string header = dict;
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  std::string out = good.substr(0, 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + std::string(data_bytes, '\0');
}

TEST(NpyTest, RefusesWhatTrainingCannotUse) {
  struct Case {
    std::string bytes, want;
  } cases[] = {
      {"garbage bytes here", "not a .npy file"},
      {WithHeader("{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", 4),
       "unsupported dtype '|u1'"},
      {WithHeader("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", 4), "big-endian"},
      {WithHeader("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", 8),
       "unsupported dtype"},
      {WithHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", 4), "Fortran"},
      {WithHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4), "0-dimensional"},
      {WithHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 12), "truncated"},
      {WithHeader("{'descr': '<f4', 'shape': (1,), }", 4), "lacks 'fortran_order'"},
  };
  for (const auto& c : cases) {
    auto a = ParseNpy(c.bytes, "bad.npy");
    ASSERT_FALSE(a.ok()) << c.want;
    EXPECT_EQ(a.status().code(), Code::kInvalidArgument);
    EXPECT_NE(a.status().message().find(c.want), std::string::npos) << a.status().message();
    EXPECT_NE(a.status().message().find("bad.npy"), std::string::npos) << a.status().message();
  }
}

// Found by fuzz/npy_fuzzer.cc: the shape's size in bytes overflowed (undefined
// behaviour) and could wrap to the size of the data there is, here 8 * 2^62
// * 4 = 2^67 -> 0 bytes, so a file with no data at all was taken for 2^62
// rows. Also a dimension strtoll clamped to INT64_MAX.
TEST(NpyTest, AShapeTooLargeForAnyFileIsRefused) {
  for (const char* shape :
       {"(4611686018427387904, 4)", "(9223372036854775807, 2)", "(99999999999999999999999,)"}) {
    std::string dict =
        std::string("{'descr': '<i8', 'fortran_order': False, 'shape': ") + shape + ", }";
    auto a = ParseNpy(WithHeader(dict, 0), "huge.npy");
    ASSERT_FALSE(a.ok()) << shape << " gave " << a->rows() << " rows";
    EXPECT_NE(a.status().message().find("too large for any file"), std::string::npos)
        << a.status().message();
  }
}

TEST(NpyTest, MissingFileIsNotFound) {
  auto a = ReadNpy("/nonexistent/x.npy");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), Code::kNotFound);
}

// A temporary file holding `bytes`; removed when the object goes.
class TempFile {
 public:
  explicit TempFile(const std::string& bytes) {
    char tmpl[] = "/tmp/yard-npy-test-XXXXXX";
    int fd = ::mkstemp(tmpl);
    path_ = tmpl;
    std::ofstream(path_, std::ios::binary) << bytes;
    ::close(fd);
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(NpyTest, ReadsAFileLargerThanTheHeaderWindow) {
  // 3 MB of data: read past the first MiB, where ReadNpy looks for the header.
  std::vector<float> values(750000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  TempFile f(EncodeNpy(Floats({250000, 3}, values)));
  auto a = ReadNpy(f.path());
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->shape, (std::vector<int64_t>{250000, 3}));
  ASSERT_EQ(a->data.size(), values.size() * 4);
  EXPECT_EQ(std::memcmp(a->data.data(), values.data(), a->data.size()), 0);
}

TEST(NpyTest, ReadDataIsAMapWhoseWritesNeverReachTheFile) {
  std::vector<float> values(5000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  std::string bytes = EncodeNpy(Floats({1000, 5}, values));
  TempFile f(bytes);
  auto a = ReadNpy(f.path());
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(a->data.mapped());
  // The data starts after the header, not on a page boundary.
  ASSERT_EQ(a->data.size(), values.size() * 4);
  EXPECT_EQ(std::memcmp(a->data.data(), values.data(), a->data.size()), 0);
  std::memset(a->data.data(), 0x7f, a->data.size());
  std::ifstream in(f.path(), std::ios::binary);
  std::string on_disk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(on_disk, bytes);
  // Moved, it stays valid; the old holder owns nothing.
  NpyData moved = std::move(a->data);
  EXPECT_TRUE(moved.mapped());
  EXPECT_EQ(moved.data()[0], 0x7f);
  EXPECT_EQ(a->data.size(), 0u);
  // Resized, it is memory of its own again.
  moved.resize(8);
  EXPECT_FALSE(moved.mapped());
  EXPECT_EQ(moved.size(), 8u);
}

TEST(NpyTest, ATruncatedOrForeignFileIsRefusedWithItsName) {
  std::string whole = EncodeNpy(Floats({2, 3}, {1, 2, 3, 4, 5, 6}));
  TempFile truncated(whole.substr(0, whole.size() - 4));
  auto a = ReadNpy(truncated.path());
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), Code::kInvalidArgument);
  EXPECT_NE(a.status().message().find(truncated.path()), std::string::npos);
  EXPECT_NE(a.status().message().find("truncated"), std::string::npos);
  TempFile foreign("PK\x03\x04 a zip file, not an array");
  auto b = ReadNpy(foreign.path());
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("not a .npy file"), std::string::npos);
  TempFile empty("");
  EXPECT_FALSE(ReadNpy(empty.path()).ok());
}

}  // namespace
}  // namespace yard::trainer
