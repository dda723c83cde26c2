// Test helpers for the agent: a temporary folder, waiting with a deadline,
// and a fake Trainyard server (httplib on 127.0.0.1, port 0) that
// implements the agent and blob routes in memory. Header-only; used by the
// *_test.cc files of src/agent only.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "client/http_client.h"
#include "common/frames.h"
#include "common/hashing.h"
#include "common/status.h"
#include "common/temp_dir_testing.h"
#include "common/wait_testing.h"

namespace yard::agent_testing {

using namespace std::chrono_literals;

// Polls `condition` every 5 ms until it holds or `timeout` passes.
using test_support::TempDir;
using test_support::WaitFor;

// What one POST /events request looked like.
struct EventsCall {
  std::string job;
  int64_t attempt = 0;
  int64_t first = 0;
  size_t count = 0;
  int http_status = 0;
};

// The server's memory; it outlives a FakeServer so that a restarted server
// (on a new port) still knows everything. Lock `mu` to read or change it.
struct FakeState {
  std::mutex mu;
  std::condition_variable cv;
  std::string token = "agent-token";
  std::deque<Json> work;  // replies for the next work polls
  // "work" for the answers to the next /events?work=1 calls that hold an
  // exit record (the next assignment with the exit's answer, docs/api.md).
  std::deque<Json> work_with_exit;
  int events_asking_work = 0;  // /events calls with work=1
  std::map<std::string, std::string> blobs;
  std::map<std::pair<std::string, int64_t>, std::vector<Json>> events;  // stored records
  std::vector<EventsCall> events_calls;
  int registers = 0, heartbeats = 0, blob_gets = 0, blob_puts = 0, polls = 0;
  int refuse_events = 0;               // the next N /events calls: 503, nothing stored
  int lose_event_replies = 0;          // the next N /events calls: stored, then 503
  int refuse_registers = 0;            // the next N registers: 503
  std::set<std::string> unknown_jobs;  // /events for these: 404
  std::map<std::string, std::chrono::steady_clock::time_point> output_seen;  // data -> arrival
  // POST /preempted bodies, each with "records_held": how many records of
  // every attempt the server held when it came.
  std::vector<Json> preempted;

  void Push(Json reply) {
    std::lock_guard<std::mutex> lock(mu);
    work.push_back(std::move(reply));
    cv.notify_all();
  }
  int Polls() {
    std::lock_guard<std::mutex> lock(mu);
    return polls;
  }
  std::vector<Json> Records(const std::string& job, int64_t attempt = 1) {
    std::lock_guard<std::mutex> lock(mu);
    return events[{job, attempt}];
  }
  // The attempt's exit record, or null.
  Json Exit(const std::string& job, int64_t attempt = 1) {
    for (const Json& r : Records(job, attempt)) {
      if (r["kind"] == "exit") return r;
    }
    return Json();
  }
  std::string Output(const std::string& job, int64_t attempt = 1) {
    std::string out;
    for (const Json& r : Records(job, attempt)) {
      if (r["kind"] == "output") out += r["data"].get<std::string>();
    }
    return out;
  }
};

inline void Reply(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

inline void ReplyError(httplib::Response& res, int status, const std::string& code,
                       const std::string& message, Json extra = Json::object()) {
  extra["error"] = {{"code", code}, {"message", message}};
  Reply(res, status, extra);
}

class FakeServer {
 public:
  explicit FakeServer(std::shared_ptr<FakeState> state) : state_(std::move(state)) {
    Routes();
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    // Stop() before the accept loop runs would leave it running for good.
    EXPECT_TRUE(WaitFor([this] { return svr_.is_running(); }, 5s));
  }
  ~FakeServer() { Stop(); }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      stopping_ = true;
      state_->cv.notify_all();
    }
    svr_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  bool Authorized(const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value("Authorization") == "Bearer " + state_->token) return true;
    ReplyError(res, 401, "unauthenticated", "bad token");
    return false;
  }

  void Routes() {
    svr_.Post("/v1/agents/register", [this](const auto& req, auto& res) { Register(req, res); });
    svr_.Post(R"(/v1/agents/([^/]+)/heartbeat)", [this](const auto& req, auto& res) {
      if (!Authorized(req, res)) return;
      std::lock_guard<std::mutex> lock(state_->mu);
      ++state_->heartbeats;
      Reply(res, 200, {{"ok", true}});
    });
    svr_.Get(R"(/v1/agents/([^/]+)/work)", [this](const auto& req, auto& res) { Work(req, res); });
    svr_.Post(R"(/v1/agents/([^/]+)/events)",
              [this](const auto& req, auto& res) { Events(req, res); });
    svr_.Post(R"(/v1/agents/([^/]+)/preempted)", [this](const auto& req, auto& res) {
      if (!Authorized(req, res)) return;
      Json body = Json::parse(req.body);
      std::lock_guard<std::mutex> lock(state_->mu);
      size_t held = 0;
      for (const auto& [key, records] : state_->events) held += records.size();
      body["records_held"] = held;
      state_->preempted.push_back(body);
      Reply(res, 200, {{"ok", true}});
    });
    svr_.Post("/v1/blobs/missing", [this](const auto& req, auto& res) { Missing(req, res); });
    svr_.Put(R"(/v1/blobs/([0-9a-f]+))", [this](const auto& req, auto& res) { PutBlob(req, res); });
    svr_.Get(R"(/v1/blobs/([0-9a-f]+))", [this](const auto& req, auto& res) { GetBlob(req, res); });
  }

  void Register(const httplib::Request& req, httplib::Response& res) {
    if (!Authorized(req, res)) return;
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->refuse_registers > 0) {
      --state_->refuse_registers;
      return ReplyError(res, 503, "unavailable", "starting");
    }
    ++state_->registers;
    Json body = Json::parse(req.body);
    Reply(res, 200, {{"instance", {{"id", body["instance"]}}}, {"heartbeat_s", 1}});
  }

  void Work(const httplib::Request& req, httplib::Response& res) {
    if (!Authorized(req, res)) return;
    int wait = req.has_param("wait") ? std::stoi(req.get_param_value("wait")) : 0;
    std::unique_lock<std::mutex> lock(state_->mu);
    ++state_->polls;
    state_->cv.wait_for(lock, std::chrono::seconds(wait),
                        [this] { return stopping_ || !state_->work.empty(); });
    if (state_->work.empty()) return Reply(res, 200, Json::object());
    Reply(res, 200, state_->work.front());
    state_->work.pop_front();
  }

  // The body of an /events call in its JSON form, whether sent framed or
  // as JSON (output records' data as the bytes sent).
  static Json BatchJson(const httplib::Request& req) {
    if (req.get_header_value("Content-Type") != kFramesContentType) return Json::parse(req.body);
    std::string_view rest = req.body;
    bool corrupt = false;
    std::optional<Frame> head = NextFrame(&rest, &corrupt);
    Json body = Json::parse(head->payload);
    body["records"] = Json::array();
    while (std::optional<Frame> f = NextFrame(&rest, &corrupt)) {
      body["records"].push_back(f->tag == frame_tag::kOutput
                                    ? Json{{"kind", "output"}, {"data", std::string(f->payload)}}
                                    : Json::parse(f->payload));
    }
    EXPECT_TRUE(rest.empty() && !corrupt) << "a framed /events body cut short";
    return body;
  }

  void Events(const httplib::Request& req, httplib::Response& res) {
    if (!Authorized(req, res)) return;
    Json body = BatchJson(req);
    std::lock_guard<std::mutex> lock(state_->mu);
    EventsCall call{body["job"], body["attempt"], body["first"], body["records"].size(), 200};
    auto& stored = state_->events[{call.job, call.attempt}];
    int64_t acked = static_cast<int64_t>(stored.size());
    if (state_->unknown_jobs.count(call.job)) {
      call.http_status = 404;
      ReplyError(res, 404, "not_found", "no such job");
    } else if (state_->refuse_events > 0) {
      --state_->refuse_events;
      call.http_status = 503;
      ReplyError(res, 503, "unavailable", "refusing for the test");
    } else if (call.first > acked + 1) {
      call.http_status = 409;
      ReplyError(res, 409, "failed_precondition", "gap", {{"acked", acked}});
    } else {
      Store(body, call.first, &stored);
      if (state_->lose_event_replies > 0) {
        --state_->lose_event_replies;
        call.http_status = 503;
        ReplyError(res, 503, "unavailable", "reply lost for the test");
      } else {
        Json answer = {{"acked", stored.size()}};
        bool holds_exit = false;
        for (const Json& r : body["records"]) holds_exit |= r["kind"] == "exit";
        bool asks = req.has_param("work") && req.get_param_value("work") == "1";
        state_->events_asking_work += asks;
        if (asks && holds_exit && !state_->work_with_exit.empty()) {
          answer["work"] = state_->work_with_exit.front();
          state_->work_with_exit.pop_front();
        }
        Reply(res, 200, answer);
      }
    }
    state_->events_calls.push_back(call);
  }

  void Store(const Json& body, int64_t first, std::vector<Json>* stored) {
    int64_t seq = first;
    for (const Json& r : body["records"]) {
      if (seq++ <= static_cast<int64_t>(stored->size())) continue;  // already held
      stored->push_back(r);
      if (r["kind"] == "output") state_->output_seen[r["data"]] = std::chrono::steady_clock::now();
    }
  }

  void Missing(const httplib::Request& req, httplib::Response& res) {
    if (!Authorized(req, res)) return;
    Json body = Json::parse(req.body);
    Json missing = Json::array();
    std::lock_guard<std::mutex> lock(state_->mu);
    for (const Json& h : body["hashes"]) {
      if (!state_->blobs.count(h)) missing.push_back(h);
    }
    Reply(res, 200, {{"missing", missing}});
  }

  void PutBlob(const httplib::Request& req, httplib::Response& res) {
    if (!Authorized(req, res)) return;
    std::string hash = req.matches[1];
    if (Sha256Hex(req.body) != hash) return ReplyError(res, 400, "invalid_argument", "hash");
    std::lock_guard<std::mutex> lock(state_->mu);
    ++state_->blob_puts;
    state_->blobs[hash] = req.body;
    Reply(res, 200, Json::object());
  }

  void GetBlob(const httplib::Request& req, httplib::Response& res) {
    if (!Authorized(req, res)) return;
    std::lock_guard<std::mutex> lock(state_->mu);
    ++state_->blob_gets;
    auto it = state_->blobs.find(req.matches[1]);
    if (it == state_->blobs.end()) return ReplyError(res, 404, "not_found", "no such blob");
    res.set_content(it->second, "application/octet-stream");
  }

  std::shared_ptr<FakeState> state_;
  httplib::Server svr_;
  int port_ = 0;
  bool stopping_ = false;  // GUARDED_BY(state_->mu)
  std::thread thread_;
};

}  // namespace yard::agent_testing
