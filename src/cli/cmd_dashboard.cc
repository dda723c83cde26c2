// `yard dashboard`: opens the server's page in a browser, signed in through
// a one-time login link (src/server/dashboard_auth.h), or prints the link
// when there is no browser.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "client/reply.h"
#include "common/process.h"

namespace yard::cli {
namespace {

// The command that opens a URL here: $BROWSER, else xdg-open on a desktop.
std::string BrowserCommand() {
  const char* browser = std::getenv("BROWSER");
  if (browser && *browser) return browser;
  bool desktop = std::getenv("DISPLAY") || std::getenv("WAYLAND_DISPLAY");
  if (desktop && ::access("/usr/bin/xdg-open", X_OK) == 0) return "/usr/bin/xdg-open";
  return "";
}

}  // namespace

Runner SetupDashboard(CLI::App* sub, GlobalFlags* global) {
  auto print_only = std::make_shared<bool>(false);
  sub->add_flag("--no-browser", *print_only, "print the sign-in link instead of opening a browser");
  return [global, print_only] {
    auto client = ConnectOrReport(*global);
    if (!client) return 1;
    StatusOr<std::string> base = client->BaseUrl();
    if (!base.ok()) return Fail(base.status().message());
    StatusOr<Reply> link = PostReply(*client, "/v1/dashboard/login-links", Json::object());
    if (!link.ok())
      return Fail(link.status().message() + " (does the server predate the dashboard?)");
    StatusOr<std::string> path = link->Get<std::string>("path");
    StatusOr<int> seconds = link->Get<int>("expires_in_s");
    if (!path.ok()) return ExitFor("dashboard", path.status());
    if (!seconds.ok()) return ExitFor("dashboard", seconds.status());
    std::string url = *base + *path;
    std::string browser = *print_only ? "" : BrowserCommand();
    std::printf("dashboard: %s/\n", base->c_str());
    if (!browser.empty()) {
      StatusOr<int> pid = SpawnDetached({browser, url}, CurrentEnvironment(), "/dev/null");
      if (pid.ok()) {
        std::printf("opened in your browser (%s), signed in\n", browser.c_str());
        return 0;
      }
      std::fprintf(stderr, "yard: could not start %s: %s\n", browser.c_str(),
                   pid.status().message().c_str());
    }
    std::printf(
        "sign in with this link within %d s (it works once; run `yard dashboard` for "
        "another):\n%s\n",
        *seconds, url.c_str());
    return 0;
  };
}

}  // namespace yard::cli
