#include "client/progress.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace yard {
namespace {

constexpr uint64_t kMB = 1000 * 1000;

// A reporter on a fake clock writing into `out`.
struct Harness {
  explicit Harness(bool terminal, int columns = 80) {
    ProgressOptions o;
    o.label = "uploading data";
    o.clock = &clock;
    o.terminal = terminal;
    o.columns = [columns] { return columns; };
    o.write = [this](std::string_view s) {
      out += s;
      ++writes;
    };
    reporter = MakeProgress(std::move(o));
  }
  // Lines written so far (a plain renderer's output split at '\n').
  std::vector<std::string> Lines() const {
    std::vector<std::string> lines;
    size_t start = 0;
    for (size_t nl; (nl = out.find('\n', start)) != std::string::npos; start = nl + 1)
      lines.push_back(out.substr(start, nl - start));
    return lines;
  }
  FakeClock clock;
  std::string out;
  int writes = 0;
  std::unique_ptr<ProgressReporter> reporter;
};

TEST(FormatTest, BytesDurationsAndLines) {
  EXPECT_EQ(FormatBytes(880), "880 B");
  EXPECT_EQ(FormatBytes(12300), "12.3 kB");
  EXPECT_EQ(FormatBytes(412'300'000), "412.3 MB");
  EXPECT_EQ(FormatBytes(1'070'000'000), "1.07 GB");
  EXPECT_EQ(FormatDuration(7), "0:07");
  EXPECT_EQ(FormatDuration(62.2), "1:03");
  EXPECT_EQ(FormatDuration(3723), "1:02:03");
  EXPECT_EQ(FormatDuration(-1), "?");
  EXPECT_EQ(FormatProgressLine("up", 250 * kMB, 1000 * kMB, 50 * kMB, 0),
            "up  250.0 MB / 1.00 GB  25%  50.0 MB/s  0:15 left");
  // Without a total: what is done and the rate, no time left.
  EXPECT_EQ(FormatProgressLine("up", 3 * kMB, 0, 1 * kMB, 0), "up  3.0 MB  1.0 MB/s");
}

TEST(FormatTest, LineFitsTheWidthCuttingTheLabelFirst) {
  std::string label(60, 'x');
  std::string line = FormatProgressLine(label, 250 * kMB, 1000 * kMB, 50 * kMB, 60);
  EXPECT_LE(line.size(), 60u);
  EXPECT_NE(line.find("0:15 left"), std::string::npos) << line;
  EXPECT_NE(line.find("..."), std::string::npos) << line;
  EXPECT_LE(FormatProgressLine(label, 250 * kMB, 1000 * kMB, 50 * kMB, 10).size(), 10u);
}

TEST(ProgressTest, ShortTransferPrintsNothing) {
  for (bool terminal : {true, false}) {
    Harness h(terminal);
    h.reporter->Update(10 * kMB, 100 * kMB);
    h.clock.Advance(0.3);
    h.reporter->Update(100 * kMB, 100 * kMB);
    h.reporter->Finish();
    EXPECT_EQ(h.out, "") << "terminal " << terminal;
  }
}

TEST(ProgressTest, TerminalRedrawsOneLineAtMostTenTimesASecond) {
  Harness h(/*terminal=*/true);
  h.clock.Advance(0.5);
  for (int i = 1; i <= 100; ++i) {  // 100 updates over one second
    h.reporter->Update(i * kMB, 200 * kMB);
    h.clock.Advance(0.01);
  }
  EXPECT_GE(h.writes, 9);
  EXPECT_LE(h.writes, 11);
  EXPECT_EQ(h.out.find('\n'), std::string::npos);
  EXPECT_EQ(h.out.front(), '\r');
  h.reporter->Finish();
  EXPECT_EQ(h.out.back(), '\n');
}

TEST(ProgressTest, TerminalLineShowsBytesRateAndTimeLeftWithinTheWidth) {
  Harness h(/*terminal=*/true, /*columns=*/50);
  h.clock.Advance(2);
  h.reporter->Update(100 * kMB, 400 * kMB);  // 50 MB/s, 300 MB to go
  std::string last = h.out.substr(h.out.rfind('\r') + 1);
  EXPECT_LE(last.size(), 49u);
  EXPECT_NE(last.find("100.0 MB / 400.0 MB"), std::string::npos) << last;
  EXPECT_NE(last.find("50.0 MB/s"), std::string::npos) << last;
  EXPECT_NE(last.find("0:06 left"), std::string::npos) << last;
}

TEST(ProgressTest, TerminalPadsOverALongerPreviousLine) {
  Harness h(/*terminal=*/true);
  h.clock.Advance(1);
  h.reporter->Update(100 * kMB, 400 * kMB);
  size_t first = h.out.size();
  h.clock.Advance(1000);  // the rate falls to kB/s: a different, shorter-or-equal line
  h.reporter->Update(400 * kMB, 400 * kMB);
  std::string second = h.out.substr(first);
  EXPECT_GE(second.size(), first);  // covers every column the first line used
}

TEST(ProgressTest, PlainPrintsALineEveryTenthOfTheWay) {
  Harness h(/*terminal=*/false);
  h.clock.Advance(0.5);
  for (int i = 1; i <= 100; ++i) {
    h.reporter->Update(i * kMB, 100 * kMB);
    h.clock.Advance(0.01);
  }
  h.reporter->Finish();
  std::vector<std::string> lines = h.Lines();
  // The first line, one per further 10%, and the summary.
  EXPECT_GE(lines.size(), 10u);
  EXPECT_LE(lines.size(), 12u);
  EXPECT_EQ(h.out.find('\r'), std::string::npos);
  EXPECT_NE(lines.back().find("100.0 MB in"), std::string::npos) << lines.back();
}

TEST(ProgressTest, PlainPrintsEveryFiveSecondsWhenSlow) {
  Harness h(/*terminal=*/false);
  for (int s = 1; s <= 20; ++s) {  // 1% a second
    h.clock.Advance(1);
    h.reporter->Update(s * kMB, 100 * kMB);
  }
  // At 1 s, 6 s, 11 s, 16 s (the 10% step comes at 11 s too).
  EXPECT_EQ(h.Lines().size(), 4u);
  EXPECT_NE(h.Lines()[0].find("1:39 left"), std::string::npos) << h.Lines()[0];
}

}  // namespace
}  // namespace yard
