// nnr's thread pool (kernels/thread_pool.h): coverage of the static cut, share indices, nesting,
// concurrent callers, per-thread thread counts, exceptions, and kernels that give the same
// answer on any thread count. ctest also runs the "[thread_pool]" cases with NNR_THREAD_WAIT=spin
// and =passive (tests/kernels/CMakeLists.txt), so every way of waiting is exercised.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/conv2d.h"
#include "kernels/gemm.h"
#include "kernels/masked_update.h"
#include "kernels/thread_pool.h"

using namespace nnr::kernels;

namespace {

// Restores the calling thread's loop threads at the end of a test case.
struct LoopThreadsGuard {
  int saved = loop_threads();
  ~LoopThreadsGuard() { set_loop_threads(saved); }
};

struct ShareCall {
  int share;
  int64_t begin, end;
};

}  // namespace

TEST_CASE("thread pool: parallel_ranges covers every index once, in the static cut", "[thread_pool]") {
  for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1000003}})
    for (const int threads : {1, 2, 3, 5}) {
      INFO("n " << n << ", threads " << threads);
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      for (auto& h : hits) h.store(0);
      std::mutex mutex;
      std::vector<ShareCall> calls;
      parallel_ranges(n, [&](int share, int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        std::lock_guard<std::mutex> lock(mutex);
        calls.push_back({share, begin, end});
      }, threads);
      for (size_t i = 0; i < hits.size(); ++i)
        if (hits[i].load() != 1) FAIL("index " << i << " ran " << hits[i].load() << " times");
      // One call per share, shares numbered 0 .. min(threads, n) - 1, each the schedule(static) range.
      const int shares = static_cast<int>(std::min<int64_t>(threads, n));
      REQUIRE(static_cast<int>(calls.size()) == shares);
      std::set<int> seen;
      for (const ShareCall& c : calls) {
        CHECK(c.share >= 0);
        CHECK(c.share < shares);
        CHECK(seen.insert(c.share).second);
        int64_t begin, end;
        static_share(n, shares, c.share, begin, end);
        CHECK(c.begin == begin);
        CHECK(c.end == end);
      }
    }
}

TEST_CASE("thread pool: parallel_for runs every index once, inline when not parallel", "[thread_pool]") {
  LoopThreadsGuard guard;
  for (const int threads : {1, 2, 3, 5}) {
    set_loop_threads(threads);
    for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{1000003}})
      for (const bool parallel : {false, true}) {
        INFO("n " << n << ", threads " << threads << ", parallel " << parallel);
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        for (auto& h : hits) h.store(0);
        const std::thread::id caller = std::this_thread::get_id();
        std::atomic<bool> elsewhere{false};
        parallel_for(n, parallel, [&](int64_t i) {
          hits[static_cast<size_t>(i)].fetch_add(1);
          if (std::this_thread::get_id() != caller) elsewhere = true;
        });
        int64_t wrong = 0;
        for (auto& h : hits) wrong += h.load() != 1;
        CHECK(wrong == 0);
        if (!parallel || threads == 1) CHECK_FALSE(elsewhere.load());
      }
  }
}

TEST_CASE("thread pool: a loop inside a loop body runs inline on that thread", "[thread_pool]") {
  CHECK_FALSE(in_parallel_loop());
  std::atomic<int> bad{0}, inner_calls{0};
  std::atomic<int> outer_in_loop{0};
  parallel_ranges(4, [&](int, int64_t, int64_t) {
    outer_in_loop += in_parallel_loop();
    const std::thread::id here = std::this_thread::get_id();
    parallel_ranges(1000, [&](int share, int64_t begin, int64_t end) {
      ++inner_calls;
      if (share != 0 || begin != 0 || end != 1000 || std::this_thread::get_id() != here) ++bad;
    }, 4);
  }, 4);
  CHECK(bad.load() == 0);
  CHECK(inner_calls.load() == 4);
  CHECK(outer_in_loop.load() == 4);
  CHECK_FALSE(in_parallel_loop());
}

TEST_CASE("thread pool: concurrent callers each get their loops done, with their own thread counts",
          "[thread_pool]") {
  // Many short loops from two threads at once (with different thread counts) and from this one:
  // every sum must come out right; a lost share or a share run twice changes it.
  constexpr int kLoops = 3000;
  constexpr int64_t kN = 997;
  auto caller = [&](int threads, int64_t& wrong_sums, int& threads_seen) {
    set_loop_threads(threads);
    threads_seen = loop_threads();
    std::vector<int64_t> values(static_cast<size_t>(kN));
    for (int loop = 0; loop < kLoops; ++loop) {
      std::vector<int64_t> partial(static_cast<size_t>(threads), 0);
      parallel_ranges(kN, [&](int share, int64_t begin, int64_t end) {
        int64_t s = 0;
        for (int64_t i = begin; i < end; ++i) {
          values[static_cast<size_t>(i)] = i + loop;
          s += i + loop;
        }
        partial[static_cast<size_t>(share)] = s;
      }, threads);
      int64_t sum = 0;
      for (const int64_t p : partial) sum += p;
      if (sum != kN * (kN - 1) / 2 + kN * loop) ++wrong_sums;
    }
  };
  int64_t wrong_a = 0, wrong_b = 0, wrong_c = 0;
  int seen_a = 0, seen_b = 0, seen_c = 0;
  std::thread a(caller, 2, std::ref(wrong_a), std::ref(seen_a));
  std::thread b(caller, 3, std::ref(wrong_b), std::ref(seen_b));
  LoopThreadsGuard guard;
  caller(5, wrong_c, seen_c);
  a.join();
  b.join();
  CHECK(wrong_a == 0);
  CHECK(wrong_b == 0);
  CHECK(wrong_c == 0);
  CHECK(seen_a == 2);
  CHECK(seen_b == 3);
  CHECK(seen_c == 5);
}

TEST_CASE("thread pool: the thread count is a setting of the calling thread", "[thread_pool]") {
  LoopThreadsGuard guard;
  set_loop_threads(3);
  int other_before = 0, other_after = 0;
  std::set<int> other_shares;
  std::thread other([&] {
    other_before = loop_threads();  // a new thread starts from the process default
    set_loop_threads(5);
    other_after = loop_threads();
    std::mutex mutex;
    parallel_ranges(1000, [&](int share, int64_t, int64_t) {
      std::lock_guard<std::mutex> lock(mutex);
      other_shares.insert(share);
    });
  });
  other.join();
  CHECK(other_before == default_loop_threads());
  CHECK(other_after == 5);
  CHECK(other_shares.size() == 5);
  CHECK(loop_threads() == 3);
  std::mutex mutex;
  std::set<int> shares;
  parallel_ranges(1000, [&](int share, int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mutex);
    shares.insert(share);
  });
  CHECK(shares.size() == 3);
  set_loop_threads(0);
  CHECK(loop_threads() == available_cores());
}

TEST_CASE("thread pool: an exception thrown in a loop body reaches the caller", "[thread_pool]") {
  for (const int throwing_share : {0, 1, 2}) {
    INFO("share " << throwing_share << " throws");
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH(parallel_ranges(300, [&](int share, int64_t, int64_t) {
      ++ran;
      if (share == throwing_share) throw std::runtime_error("share failed");
    }, 3), "share failed");
    CHECK(ran.load() == 3);  // the other shares still ran; the loop waited for them
  }
  // The pool is still usable afterwards.
  std::atomic<int64_t> sum{0};
  parallel_ranges(300, [&](int, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) sum += i;
  }, 3);
  CHECK(sum.load() == 300 * 299 / 2);
}

TEST_CASE("thread pool: NNR_THREAD_WAIT values", "[thread_pool]") {
  bool understood = false;
  ThreadWait w = parse_thread_wait(nullptr, &understood);
  CHECK(understood);
  CHECK(w.kind == ThreadWait::Default);
  CHECK(w.spin_microseconds == kDefaultSpinMicroseconds);
  CHECK(parse_thread_wait("default").kind == ThreadWait::Default);
  CHECK(parse_thread_wait("spin").kind == ThreadWait::Spin);
  CHECK(parse_thread_wait("passive").kind == ThreadWait::Passive);
  w = parse_thread_wait("1000", &understood);
  CHECK(understood);
  CHECK(w.kind == ThreadWait::Default);
  CHECK(w.spin_microseconds == 1000);
  for (const char* bad : {"active", "-5", "12us", "spinning"}) {
    w = parse_thread_wait(bad, &understood);
    CHECK_FALSE(understood);
    CHECK(w.kind == ThreadWait::Default);
  }
  CHECK(describe(parse_thread_wait("passive")).find("sleep at once") != std::string::npos);
  CHECK(describe(parse_thread_wait("250")).find("250 us") != std::string::npos);
  CHECK_FALSE(thread_wait_description().empty());
}

TEST_CASE("thread pool: GEMM, convolution and the penalty sum agree on 1, 2, 3 and 5 threads", "[thread_pool]") {
  LoopThreadsGuard guard;
  const int64_t m = 301, n = 257, k = 129;  // over the GEMM's parallel threshold
  std::vector<float> a(static_cast<size_t>(m * k)), b(static_cast<size_t>(k * n));
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>((i * 37) % 101) / 101.0f - 0.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>((i * 53) % 97) / 97.0f - 0.5f;
  ConvShape g;
  g.n = 9, g.c = 3, g.h = 12, g.w = 11, g.o = 5, g.kh = 3, g.kw = 3, g.stride = 1, g.padding = 1;
  std::vector<float> x(static_cast<size_t>(g.n * g.c * g.h * g.w)), w(static_cast<size_t>(g.o * g.c * 9));
  std::vector<float> dy(static_cast<size_t>(g.n * g.o * g.out_h() * g.out_w()));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 29) % 89) / 89.0f - 0.5f;
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>((i * 31) % 83) / 83.0f - 0.5f;
  for (size_t i = 0; i < dy.size(); ++i) dy[i] = static_cast<float>((i * 41) % 79) / 79.0f - 0.5f;
  const int64_t penalty_n = (1 << 16) + 12345;  // over the sum's parallel threshold
  std::vector<float> theta(static_cast<size_t>(penalty_n)), anchor(theta.size());
  for (size_t i = 0; i < theta.size(); ++i) {
    theta[i] = static_cast<float>(i % 13) * 0.1f;
    anchor[i] = static_cast<float>(i % 7) * 0.1f;
  }
  PenaltyArgs penalty;
  penalty.want_value = true;
  penalty.anchor = anchor.data();
  penalty.lambda = 1.0f;

  std::vector<float> c_one, y_one, dw_one;
  double sum_one = 0.0;
  for (const int threads : {1, 2, 3, 5}) {
    INFO("threads " << threads);
    set_loop_threads(threads);
    std::vector<float> c(static_cast<size_t>(m * n), 0.0f);
    gemm_cpu(a.data(), false, b.data(), false, c.data(), m, n, k, 1.0f, 0.0f);
    std::vector<float> y(dy.size(), 0.0f), dw(w.size(), 0.0f);
    conv2d_forward_cpu(x.data(), w.data(), nullptr, g, y.data(), /*samples_per_gemm=*/2);
    conv2d_backward_filter_cpu(x.data(), dy.data(), g, nullptr, 0, dw.data(), /*samples_per_gemm=*/2);
    const double sum = penalty_value_cpu(theta.data(), penalty_n, penalty);
    if (threads == 1) {
      c_one = c, y_one = y, dw_one = dw, sum_one = sum;
      continue;
    }
    auto max_difference = [](const std::vector<float>& p, const std::vector<float>& q) {
      float d = 0.0f;
      for (size_t i = 0; i < p.size(); ++i) d = std::max(d, std::fabs(p[i] - q[i]));
      return d;
    };
    CHECK(max_difference(c, c_one) < 1e-4f);
    CHECK(max_difference(y, y_one) < 1e-4f);
    CHECK(max_difference(dw, dw_one) < 1e-3f);
    CHECK(sum == Approx(sum_one).epsilon(1e-12));
  }
}
