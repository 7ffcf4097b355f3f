#include "engine/ops/gemm.h"

#include "engine/core/backend.h"
#include "engine/core/context.h"
#include "engine/core/error.h"

namespace nnr {

void gemm(const Placement& where, const float* a, bool transpose_a, const float* b, bool transpose_b, float* c,
          int64_t m, int64_t n, int64_t k, float alpha, float beta) {
  if (m == 0 || n == 0) return;
  Backend& backend = where.device == Device::CPU ? cpu_backend() : static_cast<Backend&>(where.context->backend());
  backend.gemm(a, transpose_a, b, transpose_b, c, m, n, k, alpha, beta);
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
  gemm(a.placement(), a.data(), transpose_a, b.data(), transpose_b, c.data(), m, n, k, alpha, beta);
}

}  // namespace nnr
