#pragma once
// The number of CPU threads nnr's math uses (Eigen's GEMM and nnr's own OpenMP loops).
namespace nnr {
void set_num_threads(int n);  // n <= 0: all hardware threads
int num_threads();
}  // namespace nnr
