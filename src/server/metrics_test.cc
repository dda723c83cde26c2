#include "server/metrics.h"

#include <gtest/gtest.h>

namespace yard {
namespace {

TEST(MetricsTest, RendersEveryFamilyWithLabels) {
  MetricsSnapshot s;
  s.jobs_by_state = {{"running", 2}, {"succeeded", 5}};
  s.instances[{"busy", "local"}] = 2;
  s.events_stored = 42;
  s.provider_calls[{"sim", "launch"}] = {3, 1};
  ServerMetrics m;
  m.CountRequest("PUT /v1/blobs/([0-9a-f]{64})", 200, 1000, 20);
  m.CountRequest("GET /v1/blobs/([0-9a-f]{64})", 200, 0, 500);
  m.CountRequest("GET /v1/blobs/([0-9a-f]{64})", 404, 0, 80);  // not a chunk sent
  m.StreamOpened();
  std::string text = m.Render(s);
  for (const char* line : {"yard_jobs{state=\"running\"} 2\n", "yard_jobs{state=\"waiting\"} 0\n",
                           "yard_instances{state=\"busy\",provider=\"local\"} 2\n",
                           "yard_events_stored 42\n", "yard_event_streams_open 1\n",
                           "yard_provider_calls_total{provider=\"sim\",call=\"launch\"} 3\n",
                           "yard_provider_errors_total{provider=\"sim\",call=\"launch\"} 1\n",
                           "yard_blob_bytes_received_total 1000\n",
                           "yard_blob_bytes_sent_total 500\n", "# TYPE yard_queue_length gauge\n"})
    EXPECT_NE(text.find(line), std::string::npos) << "missing " << line << " in\n" << text;
}

TEST(MetricsTest, EscapesLabelValues) {
  ServerMetrics m;
  m.CountRequest("GET /a\"b\\c", 200, 0, 0);
  EXPECT_NE(m.Render({}).find(R"(route="GET /a\"b\\c")"), std::string::npos);
}

}  // namespace
}  // namespace yard
