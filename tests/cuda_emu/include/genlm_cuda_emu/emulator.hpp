// genlm_cuda_emu/emulator.hpp - a host emulator of the small part of the CUDA runtime that genlm's
// CUDA backend uses, so that the backend's own code (include/genlm/backend/cuda.cuh, cuda/kernels.cuh,
// cuda/runtime.cuh) and the GPU parity tests (tests/gpu) run on a machine without a GPU.
// A test tool, NOT CUDA: nothing here is installed or used by the library.
//
// Compiled as C++ with -DGENLM_CUDA_EMULATOR and tests/cuda_emu/include ahead of any CUDA include
// path (its cuda_runtime.h, cublas_v2.h and cub/block/block_reduce.cuh stand in for the real ones).
//
// What runs as on a GPU:
// - Kernels: the kernels' own source. Blocks run one after the other; the threads of a block run
//   as cooperative fibers (own context switch), so __syncthreads, __shfl_xor_sync and cub::BlockReduce have
//   their CUDA meaning. __shared__ is one static per kernel (and host thread), reused by every
//   block. The first launch of each kernel runs every thread as a fiber; a kernel that never
//   synchronised there runs its threads as plain calls afterwards (fast path); one that then
//   synchronises aborts with a message (never silently wrong).
// - Checks a GPU would not give as clearly: every pointer argument of a kernel must be null or
//   inside a device allocation (a host pointer is an illegal address); a block whose threads do not
//   all reach the same __syncthreads, or a warp whose 32 lanes do not all reach the same full-mask
//   shuffle, is a launch failure naming the kernel, block and thread counts; cuBLAS operands must
//   lie inside one device allocation and leading dimensions must be legal (cuBLAS's own rules);
//   memcpy directions must match the pointers. Launch-time errors are reported by
//   cudaGetLastError; execution faults are sticky (every later call fails, as on a GPU) until
//   genlm_cuda_emu::reset().
// - Device memory from cudaMalloc is filled with 0xFF bytes (NaN for float and double), so code
//   that reads memory it never wrote shows NaN instead of a lucky zero. Allocations have their
//   exact size: under AddressSanitizer with GENLM_CUDA_ALLOCATOR=plain (the backend's allocator then
//   requests exact sizes too) a kernel or cuBLAS access past a buffer's end is reported.
// - cuBLAS: column-major GEMMs computed with Eigen; the compute types' input rounding is emulated
//   (TF32: 10 mantissa bits, round to nearest, ties away; bf16 and fp16: round to nearest even,
//   fp16 with its range), accumulation in float (double for D-GEMMs).
// - Asynchrony, in two places only: a cudaMemcpyAsync from pinned host memory (cudaMallocHost) to
//   the device on a stream is deferred until the stream's next operation (kernel, cuBLAS call, copy,
//   memset), a cudaStreamSynchronize / cudaEventSynchronize / cudaStreamWaitEvent that reaches it,
//   cudaDeviceSynchronize, cudaFree or cudaFreeHost, and it reads the pinned buffer then (as the DMA
//   would): a pinned staging buffer rewritten before its copy ran shows up as wrong device data.
//   cudaEventQuery / cudaStreamQuery say cudaErrorNotReady meanwhile. And a pending operation that
//   tests/mpi/fake_cuda/nccl.h leaves on a stream for other threads to complete.
// - Host waits: genlm_cuda_emu::host_waits() counts the synchronisations (and host-blocking copies)
//   that find queued work, so that tests can say how often a step waits for the device.
// Not emulated: other asynchrony (every other call completes before it returns), races between threads or
// streams (GENLM_CUDA_EMU_ORDER=reverse runs blocks, and the threads of a block, in reverse order, which
// exposes results that depend on the order), performance, NCCL, the real driver and hardware.
//
// Environment: GENLM_CUDA_EMU_DEVICES (default 1), GENLM_CUDA_EMU_MEMORY_MB (default 16384),
// GENLM_CUDA_EMU_ORDER=reverse.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <stdlib.h>  // posix_memalign
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <math.h>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

// ------------------------------------------------------------------ CUDA types
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
/// A stream's queue as genlm_cuda_emu::host_waits sees it: operations queued, and the number of
/// them (a prefix) that the host has waited for.
struct genlm_cuda_emu_queue {
  std::atomic<std::uint64_t> queued{0}, waited{0};
};
struct CUstream_st {
  int device = 0;
  // A pending operation that another host thread completes: the only asynchrony emulated, for
  // tests/mpi/fake_cuda/nccl.h's collectives (null: none pending). done() tells whether it has
  // completed, block() waits until it has; the stream's next operation waits for it first.
  std::function<bool()> done;
  std::function<void()> block;
  // Operations queued on it, and how many of them the host has waited for (host_waits).
  std::shared_ptr<genlm_cuda_emu_queue> queue = std::make_shared<genlm_cuda_emu_queue>();
};
using cudaStream_t = CUstream_st*;
/// Waits for the stream's pending operation (see CUstream_st), then forgets it (the fake NCCL's name).
inline void fake_cuda_drain(cudaStream_t s) {
  if (!s) return;
  if (s->block) s->block();
  s->done = nullptr;
  s->block = nullptr;
}
struct CUevent_st {
  std::chrono::steady_clock::time_point t{};
  bool recorded = false;
  // the stream's pending operation when recorded (see CUstream_st): the event completes with it
  cudaStream_t stream = nullptr;
  std::function<bool()> done;
  std::shared_ptr<genlm_cuda_emu_queue> queue;  // its stream's when recorded,
  std::uint64_t position = 0;                   // and the operations queued on it before the event
};
using cudaEvent_t = CUevent_st*;
struct cudaDeviceProp {
  char name[256];
  std::size_t totalGlobalMem;
  std::size_t sharedMemPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxGridSize[3];
  int clockRate;
  int memoryClockRate;
  int memoryBusWidth;
  int multiProcessorCount;
  int l2CacheSize;
  int major;
  int minor;
};

namespace genlm_cuda_emu {
namespace detail {

struct allocation {
  std::size_t bytes;
  int device;
  bool pinned;  // cudaMallocHost: host memory
};

struct state {
  std::mutex mu;
  std::map<std::uintptr_t, allocation> allocs;  // start -> allocation
  std::size_t device_bytes = 0;
  cudaError_t sticky = cudaSuccess;
  std::unordered_map<std::uintptr_t, bool> kernel_syncs;  // kernel -> synchronised on its first launch
  int devices = 1;
  std::vector<cudaStream_t> streams;  // live streams (cudaDeviceSynchronize drains them)
  std::size_t capacity = std::size_t(16384) << 20;
  bool reverse = false;
  std::atomic<std::uint64_t> waits{0};  // host waits for queued work (genlm_cuda_emu::host_waits)
  std::shared_ptr<genlm_cuda_emu_queue> null_queue = std::make_shared<genlm_cuda_emu_queue>();  // the null stream's
};
// Never destroyed (tensors with static storage are freed after other statics are gone).
inline state& st() {
  static state* s = [] {
    auto* n = new state;
    if (const char* e = std::getenv("GENLM_CUDA_EMU_DEVICES")) n->devices = std::max(0, std::atoi(e));
    if (const char* e = std::getenv("GENLM_CUDA_EMU_MEMORY_MB")) n->capacity = std::size_t(std::atoll(e)) << 20;
    if (const char* e = std::getenv("GENLM_CUDA_EMU_ORDER")) n->reverse = std::string(e) == "reverse";
    return n;
  }();
  return *s;
}
inline thread_local int current_device = 0;
inline thread_local cudaError_t last_error = cudaSuccess;

inline void report(const std::string& what) { std::fprintf(stderr, "genlm CUDA emulator: %s\n", what.c_str()); }

/// A launch-time error (cudaGetLastError reports it once).
inline cudaError_t fail(cudaError_t e, const std::string& what) {
  report(what);
  last_error = e;
  return e;
}
/// An execution fault: sticky, every later call returns it.
inline cudaError_t fault(cudaError_t e, const std::string& what) {
  report(what + " (sticky: every later CUDA call fails)");
  std::lock_guard<std::mutex> lock(st().mu);
  if (st().sticky == cudaSuccess) st().sticky = e;
  return e;
}
inline cudaError_t sticky() {
  std::lock_guard<std::mutex> lock(st().mu);
  return st().sticky;
}

/// The allocation that holds [p, p + bytes) entirely, or nullptr (caller holds st().mu).
inline const allocation* find_locked(const void* p, std::size_t bytes) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto& m = st().allocs;
  auto it = m.upper_bound(a);
  if (it == m.begin()) return nullptr;
  --it;
  if (a < it->first || a - it->first > it->second.bytes || bytes > it->second.bytes - (a - it->first)) return nullptr;
  return &it->second;
}
/// True when [p, p + bytes) lies inside one device allocation (not pinned host memory).
inline bool is_device_range(const void* p, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(st().mu);
  const allocation* a = find_locked(p, bytes);
  return a && !a->pinned;
}
/// True when p points into a device allocation or one past its end (an empty range there).
inline bool is_device_pointer(const void* p) { return is_device_range(p, 0); }
/// True when [p, p + bytes) lies inside one pinned host allocation (cudaMallocHost).
inline bool is_pinned_range(const void* p, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(st().mu);
  const allocation* a = find_locked(p, bytes);
  return a && a->pinned;
}
/// Runs the pending operation of every stream of the current device (cudaDeviceSynchronize,
/// cudaFree, cudaFreeHost: they wait for the device's work).
inline void drain_device() {
  std::vector<cudaStream_t> ss;
  {
    std::lock_guard<std::mutex> lock(st().mu);
    for (cudaStream_t s : st().streams)
      if (s->device == current_device) ss.push_back(s);
  }
  for (cudaStream_t s : ss) fake_cuda_drain(s);
}
inline genlm_cuda_emu_queue& queue_of(cudaStream_t s) { return s ? *s->queue : *st().null_queue; }
/// Operations queued since the program started, by name (genlm_cuda_emu::operations).
struct op_log {
  std::mutex mu;
  std::map<std::string, std::uint64_t> counts;
};
inline op_log& ops() {
  static op_log* l = new op_log;  // never destroyed, as st()
  return *l;
}
/// Work (a kernel, cuBLAS call, copy or memset; `what` names it) queued on stream s (null: the
/// null stream).
inline void queued(cudaStream_t s, const char* what) {
  ++queue_of(s).queued;
  std::lock_guard<std::mutex> lock(ops().mu);
  ++ops().counts[what ? what : "?"];
}
/// The host waits for the first `upto` operations of queue q: one host wait when some of them
/// were not waited for yet.
inline bool wait_for(genlm_cuda_emu_queue& q, std::uint64_t upto) {
  std::uint64_t w = q.waited.load();
  while (w < upto && !q.waited.compare_exchange_weak(w, upto)) {
  }
  return w < upto;
}
/// The host waits for all of stream s's queued work (cudaStreamSynchronize, a blocking copy).
inline void waited(cudaStream_t s) {
  genlm_cuda_emu_queue& q = queue_of(s);
  if (wait_for(q, q.queued.load())) ++st().waits;
}
/// The host waits for all of the current device's work (cudaDeviceSynchronize, cudaFree,
/// cudaFreeHost): one host wait when any of its streams, or the null stream, has unwaited work.
inline void waited_device() {
  bool b = wait_for(*st().null_queue, st().null_queue->queued.load());
  {
    std::lock_guard<std::mutex> lock(st().mu);
    for (cudaStream_t s : st().streams)
      if (s->device == current_device) b = wait_for(*s->queue, s->queue->queued.load()) || b;
  }
  if (b) ++st().waits;
}
inline std::string hex(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

// ------------------------------------------------------------------ kernels: fibers
// A fiber context switch. x86-64: callee-saved registers, MXCSR and the x87 control word saved
// on the fiber's own stack (no system call; ucontext's swapcontext makes one per switch, which
// made warp-shuffle-heavy kernels ~50x slower). Elsewhere: ucontext.
#if defined(__x86_64__)
}  // namespace detail
}  // namespace genlm_cuda_emu
extern "C" void genlm_cuda_emu_switch(void** save_sp, void* load_sp);
// Weak: every translation unit that includes this header emits it; the linker keeps one.
asm(R"(
  .text
  .weak genlm_cuda_emu_switch
  .type genlm_cuda_emu_switch, @function
genlm_cuda_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size genlm_cuda_emu_switch, .-genlm_cuda_emu_switch
)");
namespace genlm_cuda_emu {
namespace detail {
struct context {
  void* sp = nullptr;
};
/// A context that starts `entry` (which must never return) on [stack, stack + bytes).
inline void make_context(context& c, char* stack, std::size_t bytes, void (*entry)()) {
  auto top = (reinterpret_cast<std::uintptr_t>(stack) + bytes) & ~std::uintptr_t(15);
  auto* w = reinterpret_cast<std::uint64_t*>(top);
  w[-1] = 0;                                          // entry's (never used) return address
  w[-2] = reinterpret_cast<std::uint64_t>(entry);     // where the first switch "returns"
  for (int r = 3; r <= 8; ++r) w[-r] = 0;             // rbp rbx r12 r13 r14 r15
  std::uint32_t mxcsr;
  std::uint16_t fcw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fcw));
  w[-9] = 0;
  std::memcpy(reinterpret_cast<char*>(&w[-9]), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(&w[-9]) + 4, &fcw, 2);
  c.sp = &w[-9];
}
inline void swap_context(context& from, const context& to) { genlm_cuda_emu_switch(&from.sp, to.sp); }
#else
struct context {
  ucontext_t uc{};
};
inline void make_context(context& c, char* stack, std::size_t bytes, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = bytes;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
inline void swap_context(context& from, const context& to) { swapcontext(&from.uc, &to.uc); }
#endif

enum class fstate : unsigned char { ready, wait_block, wait_warp, done };
struct fiber {
  context ctx;
  dim3 tid{0, 0, 0};
  unsigned linear = 0;
  unsigned shuffles = 0;  // full-mask shuffles so far (their slot set alternates)
  fstate state = fstate::done;
};
constexpr std::size_t fiber_stack_bytes = std::size_t(256) << 10;

struct executor {
  context sched;
  std::vector<fiber> fibers;
  std::vector<std::unique_ptr<char[]>> stacks;
  std::vector<unsigned> warp_arrived;
  std::vector<std::array<std::array<std::uint64_t, 32>, 2>> warp_slots;
  unsigned nthreads = 0, block_arrived = 0;
  fiber* cur = nullptr;
  fiber direct_fiber;
  bool direct = false, used_sync = false;
  bool reverse = false;  // schedule fibers from the last thread down (GENLM_CUDA_EMU_ORDER=reverse)
  void (*fn)(void*) = nullptr;
  void* arg = nullptr;
  const char* kernel = "";
  dim3 block_idx{0, 0, 0}, block_dim{1, 1, 1}, grid_dim{1, 1, 1};
};
inline executor& ex() {
  static thread_local executor e;
  return e;
}

[[noreturn]] inline void fatal(const std::string& what) {
  report(what);
  std::fflush(stderr);
  std::abort();
}

/// Leaves the current fiber (its state already set) for the next ready fiber of the block, in
/// thread order after it, or for the scheduler when none is ready.
inline void leave(executor& e) {
  fiber* me = e.cur;
  const unsigned n = e.nthreads;
  for (unsigned k = 1; k <= n; ++k) {
    fiber& f = e.fibers[e.reverse ? (me->linear + n - k) % n : (me->linear + k) % n];
    if (f.state == fstate::ready) {
      if (&f == me) return;  // released while leaving: go on
      e.cur = &f;
      swap_context(me->ctx, f.ctx);
      return;
    }
  }
  swap_context(me->ctx, e.sched);
}

inline void fiber_entry() {
  executor& e = ex();
  e.fn(e.arg);
  e.cur->state = fstate::done;
  leave(e);  // never resumed
  std::abort();
}

/// Runs one block's threads as fibers until all are done (true) or no thread can go on (false:
/// a barrier that not every thread reaches; `why` says who waits where).
inline bool run_block(executor& e, std::string& why) {
  const unsigned n = e.nthreads;
  while (e.stacks.size() < n) e.stacks.emplace_back(new char[fiber_stack_bytes]);
  if (e.fibers.size() < n) e.fibers.resize(n);
  const unsigned warps = (n + 31) / 32;
  e.warp_arrived.assign(warps, 0);
  if (e.warp_slots.size() < warps) e.warp_slots.resize(warps);
  e.block_arrived = 0;
  const dim3 bd = e.block_dim;
  for (unsigned i = 0; i < n; ++i) {
    fiber& f = e.fibers[i];
    f.linear = i;
    f.shuffles = 0;
    f.tid = dim3(i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y));
    f.state = fstate::ready;
    make_context(f.ctx, e.stacks[i].get(), fiber_stack_bytes, fiber_entry);
  }
  for (;;) {
    bool ran = false;
    for (unsigned i0 = 0; i0 < n; ++i0) {
      fiber& f = e.fibers[e.reverse ? n - 1 - i0 : i0];
      if (f.state != fstate::ready) continue;
      e.cur = &f;
      swap_context(e.sched, f.ctx);  // back when no fiber of the block is ready
      ran = true;
    }
    unsigned done = 0, at_block = 0, at_warp = 0;
    for (unsigned i = 0; i < n; ++i) {
      const fstate s = e.fibers[i].state;
      done += s == fstate::done;
      at_block += s == fstate::wait_block;
      at_warp += s == fstate::wait_warp;
    }
    if (done == n) return true;
    if (!ran) {
      why = std::to_string(at_block) + " thread(s) wait at __syncthreads, " + std::to_string(at_warp) +
            " at a full-mask warp shuffle, " + std::to_string(done) + " have exited (block of " + std::to_string(n) +
            "): a barrier that not every thread reaches";
      return false;
    }
  }
}

[[noreturn]] inline void direct_sync(const char* what) {
  fatal(std::string("kernel ") + ex().kernel + " called " + what +
        " on a launch run as plain calls (it did not synchronise on its first launch); the emulator "
        "cannot run it");
}

inline void syncthreads() {
  executor& e = ex();
  if (e.direct) direct_sync("__syncthreads");
  e.used_sync = true;
  if (++e.block_arrived == e.nthreads) {
    e.block_arrived = 0;
    for (unsigned i = 0; i < e.nthreads; ++i)
      if (e.fibers[i].state == fstate::wait_block) e.fibers[i].state = fstate::ready;
    return;
  }
  e.cur->state = fstate::wait_block;
  leave(e);
}

inline void warp_barrier(executor& e) {
  const unsigned w = e.cur->linear / 32;
  const unsigned size = std::min(32u, e.nthreads - w * 32);
  if (++e.warp_arrived[w] == size) {
    e.warp_arrived[w] = 0;
    for (unsigned i = w * 32; i < w * 32 + size; ++i)
      if (e.fibers[i].state == fstate::wait_warp) e.fibers[i].state = fstate::ready;
    return;
  }
  e.cur->state = fstate::wait_warp;
  leave(e);
}

template <class T>
T shfl_xor(unsigned mask, T v, int lane_mask, int width) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "__shfl_xor_sync: types of up to 8 bytes");
  executor& e = ex();
  if (e.direct) direct_sync("__shfl_xor_sync");
  e.used_sync = true;
  if (mask != 0xffffffffu || width != 32 || e.nthreads % 32 != 0)
    fatal(std::string("kernel ") + e.kernel +
          ": the emulator supports full-mask __shfl_xor_sync over whole warps only (mask " + std::to_string(mask) +
          ", width " + std::to_string(width) + ", block of " + std::to_string(e.nthreads) + " threads)");
  // One barrier per shuffle: the slot sets alternate, and a lane can only write a set again after
  // every lane has passed the barrier of the shuffle in between (so has read this one).
  const unsigned lane = e.cur->linear % 32, w = e.cur->linear / 32, set = e.cur->shuffles++ & 1u;
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  e.warp_slots[w][set][lane] = bits;
  warp_barrier(e);
  const std::uint64_t got = e.warp_slots[w][set][(lane ^ unsigned(lane_mask)) & 31u];
  T r;
  std::memcpy(&r, &got, sizeof(T));
  return r;
}

inline bool check_config(dim3 g, dim3 b, const char* name) {
  const std::uint64_t threads = std::uint64_t(b.x) * b.y * b.z;
  if (threads == 0 || threads > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 || g.x > 0x7fffffffu ||
      g.y > 65535 || g.z > 65535) {
    fail(cudaErrorInvalidConfiguration,
         std::string("launch of ") + name + ": invalid configuration grid (" + std::to_string(g.x) + ", " +
             std::to_string(g.y) + ", " + std::to_string(g.z) + ") block (" + std::to_string(b.x) + ", " +
             std::to_string(b.y) + ", " + std::to_string(b.z) + ")");
    return false;
  }
  return true;
}

/// Runs a launch: every block, every thread (see the file comment for the two modes).
inline void run(std::uintptr_t key, dim3 grid, dim3 block, const char* name, void (*fn)(void*), void* arg) {
  executor& e = ex();
  bool fibers = true;
  {
    std::lock_guard<std::mutex> lock(st().mu);
    auto it = st().kernel_syncs.find(key);
    if (it != st().kernel_syncs.end()) fibers = it->second;
  }
  e.fn = fn;
  e.arg = arg;
  e.kernel = name;
  e.grid_dim = grid;
  e.block_dim = block;
  e.nthreads = block.x * block.y * block.z;
  e.used_sync = false;
  const std::uint64_t blocks = std::uint64_t(grid.x) * grid.y * grid.z;
  const bool rev = st().reverse;
  e.reverse = rev;
  for (std::uint64_t k = 0; k < blocks; ++k) {
    const std::uint64_t b = rev ? blocks - 1 - k : k;
    e.block_idx = dim3(unsigned(b % grid.x), unsigned((b / grid.x) % grid.y), unsigned(b / (std::uint64_t(grid.x) * grid.y)));
    if (fibers) {
      std::string why;
      if (!run_block(e, why)) {
        e.cur = nullptr;
        fault(cudaErrorLaunchFailure, std::string("kernel ") + name + ", block (" + std::to_string(e.block_idx.x) +
                                          ", " + std::to_string(e.block_idx.y) + ", " +
                                          std::to_string(e.block_idx.z) + "): " + why);
        return;
      }
    } else {
      e.direct = true;
      e.cur = &e.direct_fiber;
      for (unsigned t0 = 0; t0 < e.nthreads; ++t0) {
        const unsigned t = rev ? e.nthreads - 1 - t0 : t0;
        e.direct_fiber.linear = t;
        e.direct_fiber.tid = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
        fn(arg);
      }
      e.direct = false;
    }
  }
  e.cur = nullptr;
  if (fibers) {
    std::lock_guard<std::mutex> lock(st().mu);
    auto [it, fresh] = st().kernel_syncs.emplace(key, e.used_sync);
    if (!fresh) it->second = it->second || e.used_sync;
  }
}

template <class A>
bool check_pointer_arg(const A& a, const char* name, int index) {
  if constexpr (std::is_pointer_v<A>) {
    if (a != nullptr && !is_device_pointer(static_cast<const void*>(a))) {
      fault(cudaErrorIllegalAddress, std::string("kernel ") + name + ": pointer argument " + std::to_string(index) +
                                         " (" + hex(static_cast<const void*>(a)) +
                                         ") is not inside a device allocation (a host pointer, freed memory, "
                                         "or past the end)");
      return false;
    }
  }
  return true;
}

}  // namespace detail

/// GENLM_CUDA_KERNEL_LAUNCH(kernel, grid, block, stream, name)(args...) under the emulator.
template <class... P>
struct launch_config {
  void (*kernel)(P...);
  dim3 grid, block;
  cudaStream_t stream;
  const char* name;
  launch_config(void (*k)(P...), dim3 g, dim3 b, cudaStream_t s, const char* n)
      : kernel(k), grid(g), block(b), stream(s), name(n) {}

  template <class... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    fake_cuda_drain(stream);  // stream order: after a pending collective (see CUstream_st)
    if (const cudaError_t s = detail::sticky(); s != cudaSuccess) {
      detail::last_error = s;
      return;
    }
    if (!detail::check_config(grid, block, name)) return;
    std::tuple<std::decay_t<P>...> args(static_cast<P>(std::forward<A>(a))...);
    bool ok = true;
    int index = 0;
    std::apply([&](const auto&... v) { ((ok = ok && detail::check_pointer_arg(v, name, index++)), ...); }, args);
    if (!ok) return;
    detail::queued(stream, name);
    auto body = [&] { std::apply(kernel, args); };
    using body_t = decltype(body);
    detail::run(reinterpret_cast<std::uintptr_t>(kernel), grid, block, name,
                [](void* p) { (*static_cast<body_t*>(p))(); }, &body);
  }
};

/// Clears a sticky fault (a real GPU needs a new process); for the emulator's own tests.
inline void reset() {
  std::lock_guard<std::mutex> lock(detail::st().mu);
  detail::st().sticky = cudaSuccess;
  detail::last_error = cudaSuccess;
}
/// Number of bytes of device memory allocated through cudaMalloc and not freed.
inline std::size_t device_bytes() {
  std::lock_guard<std::mutex> lock(detail::st().mu);
  return detail::st().device_bytes;
}
/// How many times the host has waited for queued device work, since the program started: a
/// cudaStreamSynchronize, cudaEventSynchronize, cudaDeviceSynchronize, cudaFree or cudaFreeHost that
/// found work queued (a kernel, cuBLAS call, copy or memset since the last wait for that stream;
/// an event: work before it when recorded; work already waited for is not waited for again), and
/// every host-blocking copy (cudaMemcpy, and cudaMemcpyAsync from the device into pageable host
/// memory, which returns when the copy is done: the copy's own stream is idle after it). Differences of this count are what tests compare, e.g.
/// "a training step waits for the device once".
inline std::uint64_t host_waits() { return detail::st().waits.load(); }
/// Operations queued on any stream since the program started, by name: each kernel launch under
/// the name it was launched with (GENLM_CUDA_KERNEL_LAUNCH's), each cuBLAS call under its function's
/// name ("cublasGemmEx", ...), copies as "cudaMemcpy HtoD" / "DtoH" / "DtoD" and memsets as
/// "cudaMemset" (work that a device would run; launches that fail their checks are not counted).
/// Differences of two snapshots are what tests compare, e.g. "a training step's launches do not
/// depend on the batch size".
inline std::map<std::string, std::uint64_t> operations() {
  std::lock_guard<std::mutex> lock(detail::ops().mu);
  return detail::ops().counts;
}
/// b - a, name by name (names without a difference left out).
inline std::map<std::string, std::uint64_t> operations_between(const std::map<std::string, std::uint64_t>& a,
                                                               const std::map<std::string, std::uint64_t>& b) {
  std::map<std::string, std::uint64_t> d;
  for (const auto& [k, v] : b) {
    const auto it = a.find(k);
    const std::uint64_t before = it == a.end() ? 0 : it->second;
    if (v > before) d[k] = v - before;
  }
  return d;
}
/// GENLM_CUDA_EMU_ORDER at run time (true: blocks, and the threads of a block, in reverse order).
inline void set_reverse_order(bool on) {
  std::lock_guard<std::mutex> lock(detail::st().mu);
  detail::st().reverse = on;
}

}  // namespace genlm_cuda_emu

// ------------------------------------------------------------------ device-code vocabulary
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static thread_local
#define threadIdx (::genlm_cuda_emu::detail::ex().cur->tid)
#define blockIdx (::genlm_cuda_emu::detail::ex().block_idx)
#define blockDim (::genlm_cuda_emu::detail::ex().block_dim)
#define gridDim (::genlm_cuda_emu::detail::ex().grid_dim)

inline void __syncthreads() { ::genlm_cuda_emu::detail::syncthreads(); }
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::genlm_cuda_emu::detail::shfl_xor(mask, v, lane_mask, width);
}
inline double __longlong_as_double(long long v) {
  double d;
  std::memcpy(&d, &v, sizeof d);
  return d;
}

// ------------------------------------------------------------------ runtime API
namespace genlm_cuda_emu::detail {
inline cudaError_t ret(cudaError_t e) {
  const cudaError_t s = sticky();
  if (s != cudaSuccess) return s;
  if (e != cudaSuccess) last_error = e;
  return e;
}
inline cudaError_t check_copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, const char* call) {
  const bool dd = is_device_range(dst, bytes), sd = is_device_range(src, bytes);
  const bool dany = is_device_pointer(dst), sany = is_device_pointer(src);
  bool ok = false;
  switch (kind) {
    case cudaMemcpyHostToDevice: ok = dd && !sany; break;
    case cudaMemcpyDeviceToHost: ok = sd && !dany; break;
    case cudaMemcpyDeviceToDevice: ok = dd && sd; break;
    case cudaMemcpyHostToHost: ok = !dany && !sany; break;
    case cudaMemcpyDefault: ok = (dd || !dany) && (sd || !sany); break;
  }
  if (!ok)
    return fail(cudaErrorInvalidValue,
                std::string(call) + ": kind " + std::to_string(int(kind)) + " with dst " + hex(dst) +
                    (dd ? " (device)" : dany ? " (device, range runs past the allocation)" : " (host)") + ", src " +
                    hex(src) + (sd ? " (device)" : sany ? " (device, range runs past the allocation)" : " (host)") +
                    ", " + std::to_string(bytes) + " bytes");
  return cudaSuccess;
}
}  // namespace genlm_cuda_emu::detail

inline cudaError_t cudaGetLastError() {
  using namespace genlm_cuda_emu::detail;
  const cudaError_t s = sticky();
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return s != cudaSuccess ? s : e;
}
inline cudaError_t cudaPeekAtLastError() {
  using namespace genlm_cuda_emu::detail;
  const cudaError_t s = sticky();
  return s != cudaSuccess ? s : last_error;
}
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

inline cudaError_t cudaGetDeviceCount(int* n) {
  const int d = genlm_cuda_emu::detail::st().devices;
  *n = d;
  return d > 0 ? cudaSuccess : genlm_cuda_emu::detail::ret(cudaErrorNoDevice);
}
inline cudaError_t cudaDriverGetVersion(int* v) {
  *v = 0;  // no driver
  return cudaSuccess;
}
inline cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 0;  // not CUDA's runtime
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  if (genlm_cuda_emu::detail::st().devices == 0) return genlm_cuda_emu::detail::ret(cudaErrorNoDevice);
  *d = genlm_cuda_emu::detail::current_device;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) {
  using namespace genlm_cuda_emu::detail;
  if (d < 0 || d >= st().devices) return ret(cudaErrorInvalidDevice);
  current_device = d;
  return ret(cudaSuccess);
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  using namespace genlm_cuda_emu::detail;
  if (d < 0 || d >= st().devices) return ret(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "genlm CUDA emulator (host CPU)");
  p->totalGlobalMem = st().capacity;
  p->sharedMemPerBlock = 48 << 10;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxGridSize[0] = 0x7fffffff;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->multiProcessorCount = 132;
  p->major = 9;
  p->minor = 0;
  return ret(cudaSuccess);
}
inline cudaError_t cudaMalloc(void** p, std::size_t bytes) {
  using namespace genlm_cuda_emu::detail;
  *p = nullptr;
  if (const cudaError_t s = sticky(); s != cudaSuccess) return s;
  if (bytes == 0) return cudaSuccess;
  std::lock_guard<std::mutex> lock(st().mu);
  if (bytes > st().capacity - std::min(st().capacity, st().device_bytes)) {
    last_error = cudaErrorMemoryAllocation;
    return cudaErrorMemoryAllocation;
  }
  void* q = nullptr;  // exactly `bytes` (256-aligned as cudaMalloc): AddressSanitizer sees the end
  if (posix_memalign(&q, 256, bytes) != 0 || !q) {
    last_error = cudaErrorMemoryAllocation;
    return cudaErrorMemoryAllocation;
  }
  std::memset(q, 0xff, bytes);  // NaN for float and double: reads of never-written memory show
  st().allocs[reinterpret_cast<std::uintptr_t>(q)] = {bytes, current_device, false};
  st().device_bytes += bytes;
  *p = q;
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
  using namespace genlm_cuda_emu::detail;
  if (!p) return cudaSuccess;
  drain_device();  // cudaFree waits for the device's work
  waited_device();
  std::lock_guard<std::mutex> lock(st().mu);
  auto it = st().allocs.find(reinterpret_cast<std::uintptr_t>(p));
  if (it == st().allocs.end() || it->second.pinned) {
    last_error = cudaErrorInvalidValue;
    return cudaErrorInvalidValue;
  }
  st().device_bytes -= it->second.bytes;
  st().allocs.erase(it);
  std::free(p);
  return st().sticky;
}
inline cudaError_t cudaMallocHost(void** p, std::size_t bytes) {
  using namespace genlm_cuda_emu::detail;
  void* q = std::aligned_alloc(256, (std::max<std::size_t>(bytes, 1) + 255) / 256 * 256);
  if (!q) return ret(cudaErrorMemoryAllocation);
  std::lock_guard<std::mutex> lock(st().mu);
  st().allocs[reinterpret_cast<std::uintptr_t>(q)] = {bytes, current_device, true};
  *p = q;
  return cudaSuccess;
}
inline cudaError_t cudaFreeHost(void* p) {
  using namespace genlm_cuda_emu::detail;
  if (!p) return cudaSuccess;
  drain_device();  // as cudaFree
  waited_device();
  std::lock_guard<std::mutex> lock(st().mu);
  auto it = st().allocs.find(reinterpret_cast<std::uintptr_t>(p));
  if (it == st().allocs.end() || !it->second.pinned) return cudaErrorInvalidValue;
  st().allocs.erase(it);
  std::free(p);
  return cudaSuccess;
}
template <class T>
inline cudaError_t cudaMalloc(T** p, std::size_t bytes) {  // as cuda_runtime.h's C++ overloads
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
template <class T>
inline cudaError_t cudaMallocHost(T** p, std::size_t bytes) {
  return cudaMallocHost(reinterpret_cast<void**>(p), bytes);
}
inline cudaError_t cudaMemGetInfo(std::size_t* free_b, std::size_t* total_b) {
  using namespace genlm_cuda_emu::detail;
  std::lock_guard<std::mutex> lock(st().mu);
  *total_b = st().capacity;
  *free_b = st().capacity - std::min(st().capacity, st().device_bytes);
  return st().sticky;
}
namespace genlm_cuda_emu::detail {
/// cudaMemcpy (blocking: the host waits for the copy) and cudaMemcpyAsync.
inline cudaError_t memcpy_on(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, cudaStream_t stream,
                             bool blocking) {
  fake_cuda_drain(stream);
  if (const cudaError_t s = sticky(); s != cudaSuccess) return s;
  if (bytes == 0) return cudaSuccess;
  if (const cudaError_t e = check_copy(dst, src, bytes, kind, "cudaMemcpy"); e != cudaSuccess) return e;
  const bool to_dev = is_device_range(dst, bytes), from_dev = is_device_range(src, bytes);
  queued(stream, to_dev ? (from_dev ? "cudaMemcpy DtoD" : "cudaMemcpy HtoD")
                        : (from_dev ? "cudaMemcpy DtoH" : "cudaMemcpy HtoH"));
  // into pageable host memory: cudaMemcpyAsync returns when the copy is done
  if (blocking || (!to_dev && !is_pinned_range(dst, bytes) && from_dev)) waited(stream);
  if (stream && (kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDefault) && is_pinned_range(src, bytes) &&
      to_dev) {
    // a DMA from pinned memory: runs when the stream next does something (reads src then)
    auto ran = std::make_shared<bool>(false);
    stream->block = [dst, src, bytes, ran] {
      if (!*ran && sticky() == cudaSuccess) std::memmove(dst, src, bytes);
      *ran = true;
    };
    stream->done = [ran] { return *ran; };
    return cudaSuccess;
  }
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
}  // namespace genlm_cuda_emu::detail
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t stream = nullptr) {
  return genlm_cuda_emu::detail::memcpy_on(dst, src, bytes, kind, stream, false);
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  return genlm_cuda_emu::detail::memcpy_on(dst, src, bytes, kind, nullptr, true);
}
inline cudaError_t cudaMemsetAsync(void* p, int v, std::size_t bytes, cudaStream_t stream = nullptr) {
  using namespace genlm_cuda_emu::detail;
  fake_cuda_drain(stream);
  if (const cudaError_t s = sticky(); s != cudaSuccess) return s;
  if (bytes == 0) return cudaSuccess;
  if (!is_device_range(p, bytes))
    return fail(cudaErrorInvalidValue, "cudaMemset: " + hex(p) + " + " + std::to_string(bytes) +
                                           " bytes is not inside a device allocation");
  queued(stream, "cudaMemset");
  std::memset(p, v, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* p, int v, std::size_t bytes) { return cudaMemsetAsync(p, v, bytes, nullptr); }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  using namespace genlm_cuda_emu::detail;
  *s = new CUstream_st;
  (*s)->device = current_device;
  {
    std::lock_guard<std::mutex> lock(st().mu);
    st().streams.push_back(*s);
  }
  return ret(cudaSuccess);
}
inline cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  using namespace genlm_cuda_emu::detail;
  fake_cuda_drain(s);  // the stream's queued work still completes
  {
    std::lock_guard<std::mutex> lock(st().mu);
    auto& v = st().streams;
    v.erase(std::remove(v.begin(), v.end(), s), v.end());
  }
  delete s;
  return ret(cudaSuccess);
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  fake_cuda_drain(s);
  genlm_cuda_emu::detail::waited(s);
  return genlm_cuda_emu::detail::sticky();
}
inline cudaError_t cudaStreamQuery(cudaStream_t s) {
  if (s && s->done && !s->done()) return cudaErrorNotReady;
  return genlm_cuda_emu::detail::sticky();
}
inline cudaError_t cudaDeviceSynchronize() {
  genlm_cuda_emu::detail::drain_device();
  genlm_cuda_emu::detail::waited_device();
  return genlm_cuda_emu::detail::sticky();
}
constexpr unsigned cudaEventDefault = 0, cudaEventDisableTiming = 2;
inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return genlm_cuda_emu::detail::ret(cudaSuccess);
}
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr) {
  e->t = std::chrono::steady_clock::now();
  e->recorded = true;
  e->stream = s;
  e->done = s && s->done ? s->done : nullptr;  // completes with the stream's pending operation
  e->queue = s ? s->queue : genlm_cuda_emu::detail::st().null_queue;
  e->position = e->queue->queued.load();
  return genlm_cuda_emu::detail::ret(cudaSuccess);
}
/// Runs the event's pending operation when it has not run yet (it is then still its stream's:
/// a stream's next operation runs the pending one first).
inline void fake_cuda_event_drain(cudaEvent_t e) {
  if (e->done && !e->done()) fake_cuda_drain(e->stream);
  e->done = nullptr;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  fake_cuda_event_drain(e);
  if (e->queue && genlm_cuda_emu::detail::wait_for(*e->queue, e->position)) ++genlm_cuda_emu::detail::st().waits;
  return genlm_cuda_emu::detail::sticky();
}
inline cudaError_t cudaEventQuery(cudaEvent_t e) {
  if (e->done && !e->done()) return cudaErrorNotReady;
  return genlm_cuda_emu::detail::sticky();
}
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!a->recorded || !b->recorded) return genlm_cuda_emu::detail::ret(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return genlm_cuda_emu::detail::ret(cudaSuccess);
}
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned = 0) {
  fake_cuda_event_drain(e);  // the waiting stream's later work comes after the event's
  return genlm_cuda_emu::detail::ret(cudaSuccess);
}
