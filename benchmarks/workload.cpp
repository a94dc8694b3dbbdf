// benchmarks/workload.cpp - runs ONE workload in this process and prints a JSON line, so that
// scripts/compare_pytorch.py can time it and read its max RSS (getrusage) next to PyTorch's.
//   genlm_workload --config paper|small --workload forward|train [--batch 8] [--len 30]
//                  [--threads 2] [--iters 5] [--warmup 1] [--precision fp32|bf16] [--init random|cheap]
// --precision bf16 runs genlm::cpu_bf16 (bf16 products on AMX tiles where the CPU has them).
// "init_s": seconds to build the model (its random initial weights, on --threads threads) and inputs.
// --init cheap skips the Philox draws (~12-25 s for the paper model): the normal-initialised weights
// are then a hashed uniform pattern of the same std (0.02), which times the same; for repeated A/B
// timings only.
#include <sys/resource.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "common.hpp"

using namespace genlm;

namespace {

template <model_config C, class Backend>
int run(const std::string& wl, index_t B, index_t L, int iters, int warmup, int threads, bool cheap_init) {
  model_options mo;
  mo.init_threads = threads;  // the random initial weights drawn on as many threads as the run uses
  mo.initialize = !cheap_init;
  const auto c0 = std::chrono::steady_clock::now();
  bench::workload<C, float, Backend> w(B, L, mo);
  if (cheap_init) bench::cheap_init(w.model.parameters());  // a hashed uniform of std 0.02, not Philox
  const double init_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
  auto once = [&] {
    if (wl == "forward")
      w.forward();
    else
      w.train_step();
  };
  for (int i = 0; i < warmup; ++i) once();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    once();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  const double med = t[t.size() / 2];
  const double flops = wl == "forward" ? bench::forward_flops<C>(B, L) : bench::train_flops<C>(B, L);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf(
      "{\"impl\": \"genlm\", \"backend\": \"%s\", \"amx\": %s, \"workload\": \"%s\", \"batch\": %ld, "
      "\"len\": %ld, \"median_s\": %.6f, \"min_s\": %.6f, \"genes_per_s\": %.2f, \"gflops\": %.2f, "
      "\"flop\": %.6e, \"params\": %ld, \"max_rss_mb\": %.1f, \"init_s\": %.3f}\n",
      Backend::name, amx::available() ? "true" : "false", wl.c_str(), long(B), long(L), med, t.front(),
      double(B * L) / med, flops / med / 1e9, flops, long(w.model.parameters().count()),
      double(ru.ru_maxrss) / 1024.0, init_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config = "small", wl = "forward", precision = "fp32", init = "random";
  long B = 8, L = 30;
  int threads = 2, iters = 5, warmup = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--config") config = v;
    else if (k == "--workload") wl = v;
    else if (k == "--batch") B = std::stol(v);
    else if (k == "--len") L = std::stol(v);
    else if (k == "--threads") threads = std::stoi(v);
    else if (k == "--iters") iters = std::stoi(v);
    else if (k == "--warmup") warmup = std::stoi(v);
    else if (k == "--precision") precision = v;
    else if (k == "--init") init = v;
    else {
      std::fprintf(stderr, "genlm_workload: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (wl != "forward" && wl != "train") {
    std::fprintf(stderr, "genlm_workload: --workload must be forward or train\n");
    return 2;
  }
  if (precision != "fp32" && precision != "bf16") {
    std::fprintf(stderr, "genlm_workload: --precision must be fp32 or bf16\n");
    return 2;
  }
  if (init != "random" && init != "cheap") {
    std::fprintf(stderr, "genlm_workload: --init must be random or cheap\n");
    return 2;
  }
  const bool cheap = init == "cheap";
  bench::set_threads(threads);
  const bool bf16 = precision == "bf16";
  if (config == "paper")
    return bf16 ? run<configs::paper, cpu_bf16>(wl, B, L, iters, warmup, threads, cheap)
                : run<configs::paper, cpu>(wl, B, L, iters, warmup, threads, cheap);
  if (config == "small")
    return bf16 ? run<configs::small, cpu_bf16>(wl, B, L, iters, warmup, threads, cheap)
                : run<configs::small, cpu>(wl, B, L, iters, warmup, threads, cheap);
  std::fprintf(stderr, "genlm_workload: --config must be paper or small\n");
  return 2;
}
