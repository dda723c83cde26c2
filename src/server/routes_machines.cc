// /v1/machines, /v1/instances, /v1/cost: the catalog with availability, the
// caller's instances with their current price, ending idle instances, and
// what was spent. /v1/sim: the simulated cloud's console.
#include <httplib.h>

#include "providers/sim_provider.h"
#include "server/http_server.h"
#include "server/request_json.h"

namespace yard {
namespace {

Status Machines(ApiContext& ctx, Call& call) {
  Json types = Json::array();
  for (const auto& t : ctx.controller->catalog().types()) {
    Json j = t.ToJson();
    j["available"] = ctx.controller->AvailableNow(t);
    j["default"] = t.name == ctx.controller->default_machine();
    types.push_back(j);
  }
  YARD_ASSIGN_OR_RETURN(Json instances,
                        ctx.controller->ListInstancesFor(call.who.user, call.Query("all") == "1"));
  call.ReplyJson({{"types", types}, {"instances", instances}});
  return Status::Ok();
}

Status Down(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(Json body, ParseStrictObject(call.Body(), {"instance"}));
  YARD_ASSIGN_OR_RETURN(std::string id, GetString(body, "instance", false));
  YARD_ASSIGN_OR_RETURN(auto ended, ctx.controller->EndIdleInstances(call.who.user, id));
  call.ReplyJson({{"ended", ended}});
  return Status::Ok();
}

Status Cost(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(Json cost, ctx.controller->CostFor(call.who.user));
  call.ReplyJson(cost);
  return Status::Ok();
}

// Simulates a spot interruption of one of the caller's sim instances.
Status SimInterrupt(ApiContext& ctx, Call& call) {
  auto* sim = dynamic_cast<SimProvider*>(ctx.controller->provider("sim"));
  if (!sim) return FailedPrecondition("this server has no sim provider (see docs/formats.md)");
  YARD_ASSIGN_OR_RETURN(Json mine, ctx.controller->ListInstancesFor(call.who.user, false));
  bool owned = false;
  for (const auto& i : mine) owned |= i.value("id", "") == call.Param(1);
  if (!owned) return NotFound("no live instance '" + call.Param(1) + "' of yours");
  YARD_RETURN_IF_ERROR(
      sim->InterruptNow(call.Param(1), "spot interruption (simulated on request)"));
  ctx.controller->notifier().Notify("scheduler");
  call.ReplyJson({{"interrupted", call.Param(1)}});
  return Status::Ok();
}

}  // namespace

std::vector<Route> MachineRoutes(ApiContext& ctx) {
  return {
      {"GET", "/v1/machines", Access::kUser, Bind(ctx, Machines)},
      {"POST", "/v1/instances/down", Access::kUser, Bind(ctx, Down)},
      {"GET", "/v1/cost", Access::kUser, Bind(ctx, Cost)},
      {"POST", R"(/v1/sim/interrupt/([A-Za-z0-9_-]+))", Access::kUser, Bind(ctx, SimInterrupt)},
  };
}

}  // namespace yard
