// The in-process baseline of bench/serve_load.sh: batch-1 predictions in a loop in one process,
// no HTTP. Loads the newest version of a model directory as nnr serve does and, for --seconds
// each, times
//   forward: predict_probabilities on one prepared input [1, ...] (what a batch-1 request's
//            forward pass costs on the request path),
//   request: the same plus what nnr serve does around it for one request: parse the JSON body
//            of --body ({"input": [...]} or {"inputs": [[...]]}) with the server's fast parser
//            (apps/serve/fast_json.h), fill the input tensor, forward, and write the JSON answer
//            (everything but HTTP),
//   request_nlohmann: the same with nlohmann's DOM for both (what nnr serve did before the fast
//            parser, and still does for any body that is not the plain shape).
// Prints one JSON object: per mode calls per second and the median and 99th percentile of one
// call in microseconds.
//
//   bench_serve_predict --model-dir DIR --body predict.json [--seconds 5] [--threads 0]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "apps/serve/fast_json.h"
#include "apps/trainer/model_dir.h"
#include "apps/trainer/model_file.h"
#include "apps/trainer/serving.h"
#include "apps/trainer/train_loop.h"
#include "engine/core/error.h"
#include "engine/core/threads.h"
#include "engine/nn/model_spec.h"

using namespace nnr;
using Clock = std::chrono::steady_clock;

namespace {

// Runs `call` repeatedly for `seconds` (after a short warm-up); returns calls/s, p50 and p99 (us).
template <typename F>
nlohmann::json time_loop(double seconds, F&& call) {
  for (int i = 0; i < 200; ++i) call();
  std::vector<double> us;
  us.reserve(1 << 20);
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  auto t = start;
  while (t < end) {
    call();
    const auto after = Clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(after - t).count());
    t = after;
  }
  const double total = std::chrono::duration<double>(t - start).count();
  std::vector<double> sorted = us;
  std::sort(sorted.begin(), sorted.end());
  const auto pct = [&](double p) { return sorted[std::min(sorted.size() - 1, static_cast<size_t>(p * sorted.size()))]; };
  return {{"calls", us.size()},
          {"seconds", total},
          {"calls_per_second", us.size() / total},
          {"p50_us", pct(0.50)},
          {"p99_us", pct(0.99)}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Batch-1 predictions in a loop in one process: the in-process baseline of bench/serve_load.sh"};
  std::string model_dir, body_path;
  double seconds = 5.0;
  int threads = 0;
  app.add_option("--model-dir", model_dir, "A versioned model directory (its newest version is loaded)")->required();
  app.add_option("--body", body_path, "A /v1/predict request body with one input")->required();
  app.add_option("--seconds", seconds, "How long each mode runs")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0: all cores, as nnr serve)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    set_num_threads(threads);
    const std::optional<ModelVersion> v = newest_version(model_dir);
    if (!v) throw Error(model_dir + " holds no version");
    LoadedModel loaded = load_model(v->path + "/" + kModelFile);
    Sequential& model = loaded.model;
    const Shape input_shape = model_input_shape(model.spec());
    const int64_t numel = shape_numel(input_shape);
    std::ifstream in(body_path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    const std::string body = text.str();
    const nlohmann::json parsed = nlohmann::json::parse(body);
    const nlohmann::json& row = parsed.contains("input") ? parsed["input"] : parsed["inputs"][0];
    if (static_cast<int64_t>(row.size()) != numel) throw Error("the body's input does not fit " + model.spec());
    Shape one = input_shape;
    one.insert(one.begin(), 1);
    Tensor x = Tensor::empty(one);
    for (int64_t j = 0; j < numel; ++j) x.data()[j] = row[static_cast<size_t>(j)].get<float>();
    std::mutex forward_mutex;  // as nnr serve takes it

    nlohmann::json out{{"model", model.spec()}, {"version", v->number}, {"threads", num_threads()}};
    out["forward"] = time_loop(seconds, [&] {
      std::lock_guard<std::mutex> lock(forward_mutex);
      const Tensor p = predict_probabilities(model, x);
      if (p.numel() == 0) std::abort();
    });
    size_t answer_bytes = 0;
    std::vector<float> values;
    out["request"] = time_loop(seconds, [&] {
      const int64_t rows = serve::parse_inputs_fast(body, numel, 4096, values);
      if (rows != 1) throw Error("the body is not the plain {\"input\": [...]} shape of the fast parser");
      Tensor xi = Tensor::empty(one);
      std::copy(values.begin(), values.end(), xi.data());
      Tensor p;
      {
        std::lock_guard<std::mutex> lock(forward_mutex);
        p = predict_probabilities(model, xi);
      }
      answer_bytes = serve::prediction_json(v->number, p.data(), p.dim(0), p.dim(1)).size();
    });
    out["request_nlohmann"] = time_loop(seconds, [&] {
      const nlohmann::json req = nlohmann::json::parse(body);
      const nlohmann::json& r = req.contains("input") ? req["input"] : req["inputs"][0];
      Tensor xi = Tensor::empty(one);
      for (int64_t j = 0; j < numel; ++j) xi.data()[j] = static_cast<float>(r[static_cast<size_t>(j)].get<double>());
      Tensor p;
      {
        std::lock_guard<std::mutex> lock(forward_mutex);
        p = predict_probabilities(model, xi);
      }
      const int64_t k = p.dim(1);
      nlohmann::json labels = nlohmann::json::array(), probabilities = nlohmann::json::array();
      const float* pr = p.data();
      labels.push_back(std::max_element(pr, pr + k) - pr);
      probabilities.push_back(std::vector<float>(pr, pr + k));
      if (nlohmann::json{{"version", v->number}, {"labels", labels}, {"probabilities", probabilities}}.dump().empty())
        std::abort();
    });
    out["answer_bytes"] = answer_bytes;
    std::printf("%s\n", out.dump(2).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_serve_predict: %s\n", e.what());
    return 1;
  }
  return 0;
}
