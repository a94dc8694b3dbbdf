// benchmarks/bench_gemm.cpp - genlm::cpu::gemm on the products of the paper configuration
// (hidden 1280, FFN 3072, 10 heads x 128, L = 30 genes, B contigs: GENLM_BENCH_BATCH, default 8),
// forward and backward, on 1 and 2 threads. Counter "FLOPS" = 2 m n k / time. run_gemm: float32
// products (genlm::cpu); run_gemm_bf16: the bf16 policy (genlm::cpu_bf16, AMX tiles where present).
#include <benchmark/benchmark.h>

#include "common.hpp"

using namespace genlm;

namespace {

const index_t kB = bench::env_int("GENLM_BENCH_BATCH", 8), kL = 30, kN = kB * kL;

struct gemm_shape {
  bool ta, tb;
  index_t m, n, k, batch;
};

template <class Backend>
void gemm_on(benchmark::State& st, gemm_shape s) {
  bench::set_threads(int(st.range(0)));
  const index_t ar = s.ta ? s.k : s.m, ac = s.ta ? s.m : s.k, br = s.tb ? s.n : s.k, bc = s.tb ? s.k : s.n;
  auto A = bench::randn<float>(std::size_t(ar * ac * s.batch), 1);
  auto Bm = bench::randn<float>(std::size_t(br * bc * s.batch), 2);
  std::vector<float> C(std::size_t(s.m * s.n * s.batch));
  for (auto _ : st) {
    if (s.batch == 1)
      Backend::gemm(s.ta, s.tb, s.m, s.n, s.k, 1.0f, A.data(), ac, Bm.data(), bc, 0.0f, C.data(), s.n);
    else
      Backend::gemm_strided_batched(s.ta, s.tb, s.m, s.n, s.k, 1.0f, A.data(), ac, ar * ac, Bm.data(), bc, br * bc, 0.0f,
                                C.data(), s.n, s.m * s.n, s.batch);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  st.counters["FLOPS"] = benchmark::Counter(2.0 * double(s.m) * double(s.n) * double(s.k) * double(s.batch),
                                            benchmark::Counter::kIsIterationInvariantRate);
}

void run_gemm(benchmark::State& st, gemm_shape s) { gemm_on<cpu>(st, s); }
void run_gemm_bf16(benchmark::State& st, gemm_shape s) { gemm_on<cpu_bf16>(st, s); }

#define GEMM(name, ...)                                                                                         \
  BENCHMARK_CAPTURE(run_gemm, name, gemm_shape{__VA_ARGS__})->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond); \
  BENCHMARK_CAPTURE(run_gemm_bf16, name, gemm_shape{__VA_ARGS__})->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond)

// forward: y = x W^T
GEMM(input_1281to1280_fwd, false, true, kN, 1280, 1281, 1);
GEMM(qkvo_1280x1280_fwd, false, true, kN, 1280, 1280, 1);
GEMM(ffn_in_1280to3072_fwd, false, true, kN, 3072, 1280, 1);
GEMM(ffn_out_3072to1280_fwd, false, true, kN, 1280, 3072, 1);
// backward: dW = dy^T x (k = tokens), dx = dy W
GEMM(qkvo_dW, true, false, 1280, 1280, kN, 1);
GEMM(ffn_in_dW, true, false, 3072, 1280, kN, 1);
GEMM(ffn_out_dW, true, false, 1280, 3072, kN, 1);
GEMM(qkvo_dx, false, false, kN, 1280, 1280, 1);
GEMM(ffn_in_dx, false, false, kN, 1280, 3072, 1);
GEMM(ffn_out_dx, false, false, kN, 3072, 1280, 1);
// attention per (contig, head): S = Q K^T, ctx = A V; relative terms QE = Q E_sub^T
GEMM(attn_scores_QKt, false, true, kL, kL, 128, kB * 10);
GEMM(attn_context_AV, false, false, kL, 128, kL, kB * 10);
GEMM(attn_relpos_QEt, false, true, kB * 10 * kL, 2 * kL - 1, 128, 1);
// the GEMM ceiling: a large square product
GEMM(square_2048, false, false, 2048, 2048, 2048, 1);

// The AMX micro-kernel alone on L1/L2-resident packed panels: rows x 32 columns x k (what
// cpu_bf16 products reach at most on this core, without packing and threads).
void amx_kernel_only(benchmark::State& st) {
#if GENLM_HAVE_AMX
  if (!amx::available()) {
    st.SkipWithError("no AMX on this CPU");
    return;
  }
  const index_t rows = st.range(0), k = st.range(1), ks = k / 32;
  amx::tile_buffer a, b;
  std::uint16_t* pa = a.get(rows * k);
  std::uint16_t* pb = b.get(32 * k);
  std::fill(pa, pa + rows * k, std::uint16_t(0x3f80));  // 1.0
  std::fill(pb, pb + 32 * k, std::uint16_t(0x3f80));
  std::vector<float> C(std::size_t(rows * 32));
  for (auto _ : st) {
    amx::detail::kernel(rows, 32, ks, pa, pb, 0, 1, 1.0f, 0.0f, C.data(), 32);
    benchmark::DoNotOptimize(C.data());
  }
  st.counters["FLOPS"] = benchmark::Counter(2.0 * double(rows) * 32.0 * double(k),
                                            benchmark::Counter::kIsIterationInvariantRate);
#else
  st.SkipWithError("built without AMX support");
#endif
}
BENCHMARK(amx_kernel_only)->Args({32, 256})->Args({64, 256})->Args({64, 1280})->Args({256, 1280});

}  // namespace

BENCHMARK_MAIN();
