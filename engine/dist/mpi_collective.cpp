// The MPI backend of the collective interface (engine/core/collective.h), built as libnnr_mpi.so
// and loaded with dlopen only when nnr runs under an MPI launcher with several ranks.
//
// Each call is a blocking MPI collective on a duplicate of MPI_COMM_WORLD, watched by a thread:
// when a call has waited the timeout for the other ranks (a rank died or hangs), the watchdog
// prints the error (which call, which rank, how long) and ends this rank with exit code 1; the
// launcher then ends the rest. (A blocking call cannot be abandoned; non-blocking calls completed by
// a polling loop were measured 15x slower on a loaded 2-core machine: Open MPI's non-blocking
// collectives progress only while polled.)
// The nonblocking sums (start_all_reduce_sum: a data-parallel step's gradient buckets) are
// MPI_Iallreduce; progress_all_reduce_sums tests them between layers of the backward pass (that is
// when Open MPI moves them), and their wait is one MPI_Waitall, a blocking call watched as above.
// MPI errors are returned, not fatal, so that they become nnr::Error with MPI's message.
// When the launcher ends this rank (SIGTERM: another rank failed, or the run was interrupted) the
// rank says so on stderr before it exits.
#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/core/collective.h"
#include "engine/core/error.h"

namespace nnr {
namespace {

using Clock = std::chrono::steady_clock;

char g_term_message[160];
size_t g_term_length = 0;

void on_term(int) {
  if (g_term_length) {
    ssize_t ignored = write(STDERR_FILENO, g_term_message, g_term_length);
    (void)ignored;
  }
  _exit(143);
}

class MpiCollective final : public Collective {
 public:
  MpiCollective(MPI_Comm comm, double timeout_seconds, bool owns_mpi)
      : comm_(comm), timeout_(timeout_seconds), owns_mpi_(owns_mpi) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    g_term_length = static_cast<size_t>(std::snprintf(
        g_term_message, sizeof g_term_message,
        "error: [collective] rank %d of %d was stopped by the MPI launcher (another rank failed, see its "
        "message, or the run was interrupted)\n",
        rank_, size_));
    if (g_term_length >= sizeof g_term_message) g_term_length = sizeof g_term_message - 1;
    struct sigaction action;
    std::memset(&action, 0, sizeof action);
    action.sa_handler = on_term;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, nullptr);
    watchdog_ = std::thread([this] { watch(); });
  }

  const char* name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* x, int64_t n) override { all_reduce(x, n, MPI_FLOAT, sizeof(float), "floats"); }
  void all_reduce_sum(double* x, int64_t n) override { all_reduce(x, n, MPI_DOUBLE, sizeof(double), "doubles"); }

  void broadcast(void* data, size_t bytes, int root) override {
    if (root < 0 || root >= size_)
      throw InvalidArgument("[collective] broadcast from rank " + std::to_string(root) + " in a run of " +
                            std::to_string(size_) + " ranks");
    check_open("broadcast");
    auto* p = static_cast<char*>(data);
    for (size_t done = 0; done < bytes;) {  // MPI counts are int
      const int part = static_cast<int>(std::min<size_t>(bytes - done, size_t{1} << 30));
      begin("broadcast of " + std::to_string(bytes) + " bytes from rank " + std::to_string(root));
      const int code = MPI_Bcast(p + done, part, MPI_BYTE, root, comm_);
      end();
      check(code, "broadcast");
      done += static_cast<size_t>(part);
    }
  }

  void barrier() override {
    check_open("barrier");
    begin("barrier");
    const int code = MPI_Barrier(comm_);
    end();
    check(code, "barrier");
  }

  void start_all_reduce_sum(float* x, int64_t n) override {
    check_open("start_all_reduce_sum");
    if (n < 0) throw InvalidArgument("[collective] start_all_reduce_sum of a negative count");
    bytes_ += n * static_cast<int64_t>(sizeof(float));
    for (int64_t done = 0; done < n;) {  // MPI counts are int
      const int part = static_cast<int>(std::min<int64_t>(n - done, int64_t{1} << 28));
      MPI_Request request = MPI_REQUEST_NULL;
      // Returns without waiting for the other ranks, but watched all the same.
      begin("start of all_reduce_sum of " + std::to_string(n) + " floats");
      const int code = MPI_Iallreduce(MPI_IN_PLACE, x + done, part, MPI_FLOAT, MPI_SUM, comm_, &request);
      end();
      check(code, "start_all_reduce_sum");
      pending_.push_back(request);
      pending_floats_ += part;
      done += part;
    }
  }

  void progress_all_reduce_sums() override {
    if (pending_.empty() || finished_) return;
    int all_done = 0;
    // Completed requests become MPI_REQUEST_NULL, which the wait skips; errors surface in the wait.
    MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &all_done, MPI_STATUSES_IGNORE);
  }

  void wait_all_reduce_sums() override {
    if (pending_.empty()) return;
    check_open("wait_all_reduce_sums");
    const std::string call = "all_reduce_sum of " + std::to_string(pending_floats_) + " floats in " +
                             std::to_string(pending_.size()) + " nonblocking part" + (pending_.size() == 1 ? "" : "s");
    begin(call);
    const int code = MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE);
    end();
    pending_.clear();
    pending_floats_ = 0;
    check(code, call);
  }

  int64_t bytes_all_reduced() const override { return bytes_; }

  void finish() override {
    if (finished_) return;
    finished_ = true;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    watchdog_.join();
    MPI_Comm_free(&comm_);
    if (owns_mpi_) MPI_Finalize();
  }

 private:
  void all_reduce(void* x, int64_t n, MPI_Datatype type, size_t element, const char* what) {
    check_open("all_reduce_sum");
    if (n < 0) throw InvalidArgument("[collective] all_reduce_sum of a negative count");
    bytes_ += n * static_cast<int64_t>(element);
    auto* p = static_cast<char*>(x);
    for (int64_t done = 0; done < n;) {
      const int part = static_cast<int>(std::min<int64_t>(n - done, int64_t{1} << 28));
      begin("all_reduce_sum of " + std::to_string(n) + " " + what);
      const int code = MPI_Allreduce(MPI_IN_PLACE, p + done * static_cast<int64_t>(element), part, type, MPI_SUM, comm_);
      end();
      check(code, "all_reduce_sum");
      done += part;
    }
  }

  void check_open(const char* call) const {
    if (finished_) throw Error(std::string("[collective] ") + call + " after the run's collectives were finished");
  }

  void check(int code, const std::string& call) const {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    throw Error("[collective] rank " + std::to_string(rank_) + " of " + std::to_string(size_) + ": " + call +
                " failed: " + std::string(text, static_cast<size_t>(length)));
  }

  // The watched call: `call` starts now.
  void begin(const std::string& call) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      call_ = call;
      busy_ = true;
      started_ = Clock::now();
      ++calls_;
    }
    wake_.notify_all();
  }
  void end() {
    std::lock_guard<std::mutex> lock(mutex_);
    busy_ = false;
  }

  void watch() {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_));
    while (!stop_) {
      if (!busy_) {
        wake_.wait(lock);
        continue;
      }
      const uint64_t call = calls_;
      const auto deadline = started_ + limit;
      wake_.wait_until(lock, deadline, [&] { return stop_ || !busy_ || calls_ != call; });
      if (stop_ || !busy_ || calls_ != call || Clock::now() < deadline) continue;
      // The blocking call cannot be abandoned: report and end this rank (exit code 1, as an error).
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%g", timeout_);
      const std::string message = "error: [collective] rank " + std::to_string(rank_) + " of " +
                                  std::to_string(size_) + ": " + call_ + " waited " + seconds +
                                  " s for the other ranks: a rank died or hangs (the limit is "
                                  "NNR_COLLECTIVE_TIMEOUT seconds)\n";
      std::fwrite(message.data(), 1, message.size(), stderr);
      std::fflush(stderr);
      _exit(1);
    }
  }

  MPI_Comm comm_;
  double timeout_;
  bool owns_mpi_;
  int rank_ = 0, size_ = 1;
  int64_t bytes_ = 0;
  bool finished_ = false;
  // The nonblocking sums started since the last wait, and their floats (for the wait's name).
  std::vector<MPI_Request> pending_;
  int64_t pending_floats_ = 0;
  // The watchdog's view of the call in progress.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread watchdog_;
  std::string call_;
  bool busy_ = false, stop_ = false;
  uint64_t calls_ = 0;
  Clock::time_point started_;
};

}  // namespace
}  // namespace nnr

extern "C" __attribute__((visibility("default"))) nnr::Collective* nnr_mpi_collective(double timeout_seconds,
                                                                                   std::string* why) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  const bool owns = !initialized;
  if (owns) {
    int provided = 0;
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
      if (why) *why = "MPI_Init_thread failed";
      return nullptr;
    }
  }
  MPI_Comm comm;
  if (MPI_Comm_dup(MPI_COMM_WORLD, &comm) != MPI_SUCCESS) {
    if (why) *why = "MPI_Comm_dup failed";
    return nullptr;
  }
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  return new nnr::MpiCollective(comm, timeout_seconds, owns);
}
