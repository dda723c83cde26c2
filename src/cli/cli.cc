#include "cli/cli.h"

#include <cstdio>
#include <cstring>

#include "agent/job_process.h"

namespace yard::cli {

int Main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "shim") == 0) return RunShim(argc - 1, argv + 1);
  std::fprintf(stderr, "yard: no command given\n");
  return 2;
}

}  // namespace yard::cli
