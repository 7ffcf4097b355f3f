// bench_masked_update: the fused masked SGD-momentum / Adam update (kernels/masked_update.h).
// First checks the kernel against the CPU reference (kernels/masked_update.h) at a small n,
// then times it: >= 10 warmups, >= 50 repeats with CUDA events after an L2 flush, median and min.
// Bytes are counted by hand per selected entry (see bytes_per_entry) and reported as GB/s and as
// a fraction of the device-to-device memcpy bandwidth measured in the same run.
//   bench_masked_update --n 10M --density 0.25 --optimizer adam [--mask rows|elements|all]
//                       [--row-length 1024] [--penalty none|anchor|omega|si] [--path auto|scalar|vector4]
//                       [--repeats 50] [--warmups 10] [--json]
// --path forces the kernels' memory access (kernels::UpdatePath): one entry or four per access.
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/kernel_bench.h"
#include "engine/core/rng.h"
#include "engine/optim/update_mask.h"
#include "engine/optim/mask_args.h"
#include "kernels/masked_update.h"

using namespace nnr;

namespace {

struct Flags : bench::CommonFlags {
  double density = 1.0;
  std::string optimizer = "sgd", mask = "", penalty = "omega", path = "auto";
  int64_t row_length = 1024;
  kernels::UpdatePath update_path() const {
    return path == "scalar" ? kernels::UpdatePath::Scalar
           : path == "vector4" ? kernels::UpdatePath::Vector4 : kernels::UpdatePath::Auto;
  }
};

// The flags; checks what CLI11's validators do not (the mask's default and combinations).
void add_flags(CLI::App& app, Flags& f) {
  bench::add_common_flags(app, f, "Parameters");
  app.add_option("--density", f.density, "Share of the entries updated, in (0, 1]")
      ->check(CLI::Range(1e-9, 1.0))
      ->capture_default_str();
  app.add_option("--optimizer", f.optimizer)->check(CLI::IsMember({"sgd", "adam"}))->capture_default_str();
  app.add_option("--mask", f.mask, "all, rows or elements (default: all at density 1, else rows)")
      ->check(CLI::IsMember({"all", "rows", "elements"}));
  app.add_option("--penalty", f.penalty)->check(CLI::IsMember({"none", "anchor", "omega", "si"}))->capture_default_str();
  app.add_option("--path", f.path, "The kernels' memory access: one entry or four per access")
      ->check(CLI::IsMember({"auto", "scalar", "vector4"}))
      ->capture_default_str();
  bench::add_count(app, "--row-length", f.row_length, "Entries per row");
}

void check_flags(Flags& f) {
  if (f.mask.empty()) f.mask = f.density >= 1.0 ? "all" : "rows";
  if (f.mask == "all" && f.density < 1.0) throw CLI::ValidationError("--mask", "--mask all needs --density 1");
  if (f.row_length < 1 || f.n < f.row_length) throw CLI::ValidationError("--n", "--n must be at least --row-length >= 1");
}

// Bytes moved per selected entry: reads of θ, g, state, θ*, Ω, path integral; writes of θ,
// state, path integral (4 bytes each). SGD here always uses momentum (one state array).
int64_t bytes_per_entry(const Flags& f) {
  int64_t arrays = f.optimizer == "adam" ? 3 + 2 + 2 : 3 + 2;  // (θ, g, state...) read + (θ, state...) written
  if (f.penalty != "none") arrays += 1;                         // θ*
  if (f.penalty == "omega" || f.penalty == "si") arrays += 1;   // Ω
  if (f.penalty == "si") arrays += 2;                           // path integral read + write
  return arrays * 4;
}

UpdateMask make_mask(const Flags& f, int64_t n, Rng& rng) {
  if (f.mask == "all") return UpdateMask::all();
  if (f.mask == "rows") {
    const int64_t rows = n / f.row_length;
    std::vector<int64_t> chosen;
    for (int64_t r = 0; r < rows; ++r)
      if (rng.uniform() < f.density) chosen.push_back(r);
    return UpdateMask::of_rows(chosen);
  }
  std::vector<uint8_t> flags(static_cast<size_t>(n));
  for (auto& x : flags) x = rng.uniform() < f.density;
  return UpdateMask::of_elements(flags);
}

struct Problem {
  int64_t n;
  UpdateMask mask;
  std::vector<float> theta, grad, s1, s2, anchor, omega, path;
  kernels::DeviceBuffer d_theta, d_grad, d_s1, d_s2, d_anchor, d_omega, d_path, d_rows, d_bits, d_value;
  kernels::MaskArgs mask_args;
  kernels::PenaltyArgs penalty;

  Problem(const Flags& f, int64_t n_, Rng& rng, cudaStream_t stream) : n(n_), mask(make_mask(f, n_, rng)) {
    const size_t un = static_cast<size_t>(n);
    // Uniform values (cheaper than normal draws at 100M entries; the kernel's cost is data-independent).
    auto fill = [&](std::vector<float>& v, float scale, bool positive) {
      v.resize(un);
      for (auto& x : v) {
        x = static_cast<float>(rng.uniform() * 2.0 - 1.0) * scale;
        if (positive) x = x * x;
      }
    };
    fill(theta, 1.0f, false);
    fill(grad, 1.0f, false);
    fill(s1, 0.1f, false);
    fill(s2, 0.1f, true);
    fill(anchor, 1.0f, false);
    fill(omega, 1.0f, true);
    fill(path, 0.01f, false);
    auto upload = [&](kernels::DeviceBuffer& d, const void* host, size_t bytes) {
      d = kernels::DeviceBuffer(std::max<size_t>(bytes, 8));
      if (bytes) d.copy_from_host(host, bytes, stream);
    };
    const size_t fb = un * sizeof(float);
    upload(d_theta, theta.data(), fb);
    upload(d_grad, grad.data(), fb);
    upload(d_s1, s1.data(), fb);
    upload(d_s2, s2.data(), fb);
    upload(d_anchor, anchor.data(), fb);
    upload(d_omega, omega.data(), fb);
    upload(d_path, path.data(), fb);
    upload(d_rows, mask.rows.data(), mask.rows.size() * sizeof(int64_t));
    upload(d_bits, mask.bits.data(), mask.bits.size() * sizeof(uint32_t));
    d_value = kernels::DeviceBuffer(sizeof(double));
    mask_args.kind = mask.kind == UpdateMask::Kind::All    ? kernels::MaskKind::All
                     : mask.kind == UpdateMask::Kind::Rows ? kernels::MaskKind::Rows
                                                           : kernels::MaskKind::Elements;
    mask_args.rows = d_rows.as<int64_t>();
    mask_args.row_count = static_cast<int64_t>(mask.rows.size());
    mask_args.row_length = f.row_length;
    mask_args.bits = d_bits.as<uint32_t>();
    if (f.penalty != "none") {
      penalty.anchor = d_anchor.as<float>();
      penalty.lambda = 0.5f;
      if (f.penalty != "anchor") penalty.omega = d_omega.as<float>();
      if (f.penalty == "si") penalty.path_integral = d_path.as<float>();
    }
  }

  void launch(const Flags& f, int64_t step, cudaStream_t stream) {
    if (f.optimizer == "adam")
      kernels::adam_update(d_theta.as<float>(), d_grad.as<float>(), d_s1.as<float>(), d_s2.as<float>(), n, step,
                           kernels::AdamArgs{}, mask_args, penalty, stream, f.update_path());
    else
      kernels::sgd_update(d_theta.as<float>(), d_grad.as<float>(), d_s1.as<float>(), n,
                          kernels::SgdArgs{0.01f, 0.9f, 0.0f, false}, mask_args, penalty, stream, f.update_path());
  }
};

// One step on the GPU against the CPU reference; returns the largest error relative to the
// operands' magnitude (the test's kUpdateRel criterion), or throws on a masked-out change.
double check_against_cpu(const Flags& f, cudaStream_t stream) {
  Rng rng(7);
  const int64_t n = std::max<int64_t>(f.row_length * 64, 100'003 / f.row_length * f.row_length);
  Problem p(f, n, rng, stream);
  p.launch(f, 3, stream);
  auto theta = p.theta, s1 = p.s1, s2 = p.s2, path = p.path;
  kernels::PenaltyArgs pv;
  if (p.penalty.anchor) {
    pv.anchor = p.anchor.data();
    pv.lambda = p.penalty.lambda;
    pv.omega = p.penalty.omega ? p.omega.data() : nullptr;
    pv.path_integral = p.penalty.path_integral ? path.data() : nullptr;
  }
  const kernels::MaskArgs mv = mask_args_of(p.mask, f.row_length);
  if (f.optimizer == "adam")
    kernels::adam_update_cpu(theta.data(), p.grad.data(), s1.data(), s2.data(), n, 3, kernels::AdamArgs{}, mv, pv);
  else
    kernels::sgd_update_cpu(theta.data(), p.grad.data(), s1.data(), n, kernels::SgdArgs{0.01f, 0.9f, 0.0f, false}, mv, pv);
  std::vector<float> got(static_cast<size_t>(n));
  p.d_theta.copy_to_host(got.data(), got.size() * sizeof(float), stream);
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!p.mask.selects_element(static_cast<int64_t>(i), f.row_length)) {
      if (got[i] != p.theta[i]) throw std::runtime_error("check failed: masked-out entry " + std::to_string(i) + " changed");
      continue;
    }
    const double scale = std::max({std::fabs(static_cast<double>(theta[i])), std::fabs(static_cast<double>(p.theta[i])) +
                                                                             std::fabs(static_cast<double>(p.anchor[i]))});
    worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - theta[i]) / scale);
  }
  if (!(worst <= 1e-6)) throw std::runtime_error("check failed: relative error " + std::to_string(worst) + " > 1e-6");
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_masked_update: the fused masked SGD-momentum / Adam update on the GPU"};
  Flags f;
  add_flags(app, f);
  return bench::run_main(app, argc, argv, [&] {
    check_flags(f);
    cudaStream_t stream;
    NNR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const double check_error = check_against_cpu(f, stream);
    bench::KernelTimer timer(stream);
    Rng rng(1);
    Problem p(f, f.n, rng, stream);
    const int64_t selected = p.mask.count(f.n, f.n / f.row_length);
    double bytes = static_cast<double>(selected) * bytes_per_entry(f);
    if (f.mask == "elements") bytes += static_cast<double>(p.mask.bits.size()) * 4.0;
    if (f.mask == "rows") bytes += static_cast<double>(p.mask.rows.size()) * 8.0;
    int64_t step = 1;
    const bench::Timing t = timer.time([&] { p.launch(f, step++, stream); }, f.warmups, f.repeats);
    const double copy = timer.copy_bandwidth_gbs(static_cast<size_t>(f.n) * sizeof(float), f.warmups, f.repeats);
    nlohmann::ordered_json row = bench::row_of("masked_update", timer.device().name);
    row["optimizer"] = f.optimizer;
    row["mask"] = f.mask;
    row["path"] = f.path;
    row["penalty"] = f.penalty;
    row["n"] = f.n;
    row["density"] = f.density;
    row["selected"] = selected;
    bench::add_bandwidth(row, bytes, t, copy);
    row["gbs_at_min"] = bench::gbs(bytes, t.min_ms);
    row["check_max_rel_error"] = check_error;
    bench::print_row(f, row);
    NNR_CUDA_CHECK(cudaStreamDestroy(stream));
  });
}
