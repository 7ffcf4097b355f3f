#include "regularizers/ewc.h"

#include "regularizers/gradient_statistics.h"

namespace nnr {

Ewc::Ewc(EwcOptions options, float gamma, AnchorRule anchor_rule, std::string name)
    : Regularizer(gamma, anchor_rule), options_(options), name_(std::move(name)) {}

std::vector<Tensor> Ewc::estimate(Sequential& model, const Dataset& data) {
  GradientStatisticsOptions o;
  o.target = options_.sampled_labels ? OutputGradient::SampledLabel : OutputGradient::TrueLabel;
  o.samples = options_.samples;
  o.batch_size = options_.batch_size;
  o.seed = options_.seed + 7919 * rounds_++;
  o.want_absolute = false;
  o.want_neuron = false;
  GradientStatistics stats = collect_gradient_statistics(model, data, o);
  divide_by_samples(stats.squared, stats.samples);
  return std::move(stats.squared);
}

}  // namespace nnr
