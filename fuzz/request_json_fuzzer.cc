// The server's strict reading of request bodies (server/request_json.h) on
// any bytes: ParseStrictObject with the fields of a job submission, then
// the typed getters on each of them, answer with a Status, never crash.
#include "fuzz/fuzz_util.h"
#include "server/request_json.h"

using namespace yard;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  StatusOr<Json> body =
      ParseStrictObject(std::string(fuzz::AsView(data, size)),
                        {"command", "bundle", "machines", "description", "cool_down_s", "env",
                         "wait_request_s", "max_restarts", "nodes", "image", "settings"});
  if (!body.ok()) return 0;
  for (const char* field : {"command", "machines", "description", "cool_down_s", "env", "image",
                            "max_restarts", "nodes"}) {
    (void)GetString(*body, field, true);
    (void)GetString(*body, field, false, "fallback");
    (void)GetNumber(*body, field, 1);
    (void)GetStringList(*body, field, false);
  }
  return 0;
}
