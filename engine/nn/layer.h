#pragma once
// Layer: one hand-written forward and backward. Gradient convention: backward accumulates
// into its parameters' grad (only the entries their UpdateMask opens; a parameter whose mask
// selects nothing costs no weight-gradient work) and overwrites dx.
// Every layer counts the FLOPs its forward and backward execute (engine/nn/compute_counts.h).
#include <memory>
#include <string>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/nn/compute_counts.h"
#include "engine/optim/parameter.h"

namespace nnr {

class Layer {
 public:
  virtual ~Layer() = default;
  // PyTorch-style description, e.g. "Linear(784, 256)".
  virtual std::string describe() const = 0;
  // Output shape (batch dimension included) for an input shape; throws nnr::InvalidArgument
  // naming the layer when the input does not fit.
  virtual Shape output_shape(const Shape& input) const = 0;
  // training = true: dropout is active and the layer keeps what its backward needs besides x, y.
  virtual Tensor forward(const Tensor& x, bool training) = 0;
  // x, y: this layer's input and output of the last training forward; dy = dL/dy.
  // dx == nullptr: the input needs no gradient (the layer skips that work).
  virtual void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) = 0;
  virtual std::vector<Parameter*> parameters() { return {}; }

  // True if any parameter of this layer has an open entry (its gradient is needed).
  bool has_open_parameters();

  // FLOPs executed since construction or the last reset (convention: compute_counts.h).
  const ComputeCounts& compute_counts() const { return counts_; }
  void reset_compute_counts() { counts_ = ComputeCounts(); }

 protected:
  ComputeCounts counts_;  // forward and backward add what they execute
};

}  // namespace nnr
