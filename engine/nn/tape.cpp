#include "engine/nn/tape.h"

#include "engine/core/error.h"
#include "engine/nn/shape_layers.h"

namespace nnr {

const Tensor& Tape::apply(Layer& layer, const Tensor& x) {
  // The input needs a gradient when it is the output of an earlier node that needs one.
  bool input_needs_grad = false;
  if (!nodes_.empty() && &x == nodes_.back().output.get()) input_needs_grad = nodes_.back().output_needs_grad;
  const bool output_needs_grad = input_needs_grad || layer.has_open_parameters();
  nodes_.push_back(Node{&layer, &x, std::make_unique<Tensor>(layer.forward(x, true)), input_needs_grad,
                        output_needs_grad});
  loss_ = nullptr;
  return *nodes_.back().output;
}

double Tape::apply_loss(SoftmaxCrossEntropy& loss, const std::vector<int32_t>& labels) {
  const double value = loss.forward(output(), labels);
  loss_ = &loss;
  return value;
}

void Tape::apply_loss_queued(SoftmaxCrossEntropy& loss, const int32_t* device_labels, double* device_loss) {
  loss.forward_queued(output(), device_labels, device_loss);
  loss_ = &loss;
}

const Tensor& Tape::output() const {
  if (nodes_.empty()) throw Error("[tape] nothing recorded");
  return *nodes_.back().output;
}

void Tape::backward() {
  if (!loss_) throw Error("[tape] backward() needs a loss recorded after the last layer (apply_loss)");
  Tensor grad = Tensor::empty(output().shape(), output().placement());
  loss_->backward(grad);
  backward_from(std::move(grad));
}

void Tape::backward_from(Tensor grad) {
  require_shape(grad, output().shape(), "tape", "gradient of the output");
  if (nodes_.empty() || !nodes_.back().output_needs_grad) return;
  // Which channels each node's backward reads of its dy, from the lowest node that backward
  // reaches (its input needs no gradient) upwards: node i's dx is read where node i − 1's dy is.
  size_t lowest = nodes_.size() - 1;
  while (lowest > 0 && nodes_[lowest].input_needs_grad) --lowest;
  dy_channels_.resize(nodes_.size());
  dy_restricted_.assign(nodes_.size(), 0);
  for (size_t i = lowest; i < nodes_.size(); ++i) {
    const Node& node = nodes_[i];
    const bool below_restricted = node.input_needs_grad && dy_restricted_[i - 1];
    dy_restricted_[i] = node.layer->output_grad_channels(node.input->shape(), node.output->shape(),
                                                         node.input_needs_grad,
                                                         below_restricted ? &dy_channels_[i - 1] : nullptr,
                                                         dy_channels_[i]);
  }
  dx_buffers_.resize(nodes_.size());
  const Tensor* dy = &grad;
  for (size_t i = nodes_.size(); i-- > 0;) {
    Node& node = nodes_[i];
    if (!node.output_needs_grad) break;  // nothing below needs a gradient either
    Tensor* dx = node.input_needs_grad ? &dx_buffer(i) : nullptr;
    // The input is the output of a ReLU whose own gradient nobody observes: the layer may run both
    // backwards in one pass (max pooling does), straight into the ReLU's input gradient. Computing
    // every channel is always right (a restricted dx may hold the gradient in the others).
    if (dx && !observer_ && i > 0) {
      Node& below = nodes_[i - 1];
      auto* relu = dynamic_cast<ReLU*>(below.layer);
      if (relu && below.input_needs_grad && below.output.get() == node.input) {
        Tensor& relu_dx = dx_buffer(i - 1);
        if (node.layer->backward_through_relu(*relu, *node.input, *node.output, *dy, relu_dx)) {
          if (gradients_final_) {
            gradients_final_(i, *node.layer);
            gradients_final_(i - 1, *relu);
          }
          dy = &relu_dx;
          --i;  // the ReLU's backward is done too
          continue;
        }
      }
    }
    // dx is read in some channels only: a proper subset lets the layer compute just those.
    const std::vector<int64_t>* read_below = dx && i > 0 && dy_restricted_[i - 1] ? &dy_channels_[i - 1] : nullptr;
    if (read_below && node.input->rank() >= 2 && static_cast<int64_t>(read_below->size()) < node.input->dim(1))
      node.layer->backward_channels(*node.input, *node.output, *dy, *dx, *read_below);
    else
      node.layer->backward(*node.input, *node.output, *dy, dx);
    if (gradients_final_) gradients_final_(i, *node.layer);
    if (observer_) observer_(i, *node.layer, *node.input, *node.output, *dy);
    if (!dx) break;
    dy = dx;
  }
}

Tensor& Tape::dx_buffer(size_t i) {
  // Overwritten in full by the layer: the last backward's buffer serves when it fits.
  Tensor& buffer = dx_buffers_[i];
  const Tensor& input = *nodes_[i].input;
  const Placement where = input.placement();
  if (!buffer.defined() || buffer.shape() != input.shape() || buffer.device() != where.device ||
      buffer.context() != where.context)
    buffer = Tensor::empty(input.shape(), where);
  return buffer;
}

void Tape::clear() {
  nodes_.clear();
  loss_ = nullptr;
}

}  // namespace nnr
