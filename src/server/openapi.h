// GET /v1/openapi.json: an OpenAPI 3.1 description of every /v1 route,
// built from the route table itself (paths, methods, who may call) and one
// RouteDoc per route (words and schemas). BuildOpenApi fails when a route
// has no RouteDoc or a RouteDoc names no route, so the two cannot drift: a
// unit test builds it from the real tables.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace yard {

using Json = nlohmann::json;
struct Route;

// The words and schemas of one route. Schemas are JSON text (JSON Schema
// 2020-12 as OpenAPI 3.1 takes it; "$ref": "#/components/schemas/NAME").
struct RouteDoc {
  const char* method;               // as in the Route
  std::string pattern;              // exactly the Route's pattern
  const char* summary;              // one line
  std::vector<const char*> params;  // names of the pattern's captures, in order
  const char* query;                // JSON array of {"name", "schema", "description"}, or ""
  const char* request;              // body schema, "" (no body) or "binary"
  int ok_status;                    // the success status
  const char* response;             // success body schema, "binary", "sse" or "text"
  // The body may also travel as record frames (application/x-yard-frames,
  // formats.md): the request's of a POST, the response's of a GET.
  bool frames = false;
};

// Every route's doc (openapi_docs.cc).
const std::vector<RouteDoc>& RouteDocs();
// The shared components (schemas, security schemes) as JSON.
Json OpenApiComponents();

// The document for `routes` (only /v1 ones), each matched to its doc in
// `docs`. InvalidArgument naming each route without a doc and each doc
// without a route.
StatusOr<Json> BuildOpenApi(const std::vector<Route>& routes, const std::vector<RouteDoc>& docs);

// "/v1/jobs/([A-Za-z0-9_-]+)/cancel" with {"id"} -> "/v1/jobs/{id}/cancel";
// `captures` receives each capture's regex ("[A-Za-z0-9_-]+").
StatusOr<std::string> OpenApiPath(const std::string& pattern, const std::vector<const char*>& names,
                                  std::vector<std::string>* captures);

}  // namespace yard
