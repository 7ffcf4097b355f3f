#pragma once
// Progress lines on stderr. On a terminal one line is rewritten in place; otherwise (a log,
// a pipe, CI) plain lines are printed about ten times per epoch and at each epoch's end.
#include "apps/trainer/train_loop.h"

namespace nnr::cli {

ProgressCallback make_progress_printer(bool quiet);

}  // namespace nnr::cli
