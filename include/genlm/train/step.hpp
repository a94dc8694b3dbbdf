// genlm/train/step.hpp - the host side of one masked-gene training step, shared by
// genlm::trainer and genlm::parallel::data_parallel_trainer:
//   masked_batch      a batch's inputs, its masked genes and their labels (host vectors reused)
//   masked_gene_pass  forward, masked-gene loss and backward of one masked_batch (the model's
//                     input/gradient tensors, host copies of its outputs and the loss's scratch
//                     reused)
// Both reserve their vectors for the largest batch up front, so that a training step allocates
// nothing on the host however many genes its masking draws (tests/test_allocations.cpp).
#pragma once
#include <cstddef>
#include <vector>

#include <genlm/core/random.hpp>
#include <genlm/model/glm.hpp>
#include <genlm/train/batch.hpp>
#include <genlm/train/masked_gene_loss.hpp>
#include <genlm/train/masking.hpp>

namespace genlm {

/// One batch of a masked-gene step in host memory: inputs (with the masked genes' inputs replaced),
/// the masked genes and their labels.
template <class T>
struct masked_batch {
  host_batch<T> b;
  std::vector<gene_pos> masked;  // in batch order
  std::vector<double> labels;    // (masked.size(), label_dim)

  /// Capacity for `windows` windows of `genes` genes in all (every gene masked).
  void reserve(std::size_t windows, std::size_t genes, index_t input_dim, index_t label_dim) {
    b.x.reserve(genes * std::size_t(input_dim));
    b.mask.reserve(genes);
    b.windows.reserve(windows);
    masked.reserve(genes);
    labels.reserve(genes * std::size_t(label_dim));
  }

  /// The batch of windows[which[0..]] (at most max_len genes each), its genes masked with draws
  /// from mg, and the masked genes' labels (none when no gene was masked).
  void prepare(const std::vector<gene_window>& windows, const std::vector<std::size_t>& which,
               const gene_features& feat, index_t max_len, rng& mg, const masking_options& masking) {
    make_batch<T>(windows, which, feat, max_len, b);
    mask_genes(b.x, b.mask, b.B, b.L, b.F, mg, masking, masked);
    labels.clear();
    if (!masked.empty()) batch_labels(b, masked, feat, labels);
  }
};

/// Forward, masked-gene loss and backward of one masked_batch on a model, with the model's input
/// and loss-gradient tensors, the host copies of its outputs and the loss's scratch kept across
/// calls.
template <class Model>
class masked_gene_pass {
 public:
  using T = typename Model::scalar;
  using tensor_t = tensor<T, typename Model::backend>;
  static constexpr model_config C = Model::config;

  /// Capacity of the host vectors for batches of up to `genes` genes in all.
  void reserve(std::size_t genes) {
    const auto K = std::size_t(C.hypotheses), D = std::size_t(C.label_dim());
    for (auto* v : {&h_hyp_, &g_hyp_}) v->reserve(genes * K * D);
    for (auto* v : {&h_log_, &g_log_}) v->reserve(genes * K);
    loss_ws_.reserve(genes, D);
  }

  /// The forward pass of mb under ctx and the metrics of its masked genes' loss. With `backward`,
  /// the loss gradients are multiplied by `grad_scale` (computed in double, then rounded to T;
  /// skipped when it is 1) and backpropagated: the model's parameter gradients are assigned.
  masked_gene_metrics run(Model& model, const run_context& ctx, const masked_batch<T>& mb,
                          const masked_gene_loss_options& loss, double grad_scale, bool backward) {
    const host_batch<T>& b = mb.b;
    x_.from_host({b.B, b.L, b.F}, b.x);
    mask_.from_host({b.B, b.L}, b.mask);
    auto out = model.forward(ctx, x_, mask_);
    const index_t K = C.hypotheses, D = C.label_dim();
    out.hypotheses.to_host(h_hyp_);  // (B, L, K, D)
    out.logits.to_host(h_log_);      // (B, L, K)
    masked_gene_metrics m = masked_gene_loss_grads<T>(h_hyp_, h_log_, b.B, b.L, K, D, mb.masked, mb.labels,
                                                      backward ? &g_hyp_ : nullptr, backward ? &g_log_ : nullptr,
                                                      loss, loss_ws_);
    if (backward) {
      if (grad_scale != 1.0) {
        for (auto& v : g_hyp_) v = T(double(v) * grad_scale);
        for (auto& v : g_log_) v = T(double(v) * grad_scale);
      }
      d_hyp_.from_host({b.B, b.L, K, D}, g_hyp_);
      d_log_.from_host({b.B, b.L, K}, g_log_);
      model.backward(d_hyp_, d_log_);
    }
    // The accuracy metrics (O(masked^2 x D) on the host) after backward is issued: with a GPU
    // backend, whose ops only queue work, they overlap the backward pass instead of delaying it.
    masked_gene_loss_metrics<T>(h_hyp_, K, D, loss_ws_, m);
    return m;
  }

 private:
  tensor_t x_, mask_, d_hyp_, d_log_;     // (B, L, F), (B, L), (B, L, K, D), (B, L, K)
  std::vector<T> h_hyp_, h_log_;          // host copies of the hypotheses and logits
  std::vector<T> g_hyp_, g_log_;          // their loss gradients
  masked_gene_loss_workspace loss_ws_;    // the loss's host scratch
};

}  // namespace genlm
