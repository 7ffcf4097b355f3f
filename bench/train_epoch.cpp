// Times one training epoch of nnr on Fashion-MNIST after a warm-up epoch (the same
// train_epoch the CLI runs), and, for MLP specs, the bare GEMMs of one epoch: the arithmetic
// floor with the same Eigen GEMM nnr uses, on preallocated buffers, nothing else.
// Prints one JSON object (seconds, floor, peak RSS) for bench/mlp_peers.sh.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/trainer/train_loop.h"
#include "engine/core/threads.h"
#include "engine/nn/linear.h"
#include "engine/nn/model_spec.h"
#include "engine/ops/gemm.h"

using namespace nnr;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The GEMMs of one epoch of an MLP: per batch, forward x·Wᵀ for every layer, dW = dyᵀ·x for
// every layer and dx = dy·W for every layer but the first.
double time_gemm_floor(Sequential& model, int64_t samples, int64_t batch_size) {
  std::vector<Linear*> layers;
  for (size_t i = 0; i < model.size(); ++i)
    if (auto* l = dynamic_cast<Linear*>(&model.layer(i))) layers.push_back(l);
  std::vector<Tensor> acts, grads, dws;
  auto run_batch = [&](int64_t b) {
    for (size_t i = 0; i < layers.size(); ++i) {
      Linear* l = layers[i];
      gemm_cpu(acts[i].data(), false, l->weight().value.data(), true, acts[i + 1].data(), b, l->out_features(),
               l->in_features(), 1.0f, 0.0f);
    }
    for (size_t i = layers.size(); i-- > 0;) {
      Linear* l = layers[i];
      gemm_cpu(grads[i + 1].data(), true, acts[i].data(), false, dws[i].data(), l->out_features(), l->in_features(),
               b, 1.0f, 0.0f);
      if (i > 0)
        gemm_cpu(grads[i + 1].data(), false, l->weight().value.data(), false, grads[i].data(), b, l->in_features(),
                 l->out_features(), 1.0f, 0.0f);
    }
  };
  acts.emplace_back(Shape{batch_size, layers[0]->in_features()});
  grads.emplace_back(Shape{batch_size, layers[0]->in_features()});
  for (Linear* l : layers) {
    acts.emplace_back(Shape{batch_size, l->out_features()});
    grads.emplace_back(Shape{batch_size, l->out_features()});
    dws.emplace_back(Shape{l->out_features(), l->in_features()});
  }
  for (int64_t s = 0; s < samples; s += batch_size) run_batch(std::min(batch_size, samples - s));  // warm-up
  const auto start = Clock::now();
  for (int64_t s = 0; s < samples; s += batch_size) run_batch(std::min(batch_size, samples - s));
  return seconds_since(start);
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
  if (spec.rfind("mlp:", 0) == 0) out["gemm_floor_seconds"] = time_gemm_floor(model, train.size(), batch_size);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  out["peak_rss_mb"] = static_cast<double>(usage.ru_maxrss) / 1024.0;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
