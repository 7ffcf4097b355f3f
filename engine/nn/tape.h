#pragma once
// Tape: the autograd core. Training forwards record each layer application (and the loss)
// in order; backward() walks them in reverse, accumulating parameter gradients. A node's
// output needs a gradient only if its input does or its layer has open parameters, so
// backprop stops below the lowest open layer and frozen layers below it cost nothing. Above it,
// only the channels of each input gradient that the layers below read are computed
// (Layer::output_grad_channels, from the lowest open layer's open rows upwards; a layer whose
// input needs a gradient reads all of its dy): the layer right above the lowest open layer
// computes its input gradient for those channels alone (Layer::backward_channels) and leaves 0
// in the others, which the observer then sees. Without an observer, a layer whose input is a
// ReLU's output may run its backward and the ReLU's in one pass (Layer::backward_through_relu).
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
  // Called during backward right after node i's layer has accumulated its parameter gradients (the
  // layer appears once on the tape, so they are final for this backward), before the observer and
  // before the layers below run: a data-parallel step starts a gradient bucket's all-reduce there
  // while the rest of backward computes. Only nodes backward reaches (their output needs a
  // gradient: every layer with open parameters). Kept across steps until replaced (null: none).
  using GradientsFinal = std::function<void(size_t node, Layer& layer)>;
  void set_gradients_final(GradientsFinal hook) { gradients_final_ = std::move(hook); }
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
  // Per node: the channels of its output gradient that its backward reads (dy_channels_[i]), or
  // every channel (dy_restricted_[i] == 0). Kept across steps so the lists are not reallocated.
  std::vector<std::vector<int64_t>> dy_channels_;
  std::vector<char> dy_restricted_;
  // Per node: its input gradient, kept across steps (a step of the same shapes allocates none;
  // the memory of a large model's activation gradients stays held while the tape lives).
  std::vector<Tensor> dx_buffers_;
  Tensor& dx_buffer(size_t node);  // node's input gradient buffer, (re)allocated to fit its input
  SoftmaxCrossEntropy* loss_ = nullptr;
  BackwardObserver observer_;
  GradientsFinal gradients_final_;
};

}  // namespace nnr
