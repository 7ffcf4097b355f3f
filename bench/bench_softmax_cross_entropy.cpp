// bench_softmax_cross_entropy: softmax cross-entropy forward and backward (kernels/softmax_cross_entropy.h).
// Checks both against the CPU reference (engine/ops/softmax_cross_entropy.h) at a small batch,
// then times each: >= 10 warmups, >= 50 repeats with CUDA events after an L2 flush.
// Bytes by hand: forward reads logits once (the row's re-reads hit L1/L2) and labels, writes
// probs; backward reads probs and labels, writes dlogits.
//   bench_softmax_cross_entropy --n 65536 --k 1000 [--repeats 50] [--warmups 10] [--json]   (--n: rows)
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/kernel_bench.h"
#include "engine/core/rng.h"
#include "engine/core/tensor.h"
#include "engine/ops/softmax_cross_entropy.h"
#include "kernels/softmax_cross_entropy.h"

using namespace nnr;

namespace {

struct Flags : bench::CommonFlags {
  int64_t k = 1000;
  Flags() { n = 65536; }
};

struct Data {
  std::vector<float> logits;
  std::vector<int32_t> labels;
  kernels::DeviceBuffer d_logits, d_labels, d_probs, d_dlogits, d_loss;
  Data(int64_t n, int64_t k, Rng& rng, cudaStream_t stream) {
    logits.resize(static_cast<size_t>(n * k));
    for (auto& x : logits) x = static_cast<float>(rng.normal()) * 4.0f;
    labels.resize(static_cast<size_t>(n));
    for (auto& l : labels) l = static_cast<int32_t>(rng.below(static_cast<uint64_t>(k)));
    const size_t bytes = logits.size() * sizeof(float);
    d_logits = kernels::DeviceBuffer(bytes);
    d_logits.copy_from_host(logits.data(), bytes, stream);
    d_labels = kernels::DeviceBuffer(labels.size() * sizeof(int32_t));
    d_labels.copy_from_host(labels.data(), labels.size() * sizeof(int32_t), stream);
    d_probs = kernels::DeviceBuffer(bytes);
    d_dlogits = kernels::DeviceBuffer(bytes);
    d_loss = kernels::DeviceBuffer(sizeof(double));
  }
};

// Largest probability error relative to the value (the test's 1e-6 criterion, above 1e-37).
double check(int64_t k, cudaStream_t stream) {
  Rng rng(3);
  const int64_t n = 257;
  Data d(n, k, rng, stream);
  kernels::softmax_cross_entropy_forward(d.d_logits.as<float>(), d.d_labels.as<int32_t>(), n, k, d.d_probs.as<float>(),
                                d.d_loss.as<double>(), stream);
  Tensor probs = Tensor::empty({n, k});
  const double loss = softmax_cross_entropy_forward(Tensor::from_vector({n, k}, d.logits), d.labels, probs);
  std::vector<float> got(static_cast<size_t>(n * k));
  d.d_probs.copy_to_host(got.data(), got.size() * sizeof(float), stream);
  double got_loss = 0.0;
  d.d_loss.copy_to_host(&got_loss, sizeof(double), stream);
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double want = probs[static_cast<int64_t>(i)];
    if (std::fabs(want) > 1e-37) worst = std::max(worst, std::fabs(got[i] - want) / std::fabs(want));
  }
  if (!(worst <= 1e-6)) throw std::runtime_error("check failed: probability relative error " + std::to_string(worst));
  if (!(std::fabs(got_loss - loss) <= 1e-6 * std::fabs(loss) + 1e-6))
    throw std::runtime_error("check failed: loss " + std::to_string(got_loss) + " vs " + std::to_string(loss));
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_softmax_cross_entropy: softmax cross-entropy forward and backward on the GPU"};
  Flags f;
  bench::add_common_flags(app, f, "Rows");
  bench::add_count(app, "--k", f.k, "Classes");
  return bench::run_main(app, argc, argv, [&] {
    if (f.n < 1 || f.k < 1) throw CLI::ValidationError("--n", "--n and --k must be >= 1");
    cudaStream_t stream;
    NNR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const double check_error = check(f.k, stream);
    bench::KernelTimer timer(stream);
    Rng rng(1);
    Data d(f.n, f.k, rng, stream);
    const double matrix = static_cast<double>(f.n * f.k) * 4.0, labels = static_cast<double>(f.n) * 4.0;
    const bench::Timing fwd = timer.time(
        [&] {
          kernels::softmax_cross_entropy_forward(d.d_logits.as<float>(), d.d_labels.as<int32_t>(), f.n, f.k,
                                        d.d_probs.as<float>(), d.d_loss.as<double>(), stream);
        },
        f.warmups, f.repeats);
    const bench::Timing bwd = timer.time(
        [&] {
          kernels::softmax_cross_entropy_backward(d.d_probs.as<float>(), d.d_labels.as<int32_t>(), f.n, f.k, 1.0f / f.n,
                                         d.d_dlogits.as<float>(), stream);
        },
        f.warmups, f.repeats);
    const double copy = timer.copy_bandwidth_gbs(static_cast<size_t>(matrix), f.warmups, f.repeats);
    struct Row {
      const char* name;
      bench::Timing t;
      double bytes;
    };
    for (const Row& r : {Row{"softmax_cross_entropy_forward", fwd, 2 * matrix + labels},
                         Row{"softmax_cross_entropy_backward", bwd, 2 * matrix + labels}}) {
      nlohmann::ordered_json row = bench::row_of(r.name, timer.device().name);
      row["n"] = f.n;
      row["k"] = f.k;
      bench::add_bandwidth(row, r.bytes, r.t, copy);
      row["check_max_rel_error"] = check_error;
      bench::print_row(f, row);
    }
    NNR_CUDA_CHECK(cudaStreamDestroy(stream));
  });
}
