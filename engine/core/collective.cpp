#include "engine/core/collective.h"

#include <dlfcn.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "engine/core/error.h"

namespace nnr {

RankShare rank_share(int64_t n, int rank, int ranks) {
  const int64_t base = n / ranks, extra = n % ranks;
  RankShare s;
  s.begin = rank * base + std::min<int64_t>(rank, extra);
  s.end = s.begin + base + (rank < extra ? 1 : 0);
  return s;
}
namespace {

// One process: rank 0 of 1. A sum over one rank is the input; a broadcast from rank 0 to nobody
// moves nothing.
class SingleProcess final : public Collective {
 public:
  const char* name() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(float* /*x*/, int64_t n) override { bytes_ += n * static_cast<int64_t>(sizeof(float)); }
  void all_reduce_sum(double* /*x*/, int64_t n) override { bytes_ += n * static_cast<int64_t>(sizeof(double)); }
  void broadcast(void* /*data*/, size_t /*bytes*/, int root) override {
    if (root != 0)
      throw InvalidArgument("[collective] broadcast from rank " + std::to_string(root) + " in a run of 1 rank");
  }
  void barrier() override {}
  int64_t bytes_all_reduced() const override { return bytes_; }
  void finish() override {}

 private:
  int64_t bytes_ = 0;
};

int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end && *end == '\0' && n > 0 && n < (1L << 30) ? static_cast<int>(n) : 0;
}

// dlopen's the path in $env when set, else `built`, else (when no path was chosen by the user) the
// plain name on the loader's search path; throws nnr::Error: `failure` and the loader's first message.
void* open_library(const std::string& built, const char* env, const char* plain_name, const std::string& failure) {
  const char* chosen = std::getenv(env);
  const bool explicit_path = chosen && *chosen;
  const std::string path = explicit_path ? std::string(chosen) : built;
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle) return handle;
  const std::string first = dlerror();
  if (!explicit_path) {
    handle = dlopen(plain_name, RTLD_NOW | RTLD_LOCAL);
    if (handle) return handle;
  }
  throw Error(failure + " (" + first + ")");
}

// Where libnnr_mpi.so is looked for: $NNR_MPI_BACKEND when set, else the build's copy
// (NNR_MPI_BACKEND_PATH, set by engine/CMakeLists.txt; empty in a build without MPI), else the
// loader's search path under its plain name.
Collective* load_mpi(int ranks) {
  const std::string launched = "this process was started by an MPI launcher with " + std::to_string(ranks) + " ranks";
  const char* chosen = std::getenv("NNR_MPI_BACKEND");
  const std::string built = NNR_MPI_BACKEND_PATH;
  if (!(chosen && *chosen) && built.empty())
    throw Error("[collective] " + launched + ", but nnr was built without MPI (install libopenmpi-dev and "
                "reconfigure, or set NNR_MPI_BACKEND to a libnnr_mpi.so)");
  void* handle = open_library(built, "NNR_MPI_BACKEND", "libnnr_mpi.so",
                              "[collective] " + launched + ", but the MPI backend could not be loaded");
  auto entry = reinterpret_cast<CollectiveLibraryEntryPoint>(dlsym(handle, kCollectiveLibraryEntryPoint));
  if (!entry)
    throw Error(std::string("[collective] the library loaded as the MPI backend is not one (no ") +
                kCollectiveLibraryEntryPoint + ")");
  std::string why;
  Collective* c = entry(collective_timeout_seconds(), &why);  // lives, like the library, until exit
  if (!c) throw Error("[collective] " + launched + ", but MPI could not be started: " + why);
  if (c->size() != ranks)
    throw Error("[collective] the launcher announced " + std::to_string(ranks) + " ranks but MPI reports " +
                std::to_string(c->size()));
  return c;
}

// This rank's place among the ranks on its machine: Open MPI's variables, else MPICH's (Hydra),
// else a single process.
struct LocalRanks {
  int rank = 0, size = 1;
};
LocalRanks local_ranks() {
  LocalRanks l;
  if (std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE")) {
    l.rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK");  // 0 reads as 0
    l.size = std::max(1, env_int("OMPI_COMM_WORLD_LOCAL_SIZE"));
  } else if (std::getenv("MPI_LOCALNRANKS")) {
    l.rank = env_int("MPI_LOCALRANKID");
    l.size = std::max(1, env_int("MPI_LOCALNRANKS"));
  }
  return l;
}

// libnnr_nccl.so over the host collective `host`: $NNR_NCCL_BACKEND when set, else the build's copy
// (NNR_NCCL_BACKEND_PATH; empty in a build without it), else the plain name.
Collective* load_nccl(Collective& host) {
  const std::string built = NNR_NCCL_BACKEND_PATH;
  const char* chosen = std::getenv("NNR_NCCL_BACKEND");
  if (built.empty() && !(chosen && *chosen))
    throw Error("[collective] a data-parallel CUDA run needs the NCCL backend, but nnr was built without it "
                "(run scripts/setup.sh for the NCCL wheel and reconfigure with the CUDA backend, or set "
                "NNR_NCCL_BACKEND to a libnnr_nccl.so)");
  void* handle = open_library(built, "NNR_NCCL_BACKEND", "libnnr_nccl.so",
                              "[collective] a data-parallel CUDA run needs the NCCL backend, but it could not be loaded");
  auto entry = reinterpret_cast<NcclCollectiveLibraryEntryPoint>(dlsym(handle, kNcclCollectiveLibraryEntryPoint));
  if (!entry)
    throw Error(std::string("[collective] the library loaded as the NCCL backend is not one (no ") +
                kNcclCollectiveLibraryEntryPoint + ")");
  const LocalRanks local = local_ranks();
  std::string why;
  Collective* c = entry(&host, local.rank, local.size, collective_timeout_seconds(), &why);  // lives until exit
  if (!c)
    throw Error("[collective] rank " + std::to_string(host.rank()) + " of " + std::to_string(host.size()) +
                ": NCCL could not be started: " + why);
  return c;
}

}  // namespace

bool nccl_collective_forced() {
  const char* v = std::getenv("NNR_COLLECTIVE");
  if (!v || !*v) return false;
  if (std::strcmp(v, "nccl") == 0) return true;
  throw InvalidArgument(std::string("[collective] NNR_COLLECTIVE must be 'nccl' (the NCCL backend even for one "
                                    "process) or unset, not '") + v + "'");
}

Collective& cuda_collective() {
  static Collective* const chosen = load_nccl(collective());
  return *chosen;
}

int launched_ranks() {
  const int ompi = env_int("OMPI_COMM_WORLD_SIZE");
  if (ompi) return ompi;
  const int pmi = env_int("PMI_SIZE");
  return pmi ? pmi : 1;
}

double collective_timeout_seconds() {
  const char* v = std::getenv("NNR_COLLECTIVE_TIMEOUT");
  if (v && *v) {
    char* end = nullptr;
    const double s = std::strtod(v, &end);
    if (!(end && *end == '\0' && s > 0.0))
      throw InvalidArgument(std::string("[collective] NNR_COLLECTIVE_TIMEOUT must be a positive number of seconds, not '") +
                            v + "'");
    return s;
  }
  return 300.0;
}

int64_t all_reduce_bucket_bytes() {
  const char* v = std::getenv("NNR_ALLREDUCE_BUCKET_BYTES");
  if (!v || !*v) return kDefaultAllReduceBucketBytes;
  char* end = nullptr;
  errno = 0;
  const long long bytes = std::strtoll(v, &end, 10);
  if (!(end && *end == '\0' && errno == 0 && bytes >= 0))
    throw InvalidArgument(std::string("[collective] NNR_ALLREDUCE_BUCKET_BYTES must be a whole number of bytes "
                                      "(0: one all-reduce after backward), not '") + v + "'");
  return static_cast<int64_t>(bytes);
}

Collective& collective() {
  // A failed load is reported by every call (each throws the same message); a static
  // initialiser that throws is retried on the next call.
  static Collective* const chosen = [] {
    const int ranks = launched_ranks();
    return ranks > 1 ? load_mpi(ranks) : static_cast<Collective*>(new SingleProcess());
  }();
  return *chosen;
}

}  // namespace nnr
