#include "server/dashboard_output.h"

#include <algorithm>

namespace yard {

std::shared_ptr<OutputCache::Entry> OutputCache::Recent(const std::string& job_id) {
  MutexLock lock(mu_);
  std::shared_ptr<Entry> e;
  auto it = std::find_if(recent_.begin(), recent_.end(),
                         [&](const auto& p) { return p->job_id == job_id; });
  if (it != recent_.end()) {
    e = *it;
    recent_.erase(it);
  } else {
    e = std::make_shared<Entry>();
    e->job_id = job_id;
  }
  recent_.push_front(e);
  if (recent_.size() > max_jobs_) recent_.pop_back();
  return e;
}

Status OutputCache::ReadNew(Entry& e) {
  for (;;) {
    YARD_ASSIGN_OR_RETURN(auto batch, store_->ReadEventText(e.job_id, e.seq, 5000));
    if (batch.empty()) return Status::Ok();
    for (const auto& ev : batch) {
      e.seq = ev.seq;
      std::string inline_data;
      if (!ev.output) {  // output bytes are kept apart since schema 3; older ones sit in "data"
        Json j = Json::parse(ev.json, nullptr, false);
        if (j.is_discarded()) continue;
        if (j.value("kind", "") != "output") {
          e.timeline.push_back(std::move(j));
          continue;
        }
        inline_data = j.value("data", "");
      }
      const std::string& data = ev.output ? *ev.output : inline_data;
      for (size_t i = 0; i < data.size(); ++i) {
        e.text.push_back(data[i]);
        if (data[i] == '\n') e.line_starts.push_back(e.text.size());
      }
    }
  }
}

StatusOr<OutputLines> OutputCache::Lines(const std::string& job_id, int64_t from, int64_t count) {
  std::shared_ptr<Entry> e = Recent(job_id);
  MutexLock lock(e->mu);
  YARD_RETURN_IF_ERROR(ReadNew(*e));
  OutputLines out;
  // The last start is the end of the text when the output ends in a newline.
  int64_t n = static_cast<int64_t>(e->line_starts.size());
  if (n > 0 && e->line_starts.back() == e->text.size()) --n;
  out.total = n;
  out.seq = e->seq;
  out.partial = !e->text.empty() && e->text.back() != '\n';
  if (from < 0) from = std::max<int64_t>(0, n + from);
  out.from = std::min(from, n);
  int64_t end = std::min(n, out.from + std::max<int64_t>(0, count));
  for (int64_t i = out.from; i < end; ++i) {
    uint64_t a = e->line_starts[i];
    uint64_t b = i + 1 < static_cast<int64_t>(e->line_starts.size()) ? e->line_starts[i + 1] - 1
                                                                     : e->text.size();
    out.lines.emplace_back(e->text, a, b - a);
  }
  return out;
}

StatusOr<std::pair<Json, int64_t>> OutputCache::Timeline(const std::string& job_id) {
  std::shared_ptr<Entry> e = Recent(job_id);
  MutexLock lock(e->mu);
  YARD_RETURN_IF_ERROR(ReadNew(*e));
  return std::make_pair(e->timeline, e->seq);
}

StatusOr<OutputMatches> OutputCache::Search(const std::string& job_id, const std::string& text,
                                            size_t max) {
  std::shared_ptr<Entry> e = Recent(job_id);
  MutexLock lock(e->mu);
  YARD_RETURN_IF_ERROR(ReadNew(*e));
  OutputMatches out;
  if (text.empty()) return out;
  size_t line = 0;
  for (size_t pos = e->text.find(text); pos != std::string::npos;
       pos = e->text.find(text, pos + 1)) {
    // The line holding pos: the last start <= pos (starts are sorted).
    line = std::upper_bound(e->line_starts.begin() + line, e->line_starts.end(), pos) -
           e->line_starts.begin() - 1;
    if (!out.lines.empty() && out.lines.back() == static_cast<int64_t>(line)) continue;
    if (out.lines.size() == max) {
      out.more = true;
      break;
    }
    out.lines.push_back(static_cast<int64_t>(line));
  }
  return out;
}

StatusOr<std::string> OutputCache::Text(const std::string& job_id) {
  std::shared_ptr<Entry> e = Recent(job_id);
  MutexLock lock(e->mu);
  YARD_RETURN_IF_ERROR(ReadNew(*e));
  return e->text;
}

}  // namespace yard
