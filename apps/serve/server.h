#pragma once
// nnr serve's library side: an HTTP/1.1 JSON server (cpp-httplib) that answers predictions from
// the newest version of a versioned model directory (apps/trainer/model_dir.h) while the model is
// retrained in the background on the labelled feedback it receives.
//
//   POST /v1/predict   {"inputs": [[f, ...], ...]} or {"input": [f, ...]}, each input a flat list of
//                      the model's sample_numel numbers
//                      -> {"version": n, "labels": [...], "probabilities": [[...], ...]}
//   POST /v1/feedback  {"inputs": [[...], ...], "labels": [...]} (or "input" / "label")
//                      -> {"accepted": k, "pending": p}; written durably (fsynced) to
//                      DIR/feedback/fb-<time>-<seq>.csv (label in column 0, nnr's CSV spec) before
//                      the answer, so a restart loses none
//   GET  /v1/health    {"status": "ok", "version": n}
//   GET  /v1/model     served version, spec, input shape, classes, validation accuracy (when this
//                      server wrote the version), rounds run / refused / failed, pending feedback
//   GET  /metrics      Prometheus text: requests and errors by route, a latency histogram per
//                      route, a histogram of predict batch sizes, served version, rounds run /
//                      refused / failed, pending feedback
// A predict body of the plain shape ({"input": [...]} or {"inputs": [[...], ...]}, nothing else) is
// read by a fast parser without a DOM and the answer written directly (apps/serve/fast_json.h);
// any other body goes through nlohmann, which words every bad request's error.
// Bad requests (malformed JSON, wrong shape, non-numeric or non-finite values, bad labels, too
// many inputs, a body over the limit, an unknown route) get a 4xx and {"error": "..."}; a full
// feedback queue gets 503.
//
// Dynamic batching (max_batch > 1; apps/serve/batcher.h): concurrent predict requests are parsed
// on their request threads, then queued to one batcher thread, which runs the queued requests of
// one version (up to max_batch inputs, waiting at most max_wait_us after the first while other
// requests are still being parsed) as one forward pass and answers each with its rows and that
// version. With max_batch = 1 every request runs its own forward pass on its request thread.
//
// Versions: every request holds a std::shared_ptr to the version it started with; a new version
// is loaded off the request path and swapped in under a mutex. A served version's Sequential is
// guarded by its own mutex: Sequential::forward is not thread-safe (every Layer::forward adds to
// its non-atomic FLOP counters, Layer::counts_), so concurrent predictions on one version take
// turns; a copy per request thread would cost a model's memory per thread for small models'
// microseconds.
//
// Background threads: a poller picks up versions written by another process (`nnr retrain`) with
// newest_version(DIR) every poll interval; with retrain_every = N, once N feedback samples are
// pending a retraining thread concatenates the pending files into one chunk
// (DIR/feedback/rounds/chunk-*.csv), runs retrain_model_dir(DIR, chunk, max_regression) (which
// restores its own copy from disk), and swaps in the version it writes. The round's feedback files
// are then deleted; a round refused by the gate moves them to DIR/feedback/refused/ (logged and
// counted); a round that fails (e.g. another process holds DIR/.lock) keeps them pending and is
// retried after the poll interval. A crash between a written version and the deletion retrains
// those samples once more (at-least-once).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace nnr::serve {

struct ServerOptions {
  std::string model_dir;             // DIR, holding at least one version
  std::string host = "127.0.0.1";    // address to bind
  int64_t retrain_every = 0;         // retrain once this many feedback samples are pending; 0: never
  double max_regression = 1.0;       // the regression gate of every round (points)
  int64_t max_pending = 100000;      // feedback samples held at most (then 503)
  int64_t max_inputs = 4096;         // inputs per request at most
  size_t max_body_bytes = 16u << 20; // request bodies over this get 413
  double poll_seconds = 1.0;         // how often DIR is checked for versions written elsewhere
  // How the retraining thread and the loop threads it starts share the cores with the request
  // threads. idle (Linux SCHED_IDLE): a round runs only on cycles the requests leave, and a waking
  // request thread preempts it at once, where at nice +10 it may wait for the round's time slice.
  // bench/serve_load.sh on the 2-core dev machine, 3 alternated runs each: predict p99 during
  // back-to-back rounds over idle p99 median 2.03 (1.86-2.06) against 2.22 (2.16-2.28) at nice
  // +10, with about half as many rounds in the window (3-6 against 9-10) under a saturating load.
  enum class RetrainPriority { idle, nice };
  RetrainPriority retrain_priority = RetrainPriority::idle;
  // With retrain_priority nice: added (0..19, up to nice 19) to the nice value of the retraining thread and of the loop
  // threads it starts: a round competes with the request threads for the cores; at +10 it gets
  // about a tenth of a saturated core (and every idle cycle). bench/serve_load.sh on the shared
  // 2-core dev machine (load ~8): predict p99 during back-to-back rounds 15.7 and 18.5 ms at +10,
  // 21.4, 21.8 and 23.8 ms at 0 (idle p99 4-6 ms), with 6-9 rounds instead of 12 in 8 s.
  int retrain_nice = 10;
  // CPU threads of a retraining round; 0: every core. One fewer than the cores did not lower the
  // predict p99 during rounds on the 2-core dev machine (median p99 ratio 2.40 against 2.11 with a
  // round on both cores, at nice +10 either way; bench/results/serve-retrain-threads.json).
  int retrain_threads = 0;
  // cpp-httplib serves one connection per worker thread for as long as it stays open: at most
  // http_threads connections are served at once, later ones wait for a worker. A keep-alive
  // connection is closed after keep_alive_requests requests (httplib's default is 5: a reconnect
  // every 5 requests cost ~15 % of throughput in bench/serve_load.sh).
  int http_threads = 32;             // request worker threads
  int keep_alive_requests = 100;     // requests one keep-alive connection may make before it is closed
  int64_t max_batch = 1;             // dynamic batching: inputs per forward pass at most; 1: off
  int64_t max_wait_us = 500;         // how long a batch waits for more requests after its first
  int io_timeout_seconds = 5;        // a client slower than this to send a request or read an answer is dropped
  std::function<void(const std::string&)> log;  // one line per event; default: stderr
};

class Server {
 public:
  // Loads DIR's newest version and the pending feedback files; throws nnr::InvalidArgument (a
  // usage error, exit 2 as for nnr retrain) when DIR holds no version or an option is bad.
  explicit Server(ServerOptions options);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port (0: a free ephemeral port), starts the request, poll and retraining threads,
  // and returns the bound port once the server accepts connections. Throws nnr::Error when the
  // port cannot be bound. A Server starts at most once.
  int start(int port);
  // Stops accepting, lets in-flight requests (and a running retraining round) finish, joins every
  // thread. Idempotent; safe to call from any thread except a request handler.
  void stop();

  int port() const;
  int64_t served_version() const;
  int64_t pending_feedback() const;
  // What GET /v1/model answers.
  nlohmann::json model_info() const;
  // What GET /metrics answers.
  std::string metrics_text() const;

  struct State;  // defined in server.cpp

 private:
  std::unique_ptr<State> state_;
};

}  // namespace nnr::serve
