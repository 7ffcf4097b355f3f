#pragma once
// Parameter: a named trainable tensor with its gradient, the mask of entries that the next
// backward computes and the next optimizer step changes, and the importance penalty's inputs.
#include <string>

#include "engine/core/tensor.h"
#include "engine/optim/update_mask.h"

namespace nnr {

struct Parameter {
  std::string name;  // PyTorch state_dict name, e.g. "0.weight"
  Tensor value;
  Tensor grad;       // same shape as value; backward accumulates into it
  UpdateMask mask;   // default: every entry is open

  // The penalty λ Σ Ω (θ − θ*)² (λ belongs to the optimizer). regularizers/ fills these.
  Tensor omega;          // Ω, same shape; undefined means Ω ≡ 1 (plain L2 to the anchor)
  Tensor anchor;         // θ*, same shape; undefined means no penalty on this parameter
  Tensor path_integral;  // SI's running −Σ g·Δθ, same shape; undefined means not tracked

  // Rows along dim 0: output neurons of a Linear weight [out, in], filters of a Conv weight.
  int64_t rows() const { return value.rank() ? value.dim(0) : 1; }
  int64_t row_length() const { return rows() ? value.numel() / rows() : 0; }
};

}  // namespace nnr
