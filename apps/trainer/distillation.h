#pragma once
// Dark experience replay (Buzzega et al. 2020, "DER++"): a replayed sample keeps the logits the
// model gave it when it entered the replay memory, and its loss adds weight · mean over classes of
// (z − z_stored)², so replay preserves the old function (the relative scores of the classes) and
// not only the old labels. Only the classes the model had been trained on when the sample was
// stored are matched (a NaN in the stored logits marks the others): the logits of classes still to
// come are untrained noise, and pinning them would keep a class-incremental model from learning
// them (X-DER, Boschini et al. 2022, makes the same point).
#include <cstdint>

#include "apps/trainer/train_loop.h"

namespace nnr {

// Host tensors. Rows [first_row, first_row + stored.dim(0)) of `logits` [B, C] are matched to
// `stored` [R, C]: returns weight · mean over the stored entries that are not NaN of (z − stored)²
// (0 when all are NaN), and adds its gradient with respect to the logits into `grad` [B, C]. Throws nnr::InvalidArgument on
// shapes that do not fit.
double add_logit_matching(const Tensor& logits, int64_t first_row, const Tensor& stored, float weight, Tensor& grad);

// The data-parallel form: `logits` and `grad` are this rank's rows [share_begin, share_begin +
// logits.dim(0)) of a batch of global_rows whose last stored.dim(0) rows are matched to `stored`
// (which every rank holds whole). The mean runs over the matched entries of the whole batch, so the
// ranks' returns add up to add_logit_matching's on the whole batch; the gradient added into `grad`
// is multiplied by grad_scale (train_step_data_parallel's LogitTerm).
double add_logit_matching_share(const Tensor& logits, int64_t share_begin, int64_t global_rows, const Tensor& stored,
                                float weight, double grad_scale, Tensor& grad);

// train_step with the logit-matching term on the batch's last stored.dim(0) rows (the replayed
// samples): one optimizer step on the batch's mean cross-entropy plus add_logit_matching. Returns
// the loss; when it is not finite nothing is updated. With a CUDA context the model must be on it;
// the logits' gradient is adjusted on the host (a batch of logits is small).
double distilled_train_step(Sequential& model, Optimizer& optimizer, const Batch& batch, const Tensor& stored,
                            float weight, Context* cuda, StepScratch& scratch);

}  // namespace nnr
