#include "server/openapi.h"

#include <cctype>
#include <map>
#include <set>

#include "common/frames.h"
#include "server/http_server.h"

namespace yard {
namespace {

Json ParseSchema(const char* text, const std::string& where) {
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    // A doc that is not JSON is a bug in openapi_docs.cc; say where.
    return Json{{"description", "unparsable schema in the docs of " + where}};
  }
  return j;
}

Json Security(Access access) {
  switch (access) {
    case Access::kPublic:
      return Json::array();
    case Access::kAgent:
    case Access::kAgentOrBootstrap:
      return Json::array({{{"bearer", Json::array()}}});
    default:
      return Json::array({{{"bearer", Json::array()}}, {{"session", Json::array()}}});
  }
}

Json Parameters(const RouteDoc& doc, const std::vector<std::string>& captures,
                const std::string& where) {
  Json params = Json::array();
  for (size_t i = 0; i < captures.size(); ++i)
    params.push_back({{"name", doc.params[i]},
                      {"in", "path"},
                      {"required", true},
                      {"schema", {{"type", "string"}, {"pattern", "^(?:" + captures[i] + ")$"}}}});
  if (*doc.query) {
    for (Json q : ParseSchema(doc.query, where)) {
      q["in"] = "query";
      q["required"] = false;
      params.push_back(q);
    }
  }
  return params;
}

Json Content(const char* kind, const std::string& where) {
  std::string k = kind;
  if (k == "binary")
    return {{"application/octet-stream",
             {{"schema", {{"type", "string"}, {"contentMediaType", "application/octet-stream"}}}}}};
  if (k == "sse") return {{"text/event-stream", {{"schema", {{"type", "string"}}}}}};
  if (k == "text") return {{"text/plain", {{"schema", {{"type", "string"}}}}}};
  return {{"application/json", {{"schema", ParseSchema(kind, where)}}}};
}

Json Operation(const Route& route, const RouteDoc& doc, const std::vector<std::string>& captures) {
  std::string where = std::string(doc.method) + " " + doc.pattern;
  Json op = {{"summary", doc.summary}, {"security", Security(route.access)}};
  // The token scope the route needs (server/token_auth.h).
  if (std::string scope = NeededScope(route.access, doc.method); !scope.empty())
    op["x-yard-scope"] = scope;
  std::string id;
  for (char c : std::string(doc.method) + doc.pattern)
    id += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  op["operationId"] = id;
  Json params = Parameters(doc, captures, where);
  if (!params.empty()) op["parameters"] = params;
  Json request = *doc.request ? Content(doc.request, where) : Json();
  Json response = Content(doc.response, where);
  Json& framed = std::string(doc.method) == "GET" ? response : request;
  if (doc.frames && framed.is_object())
    framed[kFramesContentType] = {{"schema",
                                   {{"type", "string"},
                                    {"contentMediaType", kFramesContentType},
                                    {"description", "record frames (docs/formats.md)"}}}};
  if (!request.is_null()) op["requestBody"] = {{"required", true}, {"content", request}};
  op["responses"] = {
      {std::to_string(doc.ok_status), {{"description", "success"}, {"content", response}}},
      {"default",
       {{"description", "an error: what went wrong and what to do"},
        {"content",
         {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}}}};
  return op;
}

std::string Key(const std::string& method, const std::string& pattern) {
  return method + " " + pattern;
}

}  // namespace

StatusOr<std::string> OpenApiPath(const std::string& pattern, const std::vector<const char*>& names,
                                  std::vector<std::string>* captures) {
  std::string path;
  size_t n = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '(') {
      path += pattern[i];
      continue;
    }
    size_t close = pattern.find(')', i);
    if (close == std::string::npos) return InvalidArgument("unbalanced '(' in route " + pattern);
    if (n >= names.size())
      return InvalidArgument("route " + pattern + " has more captures than its doc names");
    captures->push_back(pattern.substr(i + 1, close - i - 1));
    path += "{" + std::string(names[n++]) + "}";
    i = close;
  }
  if (n != names.size())
    return InvalidArgument("the doc of " + pattern + " names more captures than it has");
  return path;
}

StatusOr<Json> BuildOpenApi(const std::vector<Route>& routes, const std::vector<RouteDoc>& docs) {
  std::map<std::string, const RouteDoc*> by_key;
  for (const auto& d : docs) by_key[Key(d.method, d.pattern)] = &d;
  std::set<std::string> used;
  std::vector<std::string> problems;
  Json paths = Json::object();
  for (const auto& r : routes) {
    if (r.pattern.rfind("/v1/", 0) != 0) continue;
    auto it = by_key.find(Key(r.method, r.pattern));
    if (it == by_key.end()) {
      problems.push_back("route " + Key(r.method, r.pattern) +
                         " has no RouteDoc (src/server/openapi_docs.cc)");
      continue;
    }
    used.insert(it->first);
    std::vector<std::string> captures;
    StatusOr<std::string> path = OpenApiPath(r.pattern, it->second->params, &captures);
    if (!path.ok()) {
      problems.push_back(path.status().message());
      continue;
    }
    std::string method = r.method;
    for (char& c : method) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    paths[*path][method] = Operation(r, *it->second, captures);
  }
  for (const auto& [key, doc] : by_key)
    if (!used.count(key)) problems.push_back("RouteDoc " + key + " matches no route");
  if (!problems.empty()) {
    std::string all;
    for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
    return InvalidArgument(all);
  }
  return Json{{"openapi", "3.1.0"},
              {"info",
               {{"title", "Trainyard API"},
                {"version", "1"},
                {"description", "The controller's HTTP API; docs/api.md tells the story."}}},
              {"paths", paths},
              {"components", OpenApiComponents()}};
}

}  // namespace yard
