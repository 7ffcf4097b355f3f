#include "regularizers/mas.h"

#include "regularizers/gradient_statistics.h"

namespace nnr {

Mas::Mas(MasOptions options, float gamma) : Regularizer(gamma, AnchorRule::Latest), options_(options) {}

std::vector<Tensor> Mas::estimate(Sequential& model, const Dataset& data) {
  GradientStatisticsOptions o;
  o.target = OutputGradient::OutputNorm;
  o.samples = options_.samples;
  o.batch_size = options_.batch_size;
  o.seed = options_.seed + 7919 * rounds_++;
  o.want_squared = false;
  o.want_neuron = false;
  GradientStatistics stats = collect_gradient_statistics(model, data, o);
  divide_by_samples(stats.absolute, stats.samples);
  return std::move(stats.absolute);
}

}  // namespace nnr
