#include "agent/event_spool.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <filesystem>
#include <functional>

#include "agent/agent_log.h"
#include "common/files.h"
#include "common/frames.h"

namespace yard {

namespace fs = std::filesystem;

struct EventSpool::Stream {
  std::string job;
  int64_t attempt = 0;
  std::string path;
  int fd = -1;
  // ends[k] is the file offset just past the line of record k; ends[0] is
  // just past the header. Kept whole so that a server that lost records it
  // had acknowledged can still be given them again.
  std::vector<uint64_t> ends;
  int64_t acked = 0;
  int64_t exit_seq = 0;  // 0: no exit record yet
  bool abandoned = false;
  bool framed = true;  // version 2; false: a version-1 file (JSON lines)
  Clock::time_point not_before{};
  // The newest records' bytes exactly as written to the file, one block per
  // append, oldest first: they cover the file from held_from() to its end
  // (a suffix of it, so nothing between is missing). Dropped from the front
  // once acknowledged or beyond kMaxHeldBytes. Only for framed files.
  struct Block {
    int64_t first = 0;  // sequence number of its first record
    int64_t count = 0;
    std::shared_ptr<const std::string> bytes;
  };
  std::deque<Block> held;
  uint64_t held_bytes = 0;

  uint64_t held_from() const { return held.empty() ? ends.back() : ends[held.front().first - 1]; }
  void DropHeldFront() {
    held_bytes -= held.front().bytes->size();
    held.pop_front();
  }

  int64_t last() const { return static_cast<int64_t>(ends.size()) - 1; }
  bool pending() const { return acked < last(); }
};

namespace {

// `dir` is the spool's folder, named when its disk is full.
Status WriteAll(int fd, std::string_view data, const std::string& dir) {
  return WriteVectorAll(fd, {{const_cast<char*>(data.data()), data.size()}}, std::nullopt,
                        "writing the event spool", dir);
}

// Calls `fn(line, end_offset)` for each complete line of the file until it
// returns false; returns the offset just past the last line it accepted.
StatusOr<uint64_t> ScanLines(int fd, const std::function<bool(std::string_view, uint64_t)>& fn) {
  std::string buf, block(1 << 20, '\0');
  uint64_t buf_start = 0, good_end = 0;
  for (;;) {
    ssize_t n = ::read(fd, block.data(), block.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("reading the event spool");
    if (n == 0) return good_end;
    buf.append(block.data(), static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      if (!fn(std::string_view(buf).substr(start, nl - start), buf_start + nl + 1)) return good_end;
      good_end = buf_start + nl + 1;
    }
    buf.erase(0, start);
    buf_start += start;
  }
}

// Calls `fn(tag, payload, end_offset)` for each whole frame of the file
// until it returns false; returns the offset just past the last it accepted.
StatusOr<uint64_t> ScanFrames(int fd,
                              const std::function<bool(char, std::string_view, uint64_t)>& fn) {
  std::string buf, block(1 << 20, '\0');
  uint64_t buf_start = 0, good_end = 0;
  for (;;) {
    ssize_t n = ::read(fd, block.data(), block.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("reading the event spool");
    if (n == 0) return good_end;
    buf.append(block.data(), static_cast<size_t>(n));
    std::string_view rest(buf);
    bool corrupt = false;
    while (std::optional<Frame> f = NextFrame(&rest, &corrupt)) {
      uint64_t end = buf_start + (buf.size() - rest.size());
      if (!fn(f->tag, f->payload, end)) return good_end;
      good_end = end;
    }
    if (corrupt) return good_end;
    size_t used = buf.size() - rest.size();
    buf.erase(0, used);
    buf_start += used;
  }
}

bool IsExitRecord(const Json& record) {
  return record.is_object() && record.contains("kind") && record["kind"] == "exit";
}

std::string DumpLine(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace

const char* SpoolBatch::ContentType() const {
  return framed ? kFramesContentType : "application/json";
}

std::vector<std::string_view> SpoolBatch::BodyParts() const {
  std::vector<std::string_view> parts;
  parts.reserve(pieces.size() + 2);
  parts.push_back(head);
  for (const Piece& p : pieces) parts.push_back(p.bytes);
  if (!tail.empty()) parts.push_back(tail);
  return parts;
}

std::string SpoolBatch::records() const {
  std::string out;
  for (const Piece& p : pieces) out += p.bytes;
  return out;
}

std::string SpoolBatch::RequestBody() const { return head + records() + tail; }

std::string SafeFileName(const std::string& name) {
  std::string out;
  for (char c : name)
    out.push_back(
        std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ? c : '_');
  if (out.empty() || out[0] == '.') out.insert(0, "_");
  return out;
}

EventSpool::EventSpool(std::string dir) : dir_(std::move(dir)) {}

EventSpool::~EventSpool() {
  for (auto& s : streams_) ::close(s->fd);
}

StatusOr<std::unique_ptr<EventSpool>> EventSpool::Open(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Internal("creating spool folder " + dir + ": " + ec.message());
  std::unique_ptr<EventSpool> spool(new EventSpool(dir));
  MutexLock lock(spool->mu_);  // no other thread has it yet: taken for the analysis
  YARD_RETURN_IF_ERROR(spool->LoadAll());
  return spool;
}

Status EventSpool::LoadAll() {
  std::vector<std::pair<fs::file_time_type, std::string>> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    if (e.path().extension() == ".spool" || e.path().extension() == ".jsonl")
      files.emplace_back(e.last_write_time(ec), e.path());
  }
  if (ec) return Internal("listing spool folder " + dir_ + ": " + ec.message());
  std::sort(files.begin(), files.end());  // oldest first: they are sent first
  for (const auto& f : files) YARD_RETURN_IF_ERROR(Load(f.second));
  return Status::Ok();
}

Status EventSpool::Load(const std::string& path) {
  auto s = std::make_unique<Stream>();
  s->path = path;
  s->fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
  if (s->fd < 0) return ErrnoStatus("opening " + path);
  s->framed = fs::path(path).extension() == ".spool";
  // Takes one record (or, first, the header) of either version.
  auto take = [&](std::string_view json, uint64_t end) {
    // nlohmann::json stops at a NUL as at the end: "{...}\0garbage" would be
    // taken here, then refused by the server inside a batch, for ever.
    if (json.find('\0') != std::string_view::npos) return false;
    Json j = Json::parse(json, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return false;
    if (s->ends.empty()) {
      if (j["yard_spool"] != (s->framed ? 2 : 1) || !j["job"].is_string() ||
          !j["attempt"].is_number_integer())
        return false;
      s->job = j["job"];
      s->attempt = j["attempt"];
    } else if (IsExitRecord(j)) {
      s->exit_seq = static_cast<int64_t>(s->ends.size());
    }
    s->ends.push_back(end);
    return true;
  };
  auto end = s->framed ? ScanFrames(s->fd,
                                    [&](char tag, std::string_view payload, uint64_t at) {
                                      if (tag == frame_tag::kOutput && !s->ends.empty()) {
                                        s->ends.push_back(at);
                                        return true;
                                      }
                                      return tag == frame_tag::kJson && take(payload, at);
                                    })
                       : ScanLines(s->fd, take);
  if (!end.ok()) {
    ::close(s->fd);
    return end.status();
  }
  if (s->ends.empty()) {
    struct stat st;
    // An empty file is a crash between creating the file and writing its
    // header: nothing was lost. Anything else is left for a human.
    if (::fstat(s->fd, &st) == 0 && st.st_size == 0) {
      ::unlink(path.c_str());
    } else {
      AgentLog("ignoring " + path + ": not an event spool of version 1 or 2");
    }
    ::close(s->fd);
    return Status::Ok();
  }
  if (::ftruncate(s->fd, static_cast<off_t>(*end)) != 0) AgentLog("cannot cut torn " + path);
  s->abandoned = true;  // its job died with the agent that wrote it
  streams_.push_back(std::move(s));
  return Status::Ok();
}

std::string EventSpool::PathFor(const std::string& job, int64_t attempt) const {
  return dir_ + "/" + SafeFileName(job) + "-" + std::to_string(attempt) + ".spool";
}

EventSpool::Stream* EventSpool::Find(const std::string& job, int64_t attempt) const {
  for (const auto& s : streams_) {
    if (s->job == job && s->attempt == attempt) return s.get();
  }
  return nullptr;
}

StatusOr<EventSpool::Stream*> EventSpool::StreamFor(const std::string& job, int64_t attempt) {
  if (Stream* s = Find(job, attempt)) return s;
  if (finished_.count({job, attempt})) {
    return FailedPrecondition("job " + job + " attempt " + std::to_string(attempt) +
                              " already ended");
  }
  auto s = std::make_unique<Stream>();
  s->job = job;
  s->attempt = attempt;
  s->path = PathFor(job, attempt);
  s->fd = ::open(s->path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (s->fd < 0) return ErrnoStatus("creating " + s->path, dir_);
  std::string header;
  AppendFrame(frame_tag::kJson,
              Json{{"yard_spool", 2}, {"job", job}, {"attempt", attempt}}.dump(
                  -1, ' ', false, Json::error_handler_t::replace),
              &header);
  Status st = WriteAll(s->fd, header, dir_);
  if (!st.ok()) {
    ::close(s->fd);
    return st;
  }
  s->ends.push_back(header.size());
  streams_.push_back(std::move(s));
  return streams_.back().get();
}

StatusOr<int64_t> EventSpool::Append(const std::string& job, int64_t attempt, const Json& record) {
  std::string text = record.dump(-1, ' ', false, Json::error_handler_t::replace);
  return AppendRecords(job, attempt, frame_tag::kJson, {text}, IsExitRecord(record));
}

StatusOr<int64_t> EventSpool::AppendOutput(const std::string& job, int64_t attempt,
                                           std::string_view data) {
  return AppendRecords(job, attempt, frame_tag::kOutput, {data}, /*exit=*/false);
}

StatusOr<int64_t> EventSpool::AppendOutputs(const std::string& job, int64_t attempt,
                                            const std::vector<std::string_view>& pieces) {
  return AppendRecords(job, attempt, frame_tag::kOutput, pieces, /*exit=*/false);
}

StatusOr<int64_t> EventSpool::AppendRecords(const std::string& job, int64_t attempt, char tag,
                                            const std::vector<std::string_view>& payloads,
                                            bool exit) {
  MutexLock lock(mu_);
  YARD_ASSIGN_OR_RETURN(Stream * s, StreamFor(job, attempt));
  if (s->exit_seq > 0) return FailedPrecondition("record after the exit record of job " + job);
  // One buffer for all, written with one call and kept as the records'
  // copy in memory: frame headers and payloads, or JSON lines for a
  // version-1 leftover.
  size_t total = 0;
  for (std::string_view p : payloads) total += p.size() + 16;
  auto block = std::make_shared<std::string>();
  block->reserve(total);
  std::vector<uint64_t> sizes;
  sizes.reserve(payloads.size());
  for (std::string_view payload : payloads) {
    size_t before = block->size();
    if (s->framed) {
      AppendFrameHeader(tag, payload.size(), block.get());
      block->append(payload);
    } else {
      block->append(tag == frame_tag::kOutput
                        ? DumpLine({{"kind", "output"}, {"data", std::string(payload)}})
                        : std::string(payload) + "\n");
    }
    sizes.push_back(block->size() - before);
  }
  Status st = WriteAll(s->fd, *block, dir_);
  if (!st.ok()) {
    // Keep the file a whole number of records.
    if (::ftruncate(s->fd, static_cast<off_t>(s->ends.back())) != 0) AgentLog("spool torn");
    return st;
  }
  // Only now, written, do the records count (see the contract in the header).
  int64_t first = s->last() + 1;
  for (uint64_t n : sizes) s->ends.push_back(s->ends.back() + n);
  if (s->framed && !payloads.empty()) Hold(s, first, std::move(block));
  if (exit) s->exit_seq = s->last();
  s->abandoned = false;
  cv_.notify_all();
  return s->last();
}

void EventSpool::Hold(Stream* s, int64_t first, std::shared_ptr<const std::string> block) {
  s->held_bytes += block->size();
  s->held.push_back({first, s->last() - first + 1, std::move(block)});
  while (s->held_bytes > kMaxHeldBytes) s->DropHeldFront();
}

uint64_t EventSpool::UnackedBytes(const std::string& job, int64_t attempt) const {
  MutexLock lock(mu_);
  Stream* s = Find(job, attempt);
  return s == nullptr ? 0 : s->ends.back() - s->ends[s->acked];
}

bool EventSpool::WaitUnackedBytesAtMost(const std::string& job, int64_t attempt, uint64_t max_bytes,
                                        std::chrono::milliseconds timeout) const {
  MutexLock lock(mu_);
  return cv_.wait_for(lock.unique(), timeout, [&]() REQUIRES(mu_) {
    Stream* s = Find(job, attempt);
    return s == nullptr || s->ends.back() - s->ends[s->acked] <= max_bytes;
  });
}

void EventSpool::Abandon(const std::string& job, int64_t attempt) {
  MutexLock lock(mu_);
  Stream* s = Find(job, attempt);
  if (s == nullptr) return;
  s->abandoned = true;
  RemoveIfDone(s);
}

std::optional<SpoolBatch> EventSpool::TakeBatch(size_t max_bytes, Clock::time_point* wake_at) {
  Clock::time_point now = Clock::now();
  for (const auto& s : streams_) {
    if (!s->pending()) continue;
    if (s->not_before > now) {
      *wake_at = std::min(*wake_at, s->not_before);
      continue;
    }
    SpoolBatch b;
    b.job = s->job;
    b.attempt = s->attempt;
    b.first = s->acked + 1;
    b.count = 1;
    b.framed = s->framed;
    uint64_t begin = s->ends[s->acked];
    while (b.first + b.count <= s->last() && s->ends[b.first + b.count] - begin <= max_bytes) {
      ++b.count;
    }
    Json head = {{"job", b.job}, {"attempt", b.attempt}, {"first", b.first}};
    std::string text = head.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (b.framed) {
      AppendFrame(frame_tag::kJson, text, &b.head);
    } else {
      text.pop_back();  // the closing '}'
      b.head = text + ",\"records\":[";
      b.tail = "]}";
    }
    Status st = AddRecordPieces(*s, begin, s->ends[b.first + b.count - 1], &b);
    if (!st.ok()) {
      AgentLog(st.ToString());
      s->not_before = now + std::chrono::seconds(1);
      continue;
    }
    return b;
  }
  return std::nullopt;
}

Status EventSpool::AddRecordPieces(const Stream& s, uint64_t begin, uint64_t end, SpoolBatch* b) {
  // What is not held in memory any more is read back from the file.
  uint64_t held_from = s.held_from();
  if (begin < held_from) {
    size_t size = std::min(end, held_from) - begin;
    std::shared_ptr<char[]> read = std::make_shared_for_overwrite<char[]>(size);
    YARD_ASSIGN_OR_RETURN(size_t got,
                          ReadAt(s.fd, read.get(), size, begin, "reading the event spool"));
    if (got < size) return Internal("event spool " + s.path + " is shorter than its index");
    std::string_view bytes(read.get(), size);
    if (!s.framed) {  // JSON lines: the array's elements are separated by commas
      std::replace(read.get(), read.get() + size, '\n', ',');
      bytes.remove_suffix(1);
    }
    b->pieces.push_back({std::move(read), bytes});
    begin += size;
  }
  for (const Stream::Block& block : s.held) {
    if (begin >= end) break;
    uint64_t from = s.ends[block.first - 1], to = from + block.bytes->size();
    if (to <= begin) continue;
    std::string_view bytes =
        std::string_view(*block.bytes).substr(begin - from, std::min(end, to) - begin);
    b->pieces.push_back({block.bytes, bytes});
    begin += bytes.size();
  }
  return Status::Ok();
}

std::optional<SpoolBatch> EventSpool::WaitBatch(size_t max_bytes,
                                                std::chrono::milliseconds timeout) {
  MutexLock lock(mu_);
  Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    if (wake_) {
      wake_ = false;
      return std::nullopt;
    }
    Clock::time_point wake_at = deadline;
    if (auto b = TakeBatch(max_bytes, &wake_at)) return b;
    if (Clock::now() >= deadline) return std::nullopt;
    cv_.wait_until(lock.unique(), wake_at);
  }
}

void EventSpool::Ack(const std::string& job, int64_t attempt, int64_t acked) {
  MutexLock lock(mu_);
  Stream* s = Find(job, attempt);
  if (s == nullptr) return;
  s->acked = std::clamp<int64_t>(acked, 0, s->last());
  s->not_before = {};
  // Held records the server holds are not needed from memory again (after
  // a lowered ack they are read back from the file).
  while (!s->held.empty() && s->held.front().first + s->held.front().count - 1 <= s->acked)
    s->DropHeldFront();
  RemoveIfDone(s);
  cv_.notify_all();
}

void EventSpool::Defer(const std::string& job, int64_t attempt, std::chrono::milliseconds delay) {
  MutexLock lock(mu_);
  if (Stream* s = Find(job, attempt)) s->not_before = Clock::now() + delay;
}

void EventSpool::Drop(const std::string& job, int64_t attempt) {
  MutexLock lock(mu_);
  if (Stream* s = Find(job, attempt)) Remove(s);
  cv_.notify_all();
}

void EventSpool::Wake() {
  MutexLock lock(mu_);
  wake_ = true;
  cv_.notify_all();
}

void EventSpool::RemoveIfDone(Stream* s) {
  if (s->pending()) return;
  if (s->exit_seq > 0 || s->abandoned) Remove(s);
}

void EventSpool::Remove(Stream* s) {
  ::close(s->fd);
  ::unlink(s->path.c_str());
  finished_.insert({s->job, s->attempt});
  std::erase_if(streams_, [s](const auto& p) { return p.get() == s; });
}

int64_t EventSpool::Unacked() const {
  MutexLock lock(mu_);
  int64_t n = 0;
  for (const auto& s : streams_) n += s->last() - s->acked;
  return n;
}

bool EventSpool::WaitAllAcked(std::chrono::milliseconds timeout) const {
  MutexLock lock(mu_);
  return cv_.wait_for(lock.unique(), timeout, [this]() REQUIRES(mu_) {
    for (const auto& s : streams_)
      if (s->pending()) return false;
    return true;
  });
}

}  // namespace yard
