#include "engine/ops/softmax_cross_entropy.h"

#include <cmath>

#include "engine/core/context.h"
#include "engine/core/device_copy.h"
#include "engine/core/error.h"
#ifdef NNR_WITH_CUDA
#include "kernels/device_memory.h"
#include "kernels/softmax_xent.h"
#endif

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

// Softmax of one row; returns log(sum(exp(x - max))) + max, the row's log-sum-exp.
double softmax_row(const float* x, float* p, int64_t k) {
  float mx = x[0];
  for (int64_t j = 1; j < k; ++j) mx = std::max(mx, x[j]);
  double sum = 0.0;
  for (int64_t j = 0; j < k; ++j) {
    p[j] = std::exp(x[j] - mx);
    sum += p[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < k; ++j) p[j] *= inv;
  return std::log(sum) + mx;
}


}  // namespace

double softmax_cross_entropy_forward(const Tensor& logits, const std::vector<int32_t>& labels, Tensor& probs,
                                     const int32_t* device_labels) {
  check_logits(logits, probs, "softmax_cross_entropy");
  const int64_t n = logits.dim(0), k = logits.dim(1);
  check_labels(labels, n, k, "softmax_cross_entropy");
  if (logits.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDA
    if (n == 0) return 0.0;
    Context& ctx = *logits.context();
    // Validated on the host above: the kernels trust them.
    DeviceCopy<int32_t> uploaded;
    if (!device_labels) device_labels = uploaded.on(logits.placement(), labels);
    kernels::DeviceBuffer loss(sizeof(double), ctx.allocator());
    kernels::softmax_xent_forward(logits.data(), device_labels, n, k, probs.data(), loss.as<double>(), ctx.stream());
    double value = 0.0;
    loss.copy_to_host(&value, sizeof(double), ctx.stream());  // waits: the caller needs the number
    return value;
#else
    (void)device_labels;
    throw_not_implemented_on_cuda("softmax_cross_entropy");
#endif
  }
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float* x = logits.data() + i * k;
    const double lse = softmax_row(x, probs.data() + i * k, k);
    total += lse - x[labels[static_cast<size_t>(i)]];
  }
  return n ? total / static_cast<double>(n) : 0.0;
}

void softmax_cross_entropy_backward(const Tensor& probs, const std::vector<int32_t>& labels, float scale,
                                    Tensor& dlogits, const int32_t* device_labels) {
  check_logits(probs, dlogits, "softmax_cross_entropy_backward");
  const int64_t n = probs.dim(0), k = probs.dim(1);
  check_labels(labels, n, k, "softmax_cross_entropy_backward");
  if (probs.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDA
    if (n == 0) return;
    DeviceCopy<int32_t> uploaded;
    if (!device_labels) device_labels = uploaded.on(probs.placement(), labels);
    kernels::softmax_xent_backward(probs.data(), device_labels, n, k, scale, dlogits.data(),
                                   probs.context()->stream());
    return;
#else
    (void)scale, (void)device_labels;
    throw_not_implemented_on_cuda("softmax_cross_entropy_backward");
#endif
  }
  const float* p = probs.data();
  float* d = dlogits.data();
  for (int64_t i = 0; i < n * k; ++i) d[i] = p[i] * scale;
  for (int64_t i = 0; i < n; ++i) d[i * k + labels[static_cast<size_t>(i)]] -= scale;
}

void softmax_cross_entropy_forward_queued(const Tensor& logits, const int32_t* device_labels, Tensor& probs,
                                          double* device_loss) {
  check_logits(logits, probs, "softmax_cross_entropy");
  if (logits.device() != Device::CUDA || !device_labels || !device_loss)
    throw InvalidArgument("[softmax_cross_entropy] the queued form needs CUDA logits, device labels and a device loss");
#ifdef NNR_WITH_CUDA
  kernels::softmax_xent_forward(logits.data(), device_labels, logits.dim(0), logits.dim(1), probs.data(), device_loss,
                                logits.context()->stream());
#else
  throw_not_implemented_on_cuda("softmax_cross_entropy");
#endif
}

void softmax_cross_entropy_backward_queued(const Tensor& probs, const int32_t* device_labels, float scale,
                                           Tensor& dlogits) {
  check_logits(probs, dlogits, "softmax_cross_entropy_backward");
  if (probs.device() != Device::CUDA || !device_labels)
    throw InvalidArgument("[softmax_cross_entropy_backward] the queued form needs CUDA probabilities and device labels");
#ifdef NNR_WITH_CUDA
  kernels::softmax_xent_backward(probs.data(), device_labels, probs.dim(0), probs.dim(1), scale, dlogits.data(),
                                 probs.context()->stream());
#else
  (void)scale;
  throw_not_implemented_on_cuda("softmax_cross_entropy_backward");
#endif
}

void softmax(const Tensor& logits, Tensor& probs) {
  check_logits(logits, probs, "softmax");
  const int64_t n = logits.dim(0), k = logits.dim(1);
  if (logits.device() == Device::CUDA) {
#ifdef NNR_WITH_CUDA
    kernels::softmax_forward(logits.data(), n, k, probs.data(), logits.context()->stream());
    return;
#else
    throw_not_implemented_on_cuda("softmax");
#endif
  }
  for (int64_t i = 0; i < n; ++i) softmax_row(logits.data() + i * k, probs.data() + i * k, k);
}

}  // namespace nnr
