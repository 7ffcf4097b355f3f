#include "apps/nnr/progress.h"

#include <unistd.h>

#include <cstdio>

namespace nnr::cli {

ProgressCallback make_progress_printer(bool quiet) {
  if (quiet) return {};
  const bool terminal = isatty(STDERR_FILENO) != 0;
  return [terminal](const TrainProgress& p) {
    if (p.epoch_done) {
      std::fprintf(stderr, "%sepoch %d/%d  loss %.4f  %.0f samples/s\n", terminal ? "\r\033[K" : "", p.epoch,
                   p.epochs, p.loss, p.samples_per_second);
      return;
    }
    const int64_t every = p.batches >= 10 ? p.batches / 10 : 1;
    if (terminal) {
      std::fprintf(stderr, "\r\033[Kepoch %d/%d  batch %lld/%lld  loss %.4f  %.0f samples/s", p.epoch, p.epochs,
                   static_cast<long long>(p.batch), static_cast<long long>(p.batches), p.loss, p.samples_per_second);
    } else if (p.batch % every == 0 && p.batch != p.batches) {
      std::fprintf(stderr, "epoch %d/%d  batch %lld/%lld  loss %.4f  %.0f samples/s\n", p.epoch, p.epochs,
                   static_cast<long long>(p.batch), static_cast<long long>(p.batches), p.loss, p.samples_per_second);
    }
    std::fflush(stderr);
  };
}

}  // namespace nnr::cli
