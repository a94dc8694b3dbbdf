// genlm/backend/cpu_onednn.hpp - x W^T products (the forward's) through oneDNN's matmul primitive.
//
// Included by genlm/backend/cpu.hpp when GENLM_USE_DNNL is defined. cpu::dnnl_gemm sends x W^T
// products here, split into column pieces over its threads, and everything else to dnnl_sgemm.
//
// Why (docs/PERFORMANCE.md, eleventh session): oneDNN's matmul primitive runs its brgemm kernels
// only when the destination is dense. A piece of C's columns (row stride wider than the piece)
// falls back to "gemm:jit", the same kernel as dnnl_sgemm. With a dense destination, on the AMD
// Zen 4 guest, 1 thread, the paper's x W^T products ran 1.02-1.15x faster than dnnl_sgemm. That
// held for whole products and for column pieces of 128-1536 columns computed into a dense scratch
// block and copied out. The backward's NN / TN products ran 0.91-1.03x, so they stay on
// dnnl_sgemm.
//
// How: the calling thread prepares a job (matmul_nt_job::prepare). It looks up or builds one
// primitive per piece width, with per-task memory objects and streams, and sizes the scratch
// (dense blocks and oneDNN's scratchpad, per task). The primitives use a user-managed scratchpad,
// which oneDNN documents as safe to run on any thread as long as no two runs share a scratchpad
// buffer. Then any thread runs a piece with run_piece(task, lo, hi), using task `task`'s objects
// and scratch; a task runs its pieces one after another. All of this state belongs to the calling
// thread (matmul_state, thread_local), and only that thread creates or grows it. Which worker
// runs which piece therefore never causes an allocation: once a thread's products have each run
// once, it allocates nothing more of its own. oneDNN itself allocates a few small nodes per
// execution (its argument map) with operator new inside libdnnl; tests/test_allocations.cpp counts
// those apart, as the library's.
//
// Lifetime: a thread's state is never destroyed. Destroying oneDNN objects while the process
// exits is unsafe, because oneDNN's own statics may be gone by then. When a thread exits, its state
// goes back to a free list, and the next thread that needs one takes it over. So there are at most
// as many states as threads that used them at one time. All states stay reachable from a static
// list, so leak checkers do not report them.
//
// GENLM_ONEDNN_MATMUL=0 in the environment (read once) sends x W^T products to dnnl_sgemm as well;
// use it for A/B timings.
#pragma once
#if defined(GENLM_USE_DNNL)
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <genlm/core/error.hpp>
#include <genlm/core/tensor.hpp>

namespace genlm::cpu_detail {

/// Whether x W^T products use the matmul primitive (default) or dnnl_sgemm
/// (GENLM_ONEDNN_MATMUL=0). Read once.
inline bool onednn_matmul_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("GENLM_ONEDNN_MATMUL");
    return !(e && e[0] == '0' && e[1] == '\0');
  }();
  return on;
}

inline void onednn_check(dnnl_status_t st, const char* what, index_t m, index_t n, index_t k) {
  if (st != dnnl_success)
    throw error(std::string("cpu::gemm: oneDNN ") + what + " failed with status " + std::to_string(int(st)) +
                " for the x W^T product m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" +
                std::to_string(k));
}

/// The CPU engine, created once and never destroyed (see Lifetime above).
inline dnnl_engine_t onednn_engine() {
  static dnnl_engine_t e = [] {
    dnnl_engine_t x = nullptr;
    onednn_check(dnnl_engine_create(&x, dnnl_cpu, 0), "dnnl_engine_create", 0, 0, 0);
    return x;
  }();
  return e;
}

/// One primitive: C(m, n) = alpha A(m, k) B(n, k)^T + beta C with a dense C, user scratchpad.
struct matmul_plan {
  index_t m = 0, n = 0, k = 0, lda = 0, ldb = 0;
  float alpha = 0, beta = 0;
  dnnl_primitive_t prim = nullptr;
  dnnl_memory_desc_t ad{}, bd{}, cd{}, sd{};  // A, B^T, C, scratchpad
  std::size_t scratchpad_floats = 0;
  struct task_mem {
    dnnl_memory_t a = nullptr, b = nullptr, c = nullptr, s = nullptr;  // data pointers set per run
  };
  std::vector<task_mem> mem;  // per task
  std::uint64_t last_used = 0;

  bool matches(index_t m_, index_t n_, index_t k_, index_t lda_, index_t ldb_, float alpha_, float beta_) const {
    return prim && m == m_ && n == n_ && k == k_ && lda == lda_ && ldb == ldb_ && alpha == alpha_ && beta == beta_;
  }
  void check(dnnl_status_t st, const char* what) const { onednn_check(st, what, m, n, k); }

  void build(index_t m_, index_t n_, index_t k_, index_t lda_, index_t ldb_, float alpha_, float beta_) {
    release();
    m = m_, n = n_, k = k_, lda = lda_, ldb = ldb_, alpha = alpha_, beta = beta_;
    // src A (m, k) row stride lda; weights B^T (k, n): element (kk, j) at B[j * ldb + kk]; dst (m, n).
    const dnnl_dims_t adims{m, k}, astr{lda, 1}, bdims{k, n}, bstr{1, ldb}, cdims{m, n}, cstr{n, 1};
    check(dnnl_memory_desc_init_by_strides(&ad, 2, adims, dnnl_f32, astr), "memory_desc_init (A)");
    check(dnnl_memory_desc_init_by_strides(&bd, 2, bdims, dnnl_f32, bstr), "memory_desc_init (B)");
    check(dnnl_memory_desc_init_by_strides(&cd, 2, cdims, dnnl_f32, cstr), "memory_desc_init (C)");
    dnnl_matmul_desc_t md;
    check(dnnl_matmul_desc_init(&md, &ad, &bd, nullptr, &cd), "matmul_desc_init");
    dnnl_primitive_attr_t attr = nullptr;
    dnnl_post_ops_t po = nullptr;
    dnnl_primitive_desc_t pd = nullptr;
    auto cleanup = [&] {
      if (pd) dnnl_primitive_desc_destroy(pd);
      if (po) dnnl_post_ops_destroy(po);
      if (attr) dnnl_primitive_attr_destroy(attr);
    };
    try {
      check(dnnl_primitive_attr_create(&attr), "primitive_attr_create");
      check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "set_scratchpad_mode");
      if (alpha != 1.0f) check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "set_output_scales");
      if (beta != 0.0f) {  // C = alpha A B^T + beta C
        check(dnnl_post_ops_create(&po), "post_ops_create");
        check(dnnl_post_ops_append_sum(po, beta), "post_ops_append_sum");
        check(dnnl_primitive_attr_set_post_ops(attr, po), "set_post_ops");
      }
      check(dnnl_primitive_desc_create(&pd, &md, attr, onednn_engine(), nullptr), "primitive_desc_create (matmul)");
      const dnnl_memory_desc_t* s = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
      sd = s ? *s : dnnl_memory_desc_t{};
      scratchpad_floats = s ? (dnnl_memory_desc_get_size(s) + sizeof(float) - 1) / sizeof(float) : 0;
      check(dnnl_primitive_create(&prim, pd), "primitive_create (matmul)");
    } catch (...) {
      cleanup();
      release();
      throw;
    }
    cleanup();
  }

  /// Memory objects for tasks 0..tasks-1.
  void reserve_tasks(index_t tasks) {
    const dnnl_engine_t eng = onednn_engine();
    while (index_t(mem.size()) < tasks) {
      task_mem t;
      try {
        check(dnnl_memory_create(&t.a, &ad, eng, DNNL_MEMORY_NONE), "memory_create (A)");
        check(dnnl_memory_create(&t.b, &bd, eng, DNNL_MEMORY_NONE), "memory_create (B)");
        check(dnnl_memory_create(&t.c, &cd, eng, DNNL_MEMORY_NONE), "memory_create (C)");
        if (scratchpad_floats) check(dnnl_memory_create(&t.s, &sd, eng, DNNL_MEMORY_NONE), "memory_create (scratchpad)");
      } catch (...) {
        destroy(t);
        throw;
      }
      mem.push_back(t);
    }
  }

  /// Runs on the calling thread with task `task`'s memory objects; D is dense (m, n).
  void run(index_t task, dnnl_stream_t stream, const float* A, const float* B, float* D, float* scratchpad) const {
    const task_mem& t = mem[std::size_t(task)];
    check(dnnl_memory_set_data_handle(t.a, const_cast<float*>(A)), "memory_set_data_handle (A)");
    check(dnnl_memory_set_data_handle(t.b, const_cast<float*>(B)), "memory_set_data_handle (B)");
    check(dnnl_memory_set_data_handle(t.c, D), "memory_set_data_handle (C)");
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, t.a}, {DNNL_ARG_WEIGHTS, t.b}, {DNNL_ARG_DST, t.c}, {DNNL_ARG_SCRATCHPAD, t.s}};
    if (t.s) check(dnnl_memory_set_data_handle(t.s, scratchpad), "memory_set_data_handle (scratchpad)");
    check(dnnl_primitive_execute(prim, stream, t.s ? 4 : 3, args), "primitive_execute (matmul)");
  }

  static void destroy(task_mem& t) {
    for (dnnl_memory_t x : {t.a, t.b, t.c, t.s})
      if (x) dnnl_memory_destroy(x);
    t = task_mem{};
  }
  void release() {
    for (auto& t : mem) destroy(t);
    mem.clear();
    if (prim) dnnl_primitive_destroy(prim);
    prim = nullptr;
  }
};

/// A calling thread's primitives (at most `capacity`, least recently used replaced), per-task
/// streams and scratch.
struct matmul_state {
  static constexpr std::size_t capacity = 32;
  std::vector<matmul_plan> plans;
  std::vector<dnnl_stream_t> streams;  // per task
  std::vector<float> scratch;          // per task: [dense block | scratchpad]
  std::uint64_t calls = 0;

  matmul_state() { plans.reserve(capacity); }

  matmul_plan& plan(index_t m, index_t n, index_t k, index_t lda, index_t ldb, float alpha, float beta) {
    for (auto& p : plans)
      if (p.matches(m, n, k, lda, ldb, alpha, beta)) return p;
    matmul_plan* slot = nullptr;
    if (plans.size() < capacity) {
      slot = &plans.emplace_back();
    } else {  // the least recently used; never one of this call's (they have last_used == calls)
      slot = &*std::min_element(plans.begin(), plans.end(),
                                [](const matmul_plan& a, const matmul_plan& b) { return a.last_used < b.last_used; });
    }
    slot->build(m, n, k, lda, ldb, alpha, beta);
    return *slot;
  }
  void reserve_streams(index_t tasks) {
    while (index_t(streams.size()) < tasks) {
      dnnl_stream_t s = nullptr;
      onednn_check(dnnl_stream_create(&s, onednn_engine(), dnnl_stream_default_flags), "stream_create", 0, 0, 0);
      streams.push_back(s);
    }
  }
};

/// Every thread's state (`all`), and those of exited threads (`free`), for the next thread.
struct matmul_registry {
  std::mutex mu;
  std::vector<matmul_state*> all, free;
};
inline matmul_registry& onednn_matmul_registry() {
  static matmul_registry* reg = new matmul_registry;  // never destroyed: outlives every thread's exit
  return *reg;
}

/// How many thread states exist (at most the number of threads that used them at one time).
inline std::size_t onednn_matmul_states() {
  matmul_registry& reg = onednn_matmul_registry();
  std::lock_guard<std::mutex> lk(reg.mu);
  return reg.all.size();
}

/// The calling thread's state: taken from the free list of exited threads' states, else new.
inline matmul_state& this_thread_matmul_state() {
  struct holder {
    matmul_state* s = nullptr;
    ~holder() {
      if (!s) return;
      matmul_registry& r = onednn_matmul_registry();
      std::lock_guard<std::mutex> lk(r.mu);
      r.free.push_back(s);  // no oneDNN call here: safe during process exit
    }
  };
  thread_local holder h;
  if (!h.s) {
    matmul_registry& r = onednn_matmul_registry();
    std::lock_guard<std::mutex> lk(r.mu);
    if (!r.free.empty()) {
      h.s = r.free.back();
      r.free.pop_back();
    } else {
      h.s = new matmul_state;
      r.all.push_back(h.s);
    }
  }
  return *h.s;
}

/// C(m, n) = alpha A(m, k) B(n, k)^T + beta C (row-major; beta == 0 never reads C) in pieces of
/// C's columns (by_cols) or rows: prepare in the calling thread (the constructor), then
/// run_piece(task, lo, hi) for each piece on any thread, no two at once with the same task. A
/// piece that is not a dense block of C (a column piece of a wider C, or any piece when C's row
/// stride is wider than n) is computed into task `task`'s dense block and copied out.
class matmul_nt_job {
 public:
  static constexpr int max_sizes = 4;
  /// `sizes`: every piece size (columns or rows) that will be run; `tasks`: the number of tasks.
  matmul_nt_job(bool by_cols, index_t m, index_t n, index_t k, float alpha, const float* A, index_t lda,
                const float* B, index_t ldb, float beta, float* C, index_t ldc, const index_t* sizes, int nsizes,
                index_t tasks)
      : by_cols_(by_cols), m_(m), n_(n), lda_(lda), ldb_(ldb), ldc_(ldc), beta_(beta), A_(A), B_(B), C_(C),
        st_(this_thread_matmul_state()) {
    check(nsizes >= 1 && nsizes <= max_sizes, "matmul_nt_job: 1 to ", max_sizes, " piece sizes, got ", nsizes);
    const std::uint64_t call = ++st_.calls;
    std::size_t scratchpad = 0;
    index_t dense = 0;  // floats of the largest dense block a task needs
    for (int i = 0; i < nsizes; ++i) {
      const index_t m1 = by_cols ? m : sizes[i], n1 = by_cols ? sizes[i] : n;
      matmul_plan& p = st_.plan(m1, n1, k, lda, ldb, alpha, beta);
      p.last_used = call;
      p.reserve_tasks(tasks);
      plans_[i] = &p;
      scratchpad = std::max(scratchpad, p.scratchpad_floats);
      if (!dense_block(n1)) dense = std::max(dense, m1 * n1);
    }
    nsizes_ = nsizes;
    st_.reserve_streams(tasks);
    // per task: a dense block, then the scratchpad, each at a 64-byte boundary
    dense_ = std::size_t(dense + 15) / 16 * 16;
    per_task_ = dense_ + (scratchpad + 15) / 16 * 16;
    const std::size_t need = per_task_ * std::size_t(tasks) + 16;
    if (st_.scratch.size() < need) st_.scratch.resize(need);
    const auto base = reinterpret_cast<std::uintptr_t>(st_.scratch.data());
    scratch_ = st_.scratch.data() + (64 - base % 64) % 64 / sizeof(float);
  }

  /// Columns (by_cols) or rows [lo, hi) of C, on the calling thread, with task `task`'s objects.
  void run_piece(index_t task, index_t lo, index_t hi) const {
    const index_t m1 = by_cols_ ? m_ : hi - lo, n1 = by_cols_ ? hi - lo : n_;
    const matmul_plan* p = nullptr;
    for (int i = 0; i < nsizes_; ++i)
      if (plans_[i]->m == m1 && plans_[i]->n == n1) p = plans_[i];
    check(p != nullptr, "matmul_nt_job: no primitive prepared for a piece of ", m1, " x ", n1);
    float* mine = scratch_ + per_task_ * std::size_t(task);
    const float* A = by_cols_ ? A_ : A_ + lo * lda_;
    const float* B = by_cols_ ? B_ + lo * ldb_ : B_;
    float* C = by_cols_ ? C_ + lo : C_ + lo * ldc_;
    const bool direct = dense_block(n1);
    float* D = direct ? C : mine;
    if (!direct && beta_ != 0.0f)
      for (index_t i = 0; i < m1; ++i) std::memcpy(D + i * n1, C + i * ldc_, sizeof(float) * std::size_t(n1));
    p->run(task, st_.streams[std::size_t(task)], A, B, D, mine + dense_);
    if (!direct)
      for (index_t i = 0; i < m1; ++i) std::memcpy(C + i * ldc_, D + i * n1, sizeof(float) * std::size_t(n1));
  }

 private:
  /// Whether a piece n1 columns wide is a dense block of C (its rows contiguous).
  bool dense_block(index_t n1) const { return n1 == n_ && ldc_ == n_; }

  bool by_cols_;
  index_t m_, n_, lda_, ldb_, ldc_;
  float beta_;
  const float* A_;
  const float* B_;
  float* C_;
  matmul_state& st_;
  matmul_plan* plans_[max_sizes] = {};
  int nsizes_ = 0;
  std::size_t dense_ = 0, per_task_ = 0;
  float* scratch_ = nullptr;
};

/// The whole product on the calling thread (one piece, task 0).
inline void onednn_matmul_nt(index_t m, index_t n, index_t k, float alpha, const float* A, index_t lda,
                             const float* B, index_t ldb, float beta, float* C, index_t ldc) {
  const matmul_nt_job job(true, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, &n, 1, 1);
  job.run_piece(0, 0, n);
}

}  // namespace genlm::cpu_detail
#endif
