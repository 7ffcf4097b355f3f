#pragma once
// The data-parallel part the commands that run under `mpirun -np N` share (issue #18).
#include <cstdint>
#include <string>

#include "engine/core/collective.h"

namespace nnr::cli {

// Under an MPI launcher with several ranks: the run's collective (engine/core/collective.h) —
// collective() (MPI) for --device cpu, cuda_collective() (NCCL over MPI, one GPU per rank: open the
// Context on its cuda_device()) for --device cuda — after the checks every data-parallel command
// makes (a global batch of at least one sample per rank, unless batch_size is 0: not known here),
// and with --threads 0 each rank's thread count set to the cores the launcher bound it to, else an
// equal part of the machine's. With NNR_COLLECTIVE=nccl (--device cuda only) the NCCL collective
// even for a single process. Null otherwise: nothing is loaded. `command` names the command in errors.
Collective* data_parallel_collective(const std::string& command, const std::string& device, int64_t batch_size,
                                     int threads);

}  // namespace nnr::cli
