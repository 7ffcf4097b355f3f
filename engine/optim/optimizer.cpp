#include "engine/optim/optimizer.h"

#include <cmath>

#include "engine/core/error.h"
#include "engine/core/backend.h"
#include "engine/optim/mask_args.h"

namespace nnr {

Optimizer::Optimizer() = default;
Optimizer::~Optimizer() = default;

double Optimizer::step(const std::vector<Parameter*>& params, bool want_penalty) {
  double penalty_total = 0.0;
  for (size_t i = 0; i < params.size(); ++i) {
    Parameter* p = params[i];
    const Placement where = p->value.placement();
    require_placement(p->grad, where, "optimizer", ("gradient of " + p->name).c_str());
    require_shape(p->grad, p->value.shape(), "optimizer", ("gradient of " + p->name).c_str());
    p->mask.validate(p->value.numel(), p->rows(), p->name);
    kernels::PenaltyArgs penalty;
    if (p->anchor.defined() && lambda_ != 0.0f) {
      require_placement(p->anchor, where, "optimizer", ("anchor of " + p->name).c_str());
      require_shape(p->anchor, p->value.shape(), "optimizer", ("anchor of " + p->name).c_str());
      penalty.anchor = p->anchor.data();
      if (p->omega.defined()) {
        require_placement(p->omega, where, "optimizer", ("importance of " + p->name).c_str());
        require_shape(p->omega, p->value.shape(), "optimizer", ("importance of " + p->name).c_str());
        penalty.omega = p->omega.data();
      }
      penalty.lambda = lambda_;
      penalty.want_value = want_penalty;
    }
    if (p->path_integral.defined()) {
      require_placement(p->path_integral, where, "optimizer", ("path integral of " + p->name).c_str());
      require_shape(p->path_integral, p->value.shape(), "optimizer", ("path integral of " + p->name).c_str());
      penalty.path_integral = p->path_integral.data();
    }
    if (p->mask.selects_none()) {
      // Nothing to update; the penalty value is still reported.
      penalty_total += backend_of(p->value).penalty_value(p->value.data(), p->value.numel(), penalty);
      continue;
    }
    if (where.device == Device::CUDA) {
      if (!device_masks_) device_masks_ = std::make_unique<DeviceMaskCache>();
      const float* scalars = device_scalars_ ? device_scalars_ + kStepScalars * i : nullptr;
      penalty_total += update(*p, device_masks_->view_for(*p), penalty, scalars);
    } else {
      penalty_total += update(*p, mask_args_of(p->mask, p->row_length()), penalty, nullptr);
    }
  }
  return penalty_total;
}

const Tensor* Sgd::velocity(const Parameter& p) const {
  auto it = velocity_.find(&p);
  return it == velocity_.end() ? nullptr : &it->second;
}

void Sgd::write_step_scalars(const std::vector<Parameter*>& params, float* host_block) const {
  for (size_t i = 0; i < params.size(); ++i) kernels::step_scalars(config_, host_block + kStepScalars * i);
}

double Sgd::update(Parameter& p, const kernels::MaskArgs& mask, const kernels::PenaltyArgs& penalty, const float* device_scalars) {
  float* velocity = nullptr;
  if (config_.momentum != 0.0f) {
    auto it = velocity_.find(&p);
    if (it == velocity_.end()) it = velocity_.emplace(&p, Tensor(p.value.shape(), p.value.placement())).first;
    velocity = it->second.data();
  }
  SgdConfig config = config_;
  config.scalars = device_scalars;
  return backend_of(p.value).sgd_update(p.value.data(), p.grad.data(), velocity, p.value.numel(), config, mask,
                                         penalty);
}

const Adam::State* Adam::state(const Parameter& p) const {
  auto it = state_.find(&p);
  return it == state_.end() ? nullptr : &it->second;
}

void Adam::write_step_scalars(const std::vector<Parameter*>& params, float* host_block) const {
  for (size_t i = 0; i < params.size(); ++i) {
    const State* s = state(*params[i]);
    kernels::step_scalars(config_, (s ? s->step : 0) + 1, host_block + kStepScalars * i);
  }
}

void Adam::count_replayed_step(const std::vector<Parameter*>& params) {
  // As step() does: a parameter whose mask selects nothing is not updated and keeps its count.
  for (Parameter* p : params)
    if (!p->mask.selects_none()) {
      auto it = state_.find(p);
      if (it == state_.end())
        throw Error("[adam] replayed step for parameter " + p->name + " that has never been stepped");
      ++it->second.step;
    }
}

double Adam::update(Parameter& p, const kernels::MaskArgs& mask, const kernels::PenaltyArgs& penalty, const float* device_scalars) {
  auto it = state_.find(&p);
  if (it == state_.end())
    it = state_.emplace(&p, State{Tensor(p.value.shape(), p.value.placement()),
                                  Tensor(p.value.shape(), p.value.placement()), 0})
             .first;
  State& s = it->second;
  ++s.step;
  AdamConfig config = config_;
  config.scalars = device_scalars;
  return backend_of(p.value).adam_update(p.value.data(), p.grad.data(), s.m.data(), s.v.data(), p.value.numel(),
                                         s.step, config, mask, penalty);
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& o) {
  if (!(o.lr > 0.0f) || !std::isfinite(o.lr))
    throw InvalidArgument("[optimizer] learning rate must be a positive number, got " + std::to_string(o.lr));
  if (o.name == "sgd") {
    SgdConfig c;
    c.lr = o.lr;
    c.momentum = o.momentum;
    c.weight_decay = o.weight_decay;
    return std::make_unique<Sgd>(c);
  }
  if (o.name == "adam") {
    AdamConfig c;
    c.lr = o.lr;
    c.weight_decay = o.weight_decay;
    return std::make_unique<Adam>(c);
  }
  throw InvalidArgument("[optimizer] unknown optimizer '" + o.name + "' (valid: sgd, adam)");
}

}  // namespace nnr
