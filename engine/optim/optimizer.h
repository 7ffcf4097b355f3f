#pragma once
// Optimizers: each step is one fused pass per parameter (kernels/masked_update.h) that honours the
// parameter's UpdateMask and applies the importance penalty λ Σ Ω (θ − θ*)² in closed form.
// Optimizer state is created on a parameter's first step and keyed by the Parameter's address,
// so parameters must outlive the optimizer and not move. A parameter on CUDA is updated by the
// same fused kernel through its Context's backend (engine/core/backend.h); its state lives beside it.
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/optim/parameter.h"
#include "kernels/masked_update.h"

namespace nnr {

class DeviceMaskCache;

// The optimizers' settings are the update ops' argument structs (one declaration, kernels/).
using SgdConfig = kernels::SgdArgs;
using AdamConfig = kernels::AdamArgs;

class Optimizer {
 public:
  Optimizer();
  virtual ~Optimizer();
  // Updates every parameter's open entries from its gradient. Returns λ Σ Ω (θ − θ*)² over
  // all penalised parameters (before the step) when want_penalty, else 0.
  double step(const std::vector<Parameter*>& params, bool want_penalty = false);

  virtual const char* name() const = 0;
  virtual float learning_rate() const = 0;
  virtual void set_learning_rate(float lr) = 0;
  // λ of the importance penalty (0: off, whatever Ω and θ* hold).
  void set_penalty_strength(float lambda) { lambda_ = lambda; }
  float penalty_strength() const { return lambda_; }

  // For a captured step (CUDA Graphs, apps/trainer/graphed_step.h), whose kernel arguments are
  // frozen: after read_step_scalars_from(block), CUDA updates read their learning rate and Adam's
  // bias corrections from the device `block` (kStepScalars floats per parameter, slot i for
  // params[i] of step()). write_step_scalars fills a host image of the block with the values the
  // next step() of `params` uses; count_replayed_step advances what a step advances on the host
  // (Adam's step counts) for a step that ran as a replay. A null block: arguments again.
  static constexpr int kStepScalars = kernels::kStepScalarCount;
  void read_step_scalars_from(const float* device_block) { device_scalars_ = device_block; }
  virtual void write_step_scalars(const std::vector<Parameter*>& params, float* host_block) const = 0;
  virtual void count_replayed_step(const std::vector<Parameter*>& /*params*/) {}

 protected:
  // device_scalars: this parameter's slot of the step-scalar block, or null.
  virtual double update(Parameter& p, const kernels::MaskArgs& mask, const kernels::PenaltyArgs& penalty,
                        const float* device_scalars) = 0;

 private:
  float lambda_ = 0.0f;
  const float* device_scalars_ = nullptr;
  std::unique_ptr<DeviceMaskCache> device_masks_;  // created on the first CUDA parameter
};

class Sgd final : public Optimizer {
 public:
  explicit Sgd(SgdConfig config) : config_(config) {}
  const char* name() const override { return "sgd"; }
  float learning_rate() const override { return config_.lr; }
  void set_learning_rate(float lr) override { config_.lr = lr; }
  const Tensor* velocity(const Parameter& p) const;
  void write_step_scalars(const std::vector<Parameter*>& params, float* host_block) const override;

 protected:
  double update(Parameter& p, const kernels::MaskArgs& mask, const kernels::PenaltyArgs& penalty, const float* device_scalars) override;

 private:
  SgdConfig config_;
  std::unordered_map<const Parameter*, Tensor> velocity_;
};

class Adam final : public Optimizer {
 public:
  explicit Adam(AdamConfig config) : config_(config) {}
  const char* name() const override { return "adam"; }
  float learning_rate() const override { return config_.lr; }
  void set_learning_rate(float lr) override { config_.lr = lr; }
  struct State {
    Tensor m, v;
    int64_t step = 0;
  };
  const State* state(const Parameter& p) const;
  void write_step_scalars(const std::vector<Parameter*>& params, float* host_block) const override;
  void count_replayed_step(const std::vector<Parameter*>& params) override;

 protected:
  double update(Parameter& p, const kernels::MaskArgs& mask, const kernels::PenaltyArgs& penalty, const float* device_scalars) override;

 private:
  AdamConfig config_;
  std::unordered_map<const Parameter*, State> state_;
};

struct OptimizerOptions {
  std::string name = "sgd";  // sgd | adam
  float lr = 0.05f;
  float momentum = 0.9f;     // sgd only
  float weight_decay = 0.0f;
};
// Throws nnr::InvalidArgument listing the valid names when `name` is unknown.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& options);

}  // namespace nnr
