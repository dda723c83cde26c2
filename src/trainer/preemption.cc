#include "trainer/preemption.h"

#include <signal.h>
#include <unistd.h>

namespace yard::trainer {

namespace {

volatile sig_atomic_t g_signalled = 0;

void OnSignal(int) { g_signalled = 1; }

constexpr auto kLookEvery = std::chrono::milliseconds(200);

}  // namespace

NoticeWatch::NoticeWatch(std::string path) : path_(std::move(path)) {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a notice must not fail a read in progress
  sigaction(SIGUSR1, &sa, nullptr);
}

bool NoticeWatch::Noticed() {
  if (seen_ || g_signalled) return seen_ = true;
  auto now = std::chrono::steady_clock::now();
  if (path_.empty() || now < next_look_) return false;
  next_look_ = now + kLookEvery;
  return seen_ = access(path_.c_str(), F_OK) == 0;
}

}  // namespace yard::trainer
