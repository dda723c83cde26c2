#include "server/http_server.h"

#include <httplib.h>

#include <cstdio>

#include "common/frames.h"
#include "server/dashboard_auth.h"
#include "server/metrics.h"
#include "server/openapi.h"
#include "server/token_auth.h"
#include "server/worker_pool.h"

namespace yard {

std::string Call::Param(int i) const { return req.matches[i].str(); }

std::string Call::Query(const std::string& name, const std::string& fallback) const {
  return req.has_param(name.c_str()) ? req.get_param_value(name.c_str()) : fallback;
}

const std::string& Call::Body() const { return req.body; }

Status StreamedBody::Read(const std::function<void(const char* data, size_t size)>& piece) {
  if (read_) return InvalidArgument("the request body was read already");
  read_ = true;
  bool whole = (*reader_)([&](const char* data, size_t size) {
    bytes_ += size;
    piece(data, size);
    return true;
  });
  if (!whole)
    return InvalidArgument(
        "the request body could not be read whole (cut off, or over 64 MiB): send it again");
  return Status::Ok();
}

void StreamedBody::Drain() {
  if (!read_) (void)Read([](const char*, size_t) {});
}

void Call::ReplyJson(const Json& j, int status) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

void ReplyError(httplib::Response& res, const Status& status) {
  Json j = {{"error", {{"code", CodeName(status.code())}, {"message", status.message()}}}};
  res.status = HttpStatusFor(status.code());
  res.set_content(j.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

std::vector<Route> AllRoutes(ApiContext& ctx) {
  std::vector<Route> all;
  for (auto* table : {JobRoutes, BlobRoutes, AgentRoutes, MachineRoutes, AgentBinaryRoutes,
                      MetaRoutes, DashboardRoutes, TokenRoutes})
    for (auto& r : table(ctx)) all.push_back(std::move(r));
  return all;
}

namespace {
// Open event streams one user may hold: a sweep followed job by job, a
// dashboard and a few terminals fit well within it.
constexpr int kStreamsPerUser = 256;
// Seconds a connection may send nothing while its request is incomplete:
// a client that stalls mid-request (or never finishes one) gives its thread
// back this soon. Nothing we send pauses that long mid-request.
constexpr time_t kReadTimeoutS = 10;

std::unique_ptr<httplib::Server> NewServer(const TlsFiles* tls) {
  if (!tls) return std::make_unique<httplib::Server>();
  return std::make_unique<httplib::SSLServer>(tls->cert.c_str(), tls->key.c_str());
}
}  // namespace

HttpApi::HttpApi(ApiContext ctx, const TlsFiles* tls)
    : dashboard_auth_(std::make_unique<DashboardAuth>(&real_clock_)),
      metrics_(std::make_unique<ServerMetrics>()),
      tokens_(std::make_unique<TokenAuth>(ctx.store, &real_clock_)),
      streams_(kStreamsPerUser),
      in_flight_(ctx.requests_in_flight_per_user, "requests in flight",
                 "let some finish first (a script that calls in parallel should use fewer "
                 "connections), then try again"),
      ctx_(ctx),
      server_(NewServer(tls)) {
  ctx_.dashboard_auth = dashboard_auth_.get();
  ctx_.tokens = tokens_.get();
  ctx_.metrics = metrics_.get();
  ctx_.openapi = &openapi_;
  ctx_.streams = &streams_;
  // Each connection holds a thread for its life (an event stream or agent
  // long poll for minutes): the pool grows instead of queueing behind them
  // (worker_pool.h).
  server_->new_task_queue = [] { return new WorkerPool(); };
  server_->set_payload_max_length(64ull << 20);
  server_->set_read_timeout(kReadTimeoutS, 0);
  server_->set_write_timeout(60, 0);
  server_->set_keep_alive_max_count(1000);
  // Clients and agents keep connections open between calls; an idle one
  // holds a worker thread, and stopping the server waits for it, so close
  // it soon (an agent's heartbeat, every second, still finds its own open).
  server_->set_keep_alive_timeout(2);
  // A reply goes out as two writes (headers, body). On a kept-alive
  // connection Nagle holds the second until the first is acknowledged, and
  // the peer delays that ACK by 40 ms: every call would take 40 ms more.
  server_->set_tcp_nodelay(true);
  std::vector<Route> routes = AllRoutes(ctx_);
  StatusOr<Json> openapi = BuildOpenApi(routes, RouteDocs());
  // A route without its doc is a bug that openapi_test catches; should one
  // slip through, the description says so instead of the server failing.
  openapi_ = openapi.ok() ? *openapi : Json{{"error", openapi.status().message()}};
  for (const auto& route : routes) Install(route);
  // A handler that throws is a bug; answer with a JSON error and log it.
  server_->set_exception_handler([](const httplib::Request& req, httplib::Response& res,
                                    std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    std::fprintf(stderr, "yard server: %s %s failed: %s\n", req.method.c_str(), req.path.c_str(),
                 what.c_str());
    ReplyError(res, Internal("the server failed on this request (" + what + "); see server.log"));
  });
  auto not_found = [](const httplib::Request& req, httplib::Response& res) {
    ReplyError(res, NotFound("no route " + req.method + " " + req.path + " (see docs/api.md)"));
  };
  // httplib answers some requests itself (no route; a body it cannot read):
  // those get the API's JSON error too.
  server_->set_error_handler([not_found](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) return not_found(req, res);
    int status = res.status;
    if (status == 413)
      ReplyError(res, ResourceExhausted("the request body is too large (64 MiB at most)"));
    else if (status >= 400 && status < 500)
      ReplyError(res,
                 InvalidArgument("the request could not be read (HTTP " + std::to_string(status) +
                                 "): a POST or PUT needs a Content-Length and a body, even {}"));
    else
      ReplyError(res, Internal("the server could not answer (HTTP " + std::to_string(status) +
                               "); see server.log"));
    res.status = status;
  });
}

HttpApi::~HttpApi() { Stop(); }

std::string NeededScope(Access access, const std::string& method) {
  switch (access) {
    case Access::kPublic:
    case Access::kAgent:
    case Access::kAgentOrBootstrap:
      return "";
    case Access::kMetrics:
      return kScopeMetrics;
    case Access::kUserAdmin:
      return kScopeAdmin;
    case Access::kUserRead:
      return kScopeRead;
    case Access::kUser:
    case Access::kUserOrAgent:
      return method == "GET" ? kScopeRead : kScopeSubmit;
  }
  return kScopeAdmin;
}

namespace {

// Whether `who` (a user, scraper or agent) may call a route of `access`.
Status Admit(const TokenInfo& who, Access access, const std::string& method) {
  if (who.kind == "agent" || who.kind == "bootstrap") {
    bool ok = (access == Access::kAgent && who.kind == "agent") ||
              access == Access::kAgentOrBootstrap ||
              (access == Access::kUserOrAgent && who.kind == "agent");
    if (ok) return Status::Ok();
    if (who.kind == "bootstrap")
      return PermissionDenied(
          "a bootstrap credential only registers its agent (POST /v1/agents/register); "
          "use the instance credential registered with it");
    return PermissionDenied("this route is not open to agent credentials");
  }
  std::string need = NeededScope(access, method);
  if (need.empty())
    return PermissionDenied("this route is open to agents only, not to user tokens");
  if (!ScopeAllows(who.scope, need)) return ScopeTooSmall(who.scope, need);
  return Status::Ok();
}

}  // namespace

StatusOr<TokenInfo> HttpApi::Authenticate(const httplib::Request& req, Access access) {
  if (access == Access::kPublic) return TokenInfo{};
  std::string auth = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  std::string session = CookieValue(req.get_header_value("Cookie"), kSessionCookie);
  bool user_route = !NeededScope(access, req.method).empty() && access != Access::kMetrics;
  TokenInfo who;
  if (auth.empty() && !session.empty() && user_route) {
    // The dashboard page. SameSite=Strict keeps other sites' requests
    // cookieless; a custom header on writes makes sure of it.
    if (req.method != "GET" && req.get_header_value("X-Yard-Dashboard") != "1")
      return PermissionDenied(
          "a page session may change things only with the header X-Yard-Dashboard: 1");
    YARD_ASSIGN_OR_RETURN(who, SessionCaller(session));
  } else {
    if (auth.compare(0, prefix.size(), prefix) != 0)
      return Unauthenticated("missing 'Authorization: Bearer <token>' header: set YARD_TOKEN");
    YARD_ASSIGN_OR_RETURN(who, LookupBearer(auth.substr(prefix.size()), req.remote_addr));
  }
  YARD_RETURN_IF_ERROR(Admit(who, access, req.method));
  return who;
}

StatusOr<TokenInfo> HttpApi::SessionCaller(const std::string& session) {
  YARD_ASSIGN_OR_RETURN(TokenInfo who, dashboard_auth_->SessionUser(session));
  // A session lives no longer than the token that opened it.
  if (Status s = tokens_->StillValid(who); !s.ok()) {
    dashboard_auth_->CloseSession(session);
    return Unauthenticated("the page session ended: " + s.message());
  }
  return who;
}

StatusOr<TokenInfo> HttpApi::LookupBearer(const std::string& token, const std::string& address) {
  // Agent credentials live in memory, with their instances (agent_credentials.h).
  if (AgentCredentials::IsBootstrap(token) || AgentCredentials::IsCredential(token)) {
    std::optional<TokenInfo> agent = ctx_.controller->credentials().Identify(token);
    if (!agent)
      return Unauthenticated(
          "unknown agent credential (its instance ended?): this agent should exit");
    return *agent;
  }
  return tokens_->Identify(token, address);
}

void HttpApi::Handle(const Route& route, const std::string& key, const httplib::Request& req,
                     httplib::Response& res, StreamedBody* body) {
  StatusOr<TokenInfo> who = Authenticate(req, route.access);
  StreamLimits::Lease in_flight;
  bool agent = who.ok() && (who->kind == "agent" || who->kind == "bootstrap");
  if (who.ok() && !who->user.empty() && !agent) {
    StatusOr<StreamLimits::Lease> lease = in_flight_.Open(who->user);
    if (lease.ok())
      in_flight = *lease;
    else
      who = lease.status();
  }
  if (!who.ok()) {
    if (who.status().code() == Code::kTooManyRequests)
      res.set_header("Retry-After",
                     std::to_string(std::max(1, tokens_->RetryAfter(req.remote_addr))));
    return ReplyError(res, who.status());
  }
  Call call{req, res, *who, body};
  Status s = route.handler(call);
  if (!s.ok()) ReplyError(res, s);
  if (s.code() == Code::kTooManyRequests) res.set_header("Retry-After", "1");
  metrics_->CountRequest(key, res.status, body ? body->bytes() : req.body.size(),
                         res.content_provider_ ? res.content_length_ : res.body.size());
  std::string type = res.get_header_value("Content-Type");
  if (res.content_provider_ && (type == "text/event-stream" || type == kFramesContentType ||
                                type == kFramesToCloseContentType)) {
    // An event stream: counted open until httplib releases it.
    ServerMetrics* m = metrics_.get();
    m->StreamOpened();
    auto inner = std::move(res.content_provider_resource_releaser_);
    res.content_provider_resource_releaser_ = [m, inner](bool ok) {
      m->StreamClosed();
      if (inner) inner(ok);
    };
  }
}

void HttpApi::Install(const Route& route) {
  std::string key = std::string(route.method) + " " + route.pattern;
  auto handler = [this, route, key](const httplib::Request& req, httplib::Response& res) {
    Handle(route, key, req, res);
  };
  std::string m = route.method;
  if (m == "PUT" && route.body_streamed) {
    server_->Put(
        route.pattern, [this, route, key](const httplib::Request& req, httplib::Response& res,
                                          const httplib::ContentReader& reader) {
          StreamedBody body(&reader);
          Handle(route, key, req, res, &body);
          body.Drain();  // refused before reading (e.g. no token): the next request follows it
        });
    return;
  }
  if (m == "GET") server_->Get(route.pattern, handler);
  if (m == "POST") server_->Post(route.pattern, handler);
  if (m == "PUT") server_->Put(route.pattern, handler);
}

StatusOr<int> HttpApi::Bind(const std::string& host, int port) {
  if (!server_->is_valid())
    return InvalidArgument(
        "cannot load the TLS certificate and key: each must be a PEM file, the key "
        "unencrypted and matching the certificate");
  if (port == 0) {
    int bound = server_->bind_to_any_port(host);
    if (bound <= 0) return Unavailable("cannot listen on " + host);
    return bound;
  }
  if (!server_->bind_to_port(host, port))
    return Unavailable("cannot listen on " + host + ":" + std::to_string(port) +
                       " (in use? pick another with --port)");
  return port;
}

void HttpApi::Serve() { server_->listen_after_bind(); }

void HttpApi::Stop() {
  if (server_) server_->stop();
}

}  // namespace yard
