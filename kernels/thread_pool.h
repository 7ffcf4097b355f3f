#pragma once
// The CPU threads of the kernels' parallel loops: a small pool of nnr's own (kernels/thread_pool.cpp)
// instead of OpenMP's parallel for, so that idle workers can wait the way a shared machine needs.
//
// Loops. parallel_ranges(n, body) cuts [0, n) into `workers` contiguous shares, as OpenMP's
// schedule(static) does (the first n mod workers shares one index longer), and calls
// body(share, begin, end) once per share; share 0 runs on the calling thread. The share index is
// unique within a call and below the thread count, so it can index per-thread buffers and partial
// sums. A share whose worker has not started by the time the caller has finished its own runs on
// the caller (the cut stays the same; only who runs it changes): a worker descheduled behind
// another process, or still waking up, never holds the loop up. Loops of one index, loops of one
// thread and loops started inside a loop body (nested) run inline on the calling thread.
//
// Pools. Every thread that starts a parallel loop owns its own workers, created by it on its
// first loop (so they inherit its nice value: apps/serve's retraining thread runs at lower
// priority, and so do its workers) and joined when it exits. Concurrent callers (serve's request
// threads and its retraining thread) therefore never share or wait for one another's workers,
// and the thread count is a setting of the calling thread, like OpenMP's nthreads ICV.
//
// Waiting (NNR_THREAD_WAIT, read once per process; thread_wait_description() says which):
//   default  spin up to kDefaultSpinMicroseconds with `pause`, calling sched_yield every
//            microsecond or so, so that a runnable thread of another process gets the core, then
//            sleep on a futex; a thread that finds it was descheduled while spinning (the core is
//            contended) sleeps at once for the next 100 ms of waits, longer (up to 1.6 s) while
//            its probes keep finding the core contended (thread_pool.cpp);
//   spin     spin with `pause` for ever, never yield or sleep (OpenMP's OMP_WAIT_POLICY=ACTIVE);
//   passive  sleep at once (OMP_WAIT_POLICY=PASSIVE);
//   <n>      (a number) the default with a spin of n microseconds, for tuning.
// The caller waits for its workers' shares the same way. bench/thread_wait.sh measures the three
// (bench/results/thread-wait.json).
//
// Exceptions thrown by a body reach the caller: every share still runs or is skipped as usual,
// the loop waits for its shares, and the first exception is rethrown on the calling thread.
#include <cstdint>
#include <string>
#include <type_traits>

namespace nnr::kernels {

// Threads of the calling thread's parallel loops. n <= 0: every core this process may run on.
// A thread that never set it uses default_loop_threads().
void set_loop_threads(int n);
int loop_threads();
// OMP_NUM_THREADS (a positive number; still honoured, as before the pool replaced OpenMP), else
// every core this process may run on (its CPU affinity).
int default_loop_threads();
int available_cores();

// True on a pool's worker thread and on a caller while it runs a share: loops started there run
// inline.
bool in_parallel_loop();

struct ThreadWait {
  enum Kind { Default, Spin, Passive } kind = Default;
  int64_t spin_microseconds = 0;  // Default: spin this long before sleeping
};
// Spin bound of the default wait: longer than nearly every serial gap between the loops of a
// training step, so that idle workers rarely sleep (on the dev VM a futex wake-up costs so much that
// sleeping at once made the MLP epoch 1.4x slower than spinning). bench/thread_wait.sh with
// THREAD_WAIT_SPINS (MLP 784-256-256-10, 2 threads, 2-core dev VM, idle): 50 us 1.12x the spinning
// epoch, 200 us 1.15x, 1000 us 0.96x; beside a busy process 1000 us stayed within 3-12 % of the
// passive wait, since a thread that finds its core contended stops spinning (see above).
constexpr int64_t kDefaultSpinMicroseconds = 1000;

// NNR_THREAD_WAIT's value (nullptr: unset) as a wait; `understood` is set false for a value that
// is none of the above (the default then applies).
ThreadWait parse_thread_wait(const char* value, bool* understood = nullptr);
ThreadWait thread_wait();  // this process's, from NNR_THREAD_WAIT at the first call
std::string describe(const ThreadWait& wait);
std::string thread_wait_description();  // e.g. "spin up to 1000 us, yielding, then sleep (nnr's default)"

namespace detail {
using ShareFunction = void (*)(void* body, int share, int64_t begin, int64_t end);
void run_parallel(int64_t n, int threads, ShareFunction run_share, void* body);
}  // namespace detail

// The share `share` of `shares` of [0, n): [begin, end), as schedule(static) cuts it.
inline void static_share(int64_t n, int shares, int share, int64_t& begin, int64_t& end) {
  const int64_t q = n / shares, r = n % shares;
  begin = share * q + (share < r ? share : r);
  end = begin + q + (share < r ? 1 : 0);
}

// body(share, begin, end) for every share of [0, n) on min(threads, n) threads (see above).
template <typename Body>
void parallel_ranges(int64_t n, Body&& body, int threads = loop_threads()) {
  if (n <= 0) return;
  if (threads <= 1 || n == 1 || in_parallel_loop()) {
    body(0, int64_t{0}, n);
    return;
  }
  using B = std::remove_reference_t<Body>;
  detail::run_parallel(
      n, threads,
      [](void* b, int share, int64_t begin, int64_t end) { (*static_cast<B*>(b))(share, begin, end); },
      const_cast<void*>(static_cast<const void*>(&body)));
}

// body(i) for every i in [0, n): on the loop's threads when `parallel` (the call sites' size
// thresholds), else inline.
template <typename Body>
void parallel_for(int64_t n, bool parallel, Body&& body) {
  if (!parallel) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  parallel_ranges(n, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) body(i);
  });
}

}  // namespace nnr::kernels
