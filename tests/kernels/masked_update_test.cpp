// The fused masked SGD / Adam kernels against sgd_update_cpu / adam_update_cpu
// (kernels/masked_update.h), for every mask kind, with and without the importance penalty.
#include <catch2/catch.hpp>

#include <cmath>

#include "engine/optim/update_mask.h"
#include "engine/optim/mask_args.h"
#include "kernels/masked_update.h"
#include "tests/kernels/gpu_test_util.h"

using namespace nnr;
using nnr::test::DeviceArray;
using nnr::test::DeviceMask;

namespace {

// fp32 elementwise: the kernel evaluates the reference's formula per entry, but either compiler
// may contract a·b + c into an FMA, and the proximal step and momentum can cancel, so each result
// is allowed 1e-6 relative to the largest operand it was computed from (a few ulps of it).
constexpr double kUpdateRel = 1e-6;
// The penalty value is a double sum of the same double terms in another order: ~n·2^-53 apart.
constexpr double kPenaltyValueRel = 1e-12;

struct MaskCase {
  const char* name;
  UpdateMask mask;
};

std::vector<MaskCase> mask_cases(int64_t rows, Rng& rng, int64_t n) {
  std::vector<int64_t> some_rows;
  for (int64_t r = 0; r < rows; ++r)
    if (r == 0 || r == rows - 1 || rng.uniform() < 0.25) some_rows.push_back(r);
  std::vector<uint8_t> sparse(static_cast<size_t>(n)), full(static_cast<size_t>(n), 1);
  for (auto& f : sparse) f = rng.uniform() < 0.3;
  return {{"all", UpdateMask::all()},
          {"rows", UpdateMask::of_rows(some_rows)},
          {"none", UpdateMask::none()},
          {"elements 30%", UpdateMask::of_elements(sparse)},
          {"elements 100%", UpdateMask::of_elements(full)}};
}

enum class PenaltyKind { None, AnchorOnly, Full };
const char* name_of(PenaltyKind k) {
  return k == PenaltyKind::None ? "no penalty" : k == PenaltyKind::AnchorOnly ? "anchor, omega = 1" : "anchor + omega + SI";
}

enum class Optimizer { Sgd, SgdMomentum, SgdNesterov, Adam };
const char* name_of(Optimizer o) {
  switch (o) {
    case Optimizer::Sgd: return "sgd";
    case Optimizer::SgdMomentum: return "sgd momentum";
    case Optimizer::SgdNesterov: return "sgd nesterov";
    case Optimizer::Adam: return "adam";
  }
  return "?";
}

const char* name_of(kernels::UpdatePath p) {
  return p == kernels::UpdatePath::Auto ? "auto" : p == kernels::UpdatePath::Scalar ? "scalar" : "vector4";
}

// Device copies of host arrays starting `offset` floats into their buffer (offset 1: no array is
// 16-byte aligned, so UpdatePath::Auto must take the one-entry path); the entries before the
// offset hold a sentinel that must survive the update.
constexpr float kSentinel = 12345.0f;
struct OffsetArray {
  OffsetArray(const std::vector<float>& host, int64_t offset, cudaStream_t stream)
      : offset_(static_cast<size_t>(offset)), array_(padded(host, offset_), stream) {}
  float* get() { return array_.get() + offset_; }
  std::vector<float> download() const {
    auto all = array_.download();
    for (size_t k = 0; k < offset_; ++k) REQUIRE(test::same_bits(all[k], kSentinel));
    return {all.begin() + static_cast<std::ptrdiff_t>(offset_), all.end()};
  }

 private:
  static std::vector<float> padded(const std::vector<float>& host, size_t offset) {
    std::vector<float> out(offset, kSentinel);
    out.insert(out.end(), host.begin(), host.end());
    return out;
  }
  size_t offset_;
  DeviceArray<float> array_;
};

void run_case(Optimizer opt, PenaltyKind pk, const MaskCase& mc, int64_t rows, int64_t row_length,
              kernels::UpdatePath update_path, int64_t offset, Rng& rng, cudaStream_t stream) {
  const int64_t n = rows * row_length;
  const size_t un = static_cast<size_t>(n);
  INFO(name_of(opt) << ", " << name_of(pk) << ", mask " << mc.name << ", [" << rows << ", " << row_length << "], path "
                    << name_of(update_path) << ", offset " << offset);
  const auto theta0 = test::random_normal(un, rng), grad = test::random_normal(un, rng);
  const auto state0 = test::random_normal(un, rng, 0.1f);  // velocity or Adam m
  auto second0 = test::random_normal(un, rng, 0.01f);       // Adam v (non-negative)
  for (auto& x : second0) x = x * x;
  const auto anchor = test::random_normal(un, rng);
  auto omega = test::random_normal(un, rng);
  for (auto& x : omega) x = std::fabs(x) * 3.0f;
  const auto path0 = test::random_normal(un, rng, 0.01f);

  // CPU reference on host copies.
  auto theta = theta0, state = state0, second = second0, path = path0;
  kernels::PenaltyArgs pv;
  if (pk != PenaltyKind::None) {
    pv.anchor = anchor.data();
    pv.omega = pk == PenaltyKind::Full ? omega.data() : nullptr;
    pv.lambda = 0.7f;
    pv.path_integral = pk == PenaltyKind::Full ? path.data() : nullptr;
    pv.want_value = true;
  }
  const kernels::MaskArgs mv = mask_args_of(mc.mask, row_length);
  const kernels::SgdArgs sgd{0.05f, opt == Optimizer::Sgd ? 0.0f : 0.9f, 1e-3f, opt == Optimizer::SgdNesterov};
  const kernels::AdamArgs adam{0.01f, 0.9f, 0.999f, 1e-8f, 1e-3f};
  const int64_t step = 3;
  double value_cpu = 0.0;
  if (opt == Optimizer::Adam)
    value_cpu = kernels::adam_update_cpu(theta.data(), grad.data(), state.data(), second.data(), n, step, adam, mv, pv);
  else
    value_cpu = kernels::sgd_update_cpu(theta.data(), grad.data(), opt == Optimizer::Sgd ? nullptr : state.data(), n, sgd, mv, pv);

  // The same on the device.
  OffsetArray d_theta(theta0, offset, stream), d_grad(grad, offset, stream), d_state(state0, offset, stream),
      d_second(second0, offset, stream), d_anchor(anchor, offset, stream), d_omega(omega, offset, stream),
      d_path(path0, offset, stream);
  DeviceArray<double> d_value(1, stream);  // poisoned: the kernel must write it
  const DeviceMask dm(mc.mask, row_length, stream);
  kernels::PenaltyArgs pa;
  if (pk != PenaltyKind::None) {
    pa.anchor = d_anchor.get();
    pa.omega = pk == PenaltyKind::Full ? d_omega.get() : nullptr;
    pa.lambda = 0.7f;
    pa.path_integral = pk == PenaltyKind::Full ? d_path.get() : nullptr;
    pa.want_value = true;
    pa.value = d_value.get();
  }
  if (opt == Optimizer::Adam) {
    const kernels::AdamArgs a{adam.lr, adam.beta1, adam.beta2, adam.eps, adam.weight_decay};
    kernels::adam_update(d_theta.get(), d_grad.get(), d_state.get(), d_second.get(), n, step, a, dm.args, pa, stream,
                         update_path);
  } else {
    const kernels::SgdArgs s{sgd.lr, sgd.momentum, sgd.weight_decay, sgd.nesterov};
    kernels::sgd_update(d_theta.get(), d_grad.get(), opt == Optimizer::Sgd ? nullptr : d_state.get(), n, s, dm.args, pa,
                        stream, update_path);
  }
  const auto g_theta = d_theta.download(), g_state = d_state.download(), g_second = d_second.download(),
             g_path = d_path.download();

  // Masked-out entries: value and every piece of state bit-identical to before the step.
  int64_t selected = 0;
  std::vector<float> sel_got_theta, sel_want_theta, sel_got_state, sel_want_state, sel_got_second, sel_want_second,
      sel_got_path, sel_want_path;
  std::vector<double> mag_theta, mag_state, mag_second, mag_path;
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    if (!mc.mask.selects_element(i, row_length)) {
      INFO("masked-out entry " << i);
      REQUIRE(test::same_bits(g_theta[k], theta0[k]));
      REQUIRE(test::same_bits(g_state[k], state0[k]));
      REQUIRE(test::same_bits(g_second[k], second0[k]));
      REQUIRE(test::same_bits(g_path[k], path0[k]));
      continue;
    }
    ++selected;
    const double g = std::fabs(grad[k]) + 1e-3 * std::fabs(theta0[k]);
    sel_got_theta.push_back(g_theta[k]);
    sel_want_theta.push_back(theta[k]);
    mag_theta.push_back(std::fabs(theta0[k]) + std::fabs(anchor[k]));
    sel_got_state.push_back(g_state[k]);
    sel_want_state.push_back(state[k]);
    mag_state.push_back(std::fabs(state0[k]) + g);
    sel_got_second.push_back(g_second[k]);
    sel_want_second.push_back(second[k]);
    mag_second.push_back(std::fabs(second0[k]) + g * g);
    sel_got_path.push_back(g_path[k]);
    sel_want_path.push_back(path[k]);
    mag_path.push_back(std::fabs(path0[k]) +
                       std::fabs(grad[k]) * (std::fabs(theta0[k]) + std::fabs(anchor[k]) + std::fabs(theta[k])));
  }
  REQUIRE(selected == mc.mask.count(n, rows));
  test::require_close(sel_got_theta, sel_want_theta, kUpdateRel, 0.0, "theta", mag_theta);
  if (opt != Optimizer::Sgd) test::require_close(sel_got_state, sel_want_state, kUpdateRel, 0.0, "first state", mag_state);
  if (opt == Optimizer::Adam)
    test::require_close(sel_got_second, sel_want_second, kUpdateRel, 0.0, "second moment", mag_second);
  if (opt == Optimizer::Sgd) test::require_bit_identical(g_state, state0, "velocity buffer unused without momentum");
  if (opt != Optimizer::Adam) test::require_bit_identical(g_second, second0, "untouched buffer");
  if (pk == PenaltyKind::Full)
    test::require_close(sel_got_path, sel_want_path, kUpdateRel, 0.0, "path integral", mag_path);
  else
    test::require_bit_identical(g_path, path0, "path integral off");

  if (pk != PenaltyKind::None) {
    // The reported value against the reference and against a plain λ Σ Ω (θ − θ*)² before the step.
    double plain = 0.0;
    for (size_t k = 0; k < un; ++k) {
      const double d = static_cast<double>(theta0[k]) - anchor[k];
      plain += (pk == PenaltyKind::Full ? omega[k] : 1.0) * d * d;
    }
    plain *= 0.7f;
    const double value_gpu = d_value.download()[0];
    REQUIRE(std::fabs(value_gpu - value_cpu) <= kPenaltyValueRel * std::fabs(value_cpu));
    REQUIRE(std::fabs(value_gpu - plain) <= kPenaltyValueRel * std::fabs(plain));
  }
}

}  // namespace

TEST_CASE("masked SGD and Adam kernels match the CPU reference and leave masked-out entries bit-identical",
          "[cuda][masked_update]") {
  test::Stream stream;
  Rng rng(20240501);
  using kernels::UpdatePath;
  // Each case through the four-entry path where the arrays allow it (row length 36 and the dense
  // masks at offset 0; a length of 1 or 37 sends Rows masks one entry at a time), forced one entry
  // at a time, and misaligned by one float so that Auto must fall back.
  struct PathCase {
    UpdatePath path;
    int64_t offset;
  };
  for (const int64_t rows : test::awkward_rows())
    for (const int64_t row_length : {int64_t{1}, int64_t{36}, int64_t{37}}) {
      std::vector<PathCase> paths{{UpdatePath::Auto, 0}, {UpdatePath::Scalar, 0}, {UpdatePath::Auto, 1}};
      if (row_length % 4 == 0) paths.push_back({UpdatePath::Vector4, 0});
      for (const Optimizer opt : {Optimizer::Sgd, Optimizer::SgdMomentum, Optimizer::SgdNesterov, Optimizer::Adam})
        for (const PenaltyKind pk : {PenaltyKind::None, PenaltyKind::AnchorOnly, PenaltyKind::Full})
          for (const MaskCase& mc : mask_cases(rows, rng, rows * row_length))
            for (const PathCase& pc : paths) run_case(opt, pk, mc, rows, row_length, pc.path, pc.offset, rng, stream);
    }
}

TEST_CASE("the four-entry update path refuses misaligned arrays and rows not divisible by 4", "[cuda][masked_update]") {
  test::Stream stream;
  DeviceArray<float> buffer(65, stream);
  buffer.upload(std::vector<float>(65, 0.5f));
  float* aligned = buffer.get();
  float* misaligned = buffer.get() + 1;
  const kernels::SgdArgs sgd{0.1f, 0.0f, 0.0f, false};
  REQUIRE_THROWS_AS(kernels::sgd_update(misaligned, aligned, nullptr, 64, sgd, {}, {}, stream, kernels::UpdatePath::Vector4),
                    InvalidArgument);
  DeviceArray<int64_t> rows(std::vector<int64_t>{0, 2}, stream);
  kernels::MaskArgs by_rows;
  by_rows.kind = kernels::MaskKind::Rows;
  by_rows.rows = rows.get();
  by_rows.row_count = 2;
  by_rows.row_length = 6;
  REQUIRE_THROWS_AS(kernels::sgd_update(aligned, aligned, nullptr, 18, sgd, by_rows, {}, stream,
                                        kernels::UpdatePath::Vector4),
                    InvalidArgument);
  by_rows.row_length = 8;  // rows 0 and 2 of length 8: entries 0-7 and 16-23 step, 8-15 stay
  kernels::sgd_update(aligned, buffer.get() + 32, nullptr, 24, sgd, by_rows, {}, stream, kernels::UpdatePath::Vector4);
  const auto got = buffer.download();
  for (size_t k = 0; k < 24; ++k) {
    INFO("entry " << k);
    const bool stepped = k < 8 || k >= 16;
    REQUIRE(test::same_bits(got[k], stepped ? 0.5f - 0.1f * 0.5f : 0.5f));
  }
}

TEST_CASE("masked update kernels accept n = 0 and reject a missing penalty value buffer", "[cuda][masked_update]") {
  test::Stream stream;
  kernels::PenaltyArgs pa;
  kernels::sgd_update(nullptr, nullptr, nullptr, 0, {}, {}, pa, stream);
  kernels::adam_update(nullptr, nullptr, nullptr, nullptr, 0, 1, {}, {}, pa, stream);
  stream.sync();
  DeviceArray<float> theta(std::vector<float>(8, 1.0f), stream);
  pa.anchor = theta.get();
  pa.want_value = true;  // but no value pointer
  REQUIRE_THROWS_AS(kernels::sgd_update(theta.get(), theta.get(), nullptr, 8, {}, {}, pa, stream), InvalidArgument);
  REQUIRE_THROWS_AS(kernels::adam_update(theta.get(), theta.get(), theta.get(), theta.get(), 8, 0, {}, {}, {}, stream),
                    InvalidArgument);
}
