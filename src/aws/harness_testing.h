// For tests only (uses GoogleTest): runs tests/aws_harness.py (moto, the
// fault proxy, ec2-metadata-mock on loopback) as a child process and reads
// the JSON line it prints once everything answers. Destroying it closes the
// child's stdin, on which the harness stops what it started.
//
//   auto h = test_support::AwsHarness::Start({"serve"});
//   if (!h) GTEST_SKIP() << test_support::AwsHarness::SkipReason({"serve"});
//   h->info()["moto"]  // "http://127.0.0.1:PORT"
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace yard::test_support {

class AwsHarness {
 public:
  static std::string Python() { return std::string(YARD_SOURCE_DIR) + "/.venv/bin/python"; }
  static std::string Script() { return std::string(YARD_SOURCE_DIR) + "/tests/aws_harness.py"; }

  // Why the harness cannot run `args` here ("" if it can): the tools it needs.
  static std::string SkipReason(const std::vector<std::string>& args) {
    namespace fs = std::filesystem;
    std::string venv = std::string(YARD_SOURCE_DIR) + "/.venv/bin/";
    if (!fs::exists(venv + "python")) return "no .venv: run scripts/setup.sh";
    if (args[0] == "serve" && !fs::exists(venv + "moto_server")) {
      return "moto is not installed (.venv/bin/moto_server): run scripts/setup.sh";
    }
    if (args[0] == "metadata-mock" && !MetadataMockInstalled()) {
      return "ec2-metadata-mock is not installed: scripts/setup.sh builds it (needs Go >= 1.23)";
    }
    return "";
  }

  // Starts the harness with `args`; nullptr (and a test failure with the
  // harness's output) if it does not come up within `timeout_s`.
  static std::unique_ptr<AwsHarness> Start(const std::vector<std::string>& args,
                                           double timeout_s = 120) {
    if (!SkipReason(args).empty()) return nullptr;
    auto h = std::unique_ptr<AwsHarness>(new AwsHarness());
    if (!h->Spawn(args) || !h->ReadInfo(timeout_s)) return nullptr;
    return h;
  }

  ~AwsHarness() {
    if (stdin_fd_ >= 0) close(stdin_fd_);
    if (stdout_fd_ >= 0) close(stdout_fd_);
    if (pid_ <= 0) return;
    for (int i = 0; i < 300; ++i) {  // up to 30 s for moto and the mock to stop
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      usleep(100'000);
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }

  const nlohmann::json& info() const { return info_; }

 private:
  AwsHarness() = default;

  static bool MetadataMockInstalled() {
    namespace fs = std::filesystem;
    const char* env = getenv("EC2_METADATA_MOCK");
    const char* home = getenv("HOME");
    for (std::string p :
         {std::string(env ? env : ""), std::string("/usr/local/bin/ec2-metadata-mock"),
          std::string(YARD_SOURCE_DIR) + "/build/tools/ec2-metadata-mock",
          std::string(home ? home : "") + "/go/bin/ec2-metadata-mock"}) {
      if (!p.empty() && access(p.c_str(), X_OK) == 0) return true;
    }
    return false;
  }

  bool Spawn(const std::vector<std::string>& args) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      std::vector<std::string> argv{Python(), Script()};
      argv.insert(argv.end(), args.begin(), args.end());
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    stdin_fd_ = in[1];
    stdout_fd_ = out[0];
    return pid_ > 0;
  }

  bool ReadInfo(double timeout_s) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (line.find('\n') == std::string::npos) {
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      pollfd p{stdout_fd_, POLLIN, 0};
      if (left <= 0 || poll(&p, 1, left) <= 0) break;
      char buf[4096];
      ssize_t n = read(stdout_fd_, buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, n);
    }
    info_ = nlohmann::json::parse(line.substr(0, line.find('\n')), nullptr, false);
    if (!info_.is_object()) {
      ADD_FAILURE() << "tests/aws_harness.py did not come up (its output: " << line
                    << "); its stderr is in the test's output above";
      return false;
    }
    return true;
  }

  int pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  nlohmann::json info_;
};

}  // namespace yard::test_support
