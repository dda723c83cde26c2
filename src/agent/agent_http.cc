#include "agent/agent_http.h"

#include <httplib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "common/files.h"

namespace yard {

StatusOr<Json> HttpReply::JsonBody() const {
  if (body.empty()) return Json::object();
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Internal("server sent invalid JSON");
  return j;
}

namespace {
// Idle connections kept: one per agent thread that calls (work poll,
// heartbeat, event sender) and a spare.
constexpr size_t kMaxIdle = 4;
}  // namespace

AgentHttp::AgentHttp(UrlResolver resolver, std::string token, TlsTrust trust)
    : resolver_(std::move(resolver)),
      token_(std::move(token)),
      trust_(std::move(trust)),
      pool_(kMaxIdle) {}

AgentHttp::~AgentHttp() = default;

std::unique_ptr<httplib::Client> AgentHttp::Checkout(const std::string& url) {
  std::unique_ptr<httplib::Client> cli = pool_.Take(url, trust_);
  if (!cli) return nullptr;
  // Closes the window where CancelAll() runs after our check in Exchange
  // but before the socket exists, so stop() has nothing to shut down yet.
  cli->set_socket_options([this](socket_t sock) {
    if (cancelled_) ::shutdown(sock, SHUT_RDWR);
  });
  return cli;
}

void AgentHttp::Return(std::unique_ptr<httplib::Client> cli, const std::string& url) {
  if (!cancelled_) pool_.Give(std::move(cli), url);
}

template <typename Send>
StatusOr<HttpReply> AgentHttp::Exchange(const std::string& what, int read_timeout_s, Send&& send) {
  if (cancelled_) return Cancelled(what + ": agent stopping");
  YARD_ASSIGN_OR_RETURN(std::string url, resolver_());
  std::unique_ptr<httplib::Client> cli = Checkout(url);
  if (!cli) return InvalidArgument("bad server URL '" + url + "'");
  cli->set_read_timeout(read_timeout_s, 0);
  {
    MutexLock lock(mu_);
    if (cancelled_) return Cancelled(what + ": agent stopping");
    in_flight_.insert(cli.get());
  }
  httplib::Result r = send(*cli);
  {
    MutexLock lock(mu_);
    in_flight_.erase(cli.get());
  }
  if (cancelled_) return Cancelled(what + ": agent stopping");
  if (!r) {
    // A certificate we do not trust (or plain HTTP to a TLS port) is no
    // passing trouble: FailedPrecondition, saying why, so the agent stops
    // and logs it instead of retrying in silence.
    std::string tls = ExplainTlsFailure(*cli, url, trust_, static_cast<int>(r.error()));
    if (!tls.empty()) return FailedPrecondition(what + ": " + tls);
    return Unavailable(what + ": " + httplib::to_string(r.error()));
  }
  HttpReply reply{r->status, std::move(r->body)};
  Return(std::move(cli), url);  // only after a whole exchange: the connection is in a known state
  return reply;
}

StatusOr<HttpReply> AgentHttp::Get(const std::string& path, int read_timeout_s) {
  return Exchange("GET " + path, read_timeout_s, [&](httplib::Client& cli) {
    return cli.Get(path, {{"Authorization", "Bearer " + token_}});
  });
}

StatusOr<HttpReply> AgentHttp::Post(const std::string& path, const Json& body, int read_timeout_s) {
  return PostText(path, body.dump(-1, ' ', false, Json::error_handler_t::replace), read_timeout_s);
}

StatusOr<HttpReply> AgentHttp::PostText(const std::string& path, const std::string& text,
                                        int read_timeout_s, const char* content_type) {
  return Exchange("POST " + path, read_timeout_s, [&](httplib::Client& cli) {
    httplib::Headers headers = {{"Authorization", "Bearer " + token_}};
    if (text.empty()) return cli.Post(path, headers, text, content_type);
    // Written to the socket from `text` itself: httplib's string overload
    // copies the body first (4 MiB per event batch).
    return cli.Post(
        path, headers, text.size(),
        [&text](size_t offset, size_t length, httplib::DataSink& sink) {
          return sink.write(text.data() + offset, length);
        },
        content_type);
  });
}

StatusOr<HttpReply> AgentHttp::PostParts(const std::string& path,
                                         const std::vector<std::string_view>& parts,
                                         int read_timeout_s, const char* content_type) {
  size_t total = 0;
  for (std::string_view p : parts) total += p.size();
  return Exchange("POST " + path, read_timeout_s, [&](httplib::Client& cli) {
    httplib::Headers headers = {{"Authorization", "Bearer " + token_}};
    if (total == 0) return cli.Post(path, headers, std::string(), content_type);
    // httplib asks for the body from `offset` on: write the rest of the part
    // that holds it (parts are few, a batch's records' blocks).
    return cli.Post(
        path, headers, total,
        [&parts](size_t offset, size_t, httplib::DataSink& sink) {
          for (std::string_view p : parts) {
            if (offset < p.size()) return sink.write(p.data() + offset, p.size() - offset);
            offset -= p.size();
          }
          return false;
        },
        content_type);
  });
}

namespace {
StatusOr<Json> ReplyJson(StatusOr<HttpReply> reply) {
  if (!reply.ok()) return reply.status();
  YARD_RETURN_IF_ERROR(reply->ToStatus());
  return reply->JsonBody();
}
}  // namespace

StatusOr<Json> AgentHttp::GetJson(const std::string& path, int read_timeout_s) {
  return ReplyJson(Get(path, read_timeout_s));
}

StatusOr<Json> AgentHttp::PostJson(const std::string& path, const Json& body, int read_timeout_s) {
  return ReplyJson(Post(path, body, read_timeout_s));
}

UrlResolver RetryingResolver(UrlResolver resolver) {
  return [resolver = std::move(resolver)]() -> StatusOr<std::string> {
    StatusOr<std::string> url = resolver();
    if (url.ok()) return url;
    return Unavailable("finding the server: " + url.status().message());
  };
}

namespace {

int64_t Ns(const struct timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; }

}  // namespace

std::optional<ServerFileUrl::Stamp> ServerFileUrl::StampOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return Stamp{st.st_dev, st.st_ino, st.st_size, Ns(st.st_mtim), Ns(st.st_ctim)};
}

StatusOr<std::string> ServerFileUrl::Get() {
  std::optional<Stamp> before = StampOf(path_);
  {
    MutexLock lock(mu_);
    if (before && known_ && *before == known_->first) return known_->second;
    ++reads_;
  }
  YARD_ASSIGN_OR_RETURN(std::string text, ReadFile(path_));
  Json j = Json::parse(text, nullptr, false);
  // Called on the agent's threads: a file of another shape must not throw.
  if (!j.is_object() || !j.contains("url") || !j["url"].is_string())
    return Unavailable(path_ + " is not readable yet");
  std::string url = j["url"].get<std::string>();
  // Remembered only when the file stayed the same around the read and was
  // not changed just now (a change this recent may share its timestamps
  // with the look that missed it).
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  int64_t recent = Ns(now) - racy_.count();
  std::optional<Stamp> after = StampOf(path_);
  MutexLock lock(mu_);
  if (before && after && *before == *after && before->mtime_ns < recent &&
      before->ctime_ns < recent) {
    known_ = std::make_pair(*before, url);
  } else {
    known_.reset();
  }
  return url;
}

int ServerFileUrl::reads() const {
  MutexLock lock(mu_);
  return reads_;
}

UrlResolver ServerFileResolver(const std::string& url_file) {
  auto file = std::make_shared<ServerFileUrl>(url_file);
  return [file]() { return file->Get(); };
}

void AgentHttp::CancelAll() {
  cancelled_ = true;
  {
    MutexLock lock(mu_);
    for (httplib::Client* cli : in_flight_) cli->stop();
  }
  pool_.Clear();
}

}  // namespace yard
