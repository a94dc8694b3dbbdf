// benchmarks/common.hpp - shared helpers of the genlm benchmarks: thread control, synthetic
// batches, one model training step (the same work as the PyTorch side of
// scripts/compare_pytorch.py) and analytic FLOP counts.
#pragma once
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <genlm/genlm.hpp>
#include <genlm/model/glm.hpp>
#include <genlm/train/masked_gene_loss.hpp>
#include <genlm/train/masking.hpp>
#include <genlm/train/optimizer.hpp>

#if defined(GENLM_USE_CBLAS)
#include <cblas.h>
#endif

namespace genlm::bench {

/// Sets the number of threads every part of genlm's CPU backend may use (OpenBLAS + the
/// backend's own loops).
inline void set_threads(int n) {
#if defined(GENLM_USE_CBLAS)
  openblas_set_num_threads(n);
#endif
  cpu::set_num_threads(n);
}

inline int env_int(const char* name, int dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : dflt;
}

/// Deterministic normal(0, 1) host values.
template <class T>
std::vector<T> randn(std::size_t n, std::uint64_t seed) {
  rng g(seed, 7);
  std::vector<T> v(n);
  for (auto& x : v) x = T(g.normal());
  return v;
}

/// A tensor (any backend) of deterministic normal(0, 1) values.
template <class Backend>
tensor<float, Backend> rand_tensor(shape_t s, std::uint64_t seed) {
  return tensor<float, Backend>::from_host_data(s, randn<float>(std::size_t(s.numel()), seed));
}

/// The masked genes of the loss benchmarks (genlm_bench_model's and genlm_bench_cuda's loss/):
/// 8 of every 30 positions (l = 0, 3, 7, 10, ... of each contig), for B contigs of L genes.
inline std::vector<gene_pos> loss_bench_masked(index_t B, index_t L) {
  std::vector<gene_pos> masked;
  for (index_t c = 0; c < B; ++c)
    for (index_t l = 0; l + 3 < L; l += 7) masked.push_back({c, l}), masked.push_back({c, l + 3});
  return masked;
}

/// The "--init cheap" weights of genlm_workload (for repeated A/B timings only): every parameter as
/// its init kind says (ones, zeros), the normal-initialised ones a hashed uniform pattern of std
/// 0.02 (splitmix64's finaliser of the flat index: uniform on +-0.0347), instead of the ~12-25 s of
/// Philox normal draws of the paper model. The products and elementwise ops then time as they do
/// on random weights. Tested in tests/test_model.cpp.
template <class Backend>
void cheap_init(parameter_store<float, Backend>& ps) {
  std::vector<float> h(static_cast<std::size_t>(ps.flat_size()), 0.0f);
  for (const auto& e : ps.entries())
    for (std::size_t j = 0; j < std::size_t(e.shape.numel()); ++j) {
      float& x = h[std::size_t(e.offset) + j];
      if (e.init == init_kind::ones) x = 1.0f;
      if (e.init != init_kind::normal) continue;
      std::uint64_t z = (std::uint64_t(e.offset) + j) * 0x9E3779B97F4A7C15ull;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      x = (float(z >> 40) / float(1 << 24) - 0.5f) * 0.0693f;  // uniform, std 0.0693 / sqrt(12) = 0.02
    }
  auto& v = ps.values();
  Backend::copy_from_host(v.data(), h.data(), v.numel());
}

/// Multiply-adds x 2 of the linear layers of one forward pass of model C on B x L genes, plus the
/// attention products (QK^T, relative QE/KE terms, AV).
template <model_config C>
double forward_flops(index_t B, index_t L) {
  const double N = double(B * L), h = C.hidden, f = C.intermediate, D = C.head_dim(), H = C.heads;
  const double W = 2.0 * double(L) - 1;
  const double lin = 4 * h * h + 2 * h * f;                    // q, k, v, o, ffn in + out (per token)
  const double attn = double(B) * H * (2 * double(L) * double(L) * D + 2 * double(L) * W * D);  // QK, AV, QE, KE
  const double enc = C.num_layers * (2 * N * lin + 2 * attn);
  const double heads = 2 * N * h * (double(C.hypotheses) * C.label_dim() + C.hypotheses);
  return 2 * N * double(C.input_dim()) * h + enc + heads;
}
/// Backward = 2 x forward for every product except the input layer (no input gradient).
template <model_config C>
double train_flops(index_t B, index_t L) {
  const double N = double(B * L);
  return 3 * forward_flops<C>(B, L) - 2 * N * double(C.input_dim()) * C.hidden;
}

/// A model with a fixed synthetic batch and everything a training step needs (Backend: genlm::cpu,
/// or genlm::cpu_bf16 for bf16 products).
template <model_config C, class T = float, class Backend = cpu>
struct workload {
  using model_t = GLM<C, Backend, T>;
  using tensor_t = tensor<T, Backend>;
  index_t B, L;
  model_t model;
  std::unique_ptr<adamw<T, Backend>> opt;  // created by the first train_step (forward-only runs skip it)
  tensor_t x, mask, d_hyp, d_log;
  std::vector<gene_pos> masked;
  std::vector<double> labels;
  std::vector<T> g_hyp, g_log;
  std::uint64_t step_no = 0;

  explicit workload(index_t B_, index_t L_, const model_options& mo = {})
      : B(B_), L(L_), model(mo) {
    std::vector<T> hx = randn<T>(std::size_t(B * L * C.input_dim()), 1);
    std::vector<T> hm(std::size_t(B * L), T(1));
    rng g(3, 0);
    masked = mask_genes(hx, hm, B, L, C.input_dim(), g);
    if (masked.empty()) {  // always at least one masked gene
      masked.push_back({0, 0});
      std::fill(hx.begin(), hx.begin() + C.input_dim(), T(-1));
    }
    labels = randn<double>(masked.size() * std::size_t(C.label_dim()), 5);
    x.from_host({B, L, C.input_dim()}, hx);
    mask.from_host({B, L}, hm);
  }

  /// Inference forward (eval mode: no dropout).
  void forward() { model.forward(run_context{}, x, mask); }

  /// forward (dropout on) + masked-gene loss + backward + clip_grad_value(1) + AdamW (one pass).
  double train_step() {
    run_context ctx;
    ctx.training = true;
    ctx.seed = 11;
    ctx.step = step_no++;
    auto out = model.forward(ctx, x, mask);
    const index_t K = C.hypotheses, D = C.label_dim();
    const auto m = masked_gene_loss<T>(out.hypotheses.to_host(), out.logits.to_host(), B, L, K, D, masked, labels,
                                       &g_hyp, &g_log);
    d_hyp.from_host({B, L, K, D}, g_hyp);
    d_log.from_host({B, L, K}, g_log);
    model.backward(d_hyp, d_log);
    if (!opt) opt = std::make_unique<adamw<T, Backend>>(model.parameters(), adamw_options::transformers_4_22(1e-4));
    opt->step(model.parameters(), opt->options().lr, 1.0);  // clip_grad_value(1.0) fused into AdamW's pass
    return m.loss;
  }
};

}  // namespace genlm::bench
