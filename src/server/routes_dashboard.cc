// The dashboard: sign-in (dashboard_auth.h), what the page reads beyond the
// plain API (jobs with their latest metrics and cost, output by line, the
// timeline, whole logs and artifact files), and the page itself (web/,
// embedded at build time: generated/server/dashboard_assets.h).
#include <httplib.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string_view>

#include "common/manifest.h"
#include "common/thread_annotations.h"
#include "server/dashboard_assets.h"  // generated: kWebAssets
#include "server/dashboard_auth.h"
#include "server/dashboard_output.h"
#include "server/http_server.h"
#include "server/request_json.h"
#include "server/token_auth.h"

namespace yard {
namespace {

constexpr int64_t kMaxLinesPerCall = 20000;

struct Dash {
  explicit Dash(ApiContext& c) : ctx(c), output(c.store) {}
  ApiContext& ctx;
  OutputCache output;
  // Newest metric values per job and the seq up to which they were looked
  // for, so a list read every few seconds queries only newer events.
  struct Latest {
    int64_t scanned = 0;
    Json values;
  };
  Mutex latest_mu;
  std::map<std::string, Latest> latest GUARDED_BY(latest_mu);
};

StatusOr<Json> LatestMetrics(Dash& d, const JobRecord& job) {
  MutexLock lock(d.latest_mu);
  if (d.latest.size() > 100000) d.latest.clear();  // a bound; refilled as lists are read
  Dash::Latest& l = d.latest[job.id];
  if (l.scanned < job.last_seq) {
    YARD_ASSIGN_OR_RETURN(StoredEvent m,
                          d.ctx.store->LatestEventOfKind(job.id, "metric", l.scanned));
    Json metric = m.seq ? Json::parse(m.json, nullptr, false) : Json();
    if (metric.is_object()) l.values = metric.value("values", Json());
    l.scanned = std::max(job.last_seq, m.seq);
  }
  return l.values;
}

// httplib compresses a text or JSON body for a browser with brotli at its
// slowest setting (seconds for megabytes); a body given with its length
// through a provider goes out as it is.
void ReplyUncompressed(Call& call, std::string body, const char* type) {
  auto text = std::make_shared<std::string>(std::move(body));
  call.res.set_content_provider(
      text->size(), type, [text](size_t offset, size_t length, httplib::DataSink& sink) {
        return sink.write(text->data() + offset, std::min(length, text->size() - offset));
      });
}

void ReplyJsonUncompressed(Call& call, const Json& j) {
  ReplyUncompressed(call, j.dump(-1, ' ', false, Json::error_handler_t::replace),
                    "application/json");
}

void SetSession(Call& call, const std::string& session, const std::string& user) {
  call.res.set_header("Set-Cookie", SessionCookie(session));
  call.res.set_header("Cache-Control", "no-store");
  call.ReplyJson({{"user", user}});
}

Status LoginLink(Dash& d, Call& call) {
  YARD_RETURN_IF_ERROR(ParseStrictObject(call.Body().empty() ? "{}" : call.Body(), {}).status());
  std::string code = d.ctx.dashboard_auth->CreateLoginCode(call.who);
  call.ReplyJson(
      {{"code", code}, {"path", "/login#code=" + code}, {"expires_in_s", kLoginCodeSeconds}});
  return Status::Ok();
}

// Signs in with a login code or a user token; sets the session cookie.
Status OpenSession(Dash& d, Call& call) {
  YARD_ASSIGN_OR_RETURN(Json body, ParseStrictObject(call.Body(), {"code", "token"}));
  YARD_ASSIGN_OR_RETURN(std::string code, GetString(body, "code", false));
  YARD_ASSIGN_OR_RETURN(std::string token, GetString(body, "token", false));
  if (!code.empty()) {
    YARD_ASSIGN_OR_RETURN(std::string session, d.ctx.dashboard_auth->RedeemLoginCode(code));
    YARD_ASSIGN_OR_RETURN(TokenInfo who, d.ctx.dashboard_auth->SessionUser(session));
    SetSession(call, session, who.user);
    return Status::Ok();
  }
  if (token.empty())
    return InvalidArgument("give \"code\" (from `yard dashboard`) or \"token\" (a user token)");
  StatusOr<TokenInfo> who = d.ctx.tokens->Identify(token, call.req.remote_addr);
  if (!who.ok() && who.status().code() != Code::kUnauthenticated) return who.status();
  if (!who.ok()) return Unauthenticated("cannot sign in: " + who.status().message());
  if (who->kind != "user")
    return Unauthenticated(
        "this is not a user token: make one with `yard token create USER` on the server");
  SetSession(call, d.ctx.dashboard_auth->OpenSession(*who), who->user);
  return Status::Ok();
}

Status CloseSession(Dash& d, Call& call) {
  std::string session = CookieValue(call.req.get_header_value("Cookie"), kSessionCookie);
  if (!session.empty()) d.ctx.dashboard_auth->CloseSession(session);
  call.res.set_header("Set-Cookie", SessionCookie(""));
  call.ReplyJson({{"ok", true}});
  return Status::Ok();
}

Status Me(Dash& d, Call& call) {
  call.ReplyJson({{"user", call.who.user}, {"scope", call.who.scope}});
  return Status::Ok();
}

// The caller's jobs with their newest metric values and their cost so far.
Status Jobs(Dash& d, Call& call) {
  int limit = std::clamp(std::atoi(call.Query("limit", "200").c_str()), 1, 10000);
  YARD_ASSIGN_OR_RETURN(
      auto jobs, d.ctx.store->ListJobs(call.who.user, call.Query("state"), call.Query("q"), limit));
  YARD_ASSIGN_OR_RETURN(Json cost, d.ctx.controller->CostFor(call.who.user));
  Json out = Json::array();
  for (const auto& j : jobs) {
    Json one = j.ToApiJson();
    YARD_ASSIGN_OR_RETURN(one["latest_metrics"], LatestMetrics(d, j));
    one["cost"] = cost["by_job"].value(j.id, 0.0);
    out.push_back(std::move(one));
  }
  call.ReplyJson({{"jobs", out}, {"as_of", cost["as_of"]}});
  return Status::Ok();
}

Status Lines(Dash& d, Call& call) {
  YARD_ASSIGN_OR_RETURN(JobRecord job, d.ctx.controller->GetJobFor(call.who.user, call.Param(1)));
  if (call.req.has_param("grep")) {
    YARD_ASSIGN_OR_RETURN(OutputMatches m, d.output.Search(job.id, call.Query("grep"), 10000));
    call.ReplyJson({{"matches", m.lines}, {"more", m.more}});
    return Status::Ok();
  }
  int64_t from = std::atoll(call.Query("from", "-1000").c_str());
  int64_t count =
      std::clamp<int64_t>(std::atoll(call.Query("count", "1000").c_str()), 0, kMaxLinesPerCall);
  YARD_ASSIGN_OR_RETURN(OutputLines l, d.output.Lines(job.id, from, count));
  ReplyJsonUncompressed(call, {{"total", l.total},
                               {"from", l.from},
                               {"lines", l.lines},
                               {"seq", l.seq},
                               {"partial", l.partial}});
  return Status::Ok();
}

Status Timeline(Dash& d, Call& call) {
  YARD_ASSIGN_OR_RETURN(JobRecord job, d.ctx.controller->GetJobFor(call.who.user, call.Param(1)));
  YARD_ASSIGN_OR_RETURN(auto t, d.output.Timeline(job.id));
  ReplyJsonUncompressed(call, {{"events", t.first}, {"seq", t.second}});
  return Status::Ok();
}

Status WholeLog(Dash& d, Call& call) {
  YARD_ASSIGN_OR_RETURN(JobRecord job, d.ctx.controller->GetJobFor(call.who.user, call.Param(1)));
  YARD_ASSIGN_OR_RETURN(std::string text, d.output.Text(job.id));
  call.res.set_header("Content-Disposition", "attachment; filename=\"" + job.id + ".log\"");
  ReplyUncompressed(call, std::move(text), "text/plain; charset=utf-8");
  return Status::Ok();
}

// One artifact file, its chunks streamed in order.
Status ArtifactFile(Dash& d, Call& call) {
  YARD_ASSIGN_OR_RETURN(JobRecord job, d.ctx.controller->GetJobFor(call.who.user, call.Param(1)));
  std::string dir = call.Query("dir"), path = call.Query("path");
  YARD_ASSIGN_OR_RETURN(Json list, d.ctx.store->ListArtifacts(job.id));
  for (const auto& a : list) {
    if (a.value("dir", "") != dir || !a.contains("entry") || a["entry"].value("path", "") != path)
      continue;
    YARD_ASSIGN_OR_RETURN(FileEntry entry, FileEntryFromJson(a["entry"]));
    std::string name = path.substr(path.rfind('/') + 1);
    call.res.set_header("Content-Disposition", "attachment; filename=\"" + name + "\"");
    BlobStore* blobs = d.ctx.blobs;
    auto chunks = std::make_shared<std::vector<ChunkRef>>(entry.chunks);
    auto next = std::make_shared<size_t>(0);
    call.res.set_content_provider(entry.size, "application/octet-stream",
                                  [blobs, chunks, next](size_t, size_t, httplib::DataSink& sink) {
                                    if (*next >= chunks->size()) return false;
                                    StatusOr<std::string> bytes =
                                        blobs->Get((*chunks)[(*next)++].hash);
                                    return bytes.ok() && sink.write(bytes->data(), bytes->size());
                                  });
    return Status::Ok();
  }
  return NotFound("job " + job.id + " has no artifact '" + path + "' in '" + dir + "'");
}

const char* ContentType(std::string_view name) {
  auto ends = [&](std::string_view s) {
    return name.size() >= s.size() && name.substr(name.size() - s.size()) == s;
  };
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".txt")) return "text/plain; charset=utf-8";
  return "text/html; charset=utf-8";
}

void ServeAsset(Call& call, std::string_view name, int status) {
  for (const auto& a : kWebAssets) {
    if (name != a.name) continue;
    call.res.status = status;
    call.res.set_header(
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'");
    call.res.set_header("Referrer-Policy", "no-referrer");
    call.res.set_header("X-Content-Type-Options", "nosniff");
    call.res.set_header("Cache-Control", "no-cache");
    call.res.set_content(std::string(a.data), ContentType(name));
    return;
  }
  ReplyError(call.res, NotFound("no file " + std::string(name) + " in the dashboard"));
}

Status Page(Dash& d, Call& call) {
  ServeAsset(call, "index.html", 200);
  return Status::Ok();
}

// A job's page answers 404 to a signed-in user the job does not belong to.
Status JobPage(Dash& d, Call& call) {
  std::string session = CookieValue(call.req.get_header_value("Cookie"), kSessionCookie);
  StatusOr<TokenInfo> who = d.ctx.dashboard_auth->SessionUser(session);
  bool theirs = !who.ok() || d.ctx.controller->GetJobFor(who->user, call.Param(1)).ok();
  ServeAsset(call, "index.html", theirs ? 200 : 404);
  return Status::Ok();
}

Status Asset(Dash& d, Call& call) {
  ServeAsset(call, call.Param(1), 200);
  return Status::Ok();
}

}  // namespace

std::vector<Route> DashboardRoutes(ApiContext& ctx) {
  auto d = std::make_shared<Dash>(ctx);
  std::string job = kJobPath;
  return {
      {"POST", "/v1/dashboard/login-links", Access::kUserRead, Bind(d, LoginLink)},
      {"POST", "/v1/dashboard/session", Access::kPublic, Bind(d, OpenSession)},
      {"POST", "/v1/dashboard/logout", Access::kPublic, Bind(d, CloseSession)},
      {"GET", "/v1/dashboard/me", Access::kUser, Bind(d, Me)},
      {"GET", "/v1/dashboard/jobs", Access::kUser, Bind(d, Jobs)},
      {"GET", job + "/lines", Access::kUser, Bind(d, Lines)},
      {"GET", job + "/timeline", Access::kUser, Bind(d, Timeline)},
      {"GET", job + "/log", Access::kUser, Bind(d, WholeLog)},
      {"GET", job + "/file", Access::kUser, Bind(d, ArtifactFile)},
      {"GET", "/", Access::kPublic, Bind(d, Page)},
      {"GET", "/(?:login|jobs|compare|machines|cost)", Access::kPublic, Bind(d, Page)},
      {"GET", "/jobs/([A-Za-z0-9_-]+)", Access::kPublic, Bind(d, JobPage)},
      {"GET", "/assets/([A-Za-z0-9_.-]+)", Access::kPublic, Bind(d, Asset)},
  };
}

}  // namespace yard
