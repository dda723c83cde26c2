#include "server/metrics.h"

#include <charconv>

#include "server/controller.h"
#include "store/store.h"

namespace yard {
namespace {

std::string Escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string Number(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);  // shortest exact form
  return std::string(buf, end);
}

// Appends the HELP and TYPE lines of a metric family.
void Family(std::string* out, const char* name, const char* type, const char* help) {
  out->append("# HELP ").append(name).append(" ").append(help).append("\n");
  out->append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void Sample(std::string* out, const char* name, const std::string& labels, double v) {
  out->append(name);
  if (!labels.empty()) out->append("{").append(labels).append("}");
  out->append(" ").append(Number(v)).append("\n");
}

std::string Label(const char* k, const std::string& v) {
  return std::string(k) + "=\"" + Escape(v) + "\"";
}

bool Starts(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

void ServerMetrics::CountRequest(const std::string& route, int status, size_t bytes_in,
                                 size_t bytes_out) {
  MutexLock lock(mu_);
  ++requests_[{route, status}];
  if (status >= 300) return;
  if (Starts(route, "PUT /v1/blobs/(")) blob_bytes_in_ += bytes_in;
  if (Starts(route, "GET /v1/blobs/(")) blob_bytes_out_ += bytes_out;
}

std::string ServerMetrics::Render(const MetricsSnapshot& s) {
  std::string o;
  Family(&o, "yard_jobs", "gauge", "Jobs by state (all users).");
  for (const char* st :
       {"waiting", "requesting", "starting", "running", "succeeded", "failed", "cancelled"}) {
    auto it = s.jobs_by_state.find(st);
    Sample(&o, "yard_jobs", Label("state", st), it == s.jobs_by_state.end() ? 0 : it->second);
  }
  Family(&o, "yard_instances", "gauge", "Live instances by state and provider.");
  for (const auto& [key, n] : s.instances)
    Sample(&o, "yard_instances", Label("state", key.first) + "," + Label("provider", key.second),
           n);
  Family(&o, "yard_queue_length", "gauge", "Requesting jobs not yet on an instance.");
  Sample(&o, "yard_queue_length", "", s.queued);
  Family(&o, "yard_waiting_jobs", "gauge", "Jobs waiting for their user's quota.");
  Sample(&o, "yard_waiting_jobs", "", s.waiting);
  Family(&o, "yard_scheduler_passes_total", "counter", "Scheduling passes run.");
  Sample(&o, "yard_scheduler_passes_total", "", s.passes);
  Family(&o, "yard_scheduler_pass_seconds_total", "counter", "Wall time spent placing jobs.");
  Sample(&o, "yard_scheduler_pass_seconds_total", "", s.pass_seconds);
  Family(&o, "yard_events_stored", "gauge", "Job events held in the store.");
  Sample(&o, "yard_events_stored", "", s.events_stored);
  Family(&o, "yard_event_streams_open", "gauge",
         "Event streams (SSE) being served now; each holds a worker thread.");
  Sample(&o, "yard_event_streams_open", "", open_streams_.load());
  Family(&o, "yard_provider_calls_total", "counter", "Calls into providers by provider and call.");
  for (const auto& [key, v] : s.provider_calls)
    Sample(&o, "yard_provider_calls_total",
           Label("provider", key.first) + "," + Label("call", key.second), v.first);
  Family(&o, "yard_provider_errors_total", "counter", "Provider calls that failed.");
  for (const auto& [key, v] : s.provider_calls)
    Sample(&o, "yard_provider_errors_total",
           Label("provider", key.first) + "," + Label("call", key.second), v.second);
  MutexLock lock(mu_);
  Family(&o, "yard_blob_bytes_received_total", "counter", "Chunk bytes uploaded (PUT /v1/blobs).");
  Sample(&o, "yard_blob_bytes_received_total", "", blob_bytes_in_);
  Family(&o, "yard_blob_bytes_sent_total", "counter", "Chunk bytes downloaded (GET /v1/blobs).");
  Sample(&o, "yard_blob_bytes_sent_total", "", blob_bytes_out_);
  Family(&o, "yard_http_requests_total", "counter", "Requests answered, by route and status.");
  for (const auto& [key, n] : requests_)
    Sample(&o, "yard_http_requests_total",
           Label("route", std::get<0>(key)) + "," + Label("code", std::to_string(std::get<1>(key))),
           n);
  return o;
}

StatusOr<MetricsSnapshot> TakeMetricsSnapshot(Store* store, Controller* controller) {
  MetricsSnapshot s;
  YARD_ASSIGN_OR_RETURN(auto counts, store->CountJobsByState());
  for (const auto& c : counts) {
    s.jobs_by_state[c.state] = c.jobs;
    s.events_stored += c.events;
  }
  YARD_ASSIGN_OR_RETURN(auto instances, store->ListInstances(false));
  for (const auto& i : instances) ++s.instances[{i.state, i.provider}];
  Controller::PassStats p = controller->pass_stats();
  s.queued = p.queued;
  s.waiting = p.waiting;
  s.passes = p.passes;
  s.pass_seconds = p.pass_seconds;
  s.provider_calls = controller->ProviderCalls();
  return s;
}

}  // namespace yard
