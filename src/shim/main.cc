// yard-shim: the per-job supervisor the agent execs (src/shim/shim.h).
#include "shim/shim.h"

int main(int argc, char** argv) { return yard::RunShim(argc, argv); }
