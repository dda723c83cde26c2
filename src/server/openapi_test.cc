#include "server/openapi.h"

#include <algorithm>

#include <gtest/gtest.h>

#include "server/http_server.h"

namespace yard {
namespace {

std::vector<Route> RealRoutes() {
  // Handlers are never called here: the tables only need a context to bind.
  static ApiContext ctx{nullptr, nullptr, nullptr};
  return AllRoutes(ctx);
}

TEST(OpenApiTest, EveryRouteHasADocAndEveryDocARoute) {
  StatusOr<Json> doc = BuildOpenApi(RealRoutes(), RouteDocs());
  ASSERT_TRUE(doc.ok()) << doc.status().message();
  EXPECT_EQ((*doc)["openapi"], "3.1.0");
  EXPECT_TRUE((*doc)["paths"].contains("/v1/jobs/{id}/cancel"));
  EXPECT_TRUE((*doc)["paths"]["/v1/jobs"].contains("post"));
  EXPECT_FALSE((*doc)["paths"].contains("/metrics")) << "only /v1 is described";
}

TEST(OpenApiTest, ARouteWithoutDocFails) {
  std::vector<Route> routes = RealRoutes();
  routes.push_back({"GET", "/v1/undocumented", Access::kUser, nullptr});
  StatusOr<Json> doc = BuildOpenApi(routes, RouteDocs());
  ASSERT_FALSE(doc.ok());
  EXPECT_NE(doc.status().message().find("GET /v1/undocumented has no RouteDoc"), std::string::npos)
      << doc.status().message();
}

TEST(OpenApiTest, ADocWithoutRouteFails) {
  std::vector<RouteDoc> docs = RouteDocs();
  docs.push_back({"DELETE", "/v1/jobs", "gone", {}, "", "", 200, "{}"});
  StatusOr<Json> doc = BuildOpenApi(RealRoutes(), docs);
  ASSERT_FALSE(doc.ok());
  EXPECT_NE(doc.status().message().find("DELETE /v1/jobs matches no route"), std::string::npos);
}

TEST(OpenApiTest, PublicAndAgentRoutesSaySo) {
  Json doc = *BuildOpenApi(RealRoutes(), RouteDocs());
  EXPECT_EQ(doc["paths"]["/v1/health"]["get"]["security"], Json::array());
  EXPECT_EQ(doc["paths"]["/v1/agents/register"]["post"]["security"].size(), 1u);
  EXPECT_EQ(doc["paths"]["/v1/jobs"]["get"]["security"].size(), 2u);  // token or page session
}

TEST(OpenApiTest, RecordFramesAreDescribedBesideJsonAndSse) {
  Json doc = *BuildOpenApi(RealRoutes(), RouteDocs());
  const Json& events = doc["paths"]["/v1/jobs/{id}/events"]["get"]["responses"]["200"]["content"];
  EXPECT_TRUE(events.contains("text/event-stream"));
  EXPECT_TRUE(events.contains("application/x-yard-frames"));
  const Json& batch =
      doc["paths"]["/v1/agents/{instance}/events"]["post"]["requestBody"]["content"];
  EXPECT_TRUE(batch.contains("application/json"));
  EXPECT_TRUE(batch.contains("application/x-yard-frames"));
  EXPECT_FALSE(doc["paths"]["/v1/jobs"]["get"]["responses"]["200"]["content"].contains(
      "application/x-yard-frames"));
}

TEST(OpenApiTest, TheErrorSchemaNamesEveryCodeTheServerSends) {
  Json codes =
      OpenApiComponents()["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"];
  for (int c = static_cast<int>(Code::kInvalidArgument);
       c <= static_cast<int>(Code::kInsufficientStorage); ++c) {  // the last
    std::string name = CodeName(static_cast<Code>(c));
    EXPECT_NE(std::find(codes.begin(), codes.end(), name), codes.end())
        << name << " is not in the Error schema";
  }
}

TEST(OpenApiTest, PathsNameTheirCaptures) {
  std::vector<std::string> captures;
  StatusOr<std::string> p = OpenApiPath(R"(/v1/jobs/([A-Za-z0-9_-]+)/events)", {"id"}, &captures);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, "/v1/jobs/{id}/events");
  EXPECT_EQ(captures, std::vector<std::string>{"[A-Za-z0-9_-]+"});
  captures.clear();
  EXPECT_FALSE(OpenApiPath(R"(/v1/jobs/([a-z]+))", {}, &captures).ok());
  EXPECT_FALSE(OpenApiPath("/v1/jobs", {"id"}, &captures).ok());
}

}  // namespace
}  // namespace yard
