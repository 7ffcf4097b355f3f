// Times nnr's full training step (zero_grad, forward, loss, backward, optimizer step) on one
// fixed batch that lives on the device, so it measures the step and not the data loading:
// random inputs of the spec's sample shape and random labels, drawn once from --seed. After
// --warmup steps, --steps steps run in blocks of --block; each block is timed from the host
// clock after a synchronize, the median is over blocks (ms per step) and the mean is the whole
// timed run divided by --steps. bench/peers/torch_train_step.py is the PyTorch peer (same keys),
// bench/gpu_mlp_peers.sh runs both.
//
// What synchronizes on CUDA: the Tape API takes the labels as a host vector, so every step
// uploads them once (SoftmaxCrossEntropy keeps them on the device for its backward; the upload is
// a copy from pageable memory that waits on the stream, i.e. for the whole forward pass), and
// Tape::apply_loss returns the loss as a double, copied to the host (that copy waits too).
// The optimizer step that ends a step is only queued, so the last step of each block is waited
// for with Context::synchronize() before the clock is read. Those per-step waits are part of
// nnr's step as a caller sees it, so they are timed.
// With --cuda-graph the step is GraphedTrainStep (apps/trainer/graphed_step.h), as `nnr train
// --cuda-graph` runs it: each step copies the host batch and labels into page-locked buffers,
// replays the recorded graph (one launch) and waits for its loss. The batch then starts on the
// host, so the graphed step also pays for its upload, which the eager step here does not.
//
//   bench_train_step [--model mlp:784-256-256-10] [--batch 128] [--device cpu|cuda]
//                    [--optimizer sgd|adam] [--cuda-graph] [--warmup 20] [--steps 200] [--json]
// Exit status 2 (one line on stderr) when --device cuda cannot run here.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "apps/trainer/graphed_step.h"
#include "engine/core/context.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "engine/core/tensor.h"
#include "engine/core/threads.h"
#include "engine/nn/loss.h"
#include "engine/nn/model_spec.h"
#include "engine/nn/tape.h"
#include "engine/optim/optimizer.h"
#ifdef NNR_WITH_CUDA
#include "kernels/cuda/device_memory.h"
#endif

using namespace nnr;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run(int argc, char** argv) {
  CLI::App app{"Time nnr's training step (zero_grad, forward, loss, backward, optimizer step) on one batch"};
  std::string spec = "mlp:784-256-256-10", device = "cuda", optimizer = "sgd";
  int64_t batch = 128;
  int warmup = 20, steps = 200, block = 10, threads = 2;
  uint64_t seed = 0;
  double lr = 0.01;
  bool json = false;
  app.add_option("--model", spec, "Model spec")->capture_default_str();
  app.add_option("--batch", batch, "Batch size")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--device", device, "cpu or cuda")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--optimizer", optimizer, "sgd (momentum 0.9) or adam")
      ->capture_default_str()
      ->check(CLI::IsMember({"sgd", "adam"}));
  app.add_option("--lr", lr, "Learning rate")->capture_default_str();
  app.add_option("--warmup", warmup, "Untimed steps first")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--steps", steps, "Timed steps")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--block", block, "Steps per timed block (one synchronize per block)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "CPU threads (0: all)")->capture_default_str();
  app.add_option("--seed", seed, "Seed of the weights, inputs and labels")->capture_default_str();
  bool cuda_graph = false;
  app.add_flag("--cuda-graph", cuda_graph, "With --device cuda: replay the step from a recorded CUDA graph");
  app.add_flag("--json", json, "Print one JSON object");
  CLI11_PARSE(app, argc, argv);
  block = std::min(block, steps);

  const bool cuda = device == "cuda";
  if (cuda_graph && !cuda) {
    std::fprintf(stderr, "bench_train_step: --cuda-graph needs --device cuda\n");
    return 2;
  }
  if (cuda) {
    const std::string why = Context::why_cuda_unavailable();
    if (!why.empty()) {
      std::fprintf(stderr, "bench_train_step: --device cuda: %s\n", why.c_str());
      return 2;
    }
  }
  set_num_threads(threads);

  std::unique_ptr<Context> ctx;  // declared before the model and every CUDA tensor: it must outlive them
  Sequential model = build_model(spec, seed);
  Shape x_shape{batch}, one_sample{1};
  for (int64_t d : model_input_shape(spec)) x_shape.push_back(d), one_sample.push_back(d);
  const int32_t classes = static_cast<int32_t>(model.output_shape(one_sample).back());
  Rng rng(seed + 1);
  Tensor x_host(x_shape);
  for (int64_t i = 0; i < x_host.numel(); ++i) x_host[i] = static_cast<float>(rng.normal());
  // Two label sets, used in turn: real training has new labels every step, and the loss uploads
  // them only when they change (engine/core/device_copy.h), so a single fixed set would skip the
  // per-step upload that training pays.
  std::vector<int32_t> labels[2];
  for (auto& set : labels) {
    set.resize(static_cast<size_t>(batch));
    for (auto& y : set) y = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));
  }
  int64_t steps_run = 0;

  Tensor x_device;
  if (cuda) {
    ctx = std::make_unique<Context>();
    model.to(Device::CUDA, *ctx);
    x_device = x_host.to(Device::CUDA, *ctx);
  }
  const Tensor& x = cuda ? x_device : x_host;

  auto opt = make_optimizer({optimizer, static_cast<float>(lr), 0.9f, 0.0f});
  const std::vector<Parameter*> params = model.parameters();
  Tape tape;
  SoftmaxCrossEntropy loss;
  double last_loss = 0.0;
  std::unique_ptr<GraphedTrainStep> graph;
  Batch host_batches[2];
  if (cuda_graph) {
    graph = std::make_unique<GraphedTrainStep>(model, *opt, *ctx);
    for (int i = 0; i < 2; ++i) {
      host_batches[i].x = x_host.clone();
      host_batches[i].y = labels[i];
      host_batches[i].indices.resize(static_cast<size_t>(batch));
    }
  }
  auto step = [&] {
    if (graph) {
      graph->step(host_batches[steps_run++ % 2], last_loss);
      return;
    }
    model.zero_grad();
    model.forward(x, tape);
    last_loss = tape.apply_loss(loss, labels[steps_run++ % 2]);
    tape.backward();
    opt->step(params);
  };
  auto wait = [&] {
    if (ctx) ctx->synchronize();
  };

  for (int i = 0; i < warmup; ++i) step();
  wait();
  const double first_loss = last_loss;
  std::vector<double> block_ms;  // ms per step of each block
  double total_s = 0.0;
  for (int done = 0; done < steps;) {
    const int n = std::min(block, steps - done);
    const auto start = Clock::now();
    for (int i = 0; i < n; ++i) step();
    wait();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    block_ms.push_back(1e3 * s / n);
    total_s += s;
    done += n;
  }
  if (!std::isfinite(last_loss)) throw Error("[bench_train_step] the loss is not finite: " + std::to_string(last_loss));

  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  nlohmann::json out = {{"engine", "nnr"},
                        {"model", spec},
                        {"batch", batch},
                        {"device", device},
                        {"cuda_graph", cuda_graph},
                        {"device_name", cuda ? ctx->gpu_name() : std::string("cpu")},
                        {"optimizer", optimizer},
                        {"lr", lr},
                        {"threads", threads},
                        {"warmup", warmup},
                        {"steps", steps},
                        {"block", block},
                        {"ms_per_step_median", median(block_ms)},
                        {"ms_per_step_mean", 1e3 * total_s / steps},
                        {"ms_per_step_min_block", *std::min_element(block_ms.begin(), block_ms.end())},
                        {"loss_after_warmup", first_loss},
                        {"final_loss", last_loss},
                        {"peak_rss_mb", static_cast<double>(usage.ru_maxrss) / 1024.0}};
#ifdef NNR_WITH_CUDA
  if (ctx) {
    // Everything nnr's caching allocator holds (in use + cached). It frees nothing back to the
    // driver unless a cudaMalloc fails, so this is its peak; cuBLAS workspaces are not counted.
    const auto stats = ctx->allocator().stats();
    out["device_memory_mb"] = static_cast<double>(stats.bytes_in_use + stats.bytes_cached) / (1024.0 * 1024.0);
  }
#endif
  if (graph) {
    const GraphedTrainStep::Counts c = graph->counts();
    out["graph_counts"] = {{"warmups", c.warmups}, {"recordings", c.recordings}, {"replays", c.replays}};
  }
  if (json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("nnr %s batch %lld on %s (%s%s), %s: %.3f ms/step median, %.3f mean over %d steps (loss %.4f -> %.4f)\n",
                spec.c_str(), static_cast<long long>(batch), device.c_str(), out["device_name"].get<std::string>().c_str(),
                cuda_graph ? ", cuda graph" : "", optimizer.c_str(), out["ms_per_step_median"].get<double>(), out["ms_per_step_mean"].get<double>(), steps,
                first_loss, last_loss);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_step: %s\n", e.what());
    return 1;
  }
}
