// nnr serve's dynamic batcher (apps/serve/batcher.h) on its own: which requests share a batch,
// that a batch holds one key only, that every request gets its own rows, errors and stop().
// Every wait bound here is long (60 s): a batch that starts does so because it is full or nothing
// more is coming, never because a timer ran out, so the batch sizes are exact on a loaded machine.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "apps/serve/batcher.h"
#include "engine/core/error.h"

using namespace nnr;
using nnr::serve::DynamicBatcher;

namespace {

constexpr int64_t kLong = 60 * 1000 * 1000;  // 60 s in microseconds

// Records each batch's key and size; answers row i of x with [x_i, 10 * x_i].
struct Recorder {
  std::mutex mutex;
  std::vector<std::pair<const void*, int64_t>> batches;
  DynamicBatcher::RunFn run() {
    return [this](const std::shared_ptr<void>& key, const Tensor& x) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        batches.emplace_back(key.get(), x.dim(0));
      }
      Tensor out = Tensor::empty({x.dim(0), 2});
      for (int64_t i = 0; i < x.dim(0); ++i) {
        out.data()[2 * i] = x.data()[i];
        out.data()[2 * i + 1] = 10 * x.data()[i];
      }
      return out;
    };
  }
  std::vector<int64_t> sizes() {
    std::lock_guard<std::mutex> lock(mutex);
    std::vector<int64_t> s;
    for (const auto& b : batches) s.push_back(b.second);
    std::sort(s.begin(), s.end());
    return s;
  }
};

Tensor rows(std::vector<float> values) {
  return Tensor::from_vector({static_cast<int64_t>(values.size()), 1}, values);
}

// Submits `values` as one request from a new thread; the answer lands in `out`.
std::thread submit_async(DynamicBatcher& b, std::shared_ptr<void> key, std::vector<float> values, Tensor& out) {
  return std::thread([&b, key, values, &out] { out = b.submit(key, rows(values)); });
}

void check_answer(const Tensor& out, const std::vector<float>& values) {
  REQUIRE(out.rank() == 2);
  REQUIRE(out.dim(0) == static_cast<int64_t>(values.size()));
  REQUIRE(out.dim(1) == 2);
  for (size_t i = 0; i < values.size(); ++i) {
    CHECK(out.data()[2 * i] == values[i]);
    CHECK(out.data()[2 * i + 1] == 10 * values[i]);
  }
}

}  // namespace

TEST_CASE("requests announced together share one batch, and each gets its own rows back") {
  Recorder rec;
  std::vector<int64_t> observed;
  DynamicBatcher b(8, kLong, rec.run(), [&](int64_t n) { observed.push_back(n); });
  const auto key = std::make_shared<int>(1);
  for (int i = 0; i < 4; ++i) b.arrive();
  std::vector<Tensor> out(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.push_back(submit_async(b, key, {float(i), float(i) + 0.5f}, out[i]));
  for (auto& t : threads) t.join();
  CHECK(rec.sizes() == std::vector<int64_t>{8});
  CHECK(observed == std::vector<int64_t>{8});
  for (int i = 0; i < 4; ++i) check_answer(out[i], {float(i), float(i) + 0.5f});
}

TEST_CASE("a batch stops at max_batch inputs, and a request larger than max_batch is a batch of its own") {
  Recorder rec;
  DynamicBatcher b(3, kLong, rec.run());
  const auto key = std::make_shared<int>(1);
  SECTION("four requests of one input: 3 + 1") {
    for (int i = 0; i < 4; ++i) b.arrive();
    std::vector<Tensor> out(4);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) threads.push_back(submit_async(b, key, {float(i)}, out[i]));
    for (auto& t : threads) t.join();
    CHECK(rec.sizes() == std::vector<int64_t>{1, 3});
    for (int i = 0; i < 4; ++i) check_answer(out[i], {float(i)});
  }
  SECTION("one request of five inputs") {
    b.arrive();
    Tensor out = b.submit(key, rows({1, 2, 3, 4, 5}));
    CHECK(rec.sizes() == std::vector<int64_t>{5});
    check_answer(out, {1, 2, 3, 4, 5});
  }
}

TEST_CASE("a batch holds the requests of one key (one model version) only") {
  Recorder rec;
  DynamicBatcher b(16, kLong, rec.run());
  const auto v1 = std::make_shared<int>(1), v2 = std::make_shared<int>(2);
  for (int i = 0; i < 5; ++i) b.arrive();
  std::vector<Tensor> out(5);
  std::vector<std::thread> threads;
  for (int i = 0; i < 5; ++i) threads.push_back(submit_async(b, i % 2 ? v2 : v1, {float(i)}, out[i]));
  for (auto& t : threads) t.join();
  for (int i = 0; i < 5; ++i) check_answer(out[i], {float(i)});
  int64_t of_v1 = 0, of_v2 = 0;
  for (const auto& [key, n] : rec.batches) {
    REQUIRE((key == v1.get() || key == v2.get()));
    (key == v1.get() ? of_v1 : of_v2) += n;
  }
  CHECK(of_v1 == 3);
  CHECK(of_v2 == 2);
  // Everything was queued before the first batch could start: one batch per key.
  CHECK(rec.batches.size() == 2);
}

TEST_CASE("a lone request and a request whose partner withdrew do not wait for the bound") {
  Recorder rec;
  DynamicBatcher b(32, kLong, rec.run());  // a wait would be 60 s: the test would hang
  const auto key = std::make_shared<int>(1);
  b.arrive();
  check_answer(b.submit(key, rows({7})), {7});
  b.arrive();
  b.arrive();
  b.leave();  // e.g. its body did not parse
  check_answer(b.submit(key, rows({8})), {8});
  CHECK(rec.sizes() == std::vector<int64_t>{1, 1});
}

TEST_CASE("an error in a batch reaches every request of it, and the batcher keeps running") {
  std::atomic<int> calls{0};
  DynamicBatcher b(8, kLong, [&](const std::shared_ptr<void>&, const Tensor& x) -> Tensor {
    if (calls++ == 0) throw Error("forward failed");
    Tensor out = Tensor::empty({x.dim(0), 1});
    for (int64_t i = 0; i < x.dim(0); ++i) out.data()[i] = 1;
    return out;
  });
  const auto key = std::make_shared<int>(1);
  b.arrive();
  b.arrive();
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i)
    threads.emplace_back([&] {
      try {
        b.submit(key, rows({1}));
      } catch (const Error& e) {
        if (std::string(e.what()) == "forward failed") ++failed;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(failed == 2);
  b.arrive();
  CHECK(b.submit(key, rows({1})).dim(0) == 1);
}

TEST_CASE("stop() answers what is queued, later submits are refused, bad arguments throw") {
  Recorder rec;
  auto b = std::make_unique<DynamicBatcher>(4, kLong, rec.run());
  const auto key = std::make_shared<int>(1);
  // Two announced, one submitted: its batch waits for the other ... until stop().
  b->arrive();
  b->arrive();
  Tensor out;
  std::thread t = submit_async(*b, key, {3}, out);
  // Until the request is queued (its batch waits for the announced partner).
  while (b->queued() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK(rec.batches.empty());
  b->stop();
  t.join();
  check_answer(out, {3});
  b->arrive();
  CHECK_THROWS_WITH(b->submit(key, rows({1})), Catch::Contains("stopping"));
  b->stop();  // idempotent
  CHECK_THROWS_AS(DynamicBatcher(0, 10, rec.run()), InvalidArgument);
  CHECK_THROWS_AS(DynamicBatcher(1, -1, rec.run()), InvalidArgument);
}
