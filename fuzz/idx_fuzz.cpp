// libFuzzer target: one input through run_idx (fuzz/targets.h).
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nnr::fuzz::run_idx(data, size);
  return 0;
}
