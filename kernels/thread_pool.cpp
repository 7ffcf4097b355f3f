// nnr's CPU thread pool (kernels/thread_pool.h): one pool per calling thread, shares handed over
// by a per-worker ticket, waits that spin and then sleep on a futex.
#include "kernels/thread_pool.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "kernels/denormals.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace nnr::kernels {
namespace {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free,
              "futex words are plain 32-bit atomics");

inline void cpu_pause() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

void futex_wait(std::atomic<uint32_t>& word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Spinning checks the clock (and yields) every kPausesPerCheck pauses: about 1 us of pauses (30 ns
// each on the dev machine's Xeon) against a 25 ns clock read and a 0.4-0.8 us sched_yield.
constexpr int kPausesPerCheck = 32;
// A gap this long between two checks means the thread was descheduled: the yield gave its core to
// another runnable thread, or it was preempted. Far above a check's own 1-2 us, far below a
// scheduler time slice (milliseconds).
constexpr int64_t kDescheduledNs = 100'000;
// After a detected descheduling a thread sleeps at once for this long (then spins again, as a
// probe): while the core is contended, spinning only delays the other process, and a sleeping
// worker woken by a futex is scheduled sooner than one that is runnable but waits for its turn.
// A probe can cost a time slice (its yield hands the core over), so the period doubles while
// probes keep finding contention, up to kMaxContendedNs (under 1 % of the time in probes), and
// drops back after a probe that did not.
constexpr int64_t kContendedNs = 100'000'000;
constexpr int64_t kMaxContendedNs = 1'600'000'000;

thread_local bool in_loop = false;
thread_local int loop_threads_setting = 0;  // 0: not set on this thread

// One thread's memory of contention (per waiting thread: workers and callers).
struct Waiter {
  int64_t contended_until_ns = 0;
  int64_t contended_period_ns = kContendedNs;
};

// Waits until `word` differs from `old` and returns its new value. `sleeping` is set while the
// thread sleeps, so that the writer knows to wake it (the writer stores `word` and then reads
// `sleeping`, the sleeper stores `sleeping` and then reads `word`, both sequentially consistent:
// at least one of them sees the other).
uint32_t wait_for_change(std::atomic<uint32_t>& word, uint32_t old, std::atomic<uint32_t>& sleeping,
                         Waiter& self) {
  const ThreadWait& how = thread_wait();
  uint32_t v;
  if (how.kind == ThreadWait::Spin) {
    while ((v = word.load(std::memory_order_acquire)) == old) cpu_pause();
    return v;
  }
  if (how.kind == ThreadWait::Default) {
    const int64_t start = now_ns();
    if (start >= self.contended_until_ns) {
      const int64_t bound = how.spin_microseconds * 1000;
      int64_t last = start;
      for (;;) {
        for (int i = 0; i < kPausesPerCheck; ++i) {
          if ((v = word.load(std::memory_order_acquire)) != old) {
            self.contended_period_ns = kContendedNs;
            return v;
          }
          cpu_pause();
        }
        const int64_t t = now_ns();
        if (t - last > kDescheduledNs) {
          self.contended_until_ns = t + self.contended_period_ns;
          self.contended_period_ns = std::min(2 * self.contended_period_ns, kMaxContendedNs);
          break;
        }
        if (t - start >= bound) {
          self.contended_period_ns = kContendedNs;
          break;
        }
        last = t;
        sched_yield();  // a runnable thread of another process takes the core; none: returns at once
      }
    }
  }
  sleeping.store(1, std::memory_order_seq_cst);
  while ((v = word.load(std::memory_order_seq_cst)) == old) futex_wait(word, old);
  sleeping.store(0, std::memory_order_relaxed);
  return v;
}

// Stores `value` into `word` and wakes its sleeper, if any (see wait_for_change).
void publish(std::atomic<uint32_t>& word, uint32_t value, std::atomic<uint32_t>& sleeping) {
  word.store(value, std::memory_order_seq_cst);
  if (sleeping.load(std::memory_order_seq_cst)) futex_wake_all(word);
}

// A calling thread's pool. Worker k runs share k (k >= 1); share 0 is the caller's.
class Pool {
 public:
  ~Pool() {
    stopping_.store(true, std::memory_order_release);
    for (auto& w : workers_) publish(w->ticket, w->ticket.load(std::memory_order_relaxed) + 1, w->sleeping);
    for (auto& w : workers_) w->thread.join();
  }

  void run(int64_t n, int shares, detail::ShareFunction run_share, void* body) {
    grow(shares - 1);
    const uint64_t loop = ++loop_;
    job_ = {n, shares, run_share, body, float_mode()};
    error_ = nullptr;
    shares_left_.store(static_cast<uint32_t>(shares - 1), std::memory_order_relaxed);
    for (int k = 1; k < shares; ++k) {
      Worker& w = *workers_[static_cast<size_t>(k - 1)];
      w.share.store(loop << 1, std::memory_order_release);  // open: job_ is visible to whoever takes it
      publish(w.ticket, w.ticket.load(std::memory_order_relaxed) + 1, w.sleeping);
    }
    in_loop = true;
    run_share_guarded(0);
    // Shares whose workers have not started yet: run them here rather than wait for them.
    for (int k = 1; k < shares; ++k)
      if (take(*workers_[static_cast<size_t>(k - 1)], loop << 1)) {
        run_share_guarded(k);
        shares_left_.fetch_sub(1, std::memory_order_acq_rel);
      }
    in_loop = false;
    for (uint32_t left; (left = shares_left_.load(std::memory_order_acquire)) != 0;)
      wait_for_change(shares_left_, left, caller_sleeping_, caller_waiter_);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  struct Job {
    int64_t n = 0;
    int shares = 0;
    detail::ShareFunction run_share = nullptr;
    void* body = nullptr;
    uint32_t float_mode = 0;  // the caller's (kernels/denormals.h): workers compute as it does
  };
  struct alignas(64) Worker {
    std::atomic<uint32_t> ticket{0};    // bumped for every loop the worker is to take part in (futex word)
    std::atomic<uint32_t> sleeping{0};  // set while it sleeps on `ticket`
    // The worker's share: 2·loop while open, 2·loop + 1 once taken (by the worker or the caller).
    // Loop numbers never repeat, so a worker that wakes late cannot take a share of a later loop
    // by mistake.
    std::atomic<uint64_t> share{0};
    std::thread thread;
  };

  // Takes worker w's share if it is still `open` (2·loop).
  static bool take(Worker& w, uint64_t open) {
    return w.share.compare_exchange_strong(open, open | 1, std::memory_order_acq_rel);
  }

  void run_share_guarded(int share) noexcept {
    int64_t begin, end;
    static_share(job_.n, job_.shares, share, begin, end);
    try {
      job_.run_share(job_.body, share, begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void grow(int workers) {
    while (static_cast<int>(workers_.size()) < workers) {
      workers_.push_back(std::make_unique<Worker>());
      Worker* w = workers_.back().get();
      const int share = static_cast<int>(workers_.size());
      w->thread = std::thread([this, w, share] { work(*w, share); });
    }
  }

  void work(Worker& w, int share) {
    in_loop = true;  // loops inside a share run inline
    Waiter waiter;
    uint32_t seen = 0;
    for (;;) {
      seen = wait_for_change(w.ticket, seen, w.sleeping, waiter);
      if (stopping_.load(std::memory_order_acquire)) return;
      // Taken already (the caller ran it, the loop may have ended): wait for the next ticket.
      const uint64_t state = w.share.load(std::memory_order_acquire);
      if ((state & 1) || !take(w, state)) continue;
      set_float_mode(job_.float_mode);
      run_share_guarded(share);
      if (shares_left_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
          caller_sleeping_.load(std::memory_order_seq_cst))
        futex_wake_all(shares_left_);
    }
  }

  std::vector<std::unique_ptr<Worker>> workers_;
  Job job_;  // written by the caller before it hands out tickets; constant until the loop ends
  uint64_t loop_ = 0;
  std::atomic<bool> stopping_{false};
  alignas(64) std::atomic<uint32_t> shares_left_{0};  // workers' shares still running (futex word)
  std::atomic<uint32_t> caller_sleeping_{0};
  Waiter caller_waiter_;
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

int positive_or_zero(const char* text) {
  if (!text || !*text) return 0;
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  // OMP_NUM_THREADS may be a list ("4,2": nested levels); its first number is the outer level's.
  if (end == text || (*end != '\0' && *end != ',') || v <= 0 || v > 4096) return 0;
  return static_cast<int>(v);
}

}  // namespace

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

int default_loop_threads() {
  static const int threads = [] {
    const int from_env = positive_or_zero(std::getenv("OMP_NUM_THREADS"));
    return from_env > 0 ? from_env : available_cores();
  }();
  return threads;
}

void set_loop_threads(int n) { loop_threads_setting = n > 0 ? n : available_cores(); }

int loop_threads() { return loop_threads_setting > 0 ? loop_threads_setting : default_loop_threads(); }

bool in_parallel_loop() { return in_loop; }

ThreadWait parse_thread_wait(const char* value, bool* understood) {
  if (understood) *understood = true;
  ThreadWait w;
  w.kind = ThreadWait::Default;
  w.spin_microseconds = kDefaultSpinMicroseconds;
  const std::string v = value ? value : "";
  if (v.empty() || v == "default") return w;
  if (v == "spin") {
    w.kind = ThreadWait::Spin;
    w.spin_microseconds = 0;
    return w;
  }
  if (v == "passive") {
    w.kind = ThreadWait::Passive;
    w.spin_microseconds = 0;
    return w;
  }
  char* end = nullptr;
  const long long us = std::strtoll(v.c_str(), &end, 10);
  if (end != v.c_str() && *end == '\0' && us >= 0 && us <= 10'000'000) {
    w.spin_microseconds = us;
    return w;
  }
  if (understood) *understood = false;
  return w;
}

ThreadWait thread_wait() {
  static const ThreadWait wait = parse_thread_wait(std::getenv("NNR_THREAD_WAIT"));
  return wait;
}

std::string describe(const ThreadWait& wait) {
  switch (wait.kind) {
    case ThreadWait::Spin:
      return "spin (never sleep)";
    case ThreadWait::Passive:
      return "sleep at once (passive)";
    case ThreadWait::Default:
      break;
  }
  return "spin up to " + std::to_string(wait.spin_microseconds) + " us, yielding, then sleep";
}

std::string thread_wait_description() {
  const char* value = std::getenv("NNR_THREAD_WAIT");
  bool understood = true;
  parse_thread_wait(value, &understood);
  const ThreadWait wait = thread_wait();
  std::string out = describe(wait);
  if (!value || !*value || std::string(value) == "default") return out + " (nnr's default)";
  if (!understood) return out + " (nnr's default; NNR_THREAD_WAIT=" + value + " not understood)";
  return out + " (NNR_THREAD_WAIT=" + value + ")";
}

namespace detail {

void run_parallel(int64_t n, int threads, ShareFunction run_share, void* body) {
  const int shares = static_cast<int>(std::min<int64_t>(threads, n));
  if (shares <= 1 || in_loop) {
    run_share(body, 0, 0, n);
    return;
  }
  thread_local std::unique_ptr<Pool> pool;
  if (!pool) pool = std::make_unique<Pool>();
  pool->run(n, shares, run_share, body);
}

}  // namespace detail

}  // namespace nnr::kernels
