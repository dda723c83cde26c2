#include "trainer/tb_events.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace yard::trainer {
namespace {

uint64_t ReadLE(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);  // the standard check value
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 B.4
}

TEST(TfRecordTest, FramesLengthDataAndMaskedCrcs) {
  std::string rec = FrameRecord("abc");
  ASSERT_EQ(rec.size(), 8u + 4 + 3 + 4);
  EXPECT_EQ(ReadLE(rec, 0, 8), 3u);
  EXPECT_EQ(ReadLE(rec, 8, 4), MaskedCrc32c(rec.substr(0, 8)));
  EXPECT_EQ(rec.substr(12, 3), "abc");
  EXPECT_EQ(ReadLE(rec, 15, 4), MaskedCrc32c("abc"));
  uint32_t c = Crc32c("abc");
  EXPECT_EQ(MaskedCrc32c("abc"), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(EventEncodingTest, ScalarEventBytes) {
  // Event{wall_time: 1.5, step: 3, summary{value{tag: "loss", simple_value: 0.25}}}
  std::string e = EncodeScalarsEvent(1.5, 3, {{"loss", 0.25f}});
  double wall = 1.5;
  float value = 0.25f;
  std::string want = "\x09";
  want.append(reinterpret_cast<const char*>(&wall), 8);
  want += std::string("\x10\x03\x2a\x0d\x0a\x0b\x0a\x04loss\x15", 13);
  want.append(reinterpret_cast<const char*>(&value), 4);
  EXPECT_EQ(e, want);
}

TEST(EventEncodingTest, FileVersionEvent) {
  std::string e = EncodeFileVersionEvent(2.0);
  EXPECT_EQ(e.substr(9), std::string("\x1a\x0d") + "brain.Event:2");
}

TEST(EventFileWriterTest, WritesRecordsToANewFile) {
  std::string dir = testing::TempDir() + "/tb_events_test";
  std::filesystem::remove_all(dir);
  auto w = EventFileWriter::Open(dir, 1700000000.5);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE((*w)->WriteScalars(1700000001.0, 1, {{"loss", 1.0f}}).ok());
  EXPECT_NE((*w)->path().find("/events.out.tfevents.1700000000."), std::string::npos);
  auto second = EventFileWriter::Open(dir, 1700000000.5);  // same second: a new name
  ASSERT_TRUE(second.ok());
  EXPECT_NE((*second)->path(), (*w)->path());
  std::ifstream in((*w)->path(), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string first = FrameRecord(EncodeFileVersionEvent(1700000000.5));
  EXPECT_EQ(bytes.substr(0, first.size()), first);
  EXPECT_EQ(bytes.substr(first.size()),
            FrameRecord(EncodeScalarsEvent(1700000001.0, 1, {{"loss", 1.0f}})));
}

}  // namespace
}  // namespace yard::trainer
