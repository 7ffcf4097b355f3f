#pragma once
// CUDA Graphs: the work queued on one stream, recorded once and replayed with one launch. For
// steps whose kernels are too small to hide their launch cost (a small MLP's training step
// queues dozens of kernels that each run for microseconds).
//
// While a capture is open nothing queued on the stream runs; a call that would wait for it (a
// synchronising copy, cudaStreamSynchronize) or that the capture cannot record fails the capture.
// Kernel arguments are frozen at capture; a copy from page-locked host memory reads the host
// buffer when the replay reaches it, which is how per-replay inputs get in.
#include <cuda_runtime_api.h>

namespace nnr::kernels {

class CapturedGraph {
 public:
  CapturedGraph() = default;
  ~CapturedGraph();
  CapturedGraph(CapturedGraph&& other) noexcept;
  CapturedGraph& operator=(CapturedGraph&& other) noexcept;
  CapturedGraph(const CapturedGraph&) = delete;
  CapturedGraph& operator=(const CapturedGraph&) = delete;

  // Starts recording `stream` in thread-local mode: unsafe calls from this thread fail the
  // capture, other threads are unaffected.
  static void begin_capture(cudaStream_t stream);
  // Ends the recording and instantiates it. Throws nnr::CudaError when the capture failed.
  static CapturedGraph end_capture(cudaStream_t stream);
  // Ends a capture after a failure, dropping what was recorded. Never throws.
  static void abandon_capture(cudaStream_t stream) noexcept;
  static bool is_capturing(cudaStream_t stream);

  // Queues one execution of the recorded work on `stream`.
  void launch(cudaStream_t stream) const;
  bool empty() const { return exec_ == nullptr; }

 private:
  explicit CapturedGraph(cudaGraphExec_t exec) : exec_(exec) {}
  cudaGraphExec_t exec_ = nullptr;
};

// Page-locked host memory: copies queued from or to it do not wait for the stream, so the host
// must not touch the buffer until the stream has passed them.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace nnr::kernels
