// About the server itself: /v1/health, /v1/openapi.json (openapi.h) and the
// Prometheus figures at /metrics (metrics.h; a "metrics" token).
#include <httplib.h>

#include "server/http_server.h"
#include "server/metrics.h"

namespace yard {
namespace {

Status Health(ApiContext& ctx, Call& call) {
  call.ReplyJson({{"ok", true}, {"service", "trainyard"}});
  return Status::Ok();
}

Status OpenApi(ApiContext& ctx, Call& call) {
  call.ReplyJson(*ctx.openapi);
  return Status::Ok();
}

Status Metrics(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(MetricsSnapshot snap, TakeMetricsSnapshot(ctx.store, ctx.controller));
  call.res.set_content(ctx.metrics->Render(snap), "text/plain; version=0.0.4; charset=utf-8");
  return Status::Ok();
}

}  // namespace

std::vector<Route> MetaRoutes(ApiContext& ctx) {
  return {
      {"GET", "/v1/health", Access::kPublic, Bind(ctx, Health)},
      {"GET", "/v1/openapi.json", Access::kPublic, Bind(ctx, OpenApi)},
      {"GET", "/metrics", Access::kMetrics, Bind(ctx, Metrics)},
  };
}

}  // namespace yard
