// End-to-end tests of the nnr command line on small synthetic data: the happy path
// (train -> eval -> predict) and the failures a user meets, each with its message, exit code,
// and the guarantee that nothing already on disk is lost.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/core/context.h"
#include "engine/core/rng.h"

namespace {

struct Run {
  int code;
  std::string out, err;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/nnr-cli-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

Run run_nnr(const std::string& args, const TempDir& dir) {
  const std::string out = dir / "stdout.txt", err = dir / "stderr.txt";
  const int status = std::system((std::string(NNR_BINARY) + " " + args + " >" + out + " 2>" + err).c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(out), read_file(err)};
}

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

TEST_CASE("train --device cuda trains on a usable GPU, and otherwise exits 2 saying why", "[cli]") {
  TempDir dir;
  write_blobs_csv(dir / "train.csv", 120, 1);
  const std::string model = dir / "m.safetensors";
  Run r = run_nnr("train --data " + (dir / "train.csv") + " --model mlp:6-8-3 --epochs 3 --batch-size 16 --device cuda -o " +
                      model,
                  dir);
  INFO(r.err);
  const std::string why = nnr::Context::why_cuda_unavailable();
  if (why.empty()) {
    REQUIRE(r.code == 0);
    REQUIRE(r.err.find(", cuda") != std::string::npos);
    REQUIRE(access(model.c_str(), F_OK) == 0);
  } else {
    REQUIRE(r.code == 2);
    REQUIRE(r.err.find("error: [train] --device cuda: " + why) == 0);
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
