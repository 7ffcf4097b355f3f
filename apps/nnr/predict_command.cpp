#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "apps/nnr/commands.h"
#include "apps/nnr/device.h"
#include "apps/trainer/model_file.h"
#include "apps/trainer/train_loop.h"
#include "engine/core/error.h"
#include "engine/core/threads.h"
#include "engine/io/atomic_file.h"

namespace nnr::cli {
namespace {

struct PredictFlags {
  std::string model, input, output, model_spec, device = "cpu";
  int64_t batch_size = 1000;
  int threads = 0;
};

void run_predict(const PredictFlags& f) {
  set_num_threads(f.threads);
  const std::unique_ptr<Context> cuda = open_device(f.device, "predict");  // outlives the model's CUDA tensors
  LoadedModel loaded = load_model(f.model, f.model_spec);
  Tensor features = load_features(f.input);
  const Shape sample(features.shape().begin() + 1, features.shape().end());
  check_model_accepts(loaded.model, sample, 0, f.input);
  if (cuda) loaded.model.to(Device::CUDA, *cuda);
  const Tensor probs = predict_probabilities(loaded.model, features, f.batch_size, cuda.get());
  const int64_t n = probs.dim(0), k = probs.dim(1);

  std::string csv = "label";
  for (int64_t j = 0; j < k; ++j) csv += ",p" + std::to_string(j);
  csv += "\n";
  char cell[32];
  for (int64_t i = 0; i < n; ++i) {
    const float* row = probs.data() + i * k;
    int64_t best = 0;
    for (int64_t j = 1; j < k; ++j)
      if (row[j] > row[best]) best = j;
    csv += std::to_string(best);
    for (int64_t j = 0; j < k; ++j) {
      std::snprintf(cell, sizeof cell, ",%.6g", static_cast<double>(row[j]));
      csv += cell;
    }
    csv += "\n";
  }
  write_file_atomically(f.output, {ByteSpan{csv.data(), csv.size()}}, "predict");
  std::fprintf(stderr, "predicted %lld samples -> %s\n", static_cast<long long>(n), f.output.c_str());
}

}  // namespace

Command add_predict(CLI::App& app) {
  auto f = std::make_shared<PredictFlags>();
  CLI::App* cmd = app.add_subcommand("predict", "Predicted label and class probabilities for each input row");
  cmd->add_option("--model", f->model, "Model file (.safetensors)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--input", f->input, "Inputs: x.npy, x.csv (features only) or an IDX images file")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("-o,--output", f->output, "CSV to write: label,p0,p1,...")->required();
  cmd->add_option("--model-spec", f->model_spec, "Architecture, for files not written by nnr (e.g. by PyTorch)");
  cmd->add_option("--batch-size", f->batch_size, "Samples per forward pass")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--threads", f->threads, "CPU threads (0: all cores)")->check(CLI::Range(0, 1024));
  add_device_option(cmd, f->device, "Predict");
  return [f] { run_predict(*f); };
}

}  // namespace nnr::cli
