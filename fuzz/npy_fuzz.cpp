// libFuzzer target: one input through run_npy (fuzz/targets.h).
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nnr::fuzz::run_npy(data, size);
  return 0;
}
