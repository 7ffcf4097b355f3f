// nnr serve's library side (see server.h).
#include "apps/serve/server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include <httplib.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "apps/serve/batcher.h"
#include "apps/serve/fast_json.h"
#include "apps/trainer/model_dir.h"
#include "apps/trainer/model_file.h"
#include "apps/trainer/serving.h"
#include "apps/trainer/train_loop.h"
#include "engine/core/threads.h"
#include "engine/core/error.h"
#include "engine/io/atomic_file.h"
#include "engine/nn/model_spec.h"

namespace nnr::serve {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// A request the client got wrong: answered with `status` and {"error": message}.
struct BadRequest {
  int status;
  std::string message;
};

// One served version: requests hold a shared_ptr to it for as long as they use it.
struct ServedModel {
  int64_t version = 0;
  std::string spec;
  Shape input_shape;
  int64_t sample_numel = 0;
  int64_t classes = 0;
  std::mutex forward_mutex;                   // Sequential::forward is not thread-safe
  Sequential model;
};

std::shared_ptr<ServedModel> load_served(const ModelVersion& v) {
  auto served = std::make_shared<ServedModel>();
  LoadedModel loaded = load_model(v.path + "/" + kModelFile);
  served->version = v.number;
  served->spec = loaded.model.spec();
  served->input_shape = model_input_shape(served->spec);
  served->sample_numel = shape_numel(served->input_shape);
  Shape one = served->input_shape;
  one.insert(one.begin(), 1);
  const Shape out = loaded.model.output_shape(one);
  if (out.size() != 2) throw Error("[serve] model '" + served->spec + "' does not end in a [N, classes] output");
  served->classes = out[1];
  served->model = std::move(loaded.model);
  return served;
}

constexpr std::array<double, 13> kLatencyBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1,    0.25,  0.5,    1.0,   2.5,  5.0};

struct RouteMetrics {
  std::map<int, int64_t> by_status;
  int64_t errors = 0;
  std::array<int64_t, kLatencyBuckets.size()> buckets{};  // non-cumulative here
  int64_t observations = 0;
  double seconds = 0.0;
};

// Inputs per forward pass of /v1/predict: a power-of-two histogram (the last bucket is +Inf).
constexpr std::array<int64_t, 13> kBatchBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};

struct BatchMetrics {
  std::array<int64_t, kBatchBuckets.size() + 1> buckets{};  // non-cumulative here
  int64_t batches = 0;
  int64_t inputs = 0;
};

struct PendingFile {
  std::string path;
  int64_t samples = 0;
};

bool is_feedback_name(const std::string& name) {
  // fb-<20 digits>-<6 digits>.csv
  if (name.size() != 3 + 20 + 1 + 6 + 4 || name.compare(0, 3, "fb-") != 0 || name[23] != '-' ||
      name.compare(30, 4, ".csv") != 0)
    return false;
  for (size_t i = 3; i < 30; ++i)
    if (i != 23 && !std::isdigit(static_cast<unsigned char>(name[i]))) return false;
  return true;
}

int64_t count_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("[serve] cannot read feedback file " + path);
  int64_t n = 0;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) ++n;
  return n;
}

void append_number(std::string& out, double v) {
  char cell[32];
  std::snprintf(cell, sizeof cell, "%.9g", v);
  out += cell;
}

std::string json_error(const std::string& message) { return nlohmann::json{{"error", message}}.dump(); }

}  // namespace

struct Server::State {
  ServerOptions options;
  std::string feedback_dir, rounds_dir, refused_dir;

  mutable std::mutex model_mutex;  // guards `model` (the pointer, not the model)
  std::shared_ptr<ServedModel> model;

  mutable std::mutex feedback_mutex;  // guards pending, pending_samples, feedback_seq
  std::condition_variable wake;       // feedback arrived, or stopping
  std::vector<PendingFile> pending;
  int64_t pending_samples = 0;
  int64_t feedback_seq = 0;

  mutable std::mutex metrics_mutex;
  std::map<std::string, RouteMetrics> routes;
  BatchMetrics batches;  // metrics_mutex
  std::atomic<int64_t> rounds_run{0}, rounds_refused{0}, rounds_failed{0}, versions_loaded{0};
  std::atomic<int64_t> predicted_samples{0}, feedback_samples{0};
  std::atomic<bool> retraining{false};
  std::atomic<int> retrain_threads{0};  // the rounds' CPU threads, once the retraining thread runs
  mutable std::mutex round_mutex;
  nlohmann::json last_round;  // guarded by round_mutex
  std::map<int64_t, double> validation_accuracy;  // of the versions this server's rounds wrote; round_mutex

  std::unique_ptr<DynamicBatcher> batcher;  // with max_batch > 1, from start() on
  httplib::Server http;
  std::thread http_thread, poll_thread, retrain_thread;
  std::atomic<bool> stopping{false};
  bool started = false;
  int port = 0;
  std::mutex lifecycle_mutex;  // start/stop

  void log(const std::string& line) const {
    if (options.log) options.log(line);
    else std::fprintf(stderr, "[serve] %s\n", line.c_str());
  }

  std::shared_ptr<ServedModel> current() const {
    std::lock_guard<std::mutex> lock(model_mutex);
    return model;
  }

  // Loads `v` and swaps it in when it is newer than the served one. Returns true if swapped.
  bool adopt(const ModelVersion& v) {
    {
      std::shared_ptr<ServedModel> now = current();
      if (now && now->version >= v.number) return false;
    }
    std::shared_ptr<ServedModel> loaded = load_served(v);  // off the request path, no lock held
    std::lock_guard<std::mutex> lock(model_mutex);
    if (model && model->version >= loaded->version) return false;
    const int64_t old = model ? model->version : 0;
    model = std::move(loaded);
    ++versions_loaded;
    log("serving version " + std::to_string(v.number) + (old ? " (was " + std::to_string(old) + ")" : ""));
    return true;
  }

  void record(const std::string& route, int status, double seconds) {
    if (status == -1) status = 200;  // httplib fills in 200 after the handler
    std::lock_guard<std::mutex> lock(metrics_mutex);
    RouteMetrics& m = routes[route];
    ++m.by_status[status];
    if (status >= 400) ++m.errors;
    if (seconds >= 0.0) {
      ++m.observations;
      m.seconds += seconds;
      for (size_t i = 0; i < kLatencyBuckets.size(); ++i)
        if (seconds <= kLatencyBuckets[i]) {
          ++m.buckets[i];
          break;
        }
    }
  }

  void observe_batch(int64_t inputs) {
    std::lock_guard<std::mutex> lock(metrics_mutex);
    size_t i = 0;
    while (i < kBatchBuckets.size() && inputs > kBatchBuckets[i]) ++i;
    ++batches.buckets[i];
    ++batches.batches;
    batches.inputs += inputs;
  }

  // One forward pass on version m (the dynamic batcher's batches, or one request without it).
  static Tensor forward(ServedModel& m, const Tensor& x) {
    std::lock_guard<std::mutex> lock(m.forward_mutex);
    return predict_probabilities(m.model, x);
  }

  // ---- request parsing ----

  static nlohmann::json parse_body(const std::string& text) {
    nlohmann::json body = nlohmann::json::parse(text, nullptr, false);
    if (body.is_discarded()) throw BadRequest{400, "malformed JSON body"};
    if (!body.is_object()) throw BadRequest{400, "the body must be a JSON object"};
    return body;
  }

  // The inputs of {"inputs": [[...], ...]} or {"input": [...]} as [N, input shape].
  Tensor parse_inputs(const nlohmann::json& body, const ServedModel& m) const {
    std::vector<const nlohmann::json*> rows;
    if (body.contains("inputs")) {
      const nlohmann::json& all = body["inputs"];
      if (!all.is_array()) throw BadRequest{400, "\"inputs\" must be a list of inputs"};
      if (all.empty()) throw BadRequest{400, "\"inputs\" is empty"};
      if (static_cast<int64_t>(all.size()) > options.max_inputs)
        throw BadRequest{413, "too many inputs: " + std::to_string(all.size()) + " (at most " +
                                  std::to_string(options.max_inputs) + " per request)"};
      for (const nlohmann::json& row : all) rows.push_back(&row);
    } else if (body.contains("input")) {
      rows.push_back(&body["input"]);
    } else {
      throw BadRequest{400, "the body needs \"inputs\" (a list of inputs) or \"input\" (one input)"};
    }
    Shape shape = m.input_shape;
    shape.insert(shape.begin(), static_cast<int64_t>(rows.size()));
    Tensor x = Tensor::empty(shape);
    float* out = x.data();
    for (size_t i = 0; i < rows.size(); ++i) {
      const nlohmann::json& row = *rows[i];
      if (!row.is_array() || static_cast<int64_t>(row.size()) != m.sample_numel)
        throw BadRequest{400, "input " + std::to_string(i) + " must be a flat list of " +
                                  std::to_string(m.sample_numel) + " numbers (model '" + m.spec + "' takes " +
                                  shape_to_string(m.input_shape) + ")" +
                                  (row.is_array() ? ", it has " + std::to_string(row.size()) : "")};
      for (size_t j = 0; j < row.size(); ++j) {
        const nlohmann::json& v = row[j];
        if (!v.is_number())
          throw BadRequest{400, "input " + std::to_string(i) + " value " + std::to_string(j) + " is not a number"};
        const double d = v.get<double>();
        if (!std::isfinite(d) || std::fabs(d) > 3.4e38)
          throw BadRequest{400, "input " + std::to_string(i) + " value " + std::to_string(j) + " is not finite"};
        *out++ = static_cast<float>(d);
      }
    }
    return x;
  }

  // The inputs of a predict body as [N, input shape]: the plain {"input": [...]} / {"inputs":
  // [[...], ...]} by the fast parser (fast_json.h), anything else (and every bad request) by
  // nlohmann and parse_inputs.
  Tensor parse_predict_inputs(const std::string& body, const ServedModel& m) const {
    thread_local std::vector<float> values;  // kept between requests: no allocation per request
    const int64_t rows = parse_inputs_fast(body, m.sample_numel, options.max_inputs, values);
    if (rows == 0) return parse_inputs(parse_body(body), m);
    Shape shape = m.input_shape;
    shape.insert(shape.begin(), rows);
    Tensor x = Tensor::empty(shape);
    std::copy(values.begin(), values.end(), x.data());
    return x;
  }

  // ---- handlers ----

  void predict(const httplib::Request& req, httplib::Response& res) {
    // Announced to the batcher before parsing: a batch waits (at most max_wait_us) for requests
    // being parsed; a request that fails to parse withdraws.
    struct Announcement {
      DynamicBatcher* batcher;
      explicit Announcement(DynamicBatcher* b) : batcher(b) {
        if (batcher) batcher->arrive();
      }
      ~Announcement() {
        if (batcher) batcher->leave();
      }
    } announced(batcher.get());
    std::shared_ptr<ServedModel> m = current();  // this request's version, whatever is swapped in
    Tensor x = parse_predict_inputs(req.body, *m);
    Tensor probs;
    if (announced.batcher) {
      announced.batcher = nullptr;  // submit consumes the announcement
      probs = batcher->submit(m, std::move(x));  // runs on m, whatever is swapped in meanwhile
    } else {
      probs = forward(*m, x);
      observe_batch(x.dim(0));
    }
    const int64_t n = probs.dim(0);
    predicted_samples += n;
    res.body = prediction_json(m->version, probs.data(), n, probs.dim(1));
    res.set_header("Content-Type", "application/json");
  }

  void feedback(const httplib::Request& req, httplib::Response& res) {
    const nlohmann::json body = parse_body(req.body);
    std::shared_ptr<ServedModel> m = current();
    const Tensor x = parse_inputs(body, *m);
    const int64_t n = x.dim(0);
    std::vector<int64_t> labels;
    if (body.contains("labels")) {
      if (!body["labels"].is_array()) throw BadRequest{400, "\"labels\" must be a list of class indices"};
      for (const nlohmann::json& l : body["labels"]) labels.push_back(l.is_number_integer() ? l.get<int64_t>() : -1);
      for (size_t i = 0; i < labels.size(); ++i)
        if (!body["labels"][i].is_number_integer())
          throw BadRequest{400, "label " + std::to_string(i) + " is not an integer"};
    } else if (body.contains("label") && body["label"].is_number_integer()) {
      labels.push_back(body["label"].get<int64_t>());
    } else {
      throw BadRequest{400, "the body needs \"labels\" (one class index per input)"};
    }
    if (static_cast<int64_t>(labels.size()) != n)
      throw BadRequest{400, std::to_string(n) + " inputs but " + std::to_string(labels.size()) + " labels"};
    for (size_t i = 0; i < labels.size(); ++i)
      if (labels[i] < 0 || labels[i] >= m->classes)
        throw BadRequest{400, "label " + std::to_string(i) + " is " + std::to_string(labels[i]) +
                                  ", not a class of model '" + m->spec + "' (0.." + std::to_string(m->classes - 1) +
                                  ")"};
    std::string csv;
    const int64_t d = m->sample_numel;
    for (int64_t i = 0; i < n; ++i) {
      csv += std::to_string(labels[static_cast<size_t>(i)]);
      for (int64_t j = 0; j < d; ++j) {
        csv += ',';
        append_number(csv, x.data()[i * d + j]);
      }
      csv += '\n';
    }
    int64_t pending_now = 0;
    {
      std::lock_guard<std::mutex> lock(feedback_mutex);
      if (pending_samples + n > options.max_pending)
        throw BadRequest{503, "the feedback queue is full (" + std::to_string(pending_samples) + " of " +
                                  std::to_string(options.max_pending) + " samples pending); retry later"};
      char name[64];
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
      std::snprintf(name, sizeof name, "fb-%020lld-%06lld.csv", static_cast<long long>(ns),
                    static_cast<long long>(feedback_seq++ % 1000000));
      const std::string path = feedback_dir + "/" + name;
      write_file_atomically(path, {ByteSpan{csv.data(), csv.size()}}, "serve");  // fsynced, dir too
      pending.push_back({path, n});
      pending_samples += n;
      pending_now = pending_samples;
    }
    feedback_samples += n;
    wake.notify_all();
    res.set_content(nlohmann::json{{"accepted", n}, {"pending", pending_now}}.dump(), "application/json");
  }

  // Runs `fn` for `route`: BadRequest -> its status and JSON error, any other exception -> 500;
  // counts the request and its latency.
  httplib::Server::Handler wrap(const std::string& route,
                                void (State::*fn)(const httplib::Request&, httplib::Response&)) {
    return [this, route, fn](const httplib::Request& req, httplib::Response& res) {
      const auto t0 = Clock::now();
      try {
        (this->*fn)(req, res);
      } catch (const BadRequest& e) {
        res.status = e.status;
        res.set_content(json_error(e.message), "application/json");
      } catch (const std::exception& e) {
        log(route + ": " + e.what());
        res.status = 500;
        res.set_content(json_error(e.what()), "application/json");
      }
      record(route, res.status, std::chrono::duration<double>(Clock::now() - t0).count());
    };
  }

  // ---- background threads ----

  void poll_loop() {
    while (!stopping) {
      {
        std::unique_lock<std::mutex> lock(feedback_mutex);
        wake.wait_for(lock, std::chrono::duration<double>(options.poll_seconds), [&] { return stopping.load(); });
      }
      if (stopping) break;
      try {
        const std::optional<ModelVersion> newest = newest_version(options.model_dir);
        if (newest) adopt(*newest);
      } catch (const std::exception& e) {
        log(std::string("polling ") + options.model_dir + ": " + e.what());
      }
    }
  }

  void retrain_loop() {
    // Lower this thread's priority (Linux: policy and nice are per thread); the loop threads of its
    // rounds (kernels/thread_pool.h: a pool per calling thread) are created by it and inherit them.
    const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
    if (options.retrain_priority == ServerOptions::RetrainPriority::idle) {
      sched_param param{};
      if (sched_setscheduler(tid, SCHED_IDLE, &param) != 0)
        log(std::string("could not run the retraining thread at idle priority: ") + std::strerror(errno));
    } else if (options.retrain_nice > 0) {
      errno = 0;
      const id_t who = static_cast<id_t>(tid);
      const int nice = getpriority(PRIO_PROCESS, who);  // -1 is a valid value: errno tells
      if (errno != 0 || setpriority(PRIO_PROCESS, who, std::min(19, nice + options.retrain_nice)) != 0)
        log(std::string("could not lower the retraining thread's priority: ") + std::strerror(errno));
    }
    // Per thread (a setting of this thread, kernels/thread_pool.h): the request threads keep theirs.
    // 0 leaves the process's default (every core, or OMP_NUM_THREADS).
    if (options.retrain_threads > 0) set_num_threads(options.retrain_threads);
    retrain_threads = num_threads();
    while (true) {
      std::vector<PendingFile> round_files;
      {
        std::unique_lock<std::mutex> lock(feedback_mutex);
        wake.wait(lock, [&] { return stopping || pending_samples >= options.retrain_every; });
        if (stopping) return;
        round_files = pending;
      }
      if (!run_round(round_files)) {  // failed: keep the feedback pending, retry later
        std::unique_lock<std::mutex> lock(feedback_mutex);
        wake.wait_for(lock, std::chrono::duration<double>(std::max(1.0, options.poll_seconds)),
                      [&] { return stopping.load(); });
      }
    }
  }

  // One round on `files`; returns false when it failed (nothing consumed).
  bool run_round(const std::vector<PendingFile>& files) {
    int64_t samples = 0;
    std::string chunk_csv;
    try {
      for (const PendingFile& f : files) {
        std::ifstream in(f.path, std::ios::binary);
        if (!in) throw Error("[serve] cannot read feedback file " + f.path);
        std::ostringstream text;
        text << in.rdbuf();
        chunk_csv += text.str();
        samples += f.samples;
      }
    } catch (const std::exception& e) {
      ++rounds_failed;
      log(std::string("retraining round not started: ") + e.what());
      return false;
    }
    const auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    const std::string chunk = rounds_dir + "/chunk-" + std::to_string(ns) + ".csv";
    retraining = true;
    log("retraining on " + std::to_string(samples) + " feedback samples (" + std::to_string(files.size()) +
        " files)");
    ServingRound round;
    try {
      write_file_atomically(chunk, {ByteSpan{chunk_csv.data(), chunk_csv.size()}}, "serve");
      round = retrain_model_dir(options.model_dir, chunk, options.max_regression);
    } catch (const std::exception& e) {
      retraining = false;
      std::error_code ec;
      fs::remove(chunk, ec);
      ++rounds_failed;
      log(std::string("retraining round failed (feedback kept pending): ") + e.what());
      return false;
    }
    std::error_code ec;
    fs::remove(chunk, ec);
    {
      std::lock_guard<std::mutex> lock(round_mutex);
      last_round = to_json(round);
      if (!round.refused) validation_accuracy[round.version] = round.new_validation_accuracy;
    }
    if (round.refused) {
      ++rounds_refused;
      log("round refused by the gate, keeping version " + std::to_string(round.base_version) + ": " + round.reason +
          "; its feedback moves to " + refused_dir);
      fs::create_directories(refused_dir, ec);
      for (const PendingFile& f : files) {
        fs::rename(f.path, refused_dir + "/" + fs::path(f.path).filename().string(), ec);
        if (ec) fs::remove(f.path, ec);
      }
    } else {
      ++rounds_run;
      for (const PendingFile& f : files) fs::remove(f.path, ec);
    }
    {
      std::lock_guard<std::mutex> lock(feedback_mutex);
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(files.size()));
      pending_samples -= samples;
    }
    if (!round.refused) {
      try {
        // (the poller may have swapped it in already)
        adopt(ModelVersion{round.version, options.model_dir + "/" + std::to_string(round.version)});
      } catch (const std::exception& e) {
        log("loading version " + std::to_string(round.version) + ": " + e.what());
      }
    }
    retraining = false;
    return true;
  }
};

Server::Server(ServerOptions options) : state_(std::make_unique<State>()) {
  State& s = *state_;
  if (options.model_dir.empty()) throw InvalidArgument("[serve] no model directory given");
  if (options.retrain_every < 0) throw InvalidArgument("[serve] retrain_every must be >= 0");
  if (options.max_regression < 0) throw InvalidArgument("[serve] max_regression must be >= 0");
  if (options.max_batch < 1) throw InvalidArgument("[serve] max_batch must be >= 1");
  if (options.max_wait_us < 0) throw InvalidArgument("[serve] max_wait_us must be >= 0");
  if (options.io_timeout_seconds < 1) throw InvalidArgument("[serve] io_timeout_seconds must be >= 1");
  if (options.max_pending < 1 || options.max_inputs < 1 || options.max_body_bytes < 1 || options.http_threads < 1 ||
      options.keep_alive_requests < 1)
    throw InvalidArgument(
        "[serve] max_pending, max_inputs, max_body_bytes, http_threads and keep_alive_requests must be positive");
  if (!(options.poll_seconds > 0)) throw InvalidArgument("[serve] poll_seconds must be positive");
  if (options.retrain_nice < 0 || options.retrain_nice > 19) throw InvalidArgument("[serve] retrain_nice must be in 0..19");
  if (options.retrain_threads < 0) throw InvalidArgument("[serve] retrain_threads must be >= 0 (0: every core)");
  if (options.retrain_every > options.max_pending)
    throw InvalidArgument("[serve] retrain_every is larger than max_pending: no round would ever start");
  s.options = std::move(options);
  const std::string& dir = s.options.model_dir;
  const std::optional<ModelVersion> newest = newest_version(dir);
  if (!newest)
    throw InvalidArgument("[serve] " + dir + " holds no model version: start it with nnr train --model-dir " + dir +
                          " or nnr retrain --model-dir " + dir + " --init FILE --memory-data SPEC");
  s.adopt(*newest);

  s.feedback_dir = dir + "/feedback";
  s.rounds_dir = s.feedback_dir + "/rounds";
  s.refused_dir = s.feedback_dir + "/refused";
  fs::create_directories(s.rounds_dir);
  for (const auto& entry : fs::directory_iterator(s.rounds_dir)) fs::remove_all(entry.path());  // a crashed round's
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(s.feedback_dir))
    if (entry.is_regular_file() && is_feedback_name(entry.path().filename().string()))
      names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());  // chronological
  for (const std::string& name : names) {
    const std::string path = s.feedback_dir + "/" + name;
    const int64_t n = count_lines(path);
    s.pending.push_back({path, n});
    s.pending_samples += n;
  }
  if (!names.empty())
    s.log("resuming with " + std::to_string(s.pending_samples) + " pending feedback samples in " +
          std::to_string(names.size()) + " files");
}

Server::~Server() { stop(); }

int Server::start(int port) {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.lifecycle_mutex);
  if (s.started) throw Error("[serve] the server was already started");
  if (port < 0 || port > 65535) throw InvalidArgument("[serve] port must be in 0..65535");
  s.started = true;

  httplib::Server& http = s.http;
  const int threads = s.options.http_threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which would let a second server bind
  // the same port and silently share its connections.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // Answers go out as two writes (headers, body): with Nagle's algorithm on, the body waits for
  // the client's delayed ACK of the headers (40 ms on Linux), which capped a keep-alive client at
  // about 25 requests per second per connection.
  http.set_tcp_nodelay(true);
  http.set_payload_max_length(s.options.max_body_bytes);
  http.set_read_timeout(s.options.io_timeout_seconds, 0);
  http.set_write_timeout(s.options.io_timeout_seconds, 0);
  http.set_keep_alive_timeout(s.options.io_timeout_seconds);
  http.set_keep_alive_max_count(static_cast<size_t>(s.options.keep_alive_requests));
  http.Post("/v1/predict", s.wrap("/v1/predict", &State::predict));
  http.Post("/v1/feedback", s.wrap("/v1/feedback", &State::feedback));
  State* st = &s;
  http.Get("/v1/health", [st](const httplib::Request&, httplib::Response& res) {
    const auto t0 = Clock::now();
    res.set_content(nlohmann::json{{"status", "ok"}, {"version", st->current()->version}}.dump(), "application/json");
    st->record("/v1/health", res.status, std::chrono::duration<double>(Clock::now() - t0).count());
  });
  http.Get("/v1/model", [this, st](const httplib::Request&, httplib::Response& res) {
    const auto t0 = Clock::now();
    res.set_content(model_info().dump(), "application/json");
    st->record("/v1/model", res.status, std::chrono::duration<double>(Clock::now() - t0).count());
  });
  http.Get("/metrics", [this, st](const httplib::Request&, httplib::Response& res) {
    const auto t0 = Clock::now();
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
    st->record("/metrics", res.status, std::chrono::duration<double>(Clock::now() - t0).count());
  });
  // Responses httplib makes itself (unknown route 404, body over the limit 413, unparsable
  // request 400) get a JSON error too; handlers' own errors already have their body.
  http.set_error_handler(httplib::Server::HandlerWithResponse([st](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    // httplib caps form-encoded bodies (curl's default for --data) at 8192 bytes whatever the
    // body limit: say so, or a user sending JSON without its content type is left guessing.
    const bool form = req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0;
    // A body shorter than its Content-Length: the client stalled past the read timeout (a slow
    // client holds a request thread for at most io_timeout_seconds).
    const std::string length = req.get_header_value("Content-Length");
    if (res.status == 400 && !length.empty() && std::all_of(length.begin(), length.end(), ::isdigit) &&
        length.size() < 19 && req.body.size() < std::stoull(length)) {
      res.status = 408;
      res.set_content(json_error("the request body did not arrive within " +
                                 std::to_string(st->options.io_timeout_seconds) + " s (" +
                                 std::to_string(req.body.size()) + " of " + length + " bytes came)"),
                      "application/json");
      st->record("other", res.status, -1.0);
      return httplib::Server::HandlerResponse::Handled;
    }
    std::string message = res.status == 404   ? "no route " + req.method + " " + req.path
                          : res.status == 413 && form
                              ? "request body sent as application/x-www-form-urlencoded is limited to 8192 bytes "
                                "by the HTTP library; send it with Content-Type: application/json"
                          : res.status == 413 ? "request body over the limit of " +
                                                    std::to_string(st->options.max_body_bytes) + " bytes"
                                              : "bad request (HTTP " + std::to_string(res.status) + ")";
    res.set_content(json_error(message), "application/json");
    st->record("other", res.status, -1.0);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([st](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content(json_error("internal error"), "application/json");
    st->record("other", 500, -1.0);
  });

  const int bound = port == 0 ? http.bind_to_any_port(s.options.host) : (http.bind_to_port(s.options.host, port) ? port : -1);
  if (bound <= 0)
    throw Error("[serve] cannot listen on " + s.options.host + ":" + std::to_string(port) +
                " (address in use or not available)");
  s.port = bound;
  if (s.options.max_batch > 1)
    s.batcher = std::make_unique<DynamicBatcher>(
        s.options.max_batch, s.options.max_wait_us,
        [](const std::shared_ptr<void>& key, const Tensor& x) {
          return State::forward(*std::static_pointer_cast<ServedModel>(key), x);
        },
        [st](int64_t inputs) { st->observe_batch(inputs); });
  s.http_thread = std::thread([st] { st->http.listen_after_bind(); });
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!http.is_running() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s.poll_thread = std::thread([st] { st->poll_loop(); });
  if (s.options.retrain_every > 0) s.retrain_thread = std::thread([st] { st->retrain_loop(); });
  s.log("serving " + s.options.model_dir + " version " + std::to_string(served_version()) + " on http://" +
        s.options.host + ":" + std::to_string(bound));
  return bound;
}

void Server::stop() {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.lifecycle_mutex);
  if (!s.started || s.stopping) return;
  {
    std::lock_guard<std::mutex> fl(s.feedback_mutex);
    s.stopping = true;
  }
  s.wake.notify_all();
  // is_running() turns true inside listen_after_bind; stop() before that would be lost.
  while (s.http_thread.joinable() && !s.http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s.http.stop();  // closes the listening socket; listen_after_bind drains the worker pool
  if (s.http_thread.joinable()) s.http_thread.join();
  if (s.batcher) s.batcher->stop();  // after the request threads: their queued inputs are answered
  if (s.poll_thread.joinable()) s.poll_thread.join();
  if (s.retrain_thread.joinable()) s.retrain_thread.join();
  s.log("stopped");
}

int Server::port() const { return state_->port; }

int64_t Server::served_version() const { return state_->current()->version; }

int64_t Server::pending_feedback() const {
  std::lock_guard<std::mutex> lock(state_->feedback_mutex);
  return state_->pending_samples;
}

nlohmann::json Server::model_info() const {
  const State& s = *state_;
  const std::shared_ptr<ServedModel> m = s.current();
  nlohmann::json info{{"version", m->version},
                      {"model_spec", m->spec},
                      {"input_shape", m->input_shape},
                      {"sample_numel", m->sample_numel},
                      {"classes", m->classes},
                      {"validation_accuracy", nullptr},
                      {"rounds_run", s.rounds_run.load()},
                      {"rounds_refused", s.rounds_refused.load()},
                      {"rounds_failed", s.rounds_failed.load()},
                      {"retraining", s.retraining.load()},
                      {"retrain_every", s.options.retrain_every},
                      {"retrain_threads", s.retrain_threads.load()},
                      {"retrain_priority", s.options.retrain_priority == ServerOptions::RetrainPriority::idle
                                               ? "idle"
                                               : "nice " + std::to_string(s.options.retrain_nice)},
                      {"max_batch", s.options.max_batch},
                      {"max_wait_us", s.options.max_wait_us},
                      {"max_regression", s.options.max_regression},
                      {"pending_feedback", pending_feedback()}};
  std::lock_guard<std::mutex> lock(s.round_mutex);
  const auto known = s.validation_accuracy.find(m->version);
  if (known != s.validation_accuracy.end()) info["validation_accuracy"] = known->second;
  if (!s.last_round.is_null()) info["last_round"] = s.last_round;
  return info;
}

std::string Server::metrics_text() const {
  const State& s = *state_;
  std::string out;
  char line[256];
  out += "# HELP nnr_http_requests_total HTTP requests by route and status code.\n"
         "# TYPE nnr_http_requests_total counter\n";
  std::map<std::string, RouteMetrics> routes;
  {
    std::lock_guard<std::mutex> lock(s.metrics_mutex);
    routes = s.routes;
  }
  for (const auto& [route, m] : routes)
    for (const auto& [status, count] : m.by_status) {
      std::snprintf(line, sizeof line, "nnr_http_requests_total{route=\"%s\",code=\"%d\"} %lld\n", route.c_str(),
                    status, static_cast<long long>(count));
      out += line;
    }
  out += "# HELP nnr_http_errors_total HTTP requests answered with a 4xx or 5xx status, by route.\n"
         "# TYPE nnr_http_errors_total counter\n";
  for (const auto& [route, m] : routes) {
    std::snprintf(line, sizeof line, "nnr_http_errors_total{route=\"%s\"} %lld\n", route.c_str(),
                  static_cast<long long>(m.errors));
    out += line;
  }
  out += "# HELP nnr_http_request_duration_seconds Time spent handling a request, by route.\n"
         "# TYPE nnr_http_request_duration_seconds histogram\n";
  for (const auto& [route, m] : routes) {
    if (m.observations == 0) continue;
    int64_t cumulative = 0;
    for (size_t i = 0; i < kLatencyBuckets.size(); ++i) {
      cumulative += m.buckets[i];
      std::snprintf(line, sizeof line, "nnr_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %lld\n",
                    route.c_str(), kLatencyBuckets[i], static_cast<long long>(cumulative));
      out += line;
    }
    std::snprintf(line, sizeof line,
                  "nnr_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %lld\n"
                  "nnr_http_request_duration_seconds_sum{route=\"%s\"} %.9g\n"
                  "nnr_http_request_duration_seconds_count{route=\"%s\"} %lld\n",
                  route.c_str(), static_cast<long long>(m.observations), route.c_str(), m.seconds, route.c_str(),
                  static_cast<long long>(m.observations));
    out += line;
  }
  BatchMetrics batches;
  {
    std::lock_guard<std::mutex> lock(s.metrics_mutex);
    batches = s.batches;
  }
  out += "# HELP nnr_predict_batch_size Inputs per forward pass of /v1/predict (the dynamic batcher's batches).\n"
         "# TYPE nnr_predict_batch_size histogram\n";
  int64_t cumulative = 0;
  for (size_t i = 0; i < kBatchBuckets.size(); ++i) {
    cumulative += batches.buckets[i];
    std::snprintf(line, sizeof line, "nnr_predict_batch_size_bucket{le=\"%lld\"} %lld\n",
                  static_cast<long long>(kBatchBuckets[i]), static_cast<long long>(cumulative));
    out += line;
  }
  std::snprintf(line, sizeof line,
                "nnr_predict_batch_size_bucket{le=\"+Inf\"} %lld\nnnr_predict_batch_size_sum %lld\n"
                "nnr_predict_batch_size_count %lld\n",
                static_cast<long long>(batches.batches), static_cast<long long>(batches.inputs),
                static_cast<long long>(batches.batches));
  out += line;
  const auto gauge = [&out, &line](const char* name, const char* type, const char* help, long long value) {
    std::snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", name, help, name, type, name, value);
    out += line;
  };
  gauge("nnr_served_version", "gauge", "The model version answering predictions.", s.current()->version);
  gauge("nnr_retrain_rounds_total", "counter", "Retraining rounds that wrote a version.", s.rounds_run.load());
  gauge("nnr_retrain_rounds_refused_total", "counter", "Retraining rounds refused by the regression gate.",
        s.rounds_refused.load());
  gauge("nnr_retrain_rounds_failed_total", "counter", "Retraining rounds that failed (feedback kept pending).",
        s.rounds_failed.load());
  gauge("nnr_model_versions_loaded_total", "counter", "Versions swapped in after the first.",
        s.versions_loaded.load() - 1);
  gauge("nnr_feedback_pending_samples", "gauge", "Labelled feedback samples waiting for a round.",
        pending_feedback());
  gauge("nnr_feedback_samples_total", "counter", "Labelled feedback samples accepted.", s.feedback_samples.load());
  gauge("nnr_predicted_samples_total", "counter", "Inputs predicted.", s.predicted_samples.load());
  return out;
}

}  // namespace nnr::serve
