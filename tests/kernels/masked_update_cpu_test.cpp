#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/core/tensor.h"
#include "engine/optim/mask_args.h"

using namespace nnr;

namespace {

std::vector<float> random_values(int64_t n, Rng& rng) {
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// A mask of every kind over a [rows, row_length] parameter, with its selected set.
struct MaskCase {
  const char* name;
  UpdateMask mask;
};

std::vector<MaskCase> mask_cases(int64_t rows, int64_t row_length, Rng& rng) {
  std::vector<uint8_t> flags(static_cast<size_t>(rows * row_length));
  for (auto& f : flags) f = rng.uniform() < 0.3;
  return {{"all", UpdateMask::all()},
          {"rows", UpdateMask::of_rows({0, 3, rows - 1})},
          {"none", UpdateMask::none()},
          {"elements", UpdateMask::of_elements(flags)}};
}

}  // namespace

TEST_CASE("masked SGD and Adam leave masked-out values and state bit-identical", "[optim][mask]") {
  Rng rng(1);
  const int64_t rows = 7, row_length = 33, n = rows * row_length;  // 231 elements, not a multiple of 32
  for (const MaskCase& mc : mask_cases(rows, row_length, rng)) {
    INFO("mask " << mc.name);
    const kernels::MaskArgs view = mask_args_of(mc.mask, row_length);
    auto theta = random_values(n, rng), grad = random_values(n, rng), vel = random_values(n, rng);
    auto m = random_values(n, rng), v = random_values(n, rng);
    for (auto& x : v) x = std::abs(x);
    const auto theta0 = theta, vel0 = vel, m0 = m, v0 = v;
    auto theta_adam = theta;

    kernels::SgdArgs sgd{0.1f, 0.9f, 0.01f, false};
    kernels::sgd_update_cpu(theta.data(), grad.data(), vel.data(), n, sgd, view, {});
    kernels::adam_update_cpu(theta_adam.data(), grad.data(), m.data(), v.data(), n, 3, kernels::AdamArgs{}, view, {});
    for (int64_t i = 0; i < n; ++i) {
      const bool open = mc.mask.selects_element(i, row_length);
      const size_t k = static_cast<size_t>(i);
      if (open) {
        REQUIRE(theta[k] != theta0[k]);
        REQUIRE(theta_adam[k] != theta0[k]);
      } else {
        REQUIRE(same_bits(theta[k], theta0[k]));
        REQUIRE(same_bits(vel[k], vel0[k]));
        REQUIRE(same_bits(theta_adam[k], theta0[k]));
        REQUIRE(same_bits(m[k], m0[k]));
        REQUIRE(same_bits(v[k], v0[k]));
      }
    }
  }
}

TEST_CASE("SGD momentum and Adam follow their textbook formulas", "[optim]") {
  float theta = 1.0f, grad = 0.5f, vel = 0.2f;
  kernels::SgdArgs sgd{0.1f, 0.9f, 0.0f, false};
  kernels::sgd_update_cpu(&theta, &grad, &vel, 1, sgd, {}, {});
  REQUIRE(vel == Approx(0.9f * 0.2f + 0.5f));
  REQUIRE(theta == Approx(1.0f - 0.1f * vel));

  // Adam after one step moves by lr * sign(g) (bias-corrected m̂ = g, v̂ = g²).
  float t = 2.0f, g = -3.0f, m = 0.0f, v = 0.0f;
  kernels::adam_update_cpu(&t, &g, &m, &v, 1, 1, kernels::AdamArgs{}, {}, {});
  REQUIRE(t == Approx(2.0f + 1e-3f).epsilon(1e-5));
}

TEST_CASE("penalised step equals the closed-form proximal step and reports λΣΩ(θ−θ*)²", "[optim][penalty]") {
  Rng rng(2);
  const int64_t n = 101;
  auto theta = random_values(n, rng), grad = random_values(n, rng), anchor = random_values(n, rng);
  auto omega = random_values(n, rng);
  for (auto& o : omega) o = std::abs(o);
  const auto theta0 = theta;
  const float lr = 0.05f, lambda = 3.0f;
  kernels::PenaltyArgs p;
  p.anchor = anchor.data();
  p.omega = omega.data();
  p.lambda = lambda;
  p.want_value = true;
  kernels::SgdArgs sgd{lr, 0.0f, 0.0f, false};
  const double value = kernels::sgd_update_cpu(theta.data(), grad.data(), nullptr, n, sgd, {}, p);
  double expected_value = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    const double d = double(theta0[k]) - anchor[k];
    expected_value += omega[k] * d * d;
    const double c = 2.0 * lr * lambda * omega[k];
    const double expected = (theta0[k] - lr * grad[k] + c * anchor[k]) / (1.0 + c);
    REQUIRE(theta[k] == Approx(expected).epsilon(1e-6).margin(1e-6));
  }
  REQUIRE(value == Approx(lambda * expected_value).epsilon(1e-9));
}

TEST_CASE("for small lr the proximal step agrees with a gradient step on the penalty", "[optim][penalty]") {
  // d/dθ λΩ(θ−θ*)² = 2λΩ(θ−θ*): for lr·2λΩ << 1 the closed form ≈ θ − lr(g + 2λΩ(θ−θ*)).
  float theta = 0.7f, grad = 0.3f, anchor = -0.2f, omega = 0.5f;
  const float lr = 1e-4f, lambda = 2.0f;
  kernels::PenaltyArgs p;
  p.anchor = &anchor;
  p.omega = &omega;
  p.lambda = lambda;
  kernels::sgd_update_cpu(&theta, &grad, nullptr, 1, kernels::SgdArgs{lr, 0.0f, 0.0f, false}, {}, p);
  const double plain = 0.7 - lr * (0.3 + 2.0 * lambda * omega * (0.7 + 0.2));
  REQUIRE(theta == Approx(plain).epsilon(1e-6));
}

TEST_CASE("penalised updates stay finite and converge to the anchor for any λ up to 1e8", "[optim][penalty]") {
  for (float lambda : {0.0f, 1.0f, 1e2f, 1e4f, 1e6f, 1e8f}) {
    INFO("lambda " << lambda);
    float theta = 5.0f, anchor = 1.0f, omega = 1.0f, m = 0.0f, v = 0.0f, vel = 0.0f;
    float theta_adam = 5.0f;
    kernels::PenaltyArgs p;
    p.anchor = &anchor;
    p.omega = &omega;
    p.lambda = lambda;
    for (int step = 1; step <= 200; ++step) {
      float grad = 0.1f * (theta - 3.0f);  // the loss pulls towards 3
      kernels::sgd_update_cpu(&theta, &grad, &vel, 1, kernels::SgdArgs{0.5f, 0.9f, 0.0f, false}, {}, p);
      float grad_adam = 0.1f * (theta_adam - 3.0f);
      kernels::adam_update_cpu(&theta_adam, &grad_adam, &m, &v, 1, step, kernels::AdamArgs{0.5f}, {}, p);
      REQUIRE(std::isfinite(theta));
      REQUIRE(std::isfinite(theta_adam));
    }
    if (lambda >= 1e4f) REQUIRE(std::abs(theta - anchor) < 1e-2f);
  }
}

TEST_CASE("SI path integral accumulates −g·Δθ on updated entries only", "[optim][si]") {
  float theta[3] = {1.0f, 2.0f, 3.0f}, grad[3] = {0.5f, -1.0f, 2.0f}, path[3] = {0.0f, 0.0f, 0.0f};
  kernels::PenaltyArgs p;
  p.path_integral = path;
  UpdateMask mask = UpdateMask::of_elements({1, 0, 1});
  kernels::sgd_update_cpu(theta, grad, nullptr, 3, kernels::SgdArgs{0.1f, 0.0f, 0.0f, false}, mask_args_of(mask, 1), p);
  // Δθ = −lr·g, so −g·Δθ = lr·g².
  REQUIRE(path[0] == Approx(0.1f * 0.25f));
  REQUIRE(path[1] == 0.0f);
  REQUIRE(path[2] == Approx(0.1f * 4.0f));
}

TEST_CASE("UpdateMask::validate refuses row lists out of range, repeated or out of order", "[optim][mask]") {
  UpdateMask::of_rows({3, 0, 3, 1}).validate(8, 4, "w");  // of_rows sorts and de-duplicates
  UpdateMask::none().validate(8, 4, "w");
  UpdateMask m = UpdateMask::of_rows({0, 2});
  m.validate(8, 4, "w");
  m.rows = {0, 2, 2};
  REQUIRE_THROWS_AS(m.validate(8, 4, "w"), InvalidArgument);
  REQUIRE_THROWS_WITH(m.validate(8, 4, "0.weight"),
                      Catch::Contains("0.weight: row list not strictly increasing: row 2 at position 2 follows row 2"));
  m.rows = {3, 1};
  REQUIRE_THROWS_WITH(m.validate(8, 4, "0.weight"), Catch::Contains("0.weight: row list not strictly increasing"));
  m.rows = {1, 4};
  REQUIRE_THROWS_WITH(m.validate(8, 4, "0.weight"), Catch::Contains("0.weight: row 4 outside [0, 4)"));
  m.rows = {-1};
  REQUIRE_THROWS_WITH(m.validate(8, 4, "0.weight"), Catch::Contains("row -1 outside [0, 4)"));
}

namespace {

// torch.optim.Adam in double: m ← β1 m + (1−β1) g, v ← β2 v + (1−β2) g², θ ← θ − lr m̂ / (√v̂ + ε)
// with m̂ = m / (1 − β1^t), v̂ = v / (1 − β2^t), t the 1-based step.
void adam_reference(double& theta, double& m, double& v, double g, int t, const kernels::AdamArgs& c) {
  g += c.weight_decay * theta;
  m = c.beta1 * m + (1.0 - c.beta1) * g;
  v = c.beta2 * v + (1.0 - c.beta2) * g * g;
  const double m_hat = m / (1.0 - std::pow(double(c.beta1), t));
  const double v_hat = v / (1.0 - std::pow(double(c.beta2), t));
  theta -= c.lr * m_hat / (std::sqrt(v_hat) + c.eps);
}

}  // namespace

TEST_CASE("Adam's bias correction uses the step count t, over five steps of changing gradients", "[optim]") {
  // After step 1 m̂ = g for any t-independent slip too; only later steps, with gradients that
  // change sign and size, tell 1 − β^t from 1 − β^(t±1).
  for (const kernels::AdamArgs c : {kernels::AdamArgs{}, kernels::AdamArgs{0.05f, 0.5f, 0.8f, 1e-8f, 0.01f}}) {
    INFO("beta1 " << c.beta1 << " beta2 " << c.beta2);
    const std::vector<float> grads{0.7f, -0.2f, 1.5f, 0.1f, -0.9f};
    float theta = 0.4f, m = 0.0f, v = 0.0f;
    double rt = 0.4, rm = 0.0, rv = 0.0;
    for (int t = 1; t <= 5; ++t) {
      const float g = grads[static_cast<size_t>(t - 1)];
      const double before = rt;
      const float theta_before = theta;
      kernels::adam_update_cpu(&theta, &g, &m, &v, 1, t, c, {}, {});
      adam_reference(rt, rm, rv, g, t, c);
      INFO("step " << t);
      REQUIRE(m == Approx(rm).epsilon(1e-5));
      REQUIRE(v == Approx(rv).epsilon(1e-5));
      // The step itself, relative to its size (θ is O(1), the step O(lr)).
      REQUIRE(double(theta) - theta_before == Approx(rt - before).epsilon(2e-3));
    }
  }
}

TEST_CASE("masked SGD momentum follows the textbook formula on open entries, plain and Nesterov", "[optim][mask]") {
  // The masked path (Rows, Elements, or All with a penalty) is a different loop from the dense
  // one; check its values, not just that open entries moved.
  Rng rng(9);
  const int64_t rows = 5, row_length = 7, n = rows * row_length;
  for (const bool nesterov : {false, true}) {
    for (const MaskCase& mc : mask_cases(rows, row_length, rng)) {
      if (mc.mask.selects_none()) continue;
      INFO("mask " << mc.name << (nesterov ? ", nesterov" : ""));
      const kernels::SgdArgs c{0.1f, 0.8f, 0.05f, nesterov};
      auto theta = random_values(n, rng), vel = random_values(n, rng);
      std::vector<double> rt(theta.begin(), theta.end()), rv(vel.begin(), vel.end());
      for (int step = 0; step < 3; ++step) {
        const auto grad = random_values(n, rng);
        kernels::sgd_update_cpu(theta.data(), grad.data(), vel.data(), n, c, mask_args_of(mc.mask, row_length), {});
        for (int64_t i = 0; i < n; ++i) {
          const size_t k = static_cast<size_t>(i);
          if (!mc.mask.selects_element(i, row_length)) continue;
          const double g = grad[k] + double(c.weight_decay) * rt[k];
          rv[k] = c.momentum * rv[k] + g;
          rt[k] -= c.lr * (nesterov ? g + c.momentum * rv[k] : rv[k]);
          INFO("step " << step << " entry " << i);
          REQUIRE(vel[k] == Approx(rv[k]).epsilon(1e-5).margin(1e-6));
          REQUIRE(theta[k] == Approx(rt[k]).epsilon(1e-5).margin(1e-6));
        }
      }
    }
  }
}

TEST_CASE("dense Adam (every entry, no penalty) equals the general loop bit for bit", "[optim][mask]") {
  // The dense loop is vectorised and split across threads above 2^16 entries; an element mask
  // with every bit set takes the general loop, entry by entry. IEEE sqrt and division are exact
  // in both, so the two must agree to the bit, on awkward sizes on both sides of the threshold.
  Rng rng(11);
  for (const int64_t n : {int64_t{1}, int64_t{37}, int64_t{1003}, int64_t{(1 << 16) + 77}}) {
    INFO("n " << n);
    const kernels::AdamArgs c{0.01f, 0.9f, 0.999f, 1e-8f, 0.003f};
    auto theta_a = random_values(n, rng), m_a = random_values(n, rng), v_a = random_values(n, rng);
    for (auto& x : v_a) x = x * x;  // a second moment is never negative
    auto theta_b = theta_a, m_b = m_a, v_b = v_a;
    const UpdateMask every = UpdateMask::of_elements(std::vector<uint8_t>(static_cast<size_t>(n), 1));
    for (int step = 1; step <= 3; ++step) {
      const auto grad = random_values(n, rng);
      kernels::adam_update_cpu(theta_a.data(), grad.data(), m_a.data(), v_a.data(), n, step, c,
                               mask_args_of(UpdateMask::all(), 1), {});
      kernels::adam_update_cpu(theta_b.data(), grad.data(), m_b.data(), v_b.data(), n, step, c,
                               mask_args_of(every, 1), {});
    }
    int64_t differing = 0;
    for (size_t i = 0; i < theta_a.size(); ++i)
      differing += !same_bits(theta_a[i], theta_b[i]) || !same_bits(m_a[i], m_b[i]) || !same_bits(v_a[i], v_b[i]);
    CHECK(differing == 0);
  }
}

TEST_CASE("a Rows mask's vectorised update (SGD momentum, Adam) equals the general loop bit for bit", "[optim][mask]") {
  // Without a penalty a Rows mask runs the dense loop row by row (in parallel above 2^16 open
  // entries); an element mask of the same rows takes the general loop, entry by entry. Awkward
  // row lengths and counts, on both sides of the threshold; closed rows keep their bits.
  Rng rng(12);
  for (const auto& [rows, row_length] : std::vector<std::pair<int64_t, int64_t>>{{7, 33}, {41, 1}, {300, 331}}) {
    INFO("rows " << rows << " x " << row_length);
    const int64_t n = rows * row_length;
    std::vector<int64_t> open;
    for (int64_t r = 0; r < rows; ++r)
      if (rng.uniform() < 0.8) open.push_back(r);
    const UpdateMask by_rows = UpdateMask::of_rows(open);
    std::vector<uint8_t> flags(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) flags[static_cast<size_t>(i)] = by_rows.selects_element(i, row_length);
    const UpdateMask by_elements = UpdateMask::of_elements(flags);
    const kernels::SgdArgs sgd{0.1f, 0.9f, 0.01f, false};
    const kernels::AdamArgs adam{0.01f, 0.9f, 0.999f, 1e-8f, 0.003f};
    auto theta_a = random_values(n, rng), vel_a = random_values(n, rng), m_a = random_values(n, rng),
         v_a = random_values(n, rng);
    for (auto& x : v_a) x = x * x;
    const auto theta0 = theta_a;
    auto theta_b = theta_a, vel_b = vel_a, m_b = m_a, v_b = v_a, adam_a = theta_a, adam_b = theta_a;
    for (int step = 1; step <= 3; ++step) {
      const auto grad = random_values(n, rng);
      kernels::sgd_update_cpu(theta_a.data(), grad.data(), vel_a.data(), n, sgd, mask_args_of(by_rows, row_length), {});
      kernels::sgd_update_cpu(theta_b.data(), grad.data(), vel_b.data(), n, sgd, mask_args_of(by_elements, row_length),
                              {});
      kernels::adam_update_cpu(adam_a.data(), grad.data(), m_a.data(), v_a.data(), n, step, adam,
                               mask_args_of(by_rows, row_length), {});
      kernels::adam_update_cpu(adam_b.data(), grad.data(), m_b.data(), v_b.data(), n, step, adam,
                               mask_args_of(by_elements, row_length), {});
    }
    int64_t differing = 0, moved_closed = 0;
    for (size_t i = 0; i < theta_a.size(); ++i) {
      differing += !same_bits(theta_a[i], theta_b[i]) || !same_bits(vel_a[i], vel_b[i]) ||
                   !same_bits(adam_a[i], adam_b[i]) || !same_bits(m_a[i], m_b[i]) || !same_bits(v_a[i], v_b[i]);
      if (!by_rows.selects_element(static_cast<int64_t>(i), row_length))
        moved_closed += !same_bits(theta_a[i], theta0[i]) || !same_bits(adam_a[i], theta0[i]);
    }
    CHECK(differing == 0);
    CHECK(moved_closed == 0);
  }
}
