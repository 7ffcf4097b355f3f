#pragma once
// nnr serve's dynamic batcher (the idea of Triton's dynamic batcher): concurrent prediction
// requests hand their inputs to one batcher thread and wait; the batcher concatenates the queued
// requests that share a key (the served version they were parsed against) into one batch of at
// most max_batch inputs, runs one forward pass on it, and answers each request with its rows.
//
// When a batch starts: once it holds max_batch inputs (or the next queued request of its key would
// not fit), once max_wait_us have passed since its first request was queued, or as soon as every
// request that announced itself with arrive() is queued or being answered, so no further request
// of this moment is on its way (a lone request does not wait for company that is not coming).
// A request larger than max_batch is a batch of its own. A batch holds requests of one key only:
// a version swap never mixes versions in a forward pass, and each request is answered by the
// version it was parsed against.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/core/tensor.h"

namespace nnr::serve {

class DynamicBatcher {
 public:
  // run(key, x): x holds the concatenated inputs of one batch, [n, ...], all submitted with `key`;
  // returns [n, k]. Called on the batcher thread only, one batch at a time.
  using RunFn = std::function<Tensor(const std::shared_ptr<void>& key, const Tensor& x)>;
  // Called after every batch with its size in inputs (on the batcher thread).
  using ObserveFn = std::function<void(int64_t inputs)>;

  DynamicBatcher(int64_t max_batch, int64_t max_wait_us, RunFn run, ObserveFn observe = {});
  ~DynamicBatcher();  // stop()
  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // A request that will submit() soon, or give up with leave() before it: while announced
  // requests are still being parsed, a batch waits for them (at most max_wait_us).
  void arrive();
  void leave();
  // Queues x ([n, ...], n >= 1) under `key`, waits for its batch and returns its rows of run's
  // output [n, k]; rethrows what run threw. Every submit() follows its own arrive(), which it
  // consumes (also when it throws).
  Tensor submit(std::shared_ptr<void> key, Tensor x);
  // Runs what is queued, then joins the batcher thread; later submits throw nnr::Error. Idempotent.
  void stop();

  int64_t max_batch() const { return max_batch_; }
  // Requests queued and not yet in a batch.
  int64_t queued() const;

 private:
  struct Item {
    std::shared_ptr<void> key;
    Tensor x;
    std::promise<Tensor> answer;
    std::chrono::steady_clock::time_point queued;
  };
  void loop();
  void run_batch(std::vector<std::unique_ptr<Item>>& batch);

  const int64_t max_batch_;
  const std::chrono::microseconds max_wait_;
  RunFn run_;
  ObserveFn observe_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::unique_ptr<Item>> queue_;
  int64_t announced_ = 0;  // arrive() - leave()
  int64_t running_ = 0;    // requests in the batch being run
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace nnr::serve
