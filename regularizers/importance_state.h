#pragma once
// The importance state a served model carries from round to round: Ω and θ* of every penalised
// parameter, stored as extra tensors of the model's own checkpoint under their own prefixes
//   nnr.omega.<parameter>   Ω
//   nnr.anchor.<parameter>  θ*
// so a plain safetensors / PyTorch reader still sees the model's tensors under their own names.
// (apps/trainer's save_model takes these as its extra tensors.)
#include <string>
#include <utility>
#include <vector>

#include "engine/io/checkpoint.h"
#include "engine/nn/sequential.h"

namespace nnr {

constexpr const char* kOmegaPrefix = "nnr.omega.";
constexpr const char* kAnchorPrefix = "nnr.anchor.";

// (name, tensor) of every defined Ω and θ*, pointing into the model's parameters (valid while
// the model lives and is not re-consolidated).
std::vector<std::pair<std::string, const Tensor*>> importance_tensors(Sequential& model);

// Sets Ω and θ* of each parameter from `file` where present (shapes must match; an Ω without its
// θ* is an error). Parameters absent from the file get no penalty. Returns how many got an anchor.
int restore_importance(Sequential& model, const Checkpoint& file);

}  // namespace nnr
