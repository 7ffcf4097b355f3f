// The NCCL backend of the collective interface (engine/core/collective.h), built as libnnr_nccl.so
// and loaded with dlopen only by a data-parallel CUDA run (cuda_collective()).
//
// One GPU per rank, one communicator over every rank. Device buffers are summed and broadcast by
// NCCL on the caller's stream (the Context's: ordered after the work that wrote them); host buffers,
// the barrier and the end of the run go to the host collective (MPI, or the single process), which
// also carries NCCL's unique id from rank 0 to the others.
//
// Timeout: an NCCL kernel waiting for a dead rank never returns, so each device call is queued and
// then polled (cudaStreamQuery, ncclCommGetAsyncError) until it completes; after
// $NNR_COLLECTIVE_TIMEOUT seconds the communicator is aborted (ncclCommAbort ends its kernels) and
// the call throws nnr::Error naming the call, the rank and the wait. The launcher ends the other
// ranks once this one exits with the error.
// The communicator is nonblocking (config.blocking = 0): its creation, which waits for every rank,
// is polled with the same limit, and so any NCCL call may return ncclInProgress before its work is
// on the stream; each call is settled (ncclCommGetAsyncError polled until it is no longer in
// progress) before its stream is polled or another call is made.
// start_all_reduce_sum_device queues the sum on the caller's stream and returns; the wait polls
// each stream that has sums queued. (On the compute stream the sum runs after the backward kernels
// queued before it and before those queued after: no overlap on the device, only fewer host waits.)
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/collective.h"
#include "engine/core/error.h"

namespace nnr {
namespace {

using Clock = std::chrono::steady_clock;

class NcclCollective final : public Collective {
 public:
  NcclCollective(Collective& host, int device, ncclComm_t comm, double timeout_seconds)
      : host_(host), device_(device), comm_(comm), timeout_(timeout_seconds) {}

  const char* name() const override { return "nccl"; }
  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  int cuda_device() const override { return device_; }

  // Host buffers: the host collective's.
  void all_reduce_sum(float* x, int64_t n) override { host_.all_reduce_sum(x, n); }
  void start_all_reduce_sum(float* x, int64_t n) override { host_.start_all_reduce_sum(x, n); }
  void progress_all_reduce_sums() override { host_.progress_all_reduce_sums(); }
  void all_reduce_sum(double* x, int64_t n) override { host_.all_reduce_sum(x, n); }
  void broadcast(void* data, size_t bytes, int root) override { host_.broadcast(data, bytes, root); }
  void barrier() override { host_.barrier(); }

  void all_reduce_sum_device(float* device_x, int64_t n, float scale, cudaStream_t stream) override {
    if (queue_sum(device_x, n, scale, stream)) wait(stream, "all_reduce_sum_device of " + std::to_string(n) + " floats");
  }

  void start_all_reduce_sum_device(float* device_x, int64_t n, float scale, cudaStream_t stream) override {
    if (!queue_sum(device_x, n, scale, stream)) return;
    for (PendingStream& p : pending_)
      if (p.stream == stream) {
        p.floats += n;
        return;
      }
    pending_.push_back(PendingStream{stream, n});
  }

  void wait_all_reduce_sums() override {
    host_.wait_all_reduce_sums();
    std::vector<PendingStream> pending;
    pending.swap(pending_);
    for (const PendingStream& p : pending)
      wait(p.stream, "all_reduce_sum_device of " + std::to_string(p.floats) + " floats (nonblocking)");
  }

  void broadcast_device(void* device_data, size_t bytes, int root, cudaStream_t stream) override {
    if (root < 0 || root >= size())
      throw InvalidArgument("[collective] broadcast_device from rank " + std::to_string(root) + " in a run of " +
                            std::to_string(size()) + " ranks");
    check_usable("broadcast_device");
    if (bytes == 0) return;
    select_device();
    check(ncclBroadcast(device_data, device_data, bytes, ncclUint8, root, comm_, stream), "broadcast_device");
    settle("broadcast_device");
    wait(stream, "broadcast_device of " + std::to_string(bytes) + " bytes from rank " + std::to_string(root));
  }

  int64_t bytes_all_reduced() const override { return host_.bytes_all_reduced() + device_bytes_; }

  void finish() override {
    if (finished_) return;
    finished_ = true;
    if (!aborted_) {
      // A nonblocking communicator finalizes in the background: settled (with the timeout) first.
      const ncclResult_t finalized = ncclCommFinalize(comm_);
      if (finalized == ncclSuccess || finalized == ncclInProgress) {
        try {
          settle("finish");
        } catch (const Error&) {  // aborted: nothing left to destroy
        }
      }
      if (!aborted_) ncclCommDestroy(comm_);
    }
    host_.finish();
  }

 private:
  struct PendingStream {
    cudaStream_t stream;
    int64_t floats;
  };

  // Queues device_x[i] = sum over ranks of scale_r * x_r[i] on `stream`; false when there is nothing
  // to sum (n == 0).
  bool queue_sum(float* device_x, int64_t n, float scale, cudaStream_t stream) {
    check_usable("all_reduce_sum_device");
    if (n < 0) throw InvalidArgument("[collective] all_reduce_sum_device of a negative count");
    const std::string call = "all_reduce_sum_device of " + std::to_string(n) + " floats";
    device_bytes_ += n * static_cast<int64_t>(sizeof(float));
    if (n == 0) return false;
    select_device();
    // Each rank's input times its own scale, then the sum (NCCL's pre-multiplied sum).
    ncclRedOp_t op;
    check(ncclRedOpCreatePreMulSum(&op, &scale, ncclFloat, ncclScalarHostImmediate, comm_), call);
    settle(call);
    const ncclResult_t queued =
        ncclAllReduce(device_x, device_x, static_cast<size_t>(n), ncclFloat, op, comm_, stream);
    check(queued, call);
    settle(call);
    check(ncclRedOpDestroy(op, comm_), call);  // allowed once the call that used it has returned
    settle(call);
    return true;
  }

  void check_usable(const char* call) const {
    if (finished_) throw Error(std::string("[collective] ") + call + " after the run's collectives were finished");
    if (aborted_) throw Error(std::string("[collective] ") + call + " after NCCL was aborted by an earlier failure");
  }

  // NCCL calls go to the device of the communicator (the caller's thread may have another current).
  void select_device() const {
    const cudaError_t e = cudaSetDevice(device_);
    if (e != cudaSuccess)
      throw Error(where() + "cannot select CUDA device " + std::to_string(device_) + ": " + cudaGetErrorString(e));
  }

  std::string where() const {
    return "[collective] rank " + std::to_string(rank()) + " of " + std::to_string(size()) + ": ";
  }

  // ncclInProgress: the nonblocking communicator is still queueing the call (settle() waits for it).
  void check(ncclResult_t r, const std::string& call) {
    if (r == ncclSuccess || r == ncclInProgress) return;
    const std::string detail = ncclGetLastError(comm_);
    throw Error(where() + call + " failed: " + ncclGetErrorString(r) + (detail.empty() ? "" : " (" + detail + ")"));
  }

  void abort() {
    if (aborted_) return;
    aborted_ = true;
    ncclCommAbort(comm_);
  }

  // Until the last NCCL call on the nonblocking communicator is no longer in progress (its work is
  // on the stream, or it failed); aborts and throws on an error or after the timeout.
  void settle(const std::string& call) {
    const auto start = Clock::now();
    const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
    for (int polls = 0;; ++polls) {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t queried = ncclCommGetAsyncError(comm_, &state);
      if (queried != ncclSuccess) state = queried;
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(call, state);
      const auto waited = Clock::now() - start;
      if (waited >= limit) time_out(call, "NCCL was still queueing it; ");
      if (polls < 64) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  // A failed NCCL call: the communicator is aborted and the error names the call and NCCL's reason.
  [[noreturn]] void fail(const std::string& call, ncclResult_t state) {
    const std::string detail = ncclGetLastError(comm_);
    abort();
    throw Error(where() + call + " failed: " + ncclGetErrorString(state) + (detail.empty() ? "" : " (" + detail + ")"));
  }

  // A wait past NNR_COLLECTIVE_TIMEOUT: aborted, and the error says how long it waited and why.
  [[noreturn]] void time_out(const std::string& call, const std::string& state) {
    abort();
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", timeout_);
    throw Error(where() + call + " waited " + seconds + " s for the other ranks: a rank died or hangs (" + state +
                "the limit is NNR_COLLECTIVE_TIMEOUT seconds)");
  }

  // Until the collective queued on `stream` has completed; polls so that a wait for a rank that
  // died or hangs ends (the first milliseconds spin, as a step's all-reduce mostly ends in them).
  void wait(cudaStream_t stream, const std::string& call) {
    const auto start = Clock::now();
    const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
    for (int polls = 0;; ++polls) {
      const cudaError_t e = cudaStreamQuery(stream);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) {
        abort();
        throw Error(where() + call + " failed on the device: " + cudaGetErrorString(e));
      }
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) fail(call, async);
      const auto waited = Clock::now() - start;
      if (waited >= limit) time_out(call, "");
      if (waited < std::chrono::milliseconds(2) || polls < 64) std::this_thread::yield();
      else std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  Collective& host_;
  int device_;
  ncclComm_t comm_;
  double timeout_;
  int64_t device_bytes_ = 0;
  bool finished_ = false, aborted_ = false;
  std::vector<PendingStream> pending_;  // streams with nonblocking sums queued since the last wait
};

}  // namespace
}  // namespace nnr

extern "C" __attribute__((visibility("default"))) nnr::Collective* nnr_nccl_collective(nnr::Collective* host,
                                                                                    int local_rank, int local_ranks,
                                                                                    double timeout_seconds,
                                                                                    std::string* why) {
  auto fail = [why](const std::string& reason) -> nnr::Collective* {
    if (why) *why = reason;
    return nullptr;
  };
  if (!host) return fail("no host collective");
  int devices = 0;
  const cudaError_t counted = cudaGetDeviceCount(&devices);
  if (counted != cudaSuccess) return fail(std::string("no usable CUDA device (") + cudaGetErrorString(counted) + ")");
  if (devices < local_ranks)
    return fail("this machine has " + std::to_string(devices) + " CUDA device" + (devices == 1 ? "" : "s") +
                " for its " + std::to_string(local_ranks) + " ranks: one GPU per rank (start at most " +
                std::to_string(devices) + " ranks per machine)");
  const int device = local_rank % devices;
  const cudaError_t selected = cudaSetDevice(device);
  if (selected != cudaSuccess)
    return fail("cannot select CUDA device " + std::to_string(device) + ": " + cudaGetErrorString(selected));
  // Rank 0's id and whether it could make one: every rank learns the outcome from the broadcast.
  struct {
    ncclUniqueId id;
    int32_t made;
  } shared{};
  std::string why_not_made;
  if (host->rank() == 0) {
    const ncclResult_t r = ncclGetUniqueId(&shared.id);
    shared.made = r == ncclSuccess;
    if (r != ncclSuccess) why_not_made = ncclGetErrorString(r);
  }
  try {
    host->broadcast(&shared, sizeof shared, 0);  // over MPI (nothing to send for one process)
  } catch (const std::exception& e) {
    return fail(std::string("sending NCCL's unique id: ") + e.what());
  }
  if (!shared.made)
    return fail("rank 0 could not make NCCL's unique id" + (why_not_made.empty() ? "" : ": " + why_not_made));
  const ncclUniqueId& id = shared.id;
  // Nonblocking: the creation waits for every rank, so it is polled and abandoned (ncclCommAbort)
  // after the timeout instead of hanging on a rank that died or never came.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const std::string init = "ncclCommInitRankConfig on device " + std::to_string(device);
  ncclResult_t state = ncclCommInitRankConfig(&comm, host->size(), id, host->rank(), &config);
  const auto start = std::chrono::steady_clock::now();
  const auto limit = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(timeout_seconds));
  while (state == ncclInProgress && comm) {
    if (std::chrono::steady_clock::now() - start >= limit) {
      ncclCommAbort(comm);
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%g", timeout_seconds);
      return fail(init + " waited " + seconds + " s for the other ranks: a rank died or hangs (the limit is "
                  "NNR_COLLECTIVE_TIMEOUT seconds)");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    const ncclResult_t queried = ncclCommGetAsyncError(comm, &state);
    if (queried != ncclSuccess) state = queried;
  }
  if (state != ncclSuccess) {
    const std::string detail = comm ? ncclGetLastError(comm) : "";
    if (comm) ncclCommAbort(comm);
    return fail(init + ": " + ncclGetErrorString(state) + (detail.empty() ? "" : " (" + detail + ")"));
  }
  return new nnr::NcclCollective(*host, device, comm, timeout_seconds);
}
