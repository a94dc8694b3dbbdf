// genlm/train/simulated_task.hpp - a ready-made masked-gene task on simulated contigs: the
// structured synthetic genomes of data/simulate.hpp, their features (normaliser + PCA labels) and
// windows split into training and evaluation sets. Used by the tests, train_cuda and benchmarks.
#pragma once
#include <algorithm>
#include <vector>

#include <genlm/data/simulate.hpp>
#include <genlm/train/trainer.hpp>

namespace genlm {

struct simulated_task {
  simulated_data sim;
  feature_pipeline pipe;
  gene_features feat;
  std::vector<gene_window> train;  // windows after the first eval_windows
  std::vector<gene_window> eval;   // the first eval_windows windows

  /// Simulates contigs with `so`, fits the normaliser and a PCA with `pca_components` components on
  /// all proteins, and windows the contigs (30 genes).
  simulated_task(const simulation_options& so, index_t pca_components, std::size_t eval_windows = 0) {
    sim = simulate_contigs(so);
    pipe.fit(sim.proteins, pca_components);
    feat = pipe.features(sim.proteins);
    auto all = simulated_windows(sim);
    check<shape_error>(eval_windows < all.size(), "simulated_task: ", eval_windows, " evaluation windows requested but ",
                       all.size(), " windows were simulated");
    eval.assign(all.begin(), all.begin() + std::ptrdiff_t(eval_windows));
    train.assign(all.begin() + std::ptrdiff_t(eval_windows), all.end());
  }

  /// The structured contigs the tests and examples train on: 30 gene families in 6 conserved
  /// modules, 10% noise genes, protein features of dimension `dim`.
  static simulation_options structured(index_t dim, index_t contigs, std::uint64_t seed = 7) {
    simulation_options so;
    so.dim = dim;
    so.contigs = contigs;
    so.families = 30;
    so.modules = 6;
    so.noise_gene_rate = 0.1;
    so.seed = seed;
    return so;
  }
};

}  // namespace genlm
