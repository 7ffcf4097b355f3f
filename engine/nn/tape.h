#pragma once
// Tape: the autograd core. Training forwards record each layer application (and the loss)
// in order; backward() walks them in reverse, accumulating parameter gradients. A node's
// output needs a gradient only if its input does or its layer has open parameters, so
// backprop stops below the lowest open layer and frozen layers below it cost nothing.
// The tape owns every intermediate output until clear() or the next recording.
#include <functional>
#include <memory>
#include <vector>

#include "engine/core/tensor.h"
#include "engine/nn/layer.h"
#include "engine/nn/loss.h"

namespace nnr {

class Tape {
 public:
  // Called during backward for each node whose output needs a gradient, after its
  // parameter gradients are accumulated: (node index, layer, x, y, dL/dy). Importance
  // estimators read per-layer activations and output gradients here.
  using BackwardObserver =
      std::function<void(size_t node, Layer& layer, const Tensor& x, const Tensor& y, const Tensor& dy)>;

  // Runs layer.forward(x, training = true), records it and returns the output. `x` must stay
  // alive until backward (the batch input, or an output of this tape).
  const Tensor& apply(Layer& layer, const Tensor& x);
  // Records the loss on the last output; returns the loss value.
  double apply_loss(SoftmaxCrossEntropy& loss, const std::vector<int32_t>& labels);
  // The same with the labels on the device and the loss left there (SoftmaxCrossEntropy::forward_queued).
  void apply_loss_queued(SoftmaxCrossEntropy& loss, const int32_t* device_labels, double* device_loss);

  // Backward from the recorded loss.
  void backward();
  // Backward from a given gradient of the last output (e.g. of ‖f(x)‖² for MAS).
  void backward_from(Tensor grad_of_output);

  void set_observer(BackwardObserver observer) { observer_ = std::move(observer); }
  void clear();
  size_t size() const { return nodes_.size(); }
  const Tensor& output() const;

 private:
  struct Node {
    Layer* layer;
    const Tensor* input;
    std::unique_ptr<Tensor> output;
    bool input_needs_grad;
    bool output_needs_grad;
  };
  std::vector<Node> nodes_;
  SoftmaxCrossEntropy* loss_ = nullptr;
  BackwardObserver observer_;
};

}  // namespace nnr
