// Decoding what an agent posts to /v1/agents/{id}/events (docs/api.md): a
// batch of one job attempt's records, as record frames (docs/formats.md,
// "Record frames") or as JSON, and the check of each record. Apart from the
// controller so that it can be tested and fuzzed alone (fuzz/).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace yard {

using Json = nlohmann::json;

// One record of an agent's batch: an output record's bytes (`output`, then
// `json` is unused) or any other record as JSON. The bytes are not owned.
struct AgentRecord {
  Json json;
  std::optional<std::string_view> output;
};

// A decoded batch. Output bytes point into the body it was decoded from or
// into `head`: both must outlive `records`.
struct AgentBatch {
  Json head;  // {"job", "attempt", "first"[, "records"]}
  std::string job;
  int64_t attempt = 0;
  int64_t first = 1;  // the agent's sequence number of records[0]
  std::vector<AgentRecord> records;
};

// The records of a JSON batch (docs/api.md), output bytes pointing into
// `records`, which must outlive the result. InvalidArgument if not a list.
StatusOr<std::vector<AgentRecord>> AgentRecordsFromJson(const Json& records);

// Decodes a batch body: record frames when `framed` (its Content-Type is
// kFramesContentType), else JSON. InvalidArgument saying what is wrong.
StatusOr<AgentBatch> DecodeAgentBatch(std::string_view body, bool framed);

// The record's "kind" when it is an object with a string kind, else "".
std::string RecordKind(const Json& r);

// Checks one record that is neither output nor exit and turns it into the
// event the server stores (with the instance it came from). InvalidArgument
// naming the problem.
StatusOr<Json> RecordToEvent(const Json& r, const std::string& instance_id);

}  // namespace yard
