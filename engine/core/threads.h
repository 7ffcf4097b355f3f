#pragma once
// The CPU threads nnr's math uses (Eigen's GEMM and nnr's own OpenMP loops), and how they wait.
//
// OpenMP wait policy. At the end of every parallel region libgomp's threads wait for the next one:
// by default they spin up to 300 000 iterations (OMP_WAIT_POLICY=ACTIVE: for ever) before they
// sleep, which is fastest on idle cores but, when another process holds one of the cores (nnr
// retrains beside a server), every fork-join waits out the scheduler's time slices; a passive wait
// (OMP_WAIT_POLICY=PASSIVE) sleeps at once and pays a futex wake-up per region instead. nnr's
// default spins kOpenmpSpinCount iterations and then sleeps: bench/thread_wait.sh measures the
// three (bench/results/thread-wait.json).
//
// libgomp reads its settings once, when it is loaded, before any static initializer of the
// program, so setting them later does nothing. A static initializer in threads.cpp (linked into
// every program that links nnr_engine_core) therefore sets GOMP_SPINCOUNT and re-executes the
// program once (/proc/self/exe with the same arguments and environment) before main runs, unless
// the user chose a policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT set) or set NNR_OPENMP_WAIT=keep.
// The CLI, the tests and the benchmarks all start this way.
#include <string>

namespace nnr {

void set_num_threads(int n);  // n <= 0: all hardware threads
int num_threads();

// Spin iterations before a waiting OpenMP thread sleeps (GOMP_SPINCOUNT), nnr's default. One
// iteration is one `pause` (about 36 ns on the dev machine's Xeon), so 1000 spin about 36 us:
// longer than the serial gaps between the parallel regions of a training step, far shorter than
// a scheduler time slice. On the dev machine with every core shared (load 10 on 2 cores, MLP
// 784-256-256-10 step, 2 threads) spin counts 300 and 1000 ran as fast as a passive wait, 3000
// about 1.3x and 10 000 3-5x slower, libgomp's 300 000 20-30x (bench/thread_wait.sh).
constexpr long kOpenmpSpinCount = 1000;

// What to set for a process whose environment has these values (nullptr: unset): "" when the
// user's choice stands (any OMP_WAIT_POLICY or GOMP_SPINCOUNT, or NNR_OPENMP_WAIT=keep), else the
// GOMP_SPINCOUNT value to set.
std::string openmp_spin_count_to_set(const char* omp_wait_policy, const char* gomp_spincount,
                                     const char* nnr_openmp_wait);

// The wait this process's OpenMP runtime runs with, in words, e.g. "spin 1000, then sleep (nnr's
// default)" or "OMP_WAIT_POLICY=PASSIVE (from the environment)".
std::string openmp_wait_description();

}  // namespace nnr
