// EventSpool: every record a job attempt produces, numbered from 1 and kept
// on disk until the server has acknowledged it, so neither a server restart,
// a network failure nor an agent restart loses output.
//
// One file per attempt, <dir>/<job>-<attempt>.spool (version 2), a sequence
// of record frames (common/frames.h, docs/formats.md):
//   frame 1:   'j' {"attempt":A,"job":"<id>","yard_spool":2}
//   frame k+1: the record with agent sequence number k, exactly as sent:
//              'o' the bytes of an output record, 'j' any other record.
// So a batch is a run of the file's bytes, sent as they are, and output
// bytes are never encoded. Version 1 files (<job>-<attempt>.jsonl: a JSON header line,
// then one JSON record per line) left by an older agent are still loaded
// and sent as JSON.
// Records are written with one append each, without fsync: a crashed agent
// loses nothing, a crashed machine loses its instance anyway.
//
// The contract with the pump: a record is durable (it survives a SIGKILL of
// the agent; the next agent loads it and sends it) once Append* has
// returned its sequence number, and Append* writes it to the file before it
// returns, however it is later sent. The copy kept in memory is only what
// the sender sends from: it is never the sole place of a record. Bytes the
// pump has read from the job but not yet appended, like bytes still in the
// job's pipe, die with the agent (so does the job: it cannot outlive it). A torn last
// record is cut off on reload. A file is deleted once its exit record is
// acknowledged (or, for an abandoned attempt, once everything is).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "client/http_client.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace yard {

// Records of one attempt, ready to send: the body of
// POST /v1/agents/{id}/events is head, the records' pieces, tail.
struct SpoolBatch {
  std::string job;
  int64_t attempt = 0;
  int64_t first = 0;  // sequence number of the first record
  int64_t count = 0;
  bool framed = true;
  // A head frame (framed), or the JSON text up to the records' array
  // (from a version-1 file).
  std::string head;
  // The records, in order, as the spool holds them: frames, or JSON texts
  // separated by commas (version 1). Each piece views memory its `owner`
  // keeps alive (the spool's copy of records it wrote, or what was read
  // back from the file), so a batch is sent without being copied together.
  struct Piece {
    std::shared_ptr<const void> owner;
    std::string_view bytes;
  };
  std::vector<Piece> pieces;
  std::string tail;  // "]}" for version 1, else empty

  // The body's parts, in order (views into this batch).
  std::vector<std::string_view> BodyParts() const;
  // Copies, for tests and logs: the records alone, and the whole body.
  std::string records() const;
  std::string RequestBody() const;
  // The body's Content-Type.
  const char* ContentType() const;
};

// Thread-safe.
class EventSpool {
 public:
  // Each attempt's newest records are kept in memory as well as written,
  // up to this many bytes of frames, so that they are sent without being
  // read back. The file stays the record of what was read from the job:
  // memory is only a copy (see AppendRecords).
  // (The pump's backpressure bound on unacknowledged bytes stays below it,
  // so that records are read back only after a restart or a lowered ack.)
  static constexpr uint64_t kMaxHeldBytes = 36u << 20;

  // Opens `dir` (created if needed) and loads every spool file left there by
  // an earlier agent; those attempts are treated as abandoned (their process
  // died with that agent) and are sent before any newer stream.
  static StatusOr<std::unique_ptr<EventSpool>> Open(const std::string& dir);
  ~EventSpool();
  EventSpool(const EventSpool&) = delete;
  EventSpool& operator=(const EventSpool&) = delete;

  // Writes `record` to the attempt's file (created on first use) and returns
  // its sequence number. FailedPrecondition after the attempt's exit record.
  StatusOr<int64_t> Append(const std::string& job, int64_t attempt, const Json& record);
  // Appends an output record of these bytes, exactly (no encoding).
  StatusOr<int64_t> AppendOutput(const std::string& job, int64_t attempt, std::string_view data);
  // Appends one output record per piece with a single write; returns the
  // last one's sequence number (or the attempt's last if `pieces` is empty).
  StatusOr<int64_t> AppendOutputs(const std::string& job, int64_t attempt,
                                  const std::vector<std::string_view>& pieces);

  // Bytes of the attempt's records not yet acknowledged (0 if none).
  uint64_t UnackedBytes(const std::string& job, int64_t attempt) const;
  // Waits up to `timeout` until UnackedBytes(job, attempt) <= max_bytes;
  // returns whether it is.
  bool WaitUnackedBytesAtMost(const std::string& job, int64_t attempt, uint64_t max_bytes,
                              std::chrono::milliseconds timeout) const;

  // No exit record will follow: delete the stream once all is acknowledged.
  void Abandon(const std::string& job, int64_t attempt);

  // Waits up to `timeout` for records to send: those after the acknowledged
  // ones of the oldest stream that has any and is not deferred, at most
  // `max_bytes` of them but at least one. nullopt on timeout or Wake().
  // Records still held in memory (see kMaxHeldBytes) are sent from there;
  // older ones (after a restart, a lowered ack, or a slow server) are read
  // back from the file.
  std::optional<SpoolBatch> WaitBatch(size_t max_bytes, std::chrono::milliseconds timeout);
  // The server holds records 1..acked of the attempt (it may go down too:
  // the next batch then starts again at acked + 1).
  void Ack(const std::string& job, int64_t attempt, int64_t acked);
  // Keeps the attempt out of WaitBatch for `delay` (after a failed send).
  void Defer(const std::string& job, int64_t attempt, std::chrono::milliseconds delay);
  // The server will never take this attempt's records: deletes its file.
  void Drop(const std::string& job, int64_t attempt);
  // Makes a pending WaitBatch return nullopt now.
  void Wake();

  // Records appended but not yet acknowledged, over all attempts.
  int64_t Unacked() const;
  // Waits up to `timeout` for Unacked() == 0; returns whether it is.
  bool WaitAllAcked(std::chrono::milliseconds timeout) const;
  // Path of the attempt's spool file (whether or not it exists).
  std::string PathFor(const std::string& job, int64_t attempt) const;

 private:
  struct Stream;
  using Clock = std::chrono::steady_clock;
  explicit EventSpool(std::string dir);

  Status LoadAll() REQUIRES(mu_);
  Status Load(const std::string& path) REQUIRES(mu_);
  StatusOr<int64_t> AppendRecords(const std::string& job, int64_t attempt, char tag,
                                  const std::vector<std::string_view>& payloads, bool exit);
  StatusOr<Stream*> StreamFor(const std::string& job, int64_t attempt) REQUIRES(mu_);
  Stream* Find(const std::string& job, int64_t attempt) const REQUIRES(mu_);
  std::optional<SpoolBatch> TakeBatch(size_t max_bytes, Clock::time_point* wake_at) REQUIRES(mu_);
  static Status AddRecordPieces(const Stream& s, uint64_t begin, uint64_t end, SpoolBatch* b);
  // Keeps `block`, the frames of records first..last() just written, in memory.
  void Hold(Stream* s, int64_t first, std::shared_ptr<const std::string> block) REQUIRES(mu_);
  void RemoveIfDone(Stream* s) REQUIRES(mu_);
  void Remove(Stream* s) REQUIRES(mu_);

  const std::string dir_;
  mutable Mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<std::unique_ptr<Stream>> streams_ GUARDED_BY(mu_);  // oldest first
  std::set<std::pair<std::string, int64_t>> finished_ GUARDED_BY(mu_);
  bool wake_ GUARDED_BY(mu_) = false;
};

// A job id or name made safe as a file name (no '/', no leading '.').
std::string SafeFileName(const std::string& name);

}  // namespace yard
