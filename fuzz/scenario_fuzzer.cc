// The simulated cloud's scenario reader (providers/sim_scenario.h) on any
// JSON: SimScenario::FromJson answers with a Status, never crashes, and the
// capacity of a scenario it accepts can be asked at any time.
#include "fuzz/fuzz_util.h"
#include "providers/sim_scenario.h"

using namespace yard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j = fuzz::ParseJson(fuzz::AsView(data, size));
  if (j.is_discarded()) return 0;
  StatusOr<SimScenario> s = SimScenario::FromJson(j);
  if (!s.ok()) return 0;
  for (const auto& [name, t] : s->types) {
    for (double at : {-1.0, 0.0, 1.5, 600.0, 1e12}) (void)t.CapacityAt(at);
    for (const auto& [from, n] : t.capacity) (void)t.CapacityAt(from);
  }
  return 0;
}
