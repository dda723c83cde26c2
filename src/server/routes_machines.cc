// /v1/machines: the catalog with current availability, and the caller's
// instances.
#include <httplib.h>

#include "server/http_server.h"

namespace yard {
namespace {

Status Machines(ApiContext& ctx, Call& call) {
  Json types = Json::array();
  for (const auto& t : ctx.controller->catalog().types()) {
    Json j = t.ToJson();
    j["available"] = ctx.controller->AvailableNow(t);
    types.push_back(j);
  }
  YARD_ASSIGN_OR_RETURN(Json instances,
                        ctx.controller->ListInstancesFor(call.who.user, call.Query("all") == "1"));
  call.ReplyJson({{"types", types}, {"instances", instances}});
  return Status::Ok();
}

}  // namespace

std::vector<Route> MachineRoutes(ApiContext& ctx) {
  return {{"GET", "/v1/machines", Access::kUser, [&ctx](Call& c) { return Machines(ctx, c); }}};
}

}  // namespace yard
