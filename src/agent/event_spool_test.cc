#include "agent/event_spool.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/agent_testing.h"
#include "common/frames.h"

namespace yard {
namespace {

using agent_testing::TempDir;
using namespace std::chrono_literals;

Json Output(const std::string& data) { return {{"kind", "output"}, {"data", data}}; }
Json ExitRecord() {
  return {{"kind", "exit"}, {"exit_code", 0}, {"message", "m"}, {"cancelled", false}};
}

std::unique_ptr<EventSpool> OpenSpool(const std::string& dir) {
  auto spool = EventSpool::Open(dir);
  EXPECT_TRUE(spool.ok()) << spool.status().ToString();
  return std::move(spool).value();
}

// The records of a batch as JSON (output bytes as "data").
Json Records(const SpoolBatch& b) {
  std::string records = b.records();
  if (!b.framed) return Json::parse("[" + records + "]");
  Json out = Json::array();
  std::string_view rest = records;
  bool corrupt = false;
  while (std::optional<Frame> f = NextFrame(&rest, &corrupt)) {
    out.push_back(f->tag == frame_tag::kOutput
                      ? Json{{"kind", "output"}, {"data", std::string(f->payload)}}
                      : Json::parse(f->payload));
  }
  EXPECT_TRUE(rest.empty() && !corrupt);
  return out;
}

TEST(EventSpoolTest, NumbersRecordsFromOnePerAttempt) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  EXPECT_EQ(*spool->Append("j", 1, Output("a")), 1);
  EXPECT_EQ(*spool->Append("j", 1, Output("b")), 2);
  EXPECT_EQ(*spool->Append("j", 2, Output("c")), 1);
  EXPECT_EQ(spool->Unacked(), 3);
}

TEST(EventSpoolTest, BatchStartsAfterAckedAndRespectsSize) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(spool->Append("j", 1, Output(std::string(100, 'x'))).ok());
  auto b = spool->WaitBatch(350, 0ms);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->first, 1);
  EXPECT_EQ(b->count, 2);  // each line is about 130 bytes
  EXPECT_EQ(Records(*b).size(), 2u);
  spool->Ack("j", 1, 2);
  b = spool->WaitBatch(1 << 20, 0ms);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->first, 3);
  EXPECT_EQ(b->count, 8);
  EXPECT_EQ(Records(*b)[0]["data"], std::string(100, 'x'));
}

TEST(EventSpoolTest, OversizedRecordStillGoesAlone) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  ASSERT_TRUE(spool->Append("j", 1, Output(std::string(1000, 'x'))).ok());
  auto b = spool->WaitBatch(10, 0ms);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->count, 1);
}

TEST(EventSpoolTest, RequestBodyIsAFramedEventsCall) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  ASSERT_TRUE(spool->AppendOutput("job-7", 3, "hi\n").ok());
  ASSERT_TRUE(spool->Append("job-7", 3, {{"kind", "metric"}, {"values", {{"loss", 1}}}}).ok());
  auto b = spool->WaitBatch(1 << 20, 0ms);
  ASSERT_TRUE(b);
  EXPECT_STREQ(b->ContentType(), kFramesContentType);
  std::string body = b->RequestBody();
  std::string_view rest = body;
  bool corrupt = false;
  std::optional<Frame> head = NextFrame(&rest, &corrupt);
  ASSERT_TRUE(head);
  EXPECT_EQ(Json::parse(head->payload), Json::parse(R"({"job":"job-7","attempt":3,"first":1})"));
  std::optional<Frame> out = NextFrame(&rest, &corrupt);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->tag, frame_tag::kOutput);
  EXPECT_EQ(out->payload, "hi\n");
  std::optional<Frame> metric = NextFrame(&rest, &corrupt);
  ASSERT_TRUE(metric);
  EXPECT_EQ(Json::parse(metric->payload)["values"]["loss"], 1);
  EXPECT_TRUE(rest.empty());
}

TEST(EventSpoolTest, OutputBytesAreKeptExactly) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  // Sized by the literal itself (an explicit 30 read past its 28 bytes; ASan).
  static constexpr char kBytes[] = "bad \xff\xfe byte, a NUL \0 and \r\n";
  const std::string bytes(kBytes, sizeof kBytes - 1);
  ASSERT_TRUE(spool->AppendOutput("j", 1, bytes).ok());
  EXPECT_EQ(Records(*spool->WaitBatch(1 << 20, 0ms))[0]["data"].get<std::string>(), bytes);
  // ... also after a reload from disk.
  spool.reset();
  spool = OpenSpool(dir.path());
  EXPECT_EQ(Records(*spool->WaitBatch(1 << 20, 0ms))[0]["data"].get<std::string>(), bytes);
}

// The pump writes all the pieces of one read with a single write: each is
// its own record, numbered in order, on disk as after single appends.
TEST(EventSpoolTest, AppendOutputsNumbersEachPieceAndSurvivesAReload) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  ASSERT_EQ(*spool->AppendOutput("j", 1, "zero\n"), 1);
  EXPECT_EQ(*spool->AppendOutputs("j", 1, {"one\n", std::string_view("tw\0o\n", 5), "three"}), 4);
  EXPECT_EQ(*spool->AppendOutputs("j", 1, {}), 4) << "nothing appended: the last number";
  EXPECT_EQ(spool->Unacked(), 4);
  Json want = Json::array(
      {Output("zero\n"), Output("one\n"), Output(std::string("tw\0o\n", 5)), Output("three")});
  EXPECT_EQ(Records(*spool->WaitBatch(1 << 20, 0ms)), want);
  spool.reset();
  spool = OpenSpool(dir.path());
  EXPECT_EQ(Records(*spool->WaitBatch(1 << 20, 0ms)), want);
}

// Records are sent from the copy the spool keeps in memory while it is
// small; older ones (beyond kMaxHeldBytes, or again after the server said it
// holds fewer) are read back from the file. Either way a batch is the
// records' exact bytes in order, the file's part and memory's joined.
TEST(EventSpoolTest, RecordsBeyondTheHeldOnesAreReadBackAndJoinExactly) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  const size_t size = 1 << 20;
  const int n = static_cast<int>(EventSpool::kMaxHeldBytes / size) + 4;
  Json want = Json::array();
  for (int i = 0; i < n; ++i) {
    std::string bytes(size, static_cast<char>('a' + i % 26));
    bytes[i] = '#';
    ASSERT_TRUE(spool->AppendOutput("j", 1, bytes).ok());
    want.push_back(Output(bytes));
  }
  auto all = spool->WaitBatch(size_t{1} << 30, 0ms);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->count, n);
  EXPECT_GE(all->pieces.size(), 2u) << "the oldest records come from the file";
  EXPECT_EQ(Records(*all), want);

  spool->Ack("j", 1, n - 1);
  spool->Ack("j", 1, 2);  // a 409: the server holds only two
  auto again = spool->WaitBatch(size_t{1} << 30, 0ms);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->first, 3);
  EXPECT_EQ(Records(*again), Json(std::vector<Json>(want.begin() + 2, want.end())));
}

// The contract of the header: a record whose sequence number Append*
// returned is in the file, though it is sent from memory. Another spool
// opening the folder (as the agent restarted after a SIGKILL does) finds
// every one, byte for byte.
TEST(EventSpoolTest, EveryRecordHeldInMemoryIsAlreadyInTheFile) {
  TempDir dir, copy;
  auto spool = OpenSpool(dir.path());
  std::vector<std::string_view> pieces = {"first line\n", "second", " line\n"};
  ASSERT_TRUE(spool->AppendOutputs("j", 1, pieces).ok());
  ASSERT_TRUE(spool->Append("j", 1, ExitRecord()).ok());
  auto sent = spool->WaitBatch(1 << 20, 0ms);
  ASSERT_TRUE(sent);
  std::filesystem::copy(spool->PathFor("j", 1), copy.path());
  auto restarted = OpenSpool(copy.path());
  auto reloaded = restarted->WaitBatch(1 << 20, 0ms);
  ASSERT_TRUE(reloaded);
  EXPECT_EQ(reloaded->count, 4);
  EXPECT_EQ(reloaded->records(), sent->records());
  EXPECT_EQ(Records(*reloaded), Json::array({Output("first line\n"), Output("second"),
                                             Output(" line\n"), ExitRecord()}));
}

TEST(EventSpoolTest, Version1LeftoverIsSentAsJson) {
  TempDir dir;
  std::ofstream(dir.path() + "/old-2.jsonl")
      << R"({"attempt":2,"job":"old","yard_spool":1})"
         "\n"
      << R"({"kind":"output","data":"a\n"})"
         "\n"
      << R"({"kind":"exit","exit_code":0,"message":"","cancelled":false})"
         "\n";
  auto spool = OpenSpool(dir.path());
  auto b = spool->WaitBatch(1 << 20, 0ms);
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->framed);
  EXPECT_STREQ(b->ContentType(), "application/json");
  Json body = Json::parse(b->RequestBody());
  EXPECT_EQ(body["job"], "old");
  EXPECT_EQ(body["attempt"], 2);
  ASSERT_EQ(body["records"].size(), 2u);
  EXPECT_EQ(body["records"][0]["data"], "a\n");
  spool->Ack("old", 2, 2);  // the exit record acknowledged: the file goes
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/old-2.jsonl"));
}

// Found by fuzz/spool_fuzzer.cc: a line with a NUL after its object was
// taken (nlohmann::json stops at a NUL), but a batch holding it is not JSON,
// so the server refused the batch every time it was sent. Such a line ends
// the file as a torn one does.
TEST(EventSpoolTest, ALineWithANulEndsAVersion1Leftover) {
  TempDir dir;
  std::ofstream(dir.path() + "/old-2.jsonl", std::ios::binary)
      << R"({"attempt":2,"job":"old","yard_spool":1})"
         "\n"
      << R"({"kind":"output","data":"a\n"})"
         "\n"
      << std::string(R"({"kind":"output","data":"b\n"})"
                     "\0\0}\n",
                     34)
      << R"({"kind":"output","data":"c\n"})"
         "\n";
  auto spool = OpenSpool(dir.path());
  auto b = spool->WaitBatch(1 << 20, 0ms);
  ASSERT_TRUE(b);
  Json body = Json::parse(b->RequestBody());
  ASSERT_EQ(body["records"].size(), 1u) << b->RequestBody();
  EXPECT_EQ(body["records"][0]["data"], "a\n");
}

TEST(EventSpoolTest, UnackedBytesBoundWaitsForAcks) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  EXPECT_EQ(spool->UnackedBytes("j", 1), 0u);
  ASSERT_TRUE(spool->AppendOutput("j", 1, std::string(1000, 'x')).ok());
  ASSERT_TRUE(spool->AppendOutput("j", 1, std::string(1000, 'y')).ok());
  EXPECT_EQ(spool->UnackedBytes("j", 1), 2 * (1000 + kFrameHeaderBytes));
  EXPECT_FALSE(spool->WaitUnackedBytesAtMost("j", 1, 1500, 10ms));
  std::thread acker([&] {
    std::this_thread::sleep_for(20ms);
    spool->Ack("j", 1, 1);
  });
  EXPECT_TRUE(spool->WaitUnackedBytesAtMost("j", 1, 1500, 10s));
  acker.join();
  EXPECT_EQ(spool->UnackedBytes("j", 1), 1000 + kFrameHeaderBytes);
}

TEST(EventSpoolTest, AckOfExitDeletesTheFile) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  ASSERT_TRUE(spool->Append("j", 1, Output("a")).ok());
  ASSERT_TRUE(spool->Append("j", 1, ExitRecord()).ok());
  std::string path = spool->PathFor("j", 1);
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_EQ(spool->Append("j", 1, Output("late")).status().code(), Code::kFailedPrecondition);
  spool->Ack("j", 1, 1);
  EXPECT_TRUE(std::filesystem::exists(path));
  spool->Ack("j", 1, 2);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(spool->Unacked(), 0);
  EXPECT_TRUE(spool->WaitAllAcked(0ms));
}

TEST(EventSpoolTest, ReloadResendsEverythingAndCutsATornLine) {
  TempDir dir;
  std::string path;
  {
    auto spool = OpenSpool(dir.path());
    ASSERT_TRUE(spool->Append("j", 1, Output("a")).ok());
    ASSERT_TRUE(spool->Append("j", 1, Output("b")).ok());
    spool->Ack("j", 1, 1);  // acknowledgements are not persisted
    path = spool->PathFor("j", 1);
  }
  { std::ofstream(path, std::ios::app) << std::string("o\x10\0\0\0part", 9); }  // a crash mid-write
  auto spool = OpenSpool(dir.path());
  auto b = spool->WaitBatch(1 << 20, 0ms);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->job, "j");
  EXPECT_EQ(b->first, 1);
  EXPECT_EQ(b->count, 2);
  // The next record follows the last whole one.
  EXPECT_EQ(*spool->Append("j", 1, Output("c")), 3);
  spool->Ack("j", 1, 2);
  EXPECT_EQ(Records(*spool->WaitBatch(1 << 20, 0ms))[0]["data"], "c");
}

TEST(EventSpoolTest, LeftoverWithoutExitIsDeletedOnceAcked) {
  TempDir dir;
  std::string path;
  {
    auto spool = OpenSpool(dir.path());
    ASSERT_TRUE(spool->Append("j", 1, Output("a")).ok());
    path = spool->PathFor("j", 1);
  }
  auto spool = OpenSpool(dir.path());
  spool->Ack("j", 1, 1);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(EventSpoolTest, EmptyLeftoverIsRemovedAndForeignFilesKept) {
  TempDir dir;
  std::ofstream(dir.path() + "/empty-1.jsonl").flush();
  std::ofstream(dir.path() + "/empty-2.spool").flush();
  std::ofstream(dir.path() + "/foreign-1.jsonl") << "{\"something\": \"else\"}\n";
  std::ofstream(dir.path() + "/foreign-2.spool") << "{\"something\": \"else\"}\n";
  auto spool = OpenSpool(dir.path());
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/empty-1.jsonl"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/empty-2.spool"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/foreign-1.jsonl"));
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/foreign-2.spool"));
  EXPECT_FALSE(spool->WaitBatch(1 << 20, 0ms));
}

TEST(EventSpoolTest, LeftoversComeBeforeNewStreams) {
  TempDir dir;
  {
    auto spool = OpenSpool(dir.path());
    ASSERT_TRUE(spool->Append("old", 1, Output("a")).ok());
  }
  auto spool = OpenSpool(dir.path());
  ASSERT_TRUE(spool->Append("new", 1, Output("b")).ok());
  EXPECT_EQ(spool->WaitBatch(1 << 20, 0ms)->job, "old");
}

TEST(EventSpoolTest, DeferredStreamLetsOthersGoFirst) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  ASSERT_TRUE(spool->Append("a", 1, Output("x")).ok());
  ASSERT_TRUE(spool->Append("b", 1, Output("y")).ok());
  spool->Defer("a", 1, 10s);
  EXPECT_EQ(spool->WaitBatch(1 << 20, 0ms)->job, "b");
  spool->Ack("b", 1, 1);
  EXPECT_FALSE(spool->WaitBatch(1 << 20, 20ms));
  spool->Defer("a", 1, 0ms);
  EXPECT_EQ(spool->WaitBatch(1 << 20, 0ms)->job, "a");
}

TEST(EventSpoolTest, WaitBatchWakesOnAppendAndOnWake) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    ASSERT_TRUE(spool->Append("j", 1, Output("a")).ok());
  });
  EXPECT_TRUE(spool->WaitBatch(1 << 20, 10s));
  t.join();
  spool->Ack("j", 1, 1);
  std::thread waker([&] {
    std::this_thread::sleep_for(20ms);
    spool->Wake();
  });
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(spool->WaitBatch(1 << 20, 10s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  waker.join();
}

TEST(EventSpoolTest, DropDeletesAndRefusesMore) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  ASSERT_TRUE(spool->Append("j", 1, Output("a")).ok());
  std::string path = spool->PathFor("j", 1);
  spool->Drop("j", 1);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(spool->Unacked(), 0);
  EXPECT_FALSE(spool->Append("j", 1, Output("b")).ok());
}

TEST(EventSpoolTest, InvalidUtf8InJsonIsReplacedNotThrown) {
  TempDir dir;
  auto spool = OpenSpool(dir.path());
  ASSERT_TRUE(spool->Append("j", 1, Output("bad \xff byte")).ok());
  EXPECT_EQ(Records(*spool->WaitBatch(1 << 20, 0ms))[0]["data"], "bad \xEF\xBF\xBD byte");
}

TEST(EventSpoolTest, SafeFileNameKeepsNamesInTheFolder) {
  EXPECT_EQ(SafeFileName("job-1_a.b"), "job-1_a.b");
  EXPECT_EQ(SafeFileName("../x/y"), "_.._x_y");
  EXPECT_EQ(SafeFileName(""), "_");
}

}  // namespace
}  // namespace yard
