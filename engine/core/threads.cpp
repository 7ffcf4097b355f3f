#include "engine/core/threads.h"

#include <omp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace nnr {

// Eigen's own threading is switched off once in engine/ops/gemm.cpp, where GEMMs are split.
void set_num_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

std::string openmp_spin_count_to_set(const char* omp_wait_policy, const char* gomp_spincount,
                                     const char* nnr_openmp_wait) {
  if (omp_wait_policy || gomp_spincount) return "";
  if (nnr_openmp_wait && std::string(nnr_openmp_wait) == "keep") return "";
  return std::to_string(kOpenmpSpinCount);
}

namespace {

// Set in the environment of the re-executed program: the wait settings came from nnr, not the user.
constexpr const char* kMarker = "NNR_OPENMP_WAIT";
constexpr const char* kMarkerValue = "default";

// This program's arguments, from /proc/self/cmdline (a static initializer has no argv).
std::vector<std::string> own_arguments() {
  std::vector<std::string> args;
  std::FILE* f = std::fopen("/proc/self/cmdline", "rb");
  if (!f) return args;
  std::string current;
  for (int c; (c = std::fgetc(f)) != EOF;) {
    if (c == '\0') {
      args.push_back(current);
      current.clear();
    } else {
      current.push_back(static_cast<char>(c));
    }
  }
  std::fclose(f);
  if (!current.empty()) args.push_back(current);
  return args;
}

// Runs before main: sets nnr's default wait and re-executes the program so libgomp reads it. On any
// failure (no /proc, exec refused) the program runs on with libgomp's default.
bool apply_default_openmp_wait() {
  const std::string spin =
      openmp_spin_count_to_set(std::getenv("OMP_WAIT_POLICY"), std::getenv("GOMP_SPINCOUNT"), std::getenv(kMarker));
  if (spin.empty()) return false;
  std::vector<std::string> args = own_arguments();
  if (args.empty()) return false;
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  setenv("GOMP_SPINCOUNT", spin.c_str(), 1);
  setenv(kMarker, kMarkerValue, 1);
  std::fflush(nullptr);
  execv("/proc/self/exe", argv.data());
  // Still here: exec failed. Leave the environment as the user gave it (children see no change).
  unsetenv("GOMP_SPINCOUNT");
  unsetenv(kMarker);
  return false;
}

const bool applied_at_start = apply_default_openmp_wait();

}  // namespace

}  // namespace nnr

// engine/CMakeLists.txt asks the linker for this symbol (--undefined) in every program that links
// nnr_engine_core, so this object, and with it the initializer above, is always linked in.
extern "C" int nnr_openmp_wait_anchor() { return 0; }

namespace nnr {

std::string openmp_wait_description() {
  (void)applied_at_start;
  const char* marker = std::getenv(kMarker);
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  if (marker && std::string(marker) == kMarkerValue && spin)
    return std::string("spin ") + spin + ", then sleep (nnr's default)";
  std::string out;
  if (policy) out += std::string("OMP_WAIT_POLICY=") + policy;
  if (spin) out += std::string(out.empty() ? "" : ", ") + "GOMP_SPINCOUNT=" + spin;
  return out.empty() ? "libgomp's default (spin 300000, then sleep)" : out + " (from the environment)";
}

}  // namespace nnr
