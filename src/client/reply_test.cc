#include "client/reply.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

const Json kAnswer = Json::parse(R"({
  "jobs": [{"id": "job-1", "exit_code": 3, "cost": 0.5, "open": true, "note": null},
           {"id": 7}],
  "by_kind": {"running": 1.5, "cooling": 0.25},
  "big": 18446744073709551615
})");

TEST(ReplyTest, ReadsFieldsOfTheRightType) {
  Reply r(kAnswer, "GET /v1/cost");
  StatusOr<std::vector<Reply>> jobs = r.Array("jobs");
  ASSERT_TRUE(jobs.ok()) << jobs.status().message();
  ASSERT_EQ(jobs->size(), 2u);
  const Reply& j = (*jobs)[0];
  EXPECT_EQ(*j.Get<std::string>("id"), "job-1");
  EXPECT_EQ(*j.Get<int>("exit_code"), 3);
  EXPECT_EQ(*j.Get<int64_t>("exit_code"), 3);
  EXPECT_EQ(*j.Get<double>("exit_code"), 3.0);  // a whole number is a number too
  EXPECT_EQ(*j.Get<double>("cost"), 0.5);
  EXPECT_TRUE(*j.Get<bool>("open"));
  EXPECT_EQ(j.path(), "jobs[0]");
}

TEST(ReplyTest, AWrongTypeNamesTheRouteTheFieldAndWhatItIs) {
  Reply r(kAnswer, "GET /v1/jobs?limit=5");
  std::vector<Reply> jobs = *r.Array("jobs");
  StatusOr<std::string> id = jobs[1].Get<std::string>("id");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), Code::kInternal);
  EXPECT_EQ(id.status().message(),
            "GET /v1/jobs?limit=5: jobs[1].id is the number 7, not a string "
            "(is --server/$YARD_SERVER a Trainyard server of this version?)");
}

TEST(ReplyTest, AMissingFieldIsNamedWithItsPath) {
  Reply r(kAnswer, "GET /v1/jobs");
  StatusOr<double> created = (*r.Array("jobs"))[0].Get<double>("created_at");
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), Code::kInternal);
  EXPECT_NE(created.status().message().find("GET /v1/jobs: the answer has no jobs[0].created_at"),
            std::string::npos)
      << created.status().message();
}

TEST(ReplyTest, ContainersOfTheWrongKindAreErrorsNotThrows) {
  Json odd = {{"jobs", 5}, {"job", "x"}};
  Reply r(odd, "GET /v1/jobs");
  StatusOr<std::vector<Reply>> jobs = r.Array("jobs");
  ASSERT_FALSE(jobs.ok());
  EXPECT_NE(jobs.status().message().find("jobs is the number 5, not a list"), std::string::npos);
  StatusOr<Reply> job = r.Field("job");
  ASSERT_TRUE(job.ok());
  StatusOr<std::string> state = job->Get<std::string>("state");
  ASSERT_FALSE(state.ok());
  EXPECT_NE(state.status().message().find("job is a string, not an object"), std::string::npos);
  Json not_object = Json::array();
  EXPECT_FALSE(Reply(not_object, "GET /x").Members().ok());
  EXPECT_FALSE(Reply(not_object, "GET /x").GetOr<std::string>("a", "").ok());
}

TEST(ReplyTest, NumbersMustFitTheTypeAskedFor) {
  Reply r(kAnswer, "GET /v1/cost");
  EXPECT_FALSE(r.Get<int64_t>("big").ok());  // above int64_t's range
  EXPECT_TRUE(r.Get<double>("big").ok());
  std::vector<Reply> jobs = *r.Array("jobs");
  StatusOr<int> cost = jobs[0].Get<int>("cost");
  ASSERT_FALSE(cost.ok());
  EXPECT_NE(cost.status().message().find("jobs[0].cost is the number 0.5, not a whole number"),
            std::string::npos);
}

TEST(ReplyTest, AWholeNumberWrittenWithAFractionIsStillWhole) {
  Reply r(Json::parse(R"({"expires_in_s": 60.0, "half": 2.5, "huge": 1e300})"),
          "POST /v1/dashboard/login-links");
  StatusOr<int> seconds = r.Get<int>("expires_in_s");
  ASSERT_TRUE(seconds.ok()) << seconds.status().ToString();
  EXPECT_EQ(*seconds, 60);
  EXPECT_FALSE(r.Get<int>("half").ok());
  StatusOr<int64_t> huge = r.Get<int64_t>("huge");
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.status().message().find("in range"), std::string::npos)
      << huge.status().ToString();
}

TEST(ReplyTest, GetOrFallsBackOnAbsentOrNullOnly) {
  Reply j = (*Reply(kAnswer, "GET /v1/jobs").Array("jobs"))[0];
  EXPECT_EQ(*j.GetOr<std::string>("note", "-"), "-");    // null
  EXPECT_EQ(*j.GetOr<std::string>("absent", "-"), "-");  // absent
  EXPECT_EQ(*j.GetOr<std::string>("id", "-"), "job-1");
  EXPECT_FALSE(j.GetOr<std::string>("exit_code", "-").ok());  // present, of another type
}

TEST(ReplyTest, MembersKeepTheirNamesAndPaths) {
  Reply r(kAnswer, "GET /v1/cost");
  StatusOr<std::vector<std::pair<std::string, Reply>>> kinds = (*r.Field("by_kind")).Members();
  ASSERT_TRUE(kinds.ok());
  ASSERT_EQ(kinds->size(), 2u);
  for (const auto& [name, v] : *kinds) {
    EXPECT_EQ(v.path(), "by_kind." + name);
    EXPECT_TRUE(v.As<double>().ok());
  }
}

TEST(ReplyTest, APartOutlivesTheWholeItCameFrom) {
  StatusOr<Reply> job = Reply(Json{{"job", {{"id", "job-1"}}}}, "GET /v1/jobs/job-1").Field("job");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(*job->Get<std::string>("id"), "job-1");
  EXPECT_EQ(job->path(), "job");
}

}  // namespace
}  // namespace yard
