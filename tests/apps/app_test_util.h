#pragma once
// Helpers shared by the app tests (tests/apps and tests/apps/trainer): temporary folders, reading
// files and folders, running the nnr binary with its output captured, a request sent in part over
// a raw loopback socket, and the synthetic separable-class data (CSV files and Datasets) the tests
// train on.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/trainer/serving.h"
#include "engine/core/rng.h"
#include "engine/data/dataset.h"
#include "tests/engine/data/temp_dir.h"

namespace nnr::test {

// dir / "name": the path of `name` inside a TempDir.
inline std::string operator/(const TempDir& dir, const std::string& name) { return dir.file(name); }

// A file's whole contents ("" when it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline bool exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// Every file's bytes (and every folder, as "path/") under `dir`: equal snapshots mean nothing was
// written, created or removed there.
inline std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (entry.is_directory()) files[entry.path().string() + "/"] = "";
    else files[entry.path().string()] = read_file(entry.path().string());
  }
  return files;
}

// A finished command: its exit code (-1 when it did not exit normally), stdout and stderr.
struct Run {
  int code;
  std::string out, err;
};

// Runs `command` through the shell with stdout and stderr captured in logs' stdout.txt and stderr.txt.
inline Run run_captured(const std::string& command, const TempDir& logs) {
  const std::string out = logs / "stdout.txt", err = logs / "stderr.txt";
  const int status = std::system((command + " >" + out + " 2>" + err).c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(out), read_file(err)};
}

#ifdef NNR_BINARY
// `prefix`NNR_BINARY `args` (the prefix may be e.g. "prlimit --fsize=N "), captured in logs.
inline Run run_nnr(const std::string& args, const TempDir& logs, const std::string& prefix = "") {
  return run_captured(prefix + std::string(NNR_BINARY) + " " + args, logs);
}
#endif

// Connects to 127.0.0.1:`port` and sends the head of `request_line` ("POST /v1/predict") as
// HTTP/1.1 with a JSON Content-Type and Content-Length: `content_length`, then `part` of its body
// (a client that stalls, or finishes later); returns the socket, whose receives time out after
// 60 s. Throws std::runtime_error when it cannot connect or send.
inline int send_partial_request(int port, const std::string& request_line, size_t content_length,
                                const std::string& part) {
  const int sock = socket(AF_INET, SOCK_STREAM, 0);
  if (sock < 0) throw std::runtime_error("send_partial_request: socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{60, 0};
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  const std::string head = request_line + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                           "Content-Length: " + std::to_string(content_length) + "\r\n\r\n" + part;
  if (connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      send(sock, head.data(), head.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(head.size())) {
    close(sock);
    throw std::runtime_error("send_partial_request: cannot send to 127.0.0.1:" + std::to_string(port));
  }
  return sock;
}

// What write_class_csv varies beyond the classes.
struct ClassCsvOptions {
  bool random_labels = false;  // every label drawn uniformly from 0..9 (before the row's features)
  double scale = 1.0;          // every feature times this
  double poison = 0.0;         // when not 0, feature 0 of every tenth row is this value
  int precision = 6;           // significant digits written (6 is the stream default)
};

// Ten well separated classes in 16-D (class c: feature c is 3, the rest 0, plus N(0, 0.3²) noise);
// label in column 0, with the header "label,f0,...,f15". Rows cycle through the classes in
// [first_class, last_class].
inline void write_class_csv(const std::string& path, int rows, uint64_t seed, int first_class = 0,
                            int last_class = 9, const ClassCsvOptions& o = {}) {
  Rng rng(seed);
  std::ofstream f(path);
  f.precision(o.precision);
  f << "label";
  for (int j = 0; j < 16; ++j) f << ",f" << j;
  f << "\n";
  const int classes = last_class - first_class + 1;
  for (int i = 0; i < rows; ++i) {
    const int c = first_class + i % classes;
    f << (o.random_labels ? static_cast<int>(rng.below(10)) : c);
    for (int j = 0; j < 16; ++j) {
      const double v = ((j == c ? 3.0 : 0.0) + 0.3 * rng.normal()) * o.scale;
      f << "," << (o.poison != 0.0 && j == 0 && i % 10 == 0 ? o.poison : v);
    }
    f << "\n";
  }
}

// Separable classes in 16 features: x = N(0, 0.3²) noise (16 draws), then class c adds 2 to
// feature c and 1 to feature (c + 3) % 16. T is double for CSV rows, float for Dataset rows.
template <class T>
void separable_features(T* x, int c, Rng& rng) {
  for (int k = 0; k < 16; ++k) x[k] = static_cast<T>(0.3 * rng.normal());
  x[c] += static_cast<T>(2.0);
  x[(c + 3) % 16] += static_cast<T>(1.0);
}

// n rows of separable_features cycling through `classes` (as write_chunk writes them), and their
// labels when `labels` is given: the inputs of HTTP requests in the serve tests.
inline std::vector<std::vector<double>> separable_rows(const std::vector<int>& classes, int n, uint64_t seed,
                                                       std::vector<int>* labels) {
  Rng rng(seed);
  std::vector<std::vector<double>> xs;
  for (int i = 0; i < n; ++i) {
    const int c = classes[static_cast<size_t>(i) % classes.size()];
    std::vector<double> x(16);
    separable_features(x.data(), c, rng);
    xs.push_back(x);
    if (labels) labels->push_back(c);
  }
  return xs;
}

// n rows cycling through `classes` as CSV without a header: label, then separable_features; with
// shuffle_labels every label is drawn uniformly from 0..9 (after the row's features) instead.
inline void write_chunk(const std::string& path, const std::vector<int>& classes, int n, uint64_t seed,
                        bool shuffle_labels = false) {
  Rng rng(seed);
  std::ofstream out(path);
  for (int i = 0; i < n; ++i) {
    const int c = classes[static_cast<size_t>(i) % classes.size()];
    std::vector<double> x(16);
    separable_features(x.data(), c, rng);
    const int label = shuffle_labels ? static_cast<int>(rng.below(10)) : c;
    out << label;
    for (double v : x) out << ',' << v;
    out << '\n';
  }
}

// A Dataset "synthetic" of n rows of 16 features, labels cycling through 0..9; fill(row, c, rng)
// writes the 16 floats of a row of class c.
template <class Fill>
Dataset class_dataset(int64_t n, uint64_t seed, Fill fill) {
  Rng rng(seed);
  Tensor x = Tensor::empty({n, 16});
  std::vector<int32_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = static_cast<int32_t>(i % 10);
    y[static_cast<size_t>(i)] = c;
    fill(x.data() + i * 16, c, rng);
  }
  return make_dataset(std::move(x), std::move(y), 10, "synthetic");
}

// Ten classes of separable_features as a Dataset.
inline Dataset separable_dataset(int64_t n, uint64_t seed) {
  return class_dataset(n, seed, [](float* row, int c, Rng& rng) { separable_features(row, c, rng); });
}

// The small served setup of the serving tests: mlp:16-64-64-10, `paper`, batch 16, seed 1, files chunks.
inline ServingSetup small_serving_setup() {
  ServingSetup s;
  s.model_spec = "mlp:16-64-64-10";
  s.strategy = strategy_preset("paper");
  s.retrain.batch_size = 16;
  s.retrain.seed = 1;
  s.chunks.scenario = "files";
  s.chunks.seed = derive_seed(1, "stream");
  return s;
}

// Every choice the bandits made in an `nnr stream --json` report, per strategy and round (samples
// pulled, weight groups opened), without the data-parallel steps' own record: what one process
// and several ranks must agree on.
inline nlohmann::json bandit_choices(const nlohmann::json& report) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : report["strategies"])
    for (const auto& r : s["rounds"]) {
      nlohmann::json c = r.value("choices", nlohmann::json());
      if (c.is_object()) c.erase("data_parallel");
      out.push_back(c);
    }
  return out;
}

}  // namespace nnr::test
