// Data-parallel pieces that need no MPI: comm::single reproduces genlm::trainer bit for bit, the
// sampler and shards, rank-invariant dropout, the contig-file index, the watchdog.
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include <unistd.h>

#include <genlm/data/simulate.hpp>
#include <genlm/parallel/checkpoint.hpp>
#include <genlm/parallel/comm.hpp>
#include <genlm/parallel/data.hpp>
#include <genlm/parallel/data_parallel.hpp>
#include <genlm/parallel/watchdog.hpp>
#include <genlm/train/trainer.hpp>

using namespace genlm;
namespace fs = std::filesystem;

namespace {
using Model = GLM<configs::tiny, cpu>;

struct fixture {
  simulated_data sim;
  feature_pipeline pipe;
  gene_features feat;
  std::vector<gene_window> train;
  fixture() {
    simulation_options so;
    so.dim = configs::tiny.plm_dim;
    so.contigs = 80;
    so.contig_max = 40;
    so.seed = 3;
    sim = simulate_contigs(so);
    pipe.fit(sim.proteins, configs::tiny.pca_components);
    feat = pipe.features(sim.proteins);
    train = simulated_windows(sim);
  }
};

bool same_values(const Model& a, const Model& b) {
  const auto& x = a.parameters().values();
  const auto& y = b.parameters().values();
  return x.numel() == y.numel() && std::memcmp(x.data(), y.data(), std::size_t(x.numel()) * sizeof(float)) == 0;
}
}  // namespace

TEST_CASE("shard_range splits a batch into contiguous near-equal shares", "[parallel]") {
  for (std::size_t n : {0, 1, 5, 16, 17}) {
    for (int p : {1, 2, 3, 5}) {
      std::size_t next = 0;
      for (int r = 0; r < p; ++r) {
        const auto [lo, hi] = parallel::shard_range(n, r, p);
        CHECK(lo == next);
        CHECK(hi - lo >= n / std::size_t(p));
        CHECK(hi - lo <= n / std::size_t(p) + 1);
        next = hi;
      }
      CHECK(next == n);
    }
  }
  CHECK_THROWS_AS(parallel::shard_range(4, 2, 2), value_error);
}

TEST_CASE("epoch_sampler reproduces trainer::batch_indices", "[parallel]") {
  fixture d;
  Model m;
  train_options to;
  to.batch_size = 7;
  to.seed = 42;
  trainer<Model> tr(m, d.feat, d.train, to);
  parallel::epoch_sampler s(d.train.size(), 7, 42);
  CHECK(s.batches_per_epoch() == tr.batches_per_epoch());
  for (std::int64_t k : {0, 1, 5, 13, 14, 15, 40, 3})
    CHECK(s.batch(k) == tr.batch_indices(k));
}

TEST_CASE("comm::single data-parallel training is genlm::trainer bit for bit", "[parallel]") {
  fixture d;
  model_options mo;  // dropout on: the single-rank path uses the trainer's dropout keys
  mo.init_seed = 5;
  train_options to;
  to.batch_size = 8;
  to.lr = 2e-3;
  to.warmup_steps = 2;
  to.seed = 9;
  SECTION("clip by value (inside AdamW's pass)") {}
  SECTION("clip by norm and value") { to.clip_norm = 0.5; }
  Model a(mo), b(mo);
  trainer<Model> ta(a, d.feat, d.train, to);
  comm::single one;
  parallel::dp_options dpo;
  dpo.bucket_bytes = 1000;  // many buckets
  parallel::data_parallel_trainer<Model, comm::single> tb(b, one, d.feat, d.train, to, dpo);
  for (int s = 0; s < 5; ++s) {
    const auto ma = ta.step();
    const auto mb = tb.step();
    CHECK(ma.loss == mb.loss);
    CHECK(ma.masked == mb.masked);
    CHECK(ma.correct == mb.correct);
  }
  CHECK(same_values(a, b));
  CHECK(tb.last_step().global_windows == 8);
  CHECK(tb.last_step().local_windows == 8);
}

TEST_CASE("rank-invariant dropout: micro-batches match one batch without dropout", "[parallel]") {
  fixture d;
  model_options mo;
  mo.hidden_dropout = mo.attention_dropout = 0.0;
  using M64 = GLM<configs::tiny, cpu, double>;
  M64 a(mo), b(mo);
  train_options to;
  to.batch_size = 6;
  comm::single one;
  parallel::dp_options per_window;
  per_window.rank_invariant_dropout = true;
  parallel::data_parallel_trainer<M64, comm::single> ta(a, one, d.feat, d.train, to);
  parallel::data_parallel_trainer<M64, comm::single> tb(b, one, d.feat, d.train, to, per_window);
  for (int s = 0; s < 3; ++s) {
    const auto ma = ta.step();
    const auto mb = tb.step();
    CHECK(ma.masked == mb.masked);
    CHECK(mb.loss == Approx(ma.loss).epsilon(1e-12));
  }
  const auto va = a.parameters().values().to_host(), vb = b.parameters().values().to_host();
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < va.size(); ++i) diff = std::max(diff, std::abs(va[i] - vb[i])), scale = std::max(scale, std::abs(va[i]));
  CHECK(diff / scale < 1e-9);
}

TEST_CASE("contig_file_windows on one rank equals read_contig_table + windows", "[parallel]") {
  fixture d;
  const fs::path tsv = fs::temp_directory_path() / ("genlm_par_" + std::to_string(::getpid()) + ".tsv");
  {
    std::ofstream out(tsv, std::ios::binary);
    out << "\xEF\xBB\xBF";  // BOM
    for (const auto& e : d.sim.contigs) {
      out << e.contig_id << '\t';
      for (std::size_t g = 0; g < e.genes.size(); ++g)
        out << (g ? ";" : "") << (e.genes[g].second > 0 ? '+' : '-') << e.genes[g].first;
      out << "\n\n";
    }
  }
  comm::single one;
  const auto src = parallel::contig_file_windows::build(one, {tsv}, d.sim.proteins, 30, 0);
  REQUIRE(src.size() == d.train.size());
  std::vector<std::size_t> idx = {0, src.size() - 1, 5, 5};
  const auto got = src.fetch(idx);
  for (std::size_t i = 0; i < idx.size(); ++i) {
    CHECK(got[i].id == d.train[idx[i]].id);
    REQUIRE(got[i].genes.size() == d.train[idx[i]].genes.size());
    CHECK(src.genes(idx[i]) == d.train[idx[i]].genes.size());
    for (std::size_t g = 0; g < got[i].genes.size(); ++g) CHECK(got[i].genes[g].protein == d.train[idx[i]].genes[g].protein);
  }
  SECTION("a duplicate contig id is an error naming it") {
    {
      std::ofstream out(tsv, std::ios::binary | std::ios::app);
      out << d.sim.contigs[2].contig_id << "\t+p0\n";
    }
    CHECK_THROWS_WITH(parallel::contig_file_windows::build(one, {tsv}, d.sim.proteins, 30, 0),
                      Catch::Contains("'" + d.sim.contigs[2].contig_id + "' appears twice"));
  }
  fs::remove(tsv);
}

TEST_CASE("agree and collective_try on one rank", "[parallel]") {
  comm::single one;
  CHECK_NOTHROW(parallel::agree(one, {{"a", "1"}}));
  CHECK_THROWS_AS(parallel::collective_try(one, "x", [] { throw value_error("boom"); }), collective_error);
  CHECK_THROWS_WITH(parallel::collective_try(one, "x", [] { throw value_error("boom"); }), Catch::Contains("rank 0: boom"));
}

TEST_CASE("resize_bytes sizes a receive buffer or names what it could not allocate", "[parallel]") {
  std::string s = "ab";
  parallel::resize_bytes(s, 5, "test receive");
  CHECK(s.size() == 5);
  CHECK(s.substr(0, 2) == "ab");
  const std::uint64_t huge = std::numeric_limits<std::uint64_t>::max();
  CHECK_THROWS_AS(parallel::resize_bytes(s, huge, "comm (checkpoint broadcast) on rank 1"), error);
  CHECK_THROWS_WITH(parallel::resize_bytes(s, huge, "comm (checkpoint broadcast) on rank 1"),
                    Catch::StartsWith("comm (checkpoint broadcast) on rank 1: cannot allocate 18446744073709551615 bytes"));
  CHECK(s.size() == 5);  // unchanged by the failed resize
}

TEST_CASE("parallel checkpoints: save and load through comm::single", "[parallel][checkpoint]") {
  fixture d;
  const fs::path ck = fs::temp_directory_path() / ("genlm_par_ck_" + std::to_string(::getpid()) + ".safetensors");
  Model a;
  train_options to;
  to.batch_size = 4;
  comm::single one;
  parallel::data_parallel_trainer<Model, comm::single> t(a, one, d.feat, d.train, to);
  t.step();
  parallel::save_checkpoint(one, ck, a, d.pipe, &t.optimizer(), t.step_count(), to.seed);
  model_options other;
  other.init_seed = 77;
  Model b(other);
  feature_pipeline p;
  // an ordinary genlm checkpoint (train/checkpoint.hpp format) with the world size recorded
  CHECK(io::read_safetensors(ck).metadata.at("genlm.format") == checkpoint_format);
  const auto info = parallel::load_checkpoint(one, ck, b, p);
  CHECK(info.step == 1);
  CHECK(info.metadata.at("genlm.world_size") == "1");
  CHECK(same_values(a, b));
  CHECK_THROWS_AS(parallel::load_checkpoint(one, ck.string() + ".missing", b, p), collective_error);
  fs::remove(ck);
}

TEST_CASE("watchdog fires only for operations that exceed the timeout", "[parallel]") {
  std::atomic<int> fired{0};
  std::string what;
  {
    parallel::watchdog w(0.2, [&](const std::string& s, double) {
      what = s;
      ++fired;
    });
    {
      parallel::watchdog_guard g(&w, "quick");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(fired == 0);
    w.arm("slow collective");
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
    CHECK(fired == 1);
  }
  CHECK(what == "slow collective");
}

TEST_CASE("activity text for the termination handler: set, read back, truncated, several writers", "[parallel]") {
  char buf[300];
  parallel::detail::set_activity("waiting in collective 'x'");
  parallel::detail::read_activity(buf, sizeof(buf));
  CHECK(std::string(buf) == "waiting in collective 'x'");
  parallel::detail::read_activity(buf, 8);  // the reader's buffer bounds the copy
  CHECK(std::string(buf) == "waiting");
  const std::string longer(400, 'a');
  parallel::detail::set_activity(longer);  // 255 characters kept
  parallel::detail::read_activity(buf, sizeof(buf));
  CHECK(std::string(buf) == longer.substr(0, 255));
  parallel::detail::set_activity("short");  // a shorter text ends at its own NUL
  parallel::detail::read_activity(buf, sizeof(buf));
  CHECK(std::string(buf) == "short");
  // threads writing at once (one per GPU in comm::nccl's single-process mode) may blur the text
  // but are no data race (what a -fsanitize=thread build of this test checks); later writes work
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([t] {
      const std::string mine = "computing on thread " + std::to_string(t);
      for (int i = 0; i < 2000; ++i) parallel::detail::set_activity(mine);
    });
  for (auto& t : ts) t.join();
  parallel::detail::set_activity("computing (between collectives)");
  parallel::detail::read_activity(buf, sizeof(buf));
  CHECK(std::string(buf) == "computing (between collectives)");
}

namespace {
/// The CPU op set under the fp16 precision policy's name: a backend that asks for loss scaling.
struct cpu_needing_loss_scaling : cpu {
  using precision = genlm::precision::fp16;
  static constexpr const char* name = "cpu_needing_loss_scaling";
};
}  // namespace

TEST_CASE("comm::single data-parallel training with loss scaling is genlm::trainer's, skips included",
          "[parallel][loss_scaling]") {
  using M = GLM<configs::tiny, cpu_needing_loss_scaling>;
  fixture d;
  model_options mo;
  mo.init_seed = 5;
  train_options to;
  to.batch_size = 8;
  to.lr = 2e-3;
  to.seed = 9;
  // 2^140 does not fit in float: the first steps overflow at once, later ones in the gradients,
  // until the scaler has backed off far enough
  to.scaling.init_scale = std::ldexp(1.0, 140);
  to.scaling.growth_interval = 3;
  M a(mo), b(mo);
  trainer<M> ta(a, d.feat, d.train, to);
  comm::single one;
  parallel::dp_options dpo;
  dpo.bucket_bytes = 1000;
  parallel::data_parallel_trainer<M, comm::single> tb(b, one, d.feat, d.train, to, dpo);
  REQUIRE(ta.loss_scaling_active());
  REQUIRE(tb.loss_scaling_active());  // automatic for the fp16 policy, as in trainer
  int skipped = 0;
  for (int s = 0; s < 40; ++s) {
    const auto ma = ta.step();
    const auto mb = tb.step();
    CHECK(ma.skipped == mb.skipped);
    CHECK(ma.loss == mb.loss);
    skipped += mb.skipped;
  }
  CHECK(skipped >= 13);  // 2^140 -> 2^127 is 13 backoffs
  CHECK(skipped < 40);
  CHECK(ta.scaler().scale() == tb.scaler().scale());
  CHECK(ta.scaler().skipped_steps() == tb.scaler().skipped_steps());
  CHECK(ta.scaler().growth_tracker() == tb.scaler().growth_tracker());
  CHECK(tb.optimizer().steps() == 40 - skipped);
  {
    const auto& x = a.parameters().values();
    const auto& y = b.parameters().values();
    CHECK(std::memcmp(x.data(), y.data(), std::size_t(x.numel()) * sizeof(float)) == 0);
  }
  // the scaler's state travels with parallel checkpoints and comes back on resume
  const fs::path ck = fs::temp_directory_path() / ("genlm_par_ls_" + std::to_string(::getpid()) + ".safetensors");
  parallel::save_checkpoint(one, ck, b, d.pipe, &tb.optimizer(), tb.step_count(), to.seed, {}, &tb.scaler());
  M c(mo);
  train_options fresh = to;
  fresh.scaling.init_scale = 1024.0;
  parallel::data_parallel_trainer<M, comm::single> tc(c, one, d.feat, d.train, fresh, dpo);
  std::ifstream in(ck, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  parallel::load_optimizer_image(bytes, ck.string(), tc.optimizer(), &tc.scaler());
  CHECK(tc.scaler().scale() == tb.scaler().scale());
  CHECK(tc.scaler().skipped_steps() == tb.scaler().skipped_steps());
  fs::remove(ck);
  // explicitly unscaled: allowed, and then never skips
  to.scaling.enabled = loss_scaling_mode::off;
  M e(mo);
  parallel::data_parallel_trainer<M, comm::single> te(e, one, d.feat, d.train, to, dpo);
  CHECK_FALSE(te.loss_scaling_active());
  CHECK_FALSE(te.step().skipped);
}
