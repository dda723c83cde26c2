// What the server reads from an agent (server/agent_batch.h): a batch body,
// framed (first input byte odd) or JSON, then each record as the controller
// checks it. And the frame reader (common/frames.h) that follows event
// streams: fed the same bytes in pieces, it gives the same frames as
// NextFrame on the whole.
#include <vector>

#include "common/frames.h"
#include "fuzz/fuzz_util.h"
#include "server/agent_batch.h"

using namespace yard;

namespace {

void CheckBatch(std::string_view body, bool framed) {
  StatusOr<AgentBatch> b = DecodeAgentBatch(body, framed);
  if (!b.ok()) return;
  for (const AgentRecord& r : b->records) {
    if (r.output) {
      (void)std::string(*r.output);  // the bytes must still be readable
      continue;
    }
    StatusOr<Json> ev = RecordToEvent(r.json, "inst-1");
    if (ev.ok()) (void)ev->dump(-1, ' ', false, Json::error_handler_t::replace);
  }
}

struct Got {
  char tag;
  std::string payload;
  bool operator==(const Got&) const = default;
};

void CheckFrameReader(std::string_view bytes, uint8_t piece) {
  std::vector<Got> whole, pieces;
  std::string_view rest = bytes;
  bool corrupt = false;
  while (auto f = NextFrame(&rest, &corrupt)) whole.push_back({f->tag, std::string(f->payload)});
  FrameReader reader;
  size_t step = piece % 16 + 1;
  for (size_t at = 0; at < bytes.size(); at += step) {
    reader.Feed(bytes.substr(at, step));
    while (auto f = reader.Next()) pieces.push_back({f->tag, std::string(f->payload)});
  }
  if (whole != pieces) fuzz::Fail("FrameReader in pieces disagrees with NextFrame on the whole");
  if (reader.corrupt() != corrupt) fuzz::Fail("FrameReader and NextFrame disagree on corruption");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view body = fuzz::AsView(data + 1, size - 1);
  CheckBatch(body, (data[0] & 1) != 0);
  CheckFrameReader(body, data[0] >> 1);
  return 0;
}
