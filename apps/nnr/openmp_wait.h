#pragma once
// nnr retrains next to a serving process, so its cores are often shared. OpenMP's default
// barrier spins (libgomp: up to 300 000 iterations) before it sleeps; when another process
// holds one of the two cores, every fork-join then waits out a scheduler time slice. Measured
// on the 2-core dev machine with one core busy (bench_train_epoch, MLP, 2 threads): 22.5 s per
// epoch with the default spin, 3.9 s with GOMP_SPINCOUNT=20000, 1.1 s with a passive wait.
// The runtime reads the policy once at start-up, so the program re-executes itself once with
// OMP_WAIT_POLICY=PASSIVE, unless the user chose a policy.
#include <unistd.h>

#include <cstdlib>

namespace nnr::cli {

inline void use_passive_openmp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: then run on with the default policy
}

}  // namespace nnr::cli
