// The manifest reader (common/manifest.h) on any JSON: Manifest::FromJson,
// ValidateManifest and FileEntryFromJson must answer with a Status, never
// crash; a manifest read is written back (ToJson) to the same manifest.
#include "common/manifest.h"
#include "fuzz/fuzz_util.h"

using namespace yard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j = fuzz::ParseJson(fuzz::AsView(data, size));
  if (j.is_discarded()) return 0;
  (void)FileEntryFromJson(j);
  StatusOr<Manifest> m = Manifest::FromJson(j);
  if (!m.ok()) return 0;
  (void)ValidateManifest(*m, ManifestLimits{.max_files = 1000, .max_total_bytes = 1 << 20});
  (void)m->TotalBytes();
  (void)m->ChunkHashes();
  StatusOr<Manifest> again = Manifest::FromJson(m->ToJson());
  if (!again.ok())
    fuzz::Fail("ToJson of a manifest FromJson accepted is refused: " + again.status().message());
  if (again->ToJson() != m->ToJson())
    fuzz::Fail("manifest changed on a ToJson/FromJson round trip");
  return 0;
}
