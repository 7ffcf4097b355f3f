#pragma once
// Collectives across the processes of a data-parallel run (issue #18): sum, broadcast, barrier.
// A single process has the built-in single-process collective (rank 0 of 1: every call returns at
// once). A process launched by Open MPI's mpirun with more than one rank (OMPI_COMM_WORLD_SIZE > 1,
// or PMI_SIZE > 1 under MPICH's launcher) uses the MPI backend in the shared library libnnr_mpi.so
// (engine/dist/mpi_collective.cpp), loaded with dlopen on the first call to collective() — from
// $NNR_MPI_BACKEND, else the path the build wrote in, else the loader's search path — exactly as
// libnnr_cuda.so is (engine/core/backend.cpp). nnr links no MPI library: a single process never
// loads one.
//
// A run whose model lives on CUDA devices uses cuda_collective(): the NCCL backend in
// libnnr_nccl.so (engine/dist/nccl_collective.cpp), loaded the same way ($NNR_NCCL_BACKEND) on its
// first call, one GPU per rank. It sums and broadcasts device buffers with NCCL and passes host
// buffers (losses, evaluation counts) and the barrier to the host collective above, over which it
// also sends NCCL's unique id. A CPU run never loads it, nor NCCL, nor the CUDA runtime.
//
// Every call is collective: every rank makes the same calls in the same order, else the run hangs
// until the timeout. Each call waits at most timeout_seconds() ($NNR_COLLECTIVE_TIMEOUT, default
// 300 s) for the other ranks and then throws nnr::Error naming the call, the rank and the wait:
// a rank that died or hangs ends the run on every rank in bounded time (and the launcher ends the
// ranks still waiting once one exits with an error).
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/core/error.h"
#include "kernels/cuda_stream.h"  // cudaStream_t without the CUDA headers

namespace nnr {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual const char* name() const = 0;  // "single", "mpi" or "nccl"
  virtual int rank() const = 0;          // 0 .. size() - 1
  virtual int size() const = 0;          // the number of ranks

  // In place: x[i] becomes the sum over ranks of x[i]; every rank gets the same result.
  virtual void all_reduce_sum(float* x, int64_t n) = 0;
  virtual void all_reduce_sum(double* x, int64_t n) = 0;
  // In place: `bytes` bytes at data on `root` are copied to data on every other rank.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;

  // Device buffers: only the NCCL backend (cuda_device() >= 0) has them; the host collectives
  // throw nnr::Error. `device_x` is n floats in the memory of this rank's GPU, written by work
  // queued on `stream`; the call queues the collective on `stream` and returns once it has
  // completed there (or throws on an NCCL error or after the timeout, having aborted NCCL).
  // In place: device_x[i] becomes the sum over ranks r of scale_r * x_r[i], each rank passing its
  // own scale (a data-parallel gradient weighted by the rank's share of the global batch).
  virtual void all_reduce_sum_device(float* /*device_x*/, int64_t /*n*/, float /*scale*/, cudaStream_t /*stream*/) {
    throw Error(std::string("[collective] the ") + name() +
                " collective sums host buffers only (a CUDA run uses cuda_collective())");
  }
  // In place: `bytes` bytes at device_data on `root` copied to device_data on every other rank.
  virtual void broadcast_device(void* /*device_data*/, size_t /*bytes*/, int /*root*/, cudaStream_t /*stream*/) {
    throw Error(std::string("[collective] the ") + name() +
                " collective broadcasts host buffers only (a CUDA run uses cuda_collective())");
  }
  // The CUDA device this rank's buffers live on (one GPU per rank), -1 for a host collective.
  virtual int cuda_device() const { return -1; }

  // Nonblocking sums (a data-parallel step's gradient buckets, started during backward as each
  // bucket's gradients become final). start_all_reduce_sum begins the in-place sum of x[0, n) over
  // the ranks and returns without waiting for them; x must be neither read nor written until
  // wait_all_reduce_sums, which completes every sum started since the last wait. Every rank starts
  // the same sums in the same order; blocking calls between a start and the wait are allowed (they
  // are ordered after the starts on every rank). The wait is watched like a blocking call: after
  // timeout_seconds() it ends the rank with an error naming the wait. The sums count in
  // bytes_all_reduced() when started. These defaults sum at once (a single process has nothing to
  // wait for); the MPI backend starts MPI_Iallreduce and waits with MPI_Waitall.
  virtual void start_all_reduce_sum(float* x, int64_t n) { all_reduce_sum(x, n); }
  // Lets started sums advance while the caller computes: Open MPI moves a nonblocking collective
  // only inside MPI calls. Never blocks.
  virtual void progress_all_reduce_sums() {}
  virtual void wait_all_reduce_sums() {}
  // The device form (NCCL): the sum, scaled as all_reduce_sum_device, is queued on `stream` and the
  // call returns; wait_all_reduce_sums waits until it has completed there (with the timeout).
  virtual void start_all_reduce_sum_device(float* device_x, int64_t n, float scale, cudaStream_t stream) {
    all_reduce_sum_device(device_x, n, scale, stream);
  }

  // Bytes this rank has passed to all_reduce_sum and all_reduce_sum_device so far (its input:
  // n * sizeof(element)).
  virtual int64_t bytes_all_reduced() const = 0;

  // Ends the collective part of a run that succeeded on every rank (MPI_Finalize); after it no
  // call may be made. A process that exits without it (an error) leaves the launcher to end the
  // other ranks. Idempotent; a no-op for a single process.
  virtual void finish() = 0;
};

// Rows [begin, end) of n that rank `rank` of `ranks` takes in a data-parallel split: contiguous
// shares, the first n mod ranks ranks one row more (a share may be empty).
struct RankShare {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
RankShare rank_share(int64_t n, int rank, int ranks);

// Whether a run with this collective (null: none) takes the data-parallel path: several ranks, or
// the NCCL backend forced on a single one (nccl_collective_forced()).
inline bool runs_data_parallel(const Collective* c) { return c && (c->size() > 1 || c->cuda_device() >= 0); }

// The process's collective, chosen and (for MPI) loaded on the first call; throws nnr::Error when
// the process runs under a launcher with several ranks and the MPI backend cannot be loaded or
// started (the loader's message names the missing library).
Collective& collective();

// The collective of a run whose model lives on CUDA devices: the NCCL backend, over collective()
// (host buffers, the barrier, NCCL's unique id), loaded on the first call. Each rank takes GPU
// (local rank mod the device count), the local rank being OMPI_COMM_WORLD_LOCAL_RANK (or MPICH's
// MPI_LOCALRANKID), 0 outside a launcher. Throws nnr::Error when the build has no NCCL backend,
// libnnr_nccl.so or NCCL cannot be loaded (the loader's message names the library), there is no
// CUDA device, or a machine has fewer devices than ranks. The caller opens its Context on
// cuda_device().
Collective& cuda_collective();

// Whether $NNR_COLLECTIVE asks for the NCCL backend even for a single process ("nccl"): a one-GPU
// machine then runs the data-parallel path of a CUDA run (pack, NCCL all-reduce of 1 rank, unpack).
// Unset or empty: no. Any other value is an nnr::InvalidArgument.
bool nccl_collective_forced();

// The number of ranks the launcher started (OMPI_COMM_WORLD_SIZE or PMI_SIZE), 1 outside one;
// reads the environment only, loads nothing.
int launched_ranks();

// How long a collective call waits for the other ranks: $NNR_COLLECTIVE_TIMEOUT seconds (a positive
// number), else 300.
double collective_timeout_seconds();

// The size of a data-parallel step's gradient buckets (train_step_data_parallel): each bucket's
// all-reduce starts during backward as soon as its parameters' gradients are final.
// $NNR_ALLREDUCE_BUCKET_BYTES (a whole number of bytes; 0: one all-reduce of every gradient after
// backward, the step before buckets), else kDefaultAllReduceBucketBytes. A bucket closes once it holds
// this many bytes of open gradient entries (a parameter is never split: one larger than this is a
// bucket of its own). Read on every call (tests change it); an invalid value is an
// nnr::InvalidArgument.
constexpr int64_t kDefaultAllReduceBucketBytes = int64_t{256} << 10;
int64_t all_reduce_bucket_bytes();

// What the MPI backend library exports: its one entry point, extern "C", returns a new Collective
// (MPI initialised, rank and size known) or null with the reason in *why.
constexpr const char* kCollectiveLibraryEntryPoint = "nnr_mpi_collective";
using CollectiveLibraryEntryPoint = Collective* (*)(double timeout_seconds, std::string* why);

// What the NCCL backend library exports: a new Collective over `host` (which it keeps using and
// must outlive it) on GPU local_rank mod the device count, or null with the reason in *why.
// Collective: every rank of `host` calls it (rank 0 makes NCCL's unique id and broadcasts it).
constexpr const char* kNcclCollectiveLibraryEntryPoint = "nnr_nccl_collective";
using NcclCollectiveLibraryEntryPoint = Collective* (*)(Collective* host, int local_rank, int local_ranks,
                                                        double timeout_seconds, std::string* why);

}  // namespace nnr
