// The job spec of POST /v1/jobs: its fields, their allowed values, and the
// checks that need nothing but the spec and the machine catalog. The one
// check that needs the store (the user uploaded every chunk of the bundle)
// is the controller's (Controller::SubmitJob). docs/api.md lists the ranges.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "providers/catalog.h"

namespace yard {

// The allowed ranges of the spec's numbers. Every number the server later
// converts to an integer or formats is bounded here, so no value a client
// sends can overflow a conversion (1e300 as an int is undefined behaviour).
struct JobSpecLimits {
  // cool_down_s, wait_request_s, wait_new_job_s, wait_new_job_interval_s
  // (about 31 years; wait_new_job_s <= 0 means "wait indefinitely").
  static constexpr double kMaxSeconds = 1e9;
  static constexpr int64_t kMaxRestarts = 1000;
  static constexpr int64_t kMaxNodes = 10000;
};

struct ValidJobSpec {
  // The spec as stored: "machines" always present (maybe empty),
  // max_restarts and nodes as JSON integers, empty "settings" dropped.
  nlohmann::json spec;
  std::vector<std::string> bundle_chunks;  // the chunk hashes the bundle names
};

// Parses a request body as a job spec object: InvalidArgument for bytes that
// are not a JSON object or for a key that is not a job spec field.
StatusOr<nlohmann::json> ParseJobSpec(const std::string& body);

// InvalidArgument, naming the field and what it accepts, unless `spec` is a
// job the instances could run: a non-empty command whose program is named,
// a valid bundle manifest, known machine types, env names and values a
// process can be given, numbers within JobSpecLimits, and at most as many
// nodes as every listed type offers.
StatusOr<ValidJobSpec> ValidateJobSpec(const nlohmann::json& spec, const Catalog& catalog);

// The number of nodes `type` offers: its options' "nodes" (Slurm), else 1.
// A value that is not a whole number from 1 to kMaxNodes counts as 1.
int64_t NodesOf(const MachineType& type);

}  // namespace yard
