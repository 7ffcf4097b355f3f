#pragma once
// Per-sample gradient statistics in one backward pass per batch (never one per sample), read
// from the tape's backward observer. For every Linear / Conv2d parameter θ, over the samples n:
//   squared[θ]  = Σ_n g_n²     (diagonal Fisher when the output gradient is that of −log p(y|x))
//   absolute[θ] = Σ_n |g_n|    (MAS when the output gradient is that of ‖f(x)‖²)
// and for every Linear / Conv2d layer, one number per output unit (row / filter):
//   neuron[l][u] = Σ_n |Σ_pixels a_nu · ∂/∂a_nu|  (first-order Taylor cost of zeroing the unit)
// where g_n is sample n's own gradient. The backward starts from a per-sample output gradient
// (no 1/N of a batch-mean loss), so each sample's δ is exact. How:
//   Linear, x [N, in], δ [N, out]: g_n = δ_n x_nᵀ, so Σ_n g_n² = (δ²)ᵀ(x²) and Σ_n |g_n| = |δ|ᵀ|x|,
//     one GEMM each; bias: Σ δ², Σ |δ|.
//   Conv2d: g_n = conv2d_backward_filter of sample n alone, a loop over the batch's samples inside
//     the one backward (a sum over pixels comes before the square, so no single GEMM exists).
// Layers without parameters contribute nothing; other parametric layers are an error.
#include <cstdint>
#include <vector>

#include "engine/core/collective.h"
#include "engine/data/dataset.h"
#include "engine/nn/sequential.h"

namespace nnr {

enum class OutputGradient {
  TrueLabel,     // ∂(−log p(y|x))/∂logits = p − onehot(y): empirical Fisher
  SampledLabel,  // the same with y drawn from p(·|x): the Fisher of the model's own distribution
  OutputNorm,    // ∂‖f(x)‖²/∂f = 2 f: MAS, label-free
};

struct GradientStatisticsOptions {
  OutputGradient target = OutputGradient::OutputNorm;
  int64_t samples = 0;       // a seeded random subset of this many samples; 0: every sample
  int64_t batch_size = 256;
  uint64_t seed = 0;
  bool want_squared = true;
  bool want_absolute = true;
  bool want_neuron = true;
  // Data parallel: with a collective of several ranks (every rank calling with the same model,
  // data and options), each rank takes a contiguous share of the chosen samples and the sums are
  // all-reduced; every rank returns the statistics of all of them (sampled labels included: a
  // rank skips the draws of the samples before its share).
  Collective* collective = nullptr;
};

struct GradientStatistics {
  int64_t samples = 0;
  std::vector<Tensor> squared;   // per parameter, model.parameters() order (undefined if not wanted)
  std::vector<Tensor> absolute;  // per parameter
  std::vector<Tensor> neuron;    // per layer index of the model: [units], defined for Linear / Conv2d
};

GradientStatistics collect_gradient_statistics(Sequential& model, const Dataset& data,
                                               const GradientStatisticsOptions& options);

// Sums of squares/absolutes divided by the sample count (a mean per sample), in place.
void divide_by_samples(std::vector<Tensor>& sums, int64_t samples);

}  // namespace nnr
