// benchmarks/bench_model.cpp - the full model: inference forward and one training step
// (forward with dropout + masked-gene loss + backward + clip_grad_value + AdamW) for
// configs::paper and configs::small on B = GENLM_BENCH_BATCH (default 8) contigs x 30 genes,
// 1 and 2 threads. Counters: genes/s and achieved FLOPS (analytic count, see common.hpp).
#include <benchmark/benchmark.h>

#include <memory>

#include "common.hpp"

using namespace genlm;

namespace {

const index_t kB = bench::env_int("GENLM_BENCH_BATCH", 8), kL = 30;

template <model_config C>
bench::workload<C>& get_workload() {
  static auto w = std::make_unique<bench::workload<C>>(kB, kL);  // built once per process
  return *w;
}

template <model_config C>
void model_forward(benchmark::State& st) {
  bench::set_threads(int(st.range(0)));
  auto& w = get_workload<C>();
  w.forward();
  for (auto _ : st) w.forward();
  st.counters["genes/s"] = benchmark::Counter(double(kB * kL), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["FLOPS"] = benchmark::Counter(bench::forward_flops<C>(kB, kL), benchmark::Counter::kIsIterationInvariantRate);
}

template <model_config C>
void model_train_step(benchmark::State& st) {
  bench::set_threads(int(st.range(0)));
  auto& w = get_workload<C>();
  w.train_step();
  for (auto _ : st) benchmark::DoNotOptimize(w.train_step());
  st.counters["genes/s"] = benchmark::Counter(double(kB * kL), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["FLOPS"] = benchmark::Counter(bench::train_flops<C>(kB, kL), benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_TEMPLATE(model_forward, configs::small)->Name("small/forward")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(model_train_step, configs::small)->Name("small/train_step")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(model_forward, configs::paper)->Name("paper/forward")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(model_train_step, configs::paper)->Name("paper/train_step")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
