// test_dp_mpi - data-parallel training over MPI against the single-process trainer.
//
// Run with mpiexec -n 2 (any n >= 2 works). Every rank runs every check in the same order (the
// checks are collective); each rank compares its own replica with a single-process reference it
// computes itself, and the failure count is all-reduced at the end (exit status 1 on failure).
//
// The equivalence checks use float64 models: in float32 the different summation order of the
// sharded batch (and of the all-reduce) changes gradients by ~1e-7 relative, which AdamW's
// normalisation can turn into update differences of up to ~lr for near-zero gradient entries, so
// float32 is reported but only checked loosely.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <genlm/backend/cpu.hpp>
#include <genlm/data/simulate.hpp>
#include <genlm/model/glm.hpp>
#include <genlm/parallel/checkpoint.hpp>
#include <genlm/parallel/data.hpp>
#include <genlm/parallel/data_parallel.hpp>
#include <genlm/parallel/mpi.hpp>
#include <genlm/train/checkpoint.hpp>
#include <genlm/train/trainer.hpp>

using namespace genlm;
namespace fs = std::filesystem;

namespace {

int failures = 0;
int world_rank = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "[rank %d] FAILED: %s\n", world_rank, what.c_str());
  }
}
template <class... A>
void report(A&&... a) {
  if (world_rank == 0) {
    const std::string s = genlm::detail::concat(std::forward<A>(a)...);
    std::printf("%s\n", s.c_str());
    std::fflush(stdout);
  }
}

struct dataset {
  simulated_data sim;
  feature_pipeline pipe;
  gene_features feat;
  std::vector<contig_entry> entries;
  std::vector<gene_window> train;
  explicit dataset(index_t dim, index_t pca) {
    simulation_options so;
    so.dim = dim;
    so.contigs = 120;
    so.families = 30;
    so.modules = 6;
    so.noise_gene_rate = 0.1;
    so.contig_max = 40;  // some contigs are cut into 2 windows
    so.seed = 7;
    sim = simulate_contigs(so);
    pipe.fit(sim.proteins, pca);
    feat = pipe.features(sim.proteins);
    entries = sim.contigs;
    train = simulated_windows(sim);
  }
};

template <class T, class B>
double max_rel_diff(const parameter_store<T, B>& a, const parameter_store<T, B>& b) {
  const auto va = a.values().to_host(), vb = b.values().to_host();
  double scale = 0, diff = 0;
  for (std::size_t i = 0; i < va.size(); ++i) {
    scale = std::max(scale, std::abs(double(vb[i])));
    diff = std::max(diff, std::abs(double(va[i]) - double(vb[i])));
  }
  return diff / std::max(scale, 1e-300);
}
/// Element-wise max |a - b| / max(|b|, floor).
template <class T, class B>
double max_elem_rel_diff(const parameter_store<T, B>& a, const parameter_store<T, B>& b, double floor = 1e-3) {
  const auto va = a.values().to_host(), vb = b.values().to_host();
  double r = 0;
  for (std::size_t i = 0; i < va.size(); ++i)
    r = std::max(r, std::abs(double(va[i]) - double(vb[i])) / std::max(std::abs(double(vb[i])), floor));
  return r;
}

train_options options(index_t batch) {
  train_options to;
  to.batch_size = batch;
  to.lr = 3e-3;
  to.warmup_steps = 2;
  to.seed = 11;
  to.clip_value = 1.0;
  return to;
}

double max_over_ranks(comm::mpi& c, double v) {
  c.allreduce_max_host(&v, 1, "test: max over ranks");
  return v;
}

/// mpi data parallelism vs genlm::trainer (one process, same global batch). Returns the
/// norm-relative difference max|p_dp - p_1| / max|p_1| (max over ranks); *elementwise receives
/// max |p_dp - p_1| / max(|p_1|, 1e-3).
template <class Model>
double equivalence(comm::mpi& c, const dataset& d, index_t batch, int steps, double dropout,
                   double* elementwise = nullptr, bool check_hash = true) {
  model_options mo;
  mo.init_seed = 3;
  mo.hidden_dropout = mo.attention_dropout = dropout;
  const train_options to = options(batch);
  Model ref(mo);
  trainer<Model> tr(ref, d.feat, d.train, to);
  model_options other = mo;
  other.init_seed = c.rank() == 0 ? 3 : 99;  // rank 0's parameters must be broadcast
  Model dp(other);
  parallel::dp_options dpo;
  dpo.drift_check_every = 2;
  dpo.bucket_bytes = 4096;  // many buckets
  parallel::data_parallel_trainer<Model, comm::mpi> dtr(dp, c, d.feat, d.train, to, dpo);
  double loss_diff = 0;
  for (int s = 0; s < steps; ++s) {
    const auto a = tr.step();
    const auto b = dtr.step();
    loss_diff = std::max(loss_diff, std::abs(a.loss - b.loss) / std::max(1e-30, std::abs(a.loss)));
    expect(a.masked == b.masked, genlm::detail::concat("masked genes of step ", s, ": ", a.masked, " vs ", b.masked));
  }
  expect(loss_diff < 1e-9 || !std::is_same_v<typename Model::scalar, double>,
         genlm::detail::concat("training loss differs by ", loss_diff));
  if (check_hash) {
    const std::uint64_t h = dtr.state_hash();
    const auto all = c.allgather(std::string(reinterpret_cast<const char*>(&h), sizeof h), "test: hashes");
    for (const auto& x : all) expect(x == all[0], "replicas are bit-identical after training");
  }
  if (elementwise) *elementwise = max_over_ranks(c, max_elem_rel_diff(dp.parameters(), ref.parameters()));
  return max_over_ranks(c, max_rel_diff(dp.parameters(), ref.parameters()));
}

}  // namespace

int main(int argc, char** argv) {
  return parallel::mpi_main(argc, argv, [](int, char** av) -> int {
    comm::mpi c(MPI_COMM_WORLD, 120.0);
    world_rank = c.rank();
    const fs::path dir = av[1] ? fs::path(av[1]) : fs::temp_directory_path();
    fs::create_directories(dir);
    using M64 = GLM<configs::tiny, cpu, double>;
    using M32 = GLM<configs::tiny, cpu, float>;
    const dataset d(configs::tiny.plm_dim, configs::tiny.pca_components);
    report("ranks: ", c.size(), "; training windows: ", d.train.size());

    // --- 1. equivalence with the single-process trainer -----------------------------------
    {
      double e = 0;
      const double r = equivalence<M64>(c, d, 16, 8, 0.0, &e);
      report("float64, batch 16, 8 steps: max |p_dp - p_1| / max |p_1| = ", r,
             "; elementwise max |p_dp - p_1| / max(|p_1|, 1e-3) = ", e);
      expect(e <= 1e-6, genlm::detail::concat("float64 elementwise within 1e-6 (got ", e, ")"));
      expect(r <= 1e-6, genlm::detail::concat("float64 data-parallel parameters within 1e-6 (got ", r, ")"));
    }
    {
      const double r = equivalence<M64>(c, d, 7, 6, 0.0);  // uneven shares
      report("float64, batch 7 (uneven shares), 6 steps: ", r);
      expect(r <= 1e-6, genlm::detail::concat("uneven shares within 1e-6 (got ", r, ")"));
    }
    {
      const double r = equivalence<M64>(c, d, 1, 4, 0.0);  // ranks > 0 get empty shares
      report("float64, batch 1 (empty shares), 4 steps: ", r);
      expect(r <= 1e-6, genlm::detail::concat("empty shares within 1e-6 (got ", r, ")"));
    }
    {
      double e = 0;
      const double r = equivalence<M32>(c, d, 16, 8, 0.0, &e);
      report("float32, batch 16, 8 steps: ", r, "; elementwise ", e, " (float32 summation order; checked <= 1e-4)");
      expect(r <= 1e-4, genlm::detail::concat("float32 data-parallel parameters close (got ", r, ")"));
    }

    // --- 1b. loss scaling: overflowing steps are skipped on every rank, as by one process -------
    {
      model_options mo;
      mo.init_seed = 3;
      mo.hidden_dropout = mo.attention_dropout = 0.0;
      train_options to = options(16);
      to.scaling.enabled = loss_scaling_mode::on;
      to.scaling.init_scale = std::ldexp(1.0, 140);  // beyond float: 13 backoffs before it even fits
      to.scaling.growth_interval = 2;
      M32 ref(mo), dp(mo);
      trainer<M32> tr(ref, d.feat, d.train, to);
      parallel::dp_options dpo;
      dpo.drift_check_every = 2;
      parallel::data_parallel_trainer<M32, comm::mpi> dtr(dp, c, d.feat, d.train, to, dpo);
      int skipped = 0, mismatched = 0;
      for (int s = 0; s < 24; ++s) {
        const auto a = tr.step();
        const auto b = dtr.step();
        mismatched += a.skipped != b.skipped;
        skipped += b.skipped;
      }
      const double r = max_over_ranks(c, max_rel_diff(dp.parameters(), ref.parameters()));
      report("float32, loss scaling from 2^140, 24 steps: ", skipped, " skipped; parameters vs one process: ", r,
             " (float32 summation order; checked <= 1e-4)");
      expect(mismatched == 0, genlm::detail::concat(mismatched, " steps skipped by one side only"));
      expect(skipped >= 13 && skipped < 24, genlm::detail::concat("13 to 23 steps skipped (got ", skipped, ")"));
      expect(dtr.scaler().scale() == tr.scaler().scale(), "loss scale equals the single-process trainer's");
      expect(r <= 1e-4, genlm::detail::concat("loss-scaled data-parallel parameters close (got ", r, ")"));
      const std::uint64_t h = dtr.state_hash();
      const auto all = c.allgather(std::string(reinterpret_cast<const char*>(&h), sizeof h), "test: hashes");
      for (const auto& x : all) expect(x == all[0], "loss-scaled replicas are bit-identical");
    }

    // --- 2. rank-invariant dropout: 2 ranks == 1 rank with dropout on -------------------------
    {
      model_options mo;
      mo.init_seed = 3;
      mo.hidden_dropout = mo.attention_dropout = 0.1;
      const train_options to = options(8);
      parallel::dp_options dpo;
      dpo.rank_invariant_dropout = true;
      M64 a(mo), b(mo);
      comm::single one;
      parallel::data_parallel_trainer<M64, comm::single> t1(a, one, d.feat, d.train, to, dpo);
      parallel::data_parallel_trainer<M64, comm::mpi> t2(b, c, d.feat, d.train, to, dpo);
      for (int s = 0; s < 4; ++s) t1.step(), t2.step();
      const double r = max_over_ranks(c, max_rel_diff(b.parameters(), a.parameters()));
      report("float64, dropout 0.1, rank-invariant dropout, 4 steps, 2 ranks vs 1: ", r);
      expect(r <= 1e-6, genlm::detail::concat("rank-invariant dropout within 1e-6 (got ", r, ")"));
      // without the option dropout masks depend on the shard layout (documented)
      M64 e(mo), f(mo);
      parallel::data_parallel_trainer<M64, comm::single> t3(e, one, d.feat, d.train, to);
      parallel::data_parallel_trainer<M64, comm::mpi> t4(f, c, d.feat, d.train, to);
      for (int s = 0; s < 2; ++s) t3.step(), t4.step();
      const double r2 = max_over_ranks(c, max_rel_diff(f.parameters(), e.parameters()));
      report("float64, dropout 0.1, default (per-rank dropout), 2 steps, 2 ranks vs 1: ", r2, " (expected to differ)");
    }

    // --- 3. resume with a different number of ranks -------------------------------------------
    {
      model_options mo;
      mo.init_seed = 3;
      mo.hidden_dropout = mo.attention_dropout = 0.0;
      const train_options to = options(16);
      M64 ref(mo);
      trainer<M64> tr(ref, d.feat, d.train, to);
      for (int s = 0; s < 6; ++s) tr.step();

      // 2 ranks x 3 steps -> checkpoint (rank 0) -> 1 rank x 3 steps
      const fs::path ck = dir / "dp_resume_2to1.safetensors";
      {
        M64 m(mo);
        parallel::data_parallel_trainer<M64, comm::mpi> t(m, c, d.feat, d.train, to);
        for (int s = 0; s < 3; ++s) t.step();
        parallel::save_checkpoint(c, ck, m, d.pipe, &t.optimizer(), t.step_count(), to.seed);
      }
      {
        model_options other = mo;
        other.init_seed = 1234;
        M64 m(other);
        feature_pipeline pipe;
        comm::single one;
        const auto info = parallel::load_checkpoint(one, ck, m, pipe);
        const gene_features feat = pipe.features(d.sim.proteins);
        parallel::data_parallel_trainer<M64, comm::single> t(m, one, feat, d.train, to);
        parallel::load_optimizer_image(parallel::read_checkpoint_image(one, ck), ck.string(), t.optimizer());
        t.set_step(info.step);
        expect(info.step == 3, "checkpoint step is 3");
        expect(info.metadata.at("genlm.world_size") == std::to_string(c.size()), "checkpoint records the world size");
        for (int s = 0; s < 3; ++s) t.step();
        const double r = max_over_ranks(c, max_rel_diff(m.parameters(), ref.parameters()));
        report("resume 2 ranks -> 1 rank (3 + 3 steps) vs uninterrupted 1-rank trainer: ", r);
        expect(r <= 1e-6, genlm::detail::concat("resume 2 -> 1 within 1e-6 (got ", r, ")"));
      }
      // 1 process (genlm::trainer) x 3 steps -> checkpoint -> 2 ranks x 3 steps
      const fs::path ck1 = dir / "dp_resume_1to2.safetensors";
      {
        if (c.rank() == 0) {
          M64 m(mo);
          trainer<M64> t(m, d.feat, d.train, to);
          for (int s = 0; s < 3; ++s) t.step();
          save_checkpoint(ck1, m, d.pipe, &t.optimizer(), t.step_count(), to.seed);
        }
        c.barrier("test: checkpoint written");
        model_options other = mo;
        other.init_seed = 777;
        M64 m(other);
        feature_pipeline pipe;
        const auto info = parallel::load_checkpoint(c, ck1, m, pipe);
        const gene_features feat = pipe.features(d.sim.proteins);
        parallel::data_parallel_trainer<M64, comm::mpi> t(m, c, feat, d.train, to);
        parallel::load_optimizer_image(parallel::read_checkpoint_image(c, ck1), ck1.string(), t.optimizer());
        t.set_step(info.step);
        expect(t.check_drift().identical, "replicas identical after loading");
        for (int s = 0; s < 3; ++s) t.step();
        const double r = max_over_ranks(c, max_rel_diff(m.parameters(), ref.parameters()));
        report("resume 1 process -> 2 ranks (3 + 3 steps) vs uninterrupted: ", r);
        expect(r <= 1e-6, genlm::detail::concat("resume 1 -> 2 within 1e-6 (got ", r, ")"));
      }
      if (c.rank() == 0) fs::remove(ck), fs::remove(ck1);
    }

    // --- 4. drift detection and repair ---------------------------------------------------------
    {
      model_options mo;
      mo.hidden_dropout = mo.attention_dropout = 0.0;
      M64 m(mo);
      parallel::data_parallel_trainer<M64, comm::mpi> t(m, c, d.feat, d.train, options(8));
      t.step();
      expect(t.check_drift().identical, "no drift after a step");
      auto& ps = m.parameters();
      const auto id = ps.find("roberta.encoder.layer.1.output.dense.weight");
      if (c.rank() == c.size() - 1) ps.value(id)[5] *= 1.0 + 1e-9;  // tiny: repaired
      const auto rep = t.check_drift();
      expect(!rep.identical && rep.resynchronised, "tiny drift is detected and repaired");
      expect(t.check_drift().identical, "replicas identical after the repair");
      if (c.rank() == c.size() - 1) ps.value(id)[5] += 0.5;  // large: error on every rank
      std::string msg;
      try {
        t.check_drift();
      } catch (const drift_error& e) {
        msg = e.what();
      }
      report("drift error: ", msg);
      expect(msg.find("rank " + std::to_string(c.size() - 1)) != std::string::npos &&
                 msg.find("roberta.encoder.layer.1.output.dense.weight[5]") != std::string::npos,
             "large drift throws drift_error on every rank naming the rank and the parameter: '" + msg + "'");
    }

    // --- 5. agreement and collective errors ----------------------------------------------------
    {
      std::string msg;
      try {
        parallel::agree(c, {{"model config", c.rank() == 0 ? configs::tiny.str() : configs::small.str()},
                            {"seed", "1"}});
      } catch (const agreement_error& e) {
        msg = e.what();
      }
      report("agreement error: ", msg);
      expect(msg.find(configs::tiny.str()) != std::string::npos && msg.find(configs::small.str()) != std::string::npos &&
                 msg.find("rank 1") != std::string::npos,
             "config mismatch throws agreement_error on every rank naming both configs: '" + msg + "'");
      // a trainer on ranks with different learning rates
      msg.clear();
      try {
        M64 m;
        train_options to = options(8);
        if (c.rank() == 1) to.lr = 5e-3;
        parallel::data_parallel_trainer<M64, comm::mpi> t(m, c, d.feat, d.train, to);
      } catch (const agreement_error& e) {
        msg = e.what();
      }
      expect(msg.find("lr=0.003") != std::string::npos && msg.find("lr=0.005") != std::string::npos,
             "trainer settings mismatch names both values: '" + msg + "'");
      msg.clear();
      try {
        parallel::collective_try(c, "test step", [&] {
          if (c.rank() == 1) throw value_error("only rank 1 fails");
        });
      } catch (const collective_error& e) {
        msg = e.what();
      }
      expect(msg.find("rank 1: only rank 1 fails") != std::string::npos, "collective_try reports rank 1's error: " + msg);
    }

    // --- 6. contig tables read in parts -------------------------------------------------------
    {
      const fs::path tsv = dir / "dp_contigs.tsv";
      if (c.rank() == 0) {
        std::ofstream out(tsv, std::ios::binary);
        for (std::size_t i = 0; i < d.entries.size(); ++i) {
          if (i % 17 == 3) out << "\n";  // blank lines
          out << d.entries[i].contig_id << '\t';
          for (std::size_t g = 0; g < d.entries[i].genes.size(); ++g)
            out << (g ? ";" : "") << (d.entries[i].genes[g].second > 0 ? '+' : '-') << d.entries[i].genes[g].first;
          out << (i % 5 == 1 ? "\r\n" : "\n");  // some CRLF lines
        }
      }
      c.barrier("test: contig table written");
      const auto src = std::make_shared<parallel::contig_file_windows>(
          parallel::contig_file_windows::build(c, {tsv}, d.sim.proteins, 30, 0));
      bool same = src->size() == d.train.size();
      std::vector<std::size_t> all(d.train.size());
      for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
      if (same) {
        const auto got = src->fetch(all);
        for (std::size_t i = 0; i < all.size(); ++i) {
          same = same && got[i].id == d.train[i].id && got[i].genes.size() == d.train[i].genes.size();
          for (std::size_t g = 0; same && g < got[i].genes.size(); ++g)
            same = got[i].genes[g].protein == d.train[i].genes[g].protein &&
                   got[i].genes[g].strand == d.train[i].genes[g].strand;
        }
      }
      expect(same, genlm::detail::concat("sharded contig index gives the eager windows (", src->size(), " vs ",
                                         d.train.size(), ")"));
      // training from the files gives the same parameters as from memory, bit for bit
      model_options mo;
      mo.hidden_dropout = mo.attention_dropout = 0.0;
      M64 a(mo), b(mo);
      parallel::data_parallel_trainer<M64, comm::mpi> ta(a, c, d.feat, d.train, options(16));
      parallel::data_parallel_trainer<M64, comm::mpi> tb(b, c, d.feat, src, options(16));
      for (int s = 0; s < 2; ++s) ta.step(), tb.step();
      expect(max_rel_diff(a.parameters(), b.parameters()) == 0.0, "file-backed windows train identically");
      // a bad line: every rank reports it
      const fs::path bad = dir / "dp_bad.tsv";
      if (c.rank() == 0) {
        std::ofstream out(bad, std::ios::binary);
        for (int i = 0; i < 40; ++i) out << "c" << i << "\t+p0;-p1;+p2\n";
        out << "broken\t+p0;-nope\n";
      }
      c.barrier("test: bad table written");
      std::string msg;
      try {
        (void)parallel::contig_file_windows::build(c, {bad}, d.sim.proteins, 30, 0);
      } catch (const collective_error& e) {
        msg = e.what();
      }
      report("bad contig table: ", msg);
      expect(msg.find("nope") != std::string::npos && msg.find("dp_bad.tsv") != std::string::npos,
             "a bad contig line fails on every rank naming the file and the id: " + msg);
      c.barrier("test: done with files");
      if (c.rank() == 0) fs::remove(tsv), fs::remove(bad);
    }

    double f = failures;
    c.allreduce_sum_host(&f, 1, "test: failures");
    report(f == 0 ? "all data-parallel checks passed" : genlm::detail::concat(f, " check(s) failed"));
    return f == 0 ? 0 : 1;
  });
}
