// Starting and watching processes that are not our children.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace yard {

// Starts `argv` detached (new session, double fork so init reaps it, stdio
// to `log_path`), with environment `env`. Returns its pid once `argv[0]` has
// been exec'd (so ProcessAlive(pid, marker) holds from the first moment);
// an error naming errno when the exec fails.
StatusOr<int> SpawnDetached(const std::vector<std::string>& argv,
                            const std::vector<std::string>& env, const std::string& log_path);

// How SpawnChild starts a child of this process.
struct ChildSpec {
  std::vector<std::string> argv;  // argv[0] is looked up on PATH when search_path
  bool search_path = true;
  // KEY=VALUE strings; nullopt: this process's own environment.
  std::optional<std::vector<std::string>> env;
  // (from, to) pairs, dup2'd in the child in this order; a `from` of -1
  // opens /dev/null (read-only) as `to`.
  std::vector<std::pair<int, int>> fds;
  std::string cwd;               // "" keeps this process's
  bool close_other_fds = false;  // close every descriptor from 3 up in the child
  bool new_process_group = false;
};

// Starts `spec` with posix_spawn (safe in a threaded process; a failed
// chdir or exec is reported, not left to the child). The child gets default
// signal dispositions and an empty signal mask whatever this process
// ignores or blocks. Returns 0 and sets *pid, or the errno of the failure.
int SpawnChild(const ChildSpec& spec, pid_t* pid);

// True if `pid` runs (not a zombie) and its command line contains `marker`
// (which guards against a recycled pid).
bool ProcessAlive(int pid, const std::string& marker);

// This process's environment as KEY=VALUE strings.
std::vector<std::string> CurrentEnvironment();

// True for an environment variable that holds a secret a job must not
// inherit from the server or the agent: Trainyard's tokens (YARD_TOKEN,
// YARD_AGENT_TOKEN), cloud keys (AWS_*, except the settings
// AWS_EC2_METADATA_SERVICE_ENDPOINT[_MODE], AWS_EC2_METADATA_DISABLED,
// AWS_REGION, AWS_DEFAULT_REGION, AWS_CA_BUNDLE), and any name containing TOKEN,
// SECRET, PASSWORD, PASSWD or CREDENTIAL, or ending in _KEY.
// `key_value` is "NAME=VALUE" or a bare name.
bool IsSecretEnvName(const std::string& key_value);

// CurrentEnvironment() without the secrets above.
std::vector<std::string> EnvironmentWithoutSecrets();

// Reads `name`, then removes it from this process's environment and
// overwrites its bytes, so that /proc/PID/environ (which shows the
// environment the process started with) no longer holds it either.
// "" when unset.
std::string TakeSecretEnv(const char* name);

}  // namespace yard
