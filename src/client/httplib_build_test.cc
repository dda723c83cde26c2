// The cpp-httplib that every target links (CMakeLists.txt, yard_httplib):
// Debian's source compiled with 256 KiB body reads instead of the 4 KiB of
// Debian's shared library (bench/README.md, "Output: httplib built with
// 256 KiB body reads").
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace yard {
namespace {

// Sends `bytes` whole on a new connection to 127.0.0.1:port and reads the
// answer until the server closes it; "" if the connection failed.
std::string SendRaw(int port, const std::string& bytes, std::promise<void>* sent) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string answer;
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    sent->set_value();
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;)
      answer.append(buf, static_cast<size_t>(n));
  } else {
    sent->set_value();
  }
  if (fd >= 0) close(fd);
  return answer;
}

// A request body already waiting in the socket reaches the handler in
// pieces of more than 4 KiB: the server reads it with recv()s of up to
// CPPHTTPLIB_RECV_BUFSIZ, not 4 KiB each (one poll + recv + append per
// 4 KiB was the largest cost of the server reading agents' output batches).
TEST(HttplibBuildTest, ReadsAWaitingRequestBodyInPiecesLargerThan4KiB) {
#ifndef YARD_HTTPLIB_FROM_SOURCE
  GTEST_SKIP() << "this build links Debian's shared cpp-httplib (the sanitized build, or CMake "
                  "did not find the source: see its warning)";
#endif
  std::promise<void> sent;
  std::shared_future<void> all_sent = sent.get_future().share();
  std::vector<size_t> pieces;
  std::string received;
  httplib::Server svr;
  svr.Post("/body", [&](const httplib::Request&, httplib::Response& res,
                        const httplib::ContentReader& reader) {
    all_sent.wait();  // the whole body is in the socket before the first read
    reader([&](const char* data, size_t n) {
      pieces.push_back(n);
      received.append(data, n);
      return true;
    });
    res.set_content("ok", "text/plain");
  });
  int port = svr.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread server([&] { svr.listen_after_bind(); });
  while (!svr.is_running()) std::this_thread::yield();

  // 24 KiB: with the headers within one loopback segment and the initial
  // receive window, so one send() puts it all in the server's socket.
  std::string body(24 * 1024, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(i * 7 + i / 251);
  std::string request = "POST /body HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\n\r\n" + body;
  std::string answer = SendRaw(port, request, &sent);
  svr.stop();
  server.join();

  EXPECT_NE(answer.find("200 OK"), std::string::npos) << answer;
  EXPECT_EQ(received, body);  // exact bytes
  ASSERT_FALSE(pieces.empty());
  EXPECT_GT(*std::max_element(pieces.begin(), pieces.end()), size_t{4096})
      << "every piece of the body was at most 4 KiB: " << pieces.size()
      << " pieces; is CPPHTTPLIB_RECV_BUFSIZ 4 KiB again (CMakeLists.txt, yard_httplib)?";
}

}  // namespace
}  // namespace yard
