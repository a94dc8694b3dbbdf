// benchmarks/bench_layers.cpp - forward and backward of each layer at the paper configuration's
// sizes (hidden 1280, FFN 3072, 10 heads) and the small one (hidden 128, FFN 512, 4 heads), on
// B = GENLM_BENCH_BATCH (default 8) contigs x 30 genes, 1 and 2 threads. Training mode (dropout
// on). Counter "genes/s".
#include <benchmark/benchmark.h>

#include <functional>
#include <memory>

#include "common.hpp"
#include "layer_ops.hpp"

using namespace genlm;
using tensor_t = tensor<float, cpu>;

namespace {

const index_t kB = bench::env_int("GENLM_BENCH_BATCH", 8), kL = 30;

using dims = bench::layer_dims;
constexpr dims kPaper = bench::paper_layer_dims, kSmall = bench::small_layer_dims;

tensor_t rand_tensor(shape_t s, std::uint64_t seed) { return bench::rand_tensor<cpu>(s, seed); }

void finish(benchmark::State& st) {
  st.counters["genes/s"] = benchmark::Counter(double(kB * kL), benchmark::Counter::kIsIterationInvariantRate);
}

// ---- the layers (benchmarks/layer_ops.hpp builds them; bench_cuda.cu's layer/ runs the same)
void run_op(benchmark::State& st, const std::function<void()>& op) {
  for (auto _ : st) op();
  finish(st);
}
void linear_layer(benchmark::State& st, dims, index_t in, index_t out, bool backward) {
  bench::set_threads(int(st.range(0)));
  run_op(st, bench::make_linear_op<cpu>(kB, kL, in, out, backward));
}
void layer_norm_layer(benchmark::State& st, dims d, bool backward) {
  bench::set_threads(int(st.range(0)));
  run_op(st, bench::make_layer_norm_op<cpu>(kB, kL, d, backward));
}
void gelu_layer(benchmark::State& st, dims d, bool backward) {  // on (B, L, ffn)
  bench::set_threads(int(st.range(0)));
  run_op(st, bench::make_gelu_op<cpu>(kB, kL, d, backward));
}
void dropout_layer(benchmark::State& st, dims d, bool backward) {  // on (B, L, hidden)
  bench::set_threads(int(st.range(0)));
  run_op(st, bench::make_dropout_op<cpu>(kB, kL, d, backward));
}
void attention_layer(benchmark::State& st, dims d, bool backward) {  // relative_key_query incl. q/k/v
  bench::set_threads(int(st.range(0)));
  run_op(st, bench::make_attention_op<cpu>(kB, kL, d, backward));
}
void encoder_layer_bench(benchmark::State& st, dims d, bool backward) {  // attention + output + FFN + LNs
  bench::set_threads(int(st.range(0)));
  run_op(st, bench::make_encoder_layer_op<cpu>(kB, kL, d, backward));
}

// ---- the fused elementwise ops against the chains of separate ops they replace (the same bits:
// tests/test_fused_ops.cpp), on one layer's tensors. range(1): 0 = separate ops, 1 = fused.
// Compare the pair within one run (--benchmark_enable_random_interleaving=true).
void bias_gelu_ops(benchmark::State& st, dims d) {
  bench::set_threads(int(st.range(0)));
  const bool fused = st.range(1) != 0;
  const index_t rows = kB * kL;
  tensor_t y0 = rand_tensor({rows, d.ffn}, 2), y = y0, b = rand_tensor({d.ffn}, 3), g = y0;
  for (auto _ : st) {
    cpu::copy(y.data(), y0.data(), y.numel());  // (in both variants) a fresh product output
    if (fused) {
      cpu::bias_gelu_forward(y.data(), b.data(), g.data(), rows, d.ffn);
    } else {
      cpu::add_bias(y.data(), b.data(), rows, d.ffn);
      cpu::gelu_forward(y.data(), g.data(), rows * d.ffn);
    }
  }
  finish(st);
}
void bias_dropout_residual_ops(benchmark::State& st, dims d) {
  bench::set_threads(int(st.range(0)));
  const bool fused = st.range(1) != 0;
  const index_t rows = kB * kL, n = rows * d.hidden;
  tensor_t y0 = rand_tensor({rows, d.hidden}, 2), y = y0, b = rand_tensor({d.hidden}, 3), res = rand_tensor({rows, d.hidden}, 4);
  tensor<std::uint8_t, cpu> keep({rows, d.hidden});
  for (auto _ : st) {
    cpu::copy(y.data(), y0.data(), n);
    if (fused) {
      cpu::bias_dropout_add(y.data(), b.data(), res.data(), keep.data(), rows, d.hidden, 0.1, 77, 1);
    } else {
      cpu::add_bias(y.data(), b.data(), rows, d.hidden);
      cpu::dropout_forward(y.data(), y.data(), keep.data(), n, 0.1, 77, 1);
      cpu::add(n, y.data(), res.data(), y.data());
    }
  }
  finish(st);
}
void relpos_softmax_ops(benchmark::State& st, dims d, bool backward) {
  bench::set_threads(int(st.range(0)));
  const bool fused = st.range(1) != 0;
  const index_t BH = kB * d.heads, W = 2 * kL - 1;
  tensor_t S0 = rand_tensor({BH, kL, kL}, 2), S = S0, qe = rand_tensor({BH * kL, W}, 3), ke = rand_tensor({BH * kL, W}, 4);
  tensor_t mask({kB, kL}), dqe({BH * kL, W}), dke({BH * kL, W});
  cpu::fill(mask.data(), mask.numel(), 1.0f);
  tensor_t A = S0;
  cpu::masked_softmax_forward(S0.data(), mask.data(), A.data(), kB, d.heads, kL, 0.1f);
  for (auto _ : st) {
    cpu::copy(S.data(), S0.data(), S.numel());
    if (backward && fused) {
      cpu::softmax_relpos_backward(A.data(), S.data(), S.data(), dqe.data(), ke.data(), BH, kL, 0.1f);
    } else if (backward) {
      cpu::softmax_backward(A.data(), S.data(), S.data(), BH * kL, kL, 0.1f);
      cpu::relpos_grad(S.data(), dqe.data(), ke.data(), BH, kL);
    } else if (fused) {
      cpu::relpos_softmax_forward(S.data(), qe.data(), ke.data(), mask.data(), S.data(), kB, d.heads, kL, 0.1f);
    } else {
      cpu::relpos_add(S.data(), qe.data(), ke.data(), BH, kL);
      cpu::masked_softmax_forward(S.data(), mask.data(), S.data(), kB, d.heads, kL, 0.1f);
    }
  }
  finish(st);
}
#define REG_FUSED(fn, name, ...)                                                                    \
  BENCHMARK_CAPTURE(fn, name, __VA_ARGS__)->ArgsProduct({{1, 2}, {0, 1}})->ArgNames({"thr", "fused"}) \
      ->UseRealTime()->Unit(benchmark::kMicrosecond)
REG_FUSED(bias_gelu_ops, paper, kPaper);
REG_FUSED(bias_dropout_residual_ops, paper, kPaper);
REG_FUSED(relpos_softmax_ops, paper_fwd, kPaper, false);
REG_FUSED(relpos_softmax_ops, paper_bwd, kPaper, true);
REG_FUSED(bias_gelu_ops, small, kSmall);
REG_FUSED(bias_dropout_residual_ops, small, kSmall);
REG_FUSED(relpos_softmax_ops, small_fwd, kSmall, false);
REG_FUSED(relpos_softmax_ops, small_bwd, kSmall, true);

#define REG(fn, name, ...) \
  BENCHMARK_CAPTURE(fn, name, __VA_ARGS__)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond)

REG(linear_layer, paper_qkvo_fwd, kPaper, 1280, 1280, false);
REG(linear_layer, paper_qkvo_bwd, kPaper, 1280, 1280, true);
REG(linear_layer, paper_ffn_in_fwd, kPaper, 1280, 3072, false);
REG(linear_layer, paper_ffn_in_bwd, kPaper, 1280, 3072, true);
REG(linear_layer, paper_ffn_out_fwd, kPaper, 3072, 1280, false);
REG(linear_layer, paper_ffn_out_bwd, kPaper, 3072, 1280, true);
REG(layer_norm_layer, paper_fwd, kPaper, false);
REG(layer_norm_layer, paper_bwd, kPaper, true);
REG(gelu_layer, paper_fwd, kPaper, false);
REG(gelu_layer, paper_bwd, kPaper, true);
REG(dropout_layer, paper_fwd, kPaper, false);
REG(dropout_layer, paper_bwd, kPaper, true);
REG(attention_layer, paper_fwd, kPaper, false);
REG(attention_layer, paper_bwd, kPaper, true);
REG(encoder_layer_bench, paper_fwd, kPaper, false);
REG(encoder_layer_bench, paper_bwd, kPaper, true);

REG(linear_layer, small_qkvo_fwd, kSmall, 128, 128, false);
REG(linear_layer, small_qkvo_bwd, kSmall, 128, 128, true);
REG(layer_norm_layer, small_fwd, kSmall, false);
REG(layer_norm_layer, small_bwd, kSmall, true);
REG(gelu_layer, small_fwd, kSmall, false);
REG(gelu_layer, small_bwd, kSmall, true);
REG(dropout_layer, small_fwd, kSmall, false);
REG(attention_layer, small_fwd, kSmall, false);
REG(attention_layer, small_bwd, kSmall, true);
REG(encoder_layer_bench, small_fwd, kSmall, false);
REG(encoder_layer_bench, small_bwd, kSmall, true);

}  // namespace

BENCHMARK_MAIN();
