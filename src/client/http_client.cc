#include "client/http_client.h"

#include <httplib.h>

#include <chrono>
#include <vector>

#include "client/connection_pool.h"

namespace yard {
namespace {

// Idle connections a client keeps (more are closed when returned).
constexpr size_t kMaxIdle = 8;

// A connection borrowed from the pool for one call; it goes back only if
// the call ended with a whole reply (Keep()), else it is closed.
class Borrowed {
 public:
  Borrowed(ConnectionPool* pool, std::string url, std::unique_ptr<httplib::Client> cli)
      : pool_(pool), url_(std::move(url)), cli_(std::move(cli)) {}
  Borrowed(Borrowed&&) = default;
  ~Borrowed() {
    if (keep_ && cli_) pool_->Give(std::move(cli_), url_);
  }
  httplib::Client* operator->() { return cli_.get(); }
  const httplib::Client& client() const { return *cli_; }
  const std::string& url() const { return url_; }
  // Use after a complete exchange: the connection may serve the next call.
  void Keep(const httplib::Result& r) { keep_ = static_cast<bool>(r); }

 private:
  ConnectionPool* pool_;
  std::string url_;
  std::unique_ptr<httplib::Client> cli_;
  bool keep_ = false;
};

StatusOr<Borrowed> Connect(const UrlResolver& resolve, ConnectionPool* pool, const TlsTrust& trust,
                           int read_timeout_s) {
  YARD_ASSIGN_OR_RETURN(std::string url, resolve());
  std::unique_ptr<httplib::Client> cli = pool->Take(url, trust);
  if (!cli) return InvalidArgument("bad server URL '" + url + "'");
  cli->set_read_timeout(read_timeout_s, 0);
  return Borrowed(pool, url, std::move(cli));
}

httplib::Headers AuthHeaders(const std::string& token) {
  httplib::Headers h;
  if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
  return h;
}

// A failed exchange on `cli` with `url`. TLS trouble is no reason to retry:
// FailedPrecondition, with what to do; anything else is Unavailable.
Status TransportError(const httplib::Result& r, const std::string& what, const httplib::Client& cli,
                      const std::string& url, const TlsTrust& trust) {
  std::string tls = ExplainTlsFailure(cli, url, trust, static_cast<int>(r.error()));
  if (!tls.empty()) return FailedPrecondition(what + ": " + tls);
  return Unavailable(what + ": " + httplib::to_string(r.error()) +
                     " (is the server running? check `yard server` or YARD_SERVER)");
}

Status TransportError(const httplib::Result& r, const std::string& what, const Borrowed& cli,
                      const TlsTrust& trust) {
  return TransportError(r, what, cli.client(), cli.url(), trust);
}

StatusOr<Json> ParseReply(const httplib::Result& r, const std::string& what, const Borrowed& cli,
                          const TlsTrust& trust) {
  if (!r) return TransportError(r, what, cli, trust);
  Status st = StatusFromHttp(r->status, r->body);
  if (!st.ok()) return st;
  if (r->body.empty()) return Json::object();
  Json j = Json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Internal(what + ": server sent invalid JSON");
  return j;
}

}  // namespace

HttpClient::HttpClient(UrlResolver resolver, std::string token)
    : resolver_(std::move(resolver)),
      token_(std::move(token)),
      pool_(std::make_shared<ConnectionPool>(kMaxIdle)) {}

HttpClient::HttpClient(const std::string& base_url, std::string token)
    : HttpClient([base_url]() -> StatusOr<std::string> { return base_url; }, std::move(token)) {}

StatusOr<Json> HttpClient::Get(const std::string& path) const {
  StatusOr<Json> reply = GetOnce(path);
  if (reply.ok() || !RevivedAfter(reply.status())) return reply;
  return GetOnce(path);
}

StatusOr<Json> HttpClient::GetOnce(const std::string& path) const {
  YARD_ASSIGN_OR_RETURN(Borrowed cli, Connect(resolver_, pool_.get(), trust_, read_timeout_s_));
  httplib::Result r = cli->Get(path, AuthHeaders(token_));
  cli.Keep(r);
  return ParseReply(r, "GET " + path, cli, trust_);
}

bool HttpClient::RevivedAfter(const Status& failure) const {
  // Only transport trouble (Unavailable) may mean the server is gone; a
  // GET asks again, which is safe as it changes nothing.
  return reviver_ && failure.code() == Code::kUnavailable && Revive().ok();
}

StatusOr<Json> HttpClient::Post(const std::string& path, const Json& body) const {
  YARD_ASSIGN_OR_RETURN(Borrowed cli, Connect(resolver_, pool_.get(), trust_, read_timeout_s_));
  std::string text = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  httplib::Result r = cli->Post(path, AuthHeaders(token_), text, "application/json");
  cli.Keep(r);
  return ParseReply(r, "POST " + path, cli, trust_);
}

StatusOr<Json> HttpClient::PutBytes(const std::string& path, std::string_view bytes) const {
  YARD_ASSIGN_OR_RETURN(Borrowed cli, Connect(resolver_, pool_.get(), trust_, read_timeout_s_));
  httplib::Result r =
      cli->Put(path, AuthHeaders(token_), bytes.data(), bytes.size(), "application/octet-stream");
  cli.Keep(r);
  return ParseReply(r, "PUT " + path, cli, trust_);
}

StatusOr<std::string> HttpClient::GetBytes(const std::string& path) const {
  StatusOr<std::string> bytes = GetBytesOnce(path);
  if (bytes.ok() || !RevivedAfter(bytes.status())) return bytes;
  return GetBytesOnce(path);
}

StatusOr<std::string> HttpClient::GetBytesOnce(const std::string& path) const {
  YARD_ASSIGN_OR_RETURN(Borrowed cli, Connect(resolver_, pool_.get(), trust_, read_timeout_s_));
  auto r = cli->Get(path, AuthHeaders(token_));
  cli.Keep(r);
  if (!r) return TransportError(r, "GET " + path, cli, trust_);
  YARD_RETURN_IF_ERROR(StatusFromHttp(r->status, r->body));
  return std::move(r->body);
}

bool SseParser::Feed(std::string_view bytes, const std::function<bool(const SseEvent&)>& emit) {
  buf_.append(bytes);
  size_t start = 0;
  for (;;) {
    size_t nl = buf_.find('\n', start);
    if (nl == std::string::npos) break;
    std::string_view line(buf_.data() + start, nl - start);
    start = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      if (has_data_ && !emit(current_)) {
        buf_.erase(0, start);
        return false;
      }
      current_ = SseEvent{};
      has_data_ = false;
      continue;
    }
    HandleField(line);
  }
  buf_.erase(0, start);
  return true;
}

void SseParser::HandleField(std::string_view line) {
  if (line.front() == ':') return;  // comment / keep-alive
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "id") current_.id = std::string(value);
  if (field == "data") {
    if (has_data_) current_.data.push_back('\n');
    current_.data.append(value);
    has_data_ = true;
  }
}

namespace {

Status StreamGet(const UrlResolver& resolver, const std::string& token, const TlsTrust& trust,
                 int read_timeout_s, const std::string& path, httplib::Headers headers,
                 const std::function<bool(const std::string&, std::string_view)>& on_bytes) {
  // A stream holds its connection for long and may be cut off mid-reply:
  // it gets one of its own, never a pooled one.
  YARD_ASSIGN_OR_RETURN(std::string url, resolver());
  std::unique_ptr<httplib::Client> cli = NewServerConnection(url, trust);
  if (!cli) return InvalidArgument("bad server URL '" + url + "'");
  cli->set_read_timeout(read_timeout_s, 0);
  cli->set_keep_alive(false);
  for (auto& h : AuthHeaders(token)) headers.emplace(h);
  bool stopped = false;
  std::string error_body, content_type;
  int status = 0;
  auto r = cli->Get(
      path, headers,
      [&](const httplib::Response& resp) {
        status = resp.status;
        content_type = resp.get_header_value("Content-Type");
        return true;
      },
      [&](const char* data, size_t len) {
        if (status >= 300) {
          error_body.append(data, len);
          return true;
        }
        if (!on_bytes(content_type, std::string_view(data, len))) {
          stopped = true;
          return false;
        }
        return true;
      });
  if (stopped) return Status::Ok();
  if (status >= 300) return StatusFromHttp(status, error_body);
  if (!r) return TransportError(r, "stream " + path, *cli, url, trust);
  return Status::Ok();
}

}  // namespace

Status HttpClient::Stream(const std::string& path, const std::string& last_event_id,
                          const std::function<bool(const SseEvent&)>& on_event) const {
  httplib::Headers headers = {{"Accept", "text/event-stream"}};
  if (!last_event_id.empty()) headers.emplace("Last-Event-ID", last_event_id);
  SseParser parser;
  return StreamGet(
      resolver_, token_, trust_, read_timeout_s_, path, headers,
      [&](const std::string&, std::string_view bytes) { return parser.Feed(bytes, on_event); });
}

Status HttpClient::StreamBytes(const std::string& path, const std::string& accept,
                               const std::function<bool(const std::string& content_type,
                                                        std::string_view bytes)>& on_bytes) const {
  return StreamGet(resolver_, token_, trust_, read_timeout_s_, path, {{"Accept", accept}},
                   on_bytes);
}

namespace {

// The server's message as a client shows it: a full disk is said to be the
// server's, since the folder it names is on the server's machine.
Status FromServer(Code code, const std::string& message) {
  if (code != Code::kInsufficientStorage) return Status(code, message);
  return Status(code, "the server's disk is full (HTTP 507): " + message);
}

}  // namespace

Status StatusFromHttp(int http_status, const std::string& body) {
  if (http_status >= 200 && http_status < 300) return Status::Ok();
  Json j = Json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_object()) {
    const Json& e = j["error"];
    return FromServer(CodeFromName(e.value("code", "internal")),
                      e.value("message", "unknown error"));
  }
  Code code = http_status == 401   ? Code::kUnauthenticated
              : http_status == 404 ? Code::kNotFound
              : http_status == 507 ? Code::kInsufficientStorage
              : http_status >= 500 ? Code::kUnavailable
                                   : Code::kInvalidArgument;
  return FromServer(code, "HTTP " + std::to_string(http_status) + ": " + body.substr(0, 200));
}

}  // namespace yard
