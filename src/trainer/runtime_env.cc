#include "trainer/runtime_env.h"

#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace yard::trainer {

int CoresAvailable() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

int ThreadsPerReplica(int threads_flag, int devices) {
  int threads = threads_flag > 0 ? threads_flag : CoresAvailable();
  return std::max(1, threads / std::max(1, devices));
}

bool WantPassiveOpenMp(int threads_per_replica, const EnvLookup& env) {
  return threads_per_replica > 1 && env("OMP_WAIT_POLICY").empty();
}

void ReexecWithPassiveOpenMp(char** argv) {
  if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
  execv("/proc/self/exe", argv);
}

bool SetOpenBlasThreads(int n) {
  using SetThreads = void (*)(int);
  auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (!set) return false;
  set(n);
  return true;
}

}  // namespace yard::trainer
