#include "client/http_client.h"

#include <httplib.h>

namespace yard {
namespace {

StatusOr<std::unique_ptr<httplib::Client>> Connect(const UrlResolver& resolve, int read_timeout_s) {
  YARD_ASSIGN_OR_RETURN(std::string url, resolve());
  auto cli = std::make_unique<httplib::Client>(url);
  if (!cli->is_valid()) return InvalidArgument("bad server URL '" + url + "'");
  cli->set_connection_timeout(5, 0);
  cli->set_read_timeout(read_timeout_s, 0);
  cli->set_write_timeout(60, 0);
  cli->set_keep_alive(false);
  return cli;
}

httplib::Headers AuthHeaders(const std::string& token) {
  httplib::Headers h;
  if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
  return h;
}

Status TransportError(const httplib::Result& r, const std::string& what) {
  return Unavailable(what + ": " + httplib::to_string(r.error()) +
                     " (is the server running? check `yard server` or YARD_SERVER)");
}

StatusOr<Json> ParseReply(const httplib::Result& r, const std::string& what) {
  if (!r) return TransportError(r, what);
  Status st = StatusFromHttp(r->status, r->body);
  if (!st.ok()) return st;
  if (r->body.empty()) return Json::object();
  Json j = Json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Internal(what + ": server sent invalid JSON");
  return j;
}

}  // namespace

HttpClient::HttpClient(UrlResolver resolver, std::string token)
    : resolver_(std::move(resolver)), token_(std::move(token)) {}

HttpClient::HttpClient(const std::string& base_url, std::string token)
    : resolver_([base_url]() -> StatusOr<std::string> { return base_url; }),
      token_(std::move(token)) {}

StatusOr<Json> HttpClient::Get(const std::string& path) const {
  YARD_ASSIGN_OR_RETURN(auto cli, Connect(resolver_, read_timeout_s_));
  return ParseReply(cli->Get(path, AuthHeaders(token_)), "GET " + path);
}

StatusOr<Json> HttpClient::Post(const std::string& path, const Json& body) const {
  YARD_ASSIGN_OR_RETURN(auto cli, Connect(resolver_, read_timeout_s_));
  std::string text = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  return ParseReply(cli->Post(path, AuthHeaders(token_), text, "application/json"),
                    "POST " + path);
}

StatusOr<Json> HttpClient::PutBytes(const std::string& path, std::string_view bytes) const {
  YARD_ASSIGN_OR_RETURN(auto cli, Connect(resolver_, read_timeout_s_));
  return ParseReply(cli->Put(path, AuthHeaders(token_), bytes.data(), bytes.size(),
                             "application/octet-stream"),
                    "PUT " + path);
}

StatusOr<std::string> HttpClient::GetBytes(const std::string& path) const {
  YARD_ASSIGN_OR_RETURN(auto cli, Connect(resolver_, read_timeout_s_));
  auto r = cli->Get(path, AuthHeaders(token_));
  if (!r) return TransportError(r, "GET " + path);
  YARD_RETURN_IF_ERROR(StatusFromHttp(r->status, r->body));
  return std::move(r->body);
}

namespace {

// Incremental SSE parser: feeds bytes, emits complete events.
class SseParser {
 public:
  // Returns false if the consumer asked to stop.
  bool Feed(std::string_view bytes, const std::function<bool(const SseEvent&)>& emit) {
    buf_.append(bytes);
    size_t start = 0;
    for (;;) {
      size_t nl = buf_.find('\n', start);
      if (nl == std::string::npos) break;
      std::string_view line(buf_.data() + start, nl - start);
      start = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) {
        if (has_data_ && !emit(current_)) { buf_.erase(0, start); return false; }
        current_ = SseEvent{};
        has_data_ = false;
        continue;
      }
      HandleField(line);
    }
    buf_.erase(0, start);
    return true;
  }

 private:
  void HandleField(std::string_view line) {
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

  std::string buf_;
  SseEvent current_;
  bool has_data_ = false;
};

}  // namespace

Status HttpClient::Stream(const std::string& path, const std::string& last_event_id,
                          const std::function<bool(const SseEvent&)>& on_event) const {
  YARD_ASSIGN_OR_RETURN(auto cli, Connect(resolver_, read_timeout_s_));
  httplib::Headers headers = AuthHeaders(token_);
  headers.emplace("Accept", "text/event-stream");
  if (!last_event_id.empty()) headers.emplace("Last-Event-ID", last_event_id);
  SseParser parser;
  bool stopped = false;
  std::string error_body;
  int status = 0;
  auto r = cli->Get(
      path, headers,
      [&](const httplib::Response& resp) {
        status = resp.status;
        return true;
      },
      [&](const char* data, size_t len) {
        if (status >= 300) { error_body.append(data, len); return true; }
        if (!parser.Feed(std::string_view(data, len), on_event)) { stopped = true; return false; }
        return true;
      });
  if (stopped) return Status::Ok();
  if (status >= 300) return StatusFromHttp(status, error_body);
  if (!r) return TransportError(r, "stream " + path);
  return Status::Ok();
}

Status StatusFromHttp(int http_status, const std::string& body) {
  if (http_status >= 200 && http_status < 300) return Status::Ok();
  Json j = Json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_object()) {
    const Json& e = j["error"];
    return Status(CodeFromName(e.value("code", "internal")), e.value("message", "unknown error"));
  }
  Code code = http_status == 401 ? Code::kUnauthenticated
              : http_status == 404 ? Code::kNotFound
              : http_status >= 500 ? Code::kUnavailable
                                   : Code::kInvalidArgument;
  return Status(code, "HTTP " + std::to_string(http_status) + ": " + body.substr(0, 200));
}

}  // namespace yard
