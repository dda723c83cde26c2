// JobQueue: the requesting jobs that wait for an instance, in queue order,
// grouped by placement key.
//
// Jobs with the same key (user, machine ids, settings, fallback step) have the same
// chance of being placed: once the first of a group finds no instance, the
// ones behind it would find none either. The scheduler therefore walks
// groups, not jobs (Controller::PlaceQueuedJobs): a pass costs
// O(groups + placements) instead of O(queue).
//
// A job keeps its place (an order number) for as long as it is queued, also
// while parked: a job whose new instance is provisioning is out of its group
// (there is nothing to place) but goes back to the same place if that
// instance is lost.
//
// Not thread-safe: the Controller guards it with its mutex.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

namespace yard {

class JobQueue {
 public:
  using Order = int64_t;
  // (head's place, group key) of every non-empty group, first place first.
  using GroupOrder = std::set<std::pair<Order, std::string>>;

  // Queues `job` in group `key` behind every queued job (PushBack) or before
  // all of them (PushFront: a requeued job was placed before anything queued
  // now). A job already queued gets the new place.
  void PushBack(const std::string& job, const std::string& key);
  void PushFront(const std::string& job, const std::string& key);
  // Moves a queued job, parked or not, into group `key`, keeping its place.
  // REQUIRES: Contains(job).
  void SetGroup(const std::string& job, const std::string& key);
  // Takes a queued job out of its group, keeping its place.
  void Park(const std::string& job);
  // Forgets `job` (assigned, failed, cancelled). No-op when absent.
  void Remove(const std::string& job);

  bool Contains(const std::string& job) const { return entries_.count(job) > 0; }
  // The group `job` is in; "" when parked or not queued.
  const std::string& GroupOf(const std::string& job) const;
  // The first job of group `key`; nullptr when the group is empty.
  const std::string* Head(const std::string& key) const;
  // The place of group `key`'s first job; nullopt when the group is empty.
  std::optional<Order> HeadOrder(const std::string& key) const;
  const GroupOrder& groups() const { return group_order_; }
  size_t size() const { return entries_.size(); }  // parked included
  size_t group_count() const { return groups_.size(); }

  // The last time the group found its user at the instance quota (its
  // fallback clocks stand still until then); -inf when never. Forgotten with
  // the group when it empties.
  double quota_blocked_at(const std::string& key) const;
  void set_quota_blocked_at(const std::string& key, double t);

 private:
  struct Entry {
    Order order = 0;
    std::string group;  // "" while parked
  };
  struct Group {
    std::set<std::pair<Order, std::string>> jobs;
    double quota_blocked_at = -std::numeric_limits<double>::infinity();
  };
  void Push(const std::string& job, const std::string& key, Order order);
  void Join(const std::string& job, Entry& e, const std::string& key);
  void Leave(const std::string& job, Entry& e);

  std::map<std::string, Entry> entries_;  // every queued job
  std::map<std::string, Group> groups_;   // non-empty groups only
  GroupOrder group_order_;
  Order next_back_ = 0;
  Order next_front_ = -1;
};

}  // namespace yard
