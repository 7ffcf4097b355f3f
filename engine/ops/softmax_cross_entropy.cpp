#include "engine/ops/softmax_cross_entropy.h"

#include "engine/core/backend.h"
#include "engine/core/device_copy.h"
#include "engine/core/error.h"

namespace nnr {
namespace {

void check_logits(const Tensor& logits, const Tensor& probs, const char* op) {
  require_placement(probs, logits.placement(), op, "probabilities");
  if (logits.rank() != 2)
    throw InvalidArgument(std::string("[") + op + "] expected [N, K] logits, got " + shape_to_string(logits.shape()));
  // A softmax over no classes has no value (and the row loops would read x[0] of an empty row).
  if (logits.dim(1) < 1)
    throw InvalidArgument(std::string("[") + op + "] logits " + shape_to_string(logits.shape()) +
                          " have no classes: K must be >= 1");
  require_shape(probs, logits.shape(), op, "probabilities");
}

void check_labels(const std::vector<int32_t>& labels, int64_t n, int64_t k, const char* op) {
  if (static_cast<int64_t>(labels.size()) != n)
    throw InvalidArgument(std::string("[") + op + "] " + std::to_string(labels.size()) + " labels for " +
                          std::to_string(n) + " rows of logits");
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= k)
      throw InvalidArgument(std::string("[") + op + "] label " + std::to_string(labels[i]) + " at row " +
                            std::to_string(i) + " outside [0, " + std::to_string(k) + ")");
}

}  // namespace

double softmax_cross_entropy_forward(const Tensor& logits, const std::vector<int32_t>& labels, Tensor& probs,
                                     const int32_t* device_labels) {
  check_logits(logits, probs, "softmax_cross_entropy");
  const int64_t n = logits.dim(0), k = logits.dim(1);
  check_labels(labels, n, k, "softmax_cross_entropy");
  if (n == 0) return 0.0;
  // Validated on the host above: the backends trust them.
  DeviceCopy<int32_t> uploaded;
  if (!device_labels) device_labels = uploaded.on(logits.placement(), labels);
  return backend_of(logits).softmax_cross_entropy_forward(logits.data(), device_labels, n, k, probs.data());
}

void softmax_cross_entropy_backward(const Tensor& probs, const std::vector<int32_t>& labels, float scale,
                                    Tensor& dlogits, const int32_t* device_labels) {
  check_logits(probs, dlogits, "softmax_cross_entropy_backward");
  const int64_t n = probs.dim(0), k = probs.dim(1);
  check_labels(labels, n, k, "softmax_cross_entropy_backward");
  if (n == 0) return;
  DeviceCopy<int32_t> uploaded;
  if (!device_labels) device_labels = uploaded.on(probs.placement(), labels);
  backend_of(probs).softmax_cross_entropy_backward(probs.data(), device_labels, n, k, scale, dlogits.data());
}

void softmax_cross_entropy_forward_queued(const Tensor& logits, const int32_t* device_labels, Tensor& probs,
                                          double* device_loss) {
  check_logits(logits, probs, "softmax_cross_entropy");
  if (logits.device() != Device::CUDA || !device_labels || !device_loss)
    throw InvalidArgument("[softmax_cross_entropy] the queued form needs CUDA logits, device labels and a device loss");
  backend_of(logits).softmax_cross_entropy_forward_queued(logits.data(), device_labels, logits.dim(0), logits.dim(1),
                                                          probs.data(), device_loss);
}

void softmax_cross_entropy_backward_queued(const Tensor& probs, const int32_t* device_labels, float scale,
                                           Tensor& dlogits) {
  check_logits(probs, dlogits, "softmax_cross_entropy_backward");
  if (probs.device() != Device::CUDA || !device_labels)
    throw InvalidArgument("[softmax_cross_entropy_backward] the queued form needs CUDA probabilities and device labels");
  backend_of(probs).softmax_cross_entropy_backward(probs.data(), device_labels, probs.dim(0), probs.dim(1), scale,
                                                   dlogits.data());
}

void softmax(const Tensor& logits, Tensor& probs) {
  check_logits(logits, probs, "softmax");
  backend_of(logits).softmax(logits.data(), logits.dim(0), logits.dim(1), probs.data());
}

}  // namespace nnr
