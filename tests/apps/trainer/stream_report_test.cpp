// The stream metrics against numbers worked out by hand, and the report folder (JSON, CSV, SVG)
// and CLI tables built from them.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/trainer/stream_report.h"
#include "engine/core/error.h"
#include "tests/apps/app_test_util.h"

using nnr::AccuracyMatrix;
using nnr::test::read_file;
using nnr::test::TempDir;

namespace {

// Three rounds over three chunks; row i is the test accuracy on every chunk after round i.
//
//            chunk 0  chunk 1  chunk 2
//   round 0    0.90     0.10     0.20
//   round 1    0.92     0.95     0.30     (chunk 0 improved by learning chunk 1 ...)
//   round 2    0.60     0.85     0.70     (... and then both old chunks were partly lost)
//
// By hand (T = 3):
//   ACC after round 0 = 0.90
//   ACC after round 1 = (0.92 + 0.95) / 2          = 0.935
//   ACC               = (0.60 + 0.85 + 0.70) / 3   = 2.15 / 3 = 0.71666...
//   BWT        = 1/2 [(0.60 − 0.90) + (0.85 − 0.95)] = 1/2 (−0.30 − 0.10)            = −0.20
//   forgetting = 1/2 [(max(0.90, 0.92) − 0.60) + (max(0.95) − 0.85)] = 1/2 (0.32 + 0.10) = 0.21
//              (differs from −BWT because chunk 0's best was after round 1, not round 0)
//   newest     = R[2][2] = 0.70
const AccuracyMatrix kHandMatrix = {{0.90, 0.10, 0.20}, {0.92, 0.95, 0.30}, {0.60, 0.85, 0.70}};
const std::vector<std::string> kChunks = {"digits 0-3", "rot \"30\", light", "digits 7-9"};

nnr::StrategyReport make_strategy(const std::string& name, const AccuracyMatrix& r, int64_t flops_per_pass) {
  nnr::StrategyReport s;
  s.strategy = name;
  s.description = "samples: all, weights: " + name + ", regularizer: none";
  for (size_t i = 0; i < r.size(); ++i) {
    nnr::RoundRecord rec;
    rec.round = static_cast<int>(i);
    rec.chunk = kChunks[i];
    rec.test_accuracy = r[i];
    rec.validation_accuracy = 0.5 + 0.1 * static_cast<double>(i);
    rec.lambda = 0.25 * static_cast<double>(i);
    rec.compute.forward_flops = flops_per_pass;
    rec.compute.input_grad_flops = flops_per_pass;
    rec.compute.weight_grad_flops = flops_per_pass;
    rec.compute.samples = 1000 * static_cast<int64_t>(i + 1);
    rec.compute.parameters_updated = 1234;
    rec.compute.train_seconds = 1.5;
    rec.compute.round_seconds = 2.0;
    rec.compute.peak_rss_bytes = 1 << 20;
    rec.choices = {{"weights", {{"arm", 2}}}};
    s.rounds.push_back(rec);
  }
  return s;
}

// "full" trains every weight (3 GFLOP a round); "a<b&c" has XML and CSV-unfriendly characters
// and half the FLOPs.
nnr::StreamReport make_report() {
  nnr::StreamReport report;
  report.scenario = "class-incremental";
  report.data = "mnist";
  report.model = "mlp";
  report.device = "cpu";
  report.seed = 7;
  report.chunks = kChunks;
  report.settings = {{"epochs", 2}, {"memory", 500}};
  report.strategies.push_back(make_strategy("full", kHandMatrix, 1000000000));
  report.strategies.push_back(
      make_strategy("a<b&c", {{0.80, 0.0, 0.0}, {0.70, 0.90, 0.0}, {0.50, 0.80, 0.90}}, 500000000));
  return report;
}

// RFC 4180 for one CRLF-terminated record without embedded line breaks.
std::vector<std::string> parse_csv_record(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      fields.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

std::vector<std::string> csv_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t end; (end = text.find("\r\n", start)) != std::string::npos; start = end + 2)
    lines.push_back(text.substr(start, end - start));
  return lines;
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("stream metrics match a hand-computed 3x3 example", "[report]") {
  CHECK(nnr::average_accuracy(kHandMatrix, 0) == Approx(0.90));
  CHECK(nnr::average_accuracy(kHandMatrix, 1) == Approx(0.935));
  CHECK(nnr::average_accuracy(kHandMatrix, 2) == Approx(2.15 / 3));
  CHECK(nnr::backward_transfer(kHandMatrix) == Approx(-0.20));
  CHECK(nnr::forgetting(kHandMatrix) == Approx(0.21));

  const nnr::StrategyReport s = make_strategy("full", kHandMatrix, 1000000000);
  CHECK(s.accuracy() == kHandMatrix);
  CHECK(s.average_accuracy() == Approx(2.15 / 3));
  CHECK(s.bwt() == Approx(-0.20));
  CHECK(s.forgetting() == Approx(0.21));
  CHECK(s.newest_accuracy() == Approx(0.70));
  CHECK(s.train_flops() == 6000000000);  // retraining rounds 1 and 2 × 3 passes × 1 GFLOP (round 0 is the base)
  CHECK(s.train_seconds() == Approx(3.0));
}

TEST_CASE("one round has no backward transfer and no forgetting", "[report]") {
  const AccuracyMatrix one = {{0.5, 0.3}};  // chunk 1 evaluated before it is learned
  CHECK(nnr::average_accuracy(one, 0) == Approx(0.5));
  CHECK(nnr::backward_transfer(one) == 0.0);
  CHECK(nnr::forgetting(one) == 0.0);
  const nnr::StrategyReport s = make_strategy("full", one, 10);
  CHECK(s.newest_accuracy() == Approx(0.5));
  CHECK(s.average_accuracy() == Approx(0.5));
}

TEST_CASE("ragged, empty or too narrow accuracy matrices are rejected", "[report]") {
  const AccuracyMatrix ragged = {{0.9, 0.1}, {0.8}};
  CHECK_THROWS_AS(nnr::backward_transfer(ragged), nnr::InvalidArgument);
  CHECK_THROWS_WITH(nnr::forgetting(ragged), Catch::StartsWith("[report]") && Catch::Contains("ragged"));
  CHECK_THROWS_AS(nnr::average_accuracy(ragged, 0), nnr::InvalidArgument);
  CHECK_THROWS_AS(nnr::average_accuracy(AccuracyMatrix{}, 0), nnr::InvalidArgument);
  CHECK_THROWS_AS(nnr::forgetting(AccuracyMatrix{}), nnr::InvalidArgument);
  CHECK_THROWS_AS(nnr::StrategyReport{}.average_accuracy(), nnr::InvalidArgument);
  CHECK_THROWS_AS(nnr::StrategyReport{}.newest_accuracy(), nnr::InvalidArgument);
  const AccuracyMatrix narrow = {{0.9}, {0.8}};  // rectangular, but there is no R[1][1]
  CHECK_THROWS_AS(nnr::backward_transfer(narrow), nnr::InvalidArgument);
  CHECK_THROWS_AS(nnr::average_accuracy(kHandMatrix, 3), nnr::InvalidArgument);
}

TEST_CASE("to_json holds the stream's fields and every strategy's metrics and rounds", "[report]") {
  const nlohmann::json j = nnr::to_json(make_report());
  CHECK(j["scenario"] == "class-incremental");
  CHECK(j["data"] == "mnist");
  CHECK(j["model"] == "mlp");
  CHECK(j["device"] == "cpu");
  CHECK(j["seed"] == 7);
  CHECK(j["chunks"] == nlohmann::json(kChunks));
  CHECK(j["settings"]["memory"] == 500);
  REQUIRE(j["strategies"].size() == 2);

  const nlohmann::json& full = j["strategies"][0];
  CHECK(full["strategy"] == "full");
  CHECK(full["description"] == "samples: all, weights: full, regularizer: none");
  CHECK(full["average_accuracy"].get<double>() == Approx(2.15 / 3));
  CHECK(full["bwt"].get<double>() == Approx(-0.20));
  CHECK(full["forgetting"].get<double>() == Approx(0.21));
  CHECK(full["newest_accuracy"].get<double>() == Approx(0.70));
  CHECK(full["train_flops"] == 6000000000);
  CHECK(full["train_seconds"].get<double>() == Approx(3.0));
  CHECK(full["accuracy_matrix"].get<AccuracyMatrix>() == kHandMatrix);
  REQUIRE(full["rounds"].size() == 3);
  const nlohmann::json& round1 = full["rounds"][1];
  CHECK(round1["round"] == 1);
  CHECK(round1["chunk"] == kChunks[1]);
  CHECK(round1["test_accuracy"].get<std::vector<double>>() == kHandMatrix[1]);
  CHECK(round1["validation_accuracy"].get<double>() == Approx(0.6));
  CHECK(round1["lambda"].get<double>() == Approx(0.25));
  CHECK(round1["choices"]["weights"]["arm"] == 2);
  const nlohmann::json& compute = round1["compute"];
  CHECK(compute["forward_flops"] == 1000000000);
  CHECK(compute["input_grad_flops"] == 1000000000);
  CHECK(compute["weight_grad_flops"] == 1000000000);
  CHECK(compute["train_flops"] == 3000000000);
  CHECK(compute["samples"] == 2000);
  CHECK(compute["parameters_updated"] == 1234);
  CHECK(compute["train_seconds"].get<double>() == Approx(1.5));
  CHECK(compute["round_seconds"].get<double>() == Approx(2.0));
  CHECK(compute["peak_rss_bytes"] == 1 << 20);

  CHECK(j["strategies"][1]["strategy"] == "a<b&c");
  CHECK(j["strategies"][1]["train_flops"] == 3000000000);

  // A strategy without a finished round has null metrics instead of failing the whole report.
  nnr::StreamReport unfinished;
  unfinished.strategies.push_back(nnr::StrategyReport{"empty", "", {}});
  const nlohmann::json e = nnr::to_json(unfinished)["strategies"][0];
  CHECK(e["average_accuracy"].is_null());
  CHECK(e["rounds"].empty());
}

TEST_CASE("write_stream_report writes report.json, rounds.csv and report.svg", "[report]") {
  TempDir tmp;
  const std::string dir = tmp / "runs/stream-1";  // parents are created too
  const nnr::StreamReport report = make_report();
  nnr::write_stream_report(dir, report);

  CHECK(nlohmann::json::parse(read_file(dir + "/report.json")) == nnr::to_json(report));

  const std::vector<std::string> lines = csv_lines(read_file(dir + "/rounds.csv"));
  REQUIRE(lines.size() == 1 + 2 * 3);  // header, then 2 strategies × 3 rounds
  CHECK(lines[0] ==
        "strategy,round,chunk,average_accuracy,validation_accuracy,lambda,forward_flops,input_grad_flops,"
        "weight_grad_flops,other_flops,train_flops,samples,parameters_updated,train_seconds,round_seconds,peak_rss_bytes,"
        "acc_chunk_0,acc_chunk_1,acc_chunk_2");
  for (const std::string& line : lines) CHECK(parse_csv_record(line).size() == 19);
  const std::vector<std::string> full1 = parse_csv_record(lines[2]);  // "full", round 1
  CHECK(full1[0] == "full");
  CHECK(full1[1] == "1");
  CHECK(full1[2] == kChunks[1]);  // the quoted chunk name parses back whole
  CHECK(std::stod(full1[3]) == Approx(0.935));
  CHECK(std::stod(full1[4]) == Approx(0.6));
  CHECK(std::stod(full1[5]) == Approx(0.25));
  CHECK(std::stoll(full1[9]) == 0);  // other_flops
  CHECK(std::stoll(full1[10]) == 3000000000);
  CHECK(std::stoll(full1[11]) == 2000);
  CHECK(std::stoll(full1[12]) == 1234);
  CHECK(std::stod(full1[13]) == Approx(1.5));
  CHECK(std::stoll(full1[15]) == 1 << 20);
  for (size_t c = 0; c < 3; ++c) CHECK(std::stod(full1[16 + c]) == kHandMatrix[1][c]);  // round-trips exactly
  const std::vector<std::string> last = parse_csv_record(lines[6]);
  CHECK(last[0] == "a<b&c");
  CHECK(std::stod(last[3]) == Approx((0.50 + 0.80 + 0.90) / 3));

  const std::string svg = read_file(dir + "/report.svg");
  REQUIRE(svg.size() > 10);
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.substr(svg.find_last_not_of(" \n") - 5, 6) == "</svg>");
  CHECK(svg.find("average accuracy (test) per round") != std::string::npos);
  CHECK(svg.find("training FLOPs per round") != std::string::npos);
  CHECK(svg.find(">full<") != std::string::npos);
  CHECK(svg.find("a&lt;b&amp;c") != std::string::npos);
  CHECK(svg.find("a<b&c") == std::string::npos);
  CHECK(svg.find("<script") == std::string::npos);
  CHECK(svg.find("mnist") != std::string::npos);
  CHECK(count_of(svg, "<polyline") == 2);  // one ACC line per strategy, no chunk lines
  CHECK(count_of(svg, "<svg") == 1);
}

TEST_CASE("with one strategy the SVG also draws each chunk's accuracy", "[report]") {
  TempDir tmp;
  nnr::StreamReport report = make_report();
  report.strategies.resize(1);
  nnr::write_stream_report(tmp / "one", report);
  const std::string svg = read_file(tmp / "one/report.svg");
  CHECK(count_of(svg, "<polyline") == 1 + 3);
  CHECK(svg.find("rot &quot;30&quot;, light") != std::string::npos);  // chunk names in the legend, escaped
}

TEST_CASE("an unwritable report folder throws naming the path", "[report]") {
  TempDir tmp;
  { std::ofstream(tmp / "plain-file") << "x"; }
  const std::string dir = tmp / "plain-file/report";
  CHECK_THROWS_AS(nnr::write_stream_report(dir, make_report()), nnr::Error);
  CHECK_THROWS_WITH(nnr::write_stream_report(dir, make_report()), Catch::Contains(dir));
  CHECK_THROWS_WITH(nnr::write_stream_report(tmp / "plain-file", make_report()), Catch::Contains("plain-file"));
}

TEST_CASE("the round and summary tables name the strategies and print ACC with 2 decimals", "[report]") {
  const nnr::StreamReport report = make_report();
  const std::string rounds = nnr::format_round_table(report.strategies[0], report.chunks);
  CHECK(rounds.find("full") != std::string::npos);
  CHECK(rounds.find("93.50") != std::string::npos);  // ACC after round 1
  CHECK(rounds.find("71.67") != std::string::npos);  // ACC after round 2
  CHECK(rounds.find("1.23k") != std::string::npos);  // parameters_updated 1234
  CHECK(rounds.find(kChunks[1]) != std::string::npos);
  CHECK(rounds.find(" 92.0  95.0  30.0") != std::string::npos);  // R's row 1 in percent
  CHECK(count_of(rounds, "\n") == 1 + 2 + 3);  // strategy line, header and rule, 3 rounds

  const std::string summary = nnr::format_summary_table(report);
  CHECK(summary.find("full") != std::string::npos);
  CHECK(summary.find("a<b&c") != std::string::npos);
  CHECK(summary.find("71.67") != std::string::npos);   // ACC
  CHECK(summary.find("-20.00") != std::string::npos);  // BWT in points
  CHECK(summary.find("21.00") != std::string::npos);   // forgetting in points
  CHECK(summary.find("70.00") != std::string::npos);   // newest
  CHECK(summary.find("6.000") != std::string::npos);   // train GFLOP, rounds 1 and 2
  CHECK(summary.find("0.500") != std::string::npos);   // half of full's FLOPs
  CHECK(count_of(summary, "\n") == 2 + 2);
}
