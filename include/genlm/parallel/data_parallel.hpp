// genlm/parallel/data_parallel.hpp - data-parallel masked gene modelling over a communicator
// policy (comm::single, comm::mpi, comm::nccl).
//
// Every rank holds a full replica of the model and of the AdamW state. Step k:
//   1. The global batch is the trainer's batch of step k (parallel::epoch_sampler, identical to
//      genlm::trainer::batch_indices); rank r takes the contiguous share shard_range(B, r, P).
//   2. Masking: genlm::trainer draws one uniform number per real gene of the batch, in window
//      order, from rng(seed ^ 0x3A5C0000, k). Every rank knows the gene count of every window of
//      the batch, so it skips the draws of the windows before its share and draws its own windows'
//      masks from the same stream: the masks are exactly the single-process trainer's, whatever the
//      number of ranks.
//   3. The masked-gene count is all-reduced first. masked_gene_loss normalises by the number of
//      masked genes of the batch it sees, so each rank scales its loss gradients by
//      local_masked / global_masked: the summed gradient is the single-process gradient.
//   4. Forward/backward on the local share, then the flat gradient buffer is all-reduced in
//      buckets (dp_options::bucket_bytes; all buckets issued non-blocking, last first; the
//      non-finite check and clip-by-value run on each bucket as it completes). GLM::backward is one
//      call without per-layer hooks, so communication does not overlap with backward itself yet.
//   5. Non-finite check, clip by norm / value, AdamW with the trainer's schedule: identical on
//      every rank, so the replicas stay identical (checked every drift_check_every steps).
//      With loss scaling (train_options::scaling; automatic for the fp16 precision policy) the loss
//      gradients are multiplied by the scaler's scale in step 3, and after the all-reduce every
//      rank unscales and checks the same summed gradients, so all ranks take the same decision
//      (skip the step and back off, or update) and their scalers stay identical, as in
//      genlm::trainer.
// With comm::single this is genlm::trainer step for step, bit for bit.
//
// Dropout: layer dropout masks are keyed by (seed, site, step, element index) and the element
// index depends on where a window sits in the local batch, so with dropout > 0 the default mode
// depends on the number of ranks (each rank r > 0 uses seed ^ splitmix64(rank) so replicas do
// not share masks). dp_options::rank_invariant_dropout = true instead runs each window as its own
// micro-batch with dropout seed splitmix64(seed ^ splitmix64(global position in the batch)) and
// accumulates the gradients: results then do not depend on the number of ranks, with or without
// dropout (but differ from genlm::trainer's, and each window is a separate forward pass).
#pragma once
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include <genlm/io/safetensors.hpp>
#include <genlm/model/glm.hpp>
#include <genlm/parallel/comm.hpp>
#include <genlm/parallel/data.hpp>
#include <genlm/train/batch.hpp>
#include <genlm/train/masked_gene_loss.hpp>
#include <genlm/train/masking.hpp>
#include <genlm/train/optimizer.hpp>
#include <genlm/train/step.hpp>
#include <genlm/train/trainer.hpp>

namespace genlm::parallel {

struct dp_options {
  std::size_t bucket_bytes = std::size_t(4) << 20;  ///< gradient all-reduce bucket size (0: one bucket)
  std::int64_t drift_check_every = 100;             ///< steps between replica checks (0: never)
  double drift_tolerance = 1e-6;  ///< max |p - p_rank0| / max |p_rank0| that is repaired (resync from rank 0)
  bool rank_invariant_dropout = false;  ///< per-window micro-batches, dropout keyed by batch position
  bool broadcast_initial_parameters = true;  ///< copy rank 0's parameters to all ranks at construction
};

/// What one step did on this rank (for logs and load-balance checks).
struct dp_step_stats {
  std::int64_t step = -1;
  std::size_t global_windows = 0, local_windows = 0;
  std::size_t global_masked = 0, local_masked = 0;
  double compute_seconds = 0, comm_seconds = 0;
};

/// Result of a replica comparison (check_drift).
struct drift_report {
  bool identical = true;       ///< every rank's parameters and moments hash like rank 0's
  double max_relative = 0.0;   ///< max |p - p_rank0| / max |p_rank0| over ranks (0 when identical)
  bool resynchronised = false;
};

template <class Model, class Comm>
class data_parallel_trainer {
 public:
  using T = typename Model::scalar;
  using Backend = typename Model::backend;
  using tensor_t = tensor<T, Backend>;
  static constexpr model_config C = Model::config;

  /// Collective. Checks that every rank runs the same settings (agreement_error on every rank
  /// otherwise), then broadcasts rank 0's parameters.
  data_parallel_trainer(Model& model, Comm& comm, const gene_features& feat, std::shared_ptr<const window_source> train,
                        const train_options& o, const dp_options& d = {})
      : model_(model), comm_(comm), feat_(feat), src_(std::move(train)), opt_(o), dp_(d),
        adam_(model.parameters(), [&] {
          adamw_options a = o.adam;
          a.lr = o.lr;
          return a;
        }()),
        scaler_(loss_scaler::for_backend<Backend>(o.scaling)) {
    check<value_error>(src_ != nullptr, "data_parallel_trainer: no window source");
    // Rank-local argument errors would leave peers waiting: turn them into collective errors.
    collective_try(comm_, "data_parallel_trainer setup", [&] {
      o.validate();  // every option, naming the field and the value
      check<shape_error>(feat.plm_dim == C.plm_dim, "trainer: protein embeddings have ", feat.plm_dim,
                         " dims but the model config expects plm_dim ", C.plm_dim);
      check<shape_error>(feat.pca_dim == C.pca_components, "trainer: labels have ", feat.pca_dim,
                         " PCA components but the model config expects ", C.pca_components);
      check<shape_error>(src_->size() > 0, "trainer: no training windows");
    });
    agree(comm_, settings(), "configuration");
    sampler_ = epoch_sampler(src_->size(), o.batch_size, o.seed);
    schedule_ = lr_schedule::make_constant_with_warmup(o.lr, o.warmup_steps);
    reserve_host_scratch();
    if (dp_.broadcast_initial_parameters && comm_.size() > 1) {
      auto& v = model_.parameters().values();
      broadcast_tensor(v, "initial parameter broadcast");
    }
  }

  /// In-memory windows (every rank passes the same vector).
  data_parallel_trainer(Model& model, Comm& comm, const gene_features& feat, std::vector<gene_window> train,
                        const train_options& o, const dp_options& d = {})
      : data_parallel_trainer(model, comm, feat, std::make_shared<memory_windows>(std::move(train)), o, d) {}

  Comm& comm() { return comm_; }
  Model& model() { return model_; }
  std::int64_t step_count() const { return step_; }
  /// Restores the step counter (after loading a checkpoint; the same value on every rank).
  void set_step(std::int64_t s) {
    check<value_error>(s >= 0 && s <= max_step_count, "data_parallel_trainer::set_step: step ", s, ", expected 0..",
                       max_step_count);
    step_ = s;
  }
  adamw<T, Backend>& optimizer() { return adam_; }
  const adamw<T, Backend>& optimizer() const { return adam_; }
  /// The dynamic loss scaler (train_options::scaling); disabled unless loss scaling is active.
  loss_scaler& scaler() { return scaler_; }
  const loss_scaler& scaler() const { return scaler_; }
  bool loss_scaling_active() const { return scaler_.enabled(); }
  const train_options& options() const { return opt_; }
  const dp_options& parallel_options() const { return dp_; }
  const window_source& windows() const { return *src_; }
  std::size_t batches_per_epoch() const { return sampler_.batches_per_epoch(); }
  const dp_step_stats& last_step() const { return stats_; }

  /// Global batch of step k (genlm::trainer::batch_indices).
  std::vector<std::size_t> batch_indices(std::int64_t k) { return sampler_.batch(k); }
  /// This rank's share [first, second) of the batch of step k (positions in batch_indices(k)).
  std::pair<std::size_t, std::size_t> local_share(std::int64_t k) {
    return shard_range(sampler_.batch(k).size(), comm_.rank(), comm_.size());
  }

  /// The settings every rank must share (compared by agree() at construction).
  std::vector<setting> settings() const {
    const auto& mo = model_.options();
    const auto& a = adam_.options();
    std::vector<setting> s = {
        {"model config", C.str()},
        {"scalar", std::is_same_v<T, float> ? "float32" : "float64"},
        {"backend", Backend::name},
        {"parameters", std::to_string(model_.parameters().flat_size())},
        {"model options", genlm::detail::concat("hidden_dropout=", mo.hidden_dropout, " attention_dropout=",
                                                mo.attention_dropout, " layer_norm_eps=", mo.layer_norm_eps)},
        {"train options",
         genlm::detail::concat("batch=", opt_.batch_size, " lr=", opt_.lr, " warmup=", opt_.warmup_steps,
                               " clip_value=", opt_.clip_value, " clip_norm=", opt_.clip_norm, " seed=", opt_.seed,
                               " mask_probability=", opt_.masking.probability, " mask_value=", opt_.masking.mask_value,
                               " ce_weight=", opt_.loss.ce_weight, " label_clip=", opt_.loss.label_clip)},
        {"adamw", genlm::detail::concat("betas=", a.beta1, "/", a.beta2, " eps=", a.eps, " weight_decay=",
                                        a.weight_decay, " torch_style=", a.torch_style)},
        {"loss scaling", scaler_.enabled() ? genlm::detail::concat("on, init_scale=", opt_.scaling.init_scale,
                                                                   " growth=", opt_.scaling.growth_factor, " backoff=",
                                                                   opt_.scaling.backoff_factor, " interval=",
                                                                   opt_.scaling.growth_interval)
                                           : std::string("off")},
        {"data-parallel options",
         genlm::detail::concat("bucket_bytes=", dp_.bucket_bytes, " drift_check_every=", dp_.drift_check_every,
                               " drift_tolerance=", dp_.drift_tolerance,
                               " rank_invariant_dropout=", dp_.rank_invariant_dropout)},
        {"training windows", genlm::detail::concat(src_->describe(), ", fingerprint ", std::hex, src_->fingerprint())},
        {"gene features", genlm::detail::concat(feat_.size(), " proteins x ", feat_.plm_dim, " inputs, ", feat_.pca_dim,
                                                " label components, hash ", std::hex, features_hash())},
        {"communicator", genlm::detail::concat(comm_.name(), " with ", comm_.size(), " ranks")},
    };
    return s;
  }

  /// One data-parallel optimisation step (collective). Returns the metrics of the whole global
  /// batch (loss, mse, ce, cosine, mse_most_likely averaged over all masked genes, masked and
  /// correct summed; `correct` is counted within each rank's share, see docs/DISTRIBUTED.md).
  masked_gene_metrics step() {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    double comm_s = 0;
    auto timed = [&](auto&& f) {
      const auto a = clock::now();
      f();
      comm_s += std::chrono::duration<double>(clock::now() - a).count();
    };
    auto finish = [&](const masked_gene_metrics& r) {  // records this step's times; returns r
      stats_.compute_seconds = std::chrono::duration<double>(clock::now() - t0).count() - comm_s;
      stats_.comm_seconds = comm_s;
      return r;
    };
    const std::int64_t k = step_;
    // Host-side batch assembly into members reused across steps: with an in-memory window source
    // (and comm::single) a step allocates nothing once they have grown (reserve_host_scratch).
    sampler_.batch(k, idx_);
    const std::vector<std::size_t>& idx = idx_;
    const auto [lo, hi] = shard_range(idx.size(), comm_.rank(), comm_.size());
    stats_ = {};
    stats_.step = k;
    stats_.global_windows = idx.size();
    stats_.local_windows = hi - lo;

    // masking stream: skip the draws of the windows before this rank's share
    rng mg(opt_.seed ^ 0x3A5C0000ull, std::uint64_t(k));
    std::uint64_t skip = 0;
    for (std::size_t i = 0; i < lo; ++i) skip += src_->genes(idx[i]);
    mg.set_state(mg.key(), mg.counter() + skip);

    // this rank's windows: (*wins)[local_[i]]; the source's own vector when it holds the windows
    // in memory (no copy), else the fetched share
    local_.assign(idx.begin() + std::ptrdiff_t(lo), idx.begin() + std::ptrdiff_t(hi));
    const std::vector<gene_window>* wins = src_->in_memory();
    if (!wins && !local_.empty()) {
      fetched_ = src_->fetch(local_);
      std::iota(local_.begin(), local_.end(), std::size_t(0));
      wins = &fetched_;
    }

    // masks and labels of every local window (one batch, or one micro-batch per window)
    n_mbs_ = 0;
    if (!local_.empty()) {
      if (dp_.rank_invariant_dropout) {
        for (std::size_t i = 0; i < local_.size(); ++i) {
          one_.assign(1, local_[i]);
          prepare(next_micro_batch(), *wins, one_, mg, lo + i);
        }
      } else {
        prepare(next_micro_batch(), *wins, local_, mg, 0);
      }
    }
    const std::span<micro_batch> mbs(mbs_.data(), n_mbs_);
    double n_local = 0;
    for (const auto& mb : mbs) n_local += double(mb.masked.size());
    double n_global = n_local;
    timed([&] { comm_.allreduce_sum_host(&n_global, 1, tag("masked gene count", k)); });
    stats_.local_masked = std::size_t(n_local);
    stats_.global_masked = std::size_t(n_global);
    ++step_;
    if (n_global == 0) return finish({});

    // forward / backward of the local share; gradients scaled to the global normalisation (and by
    // the loss scale; a scale beyond the scalar type's range is an overflow at once, as in trainer)
    auto& ps = model_.parameters();
    const double loss_scale = scaler_.scale();
    const bool scale_fits = scaler_.scale_fits<T>();
    masked_gene_metrics m;
    double sums[6] = {0, 0, 0, 0, 0, 0};  // loss, mse, ce, cosine, mse_most_likely (x masked), correct
    const bool accumulate = mbs.size() > 1;
    bool have_grads = false;
    for (auto& mb : mbs) {
      if (mb.masked.empty()) continue;
      m = forward_backward(mb, k, double(mb.masked.size()) / n_global * loss_scale, scale_fits);
      const double n = double(m.masked);
      sums[0] += m.loss * n, sums[1] += m.mse * n, sums[2] += m.ce * n, sums[3] += m.cosine * n;
      sums[4] += m.mse_most_likely * n, sums[5] += double(m.correct);
      if (accumulate && scale_fits) {
        if (!have_grads) acc_.resize_zero(ps.grads().shape());
        Backend::axpy(ps.grads().numel(), T(1), ps.grads().data(), acc_.data());
      }
      have_grads = true;
    }
    if (!have_grads)
      ps.zero_grads();
    else if (accumulate && scale_fits)
      Backend::copy(ps.grads().data(), acc_.data(), acc_.numel());

    // metrics of the global batch
    const bool single_pass = comm_.size() == 1 && mbs.size() == 1;
    if (!single_pass) {
      timed([&] { comm_.allreduce_sum_host(sums, 6, tag("training metrics", k)); });
      m.masked = index_t(n_global);
      m.loss = sums[0] / n_global, m.mse = sums[1] / n_global, m.ce = sums[2] / n_global;
      m.cosine = sums[3] / n_global, m.mse_most_likely = sums[4] / n_global;
      m.correct = index_t(sums[5]);
    }

    if (!scale_fits) {  // the same decision on every rank (identical scalers): no gradients to reduce
      scaler_.update(true);
      m.skipped = true;
      return finish(m);
    }

    // bucketed all-reduce of the flat gradients with the non-finite check per bucket (clipping by
    // value happens inside AdamW's pass, after the unscaling and clip_grad_norm, as in the trainer)
    auto& g = ps.grads();
    index_t nonfinite = 0;
    const std::size_t bucket_elems = dp_.bucket_bytes ? std::max<std::size_t>(1, dp_.bucket_bytes / sizeof(T)) : 0;
    // device backends: the gradients are written on the backend's stream, the communicator reads
    // them on its own, so wait for the backward first (no-op on the CPU)
    Backend::synchronize();
    timed([&] {
      comm_.allreduce_sum_buckets(g.data(), std::size_t(g.numel()), Backend::host_memory, bucket_elems,
                                  [&](T* p, std::size_t n) { nonfinite += Backend::count_nonfinite(p, index_t(n)); },
                                  tag("allreduce of gradients", k));
    });
    if (scaler_.enabled()) {
      // every rank holds the same summed gradients: the same finite/overflow decision everywhere
      const bool finite = scaler_.unscale(ps, nonfinite == 0);  // counted above, no second count
      scaler_.update(!finite);
      m.skipped = !finite;
      if (!finite) return finish(m);
    } else if (nonfinite) {
      throw collective_error(genlm::detail::concat("training step ", k, ": non-finite gradients (loss ", m.loss,
                                                   "); lower the learning rate"));
    }
    if (opt_.clip_norm > 0) clip_grad_norm(ps, opt_.clip_norm);
    adam_.step(ps, schedule_.at(adam_.steps()), std::max(0.0, opt_.clip_value));  // clip_grad_value_ fused

    finish(m);
    if (dp_.drift_check_every > 0 && step_ % dp_.drift_check_every == 0 && comm_.size() > 1) check_drift();
    return m;
  }

  /// Hash of this replica's parameters and AdamW moments.
  std::uint64_t state_hash() const {
    std::uint64_t h = hash_tensor(model_.parameters().values());
    h = hash_combine(h, hash_tensor(adam_.exp_avg()));
    h = hash_combine(h, hash_tensor(adam_.exp_avg_sq()));
    return hash_combine(h, std::uint64_t(adam_.steps()) * 0x100000001B3ull + std::uint64_t(step_));
  }

  /// Collective. Compares every replica with rank 0 (hash of parameters, moments and step
  /// counters). On a mismatch measures max |p - p_rank0| / max |p_rank0|: up to drift_tolerance
  /// the replicas are resynchronised from rank 0 (parameters and moments), beyond it every rank
  /// throws drift_error naming the worst rank and parameter.
  drift_report check_drift() {
    drift_report rep;
    const std::string tag = genlm::detail::concat(" (step ", step_, ")");
    const std::uint64_t h = state_hash();
    const auto all = comm_.allgather(std::string(reinterpret_cast<const char*>(&h), sizeof h), "replica hash check" + tag);
    for (const auto& s : all) rep.identical = rep.identical && s == all[0];
    if (rep.identical) return rep;
    // Compare parameters with rank 0's.
    auto& v = model_.parameters().values();
    std::vector<T> mine = v.to_host(), ref = mine;
    comm_.broadcast_host(ref.data(), ref.size(), 0, "drift check: rank 0 parameters" + tag);
    double scale = 0, diff = 0;
    std::size_t where = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      scale = std::max(scale, std::abs(double(ref[i])));
      const double d = std::abs(double(mine[i]) - double(ref[i]));
      if (d > diff || std::isnan(d)) diff = d, where = i;
    }
    const double rel = diff / std::max(scale, 1e-30);
    const std::string report = genlm::detail::concat(rel, '\x1f', diff, '\x1f', param_name(where), '\x1f',
                                                     double(mine[where]), '\x1f', double(ref[where]), '\x1f', step_,
                                                     '\x1f', adam_.steps());
    const auto reports = comm_.allgather(report, "drift check: reports" + tag);
    int worst = -1;
    double worst_rel = -1;
    std::vector<std::vector<std::string>> fields;
    for (std::size_t r = 0; r < reports.size(); ++r) {
      std::vector<std::string> f;
      std::size_t p = 0;
      for (std::size_t q; (q = reports[r].find('\x1f', p)) != std::string::npos; p = q + 1)
        f.push_back(reports[r].substr(p, q - p));
      f.push_back(reports[r].substr(p));
      double rr = std::strtod(f[0].c_str(), nullptr);
      if (std::isnan(rr)) rr = INFINITY;
      if (rr > worst_rel) worst_rel = rr, worst = int(r);
      fields.push_back(std::move(f));
    }
    if (worst_rel <= 0)  // parameters equal: the moments or the step counters differ
      for (std::size_t r = 1; r < all.size(); ++r)
        if (all[r] != all[0]) {
          worst = int(r);
          break;
        }
    rep.max_relative = worst_rel;
    const bool counters_agree = std::all_of(fields.begin(), fields.end(), [&](const auto& f) {
      return f.size() == 7 && f[5] == fields[0][5] && f[6] == fields[0][6];
    });
    if (counters_agree && worst_rel <= dp_.drift_tolerance) {
      resync_from_rank0(tag);
      rep.resynchronised = true;
      return rep;
    }
    const auto& f = fields[std::size_t(worst)];
    throw drift_error(genlm::detail::concat(
        "replicas diverged at step ", step_, ": rank ", worst, " differs from rank 0 by ", f[1], " (relative ", f[0],
        ", tolerance ", dp_.drift_tolerance, ") at parameter '", f[2], "' (", f[3], " vs ", f[4], ")",
        counters_agree ? "" : genlm::detail::concat("; step counters differ: rank ", worst, " at step ", f[5],
                                                     "/optimizer step ", f[6], ", rank 0 at ", fields[0][5], "/",
                                                     fields[0][6]),
        ". Ranks must run identical code on identical data; check that every rank loaded the same checkpoint"));
  }

  /// Collective evaluation, identical to genlm::trainer::evaluate (same batches, same masks):
  /// evaluation batch b is computed by rank b % P and the metric sums are all-reduced.
  std::pair<masked_gene_metrics, masked_gene_metrics> evaluate(const std::vector<gene_window>& windows,
                                                               const context_free_baseline& base, std::uint64_t seed,
                                                               index_t batch_size = 0) {
    check<value_error>(batch_size >= 0, "data_parallel_trainer::evaluate: batch_size = ", batch_size,
                       " must be >= 1 (or 0: the training batch size)");
    if (batch_size == 0) batch_size = opt_.batch_size;
    masked_gene_evaluator<Model> ev(model_, feat_, opt_.masking, opt_.loss);
    metrics_sum ms, bs;
    for (std::size_t bi = 0; bi < ev.num_batches(windows, batch_size); ++bi)
      if (int(bi % std::size_t(comm_.size())) == comm_.rank()) ev.add_batch(windows, bi, batch_size, base, seed, ms, bs);
    if (comm_.size() > 1) {
      double s[16];
      pack(ms, s), pack(bs, s + 8);
      comm_.allreduce_sum_host(s, 16, "evaluation metrics");
      unpack(s, ms), unpack(s + 8, bs);
    }
    return {ms.mean(), bs.mean()};
  }

 private:
  struct micro_batch : masked_batch<T> {
    std::size_t position = 0;  // global position of the first window in the batch
  };

  /// Fills mb (its vectors reused) with the inputs, masks and labels of windows[which[0..]].
  void prepare(micro_batch& mb, const std::vector<gene_window>& windows, const std::vector<std::size_t>& which,
               rng& mg, std::size_t position) {
    mb.prepare(windows, which, feat_, C.max_positions, mg, opt_.masking);
    mb.position = position;
  }
  /// The next unused micro-batch of this step (kept, with its vectors, for the next steps).
  micro_batch& next_micro_batch() {
    if (n_mbs_ == mbs_.size()) mbs_.emplace_back();
    return mbs_[n_mbs_++];
  }
  /// "<what> (step k)" for the communicator's error messages, written into a reused string.
  std::string_view tag(const char* what, std::int64_t k) {
    char digits[24];
    const auto r = std::to_chars(digits, digits + sizeof digits, k);
    tag_.assign(what);
    tag_.append(" (step ").append(digits, r.ptr).push_back(')');
    return tag_;
  }
  /// Sizes step()'s host vectors for the largest possible share (ceil(batch / ranks) windows of
  /// the longest window, every gene masked), as genlm::trainer does, so that the random number
  /// of masked genes per step cannot make one grow later.
  void reserve_host_scratch() {
    std::size_t longest = 0;
    for (std::size_t i = 0; i < src_->size(); ++i) longest = std::max(longest, src_->genes(i));
    longest = std::min(longest, std::size_t(C.max_positions));
    const auto P = std::size_t(comm_.size()), batch = std::size_t(opt_.batch_size);
    const std::size_t share = (batch + P - 1) / P;
    const std::size_t per_mb = dp_.rank_invariant_dropout ? 1 : share;  // windows per micro-batch
    const std::size_t genes = per_mb * longest;
    idx_.reserve(batch);
    local_.reserve(share);
    one_.reserve(1);
    mbs_.resize(dp_.rank_invariant_dropout ? share : 1);
    for (auto& mb : mbs_) mb.reserve(per_mb, genes, C.input_dim(), C.label_dim());
    pass_.reserve(genes);
    tag_.reserve(64);
  }

  /// Forward + loss + backward of one (micro-)batch; the loss gradients are multiplied by
  /// `scale` (= its masked genes / the global batch's masked genes x the loss scale). Gradients
  /// are assigned. backward = false: forward and loss only (the metrics of a skipped step).
  masked_gene_metrics forward_backward(micro_batch& mb, std::int64_t k, double scale, bool backward = true) {
    run_context ctx;
    ctx.training = true;
    ctx.step = std::uint64_t(k);
    if (dp_.rank_invariant_dropout)
      ctx.seed = splitmix64(opt_.seed ^ splitmix64(0xD0D0000000000000ull + mb.position));
    else
      ctx.seed = comm_.rank() == 0 ? opt_.seed : opt_.seed ^ splitmix64(0xA11C0000ull + std::uint64_t(comm_.rank()));
    return pass_.run(model_, ctx, mb, opt_.loss, scale, backward);
  }

  template <class U>
  static std::uint64_t hash_tensor(const tensor<U, Backend>& t) {
    if constexpr (Backend::host_memory) return hash_bytes(t.data(), std::size_t(t.numel()) * sizeof(U));
    else {
      const auto h = t.to_host();
      return hash_bytes(h.data(), h.size() * sizeof(U));
    }
  }
  std::uint64_t features_hash() const {
    std::uint64_t h = hash_bytes(feat_.normalized.data(), feat_.normalized.size() * sizeof(float));
    return hash_combine(h, hash_bytes(feat_.pca.data(), feat_.pca.size() * sizeof(double)));
  }
  std::string param_name(std::size_t flat) const {
    for (const auto& e : model_.parameters().entries())
      if (index_t(flat) >= e.offset && index_t(flat) < e.offset + e.shape.numel())
        return genlm::detail::concat(e.name, "[", index_t(flat) - e.offset, "]");
    return genlm::detail::concat("flat element ", flat);
  }
  void broadcast_tensor(tensor_t& t, const std::string& what) {
    if constexpr (Backend::host_memory) {
      comm_.broadcast_host(t.data(), std::size_t(t.numel()), 0, what);
    } else {
      std::vector<T> h = t.to_host();
      comm_.broadcast_host(h.data(), h.size(), 0, what);
      t.from_host(t.shape(), h);
    }
  }
  /// Copies rank 0's parameters and AdamW state to every rank.
  void resync_from_rank0(const std::string& tag) {
    broadcast_tensor(model_.parameters().values(), "drift repair: parameters" + tag);
    std::string bytes;
    if (comm_.rank() == 0) {
      std::map<std::string, io::array> st;
      adam_.save_to(st, "optimizer.");
      const auto img = io::serialize_safetensors(st);
      bytes.assign(reinterpret_cast<const char*>(img.data()), img.size());
    }
    comm_.broadcast_bytes(bytes, 0, "drift repair: optimizer state" + tag);
    if (comm_.rank() != 0)
      adam_.load_from(io::read_safetensors_from_memory(
                          std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), "rank 0 optimizer state"),
                      "optimizer.");
  }
  static void pack(const metrics_sum& s, double* o) {
    o[0] = s.total.loss, o[1] = s.total.mse, o[2] = s.total.ce, o[3] = s.total.cosine;
    o[4] = s.total.mse_most_likely, o[5] = double(s.total.masked), o[6] = double(s.total.correct), o[7] = double(s.batches);
  }
  static void unpack(const double* o, metrics_sum& s) {
    s.total.loss = o[0], s.total.mse = o[1], s.total.ce = o[2], s.total.cosine = o[3];
    s.total.mse_most_likely = o[4], s.total.masked = index_t(o[5]), s.total.correct = index_t(o[6]);
    s.batches = index_t(o[7]);
  }

  Model& model_;
  Comm& comm_;
  const gene_features& feat_;
  std::shared_ptr<const window_source> src_;
  train_options opt_;
  dp_options dp_;
  adamw<T, Backend> adam_;
  loss_scaler scaler_;
  lr_schedule schedule_;
  epoch_sampler sampler_;
  std::int64_t step_ = 0;
  dp_step_stats stats_;
  tensor_t acc_;                  // gradients summed over micro-batches (rank-invariant dropout)
  masked_gene_pass<Model> pass_;  // forward/loss/backward with its tensors and host scratch (reused)
  // step()'s host batch: the global batch's window indices, this rank's share (indices into the
  // source's windows, or into fetched_), its micro-batches (the first n_mbs_ used), the tag buffer
  std::vector<std::size_t> idx_, local_, one_;
  std::vector<gene_window> fetched_;
  std::vector<micro_batch> mbs_;
  std::size_t n_mbs_ = 0;
  std::string tag_;
};

}  // namespace genlm::parallel
