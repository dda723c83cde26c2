// The .npy reader of the built-in trainer (trainer/npy.h) on any bytes:
// ParseNpy answers with a Status, never crashes; an array it accepts holds
// exactly shape's product * item size bytes and survives EncodeNpy.
#include "fuzz/fuzz_util.h"
#include "trainer/npy.h"

using namespace yard;
using namespace yard::trainer;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  StatusOr<NpyArray> a = ParseNpy(fuzz::AsView(data, size), "fuzz.npy");
  if (!a.ok()) return 0;
  if (a->shape.empty()) fuzz::Fail("an accepted array has no dimension");
  if (a->data.size() != static_cast<size_t>(a->elements()) * NpyItemSize(a->dtype))
    fuzz::Fail("an accepted array's data does not match its shape");
  StatusOr<NpyArray> b = ParseNpy(EncodeNpy(*a), "again.npy");
  if (!b.ok()) fuzz::Fail("EncodeNpy of an accepted array is refused: " + b.status().message());
  if (b->shape != a->shape || b->dtype != a->dtype || b->data != a->data)
    fuzz::Fail("array changed on an EncodeNpy/ParseNpy round trip");
  return 0;
}
