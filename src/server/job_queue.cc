#include "server/job_queue.h"

namespace yard {

void JobQueue::PushBack(const std::string& job, const std::string& key) {
  Push(job, key, next_back_++);
}

void JobQueue::PushFront(const std::string& job, const std::string& key) {
  Push(job, key, next_front_--);
}

void JobQueue::Push(const std::string& job, const std::string& key, Order order) {
  Entry& e = entries_[job];
  Leave(job, e);  // a new place, should it have had one
  e.order = order;
  Join(job, e, key);
}

void JobQueue::SetGroup(const std::string& job, const std::string& key) {
  Entry& e = entries_.at(job);
  if (e.group == key) return;
  Leave(job, e);
  Join(job, e, key);
}

void JobQueue::Park(const std::string& job) {
  auto it = entries_.find(job);
  if (it != entries_.end()) Leave(job, it->second);
}

void JobQueue::Remove(const std::string& job) {
  auto it = entries_.find(job);
  if (it == entries_.end()) return;
  Leave(job, it->second);
  entries_.erase(it);
}

const std::string& JobQueue::GroupOf(const std::string& job) const {
  static const std::string kNone;
  auto it = entries_.find(job);
  return it == entries_.end() ? kNone : it->second.group;
}

const std::string* JobQueue::Head(const std::string& key) const {
  auto it = groups_.find(key);
  return it == groups_.end() ? nullptr : &it->second.jobs.begin()->second;
}

std::optional<JobQueue::Order> JobQueue::HeadOrder(const std::string& key) const {
  auto it = groups_.find(key);
  if (it == groups_.end()) return std::nullopt;
  return it->second.jobs.begin()->first;
}

double JobQueue::quota_blocked_at(const std::string& key) const {
  auto it = groups_.find(key);
  return it == groups_.end() ? Group().quota_blocked_at : it->second.quota_blocked_at;
}

void JobQueue::set_quota_blocked_at(const std::string& key, double t) {
  auto it = groups_.find(key);
  if (it != groups_.end()) it->second.quota_blocked_at = t;
}

// Keeps group_order_ in step: a group is listed under its head's place.
void JobQueue::Join(const std::string& job, Entry& e, const std::string& key) {
  e.group = key;
  if (key.empty()) return;
  Group& g = groups_[key];
  if (!g.jobs.empty()) {
    if (g.jobs.begin()->first < e.order) {
      g.jobs.insert({e.order, job});
      return;
    }
    group_order_.erase({g.jobs.begin()->first, key});
  }
  g.jobs.insert({e.order, job});
  group_order_.insert({e.order, key});
}

void JobQueue::Leave(const std::string& job, Entry& e) {
  if (e.group.empty()) return;
  auto it = groups_.find(e.group);
  Group& g = it->second;
  bool was_head = g.jobs.begin()->first == e.order;
  g.jobs.erase({e.order, job});
  if (was_head) {
    group_order_.erase({e.order, e.group});
    if (!g.jobs.empty()) group_order_.insert({g.jobs.begin()->first, e.group});
  }
  if (g.jobs.empty()) groups_.erase(it);
  e.group.clear();
}

}  // namespace yard
