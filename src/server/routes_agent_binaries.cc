// /v1/agent/binaries/{yard,yard-shim}: the exact executables this server
// puts on other machines (the static yard-portable built beside it), for agents that install
// themselves (the AWS provider's "direct" user-data downloads them and checks their SHA-256). Agent
// tokens only.
#include <fcntl.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include "common/files.h"
#include "server/http_server.h"

namespace yard {
namespace {

// The server's portable `yard` (PortableYard: yard-portable beside it, else
// itself), or the `yard-shim` beside that.
std::string BinaryPath(const std::string& name) {
  std::string yard = PortableYard();
  return name == "yard" ? yard : yard.substr(0, yard.rfind('/') + 1) + "yard-shim";
}

Status Download(Call& call) {
  std::string path = BinaryPath(call.Param(1));
  auto fd = std::make_shared<ScopedFd>(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (fd->get() < 0 || ::fstat(fd->get(), &st) != 0)
    return NotFound("this server has no " + call.Param(1) + " binary beside it (" + path + ")");
  call.res.set_content_provider(static_cast<size_t>(st.st_size), "application/octet-stream",
                                [fd](size_t offset, size_t length, httplib::DataSink& sink) {
                                  char buf[1 << 16];
                                  ssize_t n = ::pread(fd->get(), buf, std::min(length, sizeof(buf)),
                                                      static_cast<off_t>(offset));
                                  return n > 0 && sink.write(buf, static_cast<size_t>(n));
                                });
  return Status::Ok();
}

}  // namespace

std::vector<Route> AgentBinaryRoutes(ApiContext& ctx) {
  // A fresh instance fetches them before its agent has registered: with its
  // bootstrap credential (agent_credentials.h).
  return {{"GET", R"(/v1/agent/binaries/(yard|yard-shim))", Access::kAgentOrBootstrap,
           [](Call& c) { return Download(c); }}};
}

}  // namespace yard
