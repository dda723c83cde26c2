// docs/api.md documents every route the server serves: each route of
// AllRoutes() must appear there as `METHOD /path` (a capture group of the
// pattern written as any `{name}`, an alternation of plain words as each
// word), so a route added without its documentation fails here.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "server/http_server.h"

namespace yard {
namespace {

// "/v1/jobs/{id}/events" -> "/v1/jobs/{}/events".
std::string Normalize(const std::string& path) {
  static const std::regex placeholder(R"(\{[^}/]*\})");
  return std::regex_replace(path, placeholder, "{}");
}

// Every `METHOD /path` written in `doc`, its query string dropped,
// placeholders normalised.
std::set<std::string> DocumentedRoutes(const std::string& doc) {
  static const std::regex call(R"(`(GET|POST|PUT|DELETE) (/[^`?\s]*))");
  std::set<std::string> out;
  for (std::sregex_iterator it(doc.begin(), doc.end(), call), end; it != end; ++it)
    out.insert((*it)[1].str() + " " + Normalize((*it)[2].str()));
  return out;
}

// The paths a route pattern stands for, as docs/api.md writes them: a group
// "(a|b)" of plain words is each word, any other group a placeholder.
std::vector<std::string> DocPaths(const std::string& pattern) {
  std::vector<std::string> paths = {""};
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '(') {
      for (auto& p : paths) p += pattern[i];
      continue;
    }
    size_t close = i;
    for (int depth = 0; close < pattern.size(); ++close) {
      depth += pattern[close] == '(' ? 1 : pattern[close] == ')' ? -1 : 0;
      if (depth == 0) break;
    }
    std::string group = pattern.substr(i + 1, close - i - 1);
    std::vector<std::string> words;
    if (std::regex_match(group, std::regex(R"([A-Za-z0-9_-]+(\|[A-Za-z0-9_-]+)+)"))) {
      std::stringstream in(group);
      for (std::string w; std::getline(in, w, '|');) words.push_back(w);
    } else {
      words = {"{}"};
    }
    std::vector<std::string> next;
    for (const auto& p : paths)
      for (const auto& w : words) next.push_back(p + w);
    paths = next;
    i = close;
  }
  return paths;
}

// The routes of `routes` that `doc` does not document, as "METHOD /path".
std::vector<std::string> UndocumentedRoutes(const std::vector<Route>& routes,
                                            const std::string& doc) {
  std::set<std::string> documented = DocumentedRoutes(doc);
  std::vector<std::string> missing;
  for (const auto& route : routes)
    for (const auto& path : DocPaths(route.pattern)) {
      std::string key = std::string(route.method) + " " + path;
      if (!documented.count(key)) missing.push_back(key);
    }
  return missing;
}

std::string ReadApiDoc() {
  std::ifstream in(std::string(YARD_SOURCE_DIR) + "/docs/api.md");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The route tables only; no handler runs.
std::vector<Route> ServedRoutes() {
  ApiContext ctx{nullptr, nullptr, nullptr};
  return AllRoutes(ctx);
}

TEST(ApiDocsTest, EveryRouteIsInApiMd) {
  std::string doc = ReadApiDoc();
  ASSERT_FALSE(doc.empty()) << "cannot read " << YARD_SOURCE_DIR << "/docs/api.md";
  std::vector<Route> routes = ServedRoutes();
  ASSERT_GT(routes.size(), 10u);
  for (const auto& missing : UndocumentedRoutes(routes, doc))
    ADD_FAILURE() << missing << " is served but not in docs/api.md: document it there as `"
                  << missing << "` (a pattern's capture group as {name})";
  EXPECT_TRUE(DocumentedRoutes(doc).count("GET /v1/health"))
      << "the health route is not in docs/api.md";
}

TEST(ApiDocsTest, AnUndocumentedRouteIsReported) {
  std::string doc = ReadApiDoc();
  std::vector<Route> routes = ServedRoutes();
  routes.push_back({"POST", R"(/v1/jobs/([A-Za-z0-9_-]+)/undocumented)", Access::kUser, nullptr});
  EXPECT_EQ(UndocumentedRoutes(routes, doc),
            (std::vector<std::string>{"POST /v1/jobs/{}/undocumented"}));
  // Removing the documentation of a served route is caught too.
  std::string without = std::regex_replace(doc, std::regex("`GET /v1/cost`"), "GET /v1/cost");
  EXPECT_EQ(UndocumentedRoutes(ServedRoutes(), without),
            (std::vector<std::string>{"GET /v1/cost"}));
}

TEST(ApiDocsTest, PatternsBecomeDocPaths) {
  EXPECT_EQ(DocPaths(R"(/v1/blobs/([0-9a-f]{64}))"), (std::vector<std::string>{"/v1/blobs/{}"}));
  EXPECT_EQ(DocPaths(R"(/v1/agent/binaries/(yard|yard-shim))"),
            (std::vector<std::string>{"/v1/agent/binaries/yard", "/v1/agent/binaries/yard-shim"}));
  EXPECT_EQ(DocumentedRoutes("`GET /v1/jobs?state=&q=` and `POST /v1/jobs/{id}/cancel`"),
            (std::set<std::string>{"GET /v1/jobs", "POST /v1/jobs/{}/cancel"}));
}

}  // namespace
}  // namespace yard
