// Bad requests of every nnr command, table-driven: wrong or unknown flags, missing files, unreadable
// files (chmod 000), data of the wrong shape and labels outside the model's classes, garbage model
// files, output folders that do not exist. Each must end with exit status 2 (usage: the request
// itself is wrong) or 1 (runtime: a file could not be read or written), with a message naming the
// file or flag, and must write nothing: the whole data folder, the model directory included, is
// compared byte for byte before and after every row.
//
// Unreadable-file rows are skipped when the test runs as root (root reads a chmod 000 file anyway);
// each such skip is reported with WARN.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "engine/core/rng.h"
#include "tests/apps/app_test_util.h"

namespace {

using namespace nnr::test;

struct BadRequest {
  const char* what;                   // the mistake, for the failure message
  std::string args;                   // '@' stands for the data folder plus '/'
  int code;                           // expected exit status
  std::vector<std::string> messages;  // each must appear in stderr
  bool unreadable = false;            // needs a non-root user (chmod 000 files)
};

// label,f0..f(features-1) rows of the ten separable classes; labels shifted by `label_offset`.
void write_csv(const std::string& path, int rows, int features, int label_offset) {
  nnr::Rng rng(5);
  std::ofstream f(path);
  for (int i = 0; i < rows; ++i) {
    const int c = i % 10;
    f << c + label_offset;
    for (int j = 0; j < features; ++j) f << ',' << (j == c ? 3.0 : 0.0) + 0.3 * rng.normal();
    f << '\n';
  }
}

std::string expand(const std::string& args, const std::string& dir) {
  std::string out;
  for (char ch : args) out += ch == '@' ? dir + "/" : std::string(1, ch);
  return out;
}

const std::vector<BadRequest> kRows = {
    // train
    {"train: unknown flag", "train --data @d.csv -o @out.safetensors --bogus", 2, {"--bogus"}},
    {"train: no output", "train --data @d.csv --model mlp:16-8-10", 2, {"-o/--output"}},
    {"train: epochs out of range", "train --data @d.csv -o @out.safetensors --epochs 0", 2, {"--epochs"}},
    {"train: bad model spec", "train --data @d.csv -o @out.safetensors --model mlp:16-8-zz", 2, {"mlp:16-8-zz"}},
    {"train: missing data", "train --data @missing.csv -o @out.safetensors --model mlp:16-8-10", 1,
     {"missing.csv", "No such file"}},
    {"train: unreadable data", "train --data @noread.csv -o @out.safetensors --model mlp:16-8-10", 1,
     {"noread.csv", "Permission denied"}, true},
    {"train: 8 features for a 16-input model", "train --data @narrow.csv -o @out.safetensors --model mlp:16-8-10", 2,
     {"narrow.csv", "[8]"}},
    {"train: labels up to 12 for 10 classes", "train --data @badlabel.csv -o @out.safetensors --model mlp:16-8-10", 2,
     {"badlabel.csv", "13 classes"}},
    {"train: output folder missing", "train --data @d.csv -o @nodir/out.safetensors --model mlp:16-8-10", 2,
     {"-o", "nodir"}},
    {"train: garbage --init", "train --data @d.csv -o @out.safetensors --init @garbage.safetensors --model mlp:16-8-10",
     1, {"garbage.safetensors"}},
    {"train: unreadable --init", "train --data @d.csv -o @out.safetensors --init @noread.safetensors --model mlp:16-8-10",
     1, {"noread.safetensors", "Permission denied"}, true},
    // eval
    {"eval: missing model", "eval --model @missing.safetensors --data @d.csv", 2, {"--model", "missing.safetensors"}},
    {"eval: garbage model", "eval --model @garbage.safetensors --data @d.csv", 1, {"garbage.safetensors"}},
    {"eval: unreadable model", "eval --model @noread.safetensors --data @d.csv", 1,
     {"noread.safetensors", "Permission denied"}, true},
    {"eval: missing data", "eval --model @m.safetensors --data @missing.csv", 1, {"missing.csv"}},
    {"eval: unreadable data", "eval --model @m.safetensors --data @noread.csv", 1, {"noread.csv", "Permission denied"},
     true},
    {"eval: 8 features", "eval --model @m.safetensors --data @narrow.csv", 2, {"narrow.csv", "[8]"}},
    {"eval: labels up to 12", "eval --model @m.safetensors --data @badlabel.csv", 2, {"badlabel.csv", "13 classes"}},
    {"eval: batch size 0", "eval --model @m.safetensors --data @d.csv --batch-size 0", 2, {"--batch-size"}},
    // predict
    {"predict: no output", "predict --model @m.safetensors --input @x.csv", 2, {"--output"}},
    {"predict: missing input", "predict --model @m.safetensors --input @missing.csv -o @p.csv", 2,
     {"--input", "missing.csv"}},
    {"predict: unreadable input", "predict --model @m.safetensors --input @noread.csv -o @p.csv", 1,
     {"noread.csv", "Permission denied"}, true},
    {"predict: 8 features", "predict --model @m.safetensors --input @x8.csv -o @p.csv", 2, {"x8.csv", "[8]"}},
    {"predict: garbage model", "predict --model @garbage.safetensors --input @x.csv -o @p.csv", 1,
     {"garbage.safetensors"}},
    {"predict: model spec contradicts the file",
     "predict --model @m.safetensors --input @x.csv -o @p.csv --model-spec mlp:16-9-10", 2, {"mlp:16-9-10"}},
    {"predict: output folder missing", "predict --model @m.safetensors --input @x.csv -o @nodir/p.csv", 1,
     {"nodir/p.csv"}},
    // stream (--report would be written into the data folder)
    {"stream: unknown scenario", "stream --scenario nosuch --report @rep", 2, {"--scenario"}},
    {"stream: one chunk", "stream --scenario files --chunk @d.csv --model mlp:16-64-64-10 --report @rep", 2,
     {"--chunk"}},
    {"stream: unknown strategy",
     "stream --scenario files --chunk @d.csv --chunk @d.csv --model mlp:16-64-64-10 --strategy nosuch --report @rep", 2,
     {"nosuch"}},
    {"stream: missing chunk",
     "stream --scenario files --chunk @d.csv --chunk @missing.csv --model mlp:16-64-64-10 --report @rep", 1,
     {"missing.csv"}},
    {"stream: unreadable chunk",
     "stream --scenario files --chunk @d.csv --chunk @noread.csv --model mlp:16-64-64-10 --report @rep", 1,
     {"noread.csv", "Permission denied"}, true},
    {"stream: chunk of another width",
     "stream --scenario files --chunk @d.csv --chunk @narrow.csv --model mlp:16-64-64-10 --report @rep", 2,
     {"narrow.csv", "[8]"}},
    // The message names the stream ("fashion-mnist") rather than badlabel.csv: only the count is checked.
    {"stream: labels up to 12",
     "stream --scenario files --chunk @d.csv --chunk @badlabel.csv --model mlp:16-64-64-10 --report @rep", 2,
     {"13 classes"}},
    // retrain (md holds version 1)
    {"retrain: no --data", "retrain --model-dir @md", 2, {"--data"}},
    {"retrain: no version in the folder", "retrain --model-dir @nodir --data @d.csv", 2, {"nodir", "no model version"}},
    {"retrain: missing data", "retrain --model-dir @md --data @missing.csv", 1, {"missing.csv"}},
    {"retrain: unreadable data", "retrain --model-dir @md --data @noread.csv", 1, {"noread.csv", "Permission denied"},
     true},
    {"retrain: 8 features", "retrain --model-dir @md --data @narrow.csv", 2, {"narrow.csv", "[8]"}},
    {"retrain: labels up to 12", "retrain --model-dir @md --data @badlabel.csv", 2, {"badlabel.csv", "13 classes"}},
    {"retrain: negative --max-regression", "retrain --model-dir @md --data @d.csv --max-regression -1", 2,
     {"--max-regression"}},
    {"retrain: another strategy", "retrain --model-dir @md --data @d.csv --strategy finetune", 2, {"finetune"}},
    {"retrain: missing --init", "retrain --model-dir @new --init @missing.safetensors", 2, {"--init"}},
    {"retrain: garbage --init", "retrain --model-dir @new --init @garbage.safetensors --memory-data @d.csv", 1,
     {"garbage.safetensors"}},
    {"retrain: unreadable --init", "retrain --model-dir @new --init @noread.safetensors --memory-data @d.csv", 1,
     {"noread.safetensors", "Permission denied"}, true},
    {"retrain: --memory-data labels up to 12",
     "retrain --model-dir @new --init @m.safetensors --memory-data @badlabel.csv", 2, {"badlabel.csv", "13 classes"}},
    // serve (each fails before it listens)
    {"serve: unknown flag", "serve --model-dir @md --port 0 --bogus", 2, {"--bogus"}},
    {"serve: port out of range", "serve --model-dir @md --port 70000", 2, {"--port"}},
    {"serve: unknown retraining priority", "serve --model-dir @md --port 0 --retrain-priority low", 2,
     {"--retrain-priority", "low", "idle,nice"}},
    {"serve: no version in the folder", "serve --model-dir @empty --port 0", 2, {"empty", "no model version"}},
    // no command at all, or an unknown one
    {"unknown command", "nosuch", 2, {"subcommand"}},
};

}  // namespace

TEST_CASE("every nnr command refuses bad requests with exit 1 or 2, a message naming the file or flag, and writes nothing",
          "[cli][bad-requests]") {
  TempDir dir, logs;
  const std::string d = dir.path();
  write_class_csv(dir / "d.csv", 300, 1);
  write_csv(dir / "narrow.csv", 50, 8, 0);
  write_csv(dir / "badlabel.csv", 50, 16, 3);  // labels 3..12
  write_text(dir / "x.csv", "0.1,0,3,0,0,0,0,0,0,0,0,0,0,0,0,0\n");
  write_text(dir / "x8.csv", "0.1,0,3,0,0,0,0,0\n");
  write_text(dir / "garbage.safetensors", "not a safetensors file at all");
  REQUIRE(std::filesystem::create_directory(dir / "empty"));
  REQUIRE(run_nnr("train --data " + d + "/d.csv -o " + d + "/m.safetensors --model mlp:16-8-10 --epochs 1 -q", logs)
              .code == 0);
  REQUIRE(run_nnr("train --data " + d + "/d.csv --model-dir " + d +
                      "/md --model mlp:16-64-64-10 --optimizer sgd --epochs 1 --batch-size 32 --threads 1 -q",
                  logs)
              .code == 0);
  write_class_csv(dir / "noread.csv", 50, 2);
  std::filesystem::copy_file(dir / "m.safetensors", dir / "noread.safetensors");
  REQUIRE(chmod((dir / "noread.csv").c_str(), 0) == 0);
  REQUIRE(chmod((dir / "noread.safetensors").c_str(), 0) == 0);
  const bool root = geteuid() == 0;
  const auto before = snapshot(d);

  int checked = 0;
  for (const BadRequest& row : kRows) {
    if (row.unreadable && root) {
      WARN("skipped as root (root reads chmod 000 files): " << row.what);
      continue;
    }
    const std::string args = expand(row.args, d);
    INFO(row.what << "\nnnr " << args);
    // serve must never get as far as listening; the timeout keeps a wrong row from hanging the suite.
    const Run r = run_nnr(args, logs, "timeout 60 ");
    INFO("stderr: " << r.err);
    REQUIRE(r.code == row.code);
    for (const std::string& m : row.messages) REQUIRE(r.err.find(m) != std::string::npos);
    REQUIRE(r.err.find("error: ") != std::string::npos);
    REQUIRE(snapshot(d) == before);  // no output, no new folder, the model directory untouched
    ++checked;
  }
  REQUIRE(checked >= 40);
}
