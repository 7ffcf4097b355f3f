#pragma once
// The CPU threads nnr's math uses: the kernels' parallel loops and the GEMMs they split
// (kernels/thread_pool.h: nnr's own pool, which replaced OpenMP's parallel loops so that idle
// threads can spin briefly and then sleep, fast on idle cores and beside a busy process alike).
// Every program that links the engine (the CLI, the tests, the benchmarks, a library user) gets
// the same pool and the same wait; NNR_THREAD_WAIT=spin|passive|<microseconds> chooses another
// (bench/thread_wait.sh measures them, bench/results/thread-wait.json).
#include <string>

namespace nnr {

// The calling thread's loop threads, like OpenMP's per-thread nthreads: other threads keep theirs
// (a thread that never set it: OMP_NUM_THREADS, else every core this process may run on).
void set_num_threads(int n);  // n <= 0: every core this process may run on
int num_threads();

// How the pool's idle threads wait, in words, e.g. "spin up to 1000 us, yielding, then sleep
// (nnr's default)" or "sleep at once (passive) (NNR_THREAD_WAIT=passive)".
std::string thread_wait_description();

}  // namespace nnr
