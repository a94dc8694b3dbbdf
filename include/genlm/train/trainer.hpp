// genlm/train/trainer.hpp - masked gene modelling: feature preparation, training steps,
// evaluation against a context-free baseline, checkpoints with bit-identical resume.
#pragma once
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <genlm/backend/precision.hpp>
#include <genlm/data/dataset.hpp>
#include <genlm/io/safetensors.hpp>
#include <genlm/io/state_dict.hpp>
#include <genlm/model/glm.hpp>
#include <genlm/train/batch.hpp>
#include <genlm/train/loss_scaler.hpp>
#include <genlm/train/masked_gene_loss.hpp>
#include <genlm/train/masking.hpp>
#include <genlm/train/optimizer.hpp>
#include <genlm/train/pca.hpp>
#include <genlm/train/step.hpp>

namespace genlm {

/// Normaliser + PCA fitted on protein embeddings, and the per-protein inputs/labels they give.
struct feature_pipeline {
  normalizer norm;
  pca<double> pc;

  /// Fits the per-dimension normalisation and a PCA with `components` components on `emb`.
  void fit(const protein_embeddings& emb, index_t components) {
    check<shape_error>(emb.size() >= 2, emb.source(), ": need at least 2 proteins to fit the normalisation and PCA, got ",
                       emb.size());
    norm.fit(emb.values().data(), emb.size(), emb.dim());
    const std::vector<float> z = norm.apply(std::span<const float>(emb.values()));
    const std::vector<double> zd(z.begin(), z.end());
    pc.fit(zd.data(), emb.size(), emb.dim(), components);
  }
  bool fitted() const { return norm.fitted() && pc.fitted(); }

  /// Inputs (normalised) and labels (PCA projections) of every protein of `emb`.
  gene_features features(const protein_embeddings& emb) const {
    check<shape_error>(fitted(), "feature_pipeline: not fitted");
    check<shape_error>(emb.dim() == norm.n_features(), emb.source(), ": embedding dimension ", emb.dim(),
                       ", but the model's normalisation/PCA were fitted on dimension ", norm.n_features());
    gene_features f;
    f.plm_dim = emb.dim();
    f.pca_dim = pc.n_components();
    f.normalized = norm.apply(std::span<const float>(emb.values()));
    const std::vector<double> zd(f.normalized.begin(), f.normalized.end());
    f.pca = pc.transform(std::span<const double>(zd));
    return f;
  }
  void save_to(std::map<std::string, io::array>& out) const {
    norm.save_to(out, "norm.");
    pc.save_to(out, "pca.");
  }
  /// Loads what save_to wrote; shape_error when the normaliser and the PCA were fitted on
  /// different feature widths (the pipeline is left unchanged on error).
  void load_from(const io::safetensors_file& f) {
    normalizer n;
    pca<double> p;
    n.load_from(f, "norm.");
    p.load_from(f, "pca.");
    check<shape_error>(n.n_features() == p.n_features(), "feature_pipeline::load_from: '", f.source,
                       "' holds a normalizer of ", n.n_features(), " features (norm.mean) but a PCA of ",
                       p.n_features(), " features (pca.components); both must be the protein embedding dimension");
    norm = std::move(n);
    pc = std::move(p);
  }
};

/// The context-free reference: the best a model can do without neighbours is a constant set of
/// hypotheses. We fit K centres of the training labels by k-means (K = the model's hypotheses,
/// deterministic k-means++ seeding) and predict the largest cluster's centre for every gene.
struct context_free_baseline {
  index_t D = 0;
  std::vector<double> centres;  // (K, D)
  std::vector<index_t> sizes;
  std::vector<double> prediction;  // (D) centre of the largest cluster

  void fit(const std::vector<double>& labels, index_t n, index_t dim, index_t K, std::uint64_t seed, int iters = 50) {
    check<value_error>(K >= 1, "context_free_baseline: K = ", K, " centres, expected >= 1");
    check<shape_error>(dim >= 1, "context_free_baseline: label dimension D = ", dim, ", expected >= 1");
    check<shape_error>(n >= 1 && index_t(labels.size()) == n * dim, "context_free_baseline: ", labels.size(),
                       " label values for ", n, " x ", dim);
    for (std::size_t i = 0; i < labels.size(); ++i)
      check<value_error>(std::isfinite(labels[i]), "context_free_baseline::fit: label ", i / std::size_t(dim),
                         ", dimension ", i % std::size_t(dim), " is ", labels[i], " (finite labels expected)");
    D = dim;
    K = std::min(K, n);
    rng g(seed, 0xBA5E);
    centres.assign(std::size_t(K * D), 0.0);
    auto row = [&](index_t i) { return &labels[std::size_t(i * D)]; };
    std::copy_n(row(index_t(g.below(std::uint64_t(n)))), D, centres.begin());
    std::vector<double> d2(std::size_t(n), 0.0);
    for (index_t k = 1; k < K; ++k) {  // k-means++
      double total = 0;
      for (index_t i = 0; i < n; ++i) {
        double best = INFINITY;
        for (index_t c = 0; c < k; ++c) best = std::min(best, cpu_detail::sqdist(row(i), &centres[std::size_t(c * D)], D));
        d2[std::size_t(i)] = best;
        total += best;
      }
      double r = g.uniform() * total;
      index_t pick = n - 1;
      for (index_t i = 0; i < n; ++i)
        if ((r -= d2[std::size_t(i)]) <= 0) {
          pick = i;
          break;
        }
      std::copy_n(row(pick), D, centres.begin() + k * D);
    }
    std::vector<index_t> assign(std::size_t(n), 0);
    for (int it = 0; it < iters; ++it) {
      for (index_t i = 0; i < n; ++i) {
        double best = INFINITY;
        for (index_t c = 0; c < K; ++c) {
          const double d = cpu_detail::sqdist(row(i), &centres[std::size_t(c * D)], D);
          if (d < best) best = d, assign[std::size_t(i)] = c;
        }
      }
      std::vector<double> sum(std::size_t(K * D), 0.0);
      sizes.assign(std::size_t(K), 0);
      for (index_t i = 0; i < n; ++i) {
        const index_t c = assign[std::size_t(i)];
        ++sizes[std::size_t(c)];
        for (index_t j = 0; j < D; ++j) sum[std::size_t(c * D + j)] += row(i)[j];
      }
      for (index_t c = 0; c < K; ++c)
        if (sizes[std::size_t(c)])
          for (index_t j = 0; j < D; ++j) centres[std::size_t(c * D + j)] = sum[std::size_t(c * D + j)] / double(sizes[std::size_t(c)]);
    }
    const index_t big = index_t(std::max_element(sizes.begin(), sizes.end()) - sizes.begin());
    prediction.assign(centres.begin() + big * D, centres.begin() + (big + 1) * D);
  }

  bool fitted() const { return D >= 1 && index_t(prediction.size()) == D; }

  /// Metrics of predicting `prediction` for every gene of `labels` (n, D) (one evaluation batch).
  masked_gene_metrics score(const std::vector<double>& labels, index_t n) const {
    check<value_error>(fitted(), "context_free_baseline::score: not fitted (call fit first)");
    check<shape_error>(n >= 0 && index_t(labels.size()) == n * D, "context_free_baseline::score: labels hold ",
                       labels.size(), " values, expected ", n, " genes x D = ", D);
    masked_gene_metrics m;
    m.masked = n;
    std::vector<double> pred(std::size_t(n * D));
    for (index_t i = 0; i < n; ++i) {
      std::copy(prediction.begin(), prediction.end(), pred.begin() + i * D);
      const double* y = &labels[std::size_t(i * D)];
      double dot = 0, np = 0, ny = 0;
      for (index_t j = 0; j < D; ++j) dot += prediction[std::size_t(j)] * y[j], np += prediction[std::size_t(j)] * prediction[std::size_t(j)], ny += y[j] * y[j];
      m.cosine += dot / std::max(std::sqrt(np * ny), 1e-30) / double(n);
      m.mse_most_likely += cpu_detail::sqdist(prediction.data(), y, D) / double(n * D);
      m.strand_correct += (prediction[std::size_t(D - 1)] >= 0) == (y[D - 1] >= 0);
    }
    m.correct = nearest_label_correct(pred, labels, n, D);
    return m;
  }
};

struct train_options {
  index_t batch_size = 16;
  double lr = 1e-4;
  std::int64_t warmup_steps = 0;   // linear warm-up, then constant (the reference's schedule)
  double clip_value = 1.0;         // clip_grad_value_ (reference); <= 0 disables; finite
  double clip_norm = 0.0;          // clip_grad_norm_ (optional); <= 0 disables; finite
  std::uint64_t seed = 0;          // data order, masking and dropout
  masking_options masking;         // probability in (0, 1) for training
  masked_gene_loss_options loss;   // ce_weight 1e-4 and label clip 10 (SPEC.md)
  adamw_options adam;              // lr is taken from `lr` and the schedule
  loss_scale_options scaling;      // dynamic loss scaling; enabled = automatic: on for fp16 backends

  /// Throws value_error naming the first invalid field and its value (the trainer calls it; adam
  /// and scaling are validated by the optimizer and the loss scaler).
  void validate() const {
    const char* who = "train_options";
    check<value_error>(batch_size >= 1, "trainer: batch_size must be >= 1, got ", batch_size);
    check<value_error>(std::isfinite(lr) && lr > 0, who, ": lr = ", lr, " must be finite and > 0");
    check<value_error>(warmup_steps >= 0, who, ": warmup_steps = ", warmup_steps, " must be >= 0");
    check<value_error>(std::isfinite(clip_value), who, ": clip_value = ", clip_value,
                       " must be finite (<= 0 disables clipping by value)");
    check<value_error>(std::isfinite(clip_norm), who, ": clip_norm = ", clip_norm,
                       " must be finite (<= 0 disables clipping by norm)");
    check<value_error>(masking.probability > 0 && masking.probability < 1, who, ": masking.probability = ",
                       masking.probability, " must be in (0, 1) (0 masks no gene, 1 leaves no context)");
    check<value_error>(std::isfinite(masking.mask_value), who, ": masking.mask_value = ", masking.mask_value,
                       " must be finite");
    loss.validate();
  }
};

/// Adds up evaluation metrics over batches.
struct metrics_sum {
  masked_gene_metrics total;
  index_t batches = 0;
  void add(const masked_gene_metrics& m) {
    total.loss += m.loss * double(m.masked);
    total.mse += m.mse * double(m.masked);
    total.ce += m.ce * double(m.masked);
    total.cosine += m.cosine * double(m.masked);
    total.mse_most_likely += m.mse_most_likely * double(m.masked);
    total.masked += m.masked;
    total.correct += m.correct;
    total.strand_correct += m.strand_correct;
    ++batches;
  }
  masked_gene_metrics mean() const {
    masked_gene_metrics m = total;
    const double n = std::max<double>(1.0, double(total.masked));
    m.loss /= n, m.mse /= n, m.ce /= n, m.cosine /= n, m.mse_most_likely /= n;
    return m;
  }
};

/// Evaluation of one batch at a time: batch bi holds windows [bi * batch_size, (bi + 1) *
/// batch_size), masked with rng(seed, bi) - so any split of the batches over processes gives the
/// same masks. Adds the model's and the baseline's metrics to ms / bs.
template <class Model>
class masked_gene_evaluator {
 public:
  using T = typename Model::scalar;
  static constexpr model_config C = Model::config;
  /// value_error for a masking probability outside (0, 1] (0 masks nothing to evaluate) or
  /// invalid loss options; shape_error for features whose labels do not match the model.
  masked_gene_evaluator(Model& model, const gene_features& feat, const masking_options& masking,
                        const masked_gene_loss_options& loss)
      : model_(model), feat_(feat), masking_(masking), loss_(loss) {
    check<value_error>(masking.probability > 0 && masking.probability <= 1,
                       "masked_gene_evaluator: masking.probability = ", masking.probability, " must be in (0, 1]");
    loss.validate();
    check<shape_error>(feat.pca_dim == C.pca_components, "masked_gene_evaluator: labels have ", feat.pca_dim,
                       " PCA components but the model config expects ", C.pca_components);
    feat.check_labels("masked_gene_evaluator");
  }

  static std::size_t num_batches(const std::vector<gene_window>& windows, index_t batch_size) {
    check<value_error>(batch_size >= 1, "masked_gene_evaluator: batch_size must be >= 1, got ", batch_size);
    return (windows.size() + std::size_t(batch_size) - 1) / std::size_t(batch_size);
  }

  void add_batch(const std::vector<gene_window>& windows, std::size_t bi, index_t batch_size,
                 const context_free_baseline& base, std::uint64_t seed, metrics_sum& ms, metrics_sum& bs) {
    const std::size_t lo = bi * std::size_t(batch_size), hi = std::min(windows.size(), lo + std::size_t(batch_size));
    idx_.clear();
    for (std::size_t i = lo; i < hi; ++i) idx_.push_back(i);
    rng mg(seed ^ 0xE7A10000ull, bi);
    batch_.prepare(windows, idx_, feat_, C.max_positions, mg, masking_);
    if (batch_.masked.empty()) return;
    ms.add(pass_.run(model_, run_context{}, batch_, loss_, 1.0, false));  // no dropout, no backward
    // the baseline scores the labels as the loss sees them (clipped to +-label_clip)
    clipped_.assign(batch_.labels.begin(), batch_.labels.end());
    for (auto& v : clipped_) v = std::clamp(v, -loss_.label_clip, loss_.label_clip);
    bs.add(base.score(clipped_, index_t(batch_.masked.size())));
  }

 private:
  Model& model_;
  const gene_features& feat_;
  masking_options masking_;
  masked_gene_loss_options loss_;
  std::vector<std::size_t> idx_;
  std::vector<double> clipped_;  // the batch's clipped labels, for the baseline (reused)
  masked_batch<T> batch_;
  masked_gene_pass<Model> pass_;
};

template <class Model>
class trainer {
 public:
  using T = typename Model::scalar;
  using Backend = typename Model::backend;
  using tensor_t = tensor<T, Backend>;
  static constexpr model_config C = Model::config;

  /// value_error for invalid options (train_options::validate, adamw_options, loss scaling),
  /// shape_error for features that do not match the model or no training windows.
  trainer(Model& model, const gene_features& feat, std::vector<gene_window> train, const train_options& o)
      : model_(model), feat_(feat), train_(std::move(train)), opt_((o.validate(), o)),
        adam_(model.parameters(), [&] {
          adamw_options a = o.adam;
          a.lr = o.lr;
          return a;
        }()),
        scaler_(loss_scaler::for_backend<Backend>(o.scaling)) {
    check<shape_error>(feat.plm_dim == C.plm_dim, "trainer: protein embeddings have ", feat.plm_dim,
                       " dims but the model config expects plm_dim ", C.plm_dim);
    check<shape_error>(feat.pca_dim == C.pca_components, "trainer: labels have ", feat.pca_dim,
                       " PCA components but the model config expects ", C.pca_components);
    feat.check_labels("trainer");
    check<shape_error>(!train_.empty(), "trainer: no training windows");
    schedule_ = lr_schedule::make_constant_with_warmup(o.lr, o.warmup_steps);
    reserve_host_scratch();
  }

  std::int64_t step_count() const { return step_; }
  adamw<T, Backend>& optimizer() { return adam_; }
  /// The dynamic loss scaler (train_options::scaling); disabled unless loss scaling is active.
  loss_scaler& scaler() { return scaler_; }
  const loss_scaler& scaler() const { return scaler_; }
  /// Whether step() scales the loss (train_options::scaling.enabled resolved for the backend).
  bool loss_scaling_active() const { return scaler_.enabled(); }
  const train_options& options() const { return opt_; }
  std::size_t batches_per_epoch() const { return (train_.size() + std::size_t(opt_.batch_size) - 1) / std::size_t(opt_.batch_size); }

  /// Window indices of training step k: epoch k / bpe shuffled with a seeded permutation.
  std::vector<std::size_t> batch_indices(std::int64_t k) const {
    std::vector<std::size_t> perm, idx;
    batch_indices(k, perm, idx);
    return idx;
  }
  /// As above into idx, with perm as the permutation's scratch (both reused across steps).
  void batch_indices(std::int64_t k, std::vector<std::size_t>& perm, std::vector<std::size_t>& idx) const {
    const std::size_t bpe = batches_per_epoch();
    const std::uint64_t epoch = std::uint64_t(k) / bpe, j = std::uint64_t(k) % bpe;
    perm.resize(train_.size());
    std::iota(perm.begin(), perm.end(), std::size_t(0));
    rng g(opt_.seed, 0xE90C0000ull + epoch);
    for (std::size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[std::size_t(g.below(i))]);
    const std::size_t lo = j * std::size_t(opt_.batch_size), hi = std::min(perm.size(), lo + std::size_t(opt_.batch_size));
    idx.assign(perm.begin() + std::ptrdiff_t(lo), perm.begin() + std::ptrdiff_t(hi));
  }

  /// One optimisation step on the next batch; returns its (training) metrics.
  ///
  /// With loss scaling active (loss_scaling_active()) the loss gradients are multiplied by
  /// scaler().scale() before the backward pass and the parameter gradients unscaled after it; a
  /// step whose gradients overflow skips clipping and AdamW (metrics.skipped = true; step_count()
  /// still advances, optimizer().steps() - which drives the learning-rate schedule - does not)
  /// and the scaler backs off. Without loss scaling non-finite gradients throw value_error.
  masked_gene_metrics step() {
    const std::int64_t k = step_;
    // host-side batch assembly into members reused across steps (no allocation once grown)
    batch_indices(k, perm_, idx_);
    rng mg(opt_.seed ^ 0x3A5C0000ull, std::uint64_t(k));
    batch_.prepare(train_, idx_, feat_, C.max_positions, mg, opt_.masking);
    ++step_;
    if (batch_.masked.empty()) return {};
    run_context ctx;
    ctx.training = true;
    ctx.seed = opt_.seed;
    ctx.step = std::uint64_t(k);
    auto& ps = model_.parameters();
    // Loss scaling (scale() is 1 without it): a scale beyond the scalar type's range overflows at
    // once (and converting it would be UB: no backward then), else the loss gradients are scaled
    // in the backward pass and the parameter gradients unscaled and checked after it.
    bool finite = scaler_.scale_fits<T>();
    // the gradients' NaN/Inf count comes back with the loss (pass_ counts them): one wait per step
    masked_gene_metrics m = pass_.run(model_, ctx, batch_, opt_.loss, scaler_.scale(), finite);
    if (finite) finite = scaler_.unscale(ps, pass_.nonfinite_gradients() == 0);
    if (scaler_.enabled()) {
      scaler_.update(!finite);  // overflow: back off and skip this step's update
      m.skipped = !finite;
    } else {
      check<value_error>(finite, "training step ", k, ": non-finite gradients (loss ", m.loss,
                         "); lower the learning rate");
    }
    if (!finite) return m;
    if (opt_.clip_norm > 0) clip_grad_norm(ps, opt_.clip_norm);
    adam_.step(ps, schedule_.at(adam_.steps()), std::max(0.0, opt_.clip_value));  // clip_grad_value_ fused
    return m;
  }

  /// Masked-gene metrics of the model (no dropout) and of the context-free baseline on the same
  /// masked genes of `windows` (deterministic masking from `seed`). batch_size 0: the training
  /// batch size; negative: value_error. The baseline must be fitted on labels of label_dim.
  std::pair<masked_gene_metrics, masked_gene_metrics> evaluate(const std::vector<gene_window>& windows,
                                                               const context_free_baseline& base, std::uint64_t seed,
                                                               index_t batch_size = 0) {
    check<value_error>(batch_size >= 0, "trainer::evaluate: batch_size = ", batch_size,
                       " must be >= 1 (or 0: the training batch size)");
    check<value_error>(base.fitted(), "trainer::evaluate: the context-free baseline is not fitted (call fit first)");
    check<shape_error>(base.D == C.label_dim(), "trainer::evaluate: the baseline was fitted on labels of D = ", base.D,
                       ", expected the model's label_dim ", C.label_dim());
    if (batch_size == 0) batch_size = opt_.batch_size;
    masked_gene_evaluator<Model> ev(model_, feat_, opt_.masking, opt_.loss);
    metrics_sum ms, bs;
    for (std::size_t bi = 0; bi < ev.num_batches(windows, batch_size); ++bi)
      ev.add_batch(windows, bi, batch_size, base, seed, ms, bs);
    return {ms.mean(), bs.mean()};
  }

  /// All genes' labels of the training windows (for the baseline), (n, label_dim), clipped to
  /// +-loss.label_clip as the loss sees them.
  std::vector<double> training_labels(index_t& n) const {
    feat_.check_labels("trainer::training_labels");
    std::vector<double> y;
    n = 0;
    for (const auto& w : train_)
      for (const auto& g : w.genes) {
        check<shape_error>(g.protein >= 0 && g.protein < feat_.size(), "trainer::training_labels: window '", w.id,
                           "' refers to protein row ", g.protein, " of ", feat_.size());
        const double* src = &feat_.pca[std::size_t(g.protein * feat_.pca_dim)];
        for (index_t j = 0; j < feat_.pca_dim; ++j) y.push_back(std::clamp(src[j], -opt_.loss.label_clip, opt_.loss.label_clip));
        y.push_back(0.5 * g.strand);
        ++n;
      }
    return y;
  }

  /// Restores the step counter (after loading a checkpoint).
  void set_step(std::int64_t s) {
    check<value_error>(s >= 0 && s <= max_step_count, "trainer::set_step: step ", s, ", expected 0..", max_step_count);
    step_ = s;
  }

 private:
  Model& model_;
  const gene_features& feat_;
  std::vector<gene_window> train_;
  train_options opt_;
  adamw<T, Backend> adam_;
  loss_scaler scaler_;
  lr_schedule schedule_;
  std::int64_t step_ = 0;
  /// Sizes step()'s host vectors for the largest possible batch (batch_size windows of the longest
  /// training window, every gene masked), so that no step allocates on the host however many
  /// genes its masking draws; the model's own workspaces grow to the longest batch once.
  void reserve_host_scratch() {
    index_t longest = 0;
    for (const auto& w : train_) longest = std::max(longest, index_t(w.genes.size()));
    const auto genes = std::size_t(opt_.batch_size) * std::size_t(std::min<index_t>(longest, C.max_positions));
    perm_.reserve(train_.size());
    idx_.reserve(std::size_t(opt_.batch_size));
    batch_.reserve(std::size_t(opt_.batch_size), genes, C.input_dim(), C.label_dim());
    pass_.reserve(genes);
    pass_.count_nonfinite_gradients(true);  // step()'s gradient check, in the pass's one copy
  }

  // step()'s host side: window indices (and the epoch permutation), the masked batch, and the
  // forward/loss/backward pass with its tensors and scratch
  std::vector<std::size_t> perm_, idx_;
  masked_batch<T> batch_;
  masked_gene_pass<Model> pass_;
};

}  // namespace genlm
