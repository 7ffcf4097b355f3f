#pragma once
// Sequential: layers applied in order, named like PyTorch's nn.Sequential state_dict: the
// parameters of layer i are "i.weight" and "i.bias".
#include <memory>
#include <string>
#include <vector>

#include "engine/nn/layer.h"
#include "engine/nn/tape.h"

namespace nnr {

class Sequential {
 public:
  explicit Sequential(std::string spec = "") : spec_(std::move(spec)) {}
  Sequential(Sequential&&) = default;
  Sequential& operator=(Sequential&&) = default;

  // Appends a layer and names its parameters "<index>.<name>".
  Layer& add(std::unique_ptr<Layer> layer);

  // Inference: no tape, dropout off.
  Tensor forward(const Tensor& x);
  // Training: records every layer on the tape and returns the output (owned by the tape).
  const Tensor& forward(const Tensor& x, Tape& tape);

  // Moves every parameter tensor (value, grad, Ω, θ*, path integral) to `device`; masks stay on
  // the host (the optimizer uploads them). Optimizer state is not moved: move before the first step.
  void to(Device device, Context& ctx);

  std::vector<Parameter*> parameters();
  Parameter* find_parameter(const std::string& name);
  // Zeroes every gradient. A parameter whose Rows mask is the one it had at the last zero_grad
  // has only its open rows zeroed: backward writes no other row (the closed ones are still zero
  // from that call), so a selective step costs its open rows here too. Any other parameter (a new
  // mask, All or Elements, never zeroed) is zeroed whole. Change masks before zero_grad, as every
  // step does: a backward run under other masks between two zero_grads that see the same masks
  // would leave its values in rows those masks close.
  void zero_grad();
  // Opens every entry of every parameter (undoes any weight selection).
  void open_all();
  int64_t parameter_count();

  // FLOPs executed by the layers since the last reset, summed (engine/nn/compute_counts.h).
  ComputeCounts compute_counts() const;
  void reset_compute_counts();

  // Shape of the output for an input shape (batch included); names the failing layer.
  Shape output_shape(const Shape& input) const;
  // One line per layer, PyTorch style.
  std::string describe() const;

  const std::string& spec() const { return spec_; }
  size_t size() const { return layers_.size(); }
  Layer& layer(size_t i) { return *layers_[i]; }

 private:
  std::string spec_;
  std::vector<std::unique_ptr<Layer>> layers_;
  // zero_grad: each parameter's mask at its last zero_grad (parameters() order); reset by to().
  std::vector<UpdateMask> zeroed_with_;
  std::vector<bool> zeroed_;
};

}  // namespace nnr
