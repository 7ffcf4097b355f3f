// The built-in CPU backend: every op of engine/core/backend.h through its CPU reference
// (kernels/<op>.h, *_cpu).
#include "engine/core/backend.h"

#include "kernels/conv2d.h"
#include "kernels/elementwise.h"
#include "kernels/gather.h"
#include "kernels/gemm.h"
#include "kernels/masked_update.h"
#include "kernels/max_pool.h"
#include "kernels/softmax_cross_entropy.h"

namespace nnr {
namespace {

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }

  void gemm(const float* a, bool ta, const float* b, bool tb, float* c, int64_t m, int64_t n, int64_t k, float alpha,
            float beta) override {
    kernels::gemm_cpu(a, ta, b, tb, c, m, n, k, alpha, beta);
  }
  void conv2d_forward(const float* x, const float* w, const float* bias, const kernels::ConvShape& s,
                      float* y) override {
    kernels::conv2d_forward_cpu(x, w, bias, s, y);
  }
  void conv2d_backward_data(const float* dy, const float* w, const kernels::ConvShape& s, float* dx) override {
    kernels::conv2d_backward_data_cpu(dy, w, s, dx);
  }
  void conv2d_backward_filter(const float* x, const float* dy, const kernels::ConvShape& s, const int64_t* rows,
                              int64_t open, float* dw) override {
    kernels::conv2d_backward_filter_cpu(x, dy, s, rows, open, dw);
  }
  void add_bias(float* y, const float* bias, int64_t outer, int64_t channels, int64_t inner) override {
    kernels::add_bias_cpu(y, bias, outer, channels, inner);
  }
  void bias_backward(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner,
                     bool accumulate) override {
    kernels::bias_backward_cpu(dy, db, outer, channels, inner, accumulate);
  }
  void bias_backward_rows(const float* dy, float* db, int64_t outer, int64_t channels, int64_t inner,
                          const int64_t* rows, int64_t count) override {
    kernels::bias_backward_rows_cpu(dy, db, outer, channels, inner, rows, count);
  }
  void relu_forward(const float* x, float* y, int64_t n) override { kernels::relu_forward_cpu(x, y, n); }
  void relu_backward(const float* y, const float* dy, float* dx, int64_t n) override {
    kernels::relu_backward_cpu(y, dy, dx, n);
  }
  void dropout_forward(const float* x, float rate, Rng& rng, float* y, float* mask, int64_t n) override {
    kernels::dropout_forward_cpu(x, rate, [&rng] { return rng.uniform(); }, y, mask, n);
  }
  void dropout_backward(const float* mask, const float* dy, float* dx, int64_t n) override {
    kernels::dropout_backward_cpu(mask, dy, dx, n);
  }
  void gather_channels(const float* src, int64_t outer, int64_t channels, int64_t inner, const int64_t* rows,
                       int64_t count, float* dst) override {
    kernels::gather_channels_cpu(src, outer, channels, inner, rows, count, dst);
  }
  void scatter_channels(const float* src, int64_t outer, int64_t count, int64_t inner, const int64_t* rows,
                        int64_t channels, float* dst) override {
    kernels::scatter_channels_cpu(src, outer, count, inner, rows, channels, dst);
  }
  void scatter_add_rows(const float* src, int64_t count, int64_t row_length, const int64_t* rows,
                        float* dst) override {
    kernels::scatter_add_rows_cpu(src, count, row_length, rows, dst);
  }
  void max_pool2d_forward(const float* x, const kernels::PoolShape& s, float* y, int64_t* argmax) override {
    kernels::max_pool2d_forward_cpu(x, s, y, argmax);
  }
  void max_pool2d_backward(const float* dy, const int64_t* argmax, const kernels::PoolShape& s, float* dx,
                           const float* relu_y) override {
    kernels::max_pool2d_backward_cpu(dy, argmax, s, dx, relu_y);
  }
  double softmax_cross_entropy_forward(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                       float* probs) override {
    return kernels::softmax_cross_entropy_forward_cpu(logits, labels, n, k, probs);
  }
  void softmax_cross_entropy_forward_queued(const float* logits, const int32_t* labels, int64_t n, int64_t k,
                                            float* probs, double* loss) override {
    *loss = kernels::softmax_cross_entropy_forward_cpu(logits, labels, n, k, probs);
  }
  void softmax_cross_entropy_backward(const float* probs, const int32_t* labels, int64_t n, int64_t k, float scale,
                                      float* dlogits) override {
    kernels::softmax_cross_entropy_backward_cpu(probs, labels, n, k, scale, dlogits);
  }
  void softmax(const float* logits, int64_t n, int64_t k, float* probs) override {
    kernels::softmax_cpu(logits, n, k, probs);
  }
  double penalty_value(const float* theta, int64_t n, const kernels::PenaltyArgs& penalty) override {
    return kernels::penalty_value_cpu(theta, n, penalty);
  }
  double sgd_update(float* theta, const float* grad, float* velocity, int64_t n, const kernels::SgdArgs& config,
                    const kernels::MaskArgs& mask, const kernels::PenaltyArgs& penalty) override {
    return kernels::sgd_update_cpu(theta, grad, velocity, n, config, mask, penalty);
  }
  double adam_update(float* theta, const float* grad, float* m, float* v, int64_t n, int64_t step,
                     const kernels::AdamArgs& config, const kernels::MaskArgs& mask,
                     const kernels::PenaltyArgs& penalty) override {
    return kernels::adam_update_cpu(theta, grad, m, v, n, step, config, mask, penalty);
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace nnr
