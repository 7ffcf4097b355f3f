// End-to-end tests of `nnr train --model-dir` and `nnr retrain` on small synthetic CSV chunks (10
// separable classes in 16 features; chunk 0 holds classes 0-3, chunk 1 classes 4-6, chunk 2 classes
// 7-9): versions written round by round, the rounds equal to `nnr stream --scenario files` with the
// same seed and flags, the regression gate (exit 3, the directory left byte for byte), usage errors
// (exit 2) and runtime errors (exit 1) that change nothing, adopting a model trained elsewhere, a
// second writer locked out, and --help.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/rng.h"
#include "tests/apps/app_test_util.h"

namespace {

using nlohmann::json;
using namespace nnr::test;

// The data folder (snapshotted by the tests) and a separate folder for the runs' stdout and stderr.
struct Chunks {
  TempDir dir, logs;
  std::string c0 = dir / "c0.csv", c1 = dir / "c1.csv", c2 = dir / "c2.csv";
  Chunks() {
    write_class_csv(c0, 400, 11, 0, 3);
    write_class_csv(c1, 300, 12, 4, 6);
    write_class_csv(c2, 300, 13, 7, 9);
  }
  Run nnr(const std::string& args) const { return run_nnr(args, logs); }
};

// The paper strategy's 25 % weight budget must cover the output layer: mlp:16-64-64-10 does.
const std::string kModel = "mlp:16-64-64-10";
const std::string kTrainFlags = " --model " + kModel +
                                " --optimizer sgd --lr 0.03 --lr-schedule constant --epochs 2 --batch-size 16 --seed 1"
                                " --threads 1 -q";

std::string train_dir_args(const std::string& data, const std::string& dir) {
  return "train --data " + data + " --model-dir " + dir + kTrainFlags;
}

void require_version(const std::string& dir, int n) {
  const std::string v = dir + "/" + std::to_string(n);
  INFO(v);
  REQUIRE(exists(v + "/model.safetensors"));
  REQUIRE(exists(v + "/state.safetensors"));
  REQUIRE(read_file(v + "/VERSION") == std::to_string(n) + "\n");
}

// The numbered folders in `dir` (whole versions or not).
std::vector<std::string> version_folders(const std::string& dir) {
  std::vector<std::string> out;
  if (!exists(dir)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.is_directory() && entry.path().filename().string().find_first_not_of("0123456789") == std::string::npos)
      out.push_back(entry.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("nnr train --model-dir writes version 1, nnr retrain writes versions 2 and 3", "[cli][retrain]") {
  Chunks d;
  const std::string dir = d.dir / "served";
  Run r = d.nnr(train_dir_args(d.c0, dir));
  INFO(r.err);
  REQUIRE(r.code == 0);
  REQUIRE(r.out.find(dir + ": version 1 written") != std::string::npos);
  require_version(dir, 1);
  REQUIRE(version_folders(dir) == std::vector<std::string>{"1"});

  r = d.nnr("retrain --model-dir " + dir + " --data " + d.c1 + " --threads 1");
  INFO(r.err);
  REQUIRE(r.code == 0);
  INFO(r.out);
  REQUIRE(r.out.find("round 1 on " + d.c1 + ": validation accuracy ") != std::string::npos);
  REQUIRE(r.out.find(dir + ": version 2 written") != std::string::npos);
  require_version(dir, 2);

  r = d.nnr("retrain --model-dir " + dir + " --data " + d.c2 + " --strategy paper --json --threads 1");  // the directory's own strategy: accepted
  INFO(r.err);
  REQUIRE(r.code == 0);
  require_version(dir, 3);
  REQUIRE(version_folders(dir) == std::vector<std::string>{"1", "2", "3"});
  const json j = json::parse(r.out);
  INFO(j.dump(2).substr(0, 1500));
  REQUIRE(j["version"] == 3);
  REQUIRE(j["base_version"] == 2);
  REQUIRE(j["refused"] == false);
  REQUIRE_FALSE(j.contains("reason"));
  REQUIRE(j["round"] == 2);
  REQUIRE(j["chunk"] == d.c2);
  for (const char* key : {"old_validation_accuracy", "new_validation_accuracy"}) {
    INFO(key);
    REQUIRE(j[key].is_number());
    REQUIRE(j[key].get<double>() >= 0.0);
    REQUIRE(j[key].get<double>() <= 1.0);
  }
  // Separable classes: the candidate knows the old and the new chunks.
  REQUIRE(j["new_validation_accuracy"].get<double>() > 0.5);
  REQUIRE(j["compute"]["train_flops"].get<int64_t>() > 0);
  REQUIRE(j["compute"]["samples"].get<int64_t>() > 0);
  REQUIRE(j["compute"]["parameters_updated"].get<int64_t>() > 0);
  REQUIRE(j["test_accuracy"].size() == 1);
}

TEST_CASE("nnr train --model-dir + nnr retrain give the rounds of nnr stream --scenario files", "[cli][retrain]") {
  Chunks d;
  const std::string dir = d.dir / "served";
  std::vector<json> served;
  Run r = d.nnr(train_dir_args(d.c0, dir) + " --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  served.push_back(json::parse(r.out));
  for (const std::string& chunk : {d.c1, d.c2}) {
    r = d.nnr("retrain --model-dir " + dir + " --data " + chunk + " --json --threads 1");
    INFO(r.err);
    REQUIRE(r.code == 0);
    served.push_back(json::parse(r.out));
  }

  r = d.nnr("stream --scenario files --chunk " + d.c0 + " --chunk " + d.c1 + " --chunk " + d.c2 + " --model " + kModel +
            " --batch-size 16 --epochs 2 --seed 1 --strategy paper --threads 1 -q --json");
  INFO(r.err);
  REQUIRE(r.code == 0);
  const json stream = json::parse(r.out);
  REQUIRE(stream["strategies"].size() == 1);
  const json& rounds = stream["strategies"][0]["rounds"];
  REQUIRE(rounds.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    const json &s = served[i], &t = rounds[i];
    INFO("round " << i << "\nserved: " << s.dump().substr(0, 1500) << "\nstream: " << t.dump().substr(0, 1500));
    CHECK(s["version"] == static_cast<int>(i) + 1);
    CHECK(s["round"] == t["round"]);
    CHECK(s["new_validation_accuracy"] == t["validation_accuracy"]);
    CHECK(s["compute"]["samples"] == t["compute"]["samples"]);
    CHECK(s["compute"]["train_flops"] == t["compute"]["train_flops"]);
    CHECK(s["compute"]["parameters_updated"] == t["compute"]["parameters_updated"]);
    CHECK(s["lambda"] == t["lambda"]);
    // The served round reports its own chunk's test part; the stream every chunk's.
    REQUIRE(s["test_accuracy"].size() == 1);
    CHECK(s["test_accuracy"][0] == t["test_accuracy"][i]);
    if (i > 0) {
      CHECK(s["choices"] == t["choices"]);
      CHECK(!s["choices"].empty());
    }
  }
}

TEST_CASE("nnr retrain: the gate refuses a random-label chunk with exit 3 and leaves the directory byte for byte",
          "[cli][retrain]") {
  Chunks d;
  const std::string dir = d.dir / "served", noise = d.dir / "noise.csv";
  ClassCsvOptions random_labels;
  random_labels.random_labels = true;
  write_class_csv(noise, 300, 14, 0, 9, random_labels);
  // finetune (every weight, new data only): how much a random-label round costs under the bandits
  // depends on the weights they open (a round that opens little may cost nothing); here it must cost.
  Run r = d.nnr(train_dir_args(d.c0, dir) + " --strategy finetune");
  INFO(r.err);
  REQUIRE(r.code == 0);
  r = d.nnr("retrain --model-dir " + dir + " --data " + d.c1 + " --threads 1");
  INFO(r.err);
  REQUIRE(r.code == 0);
  require_version(dir, 2);

  const auto before = snapshot(dir);
  r = d.nnr("retrain --model-dir " + dir + " --data " + noise + " --max-regression 1 --threads 1");
  INFO(r.out);
  INFO(r.err);
  REQUIRE(r.code == 3);
  REQUIRE(r.out.find("refused: the candidate's validation accuracy") != std::string::npos);
  REQUIRE(r.out.find("points below version 2's") != std::string::npos);
  REQUIRE(r.out.find("(--max-regression 1.00)") != std::string::npos);
  REQUIRE(r.out.find(dir + " keeps version 2") != std::string::npos);
  REQUIRE(r.out.find("version 3 written") == std::string::npos);
  REQUIRE(snapshot(dir) == before);
  REQUIRE(version_folders(dir) == std::vector<std::string>{"1", "2"});

  // --json: the refusal and its reason in the report, still exit 3 and nothing written.
  r = d.nnr("retrain --model-dir " + dir + " --data " + noise + " --max-regression 1 --json --threads 1");
  REQUIRE(r.code == 3);
  const json j = json::parse(r.out);
  REQUIRE(j["refused"] == true);
  REQUIRE(j["version"] == 0);
  REQUIRE(j["base_version"] == 2);
  REQUIRE(j["reason"].get<std::string>().find("below version 2") != std::string::npos);
  REQUIRE(j["new_validation_accuracy"].get<double>() < j["old_validation_accuracy"].get<double>() - 0.01);
  REQUIRE(snapshot(dir) == before);

  // The gate wide open: the same chunk is written.
  r = d.nnr("retrain --model-dir " + dir + " --data " + noise + " --max-regression 100 --threads 1");
  INFO(r.out);
  REQUIRE(r.code == 0);
  REQUIRE(r.out.find(dir + ": version 3 written") != std::string::npos);
  require_version(dir, 3);
}

TEST_CASE("nnr train/retrain usage errors exit 2 with a message and change nothing", "[cli][retrain]") {
  Chunks d;
  const std::string dir = d.dir / "served", empty = d.dir / "empty", fresh = d.dir / "fresh", model = d.dir / "m.safetensors";
  Run r = d.nnr(train_dir_args(d.c0, dir));
  INFO(r.err);
  REQUIRE(r.code == 0);
  r = d.nnr("train --data " + d.c0 + " -o " + model + kTrainFlags);
  INFO(r.err);
  REQUIRE(r.code == 0);
  REQUIRE(mkdir(empty.c_str(), 0755) == 0);

  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases{
      {"retrain --model-dir " + dir, "--data is required (the new chunk), or --init to start"},
      {"retrain --model-dir " + dir + " --data " + d.c1 + " --strategy replay",
       "was started with strategy paper and its rounds keep it"},
      {"retrain --model-dir " + dir + " --data " + d.c1 + " --memory-data " + d.c0, "apply only with --init"},
      {"retrain --model-dir " + fresh + " --init " + model, "--init needs --memory-data"},
      {"retrain --model-dir " + empty + " --data " + d.c1, empty + " holds no model version"},
      {"retrain --model-dir " + fresh + " --data " + d.c1, fresh + " holds no model version"},
      {"retrain --model-dir " + dir + " --init " + model + " --memory-data " + d.c0, dir + " already holds version 1"},
      {train_dir_args(d.c1, dir), dir + " already holds version 1"},
      {"train --data " + d.c0 + kTrainFlags, "-o/--output is required (or --model-dir DIR)"},
      {"retrain --model-dir " + dir + " --data " + d.c1 + " --max-regression -1", "--max-regression"},
      {"retrain --data " + d.c1, "--model-dir is required"},
  };
  const auto before = snapshot(d.dir.path());
  for (const Case& c : cases) {
    INFO(c.args);
    r = d.nnr(c.args.rfind("retrain", 0) == 0 ? c.args + " --threads 1" : c.args);
    INFO(r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find("error: ") != std::string::npos);
    CHECK(r.err.find(c.message) != std::string::npos);
    CHECK(r.out.empty());
    CHECK_FALSE(exists(fresh));
    REQUIRE(snapshot(d.dir.path()) == before);
  }
}

TEST_CASE("nnr retrain: a missing --data file exits 1 naming the path and writes nothing", "[cli][retrain]") {
  Chunks d;
  const std::string dir = d.dir / "served", missing = d.dir / "missing.csv";
  Run r = d.nnr(train_dir_args(d.c0, dir));
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto before = snapshot(d.dir.path());
  r = d.nnr("retrain --model-dir " + dir + " --data " + missing + " --threads 1");
  INFO(r.err);
  REQUIRE(r.code == 1);
  REQUIRE(r.err.find("error: ") != std::string::npos);
  REQUIRE(r.err.find(missing + ": cannot open") != std::string::npos);
  REQUIRE(r.out.empty());
  REQUIRE(snapshot(d.dir.path()) == before);
}

TEST_CASE("nnr retrain --init adopts a model trained with nnr train -o as version 1, and retrains it", "[cli][retrain]") {
  Chunks d;
  const std::string model = d.dir / "m.safetensors", dir = d.dir / "adopted";
  Run r = d.nnr("train --data " + d.c0 + " -o " + model + kTrainFlags);
  INFO(r.err);
  REQUIRE(r.code == 0);
  const std::string model_bytes = read_file(model);

  r = d.nnr("retrain --model-dir " + dir + " --init " + model + " --memory-data " + d.c0 + " --threads 1");
  INFO(r.err);
  REQUIRE(r.code == 0);
  INFO(r.out);
  REQUIRE(r.out.find(dir + ": version 1 written (validation accuracy ") != std::string::npos);
  require_version(dir, 1);
  REQUIRE(read_file(model) == model_bytes);  // the adopted file is only read

  r = d.nnr("retrain --model-dir " + dir + " --data " + d.c1 + " --json --threads 1");
  INFO(r.err);
  REQUIRE(r.code == 0);
  const json j = json::parse(r.out);
  REQUIRE(j["version"] == 2);
  REQUIRE(j["base_version"] == 1);
  require_version(dir, 2);
  REQUIRE(version_folders(dir) == std::vector<std::string>{"1", "2"});
}

TEST_CASE("nnr retrain while another process holds DIR/.lock exits 1 and writes nothing", "[cli][retrain]") {
  Chunks d;
  const std::string dir = d.dir / "served";
  Run r = d.nnr(train_dir_args(d.c0, dir));
  INFO(r.err);
  REQUIRE(r.code == 0);

  const std::string lock = dir + "/.lock";
  const int fd = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(flock(fd, LOCK_EX | LOCK_NB) == 0);
  const auto before = snapshot(dir);
  r = d.nnr("retrain --model-dir " + dir + " --data " + d.c1 + " --threads 1");
  CHECK(r.code == 1);
  CHECK(r.err.find("error: ") != std::string::npos);
  CHECK(r.err.find("being written by another process") != std::string::npos);
  CHECK(r.out.empty());
  CHECK(snapshot(dir) == before);
  CHECK(version_folders(dir) == std::vector<std::string>{"1"});
  REQUIRE(flock(fd, LOCK_UN) == 0);
  close(fd);

  // Released: the same round goes through.
  r = d.nnr("retrain --model-dir " + dir + " --data " + d.c1 + " --threads 1");
  INFO(r.err);
  REQUIRE(r.code == 0);
  require_version(dir, 2);
}

TEST_CASE("nnr retrain --help exits 0 and documents --max-regression and exit status 3", "[cli][retrain]") {
  Chunks d;
  Run r = d.nnr("retrain --help");
  REQUIRE(r.code == 0);
  INFO(r.out);
  for (const char* text : {"--max-regression", "--model-dir", "--data", "--init", "--memory-data", "--model-spec",
                           "Exit status", "3 refused by the gate", "nnr train --data FIRST --model-dir DIR"})
    REQUIRE(r.out.find(text) != std::string::npos);
}
