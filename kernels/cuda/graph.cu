#include "kernels/cuda/graph.h"

#include <cstdio>
#include <utility>

#include "kernels/cuda/cuda_check.h"

namespace nnr::kernels {

CapturedGraph::~CapturedGraph() {
  if (!exec_) return;
  const cudaError_t status = cudaGraphExecDestroy(exec_);
  if (status != cudaSuccess) std::fprintf(stderr, "[graph] cudaGraphExecDestroy failed: %s\n", cudaGetErrorString(status));
}

CapturedGraph::CapturedGraph(CapturedGraph&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}

CapturedGraph& CapturedGraph::operator=(CapturedGraph&& other) noexcept {
  if (this != &other) {
    CapturedGraph old(std::move(*this));
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

void CapturedGraph::begin_capture(cudaStream_t stream) {
  NNR_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
}

CapturedGraph CapturedGraph::end_capture(cudaStream_t stream) {
  cudaGraph_t graph = nullptr;
  cudaError_t status = cudaStreamEndCapture(stream, &graph);
  cudaGraphExec_t exec = nullptr;
  if (status == cudaSuccess) status = cudaGraphInstantiate(&exec, graph, 0);
  if (graph) (void)cudaGraphDestroy(graph);  // the executable graph is independent of its template
  if (status != cudaSuccess) {
    // The capture is over either way; clear the error so a later launch check does not report it.
    (void)cudaGetLastError();
    throw_cuda_error("cuda", "cudaStreamEndCapture / cudaGraphInstantiate", cudaGetErrorString(status), __FILE__,
                     __LINE__);
  }
  return CapturedGraph(exec);
}

void CapturedGraph::abandon_capture(cudaStream_t stream) noexcept {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess) capture = cudaStreamCaptureStatusNone;
  (void)cudaGetLastError();  // the failure that led here must not surface at a later launch check
  if (capture == cudaStreamCaptureStatusNone) return;
  cudaGraph_t graph = nullptr;
  (void)cudaStreamEndCapture(stream, &graph);  // fails for an invalidated capture: expected
  if (graph) (void)cudaGraphDestroy(graph);
  (void)cudaGetLastError();
}

bool CapturedGraph::is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  NNR_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  return capture != cudaStreamCaptureStatusNone;
}

void CapturedGraph::launch(cudaStream_t stream) const {
  if (!exec_) throw Error("[graph] launch of an empty graph (nothing was captured)");
  NNR_CUDA_CHECK(cudaGraphLaunch(exec_, stream));
}

PinnedBuffer::PinnedBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes) NNR_CUDA_CHECK(cudaMallocHost(&data_, bytes));
}

PinnedBuffer::~PinnedBuffer() {
  if (!data_) return;
  const cudaError_t status = cudaFreeHost(data_);
  if (status != cudaSuccess) std::fprintf(stderr, "[graph] cudaFreeHost failed: %s\n", cudaGetErrorString(status));
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  if (this != &other) {
    PinnedBuffer old(std::move(*this));
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

}  // namespace nnr::kernels
