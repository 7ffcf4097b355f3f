// nnr serve's library side in-process on 127.0.0.1 (an ephemeral port), spoken to with
// cpp-httplib's client: predictions, bad requests, feedback files, background retraining, versions
// written by another writer, metrics, and a restart.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "apps/serve/server.h"
#include "apps/trainer/model_dir.h"
#include "apps/trainer/model_file.h"
#include "apps/trainer/serving.h"
#include "apps/trainer/train_loop.h"
#include "engine/core/error.h"
#include "engine/core/rng.h"
#include "tests/apps/app_test_util.h"

using namespace nnr;
using nnr::serve::Server;
using nnr::serve::ServerOptions;
using nnr::test::small_serving_setup;
using nnr::test::TempDir;
using nnr::test::write_chunk;
using json = nlohmann::json;

namespace {

// A model directory with version 1 trained on classes 0-3.
struct ServedDir {
  TempDir tmp;
  std::string dir = tmp.file("served");
  ServedDir() {
    const std::string c0 = tmp.file("c0.csv");
    write_chunk(c0, {0, 1, 2, 3}, 400, 1);
    start_model_dir(dir, c0, small_serving_setup());
  }
};

ServerOptions options_for(const std::string& dir) {
  ServerOptions o;
  o.model_dir = dir;
  o.max_body_bytes = 16 * 1024;
  o.max_inputs = 32;
  o.poll_seconds = 0.1;
  o.http_threads = 4;
  o.io_timeout_seconds = 1;  // the slow client below
  o.log = [](const std::string&) {};
  return o;
}

struct Answer {
  int status = 0;
  json body;
  std::string text;
};

Answer call(int port, const std::string& method, const std::string& path, const std::string& body = "") {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(5, 0);
  cli.set_read_timeout(30, 0);
  cli.set_write_timeout(5, 0);
  httplib::Result r = method == "GET" ? cli.Get(path.c_str()) : cli.Post(path.c_str(), body, "application/json");
  REQUIRE(r);  // the server answered
  Answer a{r->status, json(), r->body};
  a.body = json::parse(r->body, nullptr, false);
  return a;
}

json inputs_json(const std::vector<std::vector<double>>& xs) {
  json all = json::array();
  for (const auto& x : xs) all.push_back(x);
  return all;
}

// Polls until `done` or `seconds` pass; returns whether it became true.
bool eventually(double seconds, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

// Everything the peer sends until it closes (or 60 s pass); closes the socket.
std::string read_all(int sock) {
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = recv(sock, buf, sizeof buf, 0)) > 0) all.append(buf, static_cast<size_t>(n));
  close(sock);
  return all;
}

std::vector<std::string> feedback_files(const std::string& dir) {
  std::vector<std::string> names;
  if (!std::filesystem::exists(dir + "/feedback")) return names;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/feedback"))
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("predictions, one and a batch, match predict_probabilities, and bad requests get 4xx JSON") {
  ServedDir d;
  Server server(options_for(d.dir));
  const int port = server.start(0);
  REQUIRE(port > 0);

  std::vector<int> labels;
  const auto xs = test::separable_rows({0, 1, 2, 3}, 8, 77, &labels);
  LoadedModel v1 = load_model(d.dir + "/1/" + kModelFile);
  Tensor x = Tensor::empty({8, 16});
  for (size_t i = 0; i < xs.size(); ++i)
    for (size_t j = 0; j < 16; ++j) x.data()[i * 16 + j] = static_cast<float>(xs[i][j]);
  const Tensor probs = predict_probabilities(v1.model, x);

  const Answer batch = call(port, "POST", "/v1/predict", json{{"inputs", inputs_json(xs)}}.dump());
  REQUIRE(batch.status == 200);
  CHECK(batch.body["version"] == 1);
  REQUIRE(batch.body["labels"].size() == 8);
  REQUIRE(batch.body["probabilities"].size() == 8);
  for (size_t i = 0; i < 8; ++i) {
    const float* row = probs.data() + i * 10;
    CHECK(batch.body["labels"][i].get<int64_t>() == std::max_element(row, row + 10) - row);
    REQUIRE(batch.body["probabilities"][i].size() == 10);
    for (size_t k = 0; k < 10; ++k) CHECK(batch.body["probabilities"][i][k].get<double>() == Approx(row[k]).margin(1e-6));
  }
  const Answer one = call(port, "POST", "/v1/predict", json{{"input", xs[3]}}.dump());
  REQUIRE(one.status == 200);
  CHECK(one.body["labels"] == json::array({batch.body["labels"][3]}));

  // Every kind of bad request, one row each: it gets its status and a JSON error saying why.
  json non_numeric = xs[0];
  non_numeric[5] = "five";
  struct BadCase {
    std::string method, path, body;
    int status;
    std::string says;
  };
  const std::vector<BadCase> table = {
      {"POST", "/v1/predict", "{\"inputs\": [[1, 2", 400, "malformed JSON"},
      {"POST", "/v1/predict", "[1, 2]", 400, "JSON object"},
      {"POST", "/v1/predict", "{\"x\": 1}", 400, "\"inputs\""},
      {"POST", "/v1/predict", json{{"inputs", json::array({json::array({1, 2, 3})})}}.dump(), 400, "16 numbers"},  // wrong shape
      {"POST", "/v1/predict", json{{"inputs", json::array()}}.dump(), 400, "empty"},
      {"POST", "/v1/predict", json{{"input", non_numeric}}.dump(), 400, "value 5 is not a number"},
      {"POST", "/v1/predict", "{\"input\": [1e999, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}", 400, ""},
      {"POST", "/v1/predict", json{{"inputs", inputs_json(test::separable_rows({0}, 33, 5, nullptr))}}.dump(), 413,
       "too many inputs"},
      {"POST", "/v1/predict", "{\"input\": [" + std::string(20000, ' ') + "]}", 413, "over the limit"},  // oversized
      {"GET", "/v1/nowhere", "", 404, "no route GET /v1/nowhere"},  // unknown route
      {"POST", "/v1/feedback", json{{"inputs", inputs_json(xs)}, {"labels", json::array({1, 2})}}.dump(), 400,
       "8 inputs but 2 labels"},
      {"POST", "/v1/feedback", json{{"input", xs[0]}, {"labels", json::array({10})}}.dump(), 400, "not a class"},
      {"POST", "/v1/feedback", json{{"input", xs[0]}, {"labels", json::array({"a"})}}.dump(), 400, "not an integer"},
  };
  for (const BadCase& c : table) {
    INFO(c.method << " " << c.path << " " << c.body.substr(0, 80));
    const Answer a = call(port, c.method, c.path, c.body);
    CHECK(a.status == c.status);
    REQUIRE(a.body.is_object());
    REQUIRE(a.body.contains("error"));
    CHECK_THAT(a.body["error"].get<std::string>(), Catch::Contains(c.says));
  }
  {
    // A slow client: it sends the headers and half its body, then stalls. Meanwhile the server
    // answers others; after io_timeout_seconds it answers the slow one with a 4xx JSON error.
    const std::string body = json{{"input", xs[0]}}.dump();
    const int sock = test::send_partial_request(port, "POST /v1/predict", body.size(), body.substr(0, body.size() / 2));
    CHECK(call(port, "POST", "/v1/predict", json{{"input", xs[1]}}.dump()).status == 200);
    const std::string answer = read_all(sock);
    INFO(answer);
    const auto head_end = answer.find("\r\n\r\n");
    REQUIRE(head_end != std::string::npos);
    CHECK(answer.rfind("HTTP/1.1 4", 0) == 0);
    const json error = json::parse(answer.substr(head_end + 4), nullptr, false);
    REQUIRE(error.is_object());
    CHECK_THAT(error["error"].get<std::string>(), Catch::Contains("did not arrive"));
  }
  CHECK(feedback_files(d.dir).size() == 0);

  // Still serving.
  const Answer health = call(port, "GET", "/v1/health");
  CHECK(health.status == 200);
  CHECK(health.body["status"] == "ok");
  CHECK(health.body["version"] == 1);
  const Answer model = call(port, "GET", "/v1/model");
  CHECK(model.body["model_spec"] == "mlp:16-64-64-10");
  CHECK(model.body["sample_numel"] == 16);
  CHECK(model.body["classes"] == 10);
  CHECK(model.body["pending_feedback"] == 0);

  const Answer metrics = call(port, "GET", "/metrics");
  CHECK(metrics.status == 200);
  const std::string& m = metrics.text;
  CHECK_THAT(m, Catch::Contains("nnr_http_requests_total{route=\"/v1/predict\",code=\"200\"} 3"));
  CHECK_THAT(m, Catch::Contains("nnr_http_requests_total{route=\"/v1/predict\",code=\"400\"} 7"));
  CHECK_THAT(m, Catch::Contains("nnr_http_requests_total{route=\"/v1/predict\",code=\"413\"} 1"));
  CHECK_THAT(m, Catch::Contains("nnr_http_requests_total{route=\"other\",code=\"404\"} 1"));
  CHECK_THAT(m, Catch::Contains("nnr_http_requests_total{route=\"other\",code=\"413\"} 1"));
  CHECK_THAT(m, Catch::Contains("nnr_http_requests_total{route=\"other\",code=\"408\"} 1"));
  CHECK_THAT(m, Catch::Contains("nnr_http_errors_total{route=\"/v1/feedback\"} 3"));
  CHECK_THAT(m, Catch::Contains("nnr_http_request_duration_seconds_count{route=\"/v1/predict\"} 11"));
  CHECK_THAT(m, Catch::Contains("nnr_http_request_duration_seconds_bucket{route=\"/v1/predict\",le=\"+Inf\"} 11"));
  CHECK_THAT(m, Catch::Contains("\nnnr_served_version 1\n"));
  CHECK_THAT(m, Catch::Contains("\nnnr_retrain_rounds_total 0\n"));
  CHECK_THAT(m, Catch::Contains("\nnnr_retrain_rounds_refused_total 0\n"));
  CHECK_THAT(m, Catch::Contains("\nnnr_predicted_samples_total 10\n"));
  // No batcher (max_batch 1): one forward pass per request, 8 + 1 + 1 inputs.
  CHECK_THAT(m, Catch::Contains("\nnnr_predict_batch_size_bucket{le=\"1\"} 2\n"));
  CHECK_THAT(m, Catch::Contains("\nnnr_predict_batch_size_bucket{le=\"8\"} 3\n"));
  CHECK_THAT(m, Catch::Contains("\nnnr_predict_batch_size_count 3\n"));
  CHECK_THAT(m, Catch::Contains("\nnnr_predict_batch_size_sum 10\n"));
  server.stop();
  server.stop();  // idempotent
}

TEST_CASE("feedback is written durably, a round runs once N samples are pending, a restart resumes") {
  ServedDir d;
  ServerOptions o = options_for(d.dir);
  o.retrain_every = 90;
  o.retrain_threads = 1;
  o.max_regression = 100.0;  // this test is about the swap, not the gate
  int64_t version_after_round = 0;
  {
    Server server(o);
    const int port = server.start(0);
    std::vector<int> labels;
    const auto xs = test::separable_rows({4, 5, 6}, 90, 2, &labels);
    // Three requests of 30: the first two leave the round waiting.
    for (int r = 0; r < 3; ++r) {
      const std::vector<std::vector<double>> part(xs.begin() + 30 * r, xs.begin() + 30 * (r + 1));
      const std::vector<int> part_labels(labels.begin() + 30 * r, labels.begin() + 30 * (r + 1));
      const Answer a = call(port, "POST", "/v1/feedback", json{{"inputs", inputs_json(part)}, {"labels", part_labels}}.dump());
      REQUIRE(a.status == 200);
      CHECK(a.body["accepted"] == 30);
      if (r < 2) {
        CHECK(a.body["pending"] == 30 * (r + 1));
        const auto files = feedback_files(d.dir);
        REQUIRE(files.size() == static_cast<size_t>(r + 1));
        // nnr's CSV: label first, then the 16 features.
        std::ifstream in(d.dir + "/feedback/" + files.back());
        std::string line;
        std::getline(in, line);
        CHECK(line.rfind(std::to_string(part_labels[0]) + ",", 0) == 0);
        CHECK(std::count(line.begin(), line.end(), ',') == 16);
      }
    }
    // Predictions keep being answered while the round runs.
    int answered = 0;
    const bool swapped = eventually(60, [&] {
      if (call(port, "POST", "/v1/predict", json{{"input", xs[0]}}.dump()).status == 200) ++answered;
      return call(port, "GET", "/v1/model").body["version"] == 2;
    });
    REQUIRE(swapped);
    CHECK(answered > 0);
    // The poller may swap version 2 in before the round's own bookkeeping is done.
    CHECK(eventually(10, [&] { return call(port, "GET", "/v1/model").body["rounds_run"] == 1; }));
    const Answer model = call(port, "GET", "/v1/model");
    CHECK(model.body["rounds_run"] == 1);
    CHECK(model.body["rounds_refused"] == 0);
    CHECK(model.body["retrain_threads"] == 1);
    CHECK(model.body["validation_accuracy"].is_number());
    CHECK(eventually(10, [&] { return call(port, "GET", "/v1/model").body["pending_feedback"] == 0; }));
    CHECK(eventually(10, [&] { return feedback_files(d.dir).empty(); }));
    CHECK(call(port, "POST", "/v1/predict", json{{"input", xs[0]}}.dump()).body["version"] == 2);
    CHECK_THAT(call(port, "GET", "/metrics").text, Catch::Contains("\nnnr_retrain_rounds_total 1\n"));
    CHECK_THAT(call(port, "GET", "/metrics").text, Catch::Contains("\nnnr_served_version 2\n"));

    // 20 more stay pending across the restart.
    const auto more = test::separable_rows({7, 8}, 20, 3, &labels);
    const Answer a = call(port, "POST", "/v1/feedback",
                          json{{"inputs", inputs_json(more)}, {"labels", std::vector<int>(labels.end() - 20, labels.end())}}.dump());
    REQUIRE(a.status == 200);
    CHECK(a.body["pending"] == 20);
    version_after_round = server.served_version();
    server.stop();
  }
  REQUIRE(version_after_round == 2);
  CHECK(feedback_files(d.dir).size() == 1);
  Server again(o);
  const int port = again.start(0);
  CHECK(again.served_version() == 2);
  CHECK(again.pending_feedback() == 20);
  const Answer model = call(port, "GET", "/v1/model");
  CHECK(model.body["version"] == 2);
  CHECK(model.body["pending_feedback"] == 20);
}

TEST_CASE("a version written by another writer is picked up while serving") {
  ServedDir d;
  const std::string c1 = d.tmp.file("c1.csv");
  write_chunk(c1, {4, 5, 6}, 300, 2);
  Server server(options_for(d.dir));
  const int port = server.start(0);
  CHECK(call(port, "GET", "/v1/model").body["version"] == 1);
  const ServingRound round = retrain_model_dir(d.dir, c1, 100.0);  // as `nnr retrain` would
  REQUIRE(round.version == 2);
  CHECK(eventually(30, [&] { return call(port, "GET", "/v1/model").body["version"] == 2; }));
  std::vector<int> labels;
  const auto xs = test::separable_rows({5}, 1, 9, &labels);
  const Answer a = call(port, "POST", "/v1/predict", json{{"input", xs[0]}}.dump());
  CHECK(a.body["version"] == 2);
  CHECK(a.body["labels"][0] == 5);
}

TEST_CASE("a directory without a version, a port in use, and bad options are refused") {
  TempDir tmp;
  CHECK_THROWS_WITH(Server(options_for(tmp.file("empty"))), Catch::Contains("holds no model version"));
  CHECK_THROWS_AS(Server(options_for(tmp.file("empty"))), InvalidArgument);  // a usage error, as in nnr retrain
  ServedDir d;
  ServerOptions o = options_for(d.dir);
  o.retrain_every = -1;
  CHECK_THROWS_WITH(Server(o), Catch::Contains("retrain_every"));
  o = options_for(d.dir);
  o.retrain_nice = 20;
  CHECK_THROWS_WITH(Server(o), Catch::Contains("retrain_nice"));
  o.retrain_nice = 10;
  o.retrain_threads = -1;
  CHECK_THROWS_WITH(Server(o), Catch::Contains("retrain_threads must be >= 0"));
  o.retrain_threads = 0;
  o.keep_alive_requests = 0;
  o.retrain_nice = 0;
  CHECK_THROWS_WITH(Server(o), Catch::Contains("keep_alive_requests"));
  Server first(options_for(d.dir));
  const int port = first.start(0);
  Server second(options_for(d.dir));
  CHECK_THROWS_WITH(second.start(port), Catch::Contains("cannot listen"));
  CHECK(call(port, "GET", "/v1/health").status == 200);
}

TEST_CASE("batched concurrent predictions: each answer is its own, from the version it names, across a swap") {
  ServedDir d;
  const std::string c1 = d.tmp.file("c1.csv");
  write_chunk(c1, {4, 5, 6}, 300, 2);
  ServerOptions o = options_for(d.dir);
  o.max_batch = 8;
  o.max_wait_us = 2000;
  o.http_threads = 8;
  Server server(o);
  const int port = server.start(0);

  const auto xs = test::separable_rows({0, 1, 2, 3, 4, 5, 6}, 16, 11, nullptr);
  // What each version predicts for each sample, batch-1.
  const auto expected = [&](int64_t version) {
    LoadedModel v = load_model(d.dir + "/" + std::to_string(version) + "/" + kModelFile);
    std::vector<std::vector<float>> probs;
    for (const auto& x : xs) {
      Tensor t = Tensor::empty({1, 16});
      for (size_t j = 0; j < 16; ++j) t.data()[j] = static_cast<float>(x[j]);
      const Tensor p = predict_probabilities(v.model, t);
      probs.emplace_back(p.data(), p.data() + 10);
    }
    return probs;
  };
  const auto v1 = expected(1);

  constexpr int kThreads = 8, kEach = 30;
  std::vector<std::vector<std::pair<size_t, Answer>>> answers(kThreads);
  std::atomic<int> done{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t)
    clients.emplace_back([&, t] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_read_timeout(60, 0);
      for (int i = 0; i < kEach; ++i) {
        const size_t k = static_cast<size_t>(t * kEach + i) % xs.size();
        httplib::Result r = cli.Post("/v1/predict", json{{"input", xs[k]}}.dump(), "application/json");
        Answer a;
        if (r) a = Answer{r->status, json::parse(r->body, nullptr, false), r->body};
        answers[static_cast<size_t>(t)].emplace_back(k, a);
      }
      ++done;
    });
  // Another writer adds version 2 while the clients run; the poller swaps it in.
  const ServingRound round = retrain_model_dir(d.dir, c1, 100.0);
  REQUIRE(round.version == 2);
  for (auto& c : clients) c.join();
  const auto v2 = expected(2);
  CHECK(eventually(30, [&] { return server.served_version() == 2; }));

  int64_t answered = 0;
  for (const auto& list : answers)
    for (const auto& [k, a] : list) {
      REQUIRE(a.status == 200);
      const int64_t version = a.body["version"].get<int64_t>();
      REQUIRE((version == 1 || version == 2));
      const auto& want = (version == 1 ? v1 : v2)[k];
      REQUIRE(a.body["probabilities"].size() == 1);
      for (size_t c = 0; c < 10; ++c)
        CHECK(a.body["probabilities"][0][c].get<double>() == Approx(want[c]).margin(1e-5));
      ++answered;
    }
  CHECK(answered == kThreads * kEach);
  // A request after the swap is answered by version 2.
  CHECK(call(port, "POST", "/v1/predict", json{{"input", xs[0]}}.dump()).body["version"] == 2);

  // The batch-size histogram counts every input once; no batch is larger than max_batch.
  const std::string m = call(port, "GET", "/metrics").text;
  const auto value = [&](const std::string& name) {
    const auto at = m.find("\n" + name + " ");
    REQUIRE(at != std::string::npos);
    return std::stoll(m.substr(at + name.size() + 2));
  };
  CHECK(value("nnr_predict_batch_size_sum") == kThreads * kEach + 1);
  CHECK(value("nnr_predict_batch_size_bucket{le=\"8\"}") == value("nnr_predict_batch_size_count"));
  CHECK(value("nnr_predict_batch_size_count") <= kThreads * kEach + 1);
  CHECK(call(port, "GET", "/v1/model").body["max_batch"] == 8);
}

namespace {
// Field `n` (1-based, as proc(5) counts) of /proc/self/task/<tid>/stat for every thread of this
// process: 19 is the nice value, 41 the scheduling policy (SCHED_IDLE is 5).
std::vector<int> thread_stat_fields(int n) {
  std::vector<int> values;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    const std::string stat = test::read_file(task.path().string() + "/stat");
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));  // after "pid (comm) "
    std::string field;
    for (int i = 3; i <= n && rest >> field; ++i) {}
    values.push_back(std::stoi(field));
  }
  return values;
}
}  // namespace

TEST_CASE("the retraining thread runs at retrain_nice, the request threads at the process's priority") {
  ServedDir d;
  ServerOptions o = options_for(d.dir);
  o.retrain_every = 1000;  // the thread starts (and waits for feedback)
  o.retrain_priority = ServerOptions::RetrainPriority::nice;
  o.retrain_nice = 7;
  const int own = thread_stat_fields(19).front();
  Server server(o);
  const int port = server.start(0);
  CHECK(eventually(10, [&] {
    const std::vector<int> v = thread_stat_fields(19);
    return std::count(v.begin(), v.end(), std::min(19, own + 7)) == 1;
  }));
  CHECK(call(port, "POST", "/v1/predict", json{{"input", test::separable_rows({1}, 1, 3, nullptr)[0]}}.dump()).status == 200);
  CHECK(call(port, "GET", "/v1/model").body["retrain_priority"] == "nice 7");
}

TEST_CASE("by default the retraining thread runs at idle priority (SCHED_IDLE), the request threads do not") {
  ServedDir d;
  ServerOptions o = options_for(d.dir);
  o.retrain_every = 1000;  // the thread starts (and waits for feedback)
  REQUIRE(o.retrain_priority == ServerOptions::RetrainPriority::idle);
  const std::vector<int> before = thread_stat_fields(41);
  REQUIRE(std::count(before.begin(), before.end(), SCHED_IDLE) == 0);
  Server server(o);
  const int port = server.start(0);
  CHECK(eventually(10, [&] {
    const std::vector<int> v = thread_stat_fields(41);
    return std::count(v.begin(), v.end(), SCHED_IDLE) == 1;
  }));
  CHECK(call(port, "POST", "/v1/predict", json{{"input", test::separable_rows({1}, 1, 3, nullptr)[0]}}.dump()).status == 200);
  CHECK(call(port, "GET", "/v1/model").body["retrain_priority"] == "idle");
  // Rounds at idle priority still run: the end-to-end test above retrains with the defaults.
}
