#pragma once
// SNI, synapse + neuron importance (Klabjan & Zhu 2020): a weight W[i, j] of a layer, reading
// unit j of the layer below and feeding unit i of its own layer, gets
//   Ω_new[i, j] = a·S[i, j]/mean(S) + b·N_out[i]/mean(N_out) + c·N_in[j]/mean(N_in)
// S the wrapped synapse regularizer's estimate (MAS by default), N the neuron importance
// (neuron_importance.h), each divided by its mean over the parameter tensor / the layer's units
// so that the terms are comparable and one λ fits every layer. A bias gets a·S/mean(S) + b·N_out.
// The first layer's inputs are data, not neurons: its c-term is 0. An input j of a Linear that
// follows a Conv2d (through Flatten) belongs to channel j / (H·W); of a Conv2d, to channel
// j / (k·k) of its row. a, b, c are options; a = 0 never runs the synapse estimate and
// b = c = 0 never runs the neuron estimate (the ablations).
#include <memory>

#include "regularizers/neuron_importance.h"
#include "regularizers/regularizer.h"

namespace nnr {

struct SniOptions {
  float synapse_weight = 1.0f;     // a
  float neuron_out_weight = 1.0f;  // b
  float neuron_in_weight = 1.0f;   // c
  NeuronImportanceOptions neuron;
};

class Sni final : public Regularizer {
 public:
  // The synapse regularizer contributes only its estimate (its own γ and anchor rule are unused).
  Sni(std::unique_ptr<Regularizer> synapse, SniOptions options, float gamma);
  std::string name() const override { return "sni"; }
  void begin_task(Sequential& model) override;
  std::vector<Tensor> estimate(Sequential& model, const Dataset& data) override;
  uint64_t estimates_made() const override { return rounds_; }
  // The wrapped synapse regularizer made one estimate per SNI estimate (when it is used at all).
  void set_estimates_made(uint64_t count) override {
    rounds_ = count;
    if (synapse_) synapse_->set_estimates_made(count);
  }

 private:
  std::unique_ptr<Regularizer> synapse_;
  SniOptions options_;
  uint64_t rounds_ = 0;
};

}  // namespace nnr
