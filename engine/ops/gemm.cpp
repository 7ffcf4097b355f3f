#include "engine/ops/gemm.h"

#include <omp.h>

#include <Eigen/Core>

#include "engine/core/context.h"
#include "engine/core/error.h"
#ifdef NNR_WITH_CUDA
#include "kernels/blas.h"
#endif

namespace nnr {
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
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int64_t side = std::max(m, n);
  if (threads <= 1 || m * n * k < kParallelMacs || side < 2 * threads) {
    gemm_block(a, transpose_a, b, transpose_b, c, m, n, k, 0, m, 0, n, alpha, beta);
    return;
  }
  const bool split_rows = m >= n;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    // Block boundaries rounded to multiples of 16 floats (one AVX-512 register) where possible.
    const int64_t chunk = ((side + threads - 1) / threads + 15) / 16 * 16;
    const int64_t begin = std::min(side, t * chunk), end = std::min(side, begin + chunk);
    if (begin >= end) continue;
    if (split_rows)
      gemm_block(a, transpose_a, b, transpose_b, c, m, n, k, begin, end, 0, n, alpha, beta);
    else
      gemm_block(a, transpose_a, b, transpose_b, c, m, n, k, 0, m, begin, end, alpha, beta);
  }
}

void gemm_on(const Placement& where, const float* a, bool transpose_a, const float* b, bool transpose_b, float* c,
             int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  if (where.device == Device::CPU) {
    gemm_cpu(a, transpose_a, b, transpose_b, c, m, n, k, alpha, beta);
    return;
  }
#ifdef NNR_WITH_CUDA
  if (m == 0 || n == 0) return;
  kernels::gemm(where.context->blas(), a, transpose_a, b, transpose_b, c, m, n, k, alpha, beta);
#else
  (void)a, (void)b, (void)c, (void)k, (void)alpha, (void)beta;
  throw_not_implemented_on_cuda("gemm");
#endif
}

void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c, float alpha, float beta) {
  require_placement(b, a.placement(), "gemm", "B");
  require_placement(c, a.placement(), "gemm", "C");
  if (a.rank() != 2 || b.rank() != 2 || c.rank() != 2)
    throw InvalidArgument("[gemm] expected 2-D tensors, got " + shape_to_string(a.shape()) + ", " +
                          shape_to_string(b.shape()) + ", " + shape_to_string(c.shape()));
  const int64_t m = transpose_a ? a.dim(1) : a.dim(0);
  const int64_t k = transpose_a ? a.dim(0) : a.dim(1);
  const int64_t kb = transpose_b ? b.dim(1) : b.dim(0);
  const int64_t n = transpose_b ? b.dim(0) : b.dim(1);
  if (k != kb || c.dim(0) != m || c.dim(1) != n)
    throw InvalidArgument("[gemm] shapes do not match: op(A) " + shape_to_string({m, k}) + " * op(B) " +
                          shape_to_string({kb, n}) + " -> C " + shape_to_string(c.shape()));
  gemm_on(a.placement(), a.data(), transpose_a, b.data(), transpose_b, c.data(), m, n, k, alpha, beta);
}

}  // namespace nnr
