// genlm/backend/cuda/runtime.cuh - CUDA runtime plumbing of the CUDA backend (nvcc only):
// checked calls, device queries, the caching device allocator and the per-device context
// (stream, cuBLAS handle, reduction scratch).
//
// Every CUDA and cuBLAS call goes through GENLM_CUDA_CHECK / GENLM_CUBLAS_CHECK, and every kernel
// launch through cuda_detail::check_launch (GENLM_CUDA_LAUNCH_CHECK): a failure throws
// genlm::cuda_error naming the call, the source location and CUDA's error name and text. Kernel
// faults are asynchronous and surface at the next checked call; with GENLM_CUDA_DEBUG_SYNC=1 in the
// environment every launch is followed by a stream synchronisation so that the faulting kernel is
// the one named.
#pragma once
#if !defined(__CUDACC__) && !defined(GENLM_CUDA_EMULATOR)
#error "genlm/backend/cuda/runtime.cuh needs nvcc: include it only from .cu translation units"
#endif
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <genlm/core/error.hpp>

namespace genlm {

/// A failed CUDA runtime / cuBLAS call or kernel launch (the message names the call).
class cuda_error : public error {
 public:
  using error::error;
};

namespace cuda_detail {

inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so later calls start clean
    throw cuda_error(detail::concat("CUDA error in ", call, " (", file, ":", line, "): ", cudaGetErrorName(e), ": ",
                                    cudaGetErrorString(e)));
  }
}
inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw cuda_error(detail::concat("cuBLAS error in ", call, " (", file, ":", line, "): ", cublasGetStatusName(s),
                                    ": ", cublasGetStatusString(s)));
}
/// GENLM_CUDA_DEBUG_SYNC=1: synchronise after every kernel launch (pinpoints asynchronous faults).
inline bool debug_sync() {
  static const bool v = [] {
    const char* e = std::getenv("GENLM_CUDA_DEBUG_SYNC");
    return e && *e && *e != '0';
  }();
  return v;
}

/// After a <<<...>>> launch of `kernel` on `stream`: checks the launch (and, in debug-sync mode,
/// its execution). The message is only built on failure (this runs after every launch).
inline void check_launch(const char* kernel, cudaStream_t stream, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) check_cuda(e, ("launch of " + std::string(kernel)).c_str(), file, line);
  if (!debug_sync()) return;
  e = cudaStreamSynchronize(stream);
  if (e != cudaSuccess) check_cuda(e, ("execution of " + std::string(kernel)).c_str(), file, line);
}

}  // namespace cuda_detail
}  // namespace genlm

#define GENLM_CUDA_CHECK(call) ::genlm::cuda_detail::check_cuda((call), #call, __FILE__, __LINE__)
#define GENLM_CUBLAS_CHECK(call) ::genlm::cuda_detail::check_cublas((call), #call, __FILE__, __LINE__)
/// After a <<<...>>> launch on `stream` (see cuda_detail::check_launch).
#define GENLM_CUDA_LAUNCH_CHECK(kernel_name, stream) \
  ::genlm::cuda_detail::check_launch(kernel_name, stream, __FILE__, __LINE__)
/// GENLM_CUDA_KERNEL_LAUNCH(kernel, grid, block, stream, name)(args...) is
/// kernel<<<grid, block, 0, stream>>>(args...). The one other expansion is the host emulator's
/// (tests/cuda_emu, GENLM_CUDA_EMULATOR: the kernels run as C++ on the CPU, for the parity tests
/// on machines without a GPU); `name` is only used there.
#if defined(GENLM_CUDA_EMULATOR)
#define GENLM_CUDA_KERNEL_LAUNCH(kernel, grid, block, stream, name) \
  ::genlm_cuda_emu::launch_config(kernel, grid, block, stream, name)
#else
#define GENLM_CUDA_KERNEL_LAUNCH(kernel, grid, block, stream, name) kernel<<<grid, block, 0, stream>>>
#endif

namespace genlm {

/// Device queries. count() never throws: no driver, no device or a broken installation all give 0.
struct cuda_device {
  static int count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return n;
  }
  static bool available() noexcept { return count() > 0; }
  /// The calling thread's device; throws cuda_error when there is no usable device or driver.
  static int current() {
    int d = 0;
    const cudaError_t e = cudaGetDevice(&d);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      throw cuda_error(detail::concat("genlm CUDA backend: no usable CUDA device (cudaGetDevice: ", cudaGetErrorName(e),
                                      ": ", cudaGetErrorString(e),
                                      "); device tensors need an NVIDIA GPU and its driver"));
    }
    return d;
  }
  /// Makes device d current for the calling thread (cudaSetDevice); range-checked.
  static void set(int d) {
    const int n = count();
    check<cuda_error>(d >= 0 && d < n, "cuda_device::set: device ", d, " requested but ", n,
                      " CUDA device(s) are visible (CUDA_VISIBLE_DEVICES='",
                      std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "", "')");
    GENLM_CUDA_CHECK(cudaSetDevice(d));
  }
  static cudaDeviceProp properties(int d = -1) {
    if (d < 0) d = current();
    cudaDeviceProp p{};
    GENLM_CUDA_CHECK(cudaGetDeviceProperties(&p, d));
    return p;
  }
  static std::string name(int d = -1) { return properties(d).name; }
  static int compute_capability(int d = -1) {
    const cudaDeviceProp p = properties(d);
    return p.major * 10 + p.minor;
  }
};

/// Caching device allocator (the idea of PyTorch's): freed blocks are kept per device and size and
/// handed out again, so steady-state training makes no cudaMalloc/cudaFree calls. Requests are
/// rounded up (512 B below 1 MiB, else to whole MiB); a cached block is reused for a request of
/// at least half its size. Blocks are reused in the order of the backend's stream (every genlm
/// kernel runs on it), so no event is needed; work on other streams (NCCL) must be synchronised
/// before its buffers are freed. When cudaMalloc fails, the cache of that device is released and
/// the call retried once; a second failure throws cuda_error with the sizes involved.
/// GENLM_CUDA_ALLOCATOR=plain (or set_caching(false)) makes every allocation a cudaMalloc of the
/// requested size.
class cuda_allocator {
 public:
  struct statistics {
    std::size_t bytes_in_use = 0;  // handed out and not yet freed
    std::size_t bytes_cached = 0;  // freed, kept for reuse
    std::size_t peak_bytes = 0;    // max of bytes_in_use since start / reset_peak()
    std::size_t cuda_mallocs = 0;  // cudaMalloc calls made
    std::size_t allocations = 0;   // allocate() calls (served from the cache or by cudaMalloc)
  };

  static void* allocate(std::size_t bytes) {
    if (bytes == 0) bytes = 1;
    // round() would wrap past SIZE_MAX and serve a huge request with a small block
    check<cuda_error>(bytes <= std::numeric_limits<std::size_t>::max() / 2, "cuda_allocator: cannot allocate ", bytes,
                      " bytes (larger than any device memory)");
    state& s = st();
    std::lock_guard<std::mutex> lock(s.mu);
    ++s.allocations;
    const int dev = cuda_device::current();
    // rounded to size classes for reuse; without caching the exact size (cudaMalloc aligns anyway,
    // and a memory checker then sees the true end of every buffer)
    const std::size_t want = s.caching ? round(bytes) : bytes;
    if (s.caching) {
      auto it = s.free.lower_bound({dev, want});
      if (it != s.free.end() && it->first.first == dev && it->first.second <= 2 * want) {
        void* p = it->second;
        const std::size_t sz = it->first.second;
        s.free.erase(it);
        s.bytes_cached -= sz;
        note_use(s, p, sz, dev);
        return p;
      }
    }
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, want);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      release_device_locked(s, dev);
      e = cudaMalloc(&p, want);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      std::size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      (void)cudaGetLastError();
      throw cuda_error(detail::concat("CUDA error in cudaMalloc(", want, " bytes) on device ", dev, ": ",
                                      cudaGetErrorName(e), ": ", cudaGetErrorString(e), " (device free ", free_b,
                                      " of ", total_b, " bytes; genlm holds ", s.bytes_in_use, " in use, ",
                                      s.bytes_cached, " cached)"));
    }
    ++s.mallocs;
    note_use(s, p, want, dev);
    return p;
  }

  static void deallocate(void* p) {
    if (!p) return;
    state& s = st();
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.live.find(p);
    if (it == s.live.end()) return;  // not ours (never happens for tensors)
    const auto [sz, dev] = it->second;
    s.live.erase(it);
    s.bytes_in_use -= sz;
    if (s.caching) {
      s.free.emplace(std::make_pair(dev, sz), p);
      s.bytes_cached += sz;
    } else {
      cudaFree(p);  // errors here (e.g. at process exit after a fault) must not throw from destructors
      (void)cudaGetLastError();
    }
  }

  static statistics stats() {
    state& s = st();
    std::lock_guard<std::mutex> lock(s.mu);
    return {s.bytes_in_use, s.bytes_cached, s.peak, s.mallocs, s.allocations};
  }
  static void reset_peak() {
    state& s = st();
    std::lock_guard<std::mutex> lock(s.mu);
    s.peak = s.bytes_in_use;
  }
  /// Frees every cached block of every device (synchronises those devices first).
  static void release_cached() {
    state& s = st();
    std::lock_guard<std::mutex> lock(s.mu);
    int cur = 0;
    GENLM_CUDA_CHECK(cudaGetDevice(&cur));
    for (auto it = s.free.begin(); it != s.free.end();) {
      GENLM_CUDA_CHECK(cudaSetDevice(it->first.first));
      GENLM_CUDA_CHECK(cudaDeviceSynchronize());
      GENLM_CUDA_CHECK(cudaFree(it->second));
      s.bytes_cached -= it->first.second;
      it = s.free.erase(it);
    }
    GENLM_CUDA_CHECK(cudaSetDevice(cur));
  }
  static void set_caching(bool on) {
    if (!on) release_cached();
    state& s = st();
    std::lock_guard<std::mutex> lock(s.mu);
    s.caching = on;
  }
  static bool caching() {
    state& s = st();
    std::lock_guard<std::mutex> lock(s.mu);
    return s.caching;
  }

 private:
  struct state {
    std::mutex mu;
    bool caching = true;
    std::multimap<std::pair<int, std::size_t>, void*> free;          // (device, size) -> block
    std::unordered_map<void*, std::pair<std::size_t, int>> live;     // block -> (size, device)
    std::size_t bytes_in_use = 0, bytes_cached = 0, peak = 0, mallocs = 0, allocations = 0;
  };
  // Never destroyed: tensors with static storage may be freed after other statics are gone.
  static state& st() {
    static state* s = [] {
      auto* n = new state;
      const char* e = std::getenv("GENLM_CUDA_ALLOCATOR");
      if (e && std::string(e) == "plain") n->caching = false;
      return n;
    }();
    return *s;
  }
  static std::size_t round(std::size_t b) {
    constexpr std::size_t small = 512, mib = std::size_t(1) << 20;
    return b < mib ? (b + small - 1) / small * small : (b + mib - 1) / mib * mib;
  }
  static void note_use(state& s, void* p, std::size_t sz, int dev) {
    s.live[p] = {sz, dev};
    s.bytes_in_use += sz;
    s.peak = std::max(s.peak, s.bytes_in_use);
  }
  static void release_device_locked(state& s, int dev) {
    (void)cudaDeviceSynchronize();
    for (auto it = s.free.begin(); it != s.free.end();) {
      if (it->first.first == dev) {
        cudaFree(it->second);
        s.bytes_cached -= it->first.second;
        it = s.free.erase(it);
      } else {
        ++it;
      }
    }
    (void)cudaGetLastError();
  }
};

/// Pinned host staging of host -> device copies (one per device, in cuda_context). A copy from
/// pageable memory (any std::vector) may make the driver wait for the stream's earlier work, so an
/// upload between two training steps would stall the host until the GPU is idle. Here the
/// caller's bytes are memcpy'd into a pinned ring buffer and the DMA is queued on the stream from
/// there: the host returns at once, the caller's buffer may be reused at once, and the copy runs
/// in stream order. Each staged piece carries an event recorded after its DMA; a region of the
/// ring is written again only after its events completed (the oldest are waited for when the ring
/// is full). Copies larger than the ring go through it in ring-sized pieces.
class upload_ring {
 public:
  static constexpr std::size_t capacity = std::size_t(32) << 20;  // pinned bytes per device

  upload_ring() = default;
  upload_ring(const upload_ring&) = delete;
  upload_ring& operator=(const upload_ring&) = delete;

  /// dst (device) <- src (host, any memory), n bytes, in the order of `stream`.
  void copy(void* dst, const void* src, std::size_t n, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!buf_) GENLM_CUDA_CHECK(cudaMallocHost(&buf_, capacity));
    auto* d = static_cast<unsigned char*>(dst);
    const auto* h = static_cast<const unsigned char*>(src);
    while (n > 0) {
      const std::size_t piece = std::min(n, capacity);
      const std::size_t at = reserve(piece);
      std::memcpy(buf_ + at, h, piece);
      GENLM_CUDA_CHECK(cudaMemcpyAsync(d, buf_ + at, piece, cudaMemcpyHostToDevice, stream));
      cudaEvent_t ev = nullptr;
      if (!spare_.empty()) {
        ev = spare_.back();
        spare_.pop_back();
      } else {
        GENLM_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
      }
      GENLM_CUDA_CHECK(cudaEventRecord(ev, stream));
      busy_.push_back({at, at + piece, ev});
      head_ = at + piece;
      d += piece;
      h += piece;
      n -= piece;
    }
  }

 private:
  struct region {
    std::size_t begin, end;  // [begin, end) of buf_
    cudaEvent_t done;        // recorded after the region's DMA
  };

  /// The offset of n free bytes (n <= capacity): after the last piece, or from the start when they
  /// do not fit before the end; regions in the way are waited for, oldest first.
  std::size_t reserve(std::size_t n) {
    retire(false);
    for (;;) {
      const std::size_t at = head_ + n <= capacity ? head_ : 0;
      const bool clash = std::any_of(busy_.begin(), busy_.end(),
                                     [&](const region& r) { return r.begin < at + n && at < r.end; });
      if (!clash) return at;
      retire(true);  // waits for the oldest region
    }
  }
  /// Frees the regions whose copies completed, oldest first; with `wait_one`, waits for the oldest.
  void retire(bool wait_one) {
    while (!busy_.empty()) {
      region& r = busy_.front();
      if (wait_one) {
        GENLM_CUDA_CHECK(cudaEventSynchronize(r.done));
        wait_one = false;
      } else {
        const cudaError_t e = cudaEventQuery(r.done);
        if (e == cudaErrorNotReady) {
          (void)cudaGetLastError();
          return;
        }
        GENLM_CUDA_CHECK(e);
      }
      spare_.push_back(r.done);
      busy_.erase(busy_.begin());
    }
  }

  std::mutex mu_;  // one host thread per device is the rule; this keeps a second one safe
  unsigned char* buf_ = nullptr;  // (capacity) pinned
  std::size_t head_ = 0;          // end of the newest piece
  std::vector<region> busy_;      // oldest first
  std::vector<cudaEvent_t> spare_;
};

/// Per-device resources of the backend: one non-blocking stream on which every op runs, a cuBLAS
/// handle bound to it, scratch for reductions (device partials + pinned host results) and for
/// column sums, and the pinned staging of uploads. Created on first use of a device, never
/// destroyed (the driver reclaims them at exit).
struct cuda_context {
  static constexpr int max_devices = 64;
  static constexpr int reduce_blocks = 512;  // fixed grid of the deterministic two-pass reductions

  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  double* d_partial = nullptr;              // (reduce_blocks) per-block partial sums
  unsigned long long* d_count = nullptr;    // (reduce_blocks) per-block partial counts
  double* d_result = nullptr;               // (2) final values
  double* h_result = nullptr;               // (2) pinned host copy
  upload_ring uploads;                      // host -> device copies (copy_from_host)

  /// Device scratch of at least `bytes`, grown (never shrunk) through the caching allocator: for
  /// partial results that one op's kernels write and then read (the column sums' row-chunk
  /// partials), so that such an op allocates nothing once the largest batch has been seen. Ops
  /// run in stream order, so the next user of the scratch runs after the last one's kernels, and
  /// an outgrown block is freed in stream order too (as every block of the allocator).
  void* scratch(std::size_t bytes) {
    if (bytes > scratch_bytes_) {
      cuda_allocator::deallocate(scratch_);
      scratch_ = nullptr;  // if allocate throws: no scratch, grown on the next call
      scratch_bytes_ = 0;
      scratch_ = cuda_allocator::allocate(bytes);
      scratch_bytes_ = bytes;
    }
    return scratch_;
  }
  // One scratch set per device: two host threads reducing on one device at once would overwrite
  // each other's results (one host thread per device is the backend's rule, docs/GPU.md).

  /// The context of the calling thread's current device. Every op asks for it: a thread's
  /// contexts are remembered per thread (contexts are never destroyed), so only a thread's first
  /// op on a device takes the global lock.
  static cuda_context& get() {
    const int dev = cuda_device::current();
    check<cuda_error>(dev >= 0 && dev < max_devices, "cuda_context: device ", dev, " >= ", max_devices);
    thread_local std::array<cuda_context*, max_devices> mine{};
    if (cuda_context* c = mine[std::size_t(dev)]) return *c;
    return *(mine[std::size_t(dev)] = &create(dev));
  }

 private:
  /// The process's context of device dev, created on first use.
  static cuda_context& create(int dev) {
    static std::mutex mu;
    static std::array<cuda_context*, max_devices> ctx{};
    std::lock_guard<std::mutex> lock(mu);
    if (!ctx[std::size_t(dev)]) {
      auto* c = new cuda_context;
      c->device = dev;
      GENLM_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
      GENLM_CUBLAS_CHECK(cublasCreate(&c->blas));
      GENLM_CUBLAS_CHECK(cublasSetStream(c->blas, c->stream));
      GENLM_CUBLAS_CHECK(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));  // precision comes from computeType
      GENLM_CUDA_CHECK(cudaMalloc(&c->d_partial, sizeof(double) * reduce_blocks));
      GENLM_CUDA_CHECK(cudaMalloc(&c->d_count, sizeof(unsigned long long) * reduce_blocks));
      GENLM_CUDA_CHECK(cudaMalloc(&c->d_result, sizeof(double) * 2));
      GENLM_CUDA_CHECK(cudaMallocHost(&c->h_result, sizeof(double) * 2));
      ctx[std::size_t(dev)] = c;
    }
    return *ctx[std::size_t(dev)];
  }

  void* scratch_ = nullptr;
  std::size_t scratch_bytes_ = 0;
};

}  // namespace genlm
