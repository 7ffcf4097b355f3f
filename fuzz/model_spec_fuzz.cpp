// libFuzzer target: one input through run_model_spec (fuzz/targets.h).
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nnr::fuzz::run_model_spec(data, size);
  return 0;
}
