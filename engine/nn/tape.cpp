#include "engine/nn/tape.h"

#include "engine/core/error.h"

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
  for (size_t i = nodes_.size(); i-- > 0;) {
    Node& node = nodes_[i];
    if (!node.output_needs_grad) break;  // nothing below needs a gradient either
    Tensor dx;
    if (node.input_needs_grad) dx = Tensor::empty(node.input->shape(), node.input->placement());
    node.layer->backward(*node.input, *node.output, grad, node.input_needs_grad ? &dx : nullptr);
    if (observer_) observer_(i, *node.layer, *node.input, *node.output, grad);
    if (!node.input_needs_grad) break;
    grad = std::move(dx);
  }
}

void Tape::clear() {
  nodes_.clear();
  loss_ = nullptr;
}

}  // namespace nnr
