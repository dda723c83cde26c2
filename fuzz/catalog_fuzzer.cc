// The machine catalog reader (providers/catalog.h) on any JSON, and machine
// ids as users write them: Catalog::FromJson and ParseMachineRequest answer
// with a Status, never crash; a catalog read is written back (ToJson) to one
// that reads the same.
#include "fuzz/fuzz_util.h"
#include "providers/catalog.h"

using namespace yard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in = fuzz::AsView(data, size);
  (void)ParseMachineRequest(std::string(in.substr(0, in.find('\n'))));
  nlohmann::json j = fuzz::ParseJson(in);
  if (j.is_discarded()) return 0;
  StatusOr<Catalog> c = Catalog::FromJson(j);
  if (!c.ok()) return 0;
  Catalog merged = Catalog::BuiltinLocal(2, 0);
  merged.Merge(*c);
  (void)merged.NamesForHelp();
  for (const MachineType& t : c->types()) {
    if (merged.Find(t.name) == nullptr) fuzz::Fail("a merged type cannot be found");
    (void)t.WithSettings(nlohmann::json{{"zone", "b"}});
  }
  StatusOr<Catalog> again = Catalog::FromJson(c->ToJson());
  if (!again.ok())
    fuzz::Fail("ToJson of a catalog FromJson accepted is refused: " + again.status().message());
  if (again->ToJson() != c->ToJson()) fuzz::Fail("catalog changed on a ToJson/FromJson round trip");
  return 0;
}
