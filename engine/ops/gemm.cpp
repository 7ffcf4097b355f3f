#include "engine/ops/gemm.h"

#include <Eigen/Core>

#include "engine/core/error.h"

namespace nnr {
namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor, Eigen::Unaligned>;
using Map = Eigen::Map<RowMajor, Eigen::Unaligned>;

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

}  // namespace

void gemm_cpu(const float* a, bool transpose_a, const float* b, bool transpose_b, float* c, int64_t m, int64_t n,
              int64_t k, float alpha, float beta) {
  Map cm(c, m, n);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (beta == 0.0f) cm.setZero(); else cm *= beta;
    return;
  }
  // A stored [m, k] or, transposed, [k, m]; likewise B.
  ConstMap am(a, transpose_a ? k : m, transpose_a ? m : k);
  ConstMap bm(b, transpose_b ? n : k, transpose_b ? k : n);
  if (!transpose_a && !transpose_b) assign(cm, am, bm, alpha, beta);
  else if (!transpose_a && transpose_b) assign(cm, am, bm.transpose(), alpha, beta);
  else if (transpose_a && !transpose_b) assign(cm, am.transpose(), bm, alpha, beta);
  else assign(cm, am.transpose(), bm.transpose(), alpha, beta);
}

void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c, float alpha, float beta) {
  require_cpu(a, "gemm");
  require_cpu(b, "gemm");
  require_cpu(c, "gemm");
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
  gemm_cpu(a.data(), transpose_a, b.data(), transpose_b, c.data(), m, n, k, alpha, beta);
}

}  // namespace nnr
