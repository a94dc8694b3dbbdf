// Self-checks of the CUDA host emulator (include/genlm_cuda_emu/emulator.hpp): the checks it
// promises must fire, and barriers / shuffles / block reductions must mean what they mean on a
// GPU. Without these the parity suites run under it could pass for the wrong reason.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <genlm/backend/cuda.cuh>

namespace {

using genlm::index_t;

// Reverses each block's values through shared memory: wrong without the barrier.
__global__ void reverse_in_block(const float* x, float* y) {
  __shared__ float s[64];
  const unsigned t = threadIdx.x;
  s[t] = x[blockIdx.x * 64 + t];
  __syncthreads();
  y[blockIdx.x * 64 + t] = s[63 - t];
}
// A missing barrier: thread t reads what thread t - 1 wrote to shared memory.
__global__ void shift_without_barrier(const float* x, float* y) {
  __shared__ float s[64];
  const unsigned t = threadIdx.x;
  s[t] = x[t];
  y[t] = t > 0 ? s[t - 1] : s[63];
}
// Half of the threads skip the barrier.
__global__ void divergent_barrier(float* y) {
  if (threadIdx.x % 2 == 0) return;
  __syncthreads();
  y[threadIdx.x] = 1.0f;
}
// A full-mask shuffle reached by half of a warp.
__global__ void divergent_shuffle(float* y) {
  if (threadIdx.x < 16) return;
  y[threadIdx.x] = __shfl_xor_sync(0xffffffffu, float(threadIdx.x), 1);
}
__global__ void warp_sums(const double* x, double* y) {
  y[threadIdx.x] = genlm::cuda_kernels::warp_sum(x[threadIdx.x]);
}
__global__ void write_index(float* y, index_t n) {
  const index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = float(i);
}

template <class T>
struct device_buffer {
  T* p = nullptr;
  explicit device_buffer(std::size_t n) { REQUIRE(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)) == cudaSuccess); }
  ~device_buffer() { cudaFree(p); }
  std::vector<T> get(std::size_t n) const {
    std::vector<T> h(n);
    REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
  }
  void set(const std::vector<T>& h) {
    REQUIRE(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
};

}  // namespace

TEST_CASE("emulator: __syncthreads orders the threads of a block", "[emulator]") {
  genlm_cuda_emu::reset();
  device_buffer<float> x(128), y(128);
  std::vector<float> h(128);
  for (int i = 0; i < 128; ++i) h[std::size_t(i)] = float(i);
  x.set(h);
  GENLM_CUDA_KERNEL_LAUNCH(reverse_in_block, 2, 64, nullptr, "reverse_in_block")(x.p, y.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  const auto r = y.get(128);
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 64; ++t) CHECK(r[std::size_t(b * 64 + t)] == float(b * 64 + 63 - t));
}

TEST_CASE("emulator: warp shuffles sum over the 32 lanes of each warp", "[emulator]") {
  genlm_cuda_emu::reset();
  device_buffer<double> x(64), y(64);
  std::vector<double> h(64);
  for (int i = 0; i < 64; ++i) h[std::size_t(i)] = double(i * i);
  x.set(h);
  GENLM_CUDA_KERNEL_LAUNCH(warp_sums, 1, 64, nullptr, "warp_sums")(x.p, y.p);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  double s0 = 0, s1 = 0;
  for (int i = 0; i < 32; ++i) s0 += double(i * i), s1 += double((i + 32) * (i + 32));
  const auto r = y.get(64);
  for (int i = 0; i < 64; ++i) CHECK(r[std::size_t(i)] == (i < 32 ? s0 : s1));
}

TEST_CASE("emulator: a barrier that not every thread reaches is a sticky launch failure", "[emulator]") {
  genlm_cuda_emu::reset();
  device_buffer<float> y(64);
  GENLM_CUDA_KERNEL_LAUNCH(divergent_barrier, 1, 64, nullptr, "divergent_barrier")(y.p);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
  CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure);  // sticky, as a GPU fault
  void* p = nullptr;
  CHECK(cudaMalloc(&p, 16) == cudaErrorLaunchFailure);
  genlm_cuda_emu::reset();
  GENLM_CUDA_KERNEL_LAUNCH(divergent_shuffle, 1, 32, nullptr, "divergent_shuffle")(y.p);
  CHECK(cudaGetLastError() == cudaErrorLaunchFailure);
  genlm_cuda_emu::reset();
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
}

TEST_CASE("emulator: a host pointer passed to a kernel is an illegal address", "[emulator]") {
  genlm_cuda_emu::reset();
  std::vector<float> host(64);
  GENLM_CUDA_KERNEL_LAUNCH(write_index, 1, 64, nullptr, "write_index")(host.data(), index_t(64));
  CHECK(cudaGetLastError() == cudaErrorIllegalAddress);
  CHECK(host[5] == 0.0f);  // the kernel did not run
  genlm_cuda_emu::reset();
  // and through the backend: cuda_error naming the kernel
  CHECK_THROWS_WITH(genlm::cuda::fill(host.data(), 64, 1.0f), Catch::Contains("fill") && Catch::Contains("illegal"));
  genlm_cuda_emu::reset();
  // past the end of an allocation is no longer inside it
  device_buffer<float> y(64);
  GENLM_CUDA_KERNEL_LAUNCH(write_index, 1, 64, nullptr, "write_index")(y.p + 64 + 64, index_t(0));
  CHECK(cudaGetLastError() == cudaErrorIllegalAddress);
  genlm_cuda_emu::reset();
}

TEST_CASE("emulator: invalid launch shapes fail at launch and are not sticky", "[emulator]") {
  genlm_cuda_emu::reset();
  device_buffer<float> y(64);
  GENLM_CUDA_KERNEL_LAUNCH(write_index, 1, 2048, nullptr, "write_index")(y.p, index_t(64));
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(cudaGetLastError() == cudaSuccess);
  GENLM_CUDA_KERNEL_LAUNCH(write_index, 0, 64, nullptr, "write_index")(y.p, index_t(64));
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
}

TEST_CASE("emulator: new device memory reads as NaN; copies must match their direction", "[emulator]") {
  genlm_cuda_emu::reset();
  device_buffer<float> y(16);
  const auto v = y.get(16);
  for (float f : v) CHECK(std::isnan(f));
  std::vector<float> h(16, 1.0f);
  CHECK(cudaMemcpy(y.p, h.data(), 64, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);  // reversed kind
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(y.p, h.data(), 68, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);  // past the end
  CHECK(cudaMemcpy(y.p, h.data(), 64, cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);  // kept until read, as CUDA's last error
  CHECK(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("emulator: cuBLAS argument checks and compute-type rounding", "[emulator]") {
  genlm_cuda_emu::reset();
  cublasHandle_t h = nullptr;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  device_buffer<float> a(6), b(6), c(4);
  a.set({1, 2, 3, 4, 5, 6});  // column-major (2, 3)
  b.set({1, 0, 0, 0, 1, 0});  // column-major (3, 2): columns e0, e1
  const float one = 1, zero = 0;
  // C(2,2) = A(2,3) B(3,2)
  REQUIRE(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.p, CUDA_R_32F, 2, b.p, CUDA_R_32F, 3, &zero, c.p,
                       CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
  CHECK(c.get(4) == std::vector<float>{1, 2, 3, 4});
  // lda below the rows of A: cuBLAS's INVALID_VALUE
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.p, CUDA_R_32F, 1, b.p, CUDA_R_32F, 3, &zero, c.p,
                     CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE);
  // a legal lda that runs past A's allocation: execution failure, sticky illegal address
  CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, a.p, CUDA_R_32F, 3, b.p, CUDA_R_32F, 3, &zero, c.p,
                     CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_EXECUTION_FAILED);
  CHECK(cudaDeviceSynchronize() == cudaErrorIllegalAddress);
  genlm_cuda_emu::reset();
  // rounding of the inputs
  using genlm_cuda_emu::blas::round_bf16;
  using genlm_cuda_emu::blas::round_fp16;
  using genlm_cuda_emu::blas::round_tf32;
  CHECK(round_bf16(1.0f + 1.0f / 256) == 1.0f);                 // tie -> even
  CHECK(round_bf16(1.0f + 3.0f / 256) == 1.0f + 4.0f / 256);    // tie -> even (up)
  CHECK(round_tf32(1.0f + 1.0f / 2048) == 1.0f + 1.0f / 1024);  // tie -> away
  CHECK(round_tf32(1.0f + 1.0f / 4096) == 1.0f);
  CHECK(round_fp16(65504.0f) == 65504.0f);
  CHECK(std::isinf(round_fp16(65520.0f)));
  CHECK(round_fp16(1.0f + 1.0f / 2048) == 1.0f);                // tie -> even
  CHECK(round_fp16(3e-8f) == 5.9604644775390625e-08f);           // nearest subnormal
  CHECK(std::isnan(round_fp16(std::nanf(""))));
  a.set({1.0f + 1.0f / 1024, 0, 0, 0, 0, 0});
  b.set({1, 0, 0, 0, 0, 0});
  REQUIRE(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, a.p, CUDA_R_32F, 1, b.p, CUDA_R_32F, 1, &zero, c.p,
                       CUDA_R_32F, 1, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
  CHECK(c.get(1)[0] == 1.0f);
  REQUIRE(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, a.p, CUDA_R_32F, 1, b.p, CUDA_R_32F, 1, &zero, c.p,
                       CUDA_R_32F, 1, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
  CHECK(c.get(1)[0] == 1.0f + 1.0f / 1024);
  cublasDestroy(h);
}

TEST_CASE("emulator: reverse order runs blocks back to front", "[emulator]") {
  genlm_cuda_emu::reset();
  device_buffer<float> y(300);
  genlm_cuda_emu::set_reverse_order(true);
  GENLM_CUDA_KERNEL_LAUNCH(write_index, 3, 128, nullptr, "write_index")(y.p, index_t(300));
  genlm_cuda_emu::set_reverse_order(false);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  const auto r = y.get(300);
  for (int i = 0; i < 300; ++i) CHECK(r[std::size_t(i)] == float(i));
}

TEST_CASE("emulator: reverse order exposes a missing barrier that thread order hides", "[emulator]") {
  genlm_cuda_emu::reset();
  device_buffer<float> x(64), y(64);
  std::vector<float> a(64), b(64);
  for (int i = 0; i < 64; ++i) a[std::size_t(i)] = float(i), b[std::size_t(i)] = float(100 + i);
  const auto run = [&](const std::vector<float>& in) {
    x.set(in);
    GENLM_CUDA_KERNEL_LAUNCH(shift_without_barrier, 1, 64, nullptr, "shift_without_barrier")(x.p, y.p);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    return y.get(64);
  };
  run(a);
  auto r = run(b);  // in thread order, thread t - 1 has written before thread t reads: looks right
  for (int t = 1; t < 64; ++t) CHECK(r[std::size_t(t)] == b[std::size_t(t - 1)]);
  genlm_cuda_emu::set_reverse_order(true);
  r = run(a);  // thread t reads before thread t - 1 writes: the previous launch's values show
  genlm_cuda_emu::set_reverse_order(false);
  int stale = 0;
  for (int t = 1; t < 64; ++t) stale += r[std::size_t(t)] == b[std::size_t(t - 1)];
  CHECK(stale == 63);
}

TEST_CASE("emulator: a copy from pinned memory runs when its stream next works, and events track it", "[emulator]") {
  genlm_cuda_emu::reset();
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  float* pinned = nullptr;
  REQUIRE(cudaMallocHost(reinterpret_cast<void**>(&pinned), 64 * sizeof(float)) == cudaSuccess);
  device_buffer<float> y(64), z(64);
  cudaEvent_t ev = nullptr;
  REQUIRE(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) == cudaSuccess);

  for (int i = 0; i < 64; ++i) pinned[i] = 1.0f;
  REQUIRE(cudaMemcpyAsync(y.p, pinned, 64 * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  REQUIRE(cudaEventRecord(ev, s) == cudaSuccess);
  CHECK(cudaEventQuery(ev) == cudaErrorNotReady);
  CHECK(cudaStreamQuery(s) == cudaErrorNotReady);
  for (int i = 0; i < 64; ++i) pinned[i] = 2.0f;  // rewritten before the DMA ran: the DMA reads this
  REQUIRE(cudaEventSynchronize(ev) == cudaSuccess);
  CHECK(cudaEventQuery(ev) == cudaSuccess);
  CHECK(cudaStreamQuery(s) == cudaSuccess);
  for (float f : y.get(64)) CHECK(f == 2.0f);

  // the stream's next operation runs the pending copy first (a kernel reading the data sees it)
  for (int i = 0; i < 64; ++i) pinned[i] = 3.0f;
  REQUIRE(cudaMemcpyAsync(z.p, pinned, 64 * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(y.p, z.p, 64 * sizeof(float), cudaMemcpyDeviceToDevice, s) == cudaSuccess);
  for (float f : y.get(64)) CHECK(f == 3.0f);

  // pageable sources and the legacy stream copy at once, as before
  std::vector<float> h(64, 4.0f);
  REQUIRE(cudaMemcpyAsync(y.p, h.data(), 64 * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  CHECK(cudaStreamQuery(s) == cudaSuccess);
  h.assign(64, 5.0f);
  for (float f : y.get(64)) CHECK(f == 4.0f);

  // cudaDeviceSynchronize, a memset on the stream and a cudaFree also run a pending copy
  pinned[0] = 6.0f;
  REQUIRE(cudaMemcpyAsync(y.p, pinned, sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(cudaStreamQuery(s) == cudaSuccess);
  CHECK(y.get(1)[0] == 6.0f);
  pinned[0] = 7.0f;
  REQUIRE(cudaMemcpyAsync(y.p, pinned, sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  REQUIRE(cudaMemsetAsync(z.p, 0, sizeof(float), s) == cudaSuccess);
  CHECK(cudaStreamQuery(s) == cudaSuccess);
  CHECK(y.get(1)[0] == 7.0f);

  REQUIRE(cudaEventDestroy(ev) == cudaSuccess);
  REQUIRE(cudaFreeHost(pinned) == cudaSuccess);
  REQUIRE(cudaStreamDestroy(s) == cudaSuccess);
}

TEST_CASE("emulator: host_waits counts the waits that find queued work, once each", "[emulator]") {
  genlm_cuda_emu::reset();
  cudaStream_t s = nullptr, t = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  REQUIRE(cudaStreamCreateWithFlags(&t, cudaStreamNonBlocking) == cudaSuccess);
  device_buffer<float> y(64);
  float* pinned = nullptr;
  REQUIRE(cudaMallocHost(reinterpret_cast<void**>(&pinned), 64 * sizeof(float)) == cudaSuccess);
  cudaEvent_t ev = nullptr;
  REQUIRE(cudaEventCreate(&ev) == cudaSuccess);
  auto waits = [base = genlm_cuda_emu::host_waits()]() mutable {
    const std::uint64_t now = genlm_cuda_emu::host_waits(), d = now - base;
    base = now;
    return d;
  };
  const auto kernel = [&](cudaStream_t on) {
    GENLM_CUDA_KERNEL_LAUNCH(write_index, 1, 64, on, "write_index")(y.p, index_t(64));
    REQUIRE(cudaGetLastError() == cudaSuccess);
  };

  // a synchronisation of an idle stream, or a second one, does not wait
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(waits() == 0);
  kernel(s);
  kernel(s);
  CHECK(waits() == 0);  // queued work alone is no wait
  REQUIRE(cudaStreamSynchronize(t) == cudaSuccess);
  CHECK(waits() == 0);  // another stream's
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(waits() == 1);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(waits() == 0);

  // a copy into pageable memory returns when it is done: one wait, and the stream is idle after it
  std::vector<float> h(64);
  kernel(s);
  REQUIRE(cudaMemcpyAsync(h.data(), y.p, 64 * sizeof(float), cudaMemcpyDeviceToHost, s) == cudaSuccess);
  CHECK(waits() == 1);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(waits() == 0);
  // into pinned memory it is queued; uploads from pinned or pageable memory are queued
  REQUIRE(cudaMemcpyAsync(pinned, y.p, 64 * sizeof(float), cudaMemcpyDeviceToHost, s) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(y.p, pinned, 64 * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(y.p, h.data(), 64 * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  CHECK(waits() == 0);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(waits() == 1);
  // cudaMemcpy blocks in every direction
  REQUIRE(cudaMemcpy(y.p, h.data(), 64 * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(waits() == 1);

  // an event: a wait for the work before it, counted once
  kernel(s);
  REQUIRE(cudaEventRecord(ev, s) == cudaSuccess);
  REQUIRE(cudaEventSynchronize(ev) == cudaSuccess);
  REQUIRE(cudaEventSynchronize(ev) == cudaSuccess);
  CHECK(waits() == 1);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);  // nothing queued after the event
  CHECK(waits() == 0);
  kernel(s);
  REQUIRE(cudaEventRecord(ev, s) == cudaSuccess);
  kernel(s);
  REQUIRE(cudaEventSynchronize(ev) == cudaSuccess);  // the first kernel
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);  // the second
  CHECK(waits() == 2);
  kernel(s);
  REQUIRE(cudaEventRecord(ev, s) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  REQUIRE(cudaEventSynchronize(ev) == cudaSuccess);  // waited for already
  CHECK(waits() == 1);

  // cudaDeviceSynchronize and cudaFree wait for every stream of the device, once
  kernel(s);
  kernel(t);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(waits() == 1);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(waits() == 0);
  kernel(t);
  {
    device_buffer<float> tmp(4);
  }  // cudaFree
  CHECK(waits() == 1);
  // memsets and cuBLAS calls are queued work too
  REQUIRE(cudaMemsetAsync(y.p, 0, 64 * sizeof(float), s) == cudaSuccess);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(waits() == 1);
  cublasHandle_t hb = nullptr;
  REQUIRE(cublasCreate(&hb) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSetStream(hb, s) == CUBLAS_STATUS_SUCCESS);
  const float one = 1.0f, zero = 0.0f;
  device_buffer<float> c(64);
  REQUIRE(cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, y.p, CUDA_R_32F, 8, y.p, CUDA_R_32F, 8, &zero, c.p,
                       CUDA_R_32F, 8, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
  CHECK(waits() == 0);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(waits() == 1);
  REQUIRE(cublasDestroy(hb) == CUBLAS_STATUS_SUCCESS);

  REQUIRE(cudaEventDestroy(ev) == cudaSuccess);
  REQUIRE(cudaFreeHost(pinned) == cudaSuccess);
  REQUIRE(cudaStreamDestroy(s) == cudaSuccess);
  REQUIRE(cudaStreamDestroy(t) == cudaSuccess);
}

TEST_CASE("emulator: operations() counts queued work by name; failed launches are not counted", "[emulator]") {
  genlm_cuda_emu::reset();
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
  device_buffer<float> y(64), c(64);
  std::vector<float> h(64, 1.0f);
  const auto before = genlm_cuda_emu::operations();
  GENLM_CUDA_KERNEL_LAUNCH(write_index, 1, 64, s, "write_index")(y.p, index_t(64));
  GENLM_CUDA_KERNEL_LAUNCH(write_index, 1, 64, s, "write_index")(y.p, index_t(64));
  GENLM_CUDA_KERNEL_LAUNCH(write_index, 1, 2048, s, "write_index")(y.p, index_t(64));  // too many threads
  CHECK(cudaGetLastError() != cudaSuccess);
  REQUIRE(cudaMemcpyAsync(c.p, h.data(), 64 * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(c.p, y.p, 64 * sizeof(float), cudaMemcpyDeviceToDevice, s) == cudaSuccess);
  REQUIRE(cudaMemcpy(h.data(), c.p, 64 * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(c.p, h.data(), 0, cudaMemcpyHostToDevice, s) == cudaSuccess);  // empty: nothing queued
  REQUIRE(cudaMemsetAsync(y.p, 0, 64 * sizeof(float), s) == cudaSuccess);
  cublasHandle_t hb = nullptr;
  REQUIRE(cublasCreate(&hb) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSetStream(hb, s) == CUBLAS_STATUS_SUCCESS);
  const float one = 1.0f, zero = 0.0f;
  REQUIRE(cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, y.p, CUDA_R_32F, 8, y.p, CUDA_R_32F, 8, &zero, c.p,
                       CUDA_R_32F, 8, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasGemmEx(hb, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, y.p, CUDA_R_32F, 1, y.p, CUDA_R_32F, 8, &zero, c.p,
                     CUDA_R_32F, 8, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE);  // lda
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  const auto d = genlm_cuda_emu::operations_between(before, genlm_cuda_emu::operations());
  const std::map<std::string, std::uint64_t> want = {{"write_index", 2},        {"cudaMemcpy HtoD", 1},
                                                     {"cudaMemcpy DtoD", 1},    {"cudaMemcpy DtoH", 1},
                                                     {"cudaMemset", 1},         {"cublasGemmEx", 1}};
  CHECK(d == want);
  REQUIRE(cublasDestroy(hb) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaStreamDestroy(s) == cudaSuccess);
}
