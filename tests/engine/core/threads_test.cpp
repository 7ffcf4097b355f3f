#include "engine/core/threads.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include <thread>

#include "kernels/thread_pool.h"

TEST_CASE("the engine's loop wait is the pool's default unless NNR_THREAD_WAIT chose another", "[threads]") {
  // ctest runs this file once as it is and once with NNR_THREAD_WAIT=passive.
  const char* chosen = std::getenv("NNR_THREAD_WAIT");
  const std::string description = nnr::thread_wait_description();
  if (!chosen) {
    CHECK(description == "spin up to " + std::to_string(nnr::kernels::kDefaultSpinMicroseconds) +
                             " us, yielding, then sleep (nnr's default)");
  } else if (std::string(chosen) == "passive") {
    CHECK(nnr::kernels::thread_wait().kind == nnr::kernels::ThreadWait::Passive);
    CHECK(description == "sleep at once (passive) (NNR_THREAD_WAIT=passive)");
  } else {
    CHECK(description.find(std::string("NNR_THREAD_WAIT=") + chosen) != std::string::npos);
  }
}

TEST_CASE("set_num_threads sets the calling thread's loop threads only", "[threads]") {
  const int saved = nnr::num_threads();
  nnr::set_num_threads(3);
  CHECK(nnr::num_threads() == 3);
  CHECK(nnr::kernels::loop_threads() == 3);
  int other = 0;
  std::thread([&] { other = nnr::num_threads(); }).join();
  CHECK(other == nnr::kernels::default_loop_threads());
  nnr::set_num_threads(0);
  CHECK(nnr::num_threads() == nnr::kernels::available_cores());
  nnr::set_num_threads(saved);
}
