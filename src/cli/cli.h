// The command table of the `yard` executable.
#pragma once

namespace yard::cli {

// Runs the subcommand named by argv[1]; returns the process exit code.
int Main(int argc, char** argv);

}  // namespace yard::cli
