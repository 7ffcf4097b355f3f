#include "apps/nnr/data_parallel.h"

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "engine/core/error.h"
#include "engine/core/threads.h"

namespace nnr::cli {

Collective* data_parallel_collective(const std::string& command, const std::string& device, int64_t batch_size,
                                     int threads) {
  const std::string where = "[" + command + "] ";
  const bool forced = nccl_collective_forced();
  if (forced && device != "cuda")
    throw InvalidArgument(where + "NNR_COLLECTIVE=nccl selects the NCCL backend of --device cuda runs; this run is " +
                          "on --device " + device + " (unset NNR_COLLECTIVE)");
  if (launched_ranks() <= 1 && !forced) return nullptr;
  // A CUDA run sums its gradients on the devices (NCCL, one GPU per rank), everything else on the host.
  Collective& c = device == "cuda" ? cuda_collective() : collective();
  if (batch_size > 0 && batch_size < c.size())
    throw InvalidArgument(where + "--batch-size " + std::to_string(batch_size) + " is smaller than the " +
                          std::to_string(c.size()) + " ranks of this data-parallel run (every global batch is "
                          "split across the ranks: each needs at least one sample)");
  if (threads == 0) {
    // Ranks on one machine share its cores.
    set_num_threads(0);
    const int bound = num_threads();
    const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const int local_ranks = local ? std::max(1, std::atoi(local)) : 1;
    set_num_threads(bound < hardware ? bound : std::max(1, hardware / local_ranks));
  }
  return &c;
}

}  // namespace nnr::cli
