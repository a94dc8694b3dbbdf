// benchmarks/bench_model.cpp - the full model: inference forward and one training step
// (forward with dropout + masked-gene loss + backward + clip_grad_value + AdamW) for
// configs::paper and configs::small on B = GENLM_BENCH_BATCH (default 8) contigs x 30 genes,
// 1 and 2 threads, float32 products (genlm::cpu) and bf16 products (genlm::cpu_bf16, "bf16/..."
// names; Intel AMX where present). Counters: genes/s and achieved FLOPS (analytic count, see
// common.hpp). Also the random initial weights: rng::fill_normal per instruction set against the
// normal() loop it reproduces bit for bit ("init/fill_normal/..."), and parameter_store::initialize
// of the paper model on 1 and 2 threads ("paper/initialize").
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

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
