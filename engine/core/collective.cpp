#include "engine/core/collective.h"

#include <dlfcn.h>

#include <algorithm>
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

// Where libnnr_mpi.so is looked for: $NNR_MPI_BACKEND when set, else the build's copy
// (NNR_MPI_BACKEND_PATH, set by engine/CMakeLists.txt; empty in a build without MPI), else the
// loader's search path under its plain name.
Collective* load_mpi(int ranks) {
  const std::string launched = "this process was started by an MPI launcher with " + std::to_string(ranks) + " ranks";
  const char* chosen = std::getenv("NNR_MPI_BACKEND");
  const bool explicit_path = chosen && *chosen;
  const std::string built = NNR_MPI_BACKEND_PATH;
  if (!explicit_path && built.empty())
    throw Error("[collective] " + launched + ", but nnr was built without MPI (install libopenmpi-dev and "
                "reconfigure, or set NNR_MPI_BACKEND to a libnnr_mpi.so)");
  std::string path = explicit_path ? std::string(chosen) : built;
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle && !explicit_path) {
    const std::string first = dlerror();
    path = "libnnr_mpi.so";
    handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) throw Error("[collective] " + launched + ", but the MPI backend could not be loaded (" + first + ")");
  } else if (!handle) {
    throw Error("[collective] " + launched + ", but the MPI backend could not be loaded (" + dlerror() + ")");
  }
  auto entry = reinterpret_cast<CollectiveLibraryEntryPoint>(dlsym(handle, kCollectiveLibraryEntryPoint));
  if (!entry)
    throw Error("[collective] " + path + " is not an nnr MPI backend (no " + kCollectiveLibraryEntryPoint + ")");
  std::string why;
  Collective* c = entry(collective_timeout_seconds(), &why);  // lives, like the library, until exit
  if (!c) throw Error("[collective] " + launched + ", but MPI could not be started: " + why);
  if (c->size() != ranks)
    throw Error("[collective] the launcher announced " + std::to_string(ranks) + " ranks but MPI reports " +
                std::to_string(c->size()));
  return c;
}

}  // namespace

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
