#include "kernels/cuda/cuda_check.h"

#include <string>

namespace nnr::kernels {

void throw_cuda_error(const char* library, const char* expression, const char* message, const char* file,
                      int line) {
  throw CudaError(std::string("[") + library + "] " + expression + " failed at " + file + ":" +
                  std::to_string(line) + ": " + message);
}

}  // namespace nnr::kernels
