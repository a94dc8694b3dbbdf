// benchmarks/bench_layers.cpp - forward and backward of each layer at the paper configuration's
// sizes (hidden 1280, FFN 3072, 10 heads) and the small one (hidden 128, FFN 512, 4 heads), on
// B = GENLM_BENCH_BATCH (default 8) contigs x 30 genes, 1 and 2 threads. Training mode (dropout
// on). Counter "genes/s".
#include <benchmark/benchmark.h>

#include <functional>
#include <memory>

#include "common.hpp"

using namespace genlm;
using tensor_t = tensor<float, cpu>;

namespace {

const index_t kB = bench::env_int("GENLM_BENCH_BATCH", 8), kL = 30;

struct dims {
  index_t hidden, heads, ffn;
};
constexpr dims kPaper{1280, 10, 3072}, kSmall{128, 4, 512};

tensor_t rand_tensor(shape_t s, std::uint64_t seed) { return tensor_t::from_host_data(s, bench::randn<float>(std::size_t(s.numel()), seed)); }

run_context train_ctx() {
  run_context c;
  c.training = true;
  c.seed = 1;
  return c;
}

void finish(benchmark::State& st) {
  st.counters["genes/s"] = benchmark::Counter(double(kB * kL), benchmark::Counter::kIsIterationInvariantRate);
}

// ---- linear
void linear_layer(benchmark::State& st, dims d, index_t in, index_t out, bool backward) {
  bench::set_threads(int(st.range(0)));
  parameter_store<float, cpu> ps;
  linear<float, cpu> lin(ps, "lin", in, out);
  ps.finalize();
  ps.initialize(1);
  tensor_t x = rand_tensor({kB, kL, in}, 2), y, dx, dy = rand_tensor({kB, kL, out}, 3);
  dx.resize_zero(x.shape());
  (void)d;
  for (auto _ : st) {
    if (backward)
      lin.backward(x, dy, &dx);
    else
      lin.forward(x, y);
  }
  finish(st);
}

// ---- layer norm
void layer_norm_layer(benchmark::State& st, dims d, bool backward) {
  bench::set_threads(int(st.range(0)));
  parameter_store<float, cpu> ps;
  layer_norm<float, cpu> ln(ps, "ln", d.hidden, 1e-12);
  ps.finalize();
  ps.initialize(1);
  tensor_t x = rand_tensor({kB, kL, d.hidden}, 2), y, dx, dy = rand_tensor({kB, kL, d.hidden}, 3);
  dx.resize_zero(x.shape());
  ln.forward(x, y);
  for (auto _ : st) {
    if (backward)
      ln.backward(x, dy, dx);
    else
      ln.forward(x, y);
  }
  finish(st);
}

// ---- GELU on (B, L, ffn)
void gelu_layer(benchmark::State& st, dims d, bool backward) {
  bench::set_threads(int(st.range(0)));
  tensor_t x = rand_tensor({kB, kL, d.ffn}, 2), y, dx, dy = rand_tensor({kB, kL, d.ffn}, 3);
  dx.resize_zero(x.shape());
  for (auto _ : st) {
    if (backward)
      gelu::backward(x, dy, dx);
    else
      gelu::forward(x, y);
  }
  finish(st);
}

// ---- dropout on (B, L, hidden)
void dropout_layer(benchmark::State& st, dims d, bool backward) {
  bench::set_threads(int(st.range(0)));
  dropout<float, cpu> dr(0.1, 1);
  tensor_t x = rand_tensor({kB, kL, d.hidden}, 2), y, dx;
  dx.resize_zero(x.shape());
  auto ctx = train_ctx();
  dr.forward(ctx, x, y);
  for (auto _ : st) {
    if (backward)
      dr.backward(x, dx, false);
    else
      dr.forward(ctx, x, y);
  }
  finish(st);
}

// ---- relative attention (relative_key_query) incl. the q/k/v projections
void attention_layer(benchmark::State& st, dims d, bool backward) {
  bench::set_threads(int(st.range(0)));
  parameter_store<float, cpu> ps;
  relative_attention<float, cpu> at(ps, "attn", d.hidden, d.heads, 512, 0.1, 1);
  ps.finalize();
  ps.initialize(1);
  tensor_t x = rand_tensor({kB, kL, d.hidden}, 2), y, dx, dy = rand_tensor({kB, kL, d.hidden}, 3);
  tensor_t mask = tensor_t::from_host_data({kB, kL}, std::vector<float>(std::size_t(kB * kL), 1.0f));
  dx.resize_zero(x.shape());
  auto ctx = train_ctx();
  at.forward(ctx, x, &mask, y);
  for (auto _ : st) {
    if (backward)
      at.backward(x, dy, dx);
    else
      at.forward(ctx, x, &mask, y);
  }
  finish(st);
}

// ---- one encoder layer (attention + output + FFN + 2 LayerNorms + dropouts)
void encoder_layer_bench(benchmark::State& st, dims d, bool backward) {
  bench::set_threads(int(st.range(0)));
  parameter_store<float, cpu> ps;
  encoder_dims ed;
  ed.hidden = d.hidden;
  ed.heads = d.heads;
  ed.intermediate = d.ffn;
  encoder_layer<float, cpu> layer(ps, "layer", ed, 1);
  ps.finalize();
  ps.initialize(1);
  tensor_t x = rand_tensor({kB, kL, d.hidden}, 2), dx, dy = rand_tensor({kB, kL, d.hidden}, 3);
  tensor_t mask = tensor_t::from_host_data({kB, kL}, std::vector<float>(std::size_t(kB * kL), 1.0f));
  dx.resize_zero(x.shape());
  auto ctx = train_ctx();
  layer.forward(ctx, x, &mask);
  for (auto _ : st) {
    if (backward)
      layer.backward(x, dy, dx);
    else
      benchmark::DoNotOptimize(layer.forward(ctx, x, &mask).data());
  }
  finish(st);
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
