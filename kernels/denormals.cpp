// Flush-to-zero for denormal floats (kernels/denormals.h).
#include "kernels/denormals.h"

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NNR_HAVE_MXCSR 1
#endif

namespace nnr::kernels {
namespace {

#ifdef NNR_HAVE_MXCSR
constexpr uint32_t kFlushBits = 0x8040;  // MXCSR FTZ (bit 15) and DAZ (bit 6)
#endif

// Set for the loading thread during static initialisation: before main, so before any thread of
// the program exists, and every later thread inherits it.
const bool kFlushAtLoad = [] {
  const char* value = std::getenv("NNR_DENORMALS");
  const bool keep = value && std::strcmp(value, "keep") == 0;
  set_flush_denormals(!keep);
  return !keep;
}();

}  // namespace

bool set_flush_denormals(bool on) {
#ifdef NNR_HAVE_MXCSR
  const uint32_t csr = _mm_getcsr();
  _mm_setcsr(on ? (csr | kFlushBits) : (csr & ~kFlushBits));
  return true;
#else
  (void)on;
  return false;
#endif
}

bool flush_denormals() {
#ifdef NNR_HAVE_MXCSR
  return (_mm_getcsr() & kFlushBits) == kFlushBits;
#else
  return false;
#endif
}

uint32_t float_mode() {
#ifdef NNR_HAVE_MXCSR
  return _mm_getcsr() & kFlushBits;
#else
  return 0;
#endif
}

void set_float_mode(uint32_t mode) {
#ifdef NNR_HAVE_MXCSR
  const uint32_t csr = _mm_getcsr();
  if ((csr & kFlushBits) != mode) _mm_setcsr((csr & ~kFlushBits) | (mode & kFlushBits));
#else
  (void)mode;
#endif
}

const char* denormals_at_load() { return kFlushAtLoad ? "flush" : "keep"; }

}  // namespace nnr::kernels
