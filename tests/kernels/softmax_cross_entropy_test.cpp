// Softmax cross-entropy kernels against engine/ops/softmax_cross_entropy.h.
#include <catch2/catch.hpp>

#include <cmath>

#include "engine/core/tensor.h"
#include "engine/ops/softmax_cross_entropy.h"
#include "kernels/softmax_cross_entropy.h"
#include "tests/kernels/gpu_test_util.h"

using namespace nnr;
using nnr::test::DeviceArray;

namespace {

// Probabilities: CUDA's expf is within 2 ulp and glibc's within 1, the float reciprocal of the
// (double) row sum may differ by 1 ulp, then one rounded multiply: ≤ ~5 ulp ≈ 6e-7 relative.
constexpr double kProbRel = 1e-6;
// Below FLT_MIN probabilities are denormal and only absolutely accurate.
constexpr double kProbAbs = 1e-37;
// Mean loss: logsumexp = log(sum) + max in double, the sum ~3 float ulps apart (≤ 4e-7 in the
// log), plus cancellation against the label's logit: absolute 1e-6 on top of 1e-6 relative.
constexpr double kLossRel = 1e-6, kLossAbs = 1e-6;

std::vector<float> logits_for(int64_t rows, int64_t k, Rng& rng) {
  auto x = test::random_normal(static_cast<size_t>(rows * k), rng, 4.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x.data() + r * k;
    if (r % 5 == 1)
      for (int64_t j = 0; j < k; ++j) row[j] += 1e4f;  // huge but equal offset: must not overflow
    if (r % 5 == 2)
      for (int64_t j = 0; j < k; ++j) row[j] -= 1e4f;
    if (r % 5 == 3) row[0] += 200.0f;  // one dominant logit: the others underflow to 0
  }
  return x;
}

std::vector<int32_t> labels_for(int64_t rows, int64_t k, Rng& rng) {
  std::vector<int32_t> labels(static_cast<size_t>(rows));
  for (auto& l : labels) l = static_cast<int32_t>(rng.below(static_cast<uint64_t>(k)));
  return labels;
}

}  // namespace

TEST_CASE("softmax cross-entropy forward kernel matches the CPU, stable at large logits", "[cuda][softmax_cross_entropy]") {
  test::Stream stream;
  Rng rng(21);
  for (const int64_t rows : test::awkward_rows())
    for (const int64_t k : {int64_t{1}, int64_t{10}, int64_t{33}, int64_t{1001}}) {
      INFO("[" << rows << ", " << k << "]");
      const auto x = logits_for(rows, k, rng);
      const auto labels = labels_for(rows, k, rng);
      Tensor probs = Tensor::empty({rows, k});
      const double loss = softmax_cross_entropy_forward(Tensor::from_vector({rows, k}, x), labels, probs);

      DeviceArray<float> d_x(x, stream), d_p(x.size(), stream);
      DeviceArray<int32_t> d_labels(labels, stream);
      DeviceArray<double> d_loss(1, stream);
      kernels::softmax_cross_entropy_forward(d_x.get(), d_labels.get(), rows, k, d_p.get(), d_loss.get(), stream);
      test::require_close(d_p.download(), probs.to_vector(), kProbRel, kProbAbs, "probabilities");
      const double got = d_loss.download()[0];
      REQUIRE(std::isfinite(got));
      REQUIRE(std::fabs(got - loss) <= kLossRel * std::fabs(loss) + kLossAbs);

      DeviceArray<float> d_q(x.size(), stream);
      kernels::softmax_forward(d_x.get(), rows, k, d_q.get(), stream);
      Tensor q = Tensor::empty({rows, k});
      softmax(Tensor::from_vector({rows, k}, x), q);
      test::require_close(d_q.download(), q.to_vector(), kProbRel, kProbAbs, "softmax only");
    }
}

// Given the same probabilities, (p·scale) − scale at the label is rounded exactly as on the CPU.
TEST_CASE("softmax cross-entropy backward kernel is bit-identical to the CPU", "[cuda][softmax_cross_entropy]") {
  test::Stream stream;
  Rng rng(22);
  for (const int64_t rows : test::awkward_rows())
    for (const int64_t k : {int64_t{1}, int64_t{10}, int64_t{1001}}) {
      INFO("[" << rows << ", " << k << "]");
      const auto x = logits_for(rows, k, rng);
      const auto labels = labels_for(rows, k, rng);
      Tensor probs = Tensor::empty({rows, k});
      softmax(Tensor::from_vector({rows, k}, x), probs);
      const float scale = 1.0f / static_cast<float>(rows);
      Tensor d = Tensor::empty({rows, k});
      softmax_cross_entropy_backward(probs, labels, scale, d);

      DeviceArray<float> d_p(probs.to_vector(), stream), d_d(x.size(), stream);
      DeviceArray<int32_t> d_labels(labels, stream);
      kernels::softmax_cross_entropy_backward(d_p.get(), d_labels.get(), rows, k, scale, d_d.get(), stream);
      test::require_bit_identical(d_d.download(), d.to_vector(), "dlogits");
    }
}
