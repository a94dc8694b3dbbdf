// The CPU backend's thread pool (cpu_detail::thread_pool / parallel_for / parallel_for_balanced):
// every index runs once, parallel_for_balanced's pieces are fixed by its arguments and a slowed
// thread takes fewer of them,
// exceptions thrown on a worker or on the caller reach the caller (and the pool stays usable),
// nested loops and loops started from several user threads at once run inline with the same result;
// the same with the pool's threads spinning or blocking between loops.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include <genlm/backend/cpu.hpp>

using namespace genlm;

namespace {
/// The pieces (lo, hi) that parallel_for_balanced hands out, sorted.
std::vector<std::pair<index_t, index_t>> balanced_pieces(index_t n, int threads, index_t grain, double head) {
  std::mutex m;
  std::vector<std::pair<index_t, index_t>> p;
  cpu_detail::parallel_for_balanced(n, threads, grain, head, [&](index_t lo, index_t hi) {
    std::lock_guard<std::mutex> lk(m);
    p.emplace_back(lo, hi);
  });
  std::sort(p.begin(), p.end());
  return p;
}
}  // namespace

TEST_CASE("parallel_for covers 0..n-1 exactly once for any split", "[threads]") {
  for (index_t n : {0, 1, 2, 3, 7, 64, 1000})
    for (int threads : {1, 2, 3, 5, 8}) {
      CAPTURE(n, threads);
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      cpu_detail::parallel_for(n, threads, 1, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) hits[std::size_t(i)].fetch_add(1);
      });
      for (auto& h : hits) CHECK(h.load() == 1);
    }
}

TEST_CASE("parallel_for_balanced covers 0..n-1 once, in pieces fixed by its arguments", "[threads]") {
  for (index_t n : {0, 1, 2, 5, 20, 48, 101})
    for (int threads : {1, 2, 3})
      for (index_t grain : {1, 3})
        for (double head : {0.0, 0.7, 1.0}) {
          CAPTURE(n, threads, grain, head);
          const auto p = balanced_pieces(n, threads, grain, head);
          index_t at = 0;  // the pieces tile [0, n): no gap, no overlap, none empty
          for (const auto& [lo, hi] : p) {
            CHECK(lo == at);
            CHECK(hi > lo);
            at = hi;
          }
          CHECK(at == n);
          const index_t t = std::min<index_t>(threads, n / grain);
          if (t <= 1) {
            CHECK(p.size() == (n > 0 ? 1u : 0u));
            continue;
          }
          // t large pieces first, then pieces of at most one grain
          const index_t big = p[0].second - p[0].first;
          CHECK(big >= grain);
          CHECK(big <= n / t);
          for (std::size_t i = 0; i < p.size(); ++i)
            CHECK(p[i].second - p[i].first == (i < std::size_t(t) ? big : std::min(grain, n - p[i].first)));
          CHECK(balanced_pieces(n, threads, grain, head) == p);  // the same pieces in every run
        }
}

TEST_CASE("parallel_for_balanced: the small pieces are whole grains, as many per thread", "[threads]") {
  // {n, threads, grain, head, expected large piece, expected small pieces}
  struct row {
    index_t n;
    int threads;
    index_t grain;
    double head;
    index_t big, small;
  };
  for (const row r : {row{20, 2, 2, 0.8, 8, 2},    // 1280 columns of 64, two-block grains (NT products)
                      row{48, 2, 2, 0.8, 18, 6},   // 3072 columns: 20% = 4.8 blocks, rounded up to 3 x 2 per thread
                      row{38, 2, 2, 0.8, 15, 4},   // 2400 rows
                      row{20, 2, 1, 0.7, 7, 6},    // (1 - 0.7) * 20 / 2 is 3.0000000000000004: still 3 per thread
                      row{40, 2, 1, 0.5, 10, 20},  // the slowed-thread case below
                      row{21, 2, 1, 1.0, 10, 1},   // head 1: halves, the odd index a piece of its own
                      row{30, 3, 2, 0.8, 8, 3}}) {
    CAPTURE(r.n, r.threads, r.grain, r.head);
    const auto p = balanced_pieces(r.n, r.threads, r.grain, r.head);
    REQUIRE(p.size() == std::size_t(r.threads + r.small));
    for (int i = 0; i < r.threads; ++i) CHECK(p[std::size_t(i)].second - p[std::size_t(i)].first == r.big);
    for (std::size_t i = std::size_t(r.threads); i < p.size(); ++i)
      CHECK(p[i].second - p[i].first == std::min(r.grain, r.n - p[i].first));
  }
}

TEST_CASE("dnnl_gemm's split: x W^T in two-block grains where there are two per thread, NN/TN in shares", "[threads]") {
  // NT: head 0.8, two-block grains (the paper's 20, 48 and 38 blocks on 2 threads)
  for (index_t blocks : {20, 48, 38}) {
    const auto s = cpu_detail::dnnl_gemm_split(true, blocks, 1, 2);
    CHECK(s.head == 0.8);
    CHECK(s.grain == 2);
  }
  // fewer than two two-block grains per thread: one-block grains, so 2-3 blocks still split over 2
  // threads (a grain of 2 would leave one piece: one thread)
  for (index_t blocks : {2, 3, 7}) {
    CAPTURE(blocks);
    const auto s = cpu_detail::dnnl_gemm_split(true, blocks, 1, 2);
    CHECK(s.grain == 1);
    CHECK(balanced_pieces(blocks, 2, s.grain, s.head).size() >= 2u);
  }
  CHECK(cpu_detail::dnnl_gemm_split(true, 8, 1, 2).grain == 2);
  CHECK(cpu_detail::dnnl_gemm_split(true, 20, 3, 2).grain == 3);  // a larger minimum grain wins
  CHECK(cpu_detail::dnnl_gemm_split(true, 20, 1, 1).grain == 2);  // one thread: runs inline anyway
  // NN / TN: head 1 (one share per thread), the minimum grain
  const auto nn = cpu_detail::dnnl_gemm_split(false, 48, 1, 2);
  CHECK(nn.head == 1.0);
  CHECK(nn.grain == 1);
  CHECK(cpu_detail::dnnl_gemm_split(false, 48, 4, 2).grain == 4);
}

TEST_CASE("parallel_for_balanced: a slowed thread takes fewer pieces than its fixed share", "[threads]") {
  // 2 threads, 40 indices: a large piece of 10 each, then 20 of one. Every index takes the caller
  // 1 ms and a worker 50 us, so while the caller runs one large piece the worker runs the other and
  // all the small ones: the caller runs fewer than 20 indices. With one fixed half per thread (or
  // head = 1) it would run 20. Timing decides which thread takes what, so the test only needs this
  // in one of 5 loops (a worker that the OS does not schedule for a whole loop is possible).
  const auto caller = std::this_thread::get_id();
  index_t fewest = 40;
  for (int rep = 0; rep < 5 && fewest >= 20; ++rep) {
    std::atomic<index_t> mine{0};
    std::vector<std::atomic<int>> hits(40);
    cpu_detail::parallel_for_balanced(40, 2, 1, 0.5, [&](index_t lo, index_t hi) {
      const bool on_caller = std::this_thread::get_id() == caller;
      for (index_t i = lo; i < hi; ++i) {
        hits[std::size_t(i)].fetch_add(1);
        std::this_thread::sleep_for(std::chrono::microseconds(on_caller ? 1000 : 50));
      }
      if (on_caller) mine += hi - lo;
    });
    for (auto& h : hits) REQUIRE(h.load() == 1);
    fewest = std::min(fewest, mine.load());
  }
  CHECK(fewest < 20);
}

TEST_CASE("parallel_for runs on more than one thread and reuses its workers", "[threads]") {
  // chunk 0 runs on the caller, the others on workers (claimed dynamically: a fast worker may take
  // two, and the caller takes those that no worker has claimed when it is done with its own); over
  // many loops no thread is started per loop: the pool keeps the workers it has
  auto& pool = cpu_detail::thread_pool::instance();
  cpu_detail::parallel_for(4, 4, 1, [](index_t, index_t) {});
  const std::size_t size = pool.workers();
  CHECK(size >= 3);
  std::vector<std::thread::id> workers;
  for (int rep = 0; rep < 50; ++rep) {
    std::vector<std::thread::id> ids(4);
    cpu_detail::parallel_for(4, 4, 1, [&](index_t lo, index_t hi) {
      // chunks 1-3 take a while, so that the workers get the CPU and claim some of them
      if (lo > 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      for (index_t i = lo; i < hi; ++i) ids[std::size_t(i)] = std::this_thread::get_id();
    });
    CHECK(ids[0] == std::this_thread::get_id());
    for (int i = 1; i < 4; ++i)
      if (ids[std::size_t(i)] != std::this_thread::get_id()) workers.push_back(ids[std::size_t(i)]);
  }
  CHECK(!workers.empty());  // of 150 chunks; in practice nearly all
  std::sort(workers.begin(), workers.end());
  const auto distinct = std::unique(workers.begin(), workers.end()) - workers.begin();
  CHECK(distinct >= 1);
  CHECK(std::size_t(distinct) <= size);
  CHECK(pool.workers() == size);
}

TEST_CASE("exceptions in parallel_for reach the caller and the pool keeps working", "[threads]") {
  for (index_t thrower : {0, 1, 3}) {
    CAPTURE(thrower);
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH(cpu_detail::parallel_for(4, 4, 1,
                                               [&](index_t lo, index_t) {
                                                 ran.fetch_add(1);
                                                 if (lo == thrower) throw std::runtime_error("task failed");
                                               }),
                      "task failed");
    CHECK(ran.load() == 4);  // the other chunks still ran to the end before the call returned
  }
  std::atomic<index_t> sum{0};
  cpu_detail::parallel_for(100, 4, 1, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) sum.fetch_add(i);
  });
  CHECK(sum.load() == 4950);
}

TEST_CASE("nested and concurrent parallel_for calls give the same results", "[threads]") {
  // nested: an inner loop inside a task runs inline on that task's thread
  std::vector<std::atomic<int>> grid(64);
  cpu_detail::parallel_for(8, 4, 1, [&](index_t lo, index_t hi) {
    for (index_t r = lo; r < hi; ++r)
      cpu_detail::parallel_for(8, 4, 1, [&](index_t c0, index_t c1) {
        for (index_t c = c0; c < c1; ++c) grid[std::size_t(r * 8 + c)].fetch_add(1);
      });
  });
  for (auto& g : grid) CHECK(g.load() == 1);

  // concurrent: two user threads each run many loops; whoever does not get the pool runs inline
  auto job = [](std::vector<double>& out) {
    for (int rep = 0; rep < 200; ++rep)
      cpu_detail::parallel_for(index_t(out.size()), 2, 1, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) out[std::size_t(i)] += double(i) * 0.5;
      });
  };
  std::vector<double> x(257, 0.0), y(257, 0.0);
  std::thread other([&] { job(y); });
  job(x);
  other.join();
  for (std::size_t i = 0; i < x.size(); ++i) {
    CHECK(x[i] == 100.0 * double(i));
    CHECK(y[i] == 100.0 * double(i));
  }
}

TEST_CASE("the pool gives the same results whether its threads spin, block, or both", "[threads]") {
  // spin 0: every wait blocks at once (futex); 300 us: back-to-back loops are picked up by
  // spinning workers; a pause longer than the spin between loops makes the workers block and the
  // next loop wake them. Each loop must still run every index once, and throw to the caller.
  const int before = cpu_detail::pool_spin_us();
  for (int spin : {0, 300, 20}) {
    CAPTURE(spin);
    cpu_detail::set_pool_spin_us(spin);
    CHECK(cpu_detail::pool_spin_us() == spin);
    for (int rep = 0; rep < 60; ++rep) {
      CAPTURE(rep);
      if (rep % 20 == 19) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // > every spin here
      std::vector<std::atomic<int>> hits(37);
      cpu_detail::parallel_for(37, 3, 1, [&](index_t lo, index_t hi) {
        for (index_t i = lo; i < hi; ++i) hits[std::size_t(i)].fetch_add(1);
      });
      for (auto& h : hits) REQUIRE(h.load() == 1);
    }
    CHECK_THROWS_WITH(cpu_detail::parallel_for(3, 3, 1,
                                               [&](index_t lo, index_t) {
                                                 if (lo == 2) throw std::runtime_error("late task failed");
                                               }),
                      "late task failed");
  }
  cpu_detail::set_pool_spin_us(-5);  // negative: no spin
  CHECK(cpu_detail::pool_spin_us() == 0);
  cpu_detail::set_pool_spin_us(before);
}
