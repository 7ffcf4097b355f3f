#include "engine/core/threads.h"

#include "kernels/thread_pool.h"

namespace nnr {

// Eigen never threads a GEMM itself (kernels/gemm.cpp sets it single-threaded); the pool splits them.
void set_num_threads(int n) { kernels::set_loop_threads(n); }

int num_threads() { return kernels::loop_threads(); }

std::string thread_wait_description() { return kernels::thread_wait_description(); }

}  // namespace nnr
