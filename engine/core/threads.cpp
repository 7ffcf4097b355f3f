#include "engine/core/threads.h"

#include <omp.h>

#include <Eigen/Core>

namespace nnr {

void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  // nnr splits GEMMs across threads itself (engine/ops/gemm.cpp); Eigen runs each block alone.
  Eigen::setNbThreads(1);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace nnr
