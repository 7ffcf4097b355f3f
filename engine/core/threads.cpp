#include "engine/core/threads.h"

#include <omp.h>

namespace nnr {

// Eigen's own threading is switched off once in engine/ops/gemm.cpp, where GEMMs are split.
void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace nnr
