// The notebook check of `yard fit model.ipynb` (cli/notebook.h) on any
// bytes: ValidateNotebook answers with a Status, never crashes.
#include "cli/notebook.h"
#include "fuzz/fuzz_util.h"

using namespace yard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)cli::ValidateNotebook("fuzz.ipynb", fuzz::AsView(data, size));
  return 0;
}
