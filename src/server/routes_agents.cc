// /v1/agents: registration, heartbeats, the work long poll, event upload and
// the report of a spot interruption.
#include <httplib.h>

#include "server/http_server.h"
#include "server/request_json.h"

namespace yard {
namespace {

constexpr const char* kAgentPath = R"(/v1/agents/([A-Za-z0-9_-]+))";

Status Register(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(Json body, ParseStrictObject(call.Body(), {"instance", "resources"}));
  YARD_ASSIGN_OR_RETURN(std::string id, GetString(body, "instance", true));
  YARD_ASSIGN_OR_RETURN(InstanceRecord inst, ctx.controller->RegisterAgent(id));
  call.ReplyJson({{"instance", inst.ToApiJson(0)}, {"heartbeat_s", 1}});
  return Status::Ok();
}

Status Heartbeat(ApiContext& ctx, Call& call) {
  YARD_RETURN_IF_ERROR(ctx.controller->Heartbeat(call.Param(1)));
  call.ReplyJson({{"ok", true}});
  return Status::Ok();
}

Status Work(ApiContext& ctx, Call& call) {
  double wait = std::clamp(std::atof(call.Query("wait", "20").c_str()), 0.0, 60.0);
  YARD_ASSIGN_OR_RETURN(Json work, ctx.controller->PollWork(call.Param(1), wait));
  call.ReplyJson(work);
  return Status::Ok();
}

Status Events(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(Json body, ParseStrictObject(call.Body(),
                                                     {"job", "attempt", "first", "records"}));
  YARD_ASSIGN_OR_RETURN(std::string job, GetString(body, "job", true));
  YARD_ASSIGN_OR_RETURN(double attempt, GetNumber(body, "attempt", 0));
  YARD_ASSIGN_OR_RETURN(double first, GetNumber(body, "first", 1));
  StatusOr<int64_t> acked = ctx.controller->AcceptAgentRecords(
      call.Param(1), job, static_cast<int64_t>(attempt), static_cast<int64_t>(first),
      body.value("records", Json::array()));
  if (!acked.ok() && acked.status().code() == Code::kFailedPrecondition) {
    // A gap: tell the agent where to resume from.
    StatusOr<JobRecord> j = ctx.store->GetJob(job);
    Json err = {{"error", {{"code", "failed_precondition"}, {"message", acked.status().message()}}},
                {"acked", j.ok() ? j->run_acked : 0}};
    call.ReplyJson(err, 409);
    return Status::Ok();
  }
  if (!acked.ok()) return acked.status();
  call.ReplyJson({{"acked", *acked}});
  return Status::Ok();
}

// The instance is being taken back (a spot interruption notice): its job,
// whose records the agent delivered first, is requeued now.
Status Preempted(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(Json body, ParseStrictObject(call.Body(), {"action", "time"}));
  YARD_ASSIGN_OR_RETURN(std::string action, GetString(body, "action", false));
  YARD_ASSIGN_OR_RETURN(std::string time, GetString(body, "time", false));
  std::string reason = "spot interruption notice: EC2 will " + (action.empty() ? "terminate" : action) +
                       " it" + (time.empty() ? "" : " at " + time);
  YARD_RETURN_IF_ERROR(ctx.controller->AgentPreempted(call.Param(1), reason));
  call.ReplyJson({{"ok", true}});
  return Status::Ok();
}

}  // namespace

std::vector<Route> AgentRoutes(ApiContext& ctx) {
  auto bind = [&ctx](Status (*fn)(ApiContext&, Call&)) {
    return [&ctx, fn](Call& c) { return fn(ctx, c); };
  };
  std::string agent = kAgentPath;
  return {
      {"POST", "/v1/agents/register", Access::kAgent, bind(Register)},
      {"POST", agent + "/heartbeat", Access::kAgent, bind(Heartbeat)},
      {"GET", agent + "/work", Access::kAgent, bind(Work)},
      {"POST", agent + "/events", Access::kAgent, bind(Events)},
      {"POST", agent + "/preempted", Access::kAgent, bind(Preempted)},
  };
}

}  // namespace yard
