#include "server/agent_batch.h"

#include "common/frames.h"
#include "common/manifest.h"
#include "server/request_json.h"

namespace yard {

namespace {

// The framed form: a 'j' frame with the head, then one frame per record:
// 'o' output bytes, 'j' any other record.
Status DecodeFramedRecords(std::string_view body, AgentBatch* b) {
  bool corrupt = false;
  std::optional<Frame> head = NextFrame(&body, &corrupt);
  if (!head || head->tag != frame_tag::kJson)
    return InvalidArgument("framed batch without its head");
  YARD_ASSIGN_OR_RETURN(b->head,
                        ParseStrictObject(std::string(head->payload), {"job", "attempt", "first"}));
  while (std::optional<Frame> f = NextFrame(&body, &corrupt)) {
    if (f->tag == frame_tag::kOutput) {
      b->records.push_back({Json(), f->payload});
      continue;
    }
    if (f->tag != frame_tag::kJson) return InvalidArgument("unknown record frame tag");
    Json r = Json::parse(f->payload, nullptr, /*allow_exceptions=*/false);
    if (r.is_discarded()) return InvalidArgument("a record frame holds invalid JSON");
    b->records.push_back({std::move(r), std::nullopt});
  }
  if (corrupt || !body.empty()) return InvalidArgument("framed batch cut short or corrupt");
  return Status::Ok();
}

// The whole number `field` of `head` in [min, 2^53], or `fallback` when
// absent. Casting a double such as 1e300 to int64_t would be undefined, and
// the controller adds record counts to these.
StatusOr<int64_t> GetSequenceNumber(const Json& head, const char* field, int64_t fallback,
                                    int64_t min) {
  constexpr double kMax = 9007199254740992.0;  // 2^53: every integer below is a double
  YARD_ASSIGN_OR_RETURN(double v, GetNumber(head, field, static_cast<double>(fallback)));
  if (!(v >= static_cast<double>(min) && v <= kMax) ||
      v != static_cast<double>(static_cast<int64_t>(v)))
    return InvalidArgument(std::string("field '") + field + "' must be a whole number from " +
                           std::to_string(min) + " to 2^53");
  return static_cast<int64_t>(v);
}

Status DecodeJsonRecords(std::string_view body, AgentBatch* b) {
  YARD_ASSIGN_OR_RETURN(
      b->head, ParseStrictObject(std::string(body), {"job", "attempt", "first", "records"}));
  static const Json kNone = Json::array();
  auto it = b->head.find("records");  // a reference: the records point into it
  YARD_ASSIGN_OR_RETURN(b->records, AgentRecordsFromJson(it != b->head.end() ? *it : kNone));
  return Status::Ok();
}

}  // namespace

StatusOr<std::vector<AgentRecord>> AgentRecordsFromJson(const Json& records) {
  if (!records.is_array()) return InvalidArgument("'records' must be a list");
  std::vector<AgentRecord> out;
  out.reserve(records.size());
  for (const Json& r : records) {
    bool output = RecordKind(r) == "output" && r.contains("data") && r["data"].is_string();
    if (output)
      out.push_back({Json(), std::string_view(r["data"].get_ref<const std::string&>())});
    else
      out.push_back({r, std::nullopt});
  }
  return out;
}

StatusOr<AgentBatch> DecodeAgentBatch(std::string_view body, bool framed) {
  AgentBatch b;
  YARD_RETURN_IF_ERROR(framed ? DecodeFramedRecords(body, &b) : DecodeJsonRecords(body, &b));
  YARD_ASSIGN_OR_RETURN(b.job, GetString(b.head, "job", true));
  YARD_ASSIGN_OR_RETURN(b.attempt, GetSequenceNumber(b.head, "attempt", 0, 0));
  YARD_ASSIGN_OR_RETURN(b.first, GetSequenceNumber(b.head, "first", 1, 1));
  return b;
}

std::string RecordKind(const Json& r) {
  if (!r.is_object()) return "";
  auto it = r.find("kind");
  return it != r.end() && it->is_string() ? it->get<std::string>() : "";
}

StatusOr<Json> RecordToEvent(const Json& r, const std::string& instance_id) {
  if (!r.is_object() || !r.contains("kind") || !r["kind"].is_string())
    return InvalidArgument("each record needs a string 'kind'");
  std::string kind = r["kind"];
  if (kind == "output") {
    if (!r.contains("data") || !r["data"].is_string())
      return InvalidArgument("output record needs 'data'");
    return Json{{"kind", "output"}, {"data", r["data"]}};
  }
  if (kind == "decision") {  // e.g. the agent's word on a spot interruption notice
    if (!r.contains("message") || !r["message"].is_string())
      return InvalidArgument("decision record needs a string 'message'");
    return Json{{"kind", "decision"}, {"message", r["message"]}, {"instance", instance_id}};
  }
  if (kind == "metric") {
    if (!r.contains("values") || !r["values"].is_object())
      return InvalidArgument("metric record needs an object 'values'");
    return Json{{"kind", "metric"}, {"values", r["values"]}, {"instance", instance_id}};
  }
  if (kind == "artifact") {
    std::string dir = r.value("dir", "");
    if (dir != "checkpoints" && dir != "logs" && dir != "outputs" && dir != "work")
      return InvalidArgument("artifact 'dir' must be checkpoints, logs, outputs or work");
    YARD_ASSIGN_OR_RETURN(FileEntry e, FileEntryFromJson(r.value("entry", Json())));
    Manifest m;
    m.files.push_back(e);
    YARD_RETURN_IF_ERROR(ValidateManifest(m).WithContext("artifact"));
    return Json{{"kind", "artifact"},
                {"dir", dir},
                {"entry", FileEntryToJson(e)},
                {"instance", instance_id}};
  }
  if (kind == "artifact_part") {  // chunks of a file still uploading: for mirrors
    YARD_ASSIGN_OR_RETURN(ArtifactPart part, ArtifactPartFromJson(r));
    if (part.dir != "checkpoints" && part.dir != "logs" && part.dir != "outputs" &&
        part.dir != "work")
      return InvalidArgument("artifact_part 'dir' must be checkpoints, logs, outputs or work");
    Json ev = ArtifactPartToJson(part);
    ev["instance"] = instance_id;
    return ev;
  }
  return InvalidArgument("unknown record kind '" + kind + "'");
}

}  // namespace yard
