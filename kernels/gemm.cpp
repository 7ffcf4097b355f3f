// The CPU reference of GEMM (kernels/gemm.h): Eigen on row-major maps, with threads splitting C
// into independent blocks.
#include "kernels/gemm.h"

#include <Eigen/Core>
#include <algorithm>

#include "kernels/thread_pool.h"

namespace nnr::kernels {
namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;
using ConstMap = Eigen::Map<const RowMajor, Eigen::Unaligned, Stride>;
using Map = Eigen::Map<RowMajor, Eigen::Unaligned, Stride>;

// Eigen must never thread a GEMM itself (see gemm_cpu); set once, before any GEMM runs.
const bool eigen_single_threaded = [] {
  Eigen::setNbThreads(1);
  return true;
}();

// Below this many multiply-adds a GEMM runs on one thread.
constexpr int64_t kParallelMacs = int64_t{1} << 20;

template <typename A, typename B>
void assign(Map& c, const A& a, const B& b, float alpha, float beta) {
  if (beta == 0.0f) {
    if (alpha == 1.0f)
      c.noalias() = a * b;
    else
      c.noalias() = alpha * (a * b);
  } else {
    if (beta != 1.0f) c *= beta;
    if (alpha == 1.0f)
      c.noalias() += a * b;
    else
      c.noalias() += alpha * (a * b);
  }
}

// One block of C: rows [r0, r1) and columns [c0, c1), single-threaded.
void gemm_block(const float* a, bool ta, const float* b, bool tb, float* c, int64_t m, int64_t n, int64_t k,
                int64_t r0, int64_t r1, int64_t c0, int64_t c1, float alpha, float beta) {
  const int64_t rows = r1 - r0, cols = c1 - c0;
  Map cm(c + r0 * n + c0, rows, cols, Stride(n));
  if (k == 0) {
    if (beta == 0.0f) cm.setZero(); else cm *= beta;
    return;
  }
  // op(A)[r0:r1, :] and op(B)[:, c0:c1] as views of the stored matrices.
  ConstMap am = ta ? ConstMap(a + r0, k, rows, Stride(m)) : ConstMap(a + r0 * k, rows, k, Stride(k));
  ConstMap bm = tb ? ConstMap(b + c0 * k, cols, k, Stride(k)) : ConstMap(b + c0, k, cols, Stride(n));
  if (!ta && !tb) assign(cm, am, bm, alpha, beta);
  else if (!ta && tb) assign(cm, am, bm.transpose(), alpha, beta);
  else if (ta && !tb) assign(cm, am.transpose(), bm, alpha, beta);
  else assign(cm, am.transpose(), bm.transpose(), alpha, beta);
}

}  // namespace

void gemm_cpu(const float* a, bool transpose_a, const float* b, bool transpose_b, float* c, int64_t m, int64_t n,
              int64_t k, float alpha, float beta) {
  if (m == 0 || n == 0) return;
  // Threads split C into independent blocks (along its larger side) and run Eigen's GEMM on
  // one thread each. Eigen's own parallel GEMM makes its threads busy-wait on each other's
  // packing; when the cores are shared with another process (a model server, a build) that
  // turned a 0.65 s epoch into 90 s. Independent blocks only meet at the end of the loop.
  const int threads = in_parallel_loop() ? 1 : loop_threads();
  const int64_t side = std::max(m, n);
  if (threads <= 1 || m * n * k < kParallelMacs || side < 2 * threads) {
    gemm_block(a, transpose_a, b, transpose_b, c, m, n, k, 0, m, 0, n, alpha, beta);
    return;
  }
  const bool split_rows = m >= n;
  // Block boundaries rounded to multiples of 16 floats (one AVX-512 register) where possible.
  const int64_t chunk = ((side + threads - 1) / threads + 15) / 16 * 16;
  parallel_ranges(threads, [&](int, int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) {
      const int64_t begin = std::min(side, t * chunk), end = std::min(side, begin + chunk);
      if (begin >= end) continue;
      if (split_rows)
        gemm_block(a, transpose_a, b, transpose_b, c, m, n, k, begin, end, 0, n, alpha, beta);
      else
        gemm_block(a, transpose_a, b, transpose_b, c, m, n, k, 0, m, begin, end, alpha, beta);
    }
  }, threads);
}

}  // namespace nnr::kernels
