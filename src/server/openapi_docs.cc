// The words and schemas of every /v1 route (see openapi.h). A route added to
// a table without an entry here fails openapi_test and /v1/openapi.json.
#include "server/openapi.h"

namespace yard {
namespace {

constexpr const char* kJob = R"(/v1/jobs/([A-Za-z0-9_-]+))";
constexpr const char* kAgent = R"(/v1/agents/([A-Za-z0-9_-]+))";
constexpr const char* kBlob = R"(/v1/blobs/([0-9a-f]{64}))";

constexpr const char* kJobReply =
    R"j({"type": "object", "required": ["job"], "properties": {"job": {"$ref": "#/components/schemas/Job"}}})j";

constexpr const char* kComponents = R"json({
  "securitySchemes": {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "A user token (yard token create; YARD_TOKEN), a metrics token, or an agent's instance or bootstrap credential (docs/api.md, Agent credentials)."},
    "session": {"type": "apiKey", "in": "cookie", "name": "yard_session",
                "description": "The dashboard's session cookie (HttpOnly, SameSite=Strict); POST /v1/dashboard/session sets it. Calls other than GET also need the header X-Yard-Dashboard: 1."}
  },
  "schemas": {
    "Error": {"type": "object", "required": ["error"], "properties": {
      "error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string", "enum": ["invalid_argument", "unauthenticated", "permission_denied",
                 "not_found", "already_exists", "failed_precondition", "resource_exhausted",
                 "too_many_requests", "unavailable", "deadline_exceeded", "cancelled", "internal",
                 "insufficient_storage", "unknown"]},
        "message": {"type": "string"}}},
      "acked": {"type": "integer", "description": "agent event upload: the highest record stored"}}},
    "Token": {"type": "object",
      "required": ["id", "user", "scope", "state", "created_at", "expires_at", "last_used", "revoked_at"],
      "properties": {
        "id": {"type": "string"}, "user": {"type": "string"},
        "scope": {"type": "string", "enum": ["read", "submit", "admin", "metrics"]},
        "state": {"type": "string", "enum": ["active", "expired", "revoked"]},
        "created_at": {"type": "number"}, "expires_at": {"type": ["number", "null"]},
        "last_used": {"type": ["number", "null"], "description": "to the minute"},
        "revoked_at": {"type": ["number", "null"]}}},
    "Job": {"type": "object",
      "required": ["id", "user", "state", "description", "machines", "command", "instance",
                   "machine_type", "created_at", "updated_at", "exit_code", "message", "attempt", "last_seq"],
      "properties": {
        "id": {"type": "string"}, "user": {"type": "string"},
        "state": {"type": "string", "enum": ["waiting", "requesting", "starting", "running",
                                             "succeeded", "failed", "cancelled"]},
        "description": {"type": "string"},
        "machines": {"type": "array", "items": {"type": "string"}},
        "command": {"type": "array", "items": {"type": "string"}},
        "instance": {"type": "string"}, "machine_type": {"type": "string"},
        "created_at": {"type": "number"}, "updated_at": {"type": "number"},
        "exit_code": {"type": ["integer", "null"]}, "message": {"type": "string"},
        "attempt": {"type": "integer"}, "last_seq": {"type": "integer"},
        "settings": {"type": "object", "additionalProperties": {"type": "string"}}}},
    "Instance": {"type": "object",
      "required": ["id", "machine_type", "provider", "state", "user", "job", "created_at", "state_since", "age_s", "idle_s"],
      "properties": {
        "id": {"type": "string"}, "machine_type": {"type": "string"}, "provider": {"type": "string"},
        "state": {"type": "string", "enum": ["requested", "provisioning", "idle", "busy", "cooling",
                                             "terminating", "terminated", "lost", "preempted"]},
        "user": {"type": "string"}, "job": {"type": "string"},
        "created_at": {"type": "number"}, "state_since": {"type": "number"},
        "age_s": {"type": "number"}, "idle_s": {"type": "number"}, "cool_until": {"type": "number"},
        "market": {"type": "string"}, "price_per_hour": {"type": "number"},
        "settings": {"type": "object"}}},
    "MachineType": {"type": "object",
      "required": ["name", "provider", "cpus", "memory_gb", "gpus", "spot_price", "on_demand_price", "default_market"],
      "properties": {
        "name": {"type": "string"}, "provider": {"type": "string"}, "cpus": {"type": "integer"},
        "memory_gb": {"type": "number"}, "gpus": {"type": "integer"}, "gpu_model": {"type": "string"},
        "spot_price": {"type": "number"}, "on_demand_price": {"type": "number"},
        "default_market": {"type": "string"}, "options": {},
        "available": {"type": "integer"}, "default": {"type": "boolean"}}},
    "Manifest": {"type": "object", "description": "a bundle manifest (docs/formats.md)"},
    "Event": {"type": "object", "required": ["seq", "time", "kind"], "properties": {
      "seq": {"type": "integer"}, "time": {"type": "number"},
      "kind": {"type": "string", "enum": ["state", "decision", "output", "metric", "artifact"]}}},
    "JobSpec": {"type": "object", "additionalProperties": false, "required": ["command"],
      "properties": {
        "command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "bundle": {"$ref": "#/components/schemas/Manifest"},
        "machines": {"type": "array", "items": {"type": "string"}},
        "description": {"type": "string"}, "cool_down_s": {"type": "number"},
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "wait_request_s": {"type": "number"}, "wait_new_job_s": {"type": "number"},
        "wait_new_job_interval_s": {"type": "number"}, "max_restarts": {"type": "integer"},
        "nodes": {"type": "integer", "minimum": 1}, "image": {"type": "string", "minLength": 1},
        "settings": {"type": "object", "additionalProperties": {"type": "string"}}}}
  }
})json";

}  // namespace

Json OpenApiComponents() { return Json::parse(kComponents); }

const std::vector<RouteDoc>& RouteDocs() {
  static const std::string job = kJob, agent = kAgent, blob = kBlob;
  static const std::vector<RouteDoc> docs = {
      {"GET", "/v1/health", "Liveness: answers without a token", {}, "", "", 200,
       R"j({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}, "service": {"type": "string"}}})j"},
      {"GET", "/v1/openapi.json", "This description (OpenAPI 3.1), built from the route table", {}, "", "", 200,
       R"j({"type": "object", "required": ["openapi", "paths"]})j"},
      // ---- jobs
      {"POST", "/v1/jobs", "Submit a job (docs/api.md, Jobs)", {}, "",
       R"j({"$ref": "#/components/schemas/JobSpec"})j", 201, kJobReply},
      {"GET", "/v1/jobs", "The caller's jobs, newest first", {},
       R"j([{"name": "state", "schema": {"type": "string"}, "description": "only jobs in this state"},
           {"name": "q", "schema": {"type": "string"}, "description": "search descriptions"},
           {"name": "limit", "schema": {"type": "integer"}, "description": "at most this many (1..10000, default 100)"}])j",
       "", 200,
       R"j({"type": "object", "required": ["jobs"], "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}})j"},
      {"GET", job, "One of the caller's jobs (404 for anyone else's)", {"id"}, "", "", 200, kJobReply},
      {"POST", job + "/cancel", "Cancel the job and everything it started", {"id"}, "", "", 200, kJobReply},
      {"GET", job + "/events",
       "The job's events as Server-Sent Events (id: seq; data: the event), or as record frames with "
       "Accept: application/x-yard-frames",
       {"id"},
       R"j([{"name": "after", "schema": {"type": "integer"}, "description": "events after this seq (Last-Event-ID overrides)"},
           {"name": "follow", "schema": {"type": "string", "enum": ["0", "1"]}, "description": "0: end once the stored events were sent"},
           {"name": "end", "schema": {"type": "string", "enum": ["e"]}, "description": "with Accept: application/x-yard-frames and Connection: close, the framed stream delimited by the connection, its clean end an 'e' frame"}])j",
       "", 200, "sse", true},
      {"GET", job + "/artifacts", "The newest version of each of the job's artifacts", {"id"}, "", "", 200,
       R"j({"type": "object", "required": ["artifacts"], "properties": {"artifacts": {"type": "array", "items": {"type": "object", "required": ["dir", "entry"]}}}})j"},
      // ---- blobs
      {"POST", "/v1/blobs/missing", "Which of these chunks the caller must upload", {}, "",
       R"j({"type": "object", "additionalProperties": false, "required": ["hashes"], "properties": {"hashes": {"type": "array", "items": {"type": "string"}}}})j",
       200, R"j({"type": "object", "required": ["missing"], "properties": {"missing": {"type": "array", "items": {"type": "string"}}}})j"},
      {"PUT", blob, "Upload a chunk (verified against its name)", {"sha256"}, "", "binary", 200,
       R"j({"type": "object", "required": ["stored"], "properties": {"stored": {"type": "string"}}})j"},
      {"GET", blob, "Download a chunk the caller may read", {"sha256"}, "", "", 200, "binary"},
      // ---- agents
      {"POST", "/v1/agents/register", "An agent announces its instance", {}, "",
       R"j({"type": "object", "additionalProperties": false, "required": ["instance"], "properties": {"instance": {"type": "string"}, "resources": {"type": "object"}, "credential": {"type": "string", "description": "the agent's own credential (yit_ + 48 hex), required with a bootstrap"}}})j",
       200, R"j({"type": "object", "required": ["instance", "heartbeat_s"], "properties": {"instance": {"$ref": "#/components/schemas/Instance"}, "heartbeat_s": {"type": "number"}}})j"},
      {"POST", agent + "/heartbeat", "The agent is alive", {"instance"}, "", R"j({"type": "object"})j", 200,
       R"j({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}})j"},
      {"GET", agent + "/work", "Long poll for an assignment, a cancel or terminate", {"instance"},
       R"j([{"name": "wait", "schema": {"type": "number"}, "description": "seconds to wait (0..60, default 20)"}])j",
       "", 200, R"j({"type": "object"})j"},
      {"POST", agent + "/events",
       "A batch of the agent's records for a job attempt (JSON, or record frames with that Content-Type)",
       {"instance"}, "",
       R"j({"type": "object", "additionalProperties": false, "required": ["job", "records"], "properties": {"job": {"type": "string"}, "attempt": {"type": "integer"}, "first": {"type": "integer"}, "records": {"type": "array", "items": {"type": "object"}}}})j",
       200, R"j({"type": "object", "required": ["acked"], "properties": {"acked": {"type": "integer"}}})j", true},
      {"POST", agent + "/preempted", "The agent's instance is being taken back (a spot interruption)", {"instance"}, "",
       R"j({"type": "object", "additionalProperties": false, "properties": {"action": {"type": "string"}, "time": {"type": "string"}}})j",
       200, R"j({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}})j"},
      {"GET", R"(/v1/agent/binaries/(yard|yard-shim))", "The yard or yard-shim executable the server runs", {"name"}, "", "",
       200, "binary"},
      // ---- machines, instances, cost
      {"GET", "/v1/machines", "Machine types with availability; the caller's instances with their price", {},
       R"j([{"name": "all", "schema": {"type": "string", "enum": ["0", "1"]}, "description": "1: ended instances too"}])j",
       "", 200,
       R"j({"type": "object", "required": ["types", "instances"], "properties": {"types": {"type": "array", "items": {"$ref": "#/components/schemas/MachineType"}}, "instances": {"type": "array", "items": {"$ref": "#/components/schemas/Instance"}}}})j"},
      {"POST", "/v1/instances/down", "End the caller's idle/cooling instance (\"\": all of them)", {}, "",
       R"j({"type": "object", "additionalProperties": false, "properties": {"instance": {"type": "string"}}})j", 200,
       R"j({"type": "object", "required": ["ended"], "properties": {"ended": {"type": "array", "items": {"type": "string"}}}})j"},
      {"GET", "/v1/cost", "What the caller spent: ledger entries, per job, instance and kind", {}, "", "", 200,
       R"j({"type": "object", "required": ["user", "entries", "by_job", "by_instance", "by_kind", "total", "as_of"], "properties": {"user": {"type": "string"}, "entries": {"type": "array", "items": {"type": "object"}}, "by_job": {"type": "object", "additionalProperties": {"type": "number"}}, "by_instance": {"type": "object", "additionalProperties": {"type": "number"}}, "by_kind": {"type": "object", "additionalProperties": {"type": "number"}}, "total": {"type": "number"}, "as_of": {"type": "number"}}})j"},
      {"POST", R"(/v1/sim/interrupt/([A-Za-z0-9_-]+))", "Simulate a spot interruption of one of the caller's sim instances",
       {"instance"}, "", "", 200,
       R"j({"type": "object", "required": ["interrupted"], "properties": {"interrupted": {"type": "string"}}})j"},
      // ---- tokens (docs/api.md, Tokens)
      {"GET", "/v1/tokens", "The caller's own tokens: id, scope, state, times (never the tokens)", {}, "", "", 200,
       R"j({"type": "object", "required": ["tokens"], "properties": {"tokens": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}}}})j"},
      {"POST", "/v1/tokens", "A new token for the caller (shown once), of scope read, submit or admin", {}, "",
       R"j({"type": "object", "additionalProperties": false, "required": ["scope"], "properties": {"scope": {"type": "string", "enum": ["read", "submit", "admin"]}, "expires": {"type": "string", "description": "lifetime: 30d, 12h or 45m; none: never expires"}}})j",
       201, R"j({"allOf": [{"$ref": "#/components/schemas/Token"}, {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}]})j"},
      {"POST", R"(/v1/tokens/([0-9a-f]{12})/revoke)", "Revoke one of the caller's tokens: refused from its next call, its open streams end",
       {"token_id"}, "", "", 200, R"j({"$ref": "#/components/schemas/Token"})j"},
      // ---- dashboard (docs/api.md, Dashboard)
      {"POST", "/v1/dashboard/login-links", "A one-time login link for the page (yard dashboard)", {}, "", "", 200,
       R"j({"type": "object", "required": ["code", "path", "expires_in_s"], "properties": {"code": {"type": "string"}, "path": {"type": "string"}, "expires_in_s": {"type": "number"}}})j"},
      {"POST", "/v1/dashboard/session", "Sign the page in with a login code or a user token: sets the session cookie", {}, "",
       R"j({"type": "object", "additionalProperties": false, "properties": {"code": {"type": "string"}, "token": {"type": "string"}}})j",
       200, R"j({"type": "object", "required": ["user"], "properties": {"user": {"type": "string"}}})j"},
      {"POST", "/v1/dashboard/logout", "End the page's session", {}, "", "", 200,
       R"j({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}})j"},
      {"GET", "/v1/dashboard/me", "Who the caller is, and the scope of the token behind the call or session", {}, "", "", 200,
       R"j({"type": "object", "required": ["user", "scope"], "properties": {"user": {"type": "string"}, "scope": {"type": "string", "enum": ["read", "submit", "admin"]}}})j"},
      {"GET", "/v1/dashboard/jobs", "The caller's jobs with their newest metric values and cost so far", {},
       R"j([{"name": "state", "schema": {"type": "string"}, "description": "only jobs in this state"},
           {"name": "q", "schema": {"type": "string"}, "description": "search descriptions"},
           {"name": "limit", "schema": {"type": "integer"}, "description": "at most this many (1..10000, default 200)"}])j",
       "", 200,
       R"j({"type": "object", "required": ["jobs", "as_of"], "properties": {"as_of": {"type": "number"}, "jobs": {"type": "array", "items": {"allOf": [{"$ref": "#/components/schemas/Job"}, {"type": "object", "required": ["latest_metrics", "cost"], "properties": {"latest_metrics": {"type": ["object", "null"]}, "cost": {"type": "number"}}}]}}}})j"},
      {"GET", job + "/lines", "Lines of the job's output by index (a log opens at its tail)", {"id"},
       R"j([{"name": "from", "schema": {"type": "integer"}, "description": "first line; negative counts from the end (default -1000)"},
           {"name": "count", "schema": {"type": "integer"}, "description": "how many (0..20000, default 1000)"},
           {"name": "grep", "schema": {"type": "string"}, "description": "instead: the indexes of the lines containing this text (at most 10000)"}])j",
       "", 200,
       R"j({"oneOf": [{"type": "object", "required": ["total", "from", "lines", "seq", "partial"], "properties": {"total": {"type": "integer"}, "from": {"type": "integer"}, "lines": {"type": "array", "items": {"type": "string"}}, "seq": {"type": "integer", "description": "the last event read: follow the events after it"}, "partial": {"type": "boolean", "description": "the last line has no newline yet"}}}, {"type": "object", "required": ["matches", "more"], "properties": {"matches": {"type": "array", "items": {"type": "integer"}}, "more": {"type": "boolean"}}}]})j"},
      {"GET", job + "/timeline", "The job's events other than output (states, decisions, metrics, artifacts)", {"id"}, "", "", 200,
       R"j({"type": "object", "required": ["events", "seq"], "properties": {"events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}, "seq": {"type": "integer"}}})j"},
      {"GET", job + "/log", "The job's whole output as one text file", {"id"}, "", "", 200, "text"},
      {"GET", job + "/file", "One artifact file of the job", {"id"},
       R"j([{"name": "dir", "schema": {"type": "string"}, "description": "checkpoints, logs, outputs or work"},
           {"name": "path", "schema": {"type": "string"}, "description": "the file's path in that folder"}])j",
       "", 200, "binary"},
  };
  return docs;
}

}  // namespace yard
