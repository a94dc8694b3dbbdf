// genlm/train/step.hpp - the host side of one masked-gene training step, shared by
// genlm::trainer and genlm::parallel::data_parallel_trainer:
//   masked_batch      a batch's inputs, its masked genes and their labels (host vectors reused)
//   masked_gene_pass  forward, masked-gene loss (on the model's backend) and backward of one
//                     masked_batch (the model's input/gradient tensors and the loss's scratch
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

/// Forward, masked-gene loss and backward of one masked_batch on a model. The loss runs on the
/// model's backend (masked_gene_loss_grad, masked_gene_metrics_rows): only the masked genes' rows
/// and labels go to it and 6 doubles per masked gene come back, so with a GPU backend the outputs
/// and their gradients stay on the device and nothing waits for the host between the forward and
/// the backward pass. The model's input, loss and gradient tensors and the loss's host scratch are
/// kept across calls.
template <class Model>
class masked_gene_pass {
 public:
  using T = typename Model::scalar;
  using Backend = typename Model::backend;
  using tensor_t = tensor<T, Backend>;
  static constexpr model_config C = Model::config;

  /// Capacity for batches of up to `genes` genes in all (host scratch and the loss's tensors).
  void reserve(std::size_t genes) {
    const auto D = index_t(C.label_dim()), n = index_t(genes);
    loss_ws_.reserve(genes, std::size_t(D));
    results_.reserve(6 * genes + 1);
    rows_.resize({n});
    y_.resize({n, D});
    out_.resize({6 * n + 1});
    choice_.resize({n, 2});
  }

  /// The forward pass of mb under ctx and the metrics of its masked genes' loss. With `backward`,
  /// the loss gradients, multiplied by `grad_scale` (folded into the op's double-precision scales,
  /// so rounded to T once), are backpropagated: the model's parameter gradients are assigned.
  /// Invalid labels or masked genes throw (as masked_gene_loss_grads) before the forward pass, as
  /// do invalid inputs (the model's host-input forward checks them on the host).
  /// With a GPU backend the host waits for the device once, for the loss terms after the backward
  /// pass: the inputs, masked rows and labels are uploaded through pinned staging (no wait), the
  /// inputs are not read back, and the terms and row metrics (and, with count_nonfinite_gradients
  /// on, the gradients' NaN/Inf count) come back in one copy.
  masked_gene_metrics run(Model& model, const run_context& ctx, const masked_batch<T>& mb,
                          const masked_gene_loss_options& loss, double grad_scale, bool backward) {
    const host_batch<T>& b = mb.b;
    const index_t K = C.hypotheses, D = C.label_dim(), n = index_t(mb.masked.size());
    detail::masked_gene_loss_prepare(b.B, b.L, K, D, std::size_t(b.B * b.L * K * D), std::size_t(b.B * b.L * K),
                                     mb.masked, mb.labels, loss, loss_ws_);
    if (n > 0) {  // queued before the forward pass
      rows_.from_host({n}, loss_ws_.rows);
      y_.from_host({n, D}, loss_ws_.y);
    }
    auto out = model.forward(ctx, b.B, b.L, b.x, b.mask);
    expect_shape(out.hypotheses.shape(), shape_t{b.B, b.L, K, D}, "masked_gene_pass: hypotheses");
    expect_shape(out.logits.shape(), shape_t{b.B, b.L, K}, "masked_gene_pass: logits");
    if (backward) {
      d_hyp_.resize_zero({b.B, b.L, K, D});  // the op writes the masked genes' rows only
      d_log_.resize_zero({b.B, b.L, K});
    }
    const bool count = backward && count_grads_;
    out_.resize({6 * n + 1});  // (n, 2) loss terms, (n, 4) row metrics, the gradients' count
    if (n > 0) {
      choice_.resize({n, 2});
      double* terms = out_.data();
      double* row_metrics = out_.data() + 2 * n;
      Backend::masked_gene_loss_grad(out.hypotheses.data(), out.logits.data(), K, D, rows_.data(), y_.data(), n,
                                     detail::masked_gene_mse_scale(n, D) * grad_scale,
                                     detail::masked_gene_ce_scale(n, loss) * grad_scale,
                                     backward ? d_hyp_.data() : static_cast<T*>(nullptr),
                                     backward ? d_log_.data() : static_cast<T*>(nullptr), terms, choice_.data());
      // before backward, which may reuse the output buffers
      Backend::masked_gene_metrics_rows(out.hypotheses.data(), K, D, rows_.data(), y_.data(), choice_.data(), n,
                                        row_metrics);
    }
    if (backward) model.backward(d_hyp_, d_log_);
    nonfinite_grads_ = -1;
    if (count) {
      const auto& g = model.parameters().grads();
      Backend::count_nonfinite_into(g.data(), g.numel(), out_.data() + 6 * n);
    }
    if (n > 0 || count) out_.to_host(results_);  // waits for the backward pass on a GPU backend
    if (count) nonfinite_grads_ = index_t(results_[std::size_t(6 * n)]);
    if (n == 0) return detail::masked_gene_objective(nullptr, 0, D, loss);
    masked_gene_metrics m = detail::masked_gene_objective(results_.data(), n, D, loss);
    detail::masked_gene_add_row_metrics(results_.data() + 2 * n, n, D, m);
    return m;
  }

  /// With `on`, run() with backward also counts the NaN/Inf values among the model's parameter
  /// gradients after the backward pass, and that count comes back in the pass's one copy
  /// (nonfinite_gradients()): genlm::trainer's overflow / divergence check without a wait of its
  /// own. Off by default (the data-parallel trainer counts the all-reduced gradients instead).
  void count_nonfinite_gradients(bool on) { count_grads_ = on; }
  /// The NaN/Inf parameter gradients after the last run(); -1 when it did not count them (no
  /// backward, or counting off).
  index_t nonfinite_gradients() const { return nonfinite_grads_; }

 private:
  tensor_t d_hyp_, d_log_;                     // (B, L, K, D), (B, L, K)
  tensor<std::int64_t, Backend> rows_;         // (n) flat position of each masked gene
  tensor<double, Backend> y_, out_;            // (n, D) clipped labels; (6n + 1) loss terms, row metrics, count
  tensor<std::int32_t, Backend> choice_;       // (n, 2) k*, k^
  masked_gene_loss_workspace loss_ws_;         // the loss's host scratch
  std::vector<double> results_;                // host copy of out_ (6n + 1)
  bool count_grads_ = false;
  index_t nonfinite_grads_ = -1;
};

}  // namespace genlm
