#include "regularizers/gradient_statistics.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "engine/core/error.h"
#include "engine/data/batcher.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/linear.h"
#include "engine/nn/tape.h"
#include "engine/ops/gemm.h"
#include "engine/ops/softmax_cross_entropy.h"

namespace nnr {
namespace {

// Opens every parameter for the estimator's own backward passes and puts the caller's masks
// back (and zeroes the gradients the passes accumulated) however the estimate ends.
class OpenAllGuard {
 public:
  explicit OpenAllGuard(Sequential& model) : model_(model) {
    for (Parameter* p : model.parameters()) saved_.push_back(p->mask);
    model.open_all();
  }
  ~OpenAllGuard() {
    const std::vector<Parameter*> params = model_.parameters();
    for (size_t i = 0; i < params.size() && i < saved_.size(); ++i) params[i]->mask = std::move(saved_[i]);
    model_.zero_grad();
  }
  OpenAllGuard(const OpenAllGuard&) = delete;
  OpenAllGuard& operator=(const OpenAllGuard&) = delete;

 private:
  Sequential& model_;
  std::vector<UpdateMask> saved_;
};

// The per-sample gradient of the chosen scalar with respect to the logits [b, K].
Tensor output_gradient(const Tensor& logits, const std::vector<int32_t>& labels, OutputGradient target, Rng& rng) {
  Tensor grad = Tensor::empty(logits.shape());
  const int64_t b = logits.dim(0), k = logits.dim(1);
  if (target == OutputGradient::OutputNorm) {
    for (int64_t i = 0; i < logits.numel(); ++i) grad[i] = 2.0f * logits[i];
    return grad;
  }
  softmax(logits, grad);  // grad = p, then p − onehot(y)
  for (int64_t n = 0; n < b; ++n) {
    float* row = grad.data() + n * k;
    int64_t y;
    if (target == OutputGradient::TrueLabel) {
      y = labels[static_cast<size_t>(n)];
    } else {
      const double u = rng.uniform();
      double c = 0.0;
      y = k - 1;
      for (int64_t j = 0; j < k; ++j) {
        c += row[j];
        if (u < c) {
          y = j;
          break;
        }
      }
    }
    row[y] -= 1.0f;
  }
  return grad;
}

struct Accumulator {
  const GradientStatisticsOptions& options;
  GradientStatistics& stats;
  std::unordered_map<const Parameter*, size_t> param_index;
  std::unordered_map<const Layer*, size_t> layer_index;

  void add_parameter(const Parameter& p, const float* g_sq, const float* g_abs) {
    const size_t i = param_index.at(&p);
    const int64_t n = p.value.numel();
    if (options.want_squared) {
      float* dst = stats.squared[i].data();
      for (int64_t k = 0; k < n; ++k) dst[k] += g_sq[k];
    }
    if (options.want_absolute) {
      float* dst = stats.absolute[i].data();
      for (int64_t k = 0; k < n; ++k) dst[k] += g_abs[k];
    }
  }

  void linear(Linear& layer, const Tensor& x, const Tensor& y, const Tensor& dy) {
    const int64_t n = x.dim(0), in = layer.in_features(), out = layer.out_features();
    std::vector<float> xt(static_cast<size_t>(n * in)), dt(static_cast<size_t>(n * out));
    std::vector<float> bias(static_cast<size_t>(out));
    const size_t w = param_index.at(&layer.weight()), b = param_index.at(&layer.bias());
    auto pass = [&](bool square, std::vector<Tensor>& dst) {
      for (int64_t k = 0; k < n * in; ++k) xt[k] = square ? x[k] * x[k] : std::fabs(x[k]);
      for (int64_t k = 0; k < n * out; ++k) dt[k] = square ? dy[k] * dy[k] : std::fabs(dy[k]);
      // Σ_n (δ_n x_nᵀ)∘(δ_n x_nᵀ) = (δ∘δ)ᵀ (x∘x), and the same with absolute values.
      gemm_cpu(dt.data(), true, xt.data(), false, dst[w].data(), out, in, n, 1.0f, 1.0f);
      float* db = dst[b].data();
      for (int64_t s = 0; s < n; ++s)
        for (int64_t o = 0; o < out; ++o) db[o] += dt[s * out + o];
    };
    if (options.want_squared) pass(true, stats.squared);
    if (options.want_absolute) pass(false, stats.absolute);
    if (options.want_neuron) {
      float* units = stats.neuron[layer_index.at(&layer)].data();
      for (int64_t s = 0; s < n; ++s)
        for (int64_t o = 0; o < out; ++o) units[o] += std::fabs(y[s * out + o] * dy[s * out + o]);
    }
  }

  void conv(Conv2d& layer, const Tensor& x, const Tensor& y, const Tensor& dy) {
    const int64_t n = x.dim(0), out = y.dim(1), pixels = y.dim(2) * y.dim(3);
    const int64_t x_per = x.numel() / n, y_per = y.numel() / n;
    if (options.want_squared || options.want_absolute) {
      Parameter& w = layer.weight();
      Tensor xn = Tensor::empty({1, x.dim(1), x.dim(2), x.dim(3)});
      Tensor dyn = Tensor::empty({1, y.dim(1), y.dim(2), y.dim(3)});
      Tensor gw(w.value.shape());
      std::vector<float> g_sq(static_cast<size_t>(w.value.numel())), g_abs(g_sq.size());
      std::vector<float> gb(static_cast<size_t>(out)), gb_sq(gb.size()), gb_abs(gb.size());
      for (int64_t s = 0; s < n; ++s) {
        std::copy(x.data() + s * x_per, x.data() + (s + 1) * x_per, xn.data());
        std::copy(dy.data() + s * y_per, dy.data() + (s + 1) * y_per, dyn.data());
        gw.zero();
        conv2d_backward_filter(xn, dyn, layer.geometry(), nullptr, gw);
        for (int64_t k = 0; k < gw.numel(); ++k) {
          g_sq[k] = gw[k] * gw[k];
          g_abs[k] = std::fabs(gw[k]);
        }
        add_parameter(w, g_sq.data(), g_abs.data());
        for (int64_t o = 0; o < out; ++o) {
          double sum = 0.0;
          for (int64_t p = 0; p < pixels; ++p) sum += dyn[o * pixels + p];
          gb[o] = static_cast<float>(sum);
          gb_sq[o] = gb[o] * gb[o];
          gb_abs[o] = std::fabs(gb[o]);
        }
        add_parameter(layer.bias(), gb_sq.data(), gb_abs.data());
      }
    }
    if (options.want_neuron) {
      float* units = stats.neuron[layer_index.at(&layer)].data();
      for (int64_t s = 0; s < n; ++s)
        for (int64_t o = 0; o < out; ++o) {
          double sum = 0.0;
          const int64_t base = s * y_per + o * pixels;
          for (int64_t p = 0; p < pixels; ++p) sum += static_cast<double>(y[base + p]) * dy[base + p];
          units[o] += static_cast<float>(std::fabs(sum));
        }
    }
  }

  void observe(Layer& layer, const Tensor& x, const Tensor& y, const Tensor& dy) {
    if (auto* linear_layer = dynamic_cast<Linear*>(&layer)) return linear(*linear_layer, x, y, dy);
    if (auto* conv_layer = dynamic_cast<Conv2d*>(&layer)) return conv(*conv_layer, x, y, dy);
    if (!layer.parameters().empty())
      throw Error("[regularizer] per-sample statistics of " + layer.describe() + " are not implemented");
  }
};

}  // namespace

GradientStatistics collect_gradient_statistics(Sequential& model, const Dataset& data,
                                               const GradientStatisticsOptions& options) {
  if (options.batch_size < 1)
    throw InvalidArgument("[regularizer] estimation batch size must be >= 1, got " +
                          std::to_string(options.batch_size));
  if (options.target == OutputGradient::TrueLabel && data.size() > 0 && data.labels.empty())
    throw InvalidArgument("[regularizer] the empirical Fisher needs labelled data (use the sampled Fisher or MAS "
                          "on unlabelled traffic)");
  GradientStatistics stats;
  const std::vector<Parameter*> params = model.parameters();
  Accumulator acc{options, stats, {}, {}};
  for (size_t i = 0; i < params.size(); ++i) {
    acc.param_index[params[i]] = i;
    stats.squared.emplace_back(options.want_squared ? Tensor(params[i]->value.shape()) : Tensor());
    stats.absolute.emplace_back(options.want_absolute ? Tensor(params[i]->value.shape()) : Tensor());
  }
  stats.neuron.resize(model.size());
  for (size_t l = 0; l < model.size(); ++l) {
    Layer& layer = model.layer(l);
    acc.layer_index[&layer] = l;
    if (!options.want_neuron) continue;
    if (auto* linear_layer = dynamic_cast<Linear*>(&layer)) stats.neuron[l] = Tensor({linear_layer->out_features()});
    if (auto* conv_layer = dynamic_cast<Conv2d*>(&layer)) stats.neuron[l] = Tensor({conv_layer->weight().rows()});
  }
  if (data.size() == 0) return stats;

  std::vector<int64_t> subset(static_cast<size_t>(data.size()));
  for (size_t i = 0; i < subset.size(); ++i) subset[i] = static_cast<int64_t>(i);
  Rng rng(options.seed);
  if (options.samples > 0 && options.samples < data.size()) {
    shuffle_indices(subset, rng);
    subset.resize(static_cast<size_t>(options.samples));
  }
  Collective* const parallel =
      options.collective && options.collective->size() > 1 ? options.collective : nullptr;
  if (parallel) {
    const RankShare mine = rank_share(static_cast<int64_t>(subset.size()), parallel->rank(), parallel->size());
    // A sampled label takes one draw per sample, in subset order.
    if (options.target == OutputGradient::SampledLabel)
      for (int64_t i = 0; i < mine.begin; ++i) rng.uniform();
    subset = std::vector<int64_t>(subset.begin() + mine.begin, subset.begin() + mine.end);
  }
  OpenAllGuard guard(model);
  Batcher batcher(data, std::move(subset), BatcherOptions{options.batch_size, false, false}, Rng(options.seed));
  Tape tape;
  tape.set_observer([&acc](size_t, Layer& layer, const Tensor& x, const Tensor& y, const Tensor& dy) {
    acc.observe(layer, x, y, dy);
  });
  Batch batch;
  while (batcher.next(batch)) {
    tape.clear();
    const Tensor& logits = model.forward(batch.x, tape);
    if (logits.rank() != 2)
      throw InvalidArgument("[regularizer] the model's output must be [N, classes], got " +
                            shape_to_string(logits.shape()));
    tape.backward_from(output_gradient(logits, batch.y, options.target, rng));
    stats.samples += batch.size();
  }
  if (parallel) {
    for (std::vector<Tensor>* sums : {&stats.squared, &stats.absolute, &stats.neuron})
      for (Tensor& t : *sums)
        if (t.defined() && t.numel()) parallel->all_reduce_sum(t.data(), t.numel());
    double samples = static_cast<double>(stats.samples);
    parallel->all_reduce_sum(&samples, 1);
    stats.samples = static_cast<int64_t>(samples);
  }
  return stats;
}

void divide_by_samples(std::vector<Tensor>& sums, int64_t samples) {
  if (samples <= 0) return;
  const float inv = 1.0f / static_cast<float>(samples);
  for (Tensor& t : sums)
    if (t.defined())
      for (int64_t k = 0; k < t.numel(); ++k) t[k] *= inv;
}

}  // namespace nnr
