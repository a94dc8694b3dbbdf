// benchmarks/train_phases.cpp - times the phases of a paper-config training step (1 thread by
// default): forward (dropout on) + masked-gene loss, backward, clip_grad_value + AdamW, on the
// synthetic batch of benchmarks/common.hpp (8 contigs x 30 genes). One line per step.
//   genlm_train_phases [steps (default 6)] [threads (default 1)] [fused|separate (default fused)]
// fused: the clamp inside AdamW's pass (adamw::step(store, lr, 1.0), what the trainer does);
// separate: clip_grad_value, then adamw::step (two passes, as before 2026-12-01's fourth session).
// docs/PERFORMANCE.md uses it to show where a step's time goes.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common.hpp"

using namespace genlm;
using namespace genlm::bench;

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 6;
  set_threads(argc > 2 ? std::atoi(argv[2]) : 1);
  const bool fused = argc <= 3 || std::string(argv[3]) != "separate";
  constexpr index_t B = 8, L = 30, K = configs::paper.hypotheses, D = configs::paper.label_dim();
  workload<configs::paper> w(B, L);
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto sec = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  for (int it = 0; it < steps; ++it) {
    run_context ctx;
    ctx.training = true;
    ctx.seed = 11;
    ctx.step = std::uint64_t(it);
    const auto t0 = now();
    auto out = w.model.forward(ctx, w.x, w.mask);
    masked_gene_loss<float>(out.hypotheses.to_host(), out.logits.to_host(), B, L, K, D, w.masked, w.labels, &w.g_hyp,
                            &w.g_log);
    w.d_hyp.from_host({B, L, K, D}, w.g_hyp);
    w.d_log.from_host({B, L, K}, w.g_log);
    const auto t1 = now();
    w.model.backward(w.d_hyp, w.d_log);
    const auto t2 = now();
    if (!fused) clip_grad_value(w.model.parameters(), 1.0);
    const auto t3 = now();
    if (!w.opt) w.opt = std::make_unique<adamw<float, cpu>>(w.model.parameters(), adamw_options::transformers_4_22(1e-4));
    w.opt->step(w.model.parameters(), w.opt->options().lr, fused ? 1.0 : 0.0);
    const auto t4 = now();
    std::printf("step %d: forward+loss %.3f s, backward %.3f s, clip %.3f s, adamw%s %.3f s, total %.3f s\n",
                it, sec(t0, t1), sec(t1, t2), sec(t2, t3), fused ? " (clip fused)" : "", sec(t3, t4),
                sec(t0, t4));
  }
  return 0;
}
