// End-to-end tests of the nnr command line on small synthetic data: the happy path
// (train -> eval -> predict) and the failures a user meets, each with its message, exit code,
// and the guarantee that nothing already on disk is lost.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "apps/trainer/continual_tasks.h"
#include "apps/trainer/model_file.h"
#include "engine/core/context.h"
#include "engine/core/rng.h"
#include "engine/io/checkpoint.h"
#include "engine/nn/model_spec.h"
#include "tests/apps/app_test_util.h"

namespace {

using namespace nnr::test;

// Three well separated classes in 6-D; label in column 0, with a header.
void write_blobs_csv(const std::string& path, int rows, uint64_t seed, bool with_labels = true) {
  nnr::Rng rng(seed);
  std::ofstream f(path);
  if (with_labels) f << "label,";
  f << "a,b,c,d,e,f\n";
  for (int i = 0; i < rows; ++i) {
    const int label = i % 3;
    if (with_labels) f << label << ",";
    for (int j = 0; j < 6; ++j) f << (j == 2 * label ? 3.0 : 0.0) + 0.3 * rng.normal() << (j < 5 ? "," : "\n");
  }
}

}  // namespace

TEST_CASE("nnr train -> eval -> predict works end to end on a CSV", "[cli]") {
  TempDir dir;
  write_blobs_csv(dir / "train.csv", 300, 1);
  write_blobs_csv(dir / "test.csv", 90, 2);
  write_blobs_csv(dir / "inputs.csv", 5, 3, false);

  Run train = run_nnr("train --data " + (dir / "train.csv") + " --model mlp:6-8-3 --epochs 5 --batch-size 16 --optimizer sgd --lr 0.05 -o " +
                      (dir / "m.safetensors"),
                  dir);
  INFO(train.err);
  REQUIRE(train.code == 0);
  REQUIRE(train.out.find("trained mlp:6-8-3 for 5 epochs") != std::string::npos);
  REQUIRE(train.err.find("seed 0") != std::string::npos);
  REQUIRE(train.err.find("epoch 5/5  loss") != std::string::npos);  // plain progress lines when not a terminal

  Run eval = run_nnr("eval --model " + (dir / "m.safetensors") + " --data " + (dir / "test.csv") + " --json", dir);
  INFO(eval.err);
  REQUIRE(eval.code == 0);
  REQUIRE(eval.out.find("\"accuracy\": 1.0") != std::string::npos);
  REQUIRE(eval.out.find("\"class_accuracy\"") != std::string::npos);

  Run predict = run_nnr("predict --model " + (dir / "m.safetensors") + " --input " + (dir / "inputs.csv") + " -o " +
                        (dir / "preds.csv"),
                    dir);
  INFO(predict.err);
  REQUIRE(predict.code == 0);
  const std::string preds = read_file(dir / "preds.csv");
  REQUIRE(preds.rfind("label,p0,p1,p2\n0,", 0) == 0);  // inputs cycle through labels 0, 1, 2
  REQUIRE(std::count(preds.begin(), preds.end(), '\n') == 6);

  // --init continues from the saved weights; the spec comes from the file.
  Run again = run_nnr("train --data " + (dir / "train.csv") + " --init " + (dir / "m.safetensors") +
                      " --epochs 1 -q -o " + (dir / "m2.safetensors"),
                  dir);
  INFO(again.err);
  REQUIRE(again.code == 0);
  REQUIRE(again.err.find("mlp:6-8-3") != std::string::npos);
}

TEST_CASE("bad flags and bad values exit 2 with a message naming the problem", "[cli]") {
  TempDir dir;
  write_blobs_csv(dir / "train.csv", 30, 1);
  const std::string data = " --data " + (dir / "train.csv") + " -o " + (dir / "m.safetensors");
  struct Case {
    std::string args, message;
  };
  for (const Case& c : {Case{"", "A subcommand is required"},
                        Case{"train --bogus 1" + data, "--bogus"},
                        Case{"train -o x.safetensors", "--data is required"},
                        Case{"train --epochs 0" + data, "--epochs"},
                        Case{"train --lr -1" + data, "--lr"},
                        Case{"train --optimizer rmsprop" + data, "rmsprop"},
                        Case{"train --model rnn:6-3" + data, "unknown model kind 'rnn'"},
                        Case{"train --model mlp:5-3" + data, "cannot take"},
                        Case{"train --model mlp:6-2" + data, "has 3 classes but model 'mlp:6-2' outputs 2"},
                        Case{"train --device tpu" + data, "--device"},
                        Case{"train --data " + (dir / "train.csv") + " -o /nonexistent/dir/m.safetensors",
                             "directory '/nonexistent/dir' does not exist"}}) {
    INFO(c.args);
    Run r = run_nnr(c.args, dir);
    INFO(r.err);
    REQUIRE(r.code == 2);
    REQUIRE(r.err.find("error: ") == 0);
    REQUIRE(r.err.find(c.message) != std::string::npos);
  }
  REQUIRE(access((dir / "m.safetensors").c_str(), F_OK) != 0);  // nothing written on a usage error
}

TEST_CASE("train, eval and predict with --device cuda run on a usable GPU, and otherwise exit 2 saying why", "[cli]") {
  TempDir dir;
  write_blobs_csv(dir / "train.csv", 120, 1);
  const std::string model = dir / "m.safetensors", cpu_model = dir / "cpu.safetensors";
  REQUIRE(run_nnr("train --data " + (dir / "train.csv") + " --model mlp:6-8-3 --epochs 3 --batch-size 16 -q -o " +
                      cpu_model,
                  dir)
              .code == 0);
  // The features alone, for predict: the CSV without its label column.
  std::ifstream labelled(dir / "train.csv");
  std::ofstream features(dir / "x.csv");
  for (std::string line; std::getline(labelled, line);) features << line.substr(line.find(',') + 1) << "\n";
  features.close();

  const std::string why = nnr::Context::why_cuda_unavailable();
  Run train = run_nnr("train --data " + (dir / "train.csv") +
                          " --model mlp:6-8-3 --epochs 3 --batch-size 16 --device cuda -o " + model,
                      dir);
  const std::string eval_args = "eval --data " + (dir / "train.csv") + " --json --model " + cpu_model;
  Run eval_gpu = run_nnr(eval_args + " --device cuda", dir);
  Run predict_gpu = run_nnr("predict --input " + (dir / "x.csv") + " --model " + cpu_model + " --device cuda -o " +
                                (dir / "gpu.csv"),
                            dir);
  INFO(train.err << eval_gpu.err << predict_gpu.err);
  if (why.empty()) {
    REQUIRE(train.code == 0);
    REQUIRE(train.err.find(", cuda") != std::string::npos);
    REQUIRE(access(model.c_str(), F_OK) == 0);
    // The same model evaluated and run on both devices: the same accuracy and loss, the same
    // labels, probabilities within fp32 GEMM rounding (printed with 6 significant digits).
    Run eval_cpu = run_nnr(eval_args, dir);
    REQUIRE(eval_gpu.code == 0);
    REQUIRE(eval_cpu.code == 0);
    const auto gpu = nlohmann::json::parse(eval_gpu.out), cpu = nlohmann::json::parse(eval_cpu.out);
    REQUIRE(gpu["accuracy"] == cpu["accuracy"]);
    REQUIRE(std::fabs(gpu["loss"].get<double>() - cpu["loss"].get<double>()) <= 1e-5 * cpu["loss"].get<double>());
    REQUIRE(predict_gpu.code == 0);
    REQUIRE(run_nnr("predict --input " + (dir / "x.csv") + " --model " + cpu_model + " -o " + (dir / "cpu.csv"), dir)
                .code == 0);
    std::ifstream a(dir / "gpu.csv"), b(dir / "cpu.csv");
    int64_t rows = 0;
    for (std::string la, lb; std::getline(a, la) && std::getline(b, lb); ++rows) {
      INFO("row " << rows << ": gpu " << la << " cpu " << lb);
      REQUIRE(la.substr(0, la.find(',')) == lb.substr(0, lb.find(',')));  // the predicted label
    }
    REQUIRE(rows == 121);  // header + every sample
  } else {
    for (const auto& [run, command] : {std::pair{&train, "train"}, {&eval_gpu, "eval"}, {&predict_gpu, "predict"}}) {
      INFO(command);
      REQUIRE(run->code == 2);
      REQUIRE(run->err.find(std::string("error: [") + command + "] --device cuda: " + why) == 0);
    }
    REQUIRE(access(model.c_str(), F_OK) != 0);
    REQUIRE(access((dir / "gpu.csv").c_str(), F_OK) != 0);
  }
}

TEST_CASE("train --cuda-graph needs --device cuda, refuses dropout, and on a GPU trains like the eager step", "[cli]") {
  TempDir dir;
  write_blobs_csv(dir / "train.csv", 120, 1);
  const std::string model = dir / "m.safetensors";
  const std::string base = "train --data " + (dir / "train.csv") + " --epochs 2 --batch-size 16 --json -q ";

  Run cpu = run_nnr(base + "--model mlp:6-8-3 --cuda-graph -o " + model, dir);
  REQUIRE(cpu.code == 2);
  REQUIRE(cpu.err.find("error: [train] --cuda-graph needs --device cuda") == 0);
  REQUIRE(access(model.c_str(), F_OK) != 0);

  const std::string why = nnr::Context::why_cuda_unavailable();
  Run graphed = run_nnr(base + "--model mlp:6-8-3 --device cuda --cuda-graph -o " + model, dir);
  Run dropout = run_nnr(base + "--model mlp:6-8-3:dropout=0.5 --device cuda --cuda-graph -o " + model, dir);
  INFO(graphed.err << dropout.err);
  REQUIRE(dropout.code == 2);
  if (why.empty()) {
    REQUIRE(dropout.err.find("has dropout") != std::string::npos);
    REQUIRE(graphed.code == 0);
    // 120 samples in batches of 16: 7 full batches and one of 8 per epoch. In each epoch the first
    // full batch warms up, the second is recorded, the other 5 replay, and the partial one runs
    // eagerly (which drops the recording: graphed_step.h says why).
    const auto report = nlohmann::json::parse(graphed.out);
    REQUIRE(report["cuda_graph"]["warmups"] == 2);
    REQUIRE(report["cuda_graph"]["recordings"] == 2);
    REQUIRE(report["cuda_graph"]["replays"] == 10);
    Run eager = run_nnr(base + "--model mlp:6-8-3 --device cuda -o " + (dir / "eager.safetensors"), dir);
    REQUIRE(eager.code == 0);
    const auto eager_report = nlohmann::json::parse(eager.out);
    for (size_t e = 0; e < 2; ++e) {
      const double a = report["epochs"][e]["loss"], b = eager_report["epochs"][e]["loss"];
      REQUIRE(std::fabs(a - b) <= 1e-5 * b);
    }
  } else {
    for (const Run* run : {&graphed, &dropout}) {
      REQUIRE(run->code == 2);
      REQUIRE(run->err.find("error: [train] --device cuda: " + why) == 0);
    }
    REQUIRE(access(model.c_str(), F_OK) != 0);
  }
}

TEST_CASE("runtime failures exit 1 and never damage the existing model file", "[cli]") {
  TempDir dir;
  write_blobs_csv(dir / "train.csv", 60, 1);
  const std::string model = dir / "m.safetensors";
  REQUIRE(run_nnr("train --data " + (dir / "train.csv") + " --model mlp:6-4-3 --epochs 1 -q -o " + model, dir).code == 0);
  const std::string before = read_file(model);

  SECTION("missing data file") {
    Run r = run_nnr("train --data " + (dir / "missing.csv") + " -q -o " + model, dir);
    REQUIRE(r.code == 1);
    REQUIRE(r.err.find("missing.csv") != std::string::npos);
  }
  SECTION("training that diverges to NaN is reported and not saved") {
    Run r = run_nnr("train --data " + (dir / "train.csv") + " --model mlp:6-64-3 --optimizer sgd --lr 1e30 --momentum 0.99 -q -o " + model,
                dir);
    INFO(r.err);
    REQUIRE(r.code == 1);
    REQUIRE(r.err.find("training diverged") != std::string::npos);
  }
  SECTION("a corrupted model file is named with the damaged tensor") {
    std::string damaged = before;
    damaged[damaged.size() - 3] ^= 0x40;
    std::ofstream(dir / "bad.safetensors", std::ios::binary) << damaged;
    Run r = run_nnr("eval --model " + (dir / "bad.safetensors") + " --data " + (dir / "train.csv"), dir);
    REQUIRE(r.code != 0);
    REQUIRE(r.err.find("bad.safetensors") != std::string::npos);
    REQUIRE(r.err.find("CRC") != std::string::npos);
  }
  SECTION("eval with a model spec that contradicts the file") {
    Run r = run_nnr("eval --model " + model + " --model-spec mlp:6-5-3 --data " + (dir / "train.csv"), dir);
    REQUIRE(r.code == 2);
    REQUIRE(r.err.find("holds model 'mlp:6-4-3'") != std::string::npos);
  }
  REQUIRE(read_file(model) == before);
}

TEST_CASE("train --init keeps the importance state (Ω, θ*) a served model's file carries", "[cli]") {
  TempDir dir;
  write_blobs_csv(dir / "train.csv", 120, 1);
  // A model file with Ω and θ* beside its weights, as a served model's carries them.
  {
    nnr::Sequential model = nnr::build_model("mlp:6-8-3", 3);
    for (nnr::Parameter* p : model.parameters()) {
      p->omega = nnr::Tensor::from_vector(p->value.shape(), std::vector<float>(static_cast<size_t>(p->value.numel()), 0.5f));
      p->anchor = p->value.clone();
    }
    nnr::save_model(dir / "served.safetensors", model, nnr::importance_extras(model));
  }
  Run train = run_nnr("train --data " + (dir / "train.csv") + " --init " + (dir / "served.safetensors") +
                          " --epochs 1 -q -o " + (dir / "next.safetensors"),
                      dir);
  INFO(train.err);
  REQUIRE(train.code == 0);
  const nnr::Checkpoint next = nnr::load_checkpoint(dir / "next.safetensors");
  for (const std::string name : {"0.weight", "0.bias", "2.weight", "2.bias"}) {
    INFO(name);
    const nnr::Tensor* omega = next.find(std::string("nnr.omega.") + name);
    REQUIRE(omega != nullptr);
    REQUIRE(omega->to_vector() == std::vector<float>(static_cast<size_t>(omega->numel()), 0.5f));
    REQUIRE(next.find(std::string("nnr.anchor.") + name) != nullptr);
  }
  // A file without them gets none.
  Run plain = run_nnr("train --data " + (dir / "train.csv") + " --model mlp:6-8-3 --epochs 1 -q -o " + (dir / "p.safetensors"), dir);
  REQUIRE(plain.code == 0);
  REQUIRE(nnr::load_checkpoint(dir / "p.safetensors").find("nnr.omega.0.weight") == nullptr);
}
