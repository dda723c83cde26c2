// /v1/agents: registration, heartbeats, the work long poll, event upload and
// the report of a spot interruption. Each call speaks for the one instance
// its credential belongs to (server/agent_credentials.h); the first register
// trades the instance's bootstrap for the agent's own credential.
#include <httplib.h>

#include "common/frames.h"
#include "server/http_server.h"
#include "server/request_json.h"

namespace yard {
namespace {

constexpr const char* kAgentPath = R"(/v1/agents/([A-Za-z0-9_-]+))";

// PermissionDenied unless the caller's credential is that of `instance`.
Status CheckInstance(const Call& call, const std::string& instance) {
  if (call.who.instance == instance) return Status::Ok();
  return PermissionDenied("this agent credential is instance " + call.who.instance + "'s, not " +
                          instance + "'s");
}

Status Register(ApiContext& ctx, Call& call) {
  YARD_ASSIGN_OR_RETURN(Json body,
                        ParseStrictObject(call.Body(), {"instance", "resources", "credential"}));
  YARD_ASSIGN_OR_RETURN(std::string id, GetString(body, "instance", true));
  YARD_RETURN_IF_ERROR(CheckInstance(call, id));
  if (call.who.kind == "bootstrap") {
    YARD_ASSIGN_OR_RETURN(std::string credential, GetString(body, "credential", true));
    YARD_RETURN_IF_ERROR(ctx.controller->BindAgentCredential(id, credential));
  }
  YARD_ASSIGN_OR_RETURN(InstanceRecord inst, ctx.controller->RegisterAgent(id));
  call.ReplyJson({{"instance", inst.ToApiJson(0)}, {"heartbeat_s", 1}});
  return Status::Ok();
}

Status Heartbeat(ApiContext& ctx, Call& call) {
  YARD_RETURN_IF_ERROR(CheckInstance(call, call.Param(1)));
  YARD_RETURN_IF_ERROR(ctx.controller->Heartbeat(call.Param(1)));
  call.ReplyJson({{"ok", true}});
  return Status::Ok();
}

Status Work(ApiContext& ctx, Call& call) {
  YARD_RETURN_IF_ERROR(CheckInstance(call, call.Param(1)));
  double wait = std::clamp(std::atof(call.Query("wait", "20").c_str()), 0.0, 60.0);
  // pipeline=1: the agent takes a job queued behind its current one (docs/api.md).
  bool pipeline = call.Query("pipeline", "0") == "1";
  YARD_ASSIGN_OR_RETURN(Json work, ctx.controller->PollWork(call.Param(1), wait, pipeline));
  call.ReplyJson(work);
  return Status::Ok();
}

Status AgentEvents(ApiContext& ctx, Call& call) {
  YARD_RETURN_IF_ERROR(CheckInstance(call, call.Param(1)));
  YARD_ASSIGN_OR_RETURN(AgentBatch batch,
                        DecodeAgentBatch(call.Body(), call.req.get_header_value("Content-Type") ==
                                                          kFramesContentType));
  // work=1: the agent takes its next assignment with this answer (docs/api.md).
  bool wants_work = call.Query("work", "0") == "1";
  Json work;
  StatusOr<int64_t> acked =
      ctx.controller->AcceptAgentBatch(call.Param(1), batch.job, batch.attempt, batch.first,
                                       batch.records, wants_work ? &work : nullptr);
  if (!acked.ok() && acked.status().code() == Code::kFailedPrecondition) {
    // A gap: tell the agent where to resume from.
    StatusOr<JobRecord> j = ctx.store->GetJob(batch.job);
    Json err = {{"error", {{"code", "failed_precondition"}, {"message", acked.status().message()}}},
                {"acked", j.ok() ? j->run_acked : 0}};
    call.ReplyJson(err, 409);
    return Status::Ok();
  }
  if (!acked.ok()) return acked.status();
  Json reply = {{"acked", *acked}};
  if (work.is_object()) reply["work"] = std::move(work);
  call.ReplyJson(reply);
  return Status::Ok();
}

// The instance is being taken back (a spot interruption notice): its job,
// whose records the agent delivered first, is requeued now.
Status Preempted(ApiContext& ctx, Call& call) {
  YARD_RETURN_IF_ERROR(CheckInstance(call, call.Param(1)));
  YARD_ASSIGN_OR_RETURN(Json body, ParseStrictObject(call.Body(), {"action", "time"}));
  YARD_ASSIGN_OR_RETURN(std::string action, GetString(body, "action", false));
  YARD_ASSIGN_OR_RETURN(std::string time, GetString(body, "time", false));
  std::string reason = "spot interruption notice: EC2 will " +
                       (action.empty() ? "terminate" : action) + " it" +
                       (time.empty() ? "" : " at " + time);
  YARD_RETURN_IF_ERROR(ctx.controller->AgentPreempted(call.Param(1), reason));
  call.ReplyJson({{"ok", true}});
  return Status::Ok();
}

}  // namespace

std::vector<Route> AgentRoutes(ApiContext& ctx) {
  std::string agent = kAgentPath;
  return {
      {"POST", "/v1/agents/register", Access::kAgentOrBootstrap, Bind(ctx, Register)},
      {"POST", agent + "/heartbeat", Access::kAgent, Bind(ctx, Heartbeat)},
      {"GET", agent + "/work", Access::kAgent, Bind(ctx, Work)},
      {"POST", agent + "/events", Access::kAgent, Bind(ctx, AgentEvents)},
      {"POST", agent + "/preempted", Access::kAgent, Bind(ctx, Preempted)},
  };
}

}  // namespace yard
