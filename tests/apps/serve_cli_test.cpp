// nnr serve as a child process: SIGTERM with requests in flight (they are answered, their
// feedback is on disk, exit status 0), and the end-to-end run of issue #17: start, predict, post
// labelled chunks, see the version change, kill -9, restart, same version and no lost feedback;
// and a model directory without a version, a usage error (exit 2) as for nnr retrain.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "apps/trainer/model_dir.h"
#include "engine/core/rng.h"
#include "tests/apps/app_test_util.h"

using namespace nnr;
using nnr::test::read_file;
using nnr::test::small_serving_setup;
using nnr::test::TempDir;
using nnr::test::write_chunk;
using json = nlohmann::json;

namespace {

bool eventually(double seconds, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

// `nnr serve --model-dir DIR --port 0 ARGS...` as a child, stderr in `log`; its port from the log.
struct Child {
  pid_t pid = -1;
  int port = 0;
  std::string log;
  Child(const std::string& dir, const std::vector<std::string>& args, std::string log_path) : log(std::move(log_path)) {
    std::vector<std::string> argv = {NNR_BINARY, "serve", "--model-dir", dir, "--port", "0", "--threads", "1"};
    argv.insert(argv.end(), args.begin(), args.end());
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 2);
      dup2(fd, 1);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      execv(NNR_BINARY, cargv.data());
      _exit(127);
    }
    const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    REQUIRE(eventually(60, [&] {
      std::smatch m;
      const std::string text = read_file(log);
      if (!std::regex_search(text, m, listening)) return false;
      port = std::stoi(m[1]);
      return true;
    }));
  }
  int wait_exit() {  // the exit status (-1 when killed by a signal)
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  ~Child() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

json get(int port, const std::string& path) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(30, 0);
  httplib::Result r = cli.Get(path.c_str());
  REQUIRE(r);
  REQUIRE(r->status == 200);
  return json::parse(r->body);
}

json post(int port, const std::string& path, const json& body, int status = 200) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(30, 0);
  httplib::Result r = cli.Post(path.c_str(), body.dump(), "application/json");
  REQUIRE(r);
  CHECK(r->status == status);
  return json::parse(r->body, nullptr, false);
}

// Sends the rest of the body and reads the answer until the server closes: {status, body}.
std::pair<int, json> finish_request(int sock, const std::string& rest) {
  REQUIRE(send(sock, rest.data(), rest.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(rest.size()));
  std::string all;
  char buf[4096];
  ssize_t n;
  while ((n = recv(sock, buf, sizeof buf, 0)) > 0) {
    all.append(buf, static_cast<size_t>(n));
    const auto head_end = all.find("\r\n\r\n");
    const auto length_at = all.find("Content-Length: ");
    if (head_end != std::string::npos && length_at != std::string::npos && length_at < head_end &&
        all.size() >= head_end + 4 + std::stoul(all.substr(length_at + 16)))
      break;
  }
  close(sock);
  INFO(all);
  const auto head_end = all.find("\r\n\r\n");
  REQUIRE(head_end != std::string::npos);
  REQUIRE(all.rfind("HTTP/1.1 ", 0) == 0);
  return {std::stoi(all.substr(9, 3)), json::parse(all.substr(head_end + 4), nullptr, false)};
}

size_t feedback_file_count(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/feedback"))
    if (e.is_regular_file()) ++n;
  return n;
}

}  // namespace

TEST_CASE("nnr serve on SIGTERM answers the requests in flight, keeps their feedback, and exits 0") {
  TempDir tmp;
  const std::string dir = tmp.file("served"), c0 = tmp.file("c0.csv");
  write_chunk(c0, {0, 1, 2, 3}, 400, 1);
  start_model_dir(dir, c0, small_serving_setup());
  Child server(dir, {"--max-batch", "8", "--max-wait-us", "1000"}, tmp.file("serve.log"));

  std::vector<int> labels;
  const auto xs = nnr::test::separable_rows({4, 5}, 10, 3, &labels);
  json fb_inputs = json::array();
  for (const auto& x : xs) fb_inputs.push_back(x);
  const std::string feedback = json{{"inputs", fb_inputs}, {"labels", labels}}.dump();
  const std::string predict = json{{"input", xs[0]}}.dump();
  // Two requests in flight: their headers and half their bodies are in when SIGTERM comes.
  const int fb_sock = nnr::test::send_partial_request(server.port, "POST /v1/feedback", feedback.size(),
                                                      feedback.substr(0, feedback.size() / 2));
  const int pr_sock = nnr::test::send_partial_request(server.port, "POST /v1/predict", predict.size(),
                                                      predict.substr(0, predict.size() / 2));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the server is reading their bodies
  REQUIRE(kill(server.pid, SIGTERM) == 0);
  REQUIRE(eventually(30, [&] { return read_file(server.log).find("SIGTERM") != std::string::npos; }));
  const auto [fb_status, fb_answer] = finish_request(fb_sock, feedback.substr(feedback.size() / 2));
  const auto [pr_status, pr_answer] = finish_request(pr_sock, predict.substr(predict.size() / 2));
  CHECK(fb_status == 200);
  CHECK(fb_answer["accepted"] == 10);
  CHECK(pr_status == 200);
  CHECK(pr_answer["version"] == 1);
  CHECK(pr_answer["labels"].size() == 1);
  CHECK(server.wait_exit() == 0);
  INFO(read_file(server.log));
  CHECK(read_file(server.log).find("stopped") != std::string::npos);
  // The feedback is on disk: one file, ten rows; a restart finds it pending.
  REQUIRE(feedback_file_count(dir) == 1);
  Child again(dir, {}, tmp.file("serve2.log"));
  CHECK(get(again.port, "/v1/model")["pending_feedback"] == 10);
}

TEST_CASE("nnr serve end to end: predict, feedback rounds change the version, kill -9, restart loses nothing") {
  TempDir tmp;
  const std::string dir = tmp.file("served"), c0 = tmp.file("c0.csv");
  write_chunk(c0, {0, 1, 2, 3}, 400, 1);
  start_model_dir(dir, c0, small_serving_setup());
  const std::vector<std::string> flags = {"--retrain-every", "90", "--max-regression", "100", "--poll-seconds", "0.1"};
  int64_t version = 0;
  {
    Child server(dir, flags, tmp.file("serve.log"));
    std::vector<int> labels;
    const auto xs = nnr::test::separable_rows({4, 5, 6}, 110, 2, &labels);
    CHECK(post(server.port, "/v1/predict", json{{"input", xs[0]}})["version"] == 1);
    for (int r = 0; r < 3; ++r) {  // three labelled chunks of 30: the third starts a round
      json inputs = json::array();
      for (int i = 30 * r; i < 30 * (r + 1); ++i) inputs.push_back(xs[static_cast<size_t>(i)]);
      const std::vector<int> part(labels.begin() + 30 * r, labels.begin() + 30 * (r + 1));
      CHECK(post(server.port, "/v1/feedback", json{{"inputs", inputs}, {"labels", part}})["accepted"] == 30);
    }
    REQUIRE(eventually(120, [&] { return get(server.port, "/v1/model")["version"] == 2; }));
    CHECK(post(server.port, "/v1/predict", json{{"input", xs[0]}})["version"] == 2);
    REQUIRE(eventually(30, [&] { return get(server.port, "/v1/model")["pending_feedback"] == 0; }));
    // 20 more stay pending; then kill -9.
    json inputs = json::array();
    for (int i = 90; i < 110; ++i) inputs.push_back(xs[static_cast<size_t>(i)]);
    const std::vector<int> part(labels.begin() + 90, labels.begin() + 110);
    CHECK(post(server.port, "/v1/feedback", json{{"inputs", inputs}, {"labels", part}})["pending"] == 20);
    version = get(server.port, "/v1/model")["version"].get<int64_t>();
    REQUIRE(kill(server.pid, SIGKILL) == 0);
    CHECK(server.wait_exit() == -1);
  }
  CHECK(version == 2);
  Child again(dir, flags, tmp.file("serve2.log"));
  const json model = get(again.port, "/v1/model");
  CHECK(model["version"] == version);
  CHECK(model["pending_feedback"] == 20);
  CHECK(get(again.port, "/v1/health")["version"] == version);
}

TEST_CASE("nnr serve on a model directory without a version exits 2, as nnr retrain does, saying how to start one") {
  TempDir tmp, logs;
  const std::string empty = tmp.file("empty");
  REQUIRE(std::filesystem::create_directory(empty));
  nnr::test::write_class_csv(tmp.file("x.csv"), 20, 1);
  const nnr::test::Run serve = nnr::test::run_nnr("serve --model-dir " + empty + " --port 0", logs, "timeout 60 ");
  INFO(serve.err);
  CHECK(serve.code == 2);
  CHECK(serve.err.find(empty + " holds no model version") != std::string::npos);
  CHECK(serve.err.find("nnr train --model-dir " + empty) != std::string::npos);
  CHECK(serve.err.find("listening") == std::string::npos);
  const nnr::test::Run retrain = nnr::test::run_nnr("retrain --model-dir " + empty + " --data " + tmp.file("x.csv"), logs);
  CHECK(retrain.code == serve.code);
  CHECK(std::filesystem::is_empty(empty));
}
