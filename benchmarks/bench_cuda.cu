// benchmarks/bench_cuda.cu - genlm's CUDA backend on the GPU (Google Benchmark, manual timing with
// CUDA events on the backend's stream; every timed region ends with an event synchronisation).
//
//   cublas_peak/<p>            cuBLAS's own rate on an 8192^3 GEMM made as genlm makes its products
//                              (float32 storage, cublasGemmEx with policy p's compute type): the
//                              reference of every pct_of_cublas_peak counter. p = fp32, tf32, bf16;
//                              cublas_peak/bf16_native_inputs: bf16-stored inputs (reference only)
//   gemm/<p>/B<b>/<shape>      cuda_backend<p>::gemm / gemm_strided_batched on each product of
//                              configs::paper for b contigs x 30 genes (forward, dW, dx, attention)
//   model/<cfg>/<p>/B<b>/forward     inference forward (eval mode)
//   model/<cfg>/<p>/B<b>/train_step  forward (dropout) + masked-gene loss on the device + backward +
//                              clip_grad_value(1) + AdamW
//   model/<cfg>/<p>/B<b>/trainer_step  the same step as genlm::trainer runs it from a host batch
//                              (masked_gene_pass: uploads, host-side input checks, metrics and
//                              their download included; the batch assembly not)
//   layer/<p>/<cfg>/B<b>/<layer>_{fwd,bwd}  one layer's forward (training mode) or backward, built
//                              as genlm_bench_layers builds the CPU ones (benchmarks/layer_ops.hpp):
//                              qkvo, ffn_in, ffn_out (linear), layer_norm, gelu, dropout, attention,
//                              encoder_layer; counter genes/s
//   colsum/<op>/B<b>           column sums of a training step (bias gradients of 1280 and 3072
//                              columns, layer_norm_backward of 1280) on 30b rows (counter GB_per_s)
//   loss/{grads,metrics}/B<b>  the trainer's masked-gene loss ops (masked_gene_loss_grad,
//                              masked_gene_metrics_rows; float32) on paper-shaped outputs, 8 of
//                              every 30 genes masked (counters masked, us_per_call)
// Counters: TFLOPS (analytic FLOPs / GPU time), pct_of_cublas_peak (TFLOPS over cublas_peak/<p>),
// genes/s, gpu_peak_MB (cuda_allocator peak while the benchmark ran, model state included), loss.
//
// Environment: GENLM_BENCH_CUDA_BATCHES (default "8,64"), GENLM_BENCH_CUDA_PRECISIONS (default
// "fp32,tf32,bf16"), GENLM_BENCH_PEAK_N (default 8192), GENLM_BENCH_MODEL_MIN_TIME (seconds per
// model benchmark, default 0.3, regardless of --benchmark_min_time). Without a visible CUDA device the program
// prints why and exits 0 having run nothing.
#include <benchmark/benchmark.h>

#include <functional>
#include <map>
#include <sstream>

#define GENLM_WORKLOAD_CUDA_NO_MAIN
#include "layer_ops.hpp"
#include "workload_cuda.cu"

using namespace genlm;

namespace {

constexpr index_t kL = 30;

std::vector<std::string> env_list(const char* name, const char* dflt) {
  const char* v = std::getenv(name);
  std::stringstream ss(v && *v ? v : dflt);
  std::vector<std::string> out;
  for (std::string t; std::getline(ss, t, ',');)
    if (!t.empty()) out.push_back(t);
  return out;
}

// ---------------------------------------------------------------------------- timing
/// Runs f once per benchmark iteration between two events on `s`, reports the event time as the
/// iteration's manual time, and returns the total GPU seconds.
template <class F>
double timed_loop(benchmark::State& st, cudaStream_t s, F&& f) {
  bench::event_timer timer(s);
  double total = 0;
  for (auto _ : st) {
    const double t = timer.seconds(f);
    st.SetIterationTime(t);
    total += t;
  }
  return total;
}

/// Marks the benchmark as failed with the exception's text (CUDA/cuBLAS errors name the call).
template <class F>
void guarded(benchmark::State& st, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    st.SkipWithError(e.what());
  }
}

// ---------------------------------------------------------------------------- cuBLAS peak
/// TFLOP/s of cublas_peak/<P> (measured here, once, on first use: by its own benchmark when that
/// runs first, else by the first benchmark that needs it).
template <class P>
double& peak_slot() {
  static double v = 0;
  return v;
}
index_t peak_n() { return bench::env_int("GENLM_BENCH_PEAK_N", 8192); }
template <class P>
double cublas_peak() {
  double& v = peak_slot<P>();
  if (v == 0) v = bench::cublas_peak_tflops<P>(peak_n());
  return v;
}

template <class P>
void bm_cublas_peak(benchmark::State& st) {
  guarded(st, [&] {
    using Bk = cuda_backend<P>;
    const index_t n = peak_n();
    const std::size_t e = std::size_t(n) * std::size_t(n);
    float* A = Bk::template allocate<float>(index_t(e));
    float* Bm = Bk::template allocate<float>(index_t(e));
    float* Cm = Bk::template allocate<float>(index_t(e));
    bench::device_fill_random(A, e, 1, Bk::stream());
    bench::device_fill_random(Bm, e, 2, Bk::stream());
    auto op = [&] { Bk::gemm(false, false, n, n, n, 1.0f, A, n, Bm, n, 0.0f, Cm, n); };
    for (int i = 0; i < 3; ++i) op();
    const double s = timed_loop(st, Bk::stream(), op);
    const double tf = 2.0 * double(n) * double(n) * double(n) * double(st.iterations()) / s / 1e12;
    if (peak_slot<P>() == 0) peak_slot<P>() = tf;
    st.counters["TFLOPS"] = tf;
    st.counters["pct_of_cublas_peak"] = 100.0 * tf / peak_slot<P>();
    Bk::deallocate(A);
    Bk::deallocate(Bm);
    Bk::deallocate(Cm);
    cuda_allocator::release_cached();
  });
}

void bm_cublas_native_bf16(benchmark::State& st) {
  guarded(st, [&] {
    double tf = 0;
    for (auto _ : st) {
      tf = bench::cublas_native_bf16_tflops(peak_n());
      st.SetIterationTime(2.0 * double(peak_n()) * double(peak_n()) * double(peak_n()) / (tf * 1e12));
    }
    st.counters["TFLOPS"] = tf;
  });
}

// ---------------------------------------------------------------------------- GEMM shapes
struct gemm_shape {
  std::string name;
  bool ta, tb;
  index_t m, n, k, batch;
};

/// The products of configs::paper (hidden 1280, FFN 3072, 10 heads x 128, L = 30, W = 2L - 1 = 59
/// relative distances, heads 4 x 100 hypotheses) for B contigs, as the layers call them.
std::vector<gemm_shape> paper_shapes(index_t B) {
  const index_t N = B * kL, BH = B * 10, W = 2 * kL - 1;
  return {
      // forward: y = x W^T
      {"input_1281to1280_fwd", false, true, N, 1280, 1281, 1},
      {"qkvo_1280x1280_fwd", false, true, N, 1280, 1280, 1},
      {"ffn_in_1280to3072_fwd", false, true, N, 3072, 1280, 1},
      {"ffn_out_3072to1280_fwd", false, true, N, 1280, 3072, 1},
      {"hyp_head_1280to400_fwd", false, true, N, 400, 1280, 1},
      // backward: dW = dy^T x (k = tokens), dx = dy W
      {"input_dW", true, false, 1280, 1281, N, 1},
      {"qkvo_dW", true, false, 1280, 1280, N, 1},
      {"ffn_in_dW", true, false, 3072, 1280, N, 1},
      {"ffn_out_dW", true, false, 1280, 3072, N, 1},
      {"qkvo_dx", false, false, N, 1280, 1280, 1},
      {"ffn_in_dx", false, false, N, 1280, 3072, 1},
      {"ffn_out_dx", false, false, N, 3072, 1280, 1},
      // attention per (contig, head): S = Q K^T, ctx = A V, and their backward products
      {"attn_scores_QKt", false, true, kL, kL, 128, BH},
      {"attn_context_AV", false, false, kL, 128, kL, BH},
      {"attn_dA_dCtxVt", false, true, kL, kL, 128, BH},
      {"attn_dV_AtdCtx", true, false, kL, 128, kL, BH},
      // relative position terms over all (contig, head, query): QE = Q E_sub^T and its backward
      {"attn_relpos_QEt", false, true, BH * kL, W, 128, 1},
      {"attn_relpos_dQ", false, false, BH * kL, 128, W, 1},
      {"attn_relpos_dE", true, false, W, 128, BH * kL, 1},
  };
}

template <class P>
void bm_gemm(benchmark::State& st, gemm_shape s) {
  guarded(st, [&] {
    using Bk = cuda_backend<P>;
    const index_t ar = s.ta ? s.k : s.m, ac = s.ta ? s.m : s.k, br = s.tb ? s.n : s.k, bc = s.tb ? s.k : s.n;
    const index_t na = ar * ac * s.batch, nb = br * bc * s.batch, nc = s.m * s.n * s.batch;
    float* A = Bk::template allocate<float>(na);
    float* Bm = Bk::template allocate<float>(nb);
    float* Cm = Bk::template allocate<float>(nc);
    bench::device_fill_random(A, std::size_t(na), 1, Bk::stream());
    bench::device_fill_random(Bm, std::size_t(nb), 2, Bk::stream());
    auto op = [&] {
      if (s.batch == 1)
        Bk::gemm(s.ta, s.tb, s.m, s.n, s.k, 1.0f, A, ac, Bm, bc, 0.0f, Cm, s.n);
      else
        Bk::gemm_strided_batched(s.ta, s.tb, s.m, s.n, s.k, 1.0f, A, ac, ar * ac, Bm, bc, br * bc, 0.0f, Cm, s.n,
                                 s.m * s.n, s.batch);
    };
    for (int i = 0; i < 3; ++i) op();  // cuBLAS heuristics / kernel load
    const double sec = timed_loop(st, Bk::stream(), op);
    const double flop = 2.0 * double(s.m) * double(s.n) * double(s.k) * double(s.batch);
    const double tf = flop * double(st.iterations()) / sec / 1e12;
    st.counters["TFLOPS"] = tf;
    st.counters["pct_of_cublas_peak"] = 100.0 * tf / cublas_peak<P>();
    Bk::deallocate(A);
    Bk::deallocate(Bm);
    Bk::deallocate(Cm);
  });
}

// ---------------------------------------------------------------------------- full model
/// One model alive at a time (the paper model's training state is ~4.5 GB): switching to another
/// (config, precision) frees the previous one and the allocator's cache; batches are swapped in
/// place (set_batch), so forward and training step at every batch size share one model.
std::shared_ptr<void> g_model;
std::string g_model_key;

template <model_config C, class Bk>
bench::cuda_workload<C, Bk>& get_workload(const std::string& key, index_t B) {
  if (g_model_key != key) {
    g_model.reset();
    g_model_key.clear();
    cuda_allocator::release_cached();
    g_model = std::make_shared<bench::cuda_workload<C, Bk>>(B, kL);
    g_model_key = key;
  }
  auto& w = *static_cast<bench::cuda_workload<C, Bk>*>(g_model.get());
  if (w.B != B) w.set_batch(B, kL);
  return w;
}

template <model_config C, class P>
void bm_model(benchmark::State& st, std::string cfg, index_t B, int kind) {  // 0 forward, 1 train, 2 trainer
  guarded(st, [&] {
    using Bk = cuda_backend<P>;
    auto& w = get_workload<C, Bk>(cfg + "/" + P::name, B);
    cuda_allocator::reset_peak();
    const bool train = kind > 0;
    auto op = [&] {
      if (kind == 2)
        w.trainer_step();
      else if (kind == 1)
        w.train_step();
      else
        w.forward();
    };
    for (int i = 0; i < 2; ++i) op();  // first step creates the optimizer state; cuBLAS warm-up
    Bk::synchronize();
    const double sec = timed_loop(st, Bk::stream(), op);
    const double it = double(st.iterations());
    const double flop = train ? bench::train_flops<C>(B, kL) : bench::forward_flops<C>(B, kL);
    const double tf = flop * it / sec / 1e12;
    st.counters["genes/s"] = double(B * kL) * it / sec;
    st.counters["TFLOPS"] = tf;
    st.counters["pct_of_cublas_peak"] = 100.0 * tf / cublas_peak<P>();
    st.counters["gpu_peak_MB"] = double(cuda_allocator::stats().peak_bytes) / 1048576.0;
    if (kind == 1) st.counters["loss"] = w.loss();
    if (kind == 2) st.counters["loss"] = w.last.loss;
  });
}

// ---------------------------------------------------------------------------- layers
/// layer/<p>/<cfg>/B<b>/<layer>_{fwd,bwd}: one layer's forward (training mode) or backward on
/// cuda_backend<P>, built by benchmarks/layer_ops.hpp exactly as genlm_bench_layers builds the CPU
/// ones (same widths, same inputs), for b contigs x 30 genes. Counter genes/s.
template <class P>
void bm_layer(benchmark::State& st, index_t B, const std::function<std::function<void()>()>& make) {
  guarded(st, [&] {
    using Bk = cuda_backend<P>;
    const std::function<void()> op = make();
    for (int i = 0; i < 2; ++i) op();  // cuBLAS warm-up, workspaces grown
    Bk::synchronize();
    const double sec = timed_loop(st, Bk::stream(), op);
    st.counters["genes/s"] = double(B) * double(kL) * double(st.iterations()) / sec;
  });
}
template <class P>
void register_layers(const std::string& cfg, bench::layer_dims d, const std::vector<index_t>& batches) {
  using Bk = cuda_backend<P>;
  const index_t h = d.hidden, f = d.ffn;
  using maker = std::function<std::function<void()>(index_t, bool)>;
  const std::vector<std::pair<std::string, maker>> layers = {
      {"qkvo", [h](index_t B, bool bwd) { return bench::make_linear_op<Bk>(B, kL, h, h, bwd); }},
      {"ffn_in", [h, f](index_t B, bool bwd) { return bench::make_linear_op<Bk>(B, kL, h, f, bwd); }},
      {"ffn_out", [h, f](index_t B, bool bwd) { return bench::make_linear_op<Bk>(B, kL, f, h, bwd); }},
      {"layer_norm", [d](index_t B, bool bwd) { return bench::make_layer_norm_op<Bk>(B, kL, d, bwd); }},
      {"gelu", [d](index_t B, bool bwd) { return bench::make_gelu_op<Bk>(B, kL, d, bwd); }},
      {"dropout", [d](index_t B, bool bwd) { return bench::make_dropout_op<Bk>(B, kL, d, bwd); }},
      {"attention", [d](index_t B, bool bwd) { return bench::make_attention_op<Bk>(B, kL, d, bwd); }},
      {"encoder_layer", [d](index_t B, bool bwd) { return bench::make_encoder_layer_op<Bk>(B, kL, d, bwd); }},
  };
  for (index_t B : batches)
    for (const auto& [name, make] : layers)
      for (bool bwd : {false, true})
        benchmark::RegisterBenchmark(("layer/" + std::string(P::name) + "/" + cfg + "/B" + std::to_string(B) + "/" +
                                      name + (bwd ? "_bwd" : "_fwd"))
                                         .c_str(),
                                     [make = make, B, bwd](benchmark::State& st) {
                                       bm_layer<P>(st, B, [&] { return make(B, bwd); });
                                     })
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
}

// ---------------------------------------------------------------------------- masked-gene loss
/// loss/{grads,metrics}/B<b>: the trainer's two loss ops on the device (genlm::cuda, float32) for
/// paper-shaped outputs of b contigs x 30 genes (K = 4 hypotheses of 100), 8 of every 30 genes
/// masked as in genlm_bench_model's loss/ benchmarks: masked_gene_loss_grad (objective terms and
/// gradients) and masked_gene_metrics_rows (the metrics, with the O(masked^2 x 100) nearest-label
/// search that the trainer ran on the host before 2026-12-07).
void bm_loss(benchmark::State& st, index_t B, bool metrics) {
  guarded(st, [&] {
    using Bk = genlm::cuda;
    const index_t L = kL, K = configs::paper.hypotheses, D = configs::paper.label_dim(), R = B * L;
    std::vector<std::int64_t> rows;
    for (const gene_pos& g : bench::loss_bench_masked(B, L)) rows.push_back(g.b * L + g.l);
    const index_t n = index_t(rows.size());
    std::vector<double> lab = bench::randn<double>(std::size_t(n * D), 5);
    bench::device_array<std::int64_t> d_rows;
    bench::device_array<double> d_lab, terms, out;
    bench::device_array<std::int32_t> choice;
    d_rows.upload(rows);
    d_lab.upload(lab);
    terms.zeros(2 * n);
    out.zeros(4 * n);
    choice.zeros(2 * n);
    tensor<float, Bk> hyp({B, L, K, D}), logits({B, L, K}), d_hyp({B, L, K, D}), d_log({B, L, K});
    bench::device_fill_random(hyp.data(), std::size_t(R * K * D), 7, Bk::stream());
    bench::device_fill_random(logits.data(), std::size_t(R * K), 8, Bk::stream());
    auto grads = [&] {
      Bk::masked_gene_loss_grad(hyp.data(), logits.data(), K, D, d_rows.p, d_lab.p, n, 1.0 / double(n * D),
                                1e-4 / double(n), d_hyp.data(), d_log.data(), terms.p, choice.p);
    };
    auto rows_metrics = [&] {
      Bk::masked_gene_metrics_rows(hyp.data(), K, D, d_rows.p, d_lab.p, choice.p, n, out.p);
    };
    grads();  // k^ for the metrics
    rows_metrics();
    Bk::synchronize();
    const double sec = metrics ? timed_loop(st, Bk::stream(), rows_metrics) : timed_loop(st, Bk::stream(), grads);
    st.counters["masked"] = double(n);
    st.counters["us_per_call"] = 1e6 * sec / double(st.iterations());
  });
}

// ---------------------------------------------------------------------------- column sums
/// colsum/<op>/B<b>: the column-sum ops of a training step on (30b, cols) float32 matrices
/// (genlm::cuda): a bias gradient (sum_rows) of 1280 and 3072 columns, and layer_norm_backward
/// (dx plus the dgamma / dbeta column sums) of 1280 columns. GB_per_s = bytes read and written
/// once / GPU time (compare with the device's memory bandwidth).
void bm_colsum(benchmark::State& st, index_t B, int op) {
  guarded(st, [&] {
    using Bk = genlm::cuda;
    const index_t rows = B * kL, cols = op == 1 ? 3072 : 1280;
    tensor<float, Bk> dy({rows, cols}), x({rows, cols}), dx({rows, cols}), gamma({cols}), out({2, cols}),
        stats({2, rows});
    bench::device_fill_random(dy.data(), std::size_t(rows * cols), 9, Bk::stream());
    bench::device_fill_random(x.data(), std::size_t(rows * cols), 10, Bk::stream());
    bench::device_fill_random(dx.data(), std::size_t(rows * cols), 11, Bk::stream());
    bench::device_fill_random(gamma.data(), std::size_t(cols), 12, Bk::stream());
    bench::device_fill_random(stats.data(), std::size_t(2 * rows), 13, Bk::stream());  // mean, rstd
    auto run = [&] {
      if (op == 2)
        Bk::layer_norm_backward(dy.data(), x.data(), gamma.data(), stats.data(), stats.data() + rows, dx.data(),
                                out.data(), out.data() + cols, rows, cols);
      else
        Bk::sum_rows(dy.data(), rows, cols, out.data(), 0.0f);
    };
    run();
    Bk::synchronize();
    const double sec = timed_loop(st, Bk::stream(), run);
    // sum_rows reads dy; layer_norm_backward reads dy, x, dx (and writes dx) for dx, then dy, x again
    const double bytes = double(rows * cols) * sizeof(float) * (op == 2 ? 6.0 : 1.0);
    st.counters["GB_per_s"] = bytes * double(st.iterations()) / sec / 1e9;
  });
}

/// Model benchmarks run at least this long (GENLM_BENCH_MODEL_MIN_TIME, default 0.3 s) whatever
/// --benchmark_min_time says: a paper training step at 64 contigs is tens of milliseconds.
double model_min_time() {
  const char* v = std::getenv("GENLM_BENCH_MODEL_MIN_TIME");
  return v && *v ? std::atof(v) : 0.3;
}

/// model/<cfg>/<P>/B<b>/{forward,train_step,trainer_step} for every batch size.
template <model_config C, class P>
void register_model(const std::string& cfg, const std::vector<index_t>& batches) {
  static const char* const kinds[] = {"/forward", "/train_step", "/trainer_step"};
  for (index_t B : batches)
    for (int kind : {0, 1, 2})
      benchmark::RegisterBenchmark(("model/" + cfg + "/" + P::name + "/B" + std::to_string(B) + kinds[kind]).c_str(),
                                   [cfg, B, kind](benchmark::State& st) { bm_model<C, P>(st, cfg, B, kind); })
          ->UseManualTime()
          ->MinTime(model_min_time())
          ->Unit(benchmark::kMillisecond);
}

template <class P>
void register_precision(const std::vector<index_t>& batches) {
  const std::string p = P::name;
  benchmark::RegisterBenchmark(("cublas_peak/" + p).c_str(), bm_cublas_peak<P>)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  for (index_t B : batches)
    for (const gemm_shape& s : paper_shapes(B))
      benchmark::RegisterBenchmark(("gemm/" + p + "/B" + std::to_string(B) + "/" + s.name).c_str(),
                                   [s](benchmark::State& st) { bm_gemm<P>(st, s); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
  register_layers<P>("paper", bench::paper_layer_dims, batches);
  register_layers<P>("small", bench::small_layer_dims, batches);
  register_model<configs::paper, P>("paper", batches);
  register_model<configs::small, P>("small", batches);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (!cuda_device::available()) {
    std::fprintf(stderr, "genlm_bench_cuda: no CUDA device visible (%s): nothing to benchmark\n",
                 bench::cuda_no_device_reason().c_str());
    return 0;
  }
  benchmark::AddCustomContext("cuda_device", bench::cuda_device_line());
  std::vector<index_t> batches;
  for (const auto& b : env_list("GENLM_BENCH_CUDA_BATCHES", "8,64")) batches.push_back(std::stol(b));
  for (index_t B : batches)
    for (int op : {0, 1, 2})
      benchmark::RegisterBenchmark(("colsum/" + std::string(op == 0 ? "sum_rows_1280" : op == 1 ? "sum_rows_3072"
                                                                                                : "layer_norm_backward_1280") +
                                    "/B" + std::to_string(B)).c_str(),
                                   [B, op](benchmark::State& st) { bm_colsum(st, B, op); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
  for (index_t B : batches)
    for (bool metrics : {false, true})
      benchmark::RegisterBenchmark(("loss/" + std::string(metrics ? "metrics" : "grads") + "/B" + std::to_string(B)).c_str(),
                                   [B, metrics](benchmark::State& st) { bm_loss(st, B, metrics); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
  for (const auto& p : env_list("GENLM_BENCH_CUDA_PRECISIONS", "fp32,tf32,bf16")) {
    if (!bench::with_precision(p, [&]<class P>() { register_precision<P>(batches); })) {
      std::fprintf(stderr, "genlm_bench_cuda: GENLM_BENCH_CUDA_PRECISIONS: unknown precision '%s' (fp32, tf32, bf16)\n",
                   p.c_str());
      return 2;
    }
    if (p == "bf16")
      benchmark::RegisterBenchmark("cublas_peak/bf16_native_inputs", bm_cublas_native_bf16)
          ->UseManualTime()
          ->Iterations(1)
          ->Unit(benchmark::kMillisecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
