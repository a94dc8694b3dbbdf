// Model-level parity of the CUDA backend with genlm::cpu: GLM forward outputs, attention maps and
// every parameter gradient with identical parameters and inputs (float, double, relative_key,
// configs::small, reduced precision), full training steps with trainer<> (dropout on), fp16
// training with dynamic loss scaling, and shape/value errors through the model.
//
// Measures (see parity.hpp): forward outputs and attention maps: max|gpu - cpu| / max|cpu| per
// tensor. Gradients: the flat gradient buffer as a whole (scale = the largest gradient of the
// model), and every parameter tensor on its own scale, floored at 1% of the model's largest
// gradient (gradients that are zero in exact arithmetic, e.g. the key bias under relative_key, are
// rounding noise on both backends and judged in absolute terms, as in tests/test_hf_parity.cpp).
//
// Thresholds:
//   float32  forward 1e-5, flat gradients 1e-5, per-tensor gradients 1e-4, training 3 steps:
//            parameters 1e-5, Adam moments 1e-4, loss 1e-5 (relative)
//   float64  forward 1e-10, gradients 1e-10 (flat) / 1e-9 (per tensor), training 1e-10
//   tf32 / bf16 / fp16 forward: 2e-2 / 1e-1 / 2e-2 (of the output scale; 40 unit roundoffs for
//            tf32/fp16, 25 for bf16, for a chain of ~10 GEMMs separated by layer norms)
//   fp16 + loss scaling (2^16): one scaled, unscaled backward vs the float32 CPU gradients 5e-2
//            (flat) / 1e-1 (per tensor); 3 trainer steps: loss within 1e-2 of the CPU's, parameters
//            within 4 lr per step (AdamW moves a parameter by ~lr per step), no NaN/Inf
#include "parity.hpp"

#include <genlm/data/simulate.hpp>
#include <genlm/model/glm.hpp>
#include <genlm/train/loss_scaler.hpp>
#include <genlm/train/masked_gene_loss.hpp>
#include <genlm/train/trainer.hpp>

using namespace gpu_parity;
using genlm::cpu;
// genlm::cuda under a short name: CUDA 13's libcu++ declares a global namespace ::cuda, so a
// using-declaration of genlm::cuda at namespace scope does not compile.
using cuda32 = genlm::cuda;

namespace {

/// A CPU model and a CUDA model with bit-identical parameters (the CPU's initialisation, optionally
/// perturbed so that attention, layer norms and GELUs work away from their initial values).
template <genlm::model_config C, class T, class Variant = genlm::relative_key_query, class Gpu = cuda32>
struct model_pair {
  using cpu_model = genlm::GLM<C, cpu, T, Variant>;
  using gpu_model = genlm::GLM<C, Gpu, T, Variant>;
  cpu_model c;
  gpu_model g;
  model_pair(const genlm::model_options& o, double perturb) : c(o), g(o) {
    auto v = c.parameters().values().to_host();
    genlm::rng r(o.init_seed, 0x9E7);
    if (perturb > 0)
      for (const auto& e : c.parameters().entries())
        for (index_t j = 0; j < e.shape.numel(); ++j) v[std::size_t(e.offset + j)] += T(perturb * r.normal());
    const genlm::shape_t s{index_t(v.size())};
    c.parameters().values().from_host(s, v);
    g.parameters().values().from_host(s, v);  // host -> device copy of the flat buffer
  }
};

/// Model inputs (B, L, F) with padding (contig b has L - b * (L / 3) real genes), zeros at padded
/// genes and a few masked genes (-1), as make_batch / mask_genes produce them.
template <class T>
struct inputs {
  index_t B, L, F;
  std::vector<T> x, mask;
  inputs(index_t B_, index_t L_, index_t F_, std::uint64_t seed) : B(B_), L(L_), F(F_) {
    x = randn<T>(std::size_t(B * L * F), seed);
    mask.assign(std::size_t(B * L), T(1));
    for (index_t b = 0; b < B; ++b) {
      const index_t real = std::max<index_t>(1, L - b * (L / 3));
      for (index_t l = real; l < L; ++l) {
        mask[std::size_t(b * L + l)] = T(0);
        std::fill_n(x.begin() + (b * L + l) * F, F, T(0));
      }
    }
    if (L > 1) std::fill_n(x.begin() + 1 * F, F, T(-1));       // gene (0, 1) masked
    std::fill_n(x.begin() + (B - 1) * L * F, F, T(-1));        // gene (B-1, 0) masked
  }
};

/// Both models' tensors of one batch (they must outlive backward: the model keeps &x).
template <class T, class Gpu>
struct device_inputs {
  genlm::tensor<T, cpu> xc, mc;
  genlm::tensor<T, Gpu> xg, mg;
  explicit device_inputs(const inputs<T>& in) {
    xc.from_host({in.B, in.L, in.F}, in.x);
    xg.from_host({in.B, in.L, in.F}, in.x);
    mc.from_host({in.B, in.L}, in.mask);
    mg.from_host({in.B, in.L}, in.mask);
  }
};

struct grad_report {
  double flat = 0, worst_tensor = 0;
  std::string worst_name;
};

/// Compares the flat gradient buffers and every parameter's gradient.
template <class T, class StoreC, class StoreG>
grad_report compare_grads(const StoreC& pc, const StoreG& pg, double flat_tol, double tensor_tol,
                          const std::string& label) {
  const std::vector<T> gc = pc.grads().to_host(), gg = pg.grads().to_host();
  const diff flat = compare(gg, gc);
  grad_report rep;
  rep.flat = flat.rel;
  {
    INFO(label << ": flat gradient buffer: scale-relative error " << flat.rel << " (max abs " << flat.max_abs
                << " at element " << flat.worst << ", largest gradient " << flat.scale << "), tolerance " << flat_tol);
    REQUIRE(flat.size_ok);
    CHECK(flat.scale > 0);
    CHECK(flat.nonfinite == 0);
    CHECK(flat.rel <= flat_tol);
  }
  const double floor = 1e-2 * flat.scale;
  for (const auto& e : pc.entries()) {
    const auto b = gc.begin() + e.offset, a = gg.begin() + e.offset;
    const std::vector<T> want(b, b + e.shape.numel()), got(a, a + e.shape.numel());
    const diff d = compare(got, want, floor);
    if (d.rel > rep.worst_tensor) rep.worst_tensor = d.rel, rep.worst_name = e.name;
    INFO(label << ": gradient of " << e.name << " " << e.shape.str() << ": error " << d.rel << " of max(scale "
               << d.scale << ", floor " << floor << "), max abs " << d.max_abs << ", tolerance " << tensor_tol);
    CHECK(d.nonfinite == 0);
    CHECK(d.rel <= tensor_tol);
  }
  std::printf("[measured] %s: gradients flat %.3g (tol %.1g), worst tensor %.3g (%s, tol %.1g)\n", label.c_str(),
              rep.flat, flat_tol, rep.worst_tensor, rep.worst_name.c_str(), tensor_tol);
  return rep;
}

/// Forward (and optionally backward with fixed random cotangents) of both models; compares
/// hidden states, hypotheses, logits, every layer's attention probabilities and all gradients.
template <class Pair>
void check_model(Pair& p, const inputs<typename Pair::cpu_model::scalar>& in, const genlm::run_context& ctx,
                 double fwd_tol, double flat_tol, double tensor_tol, const std::string& label, bool backward = true) {
  using T = typename Pair::cpu_model::scalar;
  using Gpu = typename Pair::gpu_model::backend;
  constexpr auto C = Pair::cpu_model::config;
  device_inputs<T, Gpu> d(in);
  auto oc = p.c.forward(ctx, d.xc, d.mc);
  auto og = p.g.forward(ctx, d.xg, d.mg);
  double worst = 0;
  auto fwd = [&](const std::string& what, const std::vector<T>& got, const std::vector<T>& want) {
    const diff r = compare(got, want);
    worst = std::max(worst, r.rel);
    INFO(label << ": " << what << ": scale-relative error " << r.rel << " (max abs " << r.max_abs << ", scale "
               << r.scale << "), tolerance " << fwd_tol);
    REQUIRE(r.size_ok);
    CHECK(r.nonfinite == 0);
    CHECK(r.rel <= fwd_tol);
  };
  fwd("hidden", og.hidden.to_host(), oc.hidden.to_host());
  fwd("hypotheses", og.hypotheses.to_host(), oc.hypotheses.to_host());
  fwd("logits", og.logits.to_host(), oc.logits.to_host());
  for (std::size_t i = 0; i < Pair::cpu_model::num_layers(); ++i)
    fwd("attention of layer " + std::to_string(i), p.g.attention(i).to_host(), p.c.attention(i).to_host());
  std::printf("[measured] %s: forward worst %.3g (tol %.1g)\n", label.c_str(), worst, fwd_tol);
  {  // the host-input forward (checks on the host, uploads queued): the device tensor forward's bits
    const std::vector<T> h = og.hidden.to_host(), hyp = og.hypotheses.to_host(), lg = og.logits.to_host();
    auto oh = p.g.forward(ctx, in.B, in.L, in.x, in.mask);
    INFO(label << ": host-input forward against the tensor forward");
    CHECK(oh.hidden.to_host() == h);
    CHECK(oh.hypotheses.to_host() == hyp);
    CHECK(oh.logits.to_host() == lg);
  }
  if (!backward) return;

  const index_t K = C.hypotheses, D = C.label_dim();
  const auto dh = randn<T>(std::size_t(in.B * in.L * K * D), 700, 0.01);
  const auto dl = randn<T>(std::size_t(in.B * in.L * K), 701, 0.01);
  genlm::tensor<T, cpu> dhc, dlc;
  genlm::tensor<T, Gpu> dhg, dlg;
  dhc.from_host({in.B, in.L, K, D}, dh);
  dhg.from_host({in.B, in.L, K, D}, dh);
  dlc.from_host({in.B, in.L, K}, dl);
  dlg.from_host({in.B, in.L, K}, dl);
  p.c.parameters().zero_grads();
  p.g.parameters().zero_grads();
  p.c.backward(dhc, dlc);
  p.g.backward(dhg, dlg);
  compare_grads<T>(p.c.parameters(), p.g.parameters(), flat_tol, tensor_tol, label);
}

/// check_model in eval mode, then in training mode (hidden and attention dropout: identical Philox
/// masks on both backends, drawn from `seed` and `step`).
template <class Pair>
void check_model_eval_and_dropout(Pair& p, const inputs<typename Pair::cpu_model::scalar>& in, std::uint64_t seed,
                                  std::uint64_t step, double fwd_tol, double flat_tol, double tensor_tol,
                                  const std::string& label, const std::string& shape = "") {
  check_model(p, in, genlm::run_context{}, fwd_tol, flat_tol, tensor_tol, label + " eval" + shape);
  genlm::run_context train;
  train.training = true;
  train.seed = seed;
  train.step = step;
  check_model(p, in, train, fwd_tol, flat_tol, tensor_tol, label + " dropout" + shape);
}

/// The tiny model's training data: simulated contigs with conserved modules (as test_training).
/// Host waits for the device (under the CUDA host emulator, which counts them: genlm_cuda_emu::host_waits)
/// while f() runs; -1 on a GPU, where nothing counts them, and without the caching allocator
/// (GENLM_CUDA_ALLOCATOR=plain: every freed buffer is a cudaFree, which waits for the device).
template <class F>
long long host_waits_of(F&& f) {
#ifdef GENLM_CUDA_EMULATOR
  if (!genlm::cuda_allocator::caching()) {
    f();
    return -1;
  }
  const std::uint64_t before = genlm_cuda_emu::host_waits();
  f();
  return (long long)(genlm_cuda_emu::host_waits() - before);
#else
  f();
  return -1;
#endif
}
/// The expected count of host_waits_of where it is counted (any on a GPU).
inline bool waits_are(long long got, long long want) { return got < 0 || got == want; }

struct train_data {
  genlm::simulated_data sim;
  genlm::feature_pipeline pipe;
  genlm::gene_features feat;
  std::vector<genlm::gene_window> windows;
  train_data() {
    genlm::simulation_options so;
    so.dim = genlm::configs::tiny.plm_dim;
    so.contigs = 48;
    so.families = 20;
    so.modules = 5;
    so.noise_gene_rate = 0.1;
    so.seed = 7;
    sim = genlm::simulate_contigs(so);
    pipe.fit(sim.proteins, genlm::configs::tiny.pca_components);
    feat = pipe.features(sim.proteins);
    windows = genlm::simulated_windows(sim);
  }
};

}  // namespace

TEST_CASE("GLM tiny float32: forward, attention maps and every gradient match the CPU", "[model][float]") {
  genlm::model_options mo;
  mo.init_seed = 3;
  model_pair<genlm::configs::tiny, float> p(mo, 0.1);
  struct bl {
    index_t B, L;
  };
  for (const auto& s : {bl{3, 17}, bl{2, 1}, bl{4, 30}}) {
    CAPTURE(s.B, s.L);
    const inputs<float> in(s.B, s.L, genlm::configs::tiny.input_dim(), 10 + std::uint64_t(s.L));
    const std::string shape = " B=" + std::to_string(s.B) + " L=" + std::to_string(s.L);
    check_model_eval_and_dropout(p, in, 5, 3, 1e-5, 1e-5, 1e-4, "tiny float32", shape);
  }
}

TEST_CASE("GLM tiny float64 matches the CPU to 1e-10", "[model][double]") {
  genlm::model_options mo;
  mo.init_seed = 4;
  model_pair<genlm::configs::tiny, double> p(mo, 0.1);
  const inputs<double> in(3, 17, genlm::configs::tiny.input_dim(), 20);
  check_model_eval_and_dropout(p, in, 9, 1, 1e-10, 1e-10, 1e-9, "tiny float64");
}

TEST_CASE("GLM tiny, relative_key attention (no key term), float32", "[model][float]") {
  genlm::model_options mo;
  mo.init_seed = 5;
  model_pair<genlm::configs::tiny, float, genlm::relative_key> p(mo, 0.1);
  const inputs<float> in(3, 17, genlm::configs::tiny.input_dim(), 30);
  check_model(p, in, genlm::run_context{}, 1e-5, 1e-5, 1e-4, "tiny relative_key float32");
}

TEST_CASE("GLM small float32 forward matches the CPU", "[model][float][small]") {
  genlm::model_options mo;
  mo.init_seed = 6;
  model_pair<genlm::configs::small, float> p(mo, 0.05);
  const inputs<float> in(2, 30, genlm::configs::small.input_dim(), 40);
  check_model(p, in, genlm::run_context{}, 1e-5, 0, 0, "small float32", false);
}

// One encoder layer at the paper's widths (hidden 1280, 10 heads of 128, FFN 3072, 1280-d inputs,
// 512 positions): every kernel and product at the shapes of configs::paper (LayerNorm rows of
// 1280, column sums over 1280 and 3072 columns, 30 x 30 attention with head_dim 128), with ~22 M
// parameters instead of 279 M.
constexpr genlm::model_config paper_width{1, 1280, 10, 3072, 1280, 99, 4, 512, 30};

TEST_CASE("GLM with one layer of the paper's widths: forward, attention and every gradient match the CPU",
          "[model][float][paper_width]") {
  genlm::model_options mo;
  mo.init_seed = 8;
  model_pair<paper_width, float> p(mo, 0.02);
  const inputs<float> in(2, 30, paper_width.input_dim(), 60);
  check_model_eval_and_dropout(p, in, 11, 2, 1e-5, 1e-5, 1e-4, "paper-width float32", " B=2 L=30");
}

TEMPLATE_TEST_CASE("GLM tiny under reduced-precision GEMMs stays close to the float32 CPU model", "[model][reduced]",
                   genlm::cuda_tf32, genlm::cuda_bf16, genlm::cuda_fp16) {
  using Gpu = TestType;
  using Prec = typename Gpu::precision;
  const double tol = std::is_same_v<Prec, genlm::precision::bf16> ? 1e-1 : 2e-2;
  genlm::model_options mo;
  mo.init_seed = 3;
  model_pair<genlm::configs::tiny, float, genlm::relative_key_query, Gpu> p(mo, 0.1);
  const inputs<float> in(3, 17, genlm::configs::tiny.input_dim(), 50);
  check_model(p, in, genlm::run_context{}, tol, 0, 0, std::string("tiny ") + Prec::name + " forward", false);
}

namespace {
/// Three trainer steps (dropout on, masking, clipping, AdamW) on both backends from the same
/// parameters; compares metrics per step, then parameters and optimizer moments.
template <class T>
void training_parity(double param_tol, double moment_tol, double loss_tol, const std::string& label) {
  const train_data d;
  genlm::model_options mo;  // hidden and attention dropout 0.1
  mo.init_seed = 3;
  model_pair<genlm::configs::tiny, T> p(mo, 0.0);
  genlm::train_options to;
  to.batch_size = 8;
  to.lr = 1e-4;  // the reference's learning rate; Adam's 1/eps amplifies gradient differences by lr/eps
  to.seed = 11;
  using Mc = typename model_pair<genlm::configs::tiny, T>::cpu_model;
  using Mg = typename model_pair<genlm::configs::tiny, T>::gpu_model;
  genlm::trainer<Mc> tc(p.c, d.feat, d.windows, to);
  genlm::trainer<Mg> tg(p.g, d.feat, d.windows, to);
  REQUIRE_FALSE(tg.loss_scaling_active());
  const auto p0 = p.c.parameters().values().to_host();
  double worst_loss = 0;
  for (int s = 0; s < 3; ++s) {
    CAPTURE(s);
    const genlm::masked_gene_metrics mc = tc.step();
    genlm::masked_gene_metrics mg;
    // the step waits for the device once: its loss, metrics and gradient check come back in one copy
    const long long waits = host_waits_of([&] { mg = tg.step(); });
    CHECK(waits_are(waits, 1));
    CHECK(mc.masked > 0);
    CHECK(mg.masked == mc.masked);
    const double rel = std::abs(mg.loss - mc.loss) / std::abs(mc.loss);
    worst_loss = std::max(worst_loss, rel);
    INFO("loss cpu " << mc.loss << " gpu " << mg.loss);
    CHECK(rel <= loss_tol);
    // the metrics, computed on each backend (masked_gene_metrics_rows): a count may differ by one
    // where two labels are nearly equidistant and the backends' hypotheses differ in rounding
    CHECK(std::abs(mg.correct - mc.correct) <= 1);
    CHECK(std::abs(mg.strand_correct - mc.strand_correct) <= 1);
    CHECK(mc.cosine != 0.0);
    CHECK(std::abs(mg.cosine - mc.cosine) <= loss_tol * std::max(1.0, std::abs(mc.cosine)));
    CHECK(std::abs(mg.mse_most_likely - mc.mse_most_likely) <= loss_tol * mc.mse_most_likely);
  }
  const auto pc = p.c.parameters().values().to_host(), pg = p.g.parameters().values().to_host();
  GPU_CHECK_CLOSE(label + ": parameters after 3 steps", pg, pc, param_tol);
  GPU_CHECK_CLOSE(label + ": AdamW exp_avg after 3 steps", tg.optimizer().exp_avg().to_host(),
                  tc.optimizer().exp_avg().to_host(), moment_tol);
  GPU_CHECK_CLOSE(label + ": AdamW exp_avg_sq after 3 steps", tg.optimizer().exp_avg_sq().to_host(),
                  tc.optimizer().exp_avg_sq().to_host(), moment_tol);
  // the updates themselves, relative to the largest update (reported: Adam divides by sqrt(v) +
  // eps, so gradients near eps turn rounding differences into visible update differences)
  std::vector<T> uc(pc.size()), ug(pg.size());
  for (std::size_t i = 0; i < pc.size(); ++i) uc[i] = pc[i] - p0[i], ug[i] = pg[i] - p0[i];
  const diff du = compare(ug, uc);
  std::printf("[measured] %s: loss %.3g, parameters %.3g, exp_avg %.3g, exp_avg_sq %.3g, updates %.3g of the "
              "largest update %.3g\n",
              label.c_str(), worst_loss, compare(pg, pc).rel,
              compare(tg.optimizer().exp_avg().to_host(), tc.optimizer().exp_avg().to_host()).rel,
              compare(tg.optimizer().exp_avg_sq().to_host(), tc.optimizer().exp_avg_sq().to_host()).rel, du.rel,
              du.scale);
  CHECK(du.scale > 0);
}
}  // namespace

TEST_CASE("three trainer steps (dropout, masking, clipping, AdamW) match the CPU, float32", "[model][training]") {
  training_parity<float>(1e-5, 1e-4, 1e-5, "trainer float32");
}

TEST_CASE("three trainer steps match the CPU, float64", "[model][training][double]") {
  training_parity<double>(1e-10, 1e-10, 1e-10, "trainer float64");
}

// nvcc 13 (cudafe++) emits broken host code ("'__T14' was not declared in this scope") when a
// non-template function names trainer<GLM<configs::tiny, ...>> or GLM<configs::tiny, ...> (a
// class-type template argument) directly; the code that needs those types therefore lives in
// function templates (dependent names), which compile fine.
namespace {
using fp16_pair = model_pair<genlm::configs::tiny, float, genlm::relative_key_query, genlm::cuda_fp16>;

/// Three trainer steps under fp16 GEMMs with loss scaling next to the float32 CPU trainer.
template <class Pair>
void fp16_training_steps(const train_data& d, const genlm::model_options& mo) {
  Pair p(mo, 0.0);
  genlm::train_options to;
  to.batch_size = 8;
  to.lr = 1e-4;
  to.seed = 11;
  genlm::trainer<typename Pair::cpu_model> tc(p.c, d.feat, d.windows, to);
  genlm::trainer<typename Pair::gpu_model> tg(p.g, d.feat, d.windows, to);
  REQUIRE(tg.loss_scaling_active());
  REQUIRE_FALSE(tc.loss_scaling_active());
  const int steps = 3;
  int skipped = 0;
  for (int s = 0; s < steps; ++s) {
    CAPTURE(s);
    const auto mc = tc.step();
    genlm::masked_gene_metrics mg;
    const long long waits = host_waits_of([&] { mg = tg.step(); });
    CHECK(waits_are(waits, 1));  // loss scaling adds no wait (the gradients' count comes with the loss)
    skipped += mg.skipped;
    CHECK(mg.masked == mc.masked);
    // the forward pass under fp16 GEMMs: the loss is within 1e-2 of the float32 loss
    INFO("loss cpu " << mc.loss << " fp16 " << mg.loss);
    CHECK(std::abs(mg.loss - mc.loss) <= 1e-2 * std::abs(mc.loss));
  }
  const auto pc = p.c.parameters().values().to_host(), pg = p.g.parameters().values().to_host();
  using Gpu = typename Pair::gpu_model::backend;
  CHECK(Gpu::count_nonfinite(p.g.parameters().values().data(), p.g.parameters().flat_size()) == 0);
  // AdamW moves a parameter by about lr per step (at most a few lr) whatever the gradient's
  // size, so any two runs stay within ~2 lr per step of each other; far beyond that means the
  // fp16 run went astray.
  const diff dp = compare(pg, pc);
  std::printf("[measured] trainer fp16 (loss scale now %g, %d of %d steps skipped): max |p_fp16 - p_cpu| %.3g "
              "(bound %.3g)\n",
              tg.scaler().scale(), skipped, steps, dp.max_abs, 4 * to.lr * steps);
  CHECK(dp.nonfinite == 0);
  CHECK(dp.max_abs <= 4 * to.lr * steps);
  CHECK(skipped < steps);
}

/// Shape and value errors of the pair's CUDA model.
template <class Pair>
void model_errors() {
  using B = typename Pair::gpu_model::backend;
  typename Pair::gpu_model m;
  genlm::tensor<float, B> x({2, 5, 10}), mask({2, 5});
  CHECK_THROWS_AS(m.forward({}, x, mask), genlm::shape_error);
  CHECK_THROWS_WITH(m.forward({}, x, mask), Catch::Contains("expected (batch, genes, 33)"));
  genlm::tensor<float, B> x2({2, 5, 33}), bad_mask({2, 4});
  CHECK_THROWS_AS(m.forward({}, x2, bad_mask), genlm::shape_error);
  genlm::tensor<float, B> too_long({1, 33, 33}), long_mask({1, 33});
  CHECK_THROWS_WITH(m.forward({}, too_long, long_mask), Catch::Contains("exceeds max_positions 32"));
  // a NaN input is found on the device (count_nonfinite) and located on the host
  auto xv = randn<float>(2 * 5 * 33, 80);
  xv[std::size_t((1 * 5 + 2) * 33 + 4)] = std::numeric_limits<float>::quiet_NaN();
  x2.from_host({2, 5, 33}, xv);
  mask.from_host({2, 5}, std::vector<float>(10, 1.0f));
  CHECK_THROWS_AS(m.forward({}, x2, mask), genlm::value_error);
  CHECK_THROWS_WITH(m.forward({}, x2, mask), Catch::Contains("contig 1, gene 2, feature 4"));
  // the host-input forward finds it on the host, with the same message
  CHECK_THROWS_WITH(m.forward({}, 2, 5, xv, std::vector<float>(10, 1.0f)),
                    Catch::Contains("1 NaN/Inf input value(s); first at contig 1, gene 2, feature 4"));
  std::vector<float> hm(10, 1.0f);
  hm[3] = 2.0f;
  CHECK_THROWS_WITH(m.forward({}, 2, 5, randn<float>(2 * 5 * 33, 81), hm),
                    Catch::Contains("mask value 2 at contig 0, gene 3"));
}
}  // namespace

TEST_CASE("fp16 GEMMs with dynamic loss scaling: gradients and training steps", "[model][training][fp16]") {
  using Gpu = genlm::cuda_fp16;
  static_assert(genlm::backend_precision_t<Gpu>::loss_scaling, "the fp16 policy asks for loss scaling");
  const train_data d;
  genlm::model_options mo;
  mo.init_seed = 3;

  SECTION("one backward of a loss scaled by 2^16, unscaled, against the float32 CPU gradients") {
    // fp16 inputs (u = 2^-11) through ~10 GEMMs per gradient path: 5e-2 of the model's largest
    // gradient for the flat buffer; per tensor (own scale, floor 1% of the largest) 1e-1.
    fp16_pair p(mo, 0.1);
    constexpr auto C = genlm::configs::tiny;
    const index_t K = C.hypotheses, D = C.label_dim();
    inputs<float> in(3, 17, C.input_dim(), 60);
    genlm::rng mgen(61);
    genlm::masking_options mopt;
    mopt.probability = 0.3;
    const auto masked = genlm::mask_genes(in.x, in.mask, in.B, in.L, in.F, mgen, mopt);
    REQUIRE(masked.size() >= 2);
    const auto labels = randn<double>(masked.size() * std::size_t(D), 62);
    device_inputs<float, Gpu> di(in);
    auto oc = p.c.forward(genlm::run_context{}, di.xc, di.mc);
    p.g.forward(genlm::run_context{}, di.xg, di.mg);
    std::vector<float> gh, gl, gh16, gl16;
    genlm::masked_gene_loss<float>(oc.hypotheses.to_host(), oc.logits.to_host(), in.B, in.L, K, D, masked, labels, &gh,
                                   &gl);
    genlm::loss_scaler scaler({}, true);  // fp16 defaults: 2^16
    REQUIRE(scaler.enabled());
    REQUIRE(scaler.scale() == 65536.0);
    gh16 = gh;
    gl16 = gl;
    for (auto& v : gh16) v *= float(scaler.scale());
    for (auto& v : gl16) v *= float(scaler.scale());
    genlm::tensor<float, cpu> dhc, dlc;
    genlm::tensor<float, Gpu> dhg, dlg;
    dhc.from_host({in.B, in.L, K, D}, gh);
    dlc.from_host({in.B, in.L, K}, gl);
    dhg.from_host({in.B, in.L, K, D}, gh16);
    dlg.from_host({in.B, in.L, K}, gl16);
    p.c.backward(dhc, dlc);
    p.g.backward(dhg, dlg);
    REQUIRE(scaler.unscale_and_check(p.g.parameters()));  // finite: no overflow at 2^16
    compare_grads<float>(p.c.parameters(), p.g.parameters(), 5e-2, 1e-1, "tiny fp16 scaled backward");
  }

  SECTION("three trainer steps: loss scaling on, finite, close to the float32 CPU trajectory") {
    fp16_training_steps<fp16_pair>(d, mo);
  }
}

namespace {
/// How often the forward passes and the masked-gene pass wait for the device (counted under the
/// emulator): the tensor forward once (its input checks: one count, read back), the host-input
/// forward never, the pass once (its one copy), with or without its gradient count; that count
/// is the CPU's; and a repeated step allocates no device memory.
template <class Pair>
void pass_waits(const train_data& d, const genlm::model_options& mo) {
  Pair p(mo, 0.0);
  constexpr auto C = genlm::configs::tiny;
  const inputs<float> in(3, 17, C.input_dim(), 90);
  const device_inputs<float, cuda32> di(in);
  CHECK(waits_are(host_waits_of([&] { p.g.forward({}, di.xg, di.mg); }), 1));
  CHECK(waits_are(host_waits_of([&] { p.g.forward({}, in.B, in.L, in.x, in.mask); }), 0));
  cuda32::synchronize();

  genlm::masked_batch<float> mb;
  genlm::rng mg(5, 0);
  mb.prepare(d.windows, {0, 1, 2, 3, 4, 5, 6, 7}, d.feat, C.max_positions, mg, genlm::masking_options{});
  REQUIRE_FALSE(mb.masked.empty());
  REQUIRE(mb.b.B * mb.b.L > 128);  // column sums over more than 128 rows: split into row chunks
  genlm::masked_gene_pass<typename Pair::cpu_model> pc;
  genlm::masked_gene_pass<typename Pair::gpu_model> pg;
  pc.count_nonfinite_gradients(true);
  pg.count_nonfinite_gradients(true);
  genlm::run_context ctx;
  ctx.training = true;
  ctx.seed = 9;
  genlm::masked_gene_metrics mg_eval, mg_train;
  CHECK(waits_are(host_waits_of([&] { mg_eval = pg.run(p.g, ctx, mb, {}, 1.0, false); }), 1));
  CHECK(pg.nonfinite_gradients() == -1);  // no backward: not counted
  CHECK(waits_are(host_waits_of([&] { mg_train = pg.run(p.g, ctx, mb, {}, 1.0, true); }), 1));
  const auto mc = pc.run(p.c, ctx, mb, {}, 1.0, true);
  CHECK(pg.nonfinite_gradients() == 0);
  CHECK(pc.nonfinite_gradients() == 0);
  CHECK(mg_train.masked == mc.masked);
  CHECK(std::abs(mg_train.loss - mc.loss) <= 1e-5 * std::abs(mc.loss));

  // workspaces: the same batch again (pass with backward, clipping, AdamW) allocates no device
  // memory, not even from the allocator's cache (column sums use the context's scratch)
  genlm::adamw<float, cuda32> opt(p.g.parameters(), genlm::adamw_options::transformers_4_22(1e-4));
  const auto train_step = [&] {
    pg.run(p.g, ctx, mb, {}, 1.0, true);
    genlm::clip_grad_value(p.g.parameters(), 1.0);
    opt.step(p.g.parameters());
  };
  train_step();
  const auto a0 = genlm::cuda_allocator::stats();
  train_step();
  p.g.forward({}, di.xg, di.mg);
  p.g.forward({}, in.B, in.L, in.x, in.mask);
  const auto a1 = genlm::cuda_allocator::stats();
  CHECK(a1.allocations == a0.allocations);
  CHECK(a1.cuda_mallocs == a0.cuda_mallocs);
  CHECK(a1.bytes_in_use == a0.bytes_in_use);

  // a NaN weight of the hypothesis head: the counts of the NaN gradients it spreads agree
  const std::string w = "lm_head.dense.weight";
  auto wv = p.c.parameters().get(w);
  wv[7] = std::numeric_limits<float>::quiet_NaN();
  const auto ws = p.c.parameters().at(p.c.parameters().find(w)).shape;
  p.c.parameters().set(w, ws, wv);
  p.g.parameters().set(w, ws, wv);
  CHECK(waits_are(host_waits_of([&] { pg.run(p.g, ctx, mb, {}, 1.0, true); }), 1));
  pc.run(p.c, ctx, mb, {}, 1.0, true);
  CHECK(pc.nonfinite_gradients() > 0);
  CHECK(pg.nonfinite_gradients() == pc.nonfinite_gradients());
  CHECK(pc.nonfinite_gradients() ==
        cpu::count_nonfinite(p.c.parameters().grads().data(), p.c.parameters().grads().numel()));
}
}  // namespace

TEST_CASE("the forward passes and the masked-gene pass wait for the device as documented, and reuse their memory",
          "[model][waits]") {
  genlm::model_options mo;
  mo.init_seed = 3;
  pass_waits<model_pair<genlm::configs::tiny, float>>(train_data{}, mo);
}

#ifdef GENLM_CUDA_EMULATOR
namespace {
/// configs::tiny with one more encoder layer (the per-layer share of a step's operations).
inline constexpr genlm::model_config tiny3 = [] {
  genlm::model_config c = genlm::configs::tiny;
  c.num_layers = 3;
  return c;
}();

using op_counts = std::map<std::string, std::uint64_t>;
std::uint64_t total(const op_counts& m) {
  std::uint64_t n = 0;
  for (const auto& [k, v] : m) n += v;
  return n;
}
/// Operations (kernels, cuBLAS calls, copies, memsets; counted by the emulator) of a trainer's
/// third step, batch_size windows per step; the second step's must be the same.
template <genlm::model_config C>
op_counts step_operations(const train_data& d, int batch_size) {
  genlm::model_options mo;
  mo.init_seed = 3;
  model_pair<C, float> p(mo, 0.0);
  genlm::train_options to;
  to.batch_size = batch_size;
  to.lr = 1e-4;
  to.seed = 11;
  genlm::trainer<typename model_pair<C, float>::gpu_model> tg(p.g, d.feat, d.windows, to);
  tg.step();
  const op_counts a = genlm_cuda_emu::operations();
  tg.step();
  const op_counts b = genlm_cuda_emu::operations();
  tg.step();
  const op_counts c = genlm_cuda_emu::operations();
  const op_counts second = genlm_cuda_emu::operations_between(a, b), third = genlm_cuda_emu::operations_between(b, c);
  CHECK(second == third);
  return third;
}
std::string describe(const op_counts& m) {
  std::uint64_t kernels = 0, blas = 0, copies = 0, memsets = 0;
  for (const auto& [k, v] : m) {
    if (k.rfind("cublas", 0) == 0) blas += v;
    else if (k.rfind("cudaMemcpy", 0) == 0) copies += v;
    else if (k == "cudaMemset") memsets += v;
    else kernels += v;
  }
  return std::to_string(total(m)) + " (" + std::to_string(kernels) + " kernels, " + std::to_string(blas) +
         " cuBLAS calls, " + std::to_string(copies) + " copies, " + std::to_string(memsets) + " memsets)";
}
}  // namespace

TEST_CASE("a training step queues the same device operations for any batch size, a fixed set per layer",
          "[model][training][launches]") {
  const train_data d;
  const op_counts b8 = step_operations<genlm::configs::tiny>(d, 8);
  const op_counts b16 = step_operations<genlm::configs::tiny>(d, 16);
  const op_counts l3 = step_operations<tiny3>(d, 8);
  // no operation per window, gene or row: a bigger batch only makes the same launches bigger
  CHECK(b16 == b8);
  // one more layer adds the same operations again: per layer = l3 - b8, the rest = b8 - 2 x per layer
  op_counts per_layer, rest;
  for (const auto& [k, v] : l3) {
    const std::uint64_t two = b8.count(k) ? b8.at(k) : 0;
    CHECK(v >= two);
    if (v > two) per_layer[k] = v - two;
  }
  for (const auto& [k, v] : b8) {
    const std::uint64_t pl = per_layer.count(k) ? per_layer.at(k) : 0;
    CHECK(v >= 2 * pl);
    if (v > 2 * pl) rest[k] = v - 2 * pl;
  }
  CHECK(total(per_layer) > 0);
  // a layer's backward assigns its workspaces instead of zeroing and accumulating into them: the
  // only fill is the distance table's gradient (its rows beyond the window's distances stay zero),
  // and nothing is copied or added on the device by a separate pass
  const auto count = [](const op_counts& m, const std::string& k) { return m.count(k) ? m.at(k) : 0; };
  CHECK(count(per_layer, "fill") == 1);
  CHECK(count(per_layer, "cudaMemcpy DtoD") == 0);
  CHECK(count(per_layer, "axpy") == 0);
  CHECK(count(per_layer, "add_bias") == 0);  // biases fused into the permutes, GELU, dropout + residual
  // the column sums (bias, LayerNorm gamma / beta gradients) of up to 1024 rows are one launch each
  CHECK(count(b16, "sum_rows") > 0);
  CHECK(count(b16, "sum_rows_finish") == 0);
  CHECK(count(b16, "layer_norm_backward_params_finish") == 0);
  std::printf("[measured] trainer step, float32: %s operations for configs::tiny (2 layers); per encoder layer %s; "
              "outside the layers %s\n",
              describe(b8).c_str(), describe(per_layer).c_str(), describe(rest).c_str());
  if (std::getenv("GENLM_PARITY_REPORT")) {
    for (const auto& [k, v] : per_layer) std::printf("  per layer: %3llu %s\n", (unsigned long long)v, k.c_str());
    for (const auto& [k, v] : rest) std::printf("  outside:   %3llu %s\n", (unsigned long long)v, k.c_str());
  }
}
#endif

TEST_CASE("bad shapes and values through the CUDA model give the CPU's errors", "[model][errors]") {
  model_errors<model_pair<genlm::configs::tiny, float>>();
}
