#include "regularizers/sampled_estimate.h"

namespace nnr {

std::vector<Tensor> sampled_gradient_mean(Sequential& model, const Dataset& data, const SampledEstimate& estimate,
                                          uint64_t round) {
  GradientStatisticsOptions o;
  o.target = estimate.target;
  o.samples = estimate.samples;
  o.batch_size = estimate.batch_size;
  o.seed = estimate.seed + 7919 * round;  // a prime step: each round draws another subset
  o.want_squared = estimate.moment == GradientMoment::Squared;
  o.want_absolute = estimate.moment == GradientMoment::Absolute;
  o.want_neuron = false;
  o.collective = estimate.collective;
  GradientStatistics stats = collect_gradient_statistics(model, data, o);
  std::vector<Tensor>& sums = o.want_squared ? stats.squared : stats.absolute;
  divide_by_samples(sums, stats.samples);
  return std::move(sums);
}

}  // namespace nnr
