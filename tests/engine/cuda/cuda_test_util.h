#pragma once
// Shared by the engine GPU tests: the comparison they state their tolerances in.
#include <cmath>
#include <cstdint>

#include "engine/core/tensor.h"

namespace nnr::test {

// ‖got − want‖ / ‖want‖ (Frobenius, in double) for host tensors; the absolute norm when want is 0.
inline double relative_frobenius(const Tensor& got, const Tensor& want) {
  double diff = 0.0, norm = 0.0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    diff += d * d;
    norm += static_cast<double>(want[i]) * want[i];
  }
  return norm == 0.0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

}  // namespace nnr::test
