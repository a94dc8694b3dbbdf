// benchmarks/bench_model.cpp - the full model: inference forward and one training step
// (forward with dropout + masked-gene loss + backward + clip_grad_value + AdamW) for
// configs::paper and configs::small on B = GENLM_BENCH_BATCH (default 8) contigs x 30 genes,
// 1 and 2 threads, float32 products (genlm::cpu) and bf16 products (genlm::cpu_bf16, "bf16/..."
// names; Intel AMX where present). Counters: genes/s and achieved FLOPS (analytic count, see
// common.hpp).
#include <benchmark/benchmark.h>

#include <memory>

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
