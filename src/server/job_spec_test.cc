// The job spec check of POST /v1/jobs (server/job_spec.h). The number cases
// were bugs: max_restarts 1e300 was converted to int (undefined behaviour),
// 2.5 was read as 2, and nodes 4294967297 was truncated to 1 and accepted.
#include "server/job_spec.h"

#include <gtest/gtest.h>

#include "common/hashing.h"
#include "common/manifest.h"

namespace yard {
namespace {

using Json = nlohmann::json;

Catalog TestCatalog() {
  return Catalog::FromJson(Json::parse(R"({"version": 1, "types": [
      {"name": "small", "provider": "local", "cpus": 1},
      {"name": "pair", "provider": "slurm", "cpus": 2, "options": {"nodes": 2}}]})"))
      .value();
}

Json Spec(Json extra = Json::object()) {
  std::string data = "print('hi')\n";
  Manifest m;
  m.files.push_back(FileEntry{"train.py", 0644, data.size(), {{Sha256Hex(data), data.size()}}, ""});
  Json spec = {
      {"command", {"python3", "train.py"}}, {"bundle", m.ToJson()}, {"machines", {"small"}}};
  spec.update(extra);
  return spec;
}

// The message of the refusal of `spec`, "" when it is accepted.
std::string Refusal(const Json& spec) {
  StatusOr<ValidJobSpec> v = ValidateJobSpec(spec, TestCatalog());
  if (v.ok()) return "";
  EXPECT_EQ(v.status().code(), Code::kInvalidArgument) << v.status().ToString();
  return v.status().message();
}

TEST(JobSpecTest, AValidSpecIsAcceptedWithItsChunks) {
  StatusOr<ValidJobSpec> v = ValidateJobSpec(Spec(), TestCatalog());
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->bundle_chunks, std::vector<std::string>{Sha256Hex("print('hi')\n")});
  EXPECT_EQ(v->spec["machines"], Json({"small"}));
}

TEST(JobSpecTest, MaxRestartsOutOfRangeOrNotWholeIsRefusedNamingTheRange) {
  for (Json bad : {Json(1e300), Json(-1e300), Json(-1), Json(1001), Json(2.5), Json("3"),
                   Json(18446744073709551615ULL), Json(nullptr)}) {
    std::string msg = Refusal(Spec({{"max_restarts", bad}}));
    EXPECT_NE(msg.find("'max_restarts' must be a whole number from 0 to 1000 (got "),
              std::string::npos)
        << bad.dump() << ": " << msg;
  }
  EXPECT_NE(Refusal(Spec({{"max_restarts", 1e300}})).find("(got 1e+300)"), std::string::npos);
}

TEST(JobSpecTest, MaxRestartsInRangeIsStoredAsAnInteger) {
  for (const auto& [given, stored] :
       std::vector<std::pair<Json, int64_t>>{{0, 0}, {1000, 1000}, {3.0, 3}}) {
    StatusOr<ValidJobSpec> v = ValidateJobSpec(Spec({{"max_restarts", given}}), TestCatalog());
    ASSERT_TRUE(v.ok()) << given.dump() << ": " << v.status().ToString();
    EXPECT_TRUE(v->spec["max_restarts"].is_number_integer()) << given.dump();
    EXPECT_EQ(v->spec["max_restarts"].get<int64_t>(), stored);
  }
  EXPECT_FALSE(ValidateJobSpec(Spec(), TestCatalog())->spec.contains("max_restarts"))
      << "absent stays absent: the server's default applies";
}

TEST(JobSpecTest, NodesBeyondAnIntAreRefusedNotTruncated) {
  // 2^32 + 1 was read as the int 1 and accepted for a one-node type.
  for (Json bad : {Json(4294967297LL), Json(10001), Json(0), Json(-2), Json(1.5), Json(1e300),
                   Json(18446744073709551615ULL), Json("2")}) {
    std::string msg = Refusal(Spec({{"nodes", bad}, {"machines", {"pair"}}}));
    EXPECT_NE(msg.find("'nodes' must be a whole number from 1 to 10000 (got "), std::string::npos)
        << bad.dump() << ": " << msg;
  }
}

TEST(JobSpecTest, NodesAreCheckedAgainstEveryListedType) {
  StatusOr<ValidJobSpec> v =
      ValidateJobSpec(Spec({{"nodes", 2.0}, {"machines", {"pair"}}}), TestCatalog());
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_TRUE(v->spec["nodes"].is_number_integer()) << "the agent reads an integer";
  EXPECT_EQ(v->spec["nodes"].get<int64_t>(), 2);
  EXPECT_NE(Refusal(Spec({{"nodes", 2}, {"machines", {"pair", "small"}}}))
                .find("machine type 'small' has 1 node(s); a job on 2 nodes"),
            std::string::npos);
  EXPECT_NE(Refusal(Spec({{"nodes", 3}, {"machines", {"pair"}}})).find("'pair' has 2 node(s)"),
            std::string::npos);
}

TEST(JobSpecTest, DurationsOutOfRangeAreRefusedNamingTheRange) {
  struct Case {
    const char* key;
    Json value;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {"wait_request_s", 1e300,
            "'wait_request_s' must be a number of seconds from 0 to 1000000000 (got 1e+300)"},
           {"wait_request_s", -1, "'wait_request_s' must be a number of seconds from 0"},
           {"cool_down_s", -0.5, "'cool_down_s' must be a number of seconds from 0 to 1000000000"},
           {"cool_down_s", "10", "'cool_down_s' must be a number of seconds"},
           {"wait_new_job_s", -1e300,
            "from -1000000000 to 1000000000; 0 or less waits indefinitely"},
           {"wait_new_job_interval_s", 0,
            "'wait_new_job_interval_s' must be a number of seconds above 0"},
       }) {
    std::string msg = Refusal(Spec({{c.key, c.value}}));
    EXPECT_NE(msg.find(c.says), std::string::npos) << c.key << "=" << c.value.dump() << ": " << msg;
  }
  EXPECT_EQ(Refusal(Spec({{"wait_new_job_s", -1},
                          {"cool_down_s", 1e9},
                          {"wait_request_s", 0},
                          {"wait_new_job_interval_s", 0.1}})),
            "");
}

TEST(JobSpecTest, ShapesAreRefusedWithTheFieldNamed) {
  EXPECT_NE(Refusal(Json::array()).find("must be a JSON object"), std::string::npos);
  EXPECT_NE(Refusal(Spec({{"command", Json::array()}})).find("'command' must be"),
            std::string::npos);
  EXPECT_NE(Refusal(Spec({{"machines", {"nope"}}})).find("unknown machine type 'nope'"),
            std::string::npos);
  EXPECT_NE(Refusal(Spec({{"env", {{"A", 1}}}})).find("env 'A' must be a string"),
            std::string::npos);
  EXPECT_NE(Refusal(Spec({{"image", ""}})).find("'image' must be a non-empty"), std::string::npos);
  Json no_bundle = Spec();
  no_bundle.erase("bundle");
  EXPECT_NE(Refusal(no_bundle).find("missing field 'bundle'"), std::string::npos);
}

TEST(JobSpecTest, ParseJobSpecRefusesUnknownKeys) {
  EXPECT_TRUE(ParseJobSpec(R"({"command": ["x"], "max_restarts": 1})").ok());
  StatusOr<Json> bad = ParseJobSpec(R"({"command": ["x"], "restarts": 1})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("restarts"), std::string::npos) << bad.status().message();
}

TEST(JobSpecTest, NodesOfATypeReadsOnlyASaneWholeNumber) {
  MachineType t;
  EXPECT_EQ(NodesOf(t), 1);
  t.options = {{"nodes", 4}};
  EXPECT_EQ(NodesOf(t), 4);
  for (Json odd : {Json(1e300), Json("4"), Json(4294967297LL)}) {
    t.options = {{"nodes", odd}};
    EXPECT_EQ(NodesOf(t), 1) << odd.dump();
  }
}

}  // namespace
}  // namespace yard
