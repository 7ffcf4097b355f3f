#pragma once
// The per-parameter mean that EWC (squared gradients: the Fisher) and MAS (absolute gradients of
// the output norm) estimate from a seeded sample of the data, one estimate per round.
#include <cstdint>
#include <vector>

#include "regularizers/gradient_statistics.h"

namespace nnr {

enum class GradientMoment { Squared, Absolute };

struct SampledEstimate {
  OutputGradient target = OutputGradient::OutputNorm;
  GradientMoment moment = GradientMoment::Squared;
  int64_t samples = 1024;
  int64_t batch_size = 256;
  uint64_t seed = 0;
  Collective* collective = nullptr;  // data parallel: the estimate split across the ranks
};

// The mean over `samples` samples drawn with a seed that differs from round to round.
std::vector<Tensor> sampled_gradient_mean(Sequential& model, const Dataset& data, const SampledEstimate& estimate,
                                          uint64_t round);

}  // namespace nnr
