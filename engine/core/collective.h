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
// Every call is collective: every rank makes the same calls in the same order, else the run hangs
// until the timeout. Each call waits at most timeout_seconds() ($NNR_COLLECTIVE_TIMEOUT, default
// 300 s) for the other ranks and then throws nnr::Error naming the call, the rank and the wait:
// a rank that died or hangs ends the run on every rank in bounded time (and the launcher ends the
// ranks still waiting once one exits with an error).
#include <cstddef>
#include <cstdint>
#include <string>

namespace nnr {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual const char* name() const = 0;  // "single" or "mpi"
  virtual int rank() const = 0;          // 0 .. size() - 1
  virtual int size() const = 0;          // the number of ranks

  // In place: x[i] becomes the sum over ranks of x[i]; every rank gets the same result.
  virtual void all_reduce_sum(float* x, int64_t n) = 0;
  virtual void all_reduce_sum(double* x, int64_t n) = 0;
  // In place: `bytes` bytes at data on `root` are copied to data on every other rank.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;

  // Bytes this rank has passed to all_reduce_sum so far (its input: n * sizeof(element)).
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

// The process's collective, chosen and (for MPI) loaded on the first call; throws nnr::Error when
// the process runs under a launcher with several ranks and the MPI backend cannot be loaded or
// started (the loader's message names the missing library).
Collective& collective();

// The number of ranks the launcher started (OMPI_COMM_WORLD_SIZE or PMI_SIZE), 1 outside one;
// reads the environment only, loads nothing.
int launched_ranks();

// How long a collective call waits for the other ranks: $NNR_COLLECTIVE_TIMEOUT seconds (a positive
// number), else 300.
double collective_timeout_seconds();

// What the MPI backend library exports: its one entry point, extern "C", returns a new Collective
// (MPI initialised, rank and size known) or null with the reason in *why.
constexpr const char* kCollectiveLibraryEntryPoint = "nnr_mpi_collective";
using CollectiveLibraryEntryPoint = Collective* (*)(double timeout_seconds, std::string* why);

}  // namespace nnr
