#include "regularizers/sni.h"

#include <cmath>
#include <unordered_map>

#include "engine/core/error.h"

namespace nnr {
namespace {

// t / mean(t), or zeros when the mean is 0 (nothing measured).
std::vector<float> normalised(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()), 0.0f);
  double sum = 0.0;
  for (int64_t k = 0; k < t.numel(); ++k) sum += t[k];
  if (!(sum > 0.0) || !std::isfinite(sum)) return out;
  const double inv = static_cast<double>(t.numel()) / sum;
  for (int64_t k = 0; k < t.numel(); ++k) out[static_cast<size_t>(k)] = static_cast<float>(t[k] * inv);
  return out;
}

void check_weight(float w, const char* what) {
  if (!(w >= 0.0f) || !std::isfinite(w))
    throw InvalidArgument(std::string("[regularizer] sni: ") + what + " must be a finite number >= 0, got " +
                          std::to_string(w));
}

}  // namespace

Sni::Sni(std::unique_ptr<Regularizer> synapse, SniOptions options, float gamma)
    : Regularizer(gamma, AnchorRule::Latest), synapse_(std::move(synapse)), options_(options) {
  check_weight(options.synapse_weight, "synapse weight");
  check_weight(options.neuron_out_weight, "output-neuron weight");
  check_weight(options.neuron_in_weight, "input-neuron weight");
  if (options.synapse_weight > 0.0f && !synapse_)
    throw InvalidArgument("[regularizer] sni: a synapse weight > 0 needs a synapse regularizer");
}

void Sni::begin_task(Sequential& model) {
  if (synapse_) synapse_->begin_task(model);
}

std::vector<Tensor> Sni::estimate(Sequential& model, const Dataset& data) {
  const std::vector<Parameter*> params = model.parameters();
  std::unordered_map<const Parameter*, size_t> index;
  for (size_t i = 0; i < params.size(); ++i) index[params[i]] = i;

  const float a = options_.synapse_weight, b = options_.neuron_out_weight, c = options_.neuron_in_weight;
  std::vector<Tensor> synapse;
  if (a > 0.0f) synapse = synapse_->estimate(model, data);
  std::vector<Tensor> neuron;
  if (b > 0.0f || c > 0.0f) {
    NeuronImportanceOptions o = options_.neuron;
    o.seed += 7919 * rounds_;
    neuron = estimate_neuron_importance(model, data, o);
  }
  ++rounds_;
  const std::vector<int64_t> producer = input_producers(model);

  std::vector<Tensor> omega;
  for (Parameter* p : params) omega.emplace_back(p->value.shape());
  for (size_t l = 0; l < model.size(); ++l) {
    const std::vector<Parameter*> layer_params = model.layer(l).parameters();
    if (layer_params.empty()) continue;
    std::vector<float> n_out, n_in;
    if (!neuron.empty()) {
      if (!neuron[l].defined())
        throw Error("[regularizer] sni: no neuron importance for " + model.layer(l).describe());
      n_out = normalised(neuron[l]);
      if (producer[l] >= 0) n_in = normalised(neuron[static_cast<size_t>(producer[l])]);
    }
    for (Parameter* p : layer_params) {
      const size_t i = index.at(p);
      Tensor& o = omega[i];
      const int64_t rows = p->rows(), len = p->row_length();
      if (a > 0.0f) {
        const std::vector<float> s = normalised(synapse[i]);
        for (int64_t k = 0; k < o.numel(); ++k) o[k] = a * s[static_cast<size_t>(k)];
      }
      if (n_out.empty()) continue;
      if (static_cast<int64_t>(n_out.size()) != rows)
        throw Error("[regularizer] sni: " + p->name + " has " + std::to_string(rows) + " rows but its layer " +
                    std::to_string(n_out.size()) + " units");
      const bool is_bias = p->value.rank() == 1;
      const int64_t units_in = static_cast<int64_t>(n_in.size());
      const int64_t group = (!is_bias && units_in > 0 && len % units_in == 0) ? len / units_in : 0;
      for (int64_t r = 0; r < rows; ++r) {
        float* row = o.data() + r * len;
        const float out_term = b * n_out[static_cast<size_t>(r)];
        for (int64_t j = 0; j < len; ++j) {
          row[j] += out_term;
          if (group > 0) row[j] += c * n_in[static_cast<size_t>(j / group)];
        }
      }
    }
  }
  return omega;
}

}  // namespace nnr
