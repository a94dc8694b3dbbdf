// genlm/parallel/driver.hpp - the training loop shared by the data-parallel examples: resume,
// steps with rank-0 logging, periodic and final checkpoints written by rank 0.
//
//   Model model(mo);
//   feature_pipeline pipe;
//   auto resume = parallel::begin_resume(comm, "ckpt.safetensors", model, pipe);  // or fit pipe
//   gene_features feat = pipe.features(emb);
//   parallel::data_parallel_trainer<Model, Comm> tr(model, comm, feat, windows, to, dp);
//   parallel::finish_resume(tr, resume);
//   parallel::run_training(tr, pipe, run);
//
// or everything at once (what examples/train_mpi.cpp and examples/train_nccl.cpp do):
//   parallel::job_options job;  ... fill in
//   parallel::train_data_parallel<GLM<configs::small, cpu>>(comm, job);
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include <genlm/data/simulate.hpp>
#include <genlm/parallel/checkpoint.hpp>
#include <genlm/parallel/data.hpp>
#include <genlm/parallel/data_parallel.hpp>

namespace genlm::parallel {

struct run_options {
  std::int64_t steps = 100;       ///< train until the step counter reaches this
  std::int64_t log_every = 10;    ///< rank-0 progress line interval (0: none)
  std::int64_t save_every = 0;    ///< checkpoint interval in steps (0: only at the end)
  std::filesystem::path checkpoint;  ///< written by rank 0 (atomically); empty: no checkpoints
  std::map<std::string, std::string> metadata;  ///< extra checkpoint metadata
  std::function<void(std::int64_t)> after_step;  ///< called on every rank after each step (tests)
};

struct run_summary {
  std::int64_t first_step = 0, last_step = 0;
  masked_gene_metrics last;
  double seconds = 0, comm_seconds = 0;
  std::uint64_t state_hash = 0;  ///< of the final parameters + moments (identical on every rank)
};

/// A checkpoint being resumed: its bytes (read once by rank 0, broadcast) and what they hold.
struct resume_state {
  std::string image, name;
  checkpoint_info info;
};

/// Collective: loads the model and the feature pipeline of `path` on every rank (before the
/// trainer exists: the features come from the checkpoint's normaliser and PCA).
template <class Model, class Comm>
resume_state begin_resume(Comm& comm, const std::filesystem::path& path, Model& model, feature_pipeline& pipe) {
  resume_state r;
  r.name = path.string();
  r.image = read_checkpoint_image(comm, path);
  collective_try(comm, genlm::detail::concat("loading checkpoint '", r.name, "'"),
                 [&] { r.info = load_checkpoint_image(r.image, r.name, model, pipe); });
  return r;
}

/// Collective: loads the optimizer state, sets the step counter, and verifies that every replica
/// holds the same state.
template <class Trainer>
void finish_resume(Trainer& tr, const resume_state& r) {
  collective_try(tr.comm(), genlm::detail::concat("loading the optimizer state of '", r.name, "'"),
                 [&] { load_optimizer_image(r.image, r.name, tr.optimizer(), &tr.scaler()); });
  tr.set_step(r.info.step);
  if (tr.comm().size() > 1) tr.check_drift();
  const auto ws = r.info.metadata.find("genlm.world_size");
  log0(tr.comm(), "resumed '", r.name, "' at step ", r.info.step,
       ws != r.info.metadata.end() ? " (written by " + ws->second + " rank(s))" : std::string(), " with ",
       tr.comm().size(), " rank(s)");
}

/// Runs tr until step o.steps; collective.
template <class Trainer>
run_summary run_training(Trainer& tr, const feature_pipeline& pipe, const run_options& o) {
  using clock = std::chrono::steady_clock;
  auto& comm = tr.comm();
  run_summary s;
  s.first_step = tr.step_count();
  const auto t0 = clock::now();
  auto save = [&] {
    if (o.checkpoint.empty()) return;
    save_checkpoint(comm, o.checkpoint, tr.model(), pipe, &tr.optimizer(), tr.step_count(), tr.options().seed,
                    o.metadata, &tr.scaler());
    log0(comm, "step ", tr.step_count(), ": wrote checkpoint ", o.checkpoint.string());
  };
  double loss_avg = 0;
  std::int64_t in_avg = 0, skipped_in = 0;
  auto last_log = clock::now();
  std::int64_t last_log_step = tr.step_count();
  while (tr.step_count() < o.steps) {
    s.last = tr.step();
    s.comm_seconds += tr.last_step().comm_seconds;
    loss_avg += s.last.loss, ++in_avg;
    skipped_in += s.last.skipped ? 1 : 0;
    const std::int64_t k = tr.step_count();
    if (o.log_every > 0 && (k % o.log_every == 0 || k == o.steps)) {
      const double dt = std::chrono::duration<double>(clock::now() - last_log).count();
      char line[320];
      int len = std::snprintf(line, sizeof line, "step %lld/%lld  loss %.5f  masked %zu  %.3f s/step", (long long)k,
                              (long long)o.steps, loss_avg / double(std::max<std::int64_t>(1, in_avg)),
                              tr.last_step().global_masked, dt / double(std::max<std::int64_t>(1, k - last_log_step)));
      if (tr.loss_scaling_active() && len > 0 && std::size_t(len) < sizeof line)
        std::snprintf(line + len, sizeof line - std::size_t(len), "  loss scale %g (%lld step(s) skipped)",
                      tr.scaler().scale(), (long long)skipped_in);
      log0(comm, line);
      loss_avg = 0, in_avg = 0, skipped_in = 0, last_log = clock::now(), last_log_step = k;
    }
    if (o.after_step) o.after_step(k);
    if (o.save_every > 0 && k % o.save_every == 0 && k < o.steps) save();
  }
  save();
  s.last_step = tr.step_count();
  s.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  s.state_hash = tr.state_hash();
  return s;
}

/// Where the training windows come from: contig tables + protein embeddings, or simulated
/// contigs (data/simulate.hpp) when `contigs` is empty.
struct data_options {
  std::vector<std::filesystem::path> contigs;  ///< contig tables (read on demand, each rank its part)
  std::filesystem::path embeddings;            ///< .npy (with ids) or .safetensors
  std::filesystem::path ids;                   ///< protein ids of the .npy rows
  index_t simulate_contigs = 200;              ///< synthetic contigs when no contig table is given
  std::uint64_t simulate_seed = 7;
  std::size_t window = 30, overlap = 0;
};

/// Everything a data-parallel training job needs.
struct job_options {
  data_options data;
  model_options model;
  train_options train;
  dp_options parallel;
  run_options run;
  std::filesystem::path resume;  ///< checkpoint to continue from (any number of ranks wrote it)
  /// With resume: train.seed was chosen by the caller (e.g. --seed given). Then it must be the
  /// checkpoint's seed; otherwise the checkpoint's seed is used, so that the run continues the
  /// checkpoint's data order, masking and dropout. Either way run.steps must exceed its step.
  bool seed_given = false;
};

/// Loaded training data: the embeddings (every rank) and the window source.
struct training_data {
  protein_embeddings emb;
  std::shared_ptr<const window_source> windows;
  std::string where;
};

/// Collective. Reads the embeddings on every rank and indexes the contig tables (each rank
/// scanning its part), or simulates contigs with plm_dim-dimensional proteins.
template <class Comm>
training_data load_training_data(Comm& comm, const data_options& d, index_t plm_dim) {
  training_data t;
  if (d.contigs.empty()) {
    simulation_options so;
    so.dim = plm_dim;
    so.contigs = d.simulate_contigs;
    so.seed = d.simulate_seed;
    simulated_data sim = simulate_contigs(so);
    const auto ws = contigs_from_genome(sim.contigs, d.window, d.overlap);
    t.emb = std::move(sim.proteins);
    t.where = genlm::detail::concat(so.contigs, " simulated contigs");
    t.windows = std::make_shared<memory_windows>(resolve_windows(ws, t.emb, t.where));
    return t;
  }
  collective_try(comm, "reading the protein embeddings", [&] {
    check<value_error>(!d.embeddings.empty(), "contig tables need protein embeddings (--embeddings)");
    if (d.embeddings.extension() == ".npy") {
      check<value_error>(!d.ids.empty(), "embeddings '", d.embeddings.string(), "' are .npy: give the protein ids");
      t.emb = protein_embeddings::from_npy(d.embeddings, d.ids);
    } else {
      t.emb = protein_embeddings::from_safetensors(d.embeddings);
    }
    check<shape_error>(t.emb.dim() == plm_dim, t.emb.source(), ": embeddings have ", t.emb.dim(),
                       " dimensions but the model expects plm_dim ", plm_dim);
  });
  auto src = std::make_shared<contig_file_windows>(
      contig_file_windows::build(comm, d.contigs, t.emb, d.window, d.overlap, /*validate=*/true));
  t.where = src->describe();
  t.windows = std::move(src);
  return t;
}

/// Collective: the whole job (load data, fit or resume the feature pipeline and model, train,
/// write checkpoints on rank 0). Returns on every rank with the same summary.
template <class Model, class Comm>
run_summary train_data_parallel(Comm& comm, const job_options& job) {
  constexpr model_config C = Model::config;
  log0(comm, "model: ", C.str(), " (", std::is_same_v<typename Model::scalar, float> ? "float32" : "float64",
       "); communicator: ", comm.name(), " with ", comm.size(), " rank(s)");
  // Cheap settings first, so that ranks started with different models fail before loading data.
  std::string files;
  for (const auto& f : job.data.contigs) files += f.filename().string() + " ";
  agree(comm,
        {{"model config", C.str()},
         {"scalar", std::is_same_v<typename Model::scalar, float> ? "float32" : "float64"},
         {"data", genlm::detail::concat("contigs=", files, "embeddings=", job.data.embeddings.filename().string(),
                                        " simulate=", job.data.simulate_contigs, " window=", job.data.window,
                                        " overlap=", job.data.overlap)},
         {"resume", job.resume.string()},
         {"steps", std::to_string(job.run.steps)},
         // rank 0 writes the checkpoints, but every rank takes part in each save's collectives
         {"checkpoint", genlm::detail::concat(job.run.checkpoint.string(), " every ", job.run.save_every, " steps")}},
        "configuration");
  // before the data is read; the settings above are agreed, so every rank sees the same
  if (job.data.window > std::size_t(std::min(C.max_positions, C.max_genes)))
    throw collective_error(genlm::detail::concat("window ", job.data.window, " exceeds the model's largest window, ",
                                                 std::min(C.max_positions, C.max_genes), " genes"));
  const training_data data = load_training_data(comm, job.data, C.plm_dim);
  log0(comm, "data: ", data.where, "; ", data.emb.size(), " proteins x ", data.emb.dim());
  model_options mo = job.model;
  mo.init_seed = job.train.seed;
  mo.initialize = job.resume.empty();  // a resumed run loads every parameter
  Model model(mo);
  feature_pipeline pipe;
  std::optional<resume_state> resumed;
  if (!job.resume.empty())
    resumed = begin_resume(comm, job.resume, model, pipe);
  else
    collective_try(comm, "fitting the normalisation and PCA", [&] { pipe.fit(data.emb, C.pca_components); });
  const gene_features feat = pipe.features(data.emb);
  train_options topt = job.train;
  if (resumed) {
    const checkpoint_info& ck = resumed->info;
    collective_try(comm, genlm::detail::concat("continuing checkpoint '", resumed->name, "'"), [&] {
      topt.seed = continuation_seed(ck, resumed->name,
                                    job.seed_given ? std::optional(job.train.seed) : std::nullopt, job.run.steps);
    });
  }
  auto make_trainer = [&] {
    try {
      return data_parallel_trainer<Model, Comm>(model, comm, feat, data.windows, topt, job.parallel);
    } catch (const std::bad_alloc&) {  // the step's workspaces are sized for the largest batch up front
      throw error(genlm::detail::concat("not enough memory for the training workspaces of a batch of ",
                                        topt.batch_size, " windows of up to ", job.data.window,
                                        " genes: give a smaller batch size (--batch)"));
    }
  };
  data_parallel_trainer<Model, Comm> tr = make_trainer();
  if (resumed) finish_resume(tr, *resumed);
  log0(comm, "training ", model.parameters().count(), " parameters on ", data.windows->size(), " windows, global batch ",
       job.train.batch_size, " (", tr.batches_per_epoch(), " steps per epoch), steps ", tr.step_count(), " -> ",
       job.run.steps);
  run_options ro = job.run;
  ro.metadata["genlm.input"] = data.where;
  const run_summary s = run_training(tr, pipe, ro);
  log0(comm, "done: steps ", s.first_step, " -> ", s.last_step, " in ", s.seconds, " s (", s.comm_seconds,
       " s in gradient/metric communication on rank 0)");
  return s;
}

}  // namespace genlm::parallel
