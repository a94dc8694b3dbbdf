// genlm/train/masked_gene_loss.hpp - gLM's masked gene modelling objective and metrics (SPEC.md).
//
// For each masked gene with label y (label_dim, clipped to [-10, 10]) and hypotheses h_k:
//   k* = argmin_k ||h_k - y||^2
//   loss = MSE(h_{k*}, y) (mean over masked genes x label dims) + 1e-4 * CE(logits, k*) (mean).
// Metrics use the most likely hypothesis k^ = argmax logits: accuracy = fraction of masked genes
// whose prediction h_{k^} is closer (L2) to their own label than to any other masked gene's label
// in the batch; mean cosine similarity and MSE of h_{k^} against the label; and whether the sign of
// h_{k^}'s last dimension (gLM labels end with the strand feature +-0.5) matches the gene's strand.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <genlm/backend/cpu.hpp>
#include <genlm/core/error.hpp>
#include <genlm/core/tensor.hpp>

namespace genlm {

/// A masked gene: contig b, position l in the batch.
struct gene_pos {
  index_t b = 0, l = 0;
};

struct masked_gene_loss_options {
  double ce_weight = 1e-4;   ///< weight of the cross entropy; finite and >= 0
  double label_clip = 10.0;  ///< labels are clipped to [-label_clip, label_clip]; finite and > 0

  /// Throws value_error naming the first invalid field and its value.
  void validate() const {
    const char* who = "masked_gene_loss_options";
    check<value_error>(std::isfinite(ce_weight) && ce_weight >= 0, who, ": ce_weight = ", ce_weight,
                       " must be finite and >= 0");
    check<value_error>(std::isfinite(label_clip) && label_clip > 0, who, ": label_clip = ", label_clip,
                       " must be finite and > 0");
  }
};

struct masked_gene_metrics {
  double loss = 0, mse = 0, ce = 0;  // objective and its two terms
  index_t masked = 0;                 // number of masked genes
  index_t correct = 0;                // most-likely hypothesis nearest to own label
  double cosine = 0;                  // mean cosine(h_{k^}, y)
  double mse_most_likely = 0;         // mean squared error of h_{k^}
  index_t strand_correct = 0;         // sign of h_{k^}'s last dimension (the strand feature) right
  bool skipped = false;               // training: loss scaling found non-finite gradients, no update
  double accuracy() const { return masked ? double(correct) / double(masked) : 0.0; }
  double strand_accuracy() const { return masked ? double(strand_correct) / double(masked) : 0.0; }
};

/// Accuracy of predictions (n, D) against labels (n, D): prediction i is correct when label i is
/// its nearest label (ties count as wrong unless i is the first nearest; the search of
/// cpu::masked_gene_metrics_rows).
inline index_t nearest_label_correct(const std::vector<double>& pred, const std::vector<double>& labels, index_t n,
                                     index_t D) {
  index_t correct = 0;
  for (index_t i = 0; i < n; ++i) correct += cpu_detail::nearest_label(&pred[std::size_t(i * D)], labels.data(), n, D) == i;
  return correct;
}

/// Host scratch of masked_gene_loss; a caller that keeps one across steps (the trainer does) makes
/// the loss allocate nothing once the vectors have grown to the largest batch.
struct masked_gene_loss_workspace {
  std::vector<double> y;            // (n, D) the labels, clipped
  std::vector<double> terms;        // (n, 2) squared distance to k*, cross entropy (the backend op's)
  std::vector<double> row_metrics;  // (n, 4) cosine, squared distance, strand, nearest (of k^)
  std::vector<std::int64_t> rows;   // (n) flat position b * L + l of each masked gene
  std::vector<std::int32_t> choice; // (n, 2) k*, k^
  std::vector<std::uint8_t> seen;   // (B, L): which positions are masked (duplicate check)
  /// Capacity for up to n masked genes of label dimension D in batches of up to n positions
  /// (B x L <= n; the sizes masked_gene_loss uses).
  void reserve(std::size_t n, std::size_t D) {
    y.reserve(n * D);
    terms.reserve(2 * n);
    row_metrics.reserve(4 * n);
    choice.reserve(2 * n);
    rows.reserve(n);
    seen.reserve(n);
  }
};

namespace detail {
/// The loss's checks of its inputs and its host part, shared by masked_gene_loss_grads and
/// genlm::masked_gene_pass (which runs the rest on the model's backend): hyp_values / logit_values
/// are the sizes of hyp (B, L, K, D) and logits (B, L, K). Fills ws.y with the clipped labels and
/// ws.rows with the flat positions b * L + l. Throws as masked_gene_loss_grads documents.
inline void masked_gene_loss_prepare(index_t B, index_t L, index_t K, index_t D, std::size_t hyp_values,
                                     std::size_t logit_values, const std::vector<gene_pos>& masked,
                                     const std::vector<double>& labels, const masked_gene_loss_options& opt,
                                     masked_gene_loss_workspace& ws) {
  const index_t n = index_t(masked.size());
  opt.validate();
  check<shape_error>(K >= 1, "masked_gene_loss: K = ", K, " hypotheses, expected >= 1");
  check<shape_error>(D >= 1, "masked_gene_loss: D = ", D, " label dimensions, expected >= 1");
  check<shape_error>(B >= 0 && L >= 0, "masked_gene_loss: batch (", B, ", ", L, ") has a negative dimension");
  check<shape_error>(index_t(hyp_values) == B * L * K * D, "masked_gene_loss: hypotheses hold ", hyp_values,
                     " values, expected ", B * L * K * D);
  check<shape_error>(index_t(logit_values) == B * L * K, "masked_gene_loss: logits hold ", logit_values,
                     " values, expected ", B * L * K);
  check<shape_error>(index_t(labels.size()) == n * D, "masked_gene_loss: labels hold ", labels.size(),
                     " values, expected ", n, " masked genes x ", D);
  std::vector<double>& y = ws.y;
  y.assign(labels.begin(), labels.end());
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i]))
      throw value_error(detail::concat("masked_gene_loss: label (row ", index_t(i) / D, ", column ", index_t(i) % D,
                                       ") is ", y[i], "; labels must be finite"));
    y[i] = std::clamp(y[i], -opt.label_clip, opt.label_clip);
  }
  std::vector<std::int64_t>& rows = ws.rows;
  rows.resize(static_cast<std::size_t>(n));
  std::vector<std::uint8_t>& seen = ws.seen;  // each position at most once: the gradients are assigned per row
  seen.assign(std::size_t(B * L), 0);
  for (index_t i = 0; i < n; ++i) {
    const gene_pos& g = masked[std::size_t(i)];
    check<shape_error>(g.b >= 0 && g.b < B && g.l >= 0 && g.l < L, "masked_gene_loss: masked gene (", g.b, ", ", g.l,
                       ") outside the batch (", B, ", ", L, ")");
    rows[std::size_t(i)] = g.b * L + g.l;
    check<value_error>(!seen[std::size_t(g.b * L + g.l)], "masked_gene_loss: gene (", g.b, ", ", g.l,
                       ") is masked more than once (entry ", i, " of the masked list)");
    seen[std::size_t(g.b * L + g.l)] = 1;
  }
}
/// The gradient scales of n masked genes: d loss / d (squared distance sum), d loss / d (CE sum).
inline double masked_gene_mse_scale(index_t n, index_t D) { return 1.0 / double(n * D); }
inline double masked_gene_ce_scale(index_t n, const masked_gene_loss_options& opt) { return opt.ce_weight / double(n); }
/// The objective (loss, mse, ce) of n masked genes from the backend op's terms (n, 2).
inline masked_gene_metrics masked_gene_objective(const double* terms, index_t n, index_t D,
                                                 const masked_gene_loss_options& opt) {
  masked_gene_metrics m;
  m.masked = n;
  const double mse_scale = masked_gene_mse_scale(n, D);
  for (index_t i = 0; i < n; ++i) {
    m.mse += terms[std::size_t(2 * i)] * mse_scale;
    m.ce += terms[std::size_t(2 * i + 1)] / double(n);
  }
  m.loss = m.mse + opt.ce_weight * m.ce;
  return m;
}
/// Adds the metrics of the most likely hypotheses from the backend op's rows (n, 4) to m.
inline void masked_gene_add_row_metrics(const double* r, index_t n, index_t D, masked_gene_metrics& m) {
  for (index_t i = 0; i < n; ++i) {
    const double* ri = &r[std::size_t(4 * i)];
    m.cosine += ri[0] / double(n);
    m.mse_most_likely += ri[1] / double(n * D);
    m.strand_correct += ri[2] != 0;
    m.correct += ri[3] != 0;
  }
}
}  // namespace detail

/// The loss in two parts, for callers that want the gradients before the metrics:
/// masked_gene_loss_grads computes the objective (loss, mse, ce, masked) and writes the gradients
/// d_hyp (B, L, K, D) and d_logits (B, L, K) (zero at unmasked genes); masked_gene_loss_metrics
/// then adds the metrics of the most likely hypothesis (correct, cosine, mse_most_likely,
/// strand_correct) from the same hyp and the workspace as the first part left it. Both run the
/// CPU backend's ops (cpu::masked_gene_loss_grad, cpu::masked_gene_metrics_rows) on host vectors;
/// genlm::masked_gene_pass runs the same ops on the model's backend without copying the outputs.
/// hyp: (B, L, K, D), logits: (B, L, K), labels: (n_masked, D) in the order of `masked`.
/// shape_error for K or D < 1, sizes that do not match or a masked gene outside the batch;
/// value_error for invalid options, a gene masked twice, or a NaN/Inf label (naming its row,
/// column and value).
template <class T>
masked_gene_metrics masked_gene_loss_grads(const std::vector<T>& hyp, const std::vector<T>& logits, index_t B,
                                           index_t L, index_t K, index_t D, const std::vector<gene_pos>& masked,
                                           const std::vector<double>& labels, std::vector<T>* d_hyp,
                                           std::vector<T>* d_logits, const masked_gene_loss_options& opt,
                                           masked_gene_loss_workspace& ws) {
  const index_t n = index_t(masked.size());
  detail::masked_gene_loss_prepare(B, L, K, D, hyp.size(), logits.size(), masked, labels, opt, ws);
  if (d_hyp) d_hyp->assign(hyp.size(), T(0));
  if (d_logits) d_logits->assign(logits.size(), T(0));
  ws.terms.resize(std::size_t(2 * n));
  ws.choice.resize(std::size_t(2 * n));
  if (n == 0) return detail::masked_gene_objective(ws.terms.data(), 0, D, opt);
  // closest hypothesis k*, its squared distance, the cross entropy against k*, the gradients, and
  // the most likely hypothesis k^: the backend op (host memory here)
  cpu::masked_gene_loss_grad(hyp.data(), logits.data(), K, D, ws.rows.data(), ws.y.data(), n,
                             detail::masked_gene_mse_scale(n, D), detail::masked_gene_ce_scale(n, opt),
                             d_hyp ? d_hyp->data() : static_cast<T*>(nullptr),
                             d_logits ? d_logits->data() : static_cast<T*>(nullptr), ws.terms.data(),
                             ws.choice.data());
  return detail::masked_gene_objective(ws.terms.data(), n, D, opt);
}

/// The second part (see masked_gene_loss_grads): m from the first part, hyp and ws unchanged since.
template <class T>
void masked_gene_loss_metrics(const std::vector<T>& hyp, index_t K, index_t D, masked_gene_loss_workspace& ws,
                              masked_gene_metrics& m) {
  const index_t n = m.masked;
  if (n == 0) return;
  check<shape_error>(index_t(ws.rows.size()) == n && index_t(ws.choice.size()) == 2 * n &&
                         index_t(ws.y.size()) == n * D,
                     "masked_gene_loss_metrics: the workspace does not hold masked_gene_loss_grads' ", n,
                     " masked genes (call that first)");
  check<shape_error>(index_t(hyp.size()) >= (*std::max_element(ws.rows.begin(), ws.rows.end()) + 1) * K * D,
                     "masked_gene_loss_metrics: hypotheses hold ", hyp.size(),
                     " values, fewer than masked_gene_loss_grads saw");
  ws.row_metrics.resize(std::size_t(4 * n));
  cpu::masked_gene_metrics_rows(hyp.data(), K, D, ws.rows.data(), ws.y.data(), ws.choice.data(), n,
                                ws.row_metrics.data());
  detail::masked_gene_add_row_metrics(ws.row_metrics.data(), n, D, m);
}

/// Both parts: the loss, the metrics and the gradients on host copies of the model outputs.
template <class T>
masked_gene_metrics masked_gene_loss(const std::vector<T>& hyp, const std::vector<T>& logits, index_t B, index_t L,
                                     index_t K, index_t D, const std::vector<gene_pos>& masked,
                                     const std::vector<double>& labels, std::vector<T>* d_hyp,
                                     std::vector<T>* d_logits, const masked_gene_loss_options& opt,
                                     masked_gene_loss_workspace& ws) {
  masked_gene_metrics m = masked_gene_loss_grads(hyp, logits, B, L, K, D, masked, labels, d_hyp, d_logits, opt, ws);
  masked_gene_loss_metrics(hyp, K, D, ws, m);
  return m;
}

/// As above with scratch of its own (allocates per call).
template <class T>
masked_gene_metrics masked_gene_loss(const std::vector<T>& hyp, const std::vector<T>& logits, index_t B, index_t L,
                                     index_t K, index_t D, const std::vector<gene_pos>& masked,
                                     const std::vector<double>& labels, std::vector<T>* d_hyp,
                                     std::vector<T>* d_logits, const masked_gene_loss_options& opt = {}) {
  masked_gene_loss_workspace ws;
  return masked_gene_loss(hyp, logits, B, L, K, D, masked, labels, d_hyp, d_logits, opt, ws);
}

}  // namespace genlm
