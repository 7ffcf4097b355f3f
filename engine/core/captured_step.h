#pragma once
// CapturedStep: work that only queues device operations on a Context's stream, recorded once as
// a CUDA Graph (kernels/cuda/graph.h) and then replayed with one launch. A training step of a small
// model queues dozens of kernels that each run for microseconds; replaying them as one graph
// removes their launch cost.
//
// Rules for the recorded work, which the caller must keep:
//   - it only queues: nothing may wait for the stream (no Context::upload / download, no
//     Tensor::to, no synchronize). Such a call fails the recording with nnr::Error;
//   - every host value it passes to a kernel is frozen at recording, so what changes between
//     replays must be read from device memory, which the host refreshes through copies from
//     page-locked buffers queued inside the recording (Context::queue_upload): a replay reads
//     the PinnedHostBuffer's contents at the time it runs;
//   - device memory it uses must stay where it was (no reallocated parameters or workspaces).
// Memory the work allocates while being recorded comes from a private pool of the Context's
// allocator (kernels/cuda/device_memory.h) that stays reserved for the graph until clear(), even after
// the tensors that held it are freed, because every replay writes it again.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "engine/core/context.h"

namespace nnr {

// Page-locked host memory, which copies can read or fill without waiting (Context::queue_upload,
// queue_download). The host must not touch it while such a copy may still be pending.
class PinnedHostBuffer {
 public:
  PinnedHostBuffer();
  // Throws nnr::Error in a build without CUDA or when the driver refuses.
  explicit PinnedHostBuffer(size_t bytes);
  ~PinnedHostBuffer();
  PinnedHostBuffer(PinnedHostBuffer&&) noexcept;
  PinnedHostBuffer& operator=(PinnedHostBuffer&&) noexcept;

  void* data();
  size_t bytes() const;
  template <typename T>
  T* as() {
    return static_cast<T*>(data());
  }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class CapturedStep {
 public:
  // `ctx` must outlive this object.
  explicit CapturedStep(Context& ctx);
  ~CapturedStep();
  CapturedStep(const CapturedStep&) = delete;
  CapturedStep& operator=(const CapturedStep&) = delete;

  // Runs `work` on the host under stream capture: the device operations it queues are recorded,
  // not executed (replay() executes them). Replaces an earlier recording. If `work` throws or
  // does something capture forbids, nothing is recorded and nnr::Error says why; whatever `work`
  // changed on the host before that stays changed.
  void record(const std::function<void()>& work);
  // Queues one execution of the recording on the stream (does not wait for it).
  void replay();
  bool recorded() const;
  // Drops the recording and returns its memory pool to the allocator (waits for the stream first).
  void clear() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Context& ctx_;
};

}  // namespace nnr
