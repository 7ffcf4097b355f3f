#include "regularizers/mas.h"

#include "regularizers/sampled_estimate.h"

namespace nnr {

Mas::Mas(MasOptions options, float gamma) : Regularizer(gamma, AnchorRule::Latest), options_(options) {}

std::vector<Tensor> Mas::estimate(Sequential& model, const Dataset& data) {
  return sampled_gradient_mean(model, data,
                               {OutputGradient::OutputNorm, GradientMoment::Absolute, options_.samples,
                                options_.batch_size, options_.seed, options_.collective},
                               rounds_++);
}

}  // namespace nnr
