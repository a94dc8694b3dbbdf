// Downstream analyses on simulated metagenomic contigs with known ground truth, after training a
// tiny gLM: operons from attention beat the strand-only baseline, the function probe on
// contextualised embeddings beats the same probe on the input protein features, paralog matching
// beats chance. Each test case trains its own model (each is a separate ctest process).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>

#include <genlm/analysis/operons.hpp>
#include <genlm/analysis/paralogs.hpp>
#include <genlm/analysis/probe.hpp>
#include <genlm/data/simulate.hpp>
#include <genlm/train/trainer.hpp>

using namespace genlm;
using namespace genlm::analysis;

namespace {
using Model = GLM<configs::tiny, cpu>;

/// Simulated contigs, features, a tiny gLM trained on the first contigs; the rest are held out
/// for the analyses.
struct trained {
  simulated_data sim;
  feature_pipeline pipe;
  gene_features feat;
  std::vector<gene_window> train, held_out;
  std::vector<std::size_t> held_out_contigs;  // contig index of each held-out window
  std::unique_ptr<Model> model;
  double seconds = 0;

  trained(const simulation_options& so, int steps, std::size_t n_held_out, std::uint64_t seed = 11) {
    const auto t0 = std::chrono::steady_clock::now();
    sim = simulate_contigs(so);
    pipe.fit(sim.proteins, configs::tiny.pca_components);
    feat = pipe.features(sim.proteins);
    std::vector<contig_window> ws;
    std::vector<std::size_t> contig_of;
    for (std::size_t c = 0; c < sim.contigs.size(); ++c)
      for (auto& w : windows(sim.contigs[c], 30, 0)) ws.push_back(w), contig_of.push_back(c);
    auto all = resolve_windows(ws, sim.proteins, "simulated contigs");
    REQUIRE(all.size() > n_held_out);
    const std::size_t n_train = all.size() - n_held_out;
    train.assign(all.begin(), all.begin() + std::ptrdiff_t(n_train));
    held_out.assign(all.begin() + std::ptrdiff_t(n_train), all.end());
    held_out_contigs.assign(contig_of.begin() + std::ptrdiff_t(n_train), contig_of.end());
    model_options mo;
    mo.init_seed = 3;
    mo.hidden_dropout = mo.attention_dropout = 0.0;
    model = std::make_unique<Model>(mo);
    train_options to;
    to.batch_size = 16;
    to.lr = 3e-3;
    to.warmup_steps = 20;
    to.seed = seed;
    trainer<Model> tr(*model, feat, train, to);
    for (int s = 0; s < steps; ++s) tr.step();
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

simulation_options base_options() {
  simulation_options so;
  so.dim = configs::tiny.plm_dim;
  so.contigs = 300;
  so.families = 30;
  so.modules = 8;
  so.noise_gene_rate = 0.25;
  so.seed = 21;
  return so;
}
}  // namespace

TEST_CASE("operons from attention beat the strand-only baseline on simulated contigs", "[analysis][sim]") {
  simulation_options so = base_options();
  trained t(so, 800, 80);
  const auto f = attention_pair_features(*t.model, t.feat, t.held_out);
  REQUIRE(f.layers == 2);
  REQUIRE(f.heads == 4);
  REQUIRE(f.x.cols == 16);
  CHECK(f.uncovered == 0);
  // ground truth: adjacent genes of one module occurrence
  std::vector<int> labels(f.pairs.size(), -1);
  for (std::size_t c : t.held_out_contigs) {
    const auto lab = t.sim.operon_labels(c);
    for (std::size_t i = 0; i < lab.size(); ++i) {
      const index_t r = f.find(t.sim.contigs[c].contig_id, i);
      REQUIRE(r >= 0);
      labels[std::size_t(r)] = lab[i];
    }
  }
  const auto ev = evaluate_operons(f, labels);
  double best_feature = 0;
  for (double a : ev.feature_auc) best_feature = std::max(best_feature, std::max(a, 1 - a));
  std::printf("[operons] %zu pairs (%lld operon): AUC %.3f (strand-only %.3f; same-strand pairs %.3f, n=%lld), "
              "AP %.3f, P/R/F1 %.3f/%.3f/%.3f, best single feature %.3f; %.1f s\n",
              ev.rows.size(), (long long)ev.positives, ev.auc, ev.strand_auc, ev.same_strand_auc,
              (long long)ev.same_strand_pairs, ev.average_precision, ev.at_half.precision, ev.at_half.recall,
              ev.at_half.f1, best_feature, t.seconds);
  CHECK(ev.rows.size() == f.pairs.size());
  // Measured (seed 21): AUC 0.88 vs strand-only 0.76, 0.86 among same-strand pairs; other
  // simulation seeds 0.79-0.89 vs 0.74-0.75. (F1 at 0.5 is no fair comparison here: 70% of the
  // pairs are operon pairs and every one of them is same-strand, so "same strand" alone has F1 0.9.)
  CHECK(ev.auc > ev.strand_auc + 0.05);
  CHECK(ev.same_strand_auc > 0.7);
  CHECK(ev.average_precision > 0.8);
}

TEST_CASE("function probe: contextualised embeddings beat the input features when function depends on context",
          "[analysis][sim]") {
  simulation_options so = base_options();
  so.module_family_pool = 10;  // families shared between modules
  so.function_classes = 4;
  trained t(so, 800, 100);
  const auto embs = embed_windows(*t.model, t.feat, t.held_out, 16);
  REQUIRE(embs.size() == t.held_out.size());
  dmatrix ctx(0, 0), inp(0, 0);
  std::vector<int> y;
  std::vector<index_t> groups;
  std::vector<double> cv, iv;
  for (std::size_t w = 0; w < t.held_out.size(); ++w) {
    const auto& win = t.held_out[w];
    for (std::size_t l = 0; l < win.genes.size(); ++l) {
      const index_t p = win.genes[l].protein;
      y.push_back(int(t.sim.function_of[std::size_t(p)]));
      groups.push_back(index_t(w));
      cv.insert(cv.end(), embs[w].values.begin() + std::ptrdiff_t(l * std::size_t(embs[w].dim)),
                embs[w].values.begin() + std::ptrdiff_t((l + 1) * std::size_t(embs[w].dim)));
      const float* x = &t.feat.normalized[std::size_t(p * t.feat.plm_dim)];
      iv.insert(iv.end(), x, x + t.feat.plm_dim);
    }
  }
  ctx = dmatrix(index_t(y.size()), configs::tiny.hidden, cv);
  inp = dmatrix(index_t(y.size()), t.feat.plm_dim, iv);
  const auto rc = linear_probe(ctx, y, so.function_classes, groups);
  const auto ri = linear_probe(inp, y, so.function_classes, groups);
  std::printf("[probe] %lld genes, 4 classes: accuracy contextual %.3f vs input %.3f (majority %.3f); macro F1 "
              "%.3f vs %.3f; %.1f s\n",
              (long long)rc.report.samples, rc.report.accuracy, ri.report.accuracy, rc.majority_accuracy,
              rc.report.macro_f1, ri.report.macro_f1, t.seconds);
  // Measured (seed 21): accuracy 0.90 vs 0.59, macro F1 0.90 vs 0.58 (majority class 0.30); other
  // simulation seeds 0.73-0.87 vs 0.47-0.58.
  CHECK(rc.report.samples == ri.report.samples);
  CHECK(rc.report.accuracy > ri.report.accuracy + 0.05);
  CHECK(rc.report.macro_f1 > ri.report.macro_f1 + 0.05);
  CHECK(rc.report.accuracy > rc.majority_accuracy + 0.1);
}

TEST_CASE("paralog matching identifies the interacting partner far above chance", "[analysis][sim]") {
  simulation_options so = base_options();
  so.modules = 6;
  so.noise_gene_rate = 0.1;
  so.paralog_pairs = 6;
  so.paralog_spread = 0.7;  // paralog embeddings: cosine ~0.67 to one another
  so.paralog_rate = 0.3;
  trained t(so, 1200, 100);
  // candidates: the label-space centroid of each A_i paralog over all its proteins
  const index_t P = t.feat.pca_dim, m = so.paralog_pairs;
  dmatrix cand(m, P);
  std::vector<int> n(std::size_t(m), 0);
  for (std::size_t r = 0; r < t.sim.paralog_of.size(); ++r)
    if (t.sim.paralog_role[r] == 0) {
      const index_t i = t.sim.paralog_of[r];
      ++n[std::size_t(i)];
      for (index_t j = 0; j < P; ++j) cand(i, j) += t.feat.pca[r * std::size_t(P) + std::size_t(j)];
    }
  for (index_t i = 0; i < m; ++i)
    for (index_t j = 0; j < P; ++j) cand(i, j) /= std::max(1, n[std::size_t(i)]);
  std::vector<paralog_query> q;
  for (std::size_t w = 0; w < t.held_out.size(); ++w)
    for (std::size_t l = 0; l < t.held_out[w].genes.size(); ++l) {
      const index_t p = t.held_out[w].genes[l].protein;
      if (t.sim.paralog_role[std::size_t(p)] == 0) q.push_back({w, l, t.sim.paralog_of[std::size_t(p)]});
    }
  REQUIRE(q.size() > 50);
  const auto r = match_paralogs(*t.model, t.feat, t.held_out, q, cand, 32);
  const auto r2 = match_paralogs(*t.model, t.feat, t.held_out, q, cand, 32, paralog_scoring::nearest_hypothesis);
  std::printf("[paralogs] %zu masked A genes, %lld candidates: top-1 %.3f (nearest hypothesis %.3f) vs chance %.3f, "
              "mean rank %.2f; %.1f s\n",
              q.size(), (long long)r.candidates, r.top1, r2.top1, r.chance, r.mean_rank, t.seconds);
  // Measured (seed 21): top-1 0.71 (nearest hypothesis 0.87) vs chance 0.17; other simulation
  // seeds 0.41-0.60 (0.57-0.86). The most likely hypothesis is picked by a head trained with weight
  // 1e-4 (SPEC.md), which a short run barely trains; any-hypothesis matching shows what the
  // hypotheses themselves hold.
  CHECK(r.candidates == 6);
  CHECK(r.chance == Approx(1.0 / 6));
  CHECK(r.top1 > 2 * r.chance);
  CHECK(r2.top1 > 3 * r.chance);
  CHECK(r.mean_rank < 2.5);
}
