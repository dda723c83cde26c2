// The controller's HTTP API: a route table (method, pattern, who may call,
// handler) over cpp-httplib. Handlers live one resource per file
// (routes_*.cc); parsing and rendering stay in the handlers, state changes
// in the Controller.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/blob_store.h"
#include "common/clock.h"
#include "common/status.h"
#include "common/tls.h"
#include "server/controller.h"
#include "server/stream_limits.h"
#include "store/store.h"

namespace httplib {
class ContentReader;
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace yard {

using Json = nlohmann::json;

// Who may call a route. "Agent" is an instance credential, "bootstrap" the
// single-use one an agent registers with (server/agent_credentials.h); a
// route handling either must check that the path or body names
// call.who.instance. User routes need a token scope (server/token_auth.h):
// kUser and kUserOrAgent need "read" for GET and "submit" otherwise;
// kUserRead needs "read" whatever the method, kUserAdmin "admin".
// kMetrics: GET /metrics, open to tokens of scope "metrics" only (the
// figures span all users; docs/operations.md).
enum class Access {
  kPublic,
  kUser,
  kUserRead,
  kUserAdmin,
  kAgent,
  kAgentOrBootstrap,
  kUserOrAgent,
  kMetrics
};

// The token scope a user route needs ("" for agent-only and public routes).
std::string NeededScope(Access access, const std::string& method);

// The body of a call to a route with Route::body_streamed, read by the
// handler piece by piece as it arrives (httplib does not gather it into
// Request::body first). Whatever the handler leaves unread is read and
// dropped after it returns, so the connection stays usable.
class StreamedBody {
 public:
  explicit StreamedBody(const httplib::ContentReader* reader) : reader_(reader) {}
  // Hands every piece to `piece`, in order; reads the body once only.
  // InvalidArgument if it cannot be read whole (too large: over the
  // server's 64 MiB; cut off; a second call).
  Status Read(const std::function<void(const char* data, size_t size)>& piece);
  // Reads and drops what was not read.
  void Drain();
  uint64_t bytes() const { return bytes_; }

 private:
  const httplib::ContentReader* reader_;
  bool read_ = false;
  uint64_t bytes_ = 0;
};

// One call being served.
struct Call {
  const httplib::Request& req;
  httplib::Response& res;
  TokenInfo who;  // empty for public routes
  // Set for a route with Route::body_streamed (Body() is then empty).
  StreamedBody* streamed_body = nullptr;

  bool is_agent() const { return who.kind == "agent" || who.kind == "bootstrap"; }
  // The i-th regex capture of the route's pattern.
  std::string Param(int i) const;
  // A query parameter, or `fallback`.
  std::string Query(const std::string& name, const std::string& fallback = "") const;
  const std::string& Body() const;
  void ReplyJson(const Json& j, int status = 200);
};

class DashboardAuth;
class ServerMetrics;
class TokenAuth;

// Requests one user may have in flight (being handled) at once; event
// streams are counted apart (StreamLimits).
inline constexpr int kDefaultRequestsInFlightPerUser = 64;

// What handlers need. The first three are owned by HttpApi's creator and
// outlive it; HttpApi fills in the rest (its own parts).
struct ApiContext {
  Store* store;
  BlobStore* blobs;
  Controller* controller;
  StreamLimits* streams = nullptr;          // set by HttpApi; null: no limit
  DashboardAuth* dashboard_auth = nullptr;  // login links and page sessions
  ServerMetrics* metrics = nullptr;         // counters behind GET /metrics
  TokenAuth* tokens = nullptr;              // user tokens: lookup, scopes, revocation
  int requests_in_flight_per_user = kDefaultRequestsInFlightPerUser;  // set by the creator
  const Json* openapi = nullptr;                                      // GET /v1/openapi.json
};

using Handler = std::function<Status(Call&)>;

struct Route {
  const char* method;   // "GET", "POST", "PUT"
  std::string pattern;  // regex, e.g. R"(/v1/jobs/([^/]+))"
  Access access;
  Handler handler;
  // PUT only: the handler reads the body itself, as it arrives, through
  // Call::streamed_body (e.g. to hash it piece by piece while the pieces
  // are in cache, into a buffer sized once from Content-Length).
  bool body_streamed = false;
};

// The pattern of /v1/jobs/{id} (Call::Param(1) is the job id), which the
// job and dashboard tables extend.
inline constexpr const char* kJobPath = R"(/v1/jobs/([A-Za-z0-9_-]+))";

// The handler of a route table's function `fn`: calls fn(state, call), where
// `state` is what the table's functions share (the ApiContext, or a state of
// the table's own held by `shared`). The one way every table binds them.
template <typename State>
Handler Bind(State& state, Status (*fn)(State&, Call&)) {
  return [&state, fn](Call& call) { return fn(state, call); };
}
template <typename State>
Handler Bind(std::shared_ptr<State> shared, Status (*fn)(State&, Call&)) {
  return [shared = std::move(shared), fn](Call& call) { return fn(*shared, call); };
}

// Route tables of each resource (routes_*.cc).
std::vector<Route> JobRoutes(ApiContext& ctx);
std::vector<Route> BlobRoutes(ApiContext& ctx);
std::vector<Route> AgentRoutes(ApiContext& ctx);
std::vector<Route> MachineRoutes(ApiContext& ctx);
std::vector<Route> AgentBinaryRoutes(ApiContext& ctx);
std::vector<Route> MetaRoutes(ApiContext& ctx);  // routes_meta.cc: health, openapi, /metrics
std::vector<Route> DashboardRoutes(
    ApiContext& ctx);  // routes_dashboard.cc: sign-in, output lines, the page
std::vector<Route> TokenRoutes(ApiContext& ctx);  // routes_tokens.cc: the caller's own tokens
// Every table above, in install order: what the server serves and what
// docs/api.md must document (api_docs_test.cc).
std::vector<Route> AllRoutes(ApiContext& ctx);

class HttpApi {
 public:
  // With `tls`, serves HTTPS with that certificate (Bind says if it cannot
  // be loaded); else plain HTTP.
  explicit HttpApi(ApiContext ctx, const TlsFiles* tls = nullptr);
  ~HttpApi();

  // Binds host:port (port 0 = any free one). Returns the bound port.
  StatusOr<int> Bind(const std::string& host, int port);
  // Serves until Stop(). REQUIRES: Bind succeeded.
  void Serve();
  void Stop();

 private:
  void Install(const Route& route);
  StatusOr<TokenInfo> Authenticate(const httplib::Request& req, Access access);
  // The caller behind a bearer token: a user or scraper (TokenAuth: the
  // store) or an agent (the controller's credentials, in memory).
  StatusOr<TokenInfo> LookupBearer(const std::string& token, const std::string& address);
  // The caller behind a page session, while its token holds.
  StatusOr<TokenInfo> SessionCaller(const std::string& session);
  // Serves one call of `route`: authentication, the per-user limit of
  // requests in flight, the handler, metrics.
  void Handle(const Route& route, const std::string& key, const httplib::Request& req,
              httplib::Response& res, StreamedBody* body = nullptr);

  RealClock real_clock_;
  std::unique_ptr<DashboardAuth> dashboard_auth_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<TokenAuth> tokens_;
  Json openapi_;
  // Open event streams per user; see HttpApi's constructor for the figure.
  StreamLimits streams_;
  // Requests being handled per user (ApiContext::requests_in_flight_per_user).
  StreamLimits in_flight_;
  ApiContext ctx_;
  std::unique_ptr<httplib::Server> server_;
};

// Writes the standard error body {"error": {"code", "message"}}.
void ReplyError(httplib::Response& res, const Status& status);

}  // namespace yard
