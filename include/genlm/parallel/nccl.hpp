// genlm/parallel/nccl.hpp - the NCCL communicator policy (GPU data parallelism).
//
// Compiled only when the including translation unit is built with nvcc (__CUDACC__) or defines
// GENLM_WITH_NCCL (host compiler + cuda_runtime_api.h + nccl.h, linking CUDA::cudart and nccl);
// otherwise this header is empty, so CPU-only users never need CUDA.
//
// comm::nccl wraps one ncclComm_t on one device with its own CUDA stream:
// - allreduce_sum(T* device_ptr, n) and allreduce_sum_buckets(..., host_pointer = false, ...)
//   work in place on device memory (what a CUDA backend's flat gradient buffer will use);
// - the *_host operations and allreduce_sum_buckets(..., host_pointer = true, ...) stage host
//   buffers through a device buffer (H2D copy, the collectives, then copy_out: the bounded wait
//   and the D2H copy). This is how a CPU model's gradients are reduced over NCCL
//   (train_nccl --backend cpu; docs/DISTRIBUTED.md: correct, but not fast);
// - control operations (counts, strings, hashes) also go through NCCL, so a job needs MPI (or any
//   other channel) only to share the ncclUniqueId; single-process multi-GPU (ncclCommInitAll,
//   one thread per GPU) needs nothing else.
// Bounded waiting: every operation polls cudaStreamQuery and ncclCommGetAsyncError; when it has
// not completed after timeout_s seconds (a peer died or hung) or NCCL reports an asynchronous
// error, the communicator is aborted with ncclCommAbort and comm_error is thrown naming the
// operation. Communicator creation (ncclCommInitRank blocks until every rank joins) is guarded by a
// watchdog that ends the process after the same timeout.
// Single-process multi-GPU (run_threads: one thread per device): the communicators share a
// failure flag. A thread that fails (its comm::nccl destroyed while an exception unwinds, or an
// aborted communicator) raises it, and the other threads' collectives end at once with
// comm_abandoned instead of waiting out the timeout for a peer that will never arrive.
#pragma once
#if defined(__CUDACC__) || defined(GENLM_WITH_NCCL)
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

#include <genlm/core/error.hpp>
#include <genlm/parallel/comm.hpp>
#include <genlm/parallel/watchdog.hpp>

namespace genlm::comm {

/// A collective given up because another thread of the same process failed first (comm::nccl
/// single-process mode): a consequence, not the cause; run_threads' rethrow_first skips it.
class comm_abandoned : public comm_error {
 public:
  using comm_error::comm_error;
};

class nccl {
 public:
  static constexpr bool device_memory = true;
  /// Shared by the communicators of one process (run_threads): raised when one of them fails.
  using failure_flag = std::shared_ptr<std::atomic<bool>>;

  /// A fresh id, made by one rank and shared with all (e.g. with MPI_Bcast of its bytes).
  static ncclUniqueId unique_id() {
    ncclUniqueId id;
    nccl_ok(ncclGetUniqueId(&id), "ncclGetUniqueId");
    return id;
  }
  /// One communicator per device for single-process multi-GPU use (ncclCommInitAll); hand each to
  /// a comm::nccl constructed in the thread that drives that device.
  static std::vector<ncclComm_t> init_all(const std::vector<int>& devices) {
    std::vector<ncclComm_t> comms(devices.size());
    nccl_ok(ncclCommInitAll(comms.data(), int(devices.size()), devices.data()), "ncclCommInitAll");
    return comms;
  }
  /// Number of visible CUDA devices (0 when there is none or no usable driver; `why` says which).
  static int device_count(std::string* why = nullptr) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      if (why) *why = cudaGetErrorString(e);
      return 0;
    }
    if (why && n == 0) *why = "no CUDA device";
    return n;
  }

  /// Rank `rank` of `size` processes (every rank passes the same id) on CUDA device `device`.
  nccl(int rank, int size, const ncclUniqueId& id, int device, double timeout_s = 300.0)
      : device_(device), timeout_(timeout_s) {
    cuda_ok(cudaSetDevice(device_), "cudaSetDevice");
    {
      parallel::watchdog wd(timeout_s, [rank, size](const std::string& what, double t) {
        std::fprintf(stderr,
                     "genlm[rank %d/%d]: error: %s did not complete within %g s (a rank did not join; check that "
                     "every rank started and shares the same NCCL id); ending this process\n",
                     rank, size, what.c_str(), t);
        std::fflush(stderr);
        std::_Exit(3);
      });
      parallel::watchdog_guard g(&wd, "ncclCommInitRank");
      nccl_ok(ncclCommInitRank(&comm_, size, id, rank), "ncclCommInitRank");
    }
    finish_init();
  }
  /// Adopts a communicator made by init_all (or by the caller); destroys it at the end. With a
  /// failure flag shared by the process's communicators (see run_threads), a failure of one
  /// thread ends the others' collectives at once.
  nccl(ncclComm_t adopted, int device, double timeout_s = 300.0, failure_flag group_failed = nullptr)
      : comm_(adopted), device_(device), timeout_(timeout_s), group_failed_(std::move(group_failed)) {
    cuda_ok(cudaSetDevice(device_), "cudaSetDevice");
    finish_init();
  }
  /// Destroyed while an exception unwinds (the thread failed), or after the group failed: the
  /// communicator is aborted (ncclCommDestroy could wait on peers) and the group flag raised.
  ~nccl() {
    cudaSetDevice(device_);
    if (std::uncaught_exceptions() > uncaught_at_start_ || group_has_failed()) abort_comm();
    if (comm_) ncclCommDestroy(comm_);
    if (buf_) cudaFree(buf_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  nccl(const nccl&) = delete;
  nccl& operator=(const nccl&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int device() const { return device_; }
  std::string name() const { return "nccl"; }
  /// Single-process multi-GPU: one thread per device, each running f(nc) on a comm::nccl of its
  /// own (communicators from init_all, one failure flag). Returns each device's exception, null
  /// where f returned; a failing thread makes the others' collectives throw comm_abandoned.
  template <class F>
  static std::vector<std::exception_ptr> run_threads(const std::vector<int>& devices, double timeout_s, F&& f) {
    std::vector<ncclComm_t> comms = init_all(devices);
    auto failed = std::make_shared<std::atomic<bool>>(false);
    std::vector<std::exception_ptr> errors(devices.size());
    std::vector<std::thread> threads;
    threads.reserve(devices.size());
    for (std::size_t g = 0; g < devices.size(); ++g)
      threads.emplace_back([&, g] {
        try {
          nccl nc(comms[g], devices[g], timeout_s, failed);
          f(nc);
        } catch (...) {
          failed->store(true);
          errors[g] = std::current_exception();
        }
      });
    for (auto& t : threads) t.join();
    return errors;
  }
  /// Rethrows the error that started a failure of run_threads: the first that is not
  /// comm_abandoned (else the first); returns when there is none.
  static void rethrow_first(const std::vector<std::exception_ptr>& errors) {
    std::exception_ptr first;
    for (const auto& e : errors) {
      if (!e) continue;
      try {
        std::rethrow_exception(e);
      } catch (const comm_abandoned&) {
        if (!first) first = e;
      } catch (...) {
        std::rethrow_exception(e);
      }
    }
    if (first) std::rethrow_exception(first);
  }
  cudaStream_t stream() const { return stream_; }
  ncclComm_t native() const { return comm_; }

  /// In place on device memory.
  template <class T>
  void allreduce_sum(T* dev, std::size_t n, std::string_view what = "allreduce") {
    begin(what);
    nccl_ok(ncclAllReduce(dev, dev, n, type<T>(), ncclSum, comm_, stream_), what);
    wait(what);
  }
  template <class T>
  void allreduce_sum_host(T* host, std::size_t n, std::string_view what = "allreduce") {
    reduce_host(host, n, ncclSum, what);
  }
  template <class T>
  void allreduce_max_host(T* host, std::size_t n, std::string_view what = "allreduce (max)") {
    reduce_host(host, n, ncclMax, what);
  }
  template <class T>
  void broadcast_host(T* host, std::size_t n, int root, std::string_view what = "broadcast") {
    if (n == 0) return;
    begin(what);
    T* d = staging<T>(n);
    cuda_ok(cudaMemcpyAsync(d, host, n * sizeof(T), cudaMemcpyHostToDevice, stream_), what);
    nccl_ok(ncclBroadcast(d, d, n, type<T>(), root, comm_, stream_), what);
    copy_out(host, d, n, what);
  }
  void broadcast_bytes(std::string& bytes, int root, std::string_view what = "broadcast") {
    std::uint64_t n = bytes.size();
    broadcast_host(&n, 1, root, what);
    if (rank_ != root) parallel::resize_bytes(bytes, n, genlm::detail::concat("comm (", what, ") on rank ", rank_));
    broadcast_host(reinterpret_cast<unsigned char*>(bytes.data()), std::size_t(n), root, what);
  }
  std::vector<std::string> allgather(const std::string& s, std::string_view what = "allgather") {
    const std::size_t P = std::size_t(size_);
    std::vector<std::int64_t> lens(P, 0);
    lens[std::size_t(rank_)] = std::int64_t(s.size());
    gather_host(lens.data(), 1, what);
    std::size_t maxlen = 0;
    for (auto l : lens) maxlen = std::max(maxlen, std::size_t(l));
    std::vector<unsigned char> all(P * maxlen, 0);
    std::copy(s.begin(), s.end(), all.begin() + std::ptrdiff_t(std::size_t(rank_) * maxlen));
    if (maxlen) gather_host(all.data(), maxlen, what);
    std::vector<std::string> out;
    for (std::size_t r = 0; r < P; ++r)
      out.emplace_back(reinterpret_cast<const char*>(all.data()) + r * maxlen, std::size_t(lens[r]));
    return out;
  }
  void barrier(std::string_view what = "barrier") {
    int x = 0;
    allreduce_sum_host(&x, 1, what);
  }

  /// Buckets (last first) are all-reduced in order on the stream; a host buffer is staged whole
  /// (H2D before the first all-reduce, D2H after the bounded wait: copy_out). Every bucket
  /// completes at that one wait, so on_bucket_done runs once, on the whole buffer: a callback that
  /// reads device memory (the data-parallel trainer's non-finite count, a reduction that waits
  /// for the device) then waits once per step instead of once per bucket (266 buckets of 4 MiB
  /// for the paper model's 278,868,000 float32 gradients).
  template <class T, class F>
  void allreduce_sum_buckets(T* p, std::size_t n, bool host_pointer, std::size_t bucket_elems, F&& on_bucket_done,
                             std::string_view what = "bucketed allreduce") {
    if (n == 0) return;
    if (bucket_elems == 0) bucket_elems = n;
    begin(what);
    T* d = host_pointer ? staging<T>(n) : p;
    std::vector<std::pair<std::size_t, std::size_t>> buckets;
    for (std::size_t hi = n; hi > 0;) {
      const std::size_t lo = hi > bucket_elems ? hi - bucket_elems : 0;
      buckets.emplace_back(lo, hi - lo);
      hi = lo;
    }
    if (host_pointer) cuda_ok(cudaMemcpyAsync(d, p, n * sizeof(T), cudaMemcpyHostToDevice, stream_), what);
    for (const auto& [lo, c] : buckets)
      nccl_ok(ncclAllReduce(d + lo, d + lo, c, type<T>(), ncclSum, comm_, stream_), what);
    if (host_pointer) copy_out(p, d, n, what);
    else wait(what);
    on_bucket_done(p, n);  // the buckets tile [0, n) and are all complete
  }

 private:
  void finish_init() {
    nccl_ok(ncclCommCount(comm_, &size_), "ncclCommCount");
    nccl_ok(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
    cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }

  template <class T>
  static ncclDataType_t type() {
    if constexpr (std::is_same_v<T, float>) return ncclFloat32;
    else if constexpr (std::is_same_v<T, double>) return ncclFloat64;
    else if constexpr (std::is_same_v<T, std::int64_t>) return ncclInt64;
    else if constexpr (std::is_same_v<T, std::uint64_t>) return ncclUint64;
    else if constexpr (std::is_same_v<T, int>) return ncclInt32;
    else if constexpr (std::is_same_v<T, unsigned char> || std::is_same_v<T, char>) return ncclUint8;
    else static_assert(sizeof(T) == 0, "comm::nccl: unsupported element type");
  }

  void begin(std::string_view what) {
    check<comm_error>(!aborted_, "comm::nccl (rank ", rank_, "): '", what,
                      "' called on a communicator that was aborted after an earlier failure");
    if (group_has_failed()) abandon(what);
    cuda_ok(cudaSetDevice(device_), what);
    parallel::detail::set_activity(std::string("waiting in NCCL collective '").append(what).append("'"));
  }

  template <class T>
  T* staging(std::size_t n) {
    const std::size_t bytes = std::max<std::size_t>(n * sizeof(T), 256);
    if (bytes > cap_) {
      if (buf_) cuda_ok(cudaFree(buf_), "cudaFree");
      buf_ = nullptr;
      cuda_ok(cudaMalloc(&buf_, bytes), "cudaMalloc of the NCCL staging buffer");
      cap_ = bytes;
    }
    return static_cast<T*>(buf_);
  }

  template <class T>
  void reduce_host(T* host, std::size_t n, ncclRedOp_t op, std::string_view what) {
    if (n == 0) return;
    begin(what);
    T* d = staging<T>(n);
    cuda_ok(cudaMemcpyAsync(d, host, n * sizeof(T), cudaMemcpyHostToDevice, stream_), what);
    nccl_ok(ncclAllReduce(d, d, n, type<T>(), op, comm_, stream_), what);
    copy_out(host, d, n, what);
  }

  /// host[r*count .. (r+1)*count) of every rank r gathered into every rank's host buffer.
  template <class T>
  void gather_host(T* host, std::size_t count, std::string_view what) {
    begin(what);
    const std::size_t total = count * std::size_t(size_);
    T* d = staging<T>(total);
    const std::size_t mine = std::size_t(rank_) * count;
    cuda_ok(cudaMemcpyAsync(d + mine, host + mine, count * sizeof(T), cudaMemcpyHostToDevice, stream_), what);
    nccl_ok(ncclAllGather(d + mine, d, count, type<T>(), comm_, stream_), what);
    copy_out(host, d, total, what);
  }

  /// Waits (bounded) for the collectives on the stream, then copies their result from the device
  /// to `host`. Host buffers here are pageable, and a copy into pageable memory returns only when
  /// it is done, i.e. after all earlier work on the stream: issued before the bounded wait, it
  /// would block on a collective whose peer hung, with no timeout and no abort. (A copy from
  /// pageable memory may synchronise the stream first, so host -> device copies come before the
  /// collectives, while the stream is idle.)
  template <class T>
  void copy_out(T* host, const T* d, std::size_t n, std::string_view what) {
    wait(what);
    cuda_ok(cudaMemcpyAsync(host, d, n * sizeof(T), cudaMemcpyDeviceToHost, stream_), what);
    wait(what);
  }

  /// Bounded wait for the stream; aborts the communicator on timeout or asynchronous error.
  void wait(std::string_view what) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) break;
      if (e != cudaErrorNotReady) {
        abort_comm();
        throw comm_error(genlm::detail::concat("rank ", rank_, ": CUDA error in '", what, "': ", cudaGetErrorString(e)));
      }
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        abort_comm();
        throw comm_error(genlm::detail::concat("rank ", rank_, ": NCCL error in '", what,
                                               "': ", ncclGetErrorString(async), " (a peer failed?)"));
      }
      if (group_has_failed()) abandon(what);
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (timeout_ > 0 && waited > timeout_) {
        abort_comm();
        throw comm_error(genlm::detail::concat(
            "rank ", rank_, " of ", size_, ": NCCL collective '", what, "' did not complete within ", timeout_,
            " s: another rank has died, hung, or is far behind; the communicator was aborted. Checkpoints already "
            "written are intact."));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    parallel::detail::set_activity("computing (between collectives)");
  }
  /// Aborts the communicator and raises the group's failure flag (the peers of this process
  /// then stop waiting for this rank).
  void abort_comm() {
    if (!aborted_ && comm_) ncclCommAbort(comm_);
    aborted_ = true;
    comm_ = nullptr;
    if (group_failed_) group_failed_->store(true);
  }
  bool group_has_failed() const { return group_failed_ && group_failed_->load(); }
  [[noreturn]] void abandon(std::string_view what) {
    abort_comm();
    throw comm_abandoned(genlm::detail::concat("rank ", rank_, " of ", size_, ": NCCL collective '", what,
                                               "' abandoned: another thread of this process failed (its error is "
                                               "reported); the communicator was aborted"));
  }

  static void nccl_ok(ncclResult_t r, std::string_view what) {
    if (r != ncclSuccess && r != ncclInProgress)
      throw comm_error(genlm::detail::concat("NCCL call failed in '", what, "': ", ncclGetErrorString(r)));
  }
  static void cuda_ok(cudaError_t e, std::string_view what) {
    if (e != cudaSuccess) throw comm_error(genlm::detail::concat("CUDA call failed in '", what, "': ", cudaGetErrorString(e)));
  }

  ncclComm_t comm_ = nullptr;
  int device_ = 0, rank_ = 0, size_ = 1;
  double timeout_ = 300.0;
  cudaStream_t stream_ = nullptr;
  void* buf_ = nullptr;
  std::size_t cap_ = 0;
  bool aborted_ = false;
  failure_flag group_failed_;
  int uncaught_at_start_ = std::uncaught_exceptions();
};

}  // namespace genlm::comm
#endif  // __CUDACC__ || GENLM_WITH_NCCL
