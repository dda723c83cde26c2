#include "server/agent_batch.h"

#include <gtest/gtest.h>

#include "common/frames.h"

namespace yard {
namespace {

std::string Framed(const std::string& head,
                   const std::vector<std::pair<char, std::string>>& records) {
  std::string body;
  AppendFrame(frame_tag::kJson, head, &body);
  for (const auto& [tag, payload] : records) AppendFrame(tag, payload, &body);
  return body;
}

TEST(AgentBatchTest, DecodesTheFramedForm) {
  std::string body =
      Framed(R"({"job": "j1", "attempt": 2, "first": 5})",
             {{'o', "bytes \xff as sent\n"}, {'j', R"({"kind": "exit", "exit_code": 0})"}});
  StatusOr<AgentBatch> b = DecodeAgentBatch(body, /*framed=*/true);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->job, "j1");
  EXPECT_EQ(b->attempt, 2);
  EXPECT_EQ(b->first, 5);
  ASSERT_EQ(b->records.size(), 2u);
  EXPECT_EQ(*b->records[0].output, "bytes \xff as sent\n");
  EXPECT_EQ(b->records[1].json["kind"], "exit");
}

TEST(AgentBatchTest, DecodesTheJsonForm) {
  StatusOr<AgentBatch> b = DecodeAgentBatch(
      R"({"job": "j1", "attempt": 1, "records": [{"kind": "output", "data": "hi\n"}, {"kind": "metric", "values": {}}]})",
      /*framed=*/false);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->first, 1);  // the default
  ASSERT_EQ(b->records.size(), 2u);
  EXPECT_EQ(*b->records[0].output, "hi\n");
  EXPECT_FALSE(b->records[1].output.has_value());
}

TEST(AgentBatchTest, RefusesCorruptFrames) {
  std::string body = Framed(R"({"job": "j1", "attempt": 1, "first": 1})", {{'o', "x"}});
  for (auto [cut, want] : std::vector<std::pair<std::string, std::string>>{
           {body.substr(0, body.size() - 1), "cut short"},
           {Framed(R"({"job": "j1", "attempt": 1})", {{'z', "x"}}), "unknown record frame tag"},
           {Framed(R"({"job": "j1", "attempt": 1})", {{'j', "{nope"}}), "invalid JSON"},
           {Framed(R"({"job": "j1", "attempt": 1, "extra": 1})", {}), "unknown field 'extra'"},
           {"", "without its head"}}) {
    StatusOr<AgentBatch> b = DecodeAgentBatch(cut, /*framed=*/true);
    ASSERT_FALSE(b.ok()) << want;
    EXPECT_NE(b.status().message().find(want), std::string::npos) << b.status().message();
  }
}

// Seen while writing fuzz/events_fuzzer.cc (by reading; the fuzzer had not
// hit it in its first runs): "attempt" and "first" were read as doubles and
// cast to int64_t, which is undefined for 1e300 (UBSan), and the
// controller's sequence arithmetic could then overflow.
TEST(AgentBatchTest, AttemptAndFirstMustBeWholeNumbersInRange) {
  for (const char* head : {R"({"job": "j", "attempt": 1e300})", R"({"job": "j", "first": -1e300})",
                           R"({"job": "j", "first": 1.5})", R"({"job": "j", "first": 0})",
                           R"({"job": "j", "attempt": -1})", R"({"job": "j", "first": 1e16})"}) {
    StatusOr<AgentBatch> b = DecodeAgentBatch(Framed(head, {}), /*framed=*/true);
    ASSERT_FALSE(b.ok()) << head;
    EXPECT_EQ(b.status().code(), Code::kInvalidArgument);
    EXPECT_NE(b.status().message().find("must be a whole number"), std::string::npos)
        << b.status().message();
  }
}

// Found by fuzz/spool_fuzzer.cc: a record {"kind": {...}} made
// value("kind", "") throw (the server answered 500; in the controller it
// also left the store's transaction open, see store_test.cc).
TEST(AgentBatchTest, AKindThatIsNotAStringIsNoKind) {
  StatusOr<AgentBatch> b = DecodeAgentBatch(
      R"({"job": "j", "records": [{"kind": {"x": 1}, "data": "a"}, {"kind": 7}, "text"]})", false);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  ASSERT_EQ(b->records.size(), 3u);
  for (const AgentRecord& r : b->records) {
    EXPECT_FALSE(r.output.has_value());
    EXPECT_EQ(RecordKind(r.json), "");
    EXPECT_FALSE(RecordToEvent(r.json, "i").ok());
  }
  EXPECT_EQ(RecordKind(Json{{"kind", "exit"}}), "exit");
}

TEST(AgentBatchTest, RecordToEventChecksEachKind) {
  EXPECT_TRUE(RecordToEvent(Json{{"kind", "metric"}, {"values", {{"loss", 1}}}}, "i").ok());
  EXPECT_TRUE(RecordToEvent(Json{{"kind", "decision"}, {"message", "m"}}, "i").ok());
  EXPECT_FALSE(RecordToEvent(Json{{"kind", "metric"}, {"values", 1}}, "i").ok());
  EXPECT_FALSE(RecordToEvent(Json::array(), "i").ok());
  StatusOr<Json> bad = RecordToEvent(
      Json{{"kind", "artifact"},
           {"dir", "checkpoints"},
           {"entry", {{"path", "../x"}, {"mode", 420}, {"size", 0}, {"chunks", Json::array()}}}},
      "i");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("artifact"), std::string::npos) << bad.status().message();
}

TEST(AgentBatchTest, AnArtifactPartIsCheckedAsAFileEntryIs) {
  std::string h(64, 'a');
  Json part = {{"kind", "artifact_part"},
               {"dir", "checkpoints"},
               {"path", "m.pt"},
               {"offset", 4096},
               {"chunks", Json::array({Json::array({h, 100})})}};
  StatusOr<Json> ev = RecordToEvent(part, "i");
  ASSERT_TRUE(ev.ok()) << ev.status().ToString();
  EXPECT_EQ((*ev)["offset"], 4096);
  EXPECT_EQ((*ev)["instance"], "i");
  auto refused = [&](const char* key, Json value) {
    Json bad = part;
    bad[key] = std::move(value);
    return !RecordToEvent(bad, "i").ok();
  };
  EXPECT_TRUE(refused("path", "../m.pt"));
  EXPECT_TRUE(refused("dir", "home"));
  EXPECT_TRUE(refused("offset", -1));
  EXPECT_TRUE(refused("offset", 1e300));
  EXPECT_TRUE(refused("chunks", Json::array({Json::array({"ABC", 100})})));
  EXPECT_TRUE(refused("chunks", Json::array({Json::array({h, 0})})));
  EXPECT_TRUE(refused("size", 100));  // unknown key
}

}  // namespace
}  // namespace yard
