#include "agent/chunk_uploader.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "agent/retry.h"

namespace yard {

namespace {

struct Chunk {
  std::string hash;
  std::string bytes;
};

// One Upload call: the cutting thread feeds chunks the server lacks to up
// to `concurrency` workers through a queue bounded in bytes.
class UploadRun {
 public:
  UploadRun(const HttpClient* http, const StopSignal* stop, const ChunkUploaderOptions& options)
      : http_(http), stop_(stop), options_(options) {}
  ~UploadRun() { (void)Finish(); }  // joins the workers on early returns

  StatusOr<FileEntry> Run(const std::string& path);

 private:
  Status Visit(const ChunkRef& ref, std::string_view bytes);
  Status FlushGroup();
  StatusOr<std::unordered_set<std::string>> AskMissing(const std::vector<Chunk>& group);
  Status Push(Chunk chunk);
  void Work();
  void Fail(const Status& s);
  Status Finish();

  const HttpClient* http_;
  const StopSignal* stop_;
  const ChunkUploaderOptions& options_;
  FileEntry entry_;
  std::vector<Chunk> group_;  // cut, not yet checked with the server
  size_t group_size_ = 0;
  std::unordered_set<std::string> seen_;  // hashes already handled in this file

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Chunk> queue_;  // GUARDED_BY(mu_)
  size_t queued_bytes_ = 0;  // GUARDED_BY(mu_)
  bool closed_ = false;      // GUARDED_BY(mu_)
  Status error_;             // GUARDED_BY(mu_): the first failure
  std::vector<std::thread> workers_;
};

StatusOr<FileEntry> UploadRun::Run(const std::string& path) {
  Status st = ChunkFile(path, options_.chunker,
                        [this](const ChunkRef& ref, std::string_view b) { return Visit(ref, b); });
  if (st.ok()) st = FlushGroup();
  if (!st.ok()) Fail(st);
  YARD_RETURN_IF_ERROR(Finish());
  return std::move(entry_);
}

Status UploadRun::Visit(const ChunkRef& ref, std::string_view bytes) {
  entry_.chunks.push_back(ref);
  entry_.size += ref.size;
  if (!seen_.insert(ref.hash).second) return Status::Ok();
  group_.push_back({ref.hash, std::string(bytes)});
  group_size_ += bytes.size();
  return group_size_ >= options_.group_bytes ? FlushGroup() : Status::Ok();
}

Status UploadRun::FlushGroup() {
  if (group_.empty()) return Status::Ok();
  YARD_ASSIGN_OR_RETURN(auto missing, AskMissing(group_));
  for (Chunk& c : group_) {
    if (missing.count(c.hash)) YARD_RETURN_IF_ERROR(Push(std::move(c)));
  }
  group_.clear();
  group_size_ = 0;
  return Status::Ok();
}

StatusOr<std::unordered_set<std::string>> UploadRun::AskMissing(const std::vector<Chunk>& group) {
  Json hashes = Json::array();
  for (const Chunk& c : group) hashes.push_back(c.hash);
  Json body = {{"hashes", std::move(hashes)}};
  YARD_ASSIGN_OR_RETURN(
      Json reply, RetryUnavailable(*stop_, [&] { return http_->Post("/v1/blobs/missing", body); }));
  if (!reply.contains("missing") || !reply["missing"].is_array()) {
    return Internal("POST /v1/blobs/missing: reply without \"missing\"");
  }
  std::unordered_set<std::string> missing;
  for (const Json& h : reply["missing"]) {
    if (h.is_string()) missing.insert(h.get<std::string>());
  }
  return missing;
}

Status UploadRun::Push(Chunk chunk) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] {
    return !error_.ok() || queue_.empty() ||
           queued_bytes_ + chunk.bytes.size() <= options_.queue_bytes;
  });
  if (!error_.ok()) return error_;
  queued_bytes_ += chunk.bytes.size();
  queue_.push_back(std::move(chunk));
  if (workers_.size() < static_cast<size_t>(options_.concurrency)) {
    workers_.emplace_back([this] { Work(); });
  }
  cv_.notify_all();
  return Status::Ok();
}

void UploadRun::Work() {
  for (;;) {
    Chunk c;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return closed_ || !queue_.empty() || !error_.ok(); });
      if (!error_.ok() || queue_.empty()) return;
      c = std::move(queue_.front());
      queue_.pop_front();
      queued_bytes_ -= c.bytes.size();
      cv_.notify_all();
    }
    Status st = StatusOf(
        RetryUnavailable(*stop_, [&] { return http_->PutBytes("/v1/blobs/" + c.hash, c.bytes); }));
    if (!st.ok()) Fail(st.WithContext("uploading chunk " + c.hash));
  }
}

void UploadRun::Fail(const Status& s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (error_.ok()) error_ = s;
  cv_.notify_all();
}

// Lets the workers drain the queue and end; returns the first failure.
Status UploadRun::Finish() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

}  // namespace

ChunkUploader::ChunkUploader(const HttpClient* http, const StopSignal* stop,
                             ChunkUploaderOptions options)
    : http_(http), stop_(stop), options_(options) {}

StatusOr<FileEntry> ChunkUploader::Upload(const std::string& path) const {
  UploadRun run(http_, stop_, options_);
  return run.Run(path);
}

}  // namespace yard
