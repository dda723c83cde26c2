// What the providers that start `yard agent` on machines Trainyard does not
// set up (ssh, aws) start it with alike.
#pragma once

#include <string>

namespace yard {

// The `yard agent` flags, for a shell command line, of an agent on a machine
// Trainyard does not set up (an SSH host, an EC2 instance): it confines jobs
// when the machine can and has each job told why not when it cannot; a
// confined job sees the host's files read-only (its data), but never
// `instances_word` (a shell word naming the folder of the machine's agent
// folders, each with its credential, spool and log). docs/operations.md,
// "Jobs are tenants".
inline std::string RemoteAgentConfinementFlags(const std::string& instances_word) {
  return "--sandbox-if-possible --sandbox-show-host --sandbox-hide " + instances_word;
}

}  // namespace yard
