#include "agent/output_splitter.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

std::string Join(const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += p;
  return out;
}

TEST(OutputSplitterTest, PassesPartialLinesAtOnce) {
  OutputSplitter s;
  EXPECT_EQ(s.Add("no newline yet", false), std::vector<std::string>{"no newline yet"});
  EXPECT_EQ(s.Add("", false), std::vector<std::string>{});
}

TEST(OutputSplitterTest, CutsAtMaxPiece) {
  OutputSplitter s;
  std::string big(OutputSplitter::kMaxPiece * 2 + 5, 'a');
  auto pieces = s.Add(big, false);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0].size(), OutputSplitter::kMaxPiece);
  EXPECT_EQ(Join(pieces), big);
}

TEST(OutputSplitterTest, HoldsBackOnlyAnIncompleteCharacter) {
  OutputSplitter s;
  std::string euro = "\xE2\x82\xAC";
  EXPECT_EQ(Join(s.Add("x" + euro.substr(0, 2), false)), "x");
  EXPECT_EQ(Join(s.Add(euro.substr(2) + "y", false)), euro + "y");
}

TEST(OutputSplitterTest, NeverCutsInsideACharacter) {
  OutputSplitter s;
  std::string text = std::string(OutputSplitter::kMaxPiece - 1, 'a') + "\xC3\xA9" + "b";
  auto pieces = s.Add(text, false);
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0].size(), OutputSplitter::kMaxPiece - 1);
  EXPECT_EQ(pieces[1],
            "\xC3\xA9"
            "b");
}

TEST(OutputSplitterTest, EofFlushesEverything) {
  OutputSplitter s;
  EXPECT_EQ(Join(s.Add("a\xE2\x82", false)), "a");
  EXPECT_EQ(Join(s.Add("", true)), "\xE2\x82");
}

// The pump's path: pieces are views, into the caller's bytes when no
// character was split across reads (nothing copied), into the splitter's
// own buffer when one was.
TEST(OutputSplitterTest, SplitReturnsViewsOfTheSameBytes) {
  OutputSplitter s;
  std::string data = "plain \xe2\x82";  // ends inside a character
  std::vector<std::string_view> pieces = s.Split(data, false);
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0], "plain ");
  EXPECT_EQ(pieces[0].data(), data.data()) << "a view into the caller's bytes";
  std::string more = "\xac end";
  pieces = s.Split(more, false);
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0], "\xe2\x82\xac end");
  std::string big(2 * OutputSplitter::kMaxPiece + 5, 'x');
  pieces = s.Split(big, true);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[2].size(), 5u);
  EXPECT_EQ(pieces[1].data(), big.data() + OutputSplitter::kMaxPiece);
}

TEST(OutputSplitterTest, IncompleteTail) {
  EXPECT_EQ(IncompleteUtf8Tail("abc"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("a\xC3"), 1u);
  EXPECT_EQ(IncompleteUtf8Tail("a\xC3\xA9"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(IncompleteUtf8Tail("\xF0\x9F\x98\x80"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("\xff"), 0u);
}

}  // namespace
}  // namespace yard
