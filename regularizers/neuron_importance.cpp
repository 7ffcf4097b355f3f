#include "regularizers/neuron_importance.h"

namespace nnr {

std::vector<Tensor> estimate_neuron_importance(Sequential& model, const Dataset& data,
                                               const NeuronImportanceOptions& options) {
  GradientStatisticsOptions o;
  o.target = options.target;
  o.samples = options.samples;
  o.batch_size = options.batch_size;
  o.seed = options.seed;
  o.want_squared = false;
  o.want_absolute = false;
  o.want_neuron = true;
  o.collective = options.collective;
  GradientStatistics stats = collect_gradient_statistics(model, data, o);
  divide_by_samples(stats.neuron, stats.samples);
  return std::move(stats.neuron);
}

std::vector<int64_t> input_producers(Sequential& model) {
  std::vector<int64_t> producer(model.size(), -1);
  int64_t last = -1;
  for (size_t l = 0; l < model.size(); ++l) {
    if (model.layer(l).parameters().empty()) continue;
    producer[l] = last;
    last = static_cast<int64_t>(l);
  }
  return producer;
}

}  // namespace nnr
