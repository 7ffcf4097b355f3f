#include "engine/core/backend.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "engine/core/context.h"
#include "engine/core/tensor.h"

namespace nnr {
namespace {

struct LoadedLibrary {
  DeviceLibrary* library = nullptr;
  std::string why;
};

// Where libnnr_cuda.so is looked for: $NNR_CUDA_BACKEND when set, else the build's copy
// (NNR_CUDA_BACKEND_PATH, set by engine/CMakeLists.txt; empty in a build without CUDA), else the
// loader's search path (LD_LIBRARY_PATH, the runpath) under its plain name.
LoadedLibrary load() {
  LoadedLibrary result;
  const std::string built = NNR_CUDA_BACKEND_PATH;
  if (built.empty()) {
    result.why = "nnr was built without CUDA (configure with NNR_CUDA=ON)";
    return result;
  }
  const char* chosen = std::getenv("NNR_CUDA_BACKEND");
  std::string path = chosen && *chosen ? chosen : built;
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle && !(chosen && *chosen)) {
    const std::string first = dlerror();
    handle = dlopen("libnnr_cuda.so", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      result.why = "the CUDA backend could not be loaded (" + first + ")";
      return result;
    }
  } else if (!handle) {
    result.why = std::string("the CUDA backend could not be loaded (") + dlerror() + ")";
    return result;
  }
  auto entry = reinterpret_cast<DeviceLibraryEntryPoint>(dlsym(handle, kDeviceLibraryEntryPoint));
  if (!entry) {
    result.why = path + " is not an nnr CUDA backend (no " + kDeviceLibraryEntryPoint + ")";
    return result;
  }
  result.library = entry();  // the library stays loaded for the life of the process
  return result;
}

}  // namespace

DeviceLibrary* cuda_library(std::string* why) {
  static const LoadedLibrary loaded = load();
  if (!loaded.library && why) *why = loaded.why;
  return loaded.library;
}

Backend& backend_of(const Tensor& t) {
  return t.device() == Device::CUDA ? static_cast<Backend&>(t.context()->backend()) : cpu_backend();
}

}  // namespace nnr
