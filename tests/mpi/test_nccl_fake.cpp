// comm::nccl's logic without a GPU: compiled against the host-only stand-ins in fake_cuda/
// (cuda_runtime_api.h, nccl.h: "device" memory is host memory, communicators from
// ncclCommInitAll are threads that meet in each collective). This checks how comm::nccl stages
// buffers, buckets the gradients, gathers strings and broadcasts state - the single-process
// multi-GPU mode of examples/train_nccl.cpp with one thread per "GPU" (comm::nccl::run_threads),
// and, since fake collectives complete only when every member has joined, the bounded wait: its
// timeout and the failure flag that ends the other threads' collectives when one thread fails.
// Real NCCL/CUDA behaviour (kernels, ncclCommInitRank) is only exercised by the
// nccl_train_example test on a GPU.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <genlm/data/simulate.hpp>
#include <genlm/parallel/data_parallel.hpp>
#include <genlm/parallel/nccl.hpp>
#include <genlm/train/trainer.hpp>

using namespace genlm;

namespace {
using M64 = GLM<configs::tiny, cpu, double>;

struct fixture {
  simulated_data sim;
  feature_pipeline pipe;
  gene_features feat;
  std::vector<gene_window> train;
  fixture() {
    simulation_options so;
    so.dim = configs::tiny.plm_dim;
    so.contigs = 60;
    so.seed = 5;
    sim = simulate_contigs(so);
    pipe.fit(sim.proteins, configs::tiny.pca_components);
    feat = pipe.features(sim.proteins);
    train = simulated_windows(sim);
  }
};

std::string message(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  }
}

/// Runs f(rank, comm) on one thread per fake GPU (comm::nccl::run_threads); returns each rank's
/// exception (null where f returned).
template <class F>
std::vector<std::exception_ptr> on_gpus_raw(int n, F&& f, double timeout_s = 30.0) {
  std::vector<int> devices;
  for (int i = 0; i < n; ++i) devices.push_back(i);
  return comm::nccl::run_threads(devices, timeout_s, [&](comm::nccl& nc) { f(nc.rank(), nc); });
}
/// As on_gpus_raw, with each rank's error message (empty where f returned).
template <class F>
std::vector<std::string> on_gpus(int n, F&& f, double timeout_s = 30.0) {
  std::vector<std::string> out;
  for (const auto& e : on_gpus_raw(n, f, timeout_s)) out.push_back(message(e));
  return out;
}

double rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0, s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i])), s = std::max(s, std::abs(b[i]));
  return d / s;
}
}  // namespace

TEST_CASE("comm::nccl (fake devices): data-parallel training equals one process", "[parallel][nccl]") {
  fixture d;
  model_options mo;
  mo.hidden_dropout = mo.attention_dropout = 0.0;
  mo.init_seed = 2;
  train_options to;
  to.batch_size = 7;  // uneven shares over 3 ranks
  to.lr = 3e-3;
  to.seed = 4;
  M64 ref(mo);
  trainer<M64> tr(ref, d.feat, d.train, to);
  for (int s = 0; s < 5; ++s) tr.step();
  const auto want = ref.parameters().values().to_host();

  std::vector<double> rel(3, 1.0);
  std::vector<int> identical(3, 0), repaired(3, 0);
  std::vector<std::string> strings(3);
  const auto errors = on_gpus(3, [&](int g, comm::nccl& nc) {
    model_options m = mo;
    m.init_seed = g == 0 ? 2 : 50 + std::uint64_t(g);  // rank 0's parameters are broadcast
    M64 model(m);
    parallel::dp_options dpo;
    dpo.bucket_bytes = 5000;
    dpo.drift_check_every = 2;
    parallel::data_parallel_trainer<M64, comm::nccl> t(model, nc, d.feat, d.train, to, dpo);
    for (int s = 0; s < 5; ++s) t.step();
    rel[std::size_t(g)] = rel_diff(model.parameters().values().to_host(), want);
    identical[std::size_t(g)] = t.check_drift().identical;
    if (g == 2) model.parameters().values().data()[7] *= 1.0 + 1e-10;
    const bool fixed = t.check_drift().resynchronised;  // collective: every rank calls both
    const bool same = t.check_drift().identical;
    repaired[std::size_t(g)] = fixed && same;
    const auto all = nc.allgather(std::string(std::size_t(g) * 3, char('a' + g)), "strings");
    strings[std::size_t(g)] = all[0] + "|" + all[1] + "|" + all[2];
  });
  for (int g = 0; g < 3; ++g) {
    INFO("rank " << g << ": " << errors[std::size_t(g)]);
    CHECK(errors[std::size_t(g)].empty());
    CHECK(rel[std::size_t(g)] <= 1e-6);
    CHECK(identical[std::size_t(g)]);
    CHECK(repaired[std::size_t(g)]);
    CHECK(strings[std::size_t(g)] == "|bbb|cccccc");
  }
  WARN("fake-NCCL data parallel (3 ranks, float64, 5 steps) vs one process: max relative difference "
       << *std::max_element(rel.begin(), rel.end()));
}

TEST_CASE("comm::nccl (fake devices): a bucketed all-reduce sums every bucket and reports the buffer once",
          "[parallel][nccl]") {
  // 1003 values in buckets of 100 (11 buckets, the last one short), in place ("device" memory) and
  // staged from host memory: every element summed over the 2 ranks, on_bucket_done called once on
  // the whole buffer (so a callback that waits for the device waits once per step)
  for (const bool host_pointer : {false, true}) {
    CAPTURE(host_pointer);
    std::vector<std::vector<std::pair<std::size_t, std::size_t>>> ranges(2);
    std::vector<std::size_t> wrong(2, 1);
    const auto errors = on_gpus(2, [&](int g, comm::nccl& nc) {
      std::vector<double> v(1003);
      for (std::size_t i = 0; i < v.size(); ++i) v[i] = double(i) * double(g + 1);
      nc.allreduce_sum_buckets(
          v.data(), v.size(), host_pointer, 100,
          [&](double* p, std::size_t n) { ranges[std::size_t(g)].emplace_back(std::size_t(p - v.data()), n); },
          "buckets");
      std::size_t bad = 0;
      for (std::size_t i = 0; i < v.size(); ++i) bad += v[i] != 3.0 * double(i);
      wrong[std::size_t(g)] = bad;
    });
    for (std::size_t g = 0; g < 2; ++g) {
      INFO("rank " << g << ": " << errors[g]);
      CHECK(errors[g].empty());
      CHECK(wrong[g] == 0);
      REQUIRE(ranges[g].size() == 1);
      CHECK(ranges[g][0] == std::make_pair(std::size_t(0), std::size_t(1003)));
    }
  }
}

TEST_CASE("comm::nccl (fake devices): mismatched settings fail on every rank", "[parallel][nccl]") {
  fixture d;
  const auto errors = on_gpus(2, [&](int g, comm::nccl& nc) {
    M64 model;
    train_options to;
    to.batch_size = g == 0 ? 8 : 16;
    parallel::data_parallel_trainer<M64, comm::nccl> t(model, nc, d.feat, d.train, to);
  });
  for (const auto& e : errors) CHECK_THAT(e, Catch::Contains("batch=8") && Catch::Contains("batch=16"));
}

TEST_CASE("comm::nccl (fake devices): a failing thread ends the others' collectives at once", "[parallel][nccl]") {
  // Rank 1 fails while rank 0 waits in a collective that cannot complete without it, and before
  // rank 2 has begun one. Without the shared failure flag both would wait out the 60 s timeout
  // and report it instead.
  const auto errors = on_gpus_raw(
      3,
      [&](int g, comm::nccl& nc) {
        nc.barrier("warm-up");  // all three complete this one
        if (g == 1) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          throw value_error("rank 1 failed on purpose");
        }
        if (g == 2) std::this_thread::sleep_for(std::chrono::milliseconds(600));
        nc.barrier("after the failure");
      },
      60.0);
  REQUIRE(errors.size() == 3);
  CHECK_THAT(message(errors[1]), Catch::Contains("rank 1 failed on purpose"));
  for (const int g : {0, 2}) {
    INFO("rank " << g << ": " << message(errors[std::size_t(g)]));
    CHECK_THROWS_AS(std::rethrow_exception(errors[std::size_t(g)]), comm::comm_abandoned);
    CHECK_THAT(message(errors[std::size_t(g)]),
               Catch::Contains("'after the failure' abandoned") && Catch::Contains("another thread of this process failed"));
  }
  // what train_nccl reports: the error that started it, whatever the thread order
  CHECK_THROWS_WITH(comm::nccl::rethrow_first(errors), Catch::Contains("rank 1 failed on purpose"));
  CHECK_THROWS_WITH(comm::nccl::rethrow_first({nullptr, errors[2], errors[0]}), Catch::Contains("abandoned"));
  CHECK_NOTHROW(comm::nccl::rethrow_first({nullptr, nullptr}));
}

TEST_CASE("comm::nccl (fake devices): a rank that never joins a collective times out", "[parallel][nccl]") {
  // rank 1 returns without joining (no failure to report): rank 0's bounded wait ends it
  const auto errors = on_gpus(
      2,
      [&](int g, comm::nccl& nc) {
        if (g == 0) nc.barrier("lonely barrier");
      },
      0.5);
  CHECK_THAT(errors[0], Catch::Contains("'lonely barrier' did not complete within 0.5 s") &&
                            Catch::Contains("the communicator was aborted"));
  CHECK(errors[1].empty());
}
