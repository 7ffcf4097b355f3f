// Times one training epoch of nnr on Fashion-MNIST after a warm-up epoch (the same
// train_epoch the CLI runs), and the bare GEMMs of one epoch (one GEMM per layer and direction
// over the whole batch; convolutions on batched im2col columns): the arithmetic floor, once with
// nnr's gemm_cpu and once with Eigen's own multithreaded GEMM, on preallocated buffers.
// Prints one JSON object (seconds, floor, peak RSS) for bench/mlp_peers.sh.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/trainer/train_loop.h"
#include "engine/core/threads.h"
#include "engine/nn/conv2d.h"
#include "engine/nn/linear.h"
#include "engine/nn/model_spec.h"
#include "engine/ops/gemm.h"

using namespace nnr;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// One GEMM of a training step, C[m, n] = op(A) · op(B), as gemm_cpu takes it.
struct GemmShape {
  bool ta, tb;
  int64_t m, n, k;
};

// The GEMMs of one batch of b samples (forward, weight gradient, input gradient but for the first
// layer), each layer and direction as ONE GEMM over the whole batch: Linear x·Wᵀ, dyᵀ·x, dy·W;
// Conv2d on batched im2col columns [C·KH·KW, b·Ho·Wo]: W·cols, dy·colsᵀ, Wᵀ·dy. Nothing else
// (no im2col, bias, activation, pooling or optimizer): the arithmetic floor of the step computed
// the direct way. nnr's Winograd layers (kernels/conv2d_winograd.h) do 2.25x fewer multiplies,
// so a CNN epoch can run under this floor.
std::vector<GemmShape> batch_gemms(Sequential& model, Shape shape, int64_t b) {
  std::vector<GemmShape> out;
  shape[0] = b;
  bool first = true;
  for (size_t i = 0; i < model.size(); ++i) {
    Layer& layer = model.layer(i);
    const Shape next = layer.output_shape(shape);
    if (auto* l = dynamic_cast<Linear*>(&layer)) {
      const int64_t in = l->in_features(), o = l->out_features();
      out.push_back({false, true, b, o, in});
      out.push_back({true, false, o, in, b});
      if (!first) out.push_back({false, false, b, in, o});
      first = false;
    } else if (auto* c = dynamic_cast<Conv2d*>(&layer)) {
      const Shape& w = c->weight().value.shape();
      const int64_t patch = w[1] * w[2] * w[3], o = w[0], cols = b * next[2] * next[3];
      out.push_back({false, false, o, cols, patch});
      out.push_back({false, true, o, patch, cols});
      if (!first) out.push_back({true, false, patch, cols, o});
      first = false;
    }
    shape = next;
  }
  return out;
}

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor>;

// C = op(A) · op(B) with Eigen's own GEMM, threaded by Eigen (Eigen::setNbThreads).
void eigen_gemm(const GemmShape& g, const float* a, const float* b, float* c) {
  Eigen::Map<RowMajor> cm(c, g.m, g.n);
  const ConstMap am = g.ta ? ConstMap(a, g.k, g.m) : ConstMap(a, g.m, g.k);
  const ConstMap bm = g.tb ? ConstMap(b, g.n, g.k) : ConstMap(b, g.k, g.n);
  if (!g.ta && !g.tb) cm.noalias() = am * bm;
  else if (!g.ta) cm.noalias() = am * bm.transpose();
  else if (!g.tb) cm.noalias() = am.transpose() * bm;
  else cm.noalias() = am.transpose() * bm.transpose();
}

// Seconds of the GEMMs of one epoch (after one warm-up pass), on preallocated buffers: with
// nnr's gemm_cpu (threads split C into blocks), or with Eigen's own multithreaded GEMM.
double time_gemm_floor(Sequential& model, const Shape& sample, int64_t samples, int64_t batch_size, bool eigen,
                       int threads) {
  const int64_t last = samples % batch_size;
  std::vector<std::vector<GemmShape>> steps{batch_gemms(model, sample, batch_size)};
  if (last) steps.push_back(batch_gemms(model, sample, last));
  size_t largest = 0;
  for (const GemmShape& g : steps[0])
    largest = std::max({largest, static_cast<size_t>(g.m * g.k), static_cast<size_t>(g.k * g.n),
                        static_cast<size_t>(g.m * g.n)});
  std::vector<float> a(largest, 0.01f), b(largest, 0.02f), c(largest);
  auto run_step = [&](const std::vector<GemmShape>& gemms) {
    for (const GemmShape& g : gemms) {
      if (eigen)
        eigen_gemm(g, a.data(), b.data(), c.data());
      else
        gemm_cpu(a.data(), g.ta, b.data(), g.tb, c.data(), g.m, g.n, g.k, 1.0f, 0.0f);
    }
  };
  auto run_epoch = [&] {
    for (int64_t s = 0; s + batch_size <= samples; s += batch_size) run_step(steps[0]);
    if (last) run_step(steps[1]);
  };
  if (eigen) Eigen::setNbThreads(threads);
  run_epoch();  // warm-up
  const auto start = Clock::now();
  run_epoch();
  const double seconds = seconds_since(start);
  if (eigen) Eigen::setNbThreads(1);  // as gemm_cpu expects
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Time one nnr training epoch on Fashion-MNIST (after a warm-up epoch)"};
  std::string spec = "mlp:784-256-256-10", optimizer = "sgd";
  int threads = 2;
  int64_t batch_size = 128;
  float lr = 0.01f;
  app.add_option("--model", spec, "Model spec")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads")->capture_default_str();
  app.add_option("--batch-size", batch_size, "Batch size")->capture_default_str();
  app.add_option("--optimizer", optimizer, "sgd or adam")->capture_default_str();
  app.add_option("--lr", lr, "Learning rate")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  set_num_threads(threads);
  const Dataset train = load_dataset("fashion-mnist");
  Sequential model = build_model(spec, 0);
  auto opt = make_optimizer({optimizer, lr, 0.9f, 0.0f});
  Batcher batches(train, BatcherOptions{batch_size, true, false}, Rng(1));
  train_epoch(model, *opt, batches, 1, 2);
  const EpochResult timed = train_epoch(model, *opt, batches, 2, 2);

  nlohmann::json out = {{"engine", "nnr"},        {"model", spec},
                        {"threads", threads},     {"batch_size", batch_size},
                        {"epoch_seconds", timed.seconds}, {"final_loss", timed.loss}};
  Shape sample{1};
  for (const int64_t d : train.sample_shape()) sample.push_back(d);
  out["gemm_floor_seconds"] = time_gemm_floor(model, sample, train.size(), batch_size, false, threads);
  out["eigen_gemm_floor_seconds"] = time_gemm_floor(model, sample, train.size(), batch_size, true, threads);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  out["peak_rss_mb"] = static_cast<double>(usage.ru_maxrss) / 1024.0;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
