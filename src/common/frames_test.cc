#include "common/frames.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

TEST(FramesTest, RoundTripOfAnyBytes) {
  std::string stream;
  const std::string bytes("\xff\0\n\r{", 5);
  AppendFrame(frame_tag::kOutput, bytes, &stream);
  AppendFrame(frame_tag::kJson, R"({"a":1})", &stream);
  AppendFrame(frame_tag::kKeepAlive, "", &stream);
  std::string_view rest = stream;
  bool corrupt = false;
  std::optional<Frame> f = NextFrame(&rest, &corrupt);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->tag, frame_tag::kOutput);
  EXPECT_EQ(f->payload, bytes);
  f = NextFrame(&rest, &corrupt);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->payload, R"({"a":1})");
  f = NextFrame(&rest, &corrupt);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->tag, frame_tag::kKeepAlive);
  EXPECT_TRUE(f->payload.empty());
  EXPECT_FALSE(NextFrame(&rest, &corrupt));
  EXPECT_FALSE(corrupt);
}

TEST(FramesTest, LengthIsLittleEndian) {
  std::string stream;
  AppendFrameHeader('o', 0x010203, &stream);
  EXPECT_EQ(stream, std::string("o\x03\x02\x01\x00", 5));
}

TEST(FramesTest, PartialFrameWaitsAndHugeLengthIsCorrupt) {
  std::string stream;
  AppendFrame('o', "hello", &stream);
  std::string_view part = std::string_view(stream).substr(0, 7);
  bool corrupt = true;
  EXPECT_FALSE(NextFrame(&part, &corrupt));
  EXPECT_FALSE(corrupt);
  EXPECT_EQ(part.size(), 7u);  // nothing taken
  std::string_view huge("o\xff\xff\xff\xff", 5);
  EXPECT_FALSE(NextFrame(&huge, &corrupt));
  EXPECT_TRUE(corrupt);
}

TEST(FramesTest, ReaderJoinsPiecesFedByteByByte) {
  std::string stream;
  for (int i = 0; i < 3; ++i) AppendFrame('o', std::string(100 + i, 'a' + i), &stream);
  FrameReader reader;
  std::vector<std::string> got;
  for (char c : stream) {
    reader.Feed(std::string_view(&c, 1));
    while (std::optional<Frame> f = reader.Next()) got.emplace_back(f->payload);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2], std::string(102, 'c'));
  EXPECT_EQ(reader.pending(), 0u);
  EXPECT_FALSE(reader.corrupt());
}

}  // namespace
}  // namespace yard
