#include "regularizers/ewc.h"

#include "regularizers/sampled_estimate.h"

namespace nnr {

Ewc::Ewc(EwcOptions options, float gamma, AnchorRule anchor_rule, std::string name)
    : Regularizer(gamma, anchor_rule), options_(options), name_(std::move(name)) {}

std::vector<Tensor> Ewc::estimate(Sequential& model, const Dataset& data) {
  const OutputGradient target = options_.sampled_labels ? OutputGradient::SampledLabel : OutputGradient::TrueLabel;
  return sampled_gradient_mean(
      model, data, {target, GradientMoment::Squared, options_.samples, options_.batch_size, options_.seed, options_.collective}, rounds_++);
}

}  // namespace nnr
