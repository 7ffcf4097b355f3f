#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "apps/nnr/commands.h"
#include "apps/nnr/device.h"
#include "apps/trainer/model_file.h"
#include "apps/trainer/train_loop.h"
#include "engine/core/threads.h"

namespace nnr::cli {
namespace {

struct EvalFlags {
  std::string model, data, model_spec, device = "cpu";
  int64_t batch_size = 1000;
  int threads = 0;
  bool json = false;
};

void run_eval(const EvalFlags& f) {
  set_num_threads(f.threads);
  const std::unique_ptr<Context> cuda = open_device(f.device, "eval");  // outlives the model's CUDA tensors
  LoadedModel loaded = load_model(f.model, f.model_spec);
  const Dataset data = load_dataset(f.data);
  check_model_accepts(loaded.model, data.sample_shape(), data.num_classes, f.data);
  if (cuda) loaded.model.to(Device::CUDA, *cuda);
  const Evaluation e = evaluate(loaded.model, data, f.batch_size, cuda.get());
  if (f.json) {
    nlohmann::json j = {{"command", "eval"}, {"model", f.model}, {"data", f.data}, {"samples", e.samples},
                        {"accuracy", e.accuracy}, {"loss", e.loss}, {"class_accuracy", e.class_accuracy},
                        {"class_count", e.class_count}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("%s on %s: %lld samples\n", loaded.model.spec().c_str(), f.data.c_str(),
              static_cast<long long>(e.samples));
  std::printf("accuracy %.2f %%  loss %.4f\n", 100.0 * e.accuracy, e.loss);
  std::printf("class  samples  accuracy\n");
  for (size_t c = 0; c < e.class_accuracy.size(); ++c)
    std::printf("%5zu  %7lld  %6.2f %%\n", c, static_cast<long long>(e.class_count[c]), 100.0 * e.class_accuracy[c]);
}

}  // namespace

Command add_eval(CLI::App& app) {
  auto f = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand("eval", "Accuracy, loss and per-class accuracy of a model on labelled data");
  cmd->add_option("--model", f->model, "Model file (.safetensors)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--data", f->data, "Labelled data spec, e.g. fashion-mnist:test")->required();
  cmd->add_option("--model-spec", f->model_spec, "Architecture, for files not written by nnr (e.g. by PyTorch)");
  cmd->add_option("--batch-size", f->batch_size, "Samples per forward pass")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--threads", f->threads, "CPU threads (0: all cores)")->check(CLI::Range(0, 1024));
  add_device_option(cmd, f->device, "Evaluate");
  cmd->add_flag("--json", f->json, "Print the result as JSON on stdout");
  return [f] { run_eval(*f); };
}

}  // namespace nnr::cli
