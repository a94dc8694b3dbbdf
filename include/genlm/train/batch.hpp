// genlm/train/batch.hpp - model inputs and labels for a batch of gene windows.
//
// Input per gene (SPEC.md): z-normalised protein embedding (plm_dim) + strand feature (+0.5 for
// '+', -0.5 for '-'); padding genes are zeros with mask 0. Label per gene: PCA of the normalised
// embedding (pca_components) + the strand feature.
#pragma once
#include <algorithm>
#include <vector>

#include <genlm/data/dataset.hpp>
#include <genlm/train/masked_gene_loss.hpp>

namespace genlm {

/// Per-protein model inputs and labels, computed once from the embeddings (normaliser + PCA).
struct gene_features {
  index_t plm_dim = 0;
  index_t pca_dim = 0;
  std::vector<float> normalized;  // (N, plm_dim)
  std::vector<double> pca;        // (N, pca_dim)
  index_t size() const { return plm_dim ? index_t(normalized.size()) / plm_dim : 0; }
  /// Throws shape_error (naming `who`) unless pca holds size() rows of pca_dim values.
  void check_labels(const char* who) const {
    check<shape_error>(pca_dim >= 0 && index_t(pca.size()) == size() * pca_dim, who, ": gene_features pca.size() = ",
                       pca.size(), ", expected ", size(), " proteins x pca_dim ", pca_dim, " = ", size() * pca_dim);
  }
};

/// A batch of windows in host memory, padded to the longest window.
template <class T>
struct host_batch {
  index_t B = 0, L = 0, F = 0;
  std::vector<T> x;     // (B, L, F)  F = plm_dim + 1
  std::vector<T> mask;  // (B, L)
  std::vector<const gene_window*> windows;
};

/// Builds the inputs of windows[idx[0..]] (at most max_len genes each) into b, reusing its vectors
/// (no allocation once they have grown to the largest batch; the trainer keeps one).
template <class T>
void make_batch(const std::vector<gene_window>& windows, const std::vector<std::size_t>& idx,
                const gene_features& feat, index_t max_len, host_batch<T>& b) {
  b.B = index_t(idx.size());
  b.L = 0;
  b.F = feat.plm_dim + 1;
  b.windows.clear();
  check<shape_error>(b.B > 0, "make_batch: no windows");
  for (std::size_t i : idx) {
    check<shape_error>(i < windows.size(), "make_batch: window index ", i, " out of range (", windows.size(), ")");
    const auto& w = windows[i];
    check<shape_error>(!w.genes.empty(), "make_batch: window '", w.id, "' has no genes");
    check<shape_error>(index_t(w.genes.size()) <= max_len, "make_batch: window '", w.id, "' has ", w.genes.size(),
                       " genes, more than the model's maximum of ", max_len, "; window the contigs first");
    b.L = std::max(b.L, index_t(w.genes.size()));
    b.windows.push_back(&w);
  }
  b.x.assign(std::size_t(b.B * b.L * b.F), T(0));
  b.mask.assign(std::size_t(b.B * b.L), T(0));
  for (index_t bi = 0; bi < b.B; ++bi) {
    const auto& w = *b.windows[std::size_t(bi)];
    for (index_t l = 0; l < index_t(w.genes.size()); ++l) {
      const gene_ref& g = w.genes[std::size_t(l)];
      check<shape_error>(g.protein >= 0 && g.protein < feat.size(), "make_batch: window '", w.id,
                         "' refers to protein row ", g.protein, " of ", feat.size());
      check<value_error>(g.strand == 1 || g.strand == -1, "make_batch: window '", w.id, "', gene ", l,
                         ": strand ", g.strand, ", expected +1 or -1");
      T* dst = &b.x[std::size_t((bi * b.L + l) * b.F)];
      const float* src = &feat.normalized[std::size_t(g.protein * feat.plm_dim)];
      std::copy(src, src + feat.plm_dim, dst);
      dst[feat.plm_dim] = T(0.5 * g.strand);
      b.mask[std::size_t(bi * b.L + l)] = T(1);
    }
  }
}
/// As above, into a new batch.
template <class T>
host_batch<T> make_batch(const std::vector<gene_window>& windows, const std::vector<std::size_t>& idx,
                         const gene_features& feat, index_t max_len) {
  host_batch<T> b;
  make_batch(windows, idx, feat, max_len, b);
  return b;
}

/// Labels (n, pca_dim + 1) of the given genes of a batch: PCA projection + strand feature.
/// Into y (resized; no allocation when its capacity suffices).
template <class T>
void batch_labels(const host_batch<T>& b, const std::vector<gene_pos>& genes, const gene_features& feat,
                  std::vector<double>& y) {
  feat.check_labels("batch_labels");
  const index_t D = feat.pca_dim + 1;
  y.resize(genes.size() * std::size_t(D));
  for (std::size_t i = 0; i < genes.size(); ++i) {
    check<shape_error>(genes[i].b >= 0 && genes[i].b < index_t(b.windows.size()), "batch_labels: gene (", genes[i].b,
                       ", ", genes[i].l, ") outside the batch of ", b.windows.size(), " windows");
    const auto& w = *b.windows[std::size_t(genes[i].b)];
    check<shape_error>(genes[i].l >= 0 && genes[i].l < index_t(w.genes.size()), "batch_labels: gene (", genes[i].b,
                       ", ", genes[i].l, ") outside window '", w.id, "' of ", w.genes.size(), " genes");
    const gene_ref& g = w.genes[std::size_t(genes[i].l)];
    check<shape_error>(g.protein >= 0 && g.protein < feat.size(), "batch_labels: window '", w.id,
                       "' refers to protein row ", g.protein, " of ", feat.size());
    const double* src = &feat.pca[std::size_t(g.protein * feat.pca_dim)];
    std::copy(src, src + feat.pca_dim, &y[i * std::size_t(D)]);
    y[i * std::size_t(D) + std::size_t(feat.pca_dim)] = 0.5 * g.strand;
  }
}
/// Labels (n, pca_dim + 1) of the given genes of a batch, as a new vector.
template <class T>
std::vector<double> batch_labels(const host_batch<T>& b, const std::vector<gene_pos>& genes, const gene_features& feat) {
  std::vector<double> y;
  batch_labels(b, genes, feat, y);
  return y;
}

}  // namespace genlm
