// The `yard` executable: every role (CLI, server, agent, shim) lives in
// libraries; main only hands over to the command table.
#include "cli/cli.h"

int main(int argc, char** argv) { return yard::cli::Main(argc, argv); }
