// nnr serve: answer predictions over HTTP from a versioned model directory while it is retrained
// in the background on labelled feedback (the server itself is apps/serve/server.h).
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>

#include <pthread.h>

#include "apps/nnr/commands.h"
#include "apps/serve/server.h"
#include "engine/core/error.h"
#include "engine/core/threads.h"

namespace nnr::cli {
namespace {

struct ServeFlags {
  serve::ServerOptions options;
  int port = 8080;
  int threads = 0;
  std::string retrain_priority = "idle";
};

void run_serve(ServeFlags& f) {
  set_num_threads(f.threads);
  f.options.retrain_priority = f.retrain_priority == "idle" ? serve::ServerOptions::RetrainPriority::idle
                                                            : serve::ServerOptions::RetrainPriority::nice;
  // SIGINT/SIGTERM are blocked before any thread starts (threads inherit the mask) and taken here
  // with sigwait, so the stop runs on this thread, not in a signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  serve::Server server(f.options);
  const int port = server.start(f.port);
  std::fprintf(stderr, "nnr serve: listening on http://%s:%d (version %lld); SIGINT or SIGTERM stops\n",
               f.options.host.c_str(), port, static_cast<long long>(server.served_version()));
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "nnr serve: %s, finishing in-flight requests\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  server.stop();
}

}  // namespace

Command add_serve(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "Answer predictions over HTTP from a model directory while it retrains on feedback in the background");
  cmd->footer(
      "\nHTTP/1.1, JSON bodies:\n"
      "  POST /v1/predict   {\"inputs\": [[x, ...], ...]} or {\"input\": [x, ...]}, each a flat list of the model's\n"
      "                     input values -> {\"version\": n, \"labels\": [...], \"probabilities\": [[...], ...]}\n"
      "  POST /v1/feedback  {\"inputs\": [[...], ...], \"labels\": [...]} -> {\"accepted\": k, \"pending\": p};\n"
      "                     each request is written (fsynced) to DIR/feedback/fb-*.csv, label in column 0\n"
      "  GET  /v1/health    {\"status\": \"ok\", \"version\": n}\n"
      "  GET  /v1/model     served version, spec, validation accuracy (when known), rounds run/refused/failed,\n"
      "                     pending feedback, the last round\n"
      "  GET  /metrics      Prometheus text: requests and errors by route, latency histograms, predict batch\n"
      "                     sizes, served version, rounds run/refused/failed, pending feedback\n"
      "Bad requests get a 4xx (a client stalling past --io-timeout 408, a full feedback queue 503) and\n"
      "{\"error\": \"...\"}.\n"
      "With --retrain-every N, once N feedback samples are pending a background round (as `nnr retrain`)\n"
      "trains on them and, unless the regression gate refuses it, writes version n+1, which is swapped in\n"
      "without pausing predictions; a refused round's feedback moves to DIR/feedback/refused/. Versions\n"
      "written by another process (nnr retrain) are picked up within --poll-seconds. A restart serves the\n"
      "newest version and keeps the pending feedback. SIGINT/SIGTERM: stop accepting, finish in-flight\n"
      "requests (and a running round), exit 0.");
  cmd->add_option("--model-dir", f->options.model_dir, "The versioned model directory (DIR/<n>/)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--port", f->port, "TCP port (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
  cmd->add_option("--host", f->options.host, "Address to listen on (0.0.0.0: every interface)")->capture_default_str();
  cmd->add_option("--retrain-every", f->options.retrain_every,
                  "Retrain once this many feedback samples are pending (0: never; feedback only accumulates)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--max-regression", f->options.max_regression,
                  "Refuse a round if validation accuracy drops more than this many points")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--max-pending", f->options.max_pending, "Feedback samples held at most (then 503)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--max-inputs", f->options.max_inputs, "Inputs per request at most (then 413)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", f->options.max_body_bytes, "Request bodies over this get 413")
      ->check(CLI::Range(size_t{1}, size_t{1} << 34))
      ->capture_default_str();
  cmd->add_option("--retrain-priority", f->retrain_priority,
                  "How background retraining rounds share the cores with requests. idle: a round runs only on "
                  "cycles requests leave and a request preempts it at once (Linux SCHED_IDLE; predict p99 during "
                  "rounds about 10 % lower than nice, half as many rounds under a saturating load: "
                  "bench/serve_load.sh). nice: the round's threads at --retrain-nice")
      ->check(CLI::IsMember({"idle", "nice"}))
      ->capture_default_str();
  cmd->add_option("--retrain-nice", f->options.retrain_nice,
                  "With --retrain-priority nice: added to the nice value of the round's threads; above 0 "
                  "predictions come first (0: the same priority as requests). 10: predict p99 during rounds about "
                  "25 % lower than with 0, rounds slower")
      ->check(CLI::Range(0, 19))
      ->capture_default_str();
  cmd->add_option("--retrain-threads", f->options.retrain_threads,
                  "CPU threads of a background retraining round (0: every core; on 2 cores, 1 did not lower the "
                  "predict p99 during rounds: bench/results/serve-retrain-threads.json)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_option("--poll-seconds", f->options.poll_seconds, "How often DIR is checked for new versions")
      ->check(CLI::Range(0.01, 3600.0))
      ->capture_default_str();
  cmd->add_option("--http-threads", f->options.http_threads,
                  "Request worker threads; each serves one connection while it stays open, so this many "
                  "connections are served at once and later ones wait")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--keep-alive-requests", f->options.keep_alive_requests,
                  "Requests one keep-alive connection may make before the server closes it (the client reconnects); "
                  "a connection holds a request thread for as long as it stays open")
      ->check(CLI::Range(1, 1 << 30))
      ->capture_default_str();
  cmd->add_option("--max-batch", f->options.max_batch,
                  "Dynamic batching: concurrent predict requests share one forward pass of at most this many "
                  "inputs (1: off, each request runs its own). Off by default, by measurement: on the 2-core dev "
                  "machine (mlp:784-256-256-10, batch-1 requests, wrk with 16 connections, bench/serve_load.sh) "
                  "--max-batch 32 changed throughput by -12 % to +24 % across runs, no consistent gain: a "
                  "batch-1 forward pass is a small part of a request's cost (HTTP, JSON), so sharing it saves "
                  "little. Worth trying for models whose forward pass dominates a request")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--max-wait-us", f->options.max_wait_us,
                  "Dynamic batching: how long a batch waits for requests still being parsed after its first "
                  "(microseconds)")
      ->check(CLI::Range(int64_t{0}, int64_t{10000000}))
      ->capture_default_str();
  cmd->add_option("--io-timeout", f->options.io_timeout_seconds,
                  "Seconds a client may take to send a request (then 408) or read an answer; also the idle "
                  "keep-alive limit")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->add_option("--threads", f->threads, "CPU threads for predictions and retraining (0: all cores)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  return [f] { run_serve(*f); };
}

}  // namespace nnr::cli
