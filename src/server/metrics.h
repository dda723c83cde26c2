// GET /metrics: the server's figures in Prometheus text format (version
// 0.0.4). ServerMetrics counts what only the HTTP layer sees (requests,
// bytes, open streams); the rest is read from the store and the controller
// at scrape time (MetricsSnapshot). docs/operations.md, "Scraping", lists
// every metric.
//
// Thread-safety: ServerMetrics may be used from any thread.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "common/status.h"
#include "common/thread_annotations.h"

namespace yard {

class Store;
class Controller;

// One scrape's figures that come from the store and the controller.
struct MetricsSnapshot {
  std::map<std::string, int64_t> jobs_by_state;
  std::map<std::pair<std::string, std::string>, int64_t> instances;  // (state, provider) -> n
  int64_t events_stored = 0;
  int64_t queued = 0;   // requesting jobs without an instance
  int64_t waiting = 0;  // jobs over their user's quota
  uint64_t passes = 0;
  double pass_seconds = 0;
  // (provider, call) -> (calls, errors)
  std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>> provider_calls;
};

class ServerMetrics {
 public:
  // One request of route `route` ("GET /v1/jobs") answered with `status`.
  // Blob routes' bodies count as blob bytes in and out.
  void CountRequest(const std::string& route, int status, size_t bytes_in, size_t bytes_out);
  // Bytes a streamed response (event stream) wrote.
  void StreamOpened() { ++open_streams_; }
  void StreamClosed() { --open_streams_; }
  int64_t open_streams() const { return open_streams_; }

  // The whole exposition text for `snap` plus this object's counters.
  std::string Render(const MetricsSnapshot& snap);

 private:
  Mutex mu_;
  std::map<std::tuple<std::string, int>, uint64_t> requests_ GUARDED_BY(mu_);
  uint64_t blob_bytes_in_ GUARDED_BY(mu_) = 0;
  uint64_t blob_bytes_out_ GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> open_streams_{0};
};

// Gathers the store's and the controller's figures.
StatusOr<MetricsSnapshot> TakeMetricsSnapshot(Store* store, Controller* controller);

}  // namespace yard
