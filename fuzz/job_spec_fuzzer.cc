// The job spec check of POST /v1/jobs (server/job_spec.h) on any bytes:
// ParseJobSpec then ValidateJobSpec against a fixed catalog answer with a
// Status, never crash. A spec it accepts is one the server can use: checked
// again it is accepted unchanged, and the numbers the controller later
// reads from it convert and format without overflow (UBSan watches the
// conversions below, which repeat the controller's).
#include "fuzz/fuzz_util.h"
#include "server/job_events.h"
#include "server/job_spec.h"

using namespace yard;

namespace {

const Catalog& TestCatalog() {
  static const Catalog catalog = [] {
    Catalog c = Catalog::BuiltinLocal(2, 0);
    c.Merge(Catalog::FromJson(nlohmann::json::parse(R"({"version": 1, "types": [
        {"name": "p2.xlarge", "provider": "sim", "cpus": 4, "default_market": "spot"},
        {"name": "slurm-2node", "provider": "slurm", "cpus": 2, "options": {"nodes": 2}}]})"))
                .value());
    return c;
  }();
  return catalog;
}

// What lifecycle.cc, placement.cc and controller.cc read from a stored spec.
void ReadAsTheControllerDoes(const nlohmann::json& spec) {
  int max_restarts = spec.value("max_restarts", 3);
  int nodes = spec.value("nodes", 1);
  if (max_restarts < 0 || nodes < 1)
    fuzz::Fail("an accepted spec has max_restarts < 0 or nodes < 1");
  for (const char* key :
       {"cool_down_s", "wait_request_s", "wait_new_job_s", "wait_new_job_interval_s"})
    (void)FormatSeconds(spec.value(key, 0.0));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  StatusOr<nlohmann::json> spec = ParseJobSpec(std::string(fuzz::AsView(data, size)));
  if (!spec.ok()) return 0;
  StatusOr<ValidJobSpec> valid = ValidateJobSpec(*spec, TestCatalog());
  if (!valid.ok()) return 0;
  ReadAsTheControllerDoes(valid->spec);
  StatusOr<ValidJobSpec> again = ValidateJobSpec(valid->spec, TestCatalog());
  if (!again.ok())
    fuzz::Fail("an accepted spec is refused when checked again: " + again.status().message());
  if (again->spec != valid->spec || again->bundle_chunks != valid->bundle_chunks)
    fuzz::Fail("an accepted spec changed when checked again");
  return 0;
}
