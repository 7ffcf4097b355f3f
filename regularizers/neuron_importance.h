#pragma once
// Neuron importance: one number per output unit (row of a Linear, filter of a Conv2d),
//   I_u = E_x |Σ_pixels a_u · ∂‖f(x)‖²/∂a_u|
// with a_u the unit's pre-activation output (Linear / Conv2d output) and f the logits.
// Why this estimator: it is the first-order Taylor estimate of how much ‖f‖² changes when the unit
// is removed (its activation set to 0), the pruning criterion of Molchanov et al. 2017, computed
// from the same backward pass as MAS and label-free like it. For a unit followed by ReLU,
// z·∂/∂z equals h·∂/∂h of the post-ReLU activation h (both are 0 where z <= 0), so reading the
// layer's own output is the Taylor estimate for removing the ReLU unit too. The absolute value
// is taken per sample (after the sum over a filter's pixels), so opposite-signed effects on
// different samples do not cancel.
#include <cstdint>
#include <vector>

#include "engine/data/dataset.h"
#include "engine/nn/sequential.h"
#include "regularizers/gradient_statistics.h"

namespace nnr {

struct NeuronImportanceOptions {
  int64_t samples = 1024;
  int64_t batch_size = 256;
  uint64_t seed = 0;
  OutputGradient target = OutputGradient::OutputNorm;
  Collective* collective = nullptr;  // data parallel: the estimate split across the ranks
};

// Per layer index of the model: [units] for Linear / Conv2d layers, undefined for the others.
std::vector<Tensor> estimate_neuron_importance(Sequential& model, const Dataset& data,
                                               const NeuronImportanceOptions& options);

// For each layer index: the index of the Linear / Conv2d layer whose units feed it (through
// ReLU, pooling, flatten or dropout), or -1 for the first such layer (its inputs are the data)
// and for layers without parameters.
std::vector<int64_t> input_producers(Sequential& model);

}  // namespace nnr
