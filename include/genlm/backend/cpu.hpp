// genlm/backend/cpu.hpp - the CPU backend policy: host memory, Eigen/BLAS GEMM and loop kernels.
//
// Every backend implements the same static op set on raw pointers into its own memory (row-major,
// sizes at run time); layers call these ops and never branch on the backend. The CUDA backend
// (genlm/backend/cuda.cuh, nvcc only) mirrors each op.
//
// GEMM path (measured, see docs/PERFORMANCE.md): with GENLM_USE_DNNL defined (CMake option
// GENLM_USE_ONEDNN, default ON when libdnnl-dev is found) float32 products of at least 2^18
// multiply-adds call oneDNN: dnnl_sgemm (float32 AVX-512/AVX2 kernels; 0.94-1.18x OpenBLAS on the
// paper's layer products on 1 thread, 1.05-1.36x on 2, the attention's Q E^T 1.5x / 3.3x;
// benchmarks/sgemm_libs.cpp), and for x W^T its matmul primitive (genlm/backend/cpu_onednn.hpp);
// with GENLM_USE_CBLAS defined (CMake option GENLM_USE_OPENBLAS, default ON when OpenBLAS is
// found) the other products (and float64) call cblas_{s,d}gemm from OpenBLAS; otherwise Eigen's own
// product kernels (fast under clang, ~55% of peak under g++ 12).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include <genlm/backend/adamw_update.hpp>
#include <genlm/backend/cpu_amx.hpp>
#include <genlm/backend/ops_common.hpp>
#include <genlm/backend/precision.hpp>
#include <genlm/core/error.hpp>
#include <genlm/core/random.hpp>
#include <genlm/core/tensor.hpp>

#if defined(GENLM_USE_CBLAS)
#include <cblas.h>
#endif
#if defined(GENLM_USE_DNNL)
#include <oneapi/dnnl/dnnl.h>

#include <genlm/backend/cpu_onednn.hpp>
#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
extern "C" void omp_set_num_threads(int);  // libgomp, oneDNN's threading runtime (link it: CMake does)
#endif
#endif

// Hot loops are compiled twice on x86-64 when the build does not already target AVX2: the plain
// SSE2 version and an AVX2+FMA version chosen at run time (__builtin_cpu_supports). The loop
// bodies are the same always-inline templates, so both versions compute the same formulas.
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && !defined(__AVX2__)
#define GENLM_CPU_DISPATCH 1
#define GENLM_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define GENLM_CPU_DISPATCH 0
#define GENLM_TARGET_AVX2
#endif
#if defined(__GNUC__) || defined(__clang__)
#define GENLM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define GENLM_ALWAYS_INLINE inline
#endif

namespace genlm {

namespace cpu_detail {

// whether the CPU has AVX2 and FMA (core/random.hpp, whose dispatch condition is the same)
static_assert(GENLM_CPU_DISPATCH == GENLM_RNG_DISPATCH, "cpu.hpp and random.hpp must dispatch alike");
using random_detail::has_avx2_fma;

/// How long (microseconds) the pool's threads spin before they block: an idle worker waiting for
/// the next loop, and a caller waiting for its workers to finish. Read once from the environment
/// variable GENLM_POOL_SPIN_US (0 = block at once, like a plain condition variable; default 300),
/// changed with set_pool_spin_us. A blocked thread is woken by a futex call, which in a virtual
/// machine means an interrupt to a halted vCPU (tens of microseconds), and a model step runs
/// hundreds of short loops back to back (small config, 2 threads: forward median 5.9-6.8 ms with
/// the spin vs 6.9-7.2 ms without; docs/PERFORMANCE.md).
inline std::atomic<int>& pool_spin_us_ref() {
  static std::atomic<int> v{[] {
    const char* e = std::getenv("GENLM_POOL_SPIN_US");
    if (!e || !*e) return 300;
    char* end = nullptr;
    const long x = std::strtol(e, &end, 10);
    return (end && *end == '\0' && x >= 0) ? int(std::min(x, 1000000L)) : 300;
  }()};
  return v;
}
inline int pool_spin_us() { return pool_spin_us_ref().load(std::memory_order_relaxed); }
inline void set_pool_spin_us(int us) { pool_spin_us_ref().store(std::max(0, us), std::memory_order_relaxed); }

/// Waits until done() or `us` microseconds have passed, without blocking; returns done(). Between
/// checks it yields the CPU (sched_yield): when another process's thread waits for this core (more
/// threads than cores, e.g. two test processes on 2 cores) that thread runs instead of the spin.
template <class Done>
bool spin_until(int us, Done&& done) {
  if (done()) return true;
  if (us <= 0) return false;
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  for (;;) {
    for (int i = 0; i < 16; ++i) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      if (done()) return true;
    }
    std::this_thread::yield();
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
  }
}

/// The CPU backend's worker threads, started on first use and kept for the process (starting a
/// thread per loop cost ~20-50 us, and a new thread's first AMX instruction traps once to get its
/// tile state). run(n, f) calls f(0..n-1) once each, f(0) on the calling thread, the rest on
/// workers (and on the calling thread, when it is done with f(0) before a worker has claimed
/// them); it returns when all are done. Calls from inside a task, and calls while another thread
/// holds the pool, run inline (same results: every task is computed, only not in parallel).
/// Waiting threads spin for pool_spin_us() before they block on a condition variable.
class thread_pool {
 public:
  static thread_pool& instance() {
    static thread_pool pool;
    return pool;
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  /// Worker threads started so far (the largest loop's task count - 1).
  std::size_t workers() {
    std::lock_guard<std::mutex> lk(m_);
    return workers_.size();
  }

  template <class F>
  void run(index_t n, F&& f) {
    if (n <= 0) return;
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (n == 1 || in_task() || !busy.owns_lock()) {
      for (index_t i = 0; i < n; ++i) f(i);
      return;
    }
    std::function<void(index_t)> task = [&f](index_t i) { f(i); };
    {
      std::lock_guard<std::mutex> lk(m_);
      while (index_t(workers_.size()) < n - 1) workers_.emplace_back([this] { work(); });
      task_ = &task;
      n_ = n;
      next_ = 1;  // task 0 is the caller's
      done_ = 0;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();  // no system call when every worker is still spinning
    std::exception_ptr mine;
    in_task() = true;
    try {
      f(0);
    } catch (...) {
      mine = std::current_exception();
    }
    // Tasks that no worker has claimed yet are the caller's too: a worker that is slow to start
    // (blocked on the condition variable, or its vCPU descheduled by the host) then does not hold
    // up the loop. Which thread runs a task does not change what it computes.
    for (;;) {
      index_t i = 0;
      {
        std::lock_guard<std::mutex> lk(m_);
        if (next_ >= n_) break;
        i = next_++;
      }
      try {
        f(i);
      } catch (...) {
        if (!mine) mine = std::current_exception();
      }
      std::lock_guard<std::mutex> lk(m_);
      ++done_;
    }
    in_task() = false;
    spin_until(pool_spin_us(), [&] { return done_.load(std::memory_order_acquire) == n - 1; });
    std::unique_lock<std::mutex> lk(m_);
    finished_.wait(lk, [&] { return done_ == n - 1; });  // no worker still uses `task` after this
    task_ = nullptr;
    if (!mine) mine = error_;
    lk.unlock();
    if (mine) std::rethrow_exception(mine);
  }

 private:
  thread_pool() = default;
  static bool& in_task() {
    static thread_local bool v = false;
    return v;
  }
  // Tasks are claimed under the lock (a handful per loop), so a worker that wakes late can never
  // take an index of a newer loop for an older one's function. The spin before the wait only
  // reads the atomics; everything is then re-checked under the lock.
  void work() {
    in_task() = true;
    std::uint64_t seen = 0;
    for (;;) {
      spin_until(pool_spin_us(), [&] {
        return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
      });
      std::unique_lock<std::mutex> lk(m_);
      wake_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      while (task_ && next_ < n_) {
        const index_t i = next_++;
        const std::function<void(index_t)>* task = task_;
        lk.unlock();
        try {
          (*task)(i);
        } catch (...) {
          std::lock_guard<std::mutex> g(m_);
          if (!error_) error_ = std::current_exception();
        }
        lk.lock();
        if (++done_ == n_ - 1) finished_.notify_one();
      }
    }
  }

  std::mutex busy_;  // held by the thread whose loop the pool runs
  std::mutex m_;     // guards everything below (the atomics are also read without it, to spin)
  std::condition_variable wake_, finished_;
  std::vector<std::thread> workers_;
  const std::function<void(index_t)>* task_ = nullptr;
  index_t n_ = 0, next_ = 0;
  std::atomic<index_t> done_{0};
  std::exception_ptr error_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
};

/// Calls f(lo, hi) on [0, n) split into `threads` contiguous chunks (the calling thread takes the
/// first; the others run on the backend's thread pool); runs inline when threads <= 1 or
/// n < min_per_thread * 2.
template <class F>
void parallel_for(index_t n, int threads, index_t min_per_thread, F&& f) {
  const index_t t = std::min<index_t>(threads, min_per_thread > 0 ? n / min_per_thread : n);
  if (t <= 1) {
    if (n > 0) f(index_t(0), n);
    return;
  }
  const index_t chunk = (n + t - 1) / t;
  thread_pool::instance().run(t, [&](index_t i) {
    const index_t lo = std::min(n, i * chunk), hi = std::min(n, lo + chunk);
    if (lo < hi) f(lo, hi);
  });
}

/// The fixed pieces of parallel_for_balanced over [0, n) for up to `threads` threads: first one
/// large piece per thread, together about `head` (a fraction) of the range, then pieces of `grain`,
/// as many per thread (the large pieces shrink so that the rest is a whole number of grains per
/// thread; a remainder of fewer than `threads` indices joins the small pieces). They depend on n,
/// threads, grain and head only, never on timing. tasks <= 1: one piece, [0, n).
struct balanced_split {
  index_t n = 0, tasks = 1, big = 0, grain = 1, front = 0, pieces = 1;
  balanced_split(index_t n_, int threads, index_t grain_, double head) : n(n_), grain(std::max<index_t>(1, grain_)) {
    tasks = std::max<index_t>(1, std::min<index_t>(threads, n / grain));
    if (tasks == 1) {
      big = front = n, pieces = n > 0 ? 1 : 0;
      return;
    }
    // The small pieces: about (1 - head) of the range, rounded up to whole grains per thread, so
    // that threads of equal speed take as many each (1e-9: (1 - 0.7) * 20 is 6.000000000000001);
    // the large pieces share the rest, at least a grain each (grain <= n / tasks, so front <= n).
    const double rest = (1.0 - std::clamp(head, 0.0, 1.0)) * double(n) / double(grain * tasks);
    const index_t small_per_thread = index_t(std::ceil(rest - 1e-9));
    big = std::max<index_t>(grain, (n - small_per_thread * grain * tasks) / tasks);
    front = big * tasks;
    pieces = tasks + (n - front + grain - 1) / grain;
  }
  /// Piece p's range [lo, hi).
  std::pair<index_t, index_t> piece(index_t p) const {
    const index_t lo = p < tasks ? p * big : front + (p - tasks) * grain;
    return {lo, std::min(p < tasks ? lo + big : lo + grain, n)};
  }
};

/// Runs f(task, lo, hi) for every piece of `split`: `split.tasks` tasks (the calling thread and
/// the pool's workers) take the pieces in order until none is left. A task runs its pieces one
/// after another, and no two running tasks have the same index, so f may use per-task state.
template <class F>
void parallel_for_balanced_tasks(const balanced_split& split, F&& f) {
  if (split.tasks <= 1) {
    if (split.n > 0) f(index_t(0), index_t(0), split.n);
    return;
  }
  std::atomic<index_t> next{0};
  thread_pool::instance().run(split.tasks, [&](index_t task) {
    for (index_t p; (p = next.fetch_add(1, std::memory_order_relaxed)) < split.pieces;) {
      const auto [lo, hi] = split.piece(p);
      f(task, lo, hi);
    }
  });
}

/// Calls f(lo, hi) over [0, n) in the fixed pieces of balanced_split(n, threads, grain, head),
/// which up to `threads` threads take in order until none is left. Threads that run equally fast
/// each take one large piece and as many small ones; a thread that is slowed (its vCPU descheduled
/// by the host, another process on its core) takes fewer small ones instead of holding up the
/// loop, as it does with one fixed share per thread. What f computes does not depend on which
/// thread runs which piece. One thread (n < 2 grains): f(0, n).
template <class F>
void parallel_for_balanced(index_t n, int threads, index_t grain, double head, F&& f) {
  parallel_for_balanced_tasks(balanced_split(n, threads, grain, head),
                              [&](index_t, index_t lo, index_t hi) { f(lo, hi); });
}

/// How cpu::dnnl_gemm splits a product of `blocks` blocks (64 columns or rows of C, each of at least
/// `min_blocks` blocks' worth of 2^18 multiply-adds) over `threads` threads with
/// parallel_for_balanced. x W^T (NT, the forward's products): one piece per thread of ~80% of the
/// blocks, then the rest two blocks (128 columns) at a time where there are at least two such grains
/// per thread (a product of 2-3 blocks still splits over 2 threads), else a grain. Pieces of two
/// blocks keep oneDNN's NT rate on the Intel and the AMD guests measured (one block: the same on
/// Intel, 68-87% of the whole product's rate on AMD Zen 4). NN/TN products (the backward's) lost up
/// to a third of theirs in small pieces (oneDNN packs the shared operand again per call), so those
/// get head 1: one piece of blocks / threads (rounded down) per thread, and the remaining blocks
/// (fewer than the threads) a grain at a time. Measured: docs/PERFORMANCE.md, ninth and tenth
/// sessions.
struct gemm_split {
  double head;
  index_t grain;
};
inline gemm_split dnnl_gemm_split(bool nt, index_t blocks, index_t min_blocks, int threads) {
  if (!nt) return {1.0, min_blocks};
  return {0.8, std::max(min_blocks, std::min<index_t>(2, blocks / (2 * index_t(std::max(1, threads)))))};
}

/// float exp (Cephes expf: range reduction to [-ln2/2, ln2/2], degree-6 polynomial, ~1 ulp),
/// branch-free so that loops over it vectorise. Inputs below -87.3 flush to 0; NaN gives NaN.
GENLM_ALWAYS_INLINE float fast_expf(float x) {
  x = std::min(x, 88.3762626647949f);
  const bool tiny = x < -87.3365447504f;
  x = std::max(x, -87.3365447504f);
  const float fx = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  const float r2 = r * r;
  float y = 1.9875691500E-4f;
  y = y * r + 1.3981999507E-3f;
  y = y * r + 8.3334519073E-3f;
  y = y * r + 4.1665795894E-2f;
  y = y * r + 1.6666665459E-1f;
  y = y * r + 5.0000001201E-1f;
  y = y * r2 + r + 1.0f;
  // a NaN x has a NaN fx: its exponent is taken from 0 (converting NaN to an integer is undefined
  // behaviour, UBSan's finding) and y stays NaN
  const std::int32_t e = (static_cast<std::int32_t>(fx == fx ? fx : 0.0f) + 127) << 23;
  float scale;
  std::memcpy(&scale, &e, sizeof scale);
  return tiny ? 0.0f : y * scale;
}

/// float erf: Eigen's rational approximation (generic_fast_erf_float, a few ulp on [-4, 4],
/// +-1 outside), branch-free; NaN gives NaN (the clamp keeps it: std::max(a, lo) returns a NaN a).
GENLM_ALWAYS_INLINE float fast_erff(float a) {
  const float x = std::min(std::max(a, -4.0f), 4.0f);
  const float x2 = x * x;
  float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
  p = x2 * p + -2.10102402082508e-06f;
  p = x2 * p + -5.69250639462346e-05f;
  p = x2 * p + -7.34990630326855e-04f;
  p = x2 * p + -2.95459980854025e-03f;
  p = x2 * p + -1.60960333262415e-02f;
  p = x * p;
  float q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
  q = x2 * q + -1.68282697438203e-03f;
  q = x2 * q + -7.37332916720468e-03f;
  q = x2 * q + -1.42647390514189e-02f;
  return p / q;
}

// ---- loop bodies (always inline; instantiated in the plain and the AVX2 wrappers)
template <class T>
GENLM_ALWAYS_INLINE void gelu_fwd_body(const T* x, T* y, index_t n) {
  if constexpr (std::is_same_v<T, float>) {
    for (index_t i = 0; i < n; ++i) y[i] = 0.5f * x[i] * (1.0f + fast_erff(x[i] * 0.70710678118654752440f));
  } else {
    constexpr double r2 = 0.70710678118654752440;
    for (index_t i = 0; i < n; ++i) y[i] = T(0.5 * x[i] * (1.0 + std::erf(x[i] * r2)));
  }
}
template <class T>
GENLM_ALWAYS_INLINE void gelu_bwd_body(const T* x, const T* dy, T* dx, index_t n, bool accumulate) {
  if constexpr (std::is_same_v<T, float>) {
    const auto d = [&](index_t i) {
      const float xv = x[i];
      return 0.5f * (1.0f + fast_erff(xv * 0.70710678118654752440f)) +
             xv * 0.39894228040143267794f * fast_expf(-0.5f * xv * xv);
    };
    if (accumulate)
      for (index_t i = 0; i < n; ++i) dx[i] += dy[i] * d(i);
    else
      for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * d(i);
  } else {
    constexpr double r2 = 0.70710678118654752440, inv_sqrt_2pi = 0.39894228040143267794;
    const auto d = [&](index_t i) {
      const double xv = x[i];
      return 0.5 * (1.0 + std::erf(xv * r2)) + xv * inv_sqrt_2pi * std::exp(-0.5 * xv * xv);
    };
    if (accumulate)
      for (index_t i = 0; i < n; ++i) dx[i] += T(dy[i] * d(i));
    else
      for (index_t i = 0; i < n; ++i) dx[i] = T(dy[i] * d(i));
  }
}
/// Row sums in double with 8 independent lanes (vectorisable without reassociation flags).
template <class T, class F>
GENLM_ALWAYS_INLINE double lane_sum(index_t n, F&& f) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  index_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += f(i + j);
  double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += f(i);
  return s;
}
template <class T>
GENLM_ALWAYS_INLINE void ln_fwd_body(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, index_t r0,
                                     index_t r1, index_t cols, double eps) {
  for (index_t r = r0; r < r1; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    const double mu = lane_sum<T>(cols, [&](index_t c) { return double(xr[c]); }) / double(cols);
    const double var = lane_sum<T>(cols, [&](index_t c) {
                         const double d = xr[c] - mu;
                         return d * d;
                       }) / double(cols);
    const double rs = 1.0 / std::sqrt(var + eps);
    mean[r] = T(mu);
    rstd[r] = T(rs);
    if constexpr (std::is_same_v<T, float>) {
      const float muf = float(mu), rsf = float(rs);  // xhat in float: |error| ~ 1 ulp of xhat
      for (index_t c = 0; c < cols; ++c) yr[c] = ((xr[c] - muf) * rsf) * gamma[c] + beta[c];
    } else {
      for (index_t c = 0; c < cols; ++c) yr[c] = T((xr[c] - mu) * rs) * gamma[c] + beta[c];
    }
  }
}
template <class T>
GENLM_ALWAYS_INLINE void ln_bwd_dx_body(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, T* dx,
                                        index_t r0, index_t r1, index_t cols, bool accumulate) {
  for (index_t r = r0; r < r1; ++r) {
    const T* dyr = dy + r * cols;
    const T* xr = x + r * cols;
    T* dxr = dx + r * cols;
    const double mu = mean[r], rs = rstd[r];
    const double sum_g = lane_sum<T>(cols, [&](index_t c) { return double(dyr[c]) * gamma[c]; });
    const double sum_gx =
        lane_sum<T>(cols, [&](index_t c) { return double(dyr[c]) * gamma[c] * ((xr[c] - mu) * rs); });
    const double inv_n = 1.0 / double(cols);
    const double a = inv_n * sum_g, b = inv_n * sum_gx;
    const auto d = [&](index_t c) {
      const double xhat = (xr[c] - mu) * rs;
      const double g = double(dyr[c]) * gamma[c];
      return T(rs * (g - a - xhat * b));
    };
    if (accumulate)
      for (index_t c = 0; c < cols; ++c) dxr[c] += d(c);
    else
      for (index_t c = 0; c < cols; ++c) dxr[c] = d(c);
  }
}
/// dgamma, dbeta (+)= column sums over rows r0..r1 (caller zeroes them).
template <class T>
GENLM_ALWAYS_INLINE void ln_bwd_params_body(const T* dy, const T* x, const T* mean, const T* rstd, T* dgamma,
                                            T* dbeta, index_t r0, index_t r1, index_t cols) {
  for (index_t r = r0; r < r1; ++r) {
    const T* dyr = dy + r * cols;
    const T* xr = x + r * cols;
    const double mu = mean[r], rs = rstd[r];
    for (index_t c = 0; c < cols; ++c) {
      dgamma[c] += T(dyr[c] * ((xr[c] - mu) * rs));
      dbeta[c] += dyr[c];
    }
  }
}
/// op-reduction of f(0..n) in 8 fixed lanes (lane j takes f(8i + j), the tail goes to lane 0), then
/// a fixed tree over the lanes: the order depends on n only, and the 8-wide step vectorises (a
/// single running accumulator is a serial dependency chain).
template <class T, class Op, class F>
GENLM_ALWAYS_INLINE T lane_reduce(index_t n, T init, Op op, F f) {
  T lane[8] = {init, init, init, init, init, init, init, init};
  index_t r = 0;
  for (; r + 8 <= n; r += 8)
    for (int j = 0; j < 8; ++j) lane[j] = op(lane[j], f(r + j));
  for (; r < n; ++r) lane[0] = op(lane[0], f(r));
  return op(op(op(lane[0], lane[4]), op(lane[2], lane[6])), op(op(lane[1], lane[5]), op(lane[3], lane[7])));
}

/// a[0, L) = softmax(src * scale + (1 - mk) * lowest) (mk == nullptr: no mask; a may be src): the
/// part of a masked softmax row that the plain and the relative-position-fused forms share.
template <class T>
GENLM_ALWAYS_INLINE void softmax_row(const T* src, T* a, const T* mk, index_t L, T scale) {
  const T lowest = std::numeric_limits<T>::lowest();
  if (mk) {
    for (index_t r = 0; r < L; ++r) a[r] = src[r] * scale + (T(1) - mk[r]) * lowest;
  } else {
    for (index_t r = 0; r < L; ++r) a[r] = src[r] * scale;
  }
  const T mx = lane_reduce(L, lowest, [](T x, T y) { return x < y ? y : x; }, [a](index_t r) { return a[r]; });
  if constexpr (std::is_same_v<T, float>) {
    for (index_t r = 0; r < L; ++r) a[r] = fast_expf(a[r] - mx);
  } else {
    for (index_t r = 0; r < L; ++r) a[r] = std::exp(a[r] - mx);
  }
  const T sum = lane_reduce(L, T(0), std::plus<T>(), [a](index_t r) { return a[r]; });
  const T inv = T(1) / sum;
  for (index_t r = 0; r < L; ++r) a[r] *= inv;
}

/// Rows [row0, row1) of a masked softmax over the last axis (rows of length L; row = (b, h, i)).
template <class T>
GENLM_ALWAYS_INLINE void softmax_rows_body(const T* S, const T* mask, T* A, index_t row0, index_t row1, index_t H,
                                           index_t L, T scale) {
  for (index_t row = row0; row < row1; ++row)
    softmax_row<T>(S + row * L, A + row * L, mask ? mask + (row / (H * L)) * L : nullptr, L, scale);
}

/// Rows [row0, row1) of relpos_add followed by the masked softmax, in one pass over each row:
/// a[r] = softmax_r((S[l, r] + (QE[l, j] (+ KE[r, j]))) * scale + mask), j = l - r + L - 1, with the
/// same roundings as the two separate ops (so the same bits). A may alias S.
template <class T>
GENLM_ALWAYS_INLINE void relpos_softmax_rows_body(const T* S, const T* QE, const T* KE, const T* mask, T* A,
                                                  index_t row0, index_t row1, index_t H, index_t L, T scale) {
  const index_t W = 2 * L - 1;
  for (index_t row = row0; row < row1; ++row) {
    const index_t bh = row / L, l = row % L;
    const T* s = S + row * L;
    const T* qe = QE + row * W + (l + L - 1);  // qe[-r] = QE[l, l - r + L - 1]
    T* a = A + row * L;
    const T* ke = KE ? KE + bh * L * W + (l + L - 1) : nullptr;  // ke[r * (W - 1)] = KE[r, l - r + L - 1]
    const T* mk = mask ? mask + (row / (H * L)) * L : nullptr;
    // t = S + (QE (+ KE)) is stored (rounded) first, as relpos_add does, then the plain softmax
    // row runs on it: the same expressions, so the same bits
    if (ke) {
      for (index_t r = 0; r < L; ++r) a[r] = s[r] + (qe[-r] + ke[r * (W - 1)]);
    } else {
      for (index_t r = 0; r < L; ++r) a[r] = s[r] + qe[-r];
    }
    softmax_row<T>(a, a, mk, L, scale);
  }
}

/// Rows [row0, row1) of the softmax backward: dS = scale * A * (dA - rowsum(dA * A)); dS may alias dA.
template <class T>
GENLM_ALWAYS_INLINE void softmax_bwd_rows_body(const T* A, const T* dA, T* dS, index_t row0, index_t row1, index_t L,
                                               T scale) {
  for (index_t i = row0; i < row1; ++i) {
    const T* a = A + i * L;
    const T* da = dA + i * L;
    T* ds = dS + i * L;
    const T dotv = lane_reduce(L, T(0), std::plus<T>(), [a, da](index_t r) { return a[r] * da[r]; });
    for (index_t r = 0; r < L; ++r) ds[r] = scale * a[r] * (da[r] - dotv);
  }
}
using optim_detail::clamp_keep_nan;
/// AdamW over [lo, hi): genlm/backend/adamw_update.hpp's element update (shared with the CUDA
/// kernels), in T's own arithmetic.
template <class T>
GENLM_ALWAYS_INLINE void adamw_body(T* p, const T* g, T* m, T* v, index_t lo, index_t hi,
                                    const optim_detail::coeffs<T>& k) {
  // A local copy: stores through p, m, v cannot alias it, so the constants stay in registers.
  const optim_detail::coeffs<T> kk = k;
  for (index_t i = lo; i < hi; ++i) optim_detail::update(p[i], g[i], m[i], v[i], kk);
}
template <class T>
GENLM_ALWAYS_INLINE void adamw_torch_body(T* p, const T* g, T* m, T* v, index_t lo, index_t hi,
                                          const optim_detail::coeffs<T>& k) {
  const optim_detail::coeffs<T> kk = k;
  for (index_t i = lo; i < hi; ++i) optim_detail::update_torch(p[i], g[i], m[i], v[i], kk);
}

/// The unsigned integer type with T's bits (float -> uint32, double -> uint64).
template <class T>
using bits_of = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

/// k ? v : +0 (k is 0 or 1) as a bit mask, so that loops over it vectorise (a select on a byte
/// flag stayed scalar under clang 14); a dropped NaN/Inf gives +0, as the CUDA kernel's select.
template <class T>
GENLM_ALWAYS_INLINE T keep_or_zero(T v, std::uint8_t k) {
  using U = bits_of<T>;
  U b;
  std::memcpy(&b, &v, sizeof b);
  b &= U(0) - U(k);
  std::memcpy(&v, &b, sizeof b);
  return v;
}

/// Inverted dropout over Philox blocks [b0, b1) (block b covers elements 4b..4b+3): element i keeps
/// iff uniform01(lane i & 3 of philox(counter i >> 2, step; key)) >= p, i.e. exactly
/// stream_uniform(key, step, i) >= p. 16 blocks at a time through philox4x32_lanes (vectorised).
template <class T>
GENLM_ALWAYS_INLINE void dropout_fwd_body(const T* x, T* y, std::uint8_t* keep, index_t n, index_t b0, index_t b1,
                                          float p, T scale, std::uint64_t key, std::uint64_t step) {
  constexpr int G = 16;
  const auto s0 = static_cast<std::uint32_t>(step), s1 = static_cast<std::uint32_t>(step >> 32);
  const auto k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
  index_t blk = b0;
  for (; blk + G <= b1 && (blk + G) * 4 <= n; blk += G) {
    std::uint32_t c0[G], c1[G], c2[G], c3[G];
    for (int j = 0; j < G; ++j) {
      const auto b = static_cast<std::uint64_t>(blk + j);
      c0[j] = static_cast<std::uint32_t>(b);
      c1[j] = static_cast<std::uint32_t>(b >> 32);
      c2[j] = s0;
      c3[j] = s1;
    }
    philox4x32_lanes<G>(c0, c1, c2, c3, k0, k1);
    std::uint32_t bits[4 * G];  // element order: block j, lanes 0..3
    for (int j = 0; j < G; ++j) {
      bits[4 * j] = c0[j];
      bits[4 * j + 1] = c1[j];
      bits[4 * j + 2] = c2[j];
      bits[4 * j + 3] = c3[j];
    }
    // three simple loops (each vectorises; one fused loop with a byte store stayed scalar)
    std::uint8_t kb[4 * G];
    for (int e = 0; e < 4 * G; ++e) kb[e] = uniform01(bits[e]) >= p ? 1 : 0;
    const T* xb = x + blk * 4;
    T* yb = y + blk * 4;
    std::memcpy(keep + blk * 4, kb, sizeof kb);
    for (int e = 0; e < 4 * G; ++e) yb[e] = keep_or_zero(xb[e] * scale, kb[e]);
  }
  for (; blk < b1; ++blk) {  // the remainder, one block at a time
    const philox_result r = stream_block(key, step, static_cast<std::uint64_t>(blk) * 4);
    const index_t e = std::min<index_t>(n, blk * 4 + 4);
    for (index_t i = blk * 4; i < e; ++i) {
      const std::uint8_t k = uniform01(r.v[i & 3]) >= p ? 1 : 0;
      keep[i] = k;
      y[i] = keep_or_zero(x[i] * scale, k);
    }
  }
}

/// x[lo, hi) = clamp(x, -c, c) (clamp_keep_nan: NaN stays NaN, vectorises).
template <class T>
GENLM_ALWAYS_INLINE void clip_body(T* x, index_t lo, index_t hi, T c) {
  for (index_t i = lo; i < hi; ++i) x[i] = clamp_keep_nan(x[i], c);
}

/// Number of NaN/Inf values in x[lo, hi): exponent bits all ones (vectorises; std::isfinite did not).
template <class T>
GENLM_ALWAYS_INLINE index_t nonfinite_body(const T* x, index_t lo, index_t hi) {
  using U = bits_of<T>;
  constexpr U exp_mask = sizeof(T) == 4 ? U(0x7F800000u) : U(0x7FF0000000000000ull);
  index_t c = 0;
  for (index_t i = lo; i < hi; ++i) {
    U b;
    std::memcpy(&b, x + i, sizeof b);
    c += (b & exp_mask) == exp_mask ? 1 : 0;
  }
  return c;
}

/// dx (+)= dy * keep * scale.
template <class T>
GENLM_ALWAYS_INLINE void dropout_bwd_body(const T* dy, const std::uint8_t* keep, T* dx, index_t n, T scale,
                                          bool accumulate) {
  if (accumulate)
    for (index_t i = 0; i < n; ++i) dx[i] += keep_or_zero(dy[i] * scale, keep[i]);
  else
    for (index_t i = 0; i < n; ++i) dx[i] = keep_or_zero(dy[i] * scale, keep[i]);
}

/// Rows [r0, r1) of y(rows, cols) += b(cols).
template <class T>
GENLM_ALWAYS_INLINE void add_bias_rows_body(T* y, const T* b, index_t r0, index_t r1, index_t cols) {
  for (index_t r = r0; r < r1; ++r) {
    T* yr = y + r * cols;
    for (index_t c = 0; c < cols; ++c) yr[c] += b[c];
  }
}

/// Philox blocks [b0, b1) (elements 4 b0 .. min(n, 4 b1)) of y(n = rows x cols) =
/// dropout(y + b) + res: add_bias, dropout_forward and add in one pass, chunk by chunk of 64
/// elements, with the same roundings and the same mask (keep[i] = stream_uniform(key, step, i) >= p)
/// as the three ops. keep == nullptr: no dropout (y = (y + b) + res). b == nullptr: no bias.
template <class T>
GENLM_ALWAYS_INLINE void bias_dropout_add_body(T* y, const T* b, const T* res, std::uint8_t* keep, index_t n,
                                               index_t cols, index_t b0, index_t b1, float p, T scale,
                                               std::uint64_t key, std::uint64_t step) {
  constexpr index_t chunk = 64;  // 16 Philox blocks: one vectorised group of dropout_fwd_body
  const index_t e0 = std::min(n, 4 * b0), e1 = std::min(n, 4 * b1);
  index_t col = e0 % cols;
  for (index_t c0 = e0; c0 < e1; c0 += chunk) {
    const index_t c1 = std::min(e1, c0 + chunk);
    if (b) {
      for (index_t i = c0; i < c1;) {  // runs of the bias row between wrap-arounds
        const index_t run = std::min(c1 - i, cols - col);
        T* yi = y + i;
        const T* bc = b + col;
        for (index_t k = 0; k < run; ++k) yi[k] += bc[k];
        i += run;
        col += run;
        if (col == cols) col = 0;
      }
    }
    if (keep) dropout_fwd_body<T>(y, y, keep, n, c0 / 4, (c1 + 3) / 4, p, scale, key, step);
    for (index_t i = c0; i < c1; ++i) y[i] = y[i] + res[i];
  }
}

/// Score blocks [b0, b1) of relpos_grad: dQE[l, j] = dS[l, l - j + L - 1], dKE[r, j] =
/// dS[r + j - L + 1, r] where those entries exist, 0 elsewhere (dKE skipped when nullptr).
template <class T>
GENLM_ALWAYS_INLINE void relpos_grad_body(const T* dS, T* dQE, T* dKE, index_t b0, index_t b1, index_t L) {
  const index_t W = 2 * L - 1;
  for (index_t b = b0; b < b1; ++b) {
    const T* ds = dS + b * L * L;
    T* dqe = dQE + b * L * W;
    T* dke = dKE ? dKE + b * L * W : nullptr;
    std::fill(dqe, dqe + L * W, T(0));
    if (dke) std::fill(dke, dke + L * W, T(0));
    for (index_t l = 0; l < L; ++l)
      for (index_t r = 0; r < L; ++r) {
        const index_t j = l - r + L - 1;
        dqe[l * W + j] = ds[l * L + r];
        if (dke) dke[r * W + j] = ds[l * L + r];
      }
  }
}

/// Score blocks [b0, b1) (block = one (contig, head) L x L matrix) of the softmax backward followed by
/// relpos_grad's gather: dS = scale * A * (dA - rowsum(dA * A)) (dS may alias dA), then
/// dQE[l, j] = dS[l, l - j + L - 1], dKE[r, j] = dS[r + j - L + 1, r] (0 where no such entry; dKE
/// skipped when nullptr). The same values as the two ops.
template <class T>
GENLM_ALWAYS_INLINE void softmax_relpos_bwd_body(const T* A, const T* dA, T* dS, T* dQE, T* dKE, index_t b0,
                                                 index_t b1, index_t L, T scale) {
  softmax_bwd_rows_body<T>(A, dA, dS, b0 * L, b1 * L, L, scale);
  relpos_grad_body<T>(dS, dQE, dKE, b0, b1, L);
}

// ---- the two compiled versions of each hot loop
#define GENLM_DISPATCHED(name, body)                                          \
  template <class T, class... A>                                              \
  auto name##_plain(A... a) {                                                 \
    return body<T>(a...);                                                     \
  }                                                                           \
  template <class T, class... A>                                              \
  GENLM_TARGET_AVX2 auto name##_avx2(A... a) {                                \
    return body<T>(a...);                                                     \
  }                                                                           \
  template <class T, class... A>                                              \
  inline auto name(A... a) {                                                  \
    if (has_avx2_fma()) return name##_avx2<T>(a...);                          \
    return name##_plain<T>(a...);                                             \
  }
GENLM_DISPATCHED(gelu_fwd, gelu_fwd_body)
GENLM_DISPATCHED(gelu_bwd, gelu_bwd_body)
GENLM_DISPATCHED(ln_fwd, ln_fwd_body)
GENLM_DISPATCHED(ln_bwd_dx, ln_bwd_dx_body)
GENLM_DISPATCHED(ln_bwd_params, ln_bwd_params_body)
GENLM_DISPATCHED(softmax_rows, softmax_rows_body)
GENLM_DISPATCHED(softmax_bwd_rows, softmax_bwd_rows_body)
GENLM_DISPATCHED(relpos_softmax_rows, relpos_softmax_rows_body)
GENLM_DISPATCHED(softmax_relpos_bwd, softmax_relpos_bwd_body)
GENLM_DISPATCHED(add_bias_rows, add_bias_rows_body)
GENLM_DISPATCHED(bias_dropout_add, bias_dropout_add_body)
GENLM_DISPATCHED(adamw_run, adamw_body)
GENLM_DISPATCHED(adamw_torch_run, adamw_torch_body)
GENLM_DISPATCHED(dropout_fwd, dropout_fwd_body)
GENLM_DISPATCHED(dropout_bwd, dropout_bwd_body)
GENLM_DISPATCHED(clip_run, clip_body)
GENLM_DISPATCHED(nonfinite, nonfinite_body)
#undef GENLM_DISPATCHED

/// ||h - y||^2 over D, summed in order, in double.
template <class T>
double sqdist(const T* h, const double* y, index_t D) {
  double s = 0;
  for (index_t j = 0; j < D; ++j) {
    const double e = double(h[j]) - y[j];
    s += e * e;
  }
  return s;
}
/// The row of labels (n, D) nearest (L2) to h (D): the first on ties, -1 when every distance is
/// NaN. W labels at a time (W independent sums, each over D in order, so the same distances as
/// sqdist one at a time), compared in label order.
template <class T>
index_t nearest_label(const T* h, const double* labels, index_t n, index_t D) {
  constexpr index_t W = 4;
  index_t best = -1;  // a NaN distance is never the nearest
  double bd = std::numeric_limits<double>::infinity();
  index_t j = 0;
  for (; j + W <= n; j += W) {
    const double* yw = labels + j * D;
    double sw[W] = {};
    for (index_t c = 0; c < D; ++c) {
      const double hc = double(h[c]);
      for (index_t w = 0; w < W; ++w) {
        const double e = hc - yw[w * D + c];
        sw[w] += e * e;
      }
    }
    for (index_t w = 0; w < W; ++w)
      if (sw[w] < bd) bd = sw[w], best = j + w;
  }
  for (; j < n; ++j) {
    const double d = sqdist(h, labels + j * D, D);
    if (d < bd) bd = d, best = j;
  }
  return best;
}

}  // namespace cpu_detail

struct cpu {
  static constexpr bool host_memory = true;
  static constexpr const char* name = "cpu";

  // ---------------------------------------------------------------- threads
  /// Threads the backend's own loops may use (OpenBLAS keeps its own setting: see
  /// benchmarks/common.hpp set_threads). Default: $GENLM_NUM_THREADS, else $OPENBLAS_NUM_THREADS,
  /// else the hardware's thread count. Small loops always run on the calling thread.
  static int& num_threads_ref() {
    static int n = [] {
      for (const char* var : {"GENLM_NUM_THREADS", "OPENBLAS_NUM_THREADS"})
        if (const char* v = std::getenv(var); v && std::atoi(v) > 0) return std::atoi(v);
      return int(std::max(1u, std::thread::hardware_concurrency()));
    }();
    return n;
  }
  static void set_num_threads(int n) { num_threads_ref() = n < 1 ? 1 : n; }
  static int num_threads() { return num_threads_ref(); }
  /// Fewest rows of `cols` elements worth a thread of their own in an elementwise row loop
  /// (~2^16 elements: below that a thread's wake-up costs more than it saves).
  static index_t row_chunk(index_t cols) { return std::max<index_t>(1, (index_t(1) << 16) / std::max<index_t>(1, cols)); }
  /// Fewest L x L score blocks worth a thread of their own in the relative-position gathers.
  static index_t score_block_chunk(index_t L) { return std::max<index_t>(1, (index_t(1) << 15) / (4 * L * L)); }

  // ---------------------------------------------------------------- memory
  template <class T>
  static T* allocate(index_t n) {
    check<shape_error>(n >= 0 && std::size_t(n) <= std::numeric_limits<std::size_t>::max() / sizeof(T),
                       "cpu::allocate: ", n, " elements of ", sizeof(T), " bytes exceed the address space");
    void* p = nullptr;
    try {
      p = ::operator new[](static_cast<std::size_t>(n) * sizeof(T), std::align_val_t{64});
    } catch (const std::bad_alloc&) {
      p = nullptr;
    }
    if (!p && n > 0)  // (a sanitizer's allocator may return null instead of throwing)
      throw error(detail::concat("cpu::allocate: out of memory for ", n, " elements of ", sizeof(T), " bytes (",
                                 double(n) * double(sizeof(T)) / 1073741824.0, " GiB)"));
    return static_cast<T*>(p);
  }
  template <class T>
  static void deallocate(T* p) {
    ::operator delete[](p, std::align_val_t{64});
  }
  template <class T>
  static void copy(T* dst, const T* src, index_t n) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
  }
  template <class T>
  static void copy_to_host(T* host, const T* src, index_t n) {
    copy(host, src, n);
  }
  template <class T>
  static void copy_from_host(T* dst, const T* host, index_t n) {
    copy(dst, host, n);
  }
  static void synchronize() {}

  // ---------------------------------------------------------------- elementwise
  template <class T>
  static void fill(T* x, index_t n, T v) {
    std::fill(x, x + n, v);
  }
  /// y += alpha * x
  template <class T>
  static void axpy(index_t n, T alpha, const T* x, T* y) {
    for (index_t i = 0; i < n; ++i) y[i] += alpha * x[i];
  }
  /// x *= alpha
  template <class T>
  static void scale(index_t n, T alpha, T* x) {
    for (index_t i = 0; i < n; ++i) x[i] *= alpha;
  }
  /// y = a + b (elementwise), y may alias a or b.
  template <class T>
  static void add(index_t n, const T* a, const T* b, T* y) {
    cpu_detail::parallel_for(n, num_threads(), index_t(1) << 16, [&](index_t lo, index_t hi) {
      for (index_t i = lo; i < hi; ++i) y[i] = a[i] + b[i];
    });
  }

  // ---------------------------------------------------------------- GEMM (row-major)
  /// C(m,n) = alpha * op(A) op(B) + beta * C, op(A) (m,k), op(B) (k,n); lda/ldb/ldc are row
  /// strides of the stored (untransposed) matrices. beta == 0 never reads C.
  template <class T>
  static void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* A,
                   index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
      for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
      return;
    }
#if defined(GENLM_USE_DNNL)
    if constexpr (std::is_same_v<T, float>)
      if (m * n * k >= dnnl_min) return dnnl_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
#if defined(GENLM_USE_CBLAS)
    // Every (other) size goes to OpenBLAS: this build of Eigen (no -march) has SSE2 kernels only, and
    // OpenBLAS was faster from 4x4x4 up to the attention's 30x30x32 products (2.5-4x; measured,
    // docs/PERFORMANCE.md). OpenBLAS runs products below openblas_thread_min on one thread.
    cblas_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    eigen_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
  }

#if defined(GENLM_USE_CBLAS)
  /// OpenBLAS threads a GEMM only from m*n*k >= 65536 * GEMM_MULTITHREAD_THRESHOLD (default 4)
  /// multiply-adds; below that, batches of products are split over this backend's threads.
  static constexpr index_t openblas_thread_min = index_t(1) << 18;
  template <class T>
  static void cblas_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* A,
                         index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    const auto ta = trans_a ? CblasTrans : CblasNoTrans;
    const auto tb = trans_b ? CblasTrans : CblasNoTrans;
    if constexpr (std::is_same_v<T, float>)
      cblas_sgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), alpha, A, int(lda), B, int(ldb), beta, C,
                  int(ldc));
    else
      cblas_dgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), alpha, A, int(lda), B, int(ldb), beta, C,
                  int(ldc));
  }
#endif

#if defined(GENLM_USE_DNNL)
  /// Products from this size (multiply-adds) go to oneDNN; below it OpenBLAS was faster (oneDNN at
  /// 0.66-0.94x for 30x30x128, 30x128x30, 64^3 on 1 and 2 threads; docs/PERFORMANCE.md).
  static constexpr index_t dnnl_min = index_t(1) << 18;
  /// Sets the calling thread's OpenMP team (oneDNN's threads) to 1, once per thread. oneDNN plans
  /// a primitive's threads when it is built, so the thread that builds one calls this too.
  static void dnnl_on_this_thread_only() {
#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
    static thread_local bool single = false;
    if (!single) omp_set_num_threads(1), single = true;
#endif
  }
  /// oneDNN's float32 products (row-major, same argument meaning as gemm): x W^T (NT) through its
  /// matmul primitive (genlm/backend/cpu_onednn.hpp), the others through dnnl_sgemm. oneDNN itself
  /// always runs on the calling thread (OpenMP team of 1: its own team's threads would spin next to
  /// this backend's pool); products are split over the pool by blocks of C's longer side instead.
  static void dnnl_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, float alpha, const float* A,
                        index_t lda, const float* B, index_t ldb, float beta, float* C, index_t ldc) {
    auto one = [&](index_t m1, index_t n1, const float* A1, const float* B1, float* C1) {
      dnnl_on_this_thread_only();
      const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m1, n1, k, alpha, A1, lda, B1,
                                          ldb, beta, C1, ldc);
      if (st != dnnl_success)
        throw error("cpu::gemm: oneDNN dnnl_sgemm failed with status " + std::to_string(int(st)) + " for m=" +
                    std::to_string(m1) + " n=" + std::to_string(n1) + " k=" + std::to_string(k) + " lda=" +
                    std::to_string(lda) + " ldb=" + std::to_string(ldb) + " ldc=" + std::to_string(ldc));
    };
    // Blocks of 64 rows or columns, at least dnnl_min multiply-adds each.
    const bool by_cols = n >= m;
    const index_t len = by_cols ? n : m, other = by_cols ? m : n;
    const index_t block = 64, blocks = (len + block - 1) / block;
    const index_t min_blocks = std::max<index_t>(1, dnnl_min / std::max<index_t>(1, block * other * k));
    auto blocks_fn = [&](index_t lo, index_t hi) {
      const index_t a = lo * block, b = std::min(len, hi * block);
      if (by_cols)
        one(m, b - a, A, B + (trans_b ? a * ldb : a), C + a);
      else
        one(b - a, n, A + (trans_a ? a : a * lda), B, C + a * ldc);
    };
    const int threads = num_threads();
    const cpu_detail::gemm_split gs = cpu_detail::dnnl_gemm_split(!trans_a && trans_b, blocks, min_blocks, threads);
    const cpu_detail::balanced_split split(blocks, threads, gs.grain, gs.head);
    if (!trans_a && trans_b && cpu_detail::onednn_matmul_enabled()) {
      // x W^T: oneDNN's matmul primitive, prepared here for every piece size (a large piece, a
      // grain, a ragged last piece: at most max_sizes), run by the tasks
      index_t sizes[cpu_detail::matmul_nt_job::max_sizes];
      int nsizes = 0;
      for (index_t p = 0; p < split.pieces; ++p) {
        const auto [lo, hi] = split.piece(p);
        const index_t size = std::min(len, hi * block) - lo * block;
        if (std::find(sizes, sizes + nsizes, size) != sizes + nsizes) continue;
        check(nsizes < cpu_detail::matmul_nt_job::max_sizes, "cpu::dnnl_gemm: more than ",
              cpu_detail::matmul_nt_job::max_sizes, " piece sizes for m=", m, " n=", n, " k=", k);
        sizes[nsizes++] = size;
      }
      dnnl_on_this_thread_only();  // the job builds its primitives on this thread
      const cpu_detail::matmul_nt_job job(by_cols, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, sizes, nsizes,
                                          split.tasks);
      cpu_detail::parallel_for_balanced_tasks(split, [&](index_t task, index_t lo, index_t hi) {
        dnnl_on_this_thread_only();
        job.run_piece(task, lo * block, std::min(len, hi * block));
      });
      return;
    }
    cpu_detail::parallel_for_balanced_tasks(split, [&](index_t, index_t lo, index_t hi) { blocks_fn(lo, hi); });
  }
#endif

  /// Eigen's product kernels (row-major maps, no temporaries with noalias).
  template <class T>
  static void eigen_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* A,
                         index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
    Eigen::Map<Mat, 0, Eigen::OuterStride<>> Cm(C, m, n, Eigen::OuterStride<>(ldc));
    CMap Am(A, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
    CMap Bm(B, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
    if (beta == T(0))
      Cm.setZero();
    else if (beta != T(1))
      Cm *= beta;
    if (!trans_a && !trans_b)
      Cm.noalias() += alpha * (Am * Bm);
    else if (!trans_a && trans_b)
      Cm.noalias() += alpha * (Am * Bm.transpose());
    else if (trans_a && !trans_b)
      Cm.noalias() += alpha * (Am.transpose() * Bm);
    else
      Cm.noalias() += alpha * (Am.transpose() * Bm.transpose());
  }

  /// `batch` independent GEMMs; matrix i starts at A + i*stride_a etc. (stride 0 = shared).
  template <class T>
  static void gemm_strided_batched(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha,
                                   const T* A, index_t lda, index_t stride_a, const T* B, index_t ldb,
                                   index_t stride_b, T beta, T* C, index_t ldc, index_t stride_c,
                                   index_t batch) {
#if defined(GENLM_USE_CBLAS)
    index_t self_threaded = openblas_thread_min;  // OpenBLAS threads each product itself
#else
    index_t self_threaded = std::numeric_limits<index_t>::max();
#endif
#if defined(GENLM_USE_DNNL)
    if constexpr (std::is_same_v<T, float>) self_threaded = dnnl_min;  // dnnl_gemm splits these itself
#endif
    batched<cpu>(self_threaded, trans_a, trans_b, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc,
                 stride_c, batch);
  }

 protected:
  /// Runs Self::gemm over the batch: products of at least `self_threaded` multiply-adds one after
  /// another (each is threaded by itself), smaller ones (attention per contig and head) split over
  /// the backend's threads.
  template <class Self, class T>
  static void batched(index_t self_threaded, bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha,
                      const T* A, index_t lda, index_t stride_a, const T* B, index_t ldb, index_t stride_b, T beta,
                      T* C, index_t ldc, index_t stride_c, index_t batch) {
    auto run = [&](index_t lo, index_t hi) {
      for (index_t i = lo; i < hi; ++i)
        Self::gemm(trans_a, trans_b, m, n, k, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
                   C + i * stride_c, ldc);
    };
    if (m * n * k >= self_threaded) return run(0, batch);
    const index_t per = std::max<index_t>(1, (index_t(1) << 19) / std::max<index_t>(1, m * n * k));
    cpu_detail::parallel_for(batch, num_threads(), per, run);
  }

 public:
  // ---------------------------------------------------------------- bias / reductions
  /// y(rows, cols) += b(cols) broadcast over rows.
  template <class T>
  static void add_bias(T* y, const T* b, index_t rows, index_t cols) {
    cpu_detail::parallel_for(rows, num_threads(), row_chunk(cols), [&](index_t r0, index_t r1) {
      cpu_detail::add_bias_rows<T>(y, b, r0, r1, cols);
    });
  }
  /// db(cols) = beta * db + sum over rows of dy(rows, cols); each column summed in row order (the
  /// threads split the columns, so the result does not depend on the thread count).
  template <class T>
  static void sum_rows(const T* dy, index_t rows, index_t cols, T* db, T beta) {
    const index_t min_cols = std::max<index_t>(16, (index_t(1) << 16) / std::max<index_t>(1, rows));
    cpu_detail::parallel_for(cols, num_threads(), min_cols, [&](index_t c0, index_t c1) {
      for (index_t c = c0; c < c1; ++c) db[c] = beta == T(0) ? T(0) : beta * db[c];
      for (index_t r = 0; r < rows; ++r) {
        const T* d = dy + r * cols;
        for (index_t c = c0; c < c1; ++c) db[c] += d[c];
      }
    });
  }
  /// y(rows, cols) += b(cols), then g = gelu(y): add_bias and gelu_forward in one pass (the
  /// forward of a linear layer's bias and its GELU; y keeps the pre-activation for the backward).
  template <class T>
  static void bias_gelu_forward(T* y, const T* b, T* g, index_t rows, index_t cols) {
    // blocks of rows of ~64 KiB: the bias pass leaves them in L2 for the GELU pass (the two loops
    // stay separate functions: nested in one row loop, the GELU loop lost its hoisted constants)
    const index_t block = std::max<index_t>(1, (index_t(1) << 14) / std::max<index_t>(1, cols));
    cpu_detail::parallel_for(rows, num_threads(), row_chunk(cols), [&](index_t r0, index_t r1) {
      for (index_t r = r0; r < r1; r += block) {
        const index_t e = std::min(r1, r + block);
        cpu_detail::add_bias_rows<T>(y, b, r, e, cols);
        cpu_detail::gelu_fwd<T>(y + r * cols, g + r * cols, (e - r) * cols);
      }
    });
  }
  /// y(rows, cols) = dropout(y + b) + res in one pass: add_bias, dropout_forward (same mask:
  /// keep[i] = stream_uniform(key, step, i) >= p, i the flat index) and add. keep == nullptr: no
  /// dropout (y = y + b + res); b == nullptr: no bias. res may not alias y.
  template <class T>
  static void bias_dropout_add(T* y, const T* b, const T* res, std::uint8_t* keep, index_t rows, index_t cols,
                               double p, std::uint64_t key, std::uint64_t step) {
    const index_t n = rows * cols;
    const T s = keep ? T(1.0 / (1.0 - p)) : T(1);
    cpu_detail::parallel_for((n + 3) / 4, num_threads(), index_t(1) << 14, [&](index_t b0, index_t b1) {
      cpu_detail::bias_dropout_add<T>(y, b, res, keep, n, cols, b0, b1, float(p), s, key, step);
    });
  }
  /// Sum of squares (accumulated in double).
  template <class T>
  static double sum_squares(const T* x, index_t n) {
    double s = 0;
    for (index_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
    return s;
  }
  /// Dot product (accumulated in double).
  template <class T>
  static double dot(const T* x, const T* y, index_t n) {
    double s = 0;
    for (index_t i = 0; i < n; ++i) s += double(x[i]) * double(y[i]);
    return s;
  }
  /// Number of NaN/Inf values.
  template <class T>
  static index_t count_nonfinite(const T* x, index_t n) {
    std::atomic<index_t> total{0};  // an integer sum: the same for any split
    cpu_detail::parallel_for(n, num_threads(), index_t(1) << 20, [&](index_t lo, index_t hi) {
      total += cpu_detail::nonfinite<T>(x, lo, hi);
    });
    return total.load();
  }
  /// count_nonfinite(x, n) written to *out (exact below 2^53), memory of this backend. The GPU
  /// backends only queue it (no wait): a caller brings it back with other results in one copy.
  template <class T>
  static void count_nonfinite_into(const T* x, index_t n, double* out) {
    *out = double(count_nonfinite(x, n));
  }
  /// The faults of a model input, counted: NaN/Inf values of x (n values), values of mask (B, L)
  /// other than 0 and 1, and rows of mask without a 1. 0: the input is valid. (One wait with a GPU
  /// backend; the caller reads the inputs back only to name a fault.)
  template <class T>
  static index_t count_input_faults(const T* x, index_t n, const T* mask, index_t B, index_t L) {
    index_t bad = count_nonfinite(x, n);
    for (index_t b = 0; b < B; ++b) bad += mask_row_faults(mask + b * L, L);
    return bad;
  }
  /// x = clamp(x, -c, c)  (torch.nn.utils.clip_grad_value_); elementwise, split over threads.
  template <class T>
  static void clip_by_value(T* x, index_t n, T c) {
    cpu_detail::parallel_for(n, num_threads(), index_t(1) << 20,
                             [&](index_t lo, index_t hi) { cpu_detail::clip_run<T>(x, lo, hi, c); });
  }

  // ---------------------------------------------------------------- layer norm over the last dim
  /// y = (x - mean) * rstd * gamma + beta per row; saves mean and rstd (rows).
  template <class T>
  static void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd,
                                 index_t rows, index_t cols, double eps) {
    cpu_detail::parallel_for(rows, num_threads(), std::max<index_t>(1, (index_t(1) << 17) / cols),
                             [&](index_t r0, index_t r1) {
                               cpu_detail::ln_fwd<T>(x, gamma, beta, y, mean, rstd, r0, r1, cols, eps);
                             });
  }
  /// dx += LN backward (accumulate false: dx = ..., dx's old contents never read); dgamma, dbeta
  /// assigned (summed over rows).
  template <class T>
  static void layer_norm_backward(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd,
                                  T* dx, T* dgamma, T* dbeta, index_t rows, index_t cols, bool accumulate = true) {
    std::fill(dgamma, dgamma + cols, T(0));
    std::fill(dbeta, dbeta + cols, T(0));
    // dgamma/dbeta: column sums in row order on one thread (the same order as a serial loop);
    // dx: rows split over the other threads.
    const int nt = rows * cols >= (index_t(1) << 17) ? num_threads() : 1;
    if (nt > 1) {
      // task 0 (the calling thread) sums the parameters' gradients, tasks 1..nt-1 split dx's rows
      const index_t parts = nt - 1, chunk = (rows + parts - 1) / parts;
      cpu_detail::thread_pool::instance().run(nt, [&](index_t i) {
        if (i == 0) return cpu_detail::ln_bwd_params<T>(dy, x, mean, rstd, dgamma, dbeta, index_t(0), rows, cols);
        const index_t r0 = std::min(rows, (i - 1) * chunk), r1 = std::min(rows, r0 + chunk);
        if (r0 < r1) cpu_detail::ln_bwd_dx<T>(dy, x, gamma, mean, rstd, dx, r0, r1, cols, accumulate);
      });
    } else {
      cpu_detail::ln_bwd_params<T>(dy, x, mean, rstd, dgamma, dbeta, index_t(0), rows, cols);
      cpu_detail::ln_bwd_dx<T>(dy, x, gamma, mean, rstd, dx, index_t(0), rows, cols, accumulate);
    }
  }

  // ---------------------------------------------------------------- activations
  /// Exact GELU: 0.5 x (1 + erf(x / sqrt 2)).
  template <class T>
  static void gelu_forward(const T* x, T* y, index_t n) {
    cpu_detail::parallel_for(n, num_threads(), index_t(1) << 16, [&](index_t lo, index_t hi) {
      cpu_detail::gelu_fwd<T>(x + lo, y + lo, hi - lo);
    });
  }
  /// dx += dy * (Phi(x) + x phi(x)) (accumulate false: dx = ..., dx's old contents never read).
  template <class T>
  static void gelu_backward(const T* x, const T* dy, T* dx, index_t n, bool accumulate = true) {
    cpu_detail::parallel_for(n, num_threads(), index_t(1) << 16, [&](index_t lo, index_t hi) {
      cpu_detail::gelu_bwd<T>(x + lo, dy + lo, dx + lo, hi - lo, accumulate);
    });
  }

  // ---------------------------------------------------------------- dropout (inverted)
  /// keep[i] = uniform(key, step, i) >= p; y = x * keep / (1 - p). y may alias x.
  template <class T>
  static void dropout_forward(const T* x, T* y, std::uint8_t* keep, index_t n, double p, std::uint64_t key,
                              std::uint64_t step) {
    const T s = T(1.0 / (1.0 - p));
    auto run = [&](index_t b0, index_t b1) {
      cpu_detail::dropout_fwd<T>(x, y, keep, n, b0, b1, float(p), s, key, step);
    };
    cpu_detail::parallel_for((n + 3) / 4, num_threads(), index_t(1) << 14, run);
  }
  /// dx (+)= dy * keep / (1 - p). dx may alias dy with accumulate == false.
  template <class T>
  static void dropout_backward(const T* dy, const std::uint8_t* keep, T* dx, index_t n, double p, bool accumulate) {
    cpu_detail::dropout_bwd<T>(dy, keep, dx, n, T(1.0 / (1.0 - p)), accumulate);
  }

  // ---------------------------------------------------------------- layout
  /// dst(a, c, b, d) (+)= src(a, b, c, d) [+ bias(c, d)]: (B, L, heads, hd) <-> (B, heads, L, hd).
  /// bias (C, D), nullptr: none (a linear layer's bias added on the way, as add_bias would).
  template <class T>
  static void permute_0213(const T* src, T* dst, index_t A, index_t B, index_t C, index_t D, bool accumulate,
                           const T* bias = nullptr) {
    // (a, b) pairs split over the threads; each writes its own rows of dst
    cpu_detail::parallel_for(A * B, num_threads(), row_chunk(C * D), [&](index_t ab0, index_t ab1) {
      for (index_t ab = ab0; ab < ab1; ++ab) {
        const index_t a = ab / B, b = ab % B;
        for (index_t c = 0; c < C; ++c) {
          const T* s = src + (ab * C + c) * D;
          T* d = dst + ((a * C + c) * B + b) * D;
          const T* bc = bias ? bias + c * D : nullptr;
          if (bc && accumulate)
            for (index_t e = 0; e < D; ++e) d[e] += s[e] + bc[e];
          else if (bc)
            for (index_t e = 0; e < D; ++e) d[e] = s[e] + bc[e];
          else if (accumulate)
            for (index_t e = 0; e < D; ++e) d[e] += s[e];
          else
            std::copy(s, s + D, d);
        }
      }
    });
  }

  // ---------------------------------------------------------------- relative position terms
  // For each of `batch` (= B*heads) score matrices S (L, L):
  //   S[l, r] += QE[l, l - r + L - 1] (+ KE[r, l - r + L - 1] when KE != nullptr)
  // where QE = Q E_sub^T, KE = K E_sub^T (L, 2L-1) and E_sub = rows M-L .. M+L-2 of the distance
  // table, so column j of QE is distance l - r = j - (L - 1).
  template <class T>
  static void relpos_add(T* S, const T* QE, const T* KE, index_t batch, index_t L) {
    const index_t W = 2 * L - 1;
    for (index_t b = 0; b < batch; ++b) {
      T* s = S + b * L * L;
      const T* qe = QE + b * L * W;
      const T* ke = KE ? KE + b * L * W : nullptr;
      for (index_t l = 0; l < L; ++l)
        for (index_t r = 0; r < L; ++r) {
          const index_t j = l - r + L - 1;
          T v = qe[l * W + j];
          if (ke) v += ke[r * W + j];
          s[l * L + r] += v;
        }
    }
  }
  /// Adjoint of relpos_add: dQE[l, j] = dS[l, l - j + L - 1] and dKE[r, j] = dS[r + j - L + 1, r]
  /// where those indices exist, 0 elsewhere (dKE skipped when nullptr).
  template <class T>
  static void relpos_grad(const T* dS, T* dQE, T* dKE, index_t batch, index_t L) {
    cpu_detail::parallel_for(batch, num_threads(), score_block_chunk(L),
                             [&](index_t b0, index_t b1) { cpu_detail::relpos_grad_body<T>(dS, dQE, dKE, b0, b1, L); });
  }

  // ---------------------------------------------------------------- attention softmax
  /// A[b,h,l,:] = softmax(scale * S[b,h,l,:] + (1 - m[b,:]) * lowest) for S (B, H, L, L) and key
  /// mask m (B, L) (nullptr = no mask). lowest = numeric_limits<T>::lowest(), as Hugging Face's
  /// finfo(dtype).min. A may alias S.
  template <class T>
  static void masked_softmax_forward(const T* S, const T* mask, T* A, index_t B, index_t H, index_t L, T scale) {
    cpu_detail::parallel_for(B * H * L, num_threads(), std::max<index_t>(1, (index_t(1) << 15) / L),
                             [&](index_t r0, index_t r1) { cpu_detail::softmax_rows<T>(S, mask, A, r0, r1, H, L, scale); });
  }
  /// relpos_add followed by masked_softmax_forward in one pass over each score row, the same bits:
  /// A[b,h,l,r] = softmax_r((S[b,h,l,r] + QE[l, j] (+ KE[r, j])) * scale + (1 - m[b,r]) * lowest),
  /// j = l - r + L - 1 (QE, KE: (B*H*L, 2L-1) per score block as in relpos_add). A may alias S.
  template <class T>
  static void relpos_softmax_forward(const T* S, const T* QE, const T* KE, const T* mask, T* A, index_t B, index_t H,
                                     index_t L, T scale) {
    cpu_detail::parallel_for(B * H * L, num_threads(), std::max<index_t>(1, (index_t(1) << 15) / (3 * L)),
                             [&](index_t r0, index_t r1) {
                               cpu_detail::relpos_softmax_rows<T>(S, QE, KE, mask, A, r0, r1, H, L, scale);
                             });
  }
  /// softmax_backward followed by relpos_grad, block by block (a block = one L x L score matrix
  /// of the `batch` = B*H): dS = scale * A * (dA - rowsum(dA * A)) (dS may alias dA), then dQE and
  /// dKE (nullptr: skipped) gathered from dS as relpos_grad does. The same values as the two ops.
  template <class T>
  static void softmax_relpos_backward(const T* A, const T* dA, T* dS, T* dQE, T* dKE, index_t batch, index_t L,
                                      T scale) {
    cpu_detail::parallel_for(batch, num_threads(), score_block_chunk(L), [&](index_t b0, index_t b1) {
      cpu_detail::softmax_relpos_bwd<T>(A, dA, dS, dQE, dKE, b0, b1, L, scale);
    });
  }
  /// dS = scale * A * (dA - rowsum(dA * A)) over rows of length L; dS may alias dA.
  template <class T>
  static void softmax_backward(const T* A, const T* dA, T* dS, index_t rows, index_t L, T scale) {
    cpu_detail::parallel_for(rows, num_threads(), std::max<index_t>(1, (index_t(1) << 15) / std::max<index_t>(1, L)),
                             [&](index_t r0, index_t r1) { cpu_detail::softmax_bwd_rows<T>(A, dA, dS, r0, r1, L, scale); });
  }

  // ---------------------------------------------------------------- masked-gene loss
  /// Gradients of gLM's masked-gene objective (SPEC.md) at n masked genes. Gene i sits at flat row
  /// rows[i] (= b * L + l) of hyp (R, K, D) and logits (R, K); labels (n, D) are already clipped.
  ///   k* = argmin_k ||h_k - y||^2 (first on ties), k^ = argmax_k logits (first on ties)
  ///   terms[2i] = ||h_k* - y||^2, terms[2i+1] = logsumexp(logits) - logits[k*]   (double)
  ///   choice[2i] = k*, choice[2i+1] = k^                                   (choice may be null)
  ///   d_hyp[row, k*, :] = 2 mse_scale (h_k* - y);  d_logits[row, :] = ce_scale (softmax - onehot(k*))
  /// Rows of d_hyp / d_logits that hold no masked gene are not written (the caller zeroes them);
  /// either may be null (evaluation: no gradients). Neither may alias hyp or logits (the CUDA
  /// kernel reads a gene's logits while writing its gradients).
  template <class T>
  static void masked_gene_loss_grad(const T* hyp, const T* logits, index_t K, index_t D, const std::int64_t* rows,
                                    const double* labels, index_t n, double mse_scale, double ce_scale, T* d_hyp,
                                    T* d_logits, double* terms, std::int32_t* choice) {
    for (index_t i = 0; i < n; ++i) {
      const index_t row = rows[i];
      const T* h = hyp + row * K * D;
      const T* z = logits + row * K;
      const double* y = labels + i * D;
      index_t ks = 0, kml = 0;
      double best = std::numeric_limits<double>::infinity(), mx = -std::numeric_limits<double>::infinity();
      for (index_t k = 0; k < K; ++k) {
        double d = 0;
        for (index_t j = 0; j < D; ++j) d += (double(h[k * D + j]) - y[j]) * (double(h[k * D + j]) - y[j]);
        if (d < best) best = d, ks = k;
        if (double(z[k]) > mx) mx = double(z[k]), kml = k;
      }
      double se = 0;
      for (index_t k = 0; k < K; ++k) se += std::exp(double(z[k]) - mx);
      const double lse = mx + std::log(se);
      terms[2 * i] = best;
      terms[2 * i + 1] = lse - double(z[ks]);
      if (choice) choice[2 * i] = std::int32_t(ks), choice[2 * i + 1] = std::int32_t(kml);
      if (d_logits)
        for (index_t k = 0; k < K; ++k)
          d_logits[row * K + k] = T(ce_scale * (std::exp(double(z[k]) - lse) - (k == ks ? 1.0 : 0.0)));
      if (d_hyp)
        for (index_t j = 0; j < D; ++j)
          d_hyp[(row * K + ks) * D + j] = T(2.0 * mse_scale * (double(h[ks * D + j]) - y[j]));
    }
  }

  /// Metrics of each masked gene's most likely hypothesis, h = hyp[rows[i], k^, :] with k^ =
  /// choice[2i+1] (as masked_gene_loss_grad wrote it), against its label y_i = labels[i, :]; out
  /// (n, 4), doubles:
  ///   out[4i]   = cos(h, y_i) = h.y_i / max(sqrt(|h|^2 |y_i|^2), 1e-30)
  ///   out[4i+1] = ||h - y_i||^2
  ///   out[4i+2] = 1 when h[D-1] and y_i[D-1] have the same sign (0 counts as +; the strand), else 0
  ///   out[4i+3] = 1 when y_i is the nearest (L2) of all n labels to h (the first on ties), else 0
  /// The last is O(n^2 D): the genes are spread over the threads (one output row each, so the
  /// result does not depend on the thread count).
  template <class T>
  static void masked_gene_metrics_rows(const T* hyp, index_t K, index_t D, const std::int64_t* rows,
                                       const double* labels, const std::int32_t* choice, index_t n, double* out) {
    const index_t grain = std::max<index_t>(1, (index_t(1) << 16) / std::max<index_t>(1, n * D));
    cpu_detail::parallel_for(n, num_threads(), grain, [&](index_t i0, index_t i1) {
      for (index_t i = i0; i < i1; ++i) {
        const T* h = hyp + (rows[i] * K + choice[2 * i + 1]) * D;
        const double* y = labels + i * D;
        double dot = 0, nh = 0, ny = 0;
        for (index_t j = 0; j < D; ++j) {
          const double hj = double(h[j]);
          dot += hj * y[j], nh += hj * hj, ny += y[j] * y[j];
        }
        double* o = out + 4 * i;
        o[0] = dot / std::max(std::sqrt(nh * ny), 1e-30);
        o[1] = cpu_detail::sqdist(h, y, D);
        o[2] = (double(h[D - 1]) >= 0) == (y[D - 1] >= 0) ? 1.0 : 0.0;
        o[3] = cpu_detail::nearest_label(h, labels, n, D) == i ? 1.0 : 0.0;
      }
    });
  }

  // ---------------------------------------------------------------- optimiser
  /// One fused AdamW pass over n parameters (flat buffer); see adamw_hparams.
  template <class T>
  static void adamw_step(T* p, const T* g, T* m, T* v, index_t n, const adamw_hparams& h) {
    const auto k = optim_detail::make_coeffs<T>(h);
    const index_t grain = index_t(1) << 18;
    cpu_detail::parallel_for(n, num_threads(), grain, [&](index_t lo, index_t hi) {
      if (k.torch_style)
        cpu_detail::adamw_torch_run<T>(p, g, m, v, lo, hi, k);
      else
        cpu_detail::adamw_run<T>(p, g, m, v, lo, hi, k);
    });
  }
};

/// The CPU backend with the bf16 precision policy (genlm/backend/precision.hpp): every matrix
/// product rounds both inputs to bfloat16 (nearest even) and accumulates in float32, as cuBLAS does
/// for genlm::cuda_bf16. Storage, activations, gradients and the optimizer stay float32; every
/// other op is genlm::cpu's. Products run on Intel AMX tiles (genlm/backend/cpu_amx.hpp) when the
/// CPU and the kernel allow it (amx::available()); otherwise as float32 products of the rounded
/// inputs (same rounding, another summation order, no speed-up).
///   genlm::GLM<genlm::configs::paper, genlm::cpu_bf16> model;
struct cpu_bf16 : cpu {
  using precision = ::genlm::precision::bf16;
  static constexpr const char* name = "cpu_bf16";
  /// An AMX product threads itself from this many multiply-adds on (~20 us on one 400 GFLOP/s
  /// core); smaller ones are not worth handing to a worker.
  static constexpr index_t amx_thread_min = index_t(1) << 22;

  template <class T>
  static void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* A,
                   index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    if (m == 0 || n == 0 || k == 0) return cpu::gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    if constexpr (std::is_same_v<T, float>)
      if (amx::available()) return amx_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    rounded_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  template <class T>
  static void gemm_strided_batched(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha,
                                   const T* A, index_t lda, index_t stride_a, const T* B, index_t ldb,
                                   index_t stride_b, T beta, T* C, index_t ldc, index_t stride_c,
                                   index_t batch) {
    batched<cpu_bf16>(amx_thread_min, trans_a, trans_b, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
                      ldc, stride_c, batch);
  }

  /// The AMX path (float only): pack both operands into bf16 tiles, then 32 x 32 blocks of C.
  static void amx_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, float alpha, const float* A,
                       index_t lda, const float* B, index_t ldb, float beta, float* C, index_t ldc) {
#if GENLM_HAVE_AMX
    const index_t mpanels = amx::round_up(m, 32) / 32, npanels = amx::round_up(n, 32) / 32,
                  ks = amx::round_up(k, 32) / 32;
    auto& ws = amx::thread_workspace();
    std::uint16_t* pa = ws.a.get(mpanels * ks * 1024);  // (mpanels, ks, 2 tiles of 16 x 32)
    std::uint16_t* pb = ws.b.get(npanels * ks * 1024);  // (npanels, ks, 2 tiles of 16 pairs x 16)
    const int nt = m * n * k >= amx_thread_min ? num_threads() : 1;
    cpu_detail::parallel_for(std::max(mpanels, npanels), nt, 1, [&](index_t lo, index_t hi) {
      amx::detail::pack_panels(false, !trans_a, m, k, A, lda, pa, std::min(lo, mpanels), std::min(hi, mpanels));
      amx::detail::pack_panels(true, trans_b, n, k, B, ldb, pb, std::min(lo, npanels), std::min(hi, npanels));
    });
    cpu_detail::parallel_for(npanels, nt, 1, [&](index_t lo, index_t hi) {
      amx::detail::kernel(m, n, ks, pa, pb, lo, hi, alpha, beta, C, ldc);
    });
#else
    rounded_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
  }

  /// Without AMX: the same rounding of both operands, then genlm::cpu's product.
  template <class T>
  static void rounded_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* A,
                           index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    auto rounded = [](const T* X, index_t rows, index_t cols, index_t ld) {  // (rows, cols), row stride cols
      std::vector<T> r(static_cast<std::size_t>(rows * cols));
      for (index_t i = 0; i < rows; ++i)
        for (index_t j = 0; j < cols; ++j) r[std::size_t(i * cols + j)] = T(amx::round_bf16(float(X[i * ld + j])));
      return r;
    };
    const auto a = rounded(A, trans_a ? k : m, trans_a ? m : k, lda);
    const auto b = rounded(B, trans_b ? n : k, trans_b ? k : n, ldb);
    cpu::gemm(trans_a, trans_b, m, n, k, alpha, a.data(), trans_a ? m : k, b.data(), trans_b ? k : n, beta, C, ldc);
  }
};

namespace cpu_detail {
/// " (library...)" for products_description: which libraries genlm::cpu's products call.
inline std::string gemm_libraries(bool single) {
  std::string s;
#if defined(GENLM_USE_DNNL)
  if (single)
    s = onednn_matmul_enabled() ? "oneDNN from 2^18 multiply-adds: matmul primitive for x W^T, sgemm for the rest; "
                                : "oneDNN sgemm from 2^18 multiply-adds, ";
#else
  (void)single;
#endif
#if defined(GENLM_USE_CBLAS)
  s += "OpenBLAS";
#else
  s += "Eigen";
#endif
  return " (" + s + ")";
}
}  // namespace cpu_detail

/// How a CPU backend computes the products of scalar T, for logs ("products: " + this).
template <class Backend, class T = float>
std::string products_description() {
  if constexpr (std::is_same_v<Backend, cpu_bf16> && std::is_same_v<T, float>)
    return amx::available() ? "bf16 inputs, float32 accumulation (Intel AMX tiles)"
                            : "bf16 inputs, float32 accumulation (no AMX on this CPU: rounded float32 products, "
                              "not faster)";
  else if constexpr (std::is_same_v<T, double>)
    return "float64" + cpu_detail::gemm_libraries(false);
  else
    return "float32" + cpu_detail::gemm_libraries(true);
}

}  // namespace genlm
