// The agent's event spool reader (agent/event_spool.h) on any file left by
// an earlier agent: a version-2 .spool (first input byte even) or a
// version-1 .jsonl (odd), the rest of the input being the file. Loading
// must not crash; records appended to a loaded stream go after the ones it
// kept; every batch the spool then sends decodes on the server's side
// (server/agent_batch.h) into as many records as the batch says.
#include <fstream>

#include "agent/event_spool.h"
#include "fuzz/fuzz_util.h"
#include "server/agent_batch.h"

using namespace yard;

namespace {

constexpr size_t kMaxBatchBytes = 256;

void WriteFile(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Sends every batch to a decoder that acknowledges all of it.
void Drain(EventSpool& spool) {
  for (int guard = 0; guard < 100000; ++guard) {
    std::optional<SpoolBatch> b = spool.WaitBatch(kMaxBatchBytes, std::chrono::milliseconds(0));
    if (!b) return;
    std::string body = b->RequestBody();
    StatusOr<AgentBatch> got = DecodeAgentBatch(body, b->framed);
    if (!got.ok()) fuzz::Fail("the server refuses a batch of the spool: " + got.status().message());
    if (static_cast<int64_t>(got->records.size()) != b->count || got->first != b->first)
      fuzz::Fail("a decoded batch holds other records than the spool sent");
    spool.Ack(b->job, b->attempt, b->first + b->count - 1);
  }
  fuzz::Fail("the spool never runs out of batches");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string dir = fuzz::ScratchDir();
  bool v1 = (data[0] & 1) != 0;
  WriteFile(dir + "/job-1" + (v1 ? ".jsonl" : ".spool"), fuzz::AsView(data + 1, size - 1));
  StatusOr<std::unique_ptr<EventSpool>> spool = EventSpool::Open(dir);
  if (!spool.ok()) return 0;
  // The job named in the header is unknown here: append to the names a
  // seed corpus uses, which a loaded stream of that job takes.
  (void)(*spool)->AppendOutput("j1", 1, "late line\n");
  (void)(*spool)->Append("j1", 1, Json{{"kind", "exit"}, {"exit_code", 0}});
  Drain(**spool);
  if ((*spool)->Unacked() != 0) fuzz::Fail("records left unacknowledged after draining");
  return 0;
}
