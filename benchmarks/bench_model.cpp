// benchmarks/bench_model.cpp - the full model: inference forward and one training step
// (forward with dropout + masked-gene loss + backward + clip_grad_value + AdamW) for
// configs::paper and configs::small on B = GENLM_BENCH_BATCH (default 8) contigs x 30 genes,
// 1 and 2 threads, float32 products (genlm::cpu) and bf16 products (genlm::cpu_bf16, "bf16/..."
// names; Intel AMX where present). Counters: genes/s and achieved FLOPS (analytic count, see
// common.hpp). Also the random initial weights: rng::fill_normal per instruction set against the
// normal() loop it reproduces bit for bit ("init/fill_normal/..."), parameter_store::initialize
// of the paper model on 1 and 2 threads ("paper/initialize"), the masked-gene loss's two host
// parts ("loss/grads", "loss/metrics"), and the rest of a training step's host side at the paper's
// widths ("host/batch_prepare", "host/input_check_stage": what a GPU trainer step does on the
// host before it queues the forward pass).
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <vector>

#include <genlm/data/simulate.hpp>
#include <genlm/train/step.hpp>
#include <genlm/train/trainer.hpp>

#include "common.hpp"

using namespace genlm;

namespace {

const index_t kB = bench::env_int("GENLM_BENCH_BATCH", 8), kL = 30;

template <model_config C, class Backend>
bench::workload<C, float, Backend>& get_workload() {
  static auto w = std::make_unique<bench::workload<C, float, Backend>>(kB, kL);  // built once per process
  return *w;
}

template <model_config C, class Backend>
void model_forward(benchmark::State& st) {
  bench::set_threads(int(st.range(0)));
  auto& w = get_workload<C, Backend>();
  w.forward();
  for (auto _ : st) w.forward();
  st.counters["genes/s"] = benchmark::Counter(double(kB * kL), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["FLOPS"] = benchmark::Counter(bench::forward_flops<C>(kB, kL), benchmark::Counter::kIsIterationInvariantRate);
}

template <model_config C, class Backend>
void model_train_step(benchmark::State& st) {
  bench::set_threads(int(st.range(0)));
  auto& w = get_workload<C, Backend>();
  w.train_step();
  for (auto _ : st) benchmark::DoNotOptimize(w.train_step());
  st.counters["genes/s"] = benchmark::Counter(double(kB * kL), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["FLOPS"] = benchmark::Counter(bench::train_flops<C>(kB, kL), benchmark::Counter::kIsIterationInvariantRate);
}

// rng::fill_normal of 2^22 floats (std 0.02) with the given instruction set; skipped where the CPU
// lacks it. The "loop" variant is out[j] = float(normal() * 0.02), the values it must reproduce.
void fill_normal(benchmark::State& st, random_detail::vector_isa isa, bool loop) {
  if (!random_detail::isa_available(isa)) {
    st.SkipWithError("this CPU lacks the instruction set");
    return;
  }
  std::vector<float> out(std::size_t(1) << 22);
  rng g(1, 2);
  for (auto _ : st) {
    if (loop)
      for (auto& v : out) v = float(g.normal() * 0.02);
    else
      g.fill_normal(out.data(), out.size(), 0.02, isa);
    benchmark::DoNotOptimize(out.data());
  }
  st.counters["values/s"] = benchmark::Counter(double(out.size()), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_CAPTURE(fill_normal, loop, random_detail::vector_isa::generic, true)->Name("init/fill_normal/normal_loop")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(fill_normal, generic, random_detail::vector_isa::generic, false)->Name("init/fill_normal/generic")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(fill_normal, avx2, random_detail::vector_isa::avx2, false)->Name("init/fill_normal/avx2")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(fill_normal, avx512, random_detail::vector_isa::avx512, false)->Name("init/fill_normal/avx512")->Unit(benchmark::kMillisecond);

// The paper model's initial weights (278M normal draws), on range(0) threads: what every GLM
// constructor with model_options::initialize pays.
void paper_initialize(benchmark::State& st) {
  model_options mo;
  mo.initialize = false;
  static GLM<configs::paper, cpu> m(mo);
  for (auto _ : st) m.parameters().initialize(mo.init_seed, int(st.range(0)));
  st.counters["values/s"] = benchmark::Counter(double(m.parameters().values().numel()),
                                               benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(paper_initialize)->Name("paper/initialize")->Arg(1)->Arg(2)->UseRealTime()->Iterations(2)->Unit(benchmark::kMillisecond);

// The masked-gene loss's two host parts on paper-shaped outputs (K = 4 hypotheses of 100, L = 30,
// 8 of every 30 genes masked) for B = range(0) contigs: "loss/grads" (objective and gradients,
// before backward) and "loss/metrics" (accuracy, cosine, strand of the most likely hypothesis,
// O(masked^2 x 100), over genlm::cpu's threads: GENLM_NUM_THREADS; wall time).
struct loss_inputs {
  index_t B, L = 30, K = 4, D = 100;
  std::vector<float> hyp, logits, dh, dl;
  std::vector<gene_pos> masked;
  std::vector<double> labels;
  masked_gene_loss_workspace ws;
  explicit loss_inputs(index_t b) : B(b) {
    rng r(1, 0);
    hyp.resize(std::size_t(B * L * K * D));
    logits.resize(std::size_t(B * L * K));
    for (auto& v : hyp) v = float(r.normal());
    for (auto& v : logits) v = float(r.normal());
    masked = bench::loss_bench_masked(B, L);
    labels.resize(masked.size() * std::size_t(D));
    for (auto& v : labels) v = r.normal();
  }
  masked_gene_metrics grads() {
    return masked_gene_loss_grads<float>(hyp, logits, B, L, K, D, masked, labels, &dh, &dl, {}, ws);
  }
};
void loss_grads(benchmark::State& st) {
  loss_inputs in(st.range(0));
  for (auto _ : st) benchmark::DoNotOptimize(in.grads());
  st.counters["masked"] = double(in.masked.size());
}
void loss_metrics(benchmark::State& st) {
  loss_inputs in(st.range(0));
  const masked_gene_metrics m0 = in.grads();
  for (auto _ : st) {
    masked_gene_metrics m = m0;
    masked_gene_loss_metrics<float>(in.hyp, in.K, in.D, in.ws, m);
    benchmark::DoNotOptimize(m);
  }
  st.counters["masked"] = double(in.masked.size());
}
// The host side of a training step at the paper's widths (plm_dim 1280, 99 PCA components, windows
// of up to 30 genes from simulated contigs), B = range(0) windows: "host/batch_prepare" is
// masked_batch::prepare as trainer::step runs it (inputs, 15% masking, labels);
// "host/input_check_stage" is what the host-input forward and the CUDA upload ring then do with
// the inputs (GLM::check_inputs: sizes, the mask, the NaN/Inf scan of x; then a copy of x and the
// mask into a staging buffer, here a pageable one). One thread, wall time.
struct host_side {
  static constexpr model_config C = configs::paper;
  gene_features feat;
  std::vector<gene_window> windows;
  host_side() {
    simulation_options so;
    so.dim = C.plm_dim;
    so.contigs = 200;
    so.seed = 3;
    const auto sim = simulate_contigs(so);
    feature_pipeline pipe;
    pipe.fit(sim.proteins, C.pca_components);
    feat = pipe.features(sim.proteins);
    windows = simulated_windows(sim);
  }
  static host_side& get() {
    static host_side h;  // built once per process (a PCA of 1280-d proteins)
    return h;
  }
  /// The windows of batch k (a stride through all windows, as a shuffled epoch would visit them).
  void batch(index_t B, std::int64_t k, std::vector<std::size_t>& which) const {
    which.resize(std::size_t(B));
    for (index_t i = 0; i < B; ++i) which[std::size_t(i)] = std::size_t((k * B + i) * 7) % windows.size();
  }
};
void host_batch_prepare(benchmark::State& st) {
  const host_side& h = host_side::get();
  const index_t B = st.range(0);
  masked_batch<float> mb;
  mb.reserve(std::size_t(B), std::size_t(B) * 30, host_side::C.input_dim(), host_side::C.label_dim());
  std::vector<std::size_t> which;
  std::int64_t k = 0;
  for (auto _ : st) {
    h.batch(B, k, which);
    rng mg(11, std::uint64_t(k++));
    mb.prepare(h.windows, which, h.feat, host_side::C.max_positions, mg, masking_options{});
    benchmark::DoNotOptimize(mb.b.x.data());
  }
  st.counters["genes"] = double(mb.b.B * mb.b.L);
  st.counters["MB_inputs"] = double(mb.b.x.size() * sizeof(float)) / 1e6;
}
void host_input_check_stage(benchmark::State& st) {
  const host_side& h = host_side::get();
  const index_t B = st.range(0);
  masked_batch<float> mb;
  std::vector<std::size_t> which;
  h.batch(B, 0, which);
  rng mg(11, 0);
  mb.prepare(h.windows, which, h.feat, host_side::C.max_positions, mg, masking_options{});
  std::vector<float> staging(mb.b.x.size() + mb.b.mask.size());
  for (auto _ : st) {
    GLM<host_side::C, cpu>::check_inputs(mb.b.B, mb.b.L, mb.b.x, mb.b.mask);
    std::memcpy(staging.data(), mb.b.x.data(), mb.b.x.size() * sizeof(float));
    std::memcpy(staging.data() + mb.b.x.size(), mb.b.mask.data(), mb.b.mask.size() * sizeof(float));
    benchmark::DoNotOptimize(staging.data());
    benchmark::ClobberMemory();
  }
  st.counters["MB_inputs"] = double(mb.b.x.size() * sizeof(float)) / 1e6;
}
BENCHMARK(host_batch_prepare)->Name("host/batch_prepare")->Arg(8)->Arg(64)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(host_input_check_stage)->Name("host/input_check_stage")->Arg(8)->Arg(64)->UseRealTime()->Unit(benchmark::kMillisecond);

BENCHMARK(loss_grads)->Name("loss/grads")->Arg(8)->Arg(64)->Unit(benchmark::kMillisecond);
BENCHMARK(loss_metrics)->Name("loss/metrics")->Arg(8)->Arg(64)->UseRealTime()->Unit(benchmark::kMillisecond);

#define GENLM_MODEL_BENCH(fn, cfg, backend, name) \
  BENCHMARK_TEMPLATE(fn, cfg, backend)->Name(name)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond)
GENLM_MODEL_BENCH(model_forward, configs::small, cpu, "small/forward");
GENLM_MODEL_BENCH(model_train_step, configs::small, cpu, "small/train_step");
GENLM_MODEL_BENCH(model_forward, configs::paper, cpu, "paper/forward");
GENLM_MODEL_BENCH(model_train_step, configs::paper, cpu, "paper/train_step");
GENLM_MODEL_BENCH(model_forward, configs::small, cpu_bf16, "bf16/small/forward");
GENLM_MODEL_BENCH(model_train_step, configs::small, cpu_bf16, "bf16/small/train_step");
GENLM_MODEL_BENCH(model_forward, configs::paper, cpu_bf16, "bf16/paper/forward");
GENLM_MODEL_BENCH(model_train_step, configs::paper, cpu_bf16, "bf16/paper/train_step");
#undef GENLM_MODEL_BENCH

}  // namespace

BENCHMARK_MAIN();
