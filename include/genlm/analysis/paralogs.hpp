// genlm/analysis/paralogs.hpp - paralog matching (the paper's ModA/ModC analysis): mask one partner
// of an interacting pair, predict its embedding from the genomic context, and rank candidate
// partners (paralogs of the masked gene) by the distance of their labels to the prediction. The
// partner is identified when the true candidate ranks first; chance is 1 / number of candidates.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <genlm/analysis/logistic.hpp>
#include <genlm/model/inference.hpp>

namespace genlm::analysis {

/// A masked gene (window, position in the window) and the index of its true partner among the
/// candidates.
struct paralog_query {
  std::size_t window = 0;
  std::size_t position = 0;
  index_t candidate = 0;
};

enum class paralog_scoring {
  most_likely,         ///< distance to the most likely hypothesis
  nearest_hypothesis,  ///< smallest distance to any of the hypotheses
};

struct paralog_result {
  index_t candidates = 0;
  std::vector<index_t> rank;       ///< per query, rank of the true candidate (1 = closest; ties count against)
  std::vector<index_t> predicted;  ///< per query, the closest candidate
  index_t correct = 0;             ///< queries whose true candidate ranks first
  double top1 = 0;                 ///< correct / queries
  double chance = 0;               ///< 1 / candidates
  double mean_rank = 0;
};

/// Candidate vectors: the label-space (PCA) vectors of the given protein rows, (n, pca_dim).
inline dmatrix candidate_labels(const gene_features& feat, const std::vector<index_t>& proteins) {
  feat.check_labels("candidate_labels");
  dmatrix out(index_t(proteins.size()), feat.pca_dim);
  for (std::size_t i = 0; i < proteins.size(); ++i) {
    check<lookup_error>(proteins[i] >= 0 && proteins[i] < feat.size(), "candidate_labels: protein row ", proteins[i],
                        " of ", feat.size());
    std::copy_n(&feat.pca[std::size_t(proteins[i] * feat.pca_dim)], feat.pca_dim, out.row(index_t(i)));
  }
  return out;
}

/// Masks each query gene on its own, predicts it from its context, and ranks the candidates
/// (rows of `candidates`, label space without the strand: pca_dim columns) by L2 distance to the
/// prediction. value_error for no queries / candidates or batch_size < 1, shape_error for features
/// whose pca_dim is not the model's pca_components or a candidate width other than pca_dim,
/// lookup_error for a query's candidate index out of range.
template <class Model>
paralog_result match_paralogs(Model& model, const gene_features& feat, const std::vector<gene_window>& windows,
                              const std::vector<paralog_query>& queries, const dmatrix& candidates,
                              index_t batch_size = 16, paralog_scoring scoring = paralog_scoring::most_likely) {
  check<value_error>(!queries.empty(), "match_paralogs: no queries");
  check<value_error>(candidates.rows >= 1, "match_paralogs: no candidates");
  check<value_error>(batch_size >= 1, "match_paralogs: batch_size = ", batch_size, ", expected >= 1");
  const index_t P = feat.pca_dim, D = Model::config.label_dim(), K = Model::config.hypotheses;
  check<shape_error>(P == Model::config.pca_components, "match_paralogs: features have pca_dim ", P,
                     " but the model predicts labels of pca_components ", Model::config.pca_components);
  check<shape_error>(candidates.cols == P, "match_paralogs: candidates have ", candidates.cols,
                     " columns, expected the label's ", P, " PCA components");
  std::vector<std::pair<std::size_t, std::size_t>> genes;
  for (const auto& q : queries) {
    check<lookup_error>(q.candidate >= 0 && q.candidate < candidates.rows, "match_paralogs: true candidate ",
                        q.candidate, " of a query, but there are ", candidates.rows, " candidates");
    genes.emplace_back(q.window, q.position);
  }
  const auto preds = predict_masked(model, feat, windows, genes, batch_size);
  paralog_result r;
  r.candidates = candidates.rows;
  r.chance = 1.0 / double(candidates.rows);
  for (std::size_t i = 0; i < queries.size(); ++i) {
    const auto& p = preds[i];
    std::vector<double> dist(std::size_t(candidates.rows), std::numeric_limits<double>::infinity());
    for (index_t k = 0; k < K; ++k) {
      if (scoring == paralog_scoring::most_likely && k != p.most_likely) continue;
      const double* h = &p.hypotheses[std::size_t(k * D)];
      for (index_t c = 0; c < candidates.rows; ++c) {
        double d = 0;
        for (index_t j = 0; j < P; ++j) {
          const double e = h[j] - candidates(c, j);
          d += e * e;
        }
        dist[std::size_t(c)] = std::min(dist[std::size_t(c)], d);
      }
    }
    const double dt = dist[std::size_t(queries[i].candidate)];
    index_t rank = 1;
    for (index_t c = 0; c < candidates.rows; ++c)
      if (c != queries[i].candidate && dist[std::size_t(c)] <= dt) ++rank;
    r.rank.push_back(rank);
    r.predicted.push_back(index_t(std::min_element(dist.begin(), dist.end()) - dist.begin()));
    r.correct += rank == 1;
    r.mean_rank += double(rank) / double(queries.size());
  }
  r.top1 = double(r.correct) / double(queries.size());
  return r;
}

}  // namespace genlm::analysis
