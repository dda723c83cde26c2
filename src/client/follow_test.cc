#include "client/follow.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <mutex>
#include <thread>

#include "common/frames.h"

namespace yard {
namespace {

// A job's event stream in memory (httplib on 127.0.0.1, port 0): events
// 1..3 are output ("line N\n"), 4 the final state. The first request is
// cut off after `cut_after` events when `cut_after` > 0, as a server killed
// mid-stream cuts it: the connection ends without the end mark.
class FakeEventServer {
 public:
  explicit FakeEventServer(bool close_delimited, int cut_after)
      : close_delimited_(close_delimited), cut_after_(cut_after) {
    svr_.Get(R"(/v1/jobs/j/events)", [this](const httplib::Request& req, httplib::Response& res) {
      int64_t after = std::stoll(req.get_param_value("after"));
      std::string body = Frames(after);
      {
        std::lock_guard<std::mutex> lock(mu);
        requests.push_back(req.path + "?after=" + req.get_param_value("after") + "&end=" +
                           req.get_param_value("end") + " " + req.get_header_value("Connection"));
      }
      auto provider = [body](size_t, httplib::DataSink& sink) {
        sink.write(body.data(), body.size());
        sink.done();
        return true;
      };
      if (close_delimited_)
        res.set_content_provider(kFramesToCloseContentType, provider);
      else
        res.set_chunked_content_provider(kFramesContentType, provider);
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    while (!svr_.is_running()) std::this_thread::yield();
  }
  ~FakeEventServer() {
    svr_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  std::mutex mu;
  std::vector<std::string> requests;  // GUARDED_BY(mu)

 private:
  std::string Frames(int64_t after) {
    std::string out;
    int64_t last = 4;
    bool cut = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (requests.empty() && cut_after_ > 0) {
        last = cut_after_;
        cut = true;
      }
    }
    for (int64_t seq = after + 1; seq <= last; ++seq) {
      Json head = {{"kind", seq < 4 ? "output" : "state"}, {"seq", seq}, {"time", 0}};
      if (seq == 4) {
        head["state"] = "succeeded";
        AppendFrame(frame_tag::kJson, head.dump(), &out);
      } else {
        std::string payload = head.dump() + "\n" + "line " + std::to_string(seq) + "\n";
        AppendFrame(frame_tag::kOutput, payload, &out);
      }
    }
    if (close_delimited_ && !cut) AppendFrame(frame_tag::kEnd, "", &out);
    return out;
  }

  const bool close_delimited_;
  const int cut_after_;
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
};

std::string FollowAll(const FakeEventServer& server, bool follow, int* events) {
  HttpClient client(server.url(), "token");
  FollowOptions opts;
  opts.follow = follow;
  opts.on_disconnect = [](const Status&) { return true; };
  std::string out;
  Status s = FollowEvents(client, "j", opts, [&](const Json& ev) {
    ++*events;
    if (ev["kind"] == "output") out += ev["data"].get<std::string>();
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// The follower asks for the stream delimited by its connection (end=e,
// Connection: close), and a whole one is read in one request.
TEST(FollowEventsTest, ReadsAConnectionDelimitedStreamToItsEndMark) {
  FakeEventServer server(/*close_delimited=*/true, /*cut_after=*/0);
  int events = 0;
  EXPECT_EQ(FollowAll(server, /*follow=*/false, &events), "line 1\nline 2\nline 3\n");
  EXPECT_EQ(events, 4);
  std::lock_guard<std::mutex> lock(server.mu);
  ASSERT_EQ(server.requests.size(), 1u);
  EXPECT_EQ(server.requests[0], "/v1/jobs/j/events?after=0&end=e close");
}

// A connection that ends without the end mark was cut (a server killed
// mid-stream ends it the same way): even a follower that does not follow
// (`yard logs`) goes on from the last event it got, and gets each event
// once. Without the mark it would have stopped after line 2.
TEST(FollowEventsTest, AConnectionDelimitedStreamEndingWithoutItsMarkIsResumed) {
  FakeEventServer server(/*close_delimited=*/true, /*cut_after=*/2);
  int events = 0;
  EXPECT_EQ(FollowAll(server, /*follow=*/false, &events), "line 1\nline 2\nline 3\n");
  EXPECT_EQ(events, 4);
  std::lock_guard<std::mutex> lock(server.mu);
  ASSERT_EQ(server.requests.size(), 2u);
  EXPECT_EQ(server.requests[1], "/v1/jobs/j/events?after=2&end=e close");
}

// A server from before end=e answers with the chunked framed stream, whose
// end is its last chunk: no end mark is expected.
TEST(FollowEventsTest, AChunkedStreamFromAnOlderServerNeedsNoEndMark) {
  FakeEventServer server(/*close_delimited=*/false, /*cut_after=*/0);
  int events = 0;
  EXPECT_EQ(FollowAll(server, /*follow=*/false, &events), "line 1\nline 2\nline 3\n");
  EXPECT_EQ(events, 4);
  std::lock_guard<std::mutex> lock(server.mu);
  EXPECT_EQ(server.requests.size(), 1u);
}

// Serves `body` as the framed stream (end=e) of job j, to every request.
class FixedStreamServer {
 public:
  explicit FixedStreamServer(std::string body) : body_(std::move(body)) {
    svr_.Get(R"(/v1/jobs/j/events)", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content_provider(kFramesToCloseContentType, [this](size_t, httplib::DataSink& sink) {
        sink.write(body_.data(), body_.size());
        sink.done();
        return true;
      });
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    while (!svr_.is_running()) std::this_thread::yield();
  }
  ~FixedStreamServer() {
    svr_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  const std::string body_;
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
};

std::string OutputFrame(int64_t seq, std::string_view bytes) {
  std::string out;
  AppendFrame(frame_tag::kOutput,
              Json({{"kind", "output"}, {"seq", seq}}).dump() + "\n" + std::string(bytes), &out);
  return out;
}

// Output bytes reach the consumer exactly (every byte value, a megabyte),
// and an event whose "data" is not a string stops the follower with an
// error naming the field, as any other field of the wrong type does; the
// check does not copy the bytes (CheckEventFields), but still sees them.
TEST(FollowEventsTest, ChecksTheTypeOfDataAndDeliversOutputBytesExactly) {
  std::string bytes(1 << 20, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i % 251);
  std::string good = OutputFrame(1, bytes);
  AppendFrame(frame_tag::kJson,
              Json({{"kind", "state"}, {"seq", 2}, {"state", "succeeded"}}).dump(), &good);
  AppendFrame(frame_tag::kEnd, "", &good);
  FixedStreamServer server(good);
  HttpClient client(server.url(), "token");
  FollowOptions opts;
  opts.follow = false;
  std::string out;
  Status s = FollowEvents(client, "j", opts, [&](const Json& ev) {
    if (ev["kind"] == "output") out += ev["data"].get<std::string>();
    return true;
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(out == bytes) << out.size() << " bytes arrived of " << bytes.size();

  std::string bad = OutputFrame(1, "fine\n");
  AppendFrame(frame_tag::kJson, Json({{"kind", "output"}, {"seq", 2}, {"data", 7}}).dump(), &bad);
  AppendFrame(frame_tag::kEnd, "", &bad);
  FixedStreamServer bad_server(bad);
  HttpClient bad_client(bad_server.url(), "token");
  int delivered = 0;
  s = FollowEvents(bad_client, "j", opts, [&](const Json&) { return ++delivered, true; });
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("data is the number 7, not a string"), std::string::npos)
      << s.ToString();
  EXPECT_EQ(delivered, 1);
}

}  // namespace
}  // namespace yard
