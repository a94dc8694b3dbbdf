// benchmarks/workload_cuda.cu - genlm's CUDA backend: ONE workload per process, printed as a JSON
// line (for scripts/compare_pytorch.py --device cuda), or cuBLAS's own GEMM peak (--peak).
//   genlm_workload_cuda --config paper|small --workload forward|train [--precision fp32|tf32|bf16]
//                       [--batch 8] [--len 30] [--iters 20] [--warmup 3]
//   genlm_workload_cuda --peak [--precision fp32|tf32|bf16|bf16_native] [--size 8192]
// Exit status 77 (and a message) when no CUDA device is visible.
//
// The GPU workload (cuda_workload below) is the device-side mirror of benchmarks/common.hpp's CPU
// workload, on the same synthetic batch: inference forward (eval mode), or one training step =
// forward (dropout 0.1) + masked-gene loss and its gradients on the device
// (cuda_backend::masked_gene_loss_grad: no host round trip) + backward + clip_grad_value(1) +
// AdamW (transformers 4.22 rule, lr 1e-4, eps 1e-6). Step time = host wall clock between two
// stream synchronisations (as the PyTorch side: torch.cuda.synchronize()).
// benchmarks/bench_cuda.cu includes this file with GENLM_WORKLOAD_CUDA_NO_MAIN defined, so the
// workload, the peak GEMM and the FLOP counts are one code for both binaries.
#include <sys/resource.h>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <genlm/backend/cuda.cuh>
#include <genlm/train/step.hpp>

#include "common.hpp"

namespace genlm::bench {

/// Device memory for the loss op's index/label/term arrays (the backend's caching allocator).
template <class U>
struct device_array {
  U* p = nullptr;
  index_t n = 0;
  device_array() = default;
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
  ~device_array() { reset(); }
  void reset() {
    if (p) cuda_allocator::deallocate(p);
    p = nullptr;
    n = 0;
  }
  void upload(const std::vector<U>& h) {
    reset();
    n = index_t(h.size());
    p = static_cast<U*>(cuda_allocator::allocate(std::max<std::size_t>(1, h.size()) * sizeof(U)));
    // on the backend's stream: a reused cached block may still be read by earlier kernels there
    if (!h.empty()) cuda::copy_from_host(p, h.data(), index_t(h.size()));
  }
  void zeros(index_t count) {
    reset();
    n = count;
    p = static_cast<U*>(cuda_allocator::allocate(std::size_t(std::max<index_t>(1, count)) * sizeof(U)));
    GENLM_CUDA_CHECK(cudaMemsetAsync(p, 0, std::size_t(std::max<index_t>(1, count)) * sizeof(U), cuda::stream()));
  }
};

/// A model of config C on the CUDA backend with a synthetic batch (the CPU workload's data) and
/// everything a training step needs, all on the device. set_batch() swaps the batch and keeps the
/// model and optimizer state.
template <model_config C, class Backend, class T = float>
struct cuda_workload {
  using model_t = GLM<C, Backend, T>;
  using tensor_t = tensor<T, Backend>;
  static constexpr index_t K = C.hypotheses, D = C.label_dim();
  index_t B = 0, L = 0, n = 0;
  model_t model;
  std::unique_ptr<adamw<T, Backend>> opt;  // created by the first train_step
  tensor_t x, mask, d_hyp, d_log;
  device_array<std::int64_t> rows;    // flat row b * L + l of each masked gene
  device_array<double> labels, terms;  // (n, D) clipped labels; 2n loss terms
  masked_batch<T> host;                // the same batch on the host (trainer_step)
  masked_gene_pass<model_t> pass;      // trainer_step's forward + loss + backward
  masked_gene_metrics last;            // trainer_step's metrics
  std::uint64_t step_no = 0;

  cuda_workload(index_t B_, index_t L_, const model_options& mo = {}) : model(mo) { set_batch(B_, L_); }

  /// The same batch as bench::workload<C>(B, L): inputs randn(seed 1), every gene real, 15% masked
  /// (Philox stream 3), labels randn(seed 5) clipped to [-10, 10].
  void set_batch(index_t B_, index_t L_) {
    B = B_;
    L = L_;
    std::vector<T> hx = randn<T>(std::size_t(B * L * C.input_dim()), 1);
    std::vector<T> hm(std::size_t(B * L), T(1));
    rng g(3, 0);
    std::vector<gene_pos> masked = mask_genes(hx, hm, B, L, C.input_dim(), g);
    if (masked.empty()) {
      masked.push_back({0, 0});
      std::fill(hx.begin(), hx.begin() + C.input_dim(), T(-1));
    }
    n = index_t(masked.size());
    std::vector<double> lab = randn<double>(std::size_t(n * D), 5);
    for (auto& v : lab) v = std::clamp(v, -10.0, 10.0);
    std::vector<std::int64_t> r;
    for (const auto& m : masked) r.push_back(std::int64_t(m.b * L + m.l));
    x.from_host({B, L, C.input_dim()}, hx);
    mask.from_host({B, L}, hm);
    host.b.B = B, host.b.L = L, host.b.F = C.input_dim();
    host.b.x = hx;
    host.b.mask = hm;
    host.masked = masked;
    host.labels = lab;
    pass.reserve(std::size_t(B * L));
    pass.count_nonfinite_gradients(true);  // the trainer's gradient check, in the pass's copy
    rows.upload(r);
    labels.upload(lab);
    terms.zeros(2 * n);
    d_hyp.resize_zero({B, L, K, D});
    d_log.resize_zero({B, L, K});
    Backend::synchronize();
  }

  /// Inference forward (eval mode: no dropout).
  void forward() { model.forward(run_context{}, x, mask); }

  /// forward (dropout on) + masked-gene loss on the device + backward + clip_grad_value(1) + AdamW.
  /// Nothing is copied to the host (the loss terms stay on the device: see loss()).
  void train_step() {
    run_context ctx;
    ctx.training = true;
    ctx.seed = 11;
    ctx.step = step_no++;
    auto out = model.forward(ctx, x, mask);
    d_hyp.zero();  // the op writes only the rows of masked genes
    d_log.zero();
    Backend::masked_gene_loss_grad(out.hypotheses.data(), out.logits.data(), K, D, rows.p, labels.p, n,
                                   1.0 / double(n * D), 1e-4 / double(n), d_hyp.data(), d_log.data(), terms.p,
                                   static_cast<std::int32_t*>(nullptr));
    model.backward(d_hyp, d_log);
    clip_grad_value(model.parameters(), 1.0);
    if (!opt) opt = std::make_unique<adamw<T, Backend>>(model.parameters(), adamw_options::transformers_4_22(1e-4));
    opt->step(model.parameters());
  }

  /// train_step as genlm::trainer runs it (less the batch assembly): masked_gene_pass from the
  /// host batch (inputs and mask checked on the host and uploaded through the pinned ring, rows and
  /// labels uploaded, loss, metrics and the gradients' NaN/Inf count on the device, 6 doubles per
  /// masked gene and the count copied back after the backward pass: the host's one wait) +
  /// clip_grad_value(1) + AdamW. Metrics in `last`.
  void trainer_step() {
    run_context ctx;
    ctx.training = true;
    ctx.seed = 11;
    ctx.step = step_no++;
    last = pass.run(model, ctx, host, masked_gene_loss_options{}, 1.0, true);
    check<value_error>(pass.nonfinite_gradients() == 0, "trainer_step: ", pass.nonfinite_gradients(),
                       " non-finite gradients");
    clip_grad_value(model.parameters(), 1.0);
    if (!opt) opt = std::make_unique<adamw<T, Backend>>(model.parameters(), adamw_options::transformers_4_22(1e-4));
    opt->step(model.parameters());
  }

  /// The loss of the last train_step (MSE of the closest hypothesis + 1e-4 CE); synchronises.
  double loss() const {
    std::vector<double> t(std::size_t(2 * n));
    Backend::synchronize();
    GENLM_CUDA_CHECK(cudaMemcpy(t.data(), terms.p, t.size() * sizeof(double), cudaMemcpyDeviceToHost));
    double mse = 0, ce = 0;
    for (index_t i = 0; i < n; ++i) mse += t[std::size_t(2 * i)], ce += t[std::size_t(2 * i + 1)];
    return mse / double(n * D) + 1e-4 * ce / double(n);
  }
};

// ---------------------------------------------------------------------------- cuBLAS peak
namespace cuda_bench_detail {
__global__ void fill_uniform(float* x, std::size_t n, std::uint32_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    std::uint32_t h = std::uint32_t(i) * 2654435761u ^ (seed * 0x9E3779B9u) ^ std::uint32_t(i >> 32);
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;
    x[i] = float(h) * (2.0f / 4294967296.0f) - 1.0f;  // uniform [-1, 1): never zeros
  }
}
__global__ void to_bf16(const float* x, __nv_bfloat16* y, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16(x[i]);
}
}  // namespace cuda_bench_detail

/// Random values in [-1, 1) on the device (never zeros: a product of zeros runs faster).
inline void device_fill_random(float* x, std::size_t n, std::uint32_t seed, cudaStream_t s) {
  GENLM_CUDA_KERNEL_LAUNCH(cuda_bench_detail::fill_uniform, 1024, 256, s, "fill_uniform")(x, n, seed);
  GENLM_CUDA_LAUNCH_CHECK("fill_uniform", s);
}

/// Two CUDA events on stream s: seconds(f) is the GPU time of the work f() queues on s (the host
/// waits for the second event). Used by this file and benchmarks/bench_cuda.cu.
class event_timer {
 public:
  explicit event_timer(cudaStream_t s) : s_(s) {
    GENLM_CUDA_CHECK(cudaEventCreate(&a_));
    GENLM_CUDA_CHECK(cudaEventCreate(&b_));
  }
  event_timer(const event_timer&) = delete;
  event_timer& operator=(const event_timer&) = delete;
  ~event_timer() {
    cudaEventDestroy(a_);
    cudaEventDestroy(b_);
  }
  template <class F>
  double seconds(F&& f) {
    GENLM_CUDA_CHECK(cudaEventRecord(a_, s_));
    f();
    GENLM_CUDA_CHECK(cudaEventRecord(b_, s_));
    GENLM_CUDA_CHECK(cudaEventSynchronize(b_));
    float ms = 0;
    GENLM_CUDA_CHECK(cudaEventElapsedTime(&ms, a_, b_));
    return double(ms) * 1e-3;
  }

 private:
  cudaStream_t s_;
  cudaEvent_t a_ = nullptr, b_ = nullptr;
};

/// Median over `reps` event-timed runs of f() on stream s, in seconds (after `warmup` runs).
template <class F>
double time_median_s(cudaStream_t s, int warmup, int reps, F&& f) {
  for (int i = 0; i < warmup; ++i) f();
  event_timer timer(s);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) t.push_back(timer.seconds(f));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

/// cuBLAS's own rate (TFLOP/s) on an n^3 GEMM made the way genlm makes its products: float32
/// storage through cuda_backend<P>::gemm (cublasGemmEx with P's compute type). The reference of
/// every "pct_of_cublas_peak" figure. Memory is released afterwards.
template <class P>
double cublas_peak_tflops(index_t n = 8192) {
  using Bk = cuda_backend<P>;
  const std::size_t e = std::size_t(n) * std::size_t(n);
  float* A = Bk::template allocate<float>(index_t(e));
  float* Bm = Bk::template allocate<float>(index_t(e));
  float* Cm = Bk::template allocate<float>(index_t(e));
  device_fill_random(A, e, 1, Bk::stream());
  device_fill_random(Bm, e, 2, Bk::stream());
  const double s = time_median_s(Bk::stream(), 3, 10, [&] {
    Bk::gemm(false, false, n, n, n, 1.0f, A, n, Bm, n, 0.0f, Cm, n);
  });
  Bk::deallocate(A);
  Bk::deallocate(Bm);
  Bk::deallocate(Cm);
  cuda_allocator::release_cached();
  return 2.0 * double(n) * double(n) * double(n) / s / 1e12;
}

/// For reference only: cuBLAS on native bf16 inputs (no float32 -> bf16 conversion inside the
/// product), float32 output and accumulation: the tensor cores' bf16 rate as cuBLAS reaches it.
inline double cublas_native_bf16_tflops(index_t n = 8192) {
  using Bk = cuda_backend<precision::fp32>;
  const std::size_t e = std::size_t(n) * std::size_t(n);
  float* tmp = Bk::allocate<float>(index_t(e));
  float* Cm = Bk::allocate<float>(index_t(e));
  auto* A = static_cast<__nv_bfloat16*>(cuda_allocator::allocate(e * sizeof(__nv_bfloat16)));
  auto* Bm = static_cast<__nv_bfloat16*>(cuda_allocator::allocate(e * sizeof(__nv_bfloat16)));
  const cudaStream_t st = Bk::stream();
  device_fill_random(tmp, e, 1, st);
  GENLM_CUDA_KERNEL_LAUNCH(cuda_bench_detail::to_bf16, 1024, 256, st, "to_bf16")(tmp, A, e);
  device_fill_random(tmp, e, 2, st);
  GENLM_CUDA_KERNEL_LAUNCH(cuda_bench_detail::to_bf16, 1024, 256, st, "to_bf16")(tmp, Bm, e);
  GENLM_CUDA_LAUNCH_CHECK("to_bf16", st);
  const float one = 1, zero = 0;
  const int ni = int(n);
  cublasHandle_t h = Bk::ctx().blas;
  const double s = time_median_s(st, 3, 10, [&] {
    GENLM_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, ni, ni, ni, &one, Bm, CUDA_R_16BF, ni, A, CUDA_R_16BF,
                                    ni, &zero, Cm, CUDA_R_32F, ni, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  });
  cuda_allocator::deallocate(A);
  cuda_allocator::deallocate(Bm);
  Bk::deallocate(tmp);
  Bk::deallocate(Cm);
  cuda_allocator::release_cached();
  return 2.0 * double(n) * double(n) * double(n) / s / 1e12;
}

/// "fp32" / "tf32" / "bf16" -> f.template operator()<precision::...>().
template <class F>
bool with_precision(const std::string& p, F&& f) {
  if (p == "fp32") return f.template operator()<precision::fp32>(), true;
  if (p == "tf32") return f.template operator()<precision::tf32>(), true;
  if (p == "bf16") return f.template operator()<precision::bf16>(), true;
  return false;
}

/// One line naming the device, or "" when none is visible.
inline std::string cuda_device_line() {
  if (!cuda_device::available()) return "";
  const cudaDeviceProp p = cuda_device::properties(0);
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %d SMs, %.1f GiB), driver CUDA %d.%d, runtime %d.%d", p.name, p.major,
                p.minor, p.multiProcessorCount, double(p.totalGlobalMem) / double(1ull << 30), drv / 1000,
                (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
  return buf;
}

/// Why no device is usable (cudaGetDeviceCount's error), for the no-device message.
inline std::string cuda_no_device_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  (void)cudaGetLastError();
  if (e != cudaSuccess) return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  return "cudaGetDeviceCount = 0";
}

}  // namespace genlm::bench

#ifndef GENLM_WORKLOAD_CUDA_NO_MAIN
using namespace genlm;

namespace {

template <model_config C, class Backend>
int run(const std::string& prec, const std::string& wl, index_t B, index_t L, int iters, int warmup) {
  bench::cuda_workload<C, Backend> w(B, L);
  auto once = [&] {
    if (wl == "forward")
      w.forward();
    else
      w.train_step();
  };
  for (int i = 0; i < warmup; ++i) once();
  Backend::synchronize();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    once();
    Backend::synchronize();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  const double med = t[t.size() / 2];
  const double flops = wl == "forward" ? bench::forward_flops<C>(B, L) : bench::train_flops<C>(B, L);
  const double loss = wl == "train" ? w.loss() : 0.0;
  const auto st = cuda_allocator::stats();
  std::size_t free_b = 0, total_b = 0;
  GENLM_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf(
      "{\"impl\": \"genlm\", \"device\": \"cuda\", \"device_name\": \"%s\", \"backend\": \"%s\", \"precision\": \"%s\", "
      "\"workload\": \"%s\", \"batch\": %ld, \"len\": %ld, \"median_s\": %.6f, \"min_s\": %.6f, \"genes_per_s\": %.2f, "
      "\"tflops\": %.3f, \"flop\": %.6e, \"params\": %ld, \"loss\": %.6g, \"gpu_peak_alloc_mb\": %.1f, "
      "\"gpu_used_mb\": %.1f, \"max_rss_mb\": %.1f}\n",
      cuda_device::name().c_str(), Backend::name, prec.c_str(), wl.c_str(), long(B), long(L), med, t.front(),
      double(B * L) / med, flops / med / 1e12, flops, long(w.model.parameters().count()), loss,
      double(st.peak_bytes) / 1048576.0, double(total_b - free_b) / 1048576.0, double(ru.ru_maxrss) / 1024.0);
  return 0;
}

template <model_config C>
int run_config(const std::string& prec, const std::string& wl, index_t B, index_t L, int iters, int warmup) {
  if (prec == "fp32") return run<C, genlm::cuda>(prec, wl, B, L, iters, warmup);
  if (prec == "tf32") return run<C, genlm::cuda_tf32>(prec, wl, B, L, iters, warmup);
  return run<C, genlm::cuda_bf16>(prec, wl, B, L, iters, warmup);
}

}  // namespace

int main(int argc, char** argv) {
  std::string config = "small", wl = "forward", prec = "fp32";
  long B = 8, L = 30, size = 8192;
  int iters = 20, warmup = 3;
  bool peak = false;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--peak") {
      peak = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "genlm_workload_cuda: option %s needs a value\n", k.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    if (k == "--config") config = v;
    else if (k == "--workload") wl = v;
    else if (k == "--precision") prec = v;
    else if (k == "--batch") B = std::stol(v);
    else if (k == "--len") L = std::stol(v);
    else if (k == "--iters") iters = std::max(1, std::stoi(v));
    else if (k == "--warmup") warmup = std::stoi(v);
    else if (k == "--size") size = std::stol(v);
    else {
      std::fprintf(stderr, "genlm_workload_cuda: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (wl != "forward" && wl != "train") {
    std::fprintf(stderr, "genlm_workload_cuda: --workload must be forward or train\n");
    return 2;
  }
  if (config != "paper" && config != "small") {
    std::fprintf(stderr, "genlm_workload_cuda: --config must be paper or small\n");
    return 2;
  }
  if (prec != "fp32" && prec != "tf32" && prec != "bf16" && !(peak && prec == "bf16_native")) {
    std::fprintf(stderr, "genlm_workload_cuda: --precision must be fp32, tf32 or bf16 (--peak: also bf16_native)\n");
    return 2;
  }
  if (!cuda_device::available()) {
    std::fprintf(stderr, "genlm_workload_cuda: no CUDA device visible (%s): nothing measured\n",
                 bench::cuda_no_device_reason().c_str());
    return 77;
  }
  try {
    if (peak) {
      double tf = 0;
      if (prec == "bf16_native")
        tf = bench::cublas_native_bf16_tflops(size);
      else
        bench::with_precision(prec, [&]<class P>() { tf = bench::cublas_peak_tflops<P>(size); });
      std::printf("{\"impl\": \"cublas\", \"device_name\": \"%s\", \"precision\": \"%s\", \"size\": %ld, \"tflops\": %.3f}\n",
                  cuda_device::name().c_str(), prec.c_str(), size, tf);
      return 0;
    }
    if (config == "paper") return run_config<configs::paper>(prec, wl, B, L, iters, warmup);
    return run_config<configs::small>(prec, wl, B, L, iters, warmup);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "genlm_workload_cuda: %s\n", e.what());
    return 1;
  }
}
#endif  // GENLM_WORKLOAD_CUDA_NO_MAIN
