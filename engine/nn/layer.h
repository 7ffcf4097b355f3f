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

class ReLU;

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

  // Selective backward (the tape, engine/nn/tape.h). Channels are indices along axis 1 (features
  // of [N, F], channels of [N, C, H, W]), as increasing lists.
  // Which channels of dy backward reads, given which channels of dx the layers below read
  // (dx_channels; null: all of them) and whether dx is wanted at all. Returns false when it
  // reads every channel (the default), else true with dy_channels set. A layer with parameters
  // and no dx wanted reads only the channels its masks open.
  virtual bool output_grad_channels(const Shape& x, const Shape& y, bool dx_wanted,
                                    const std::vector<int64_t>* dx_channels, std::vector<int64_t>& dy_channels);
  // backward with dx wanted in the channels `dx_channels` only (a proper subset): dx must then be
  // right in those channels, and holds 0 or the gradient in the others. The default computes
  // every channel (backward); Linear and Conv2d compute the listed ones alone.
  virtual void backward_channels(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx,
                                 const std::vector<int64_t>& /*dx_channels*/) {
    backward(x, y, dy, &dx);
  }

  // The backward of this layer and of `relu`, the ReLU whose output x is, in one pass: relu_dx =
  // dL/d(the ReLU's input) from dy. The tape calls it when nothing observes the ReLU's own
  // gradient; both layers count their work. Returns false (the default) when the layer has no such
  // path, and the tape runs the two backwards.
  virtual bool backward_through_relu(ReLU& /*relu*/, const Tensor& /*x*/, const Tensor& /*y*/, const Tensor& /*dy*/,
                                     Tensor& /*relu_dx*/) {
    return false;
  }

  // True if any parameter of this layer has an open entry (its gradient is needed).
  bool has_open_parameters();

  // FLOPs executed since construction or the last reset (convention: compute_counts.h).
  const ComputeCounts& compute_counts() const { return counts_; }
  void reset_compute_counts() { counts_ = ComputeCounts(); }

 protected:
  // `buffer` with `shape` on `where`, reallocated only when either differs: per-step scratch
  // (compact gradients, gathered weights) without per-step allocations. Contents are stale.
  static Tensor& scratch(Tensor& buffer, const Shape& shape, const Placement& where);
  // Channel lists for output_grad_channels: dy_channels = the open rows of `masks` (their union),
  // or false when one of them opens every row or single elements (then every channel is read).
  static bool open_rows_of(const std::vector<const UpdateMask*>& masks, std::vector<int64_t>& dy_channels);
  // Throws nnr::InvalidArgument naming the layer unless `channels` increase within [0, limit)
  // (backward_channels indexes gathers and scatters with them).
  void require_channels(const std::vector<int64_t>& channels, int64_t limit) const;
  // Channel lists for channel-preserving layers (ReLU, Dropout, MaxPool2d): dy reads what dx needs.
  static bool same_channels(bool dx_wanted, const std::vector<int64_t>* dx_channels,
                            std::vector<int64_t>& dy_channels);

  ComputeCounts counts_;  // forward and backward add what they execute
};

}  // namespace nnr
