// Threading of the math libraries under libtorch (libgomp, OpenBLAS), which
// must be set up before, or apart from, libtorch itself. No torch here.
//
// Why: libgomp's default wait policy spins at the end of every parallel
// region. When other processes hold the cores (other jobs on a shared host,
// a build), each region then costs milliseconds: on a busy 2-core machine a
// 2-thread MLP run fell from 58k to 3k samples/s. OMP_WAIT_POLICY=PASSIVE
// avoids it, but libgomp reads it only when it is loaded (before main), so
// yard-train sets it and executes itself again once.
#pragma once

#include "trainer/flags.h"

namespace yard::trainer {

// CPUs this process may run on (its affinity mask), at least 1.
int CoresAvailable();

// Intra-op threads for each replica: --threads (or CoresAvailable()) shared
// by `devices` replicas running at once, at least 1.
int ThreadsPerReplica(int threads_flag, int devices);

// True when OpenMP would run teams of several threads and the caller has
// not chosen a wait policy (OMP_WAIT_POLICY unset).
bool WantPassiveOpenMp(int threads_per_replica, const EnvLookup& env);

// Sets OMP_WAIT_POLICY=PASSIVE and replaces this process with a new run of
// the same executable and `argv`. Returns only if that fails (the caller
// then carries on with the default policy).
void ReexecWithPassiveOpenMp(char** argv);

// Sets OpenBLAS's own thread pool to `n` threads if OpenBLAS is the BLAS
// libtorch loaded (found by symbol at run time). Returns whether it was.
bool SetOpenBlasThreads(int n);

}  // namespace yard::trainer
