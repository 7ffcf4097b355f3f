// nnr serve's dynamic batcher (see batcher.h).
#include "apps/serve/batcher.h"

#include <algorithm>

#include "engine/core/error.h"

namespace nnr::serve {

DynamicBatcher::DynamicBatcher(int64_t max_batch, int64_t max_wait_us, RunFn run, ObserveFn observe)
    : max_batch_(max_batch), max_wait_(max_wait_us), run_(std::move(run)), observe_(std::move(observe)) {
  if (max_batch < 1) throw InvalidArgument("[serve] max_batch must be >= 1");
  if (max_wait_us < 0) throw InvalidArgument("[serve] max_wait_us must be >= 0");
  thread_ = std::thread([this] { loop(); });
}

DynamicBatcher::~DynamicBatcher() { stop(); }

void DynamicBatcher::arrive() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++announced_;
}

void DynamicBatcher::leave() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --announced_;
  }
  changed_.notify_all();
}

Tensor DynamicBatcher::submit(std::shared_ptr<void> key, Tensor x) {
  if (x.rank() < 1 || x.dim(0) < 1) {
    leave();
    throw InvalidArgument("[serve] a batched request needs at least one input");
  }
  auto item = std::make_unique<Item>();
  item->key = std::move(key);
  item->x = std::move(x);
  std::future<Tensor> answer = item->answer.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) {
      --announced_;
      throw Error("[serve] the server is stopping");
    }
    item->queued = std::chrono::steady_clock::now();
    queue_.push_back(std::move(item));
  }
  changed_.notify_all();
  return answer.get();
}

int64_t DynamicBatcher::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(queue_.size());
}

void DynamicBatcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DynamicBatcher::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    const void* key = queue_.front()->key.get();
    const auto deadline = queue_.front()->queued + max_wait_;
    std::vector<size_t> take;  // indices into queue_ of this batch, in order
    bool expired = false;
    while (true) {
      take.clear();
      int64_t inputs = 0;
      bool full = false;
      for (size_t i = 0; i < queue_.size(); ++i) {
        if (queue_[i]->key.get() != key) continue;
        const int64_t n = queue_[i]->x.dim(0);
        if (!take.empty() && inputs + n > max_batch_) {
          full = true;
          break;
        }
        take.push_back(i);
        inputs += n;
      }
      full = full || inputs >= max_batch_;
      // Every announced request is queued or being answered: nothing else is on its way.
      const bool none_coming = announced_ - running_ - static_cast<int64_t>(queue_.size()) <= 0;
      if (full || none_coming || stopping_ || expired) break;
      // (after a timeout the loop collects once more: requests may have come with the wake-up)
      expired = changed_.wait_until(lock, deadline) == std::cv_status::timeout;
    }
    std::vector<std::unique_ptr<Item>> batch;
    for (size_t i : take) batch.push_back(std::move(queue_[i]));
    size_t kept = 0;
    for (size_t i = 0; i < queue_.size(); ++i)
      if (queue_[i]) queue_[kept++] = std::move(queue_[i]);
    queue_.resize(kept);
    running_ = static_cast<int64_t>(batch.size());
    lock.unlock();
    run_batch(batch);
    lock.lock();
    announced_ -= running_;  // their submit() consumed their arrive()
    running_ = 0;
  }
}

void DynamicBatcher::run_batch(std::vector<std::unique_ptr<Item>>& batch) {
  try {
    int64_t n = 0;
    for (const auto& item : batch) n += item->x.dim(0);
    Tensor out;
    if (batch.size() == 1) {
      out = run_(batch[0]->key, batch[0]->x);
    } else {
      Shape shape = batch[0]->x.shape();
      shape[0] = n;
      Tensor x = Tensor::empty(shape);
      float* dst = x.data();
      for (const auto& item : batch) dst = std::copy(item->x.data(), item->x.data() + item->x.numel(), dst);
      out = run_(batch[0]->key, x);
    }
    if (out.rank() != 2 || out.dim(0) != n) throw Error("[serve] a batch's output does not have one row per input");
    if (observe_) observe_(n);
    if (batch.size() == 1) {
      batch[0]->answer.set_value(std::move(out));
      return;
    }
    const int64_t k = out.dim(1);
    int64_t row = 0;
    for (auto& item : batch) {
      const int64_t rows = item->x.dim(0);
      Tensor mine = Tensor::empty({rows, k});
      std::copy(out.data() + row * k, out.data() + (row + rows) * k, mine.data());
      row += rows;
      item->answer.set_value(std::move(mine));
    }
  } catch (...) {
    const std::exception_ptr e = std::current_exception();
    for (auto& item : batch) {
      try {
        item->answer.set_exception(e);
      } catch (const std::future_error&) {  // already answered
      }
    }
  }
}

}  // namespace nnr::serve
