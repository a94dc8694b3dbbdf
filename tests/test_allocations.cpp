// No per-step heap allocations: once warmed up, an inference forward pass and a training step
// (forward + masked-gene loss + backward + AdamW, as trainer::step does them) of a gLM on the CPU
// backend reuse their workspaces and allocate nothing.
//
// This executable replaces the global operator new / delete (every form: plain, array, nothrow,
// aligned, sized) with versions that count the allocations made while a counting_scope is alive,
// on every thread (the backend's thread pool included). While counting, the first allocations'
// call stacks are recorded (backtrace()) and printed when a check fails, so a failure names the
// code that allocated (symbol names need -rdynamic, set for this target in tests/CMakeLists.txt).
// Not counted: memory that libraries take with malloc / posix_memalign directly (OpenBLAS, oneDNN).
// Counted apart, as the library's (library_allocations): operator new calls made while a frame
// of libdnnl is on the stack. genlm passes no callbacks to oneDNN, so such a call is oneDNN's own;
// dnnl_primitive_execute builds its argument map that way: 6 small nodes per call with oneDNN
// 2.6 (the test "allocations inside oneDNN ..." prints the count), freed before it returns
// (genlm/backend/cpu_onednn.hpp). Those are reported, but not required to be 0.
#include <catch2/catch.hpp>

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include <genlm/genlm.hpp>
#include <genlm/model/glm.hpp>
#include <genlm/train/loss_scaler.hpp>
#include <genlm/train/masked_gene_loss.hpp>
#include <genlm/train/masking.hpp>
#include <genlm/train/optimizer.hpp>
#include <genlm/train/simulated_task.hpp>
#include <genlm/train/trainer.hpp>
#include <genlm/parallel/data_parallel.hpp>

// ---------------------------------------------------------------- counting operator new / delete
namespace alloc_count {

std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
std::atomic<long> bytes{0};
std::atomic<long> library_allocations{0};  // made inside libdnnl (see the top of this file)

// Call stacks of the first allocations seen while counting.
constexpr int max_traces = 1024, max_frames = 32;
struct trace {
  std::size_t size = 0;
  std::size_t align = 0;
  int frames = 0;
  std::array<void*, max_frames> pc{};
};
std::array<trace, max_traces> traces;
std::atomic<int> next_trace{0};
thread_local bool in_hook = false;  // backtrace() itself must not be recorded

/// libdnnl's load address (dladdr's dli_fbase of one of its functions), or null without oneDNN.
const void* dnnl_base() {
#if defined(GENLM_USE_DNNL)
  static const void* base = [] {
    Dl_info info{};
    return ::dladdr(reinterpret_cast<void*>(&dnnl_primitive_execute), &info) ? info.dli_fbase : nullptr;
  }();
  return base;
#else
  return nullptr;
#endif
}

/// Whether a frame of the calling thread's stack lies in libdnnl.
bool inside_onednn() {
  const void* base = dnnl_base();
  if (!base) return false;
  std::array<void*, 64> pc{};
  const int frames = ::backtrace(pc.data(), int(pc.size()));
  for (int f = 0; f < frames; ++f) {
    Dl_info info{};
    if (::dladdr(pc[std::size_t(f)], &info) && info.dli_fbase == base) return true;
  }
  return false;
}

inline void record(std::size_t n, std::size_t align) {
  if (!counting.load(std::memory_order_relaxed) || in_hook) return;
  in_hook = true;
  const bool library = inside_onednn();
  in_hook = false;
  if (library) {
    library_allocations.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  allocations.fetch_add(1, std::memory_order_relaxed);
  bytes.fetch_add(long(n), std::memory_order_relaxed);
  const int i = next_trace.fetch_add(1, std::memory_order_relaxed);
  if (i < max_traces) {
    in_hook = true;
    trace& t = traces[std::size_t(i)];
    t.size = n;
    t.align = align;
    t.frames = ::backtrace(t.pc.data(), max_frames);
    in_hook = false;
  }
}

inline void* allocate(std::size_t n, std::size_t align) noexcept {
  record(n, align);
  if (n == 0) n = 1;
  if (align <= alignof(std::max_align_t)) return std::malloc(n);
  // aligned_alloc wants a size that is a multiple of the alignment (a power of two here).
  return std::aligned_alloc(align, (n + align - 1) & ~(align - 1));
}

// The throwing forms: retry through the new-handler, as the standard operator new does.
inline void* allocate_or_throw(std::size_t n, std::size_t align) {
  for (;;) {
    if (void* p = allocate(n, align)) return p;
    std::new_handler h = std::get_new_handler();
    if (!h) throw std::bad_alloc();
    h();
  }
}

inline void* allocate_nothrow(std::size_t n, std::size_t align) noexcept {
  try {
    return allocate_or_throw(n, align);
  } catch (...) {
    return nullptr;
  }
}

// malloc and aligned_alloc memory are both released with free.
inline void release(void* p) noexcept { std::free(p); }

void reset() {
  allocations = 0;
  bytes = 0;
  library_allocations = 0;
  next_trace = 0;
}

/// Counts the allocations of every thread while alive.
struct counting_scope {
  counting_scope() {
    reset();
    counting = true;
  }
  ~counting_scope() { counting = false; }
  counting_scope(const counting_scope&) = delete;
  counting_scope& operator=(const counting_scope&) = delete;
};

/// "ns::f<A, B>::g(int, x<y>) const" -> "ns::f<>::g()": template and function arguments dropped.
std::string short_name(const std::string& s) {
  std::string out;
  int angle = 0, paren = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (s.compare(i, 21, "(anonymous namespace)") == 0) {
      if (angle == 0 && paren == 0) out += "{anon}";
      i += 20;
      continue;
    }
    if (s.compare(i, 10, "operator()") == 0 && angle == 0 && paren == 0) {
      out += "operator()";
      i += 9;
      continue;
    }
    if (c == '<' && paren == 0 && !(i > 0 && s[i - 1] == '<') && !(i + 1 < s.size() && s[i + 1] == '<')) {
      if (angle++ == 0) out += "<>";
    } else if (c == '>' && angle > 0 && paren == 0) {
      --angle;
    } else if (c == '(') {
      if (paren++ == 0 && angle == 0) out += "()";
    } else if (c == ')' && paren > 0) {
      --paren;
    } else if (angle == 0 && paren == 0) {
      out += c;
    }
  }
  return out;
}

/// The distinct call stacks of the allocations recorded by the last counting_scope (the first
/// max_traces of them), with how often each occurred; frames as "function [binary+0xoffset]"
/// (addr2line -C -f -i -e binary 0xoffset gives the source line of a build with -g; inlined
/// callees show up as their caller). Runs outside a counting scope: it allocates itself.
std::string report(int frames_shown = 8) {
  const int n = std::min(next_trace.load(), max_traces);
  struct site {
    std::string stack;
    long times = 0, bytes = 0;
  };
  std::vector<site> sites;
  for (int i = 0; i < n; ++i) {
    const trace& t = traces[std::size_t(i)];
    std::string stack;
    for (int f = 1, shown = 0; f < t.frames && shown < frames_shown; ++f) {
      Dl_info info{};
      if (!::dladdr(t.pc[std::size_t(f)], &info) || !info.dli_fname || !info.dli_sname)
        continue;  // no exported name (internal linkage: this file's helpers)
      int status = 0;
      char* d = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
      const std::string name = status == 0 && d ? d : info.dli_sname;
      std::free(d);
      if (name.rfind("alloc_count::", 0) == 0 || name.rfind("operator new", 0) == 0) continue;  // the hook
      if (name.rfind("Catch::", 0) == 0) break;  // the test runner from here on
      char off[32];
      std::snprintf(off, sizeof off, "+0x%lx",
                    (unsigned long)(static_cast<char*>(t.pc[std::size_t(f)]) - static_cast<char*>(info.dli_fbase) - 1));
      const char* base = std::strrchr(info.dli_fname, '/');
      stack += "    " + short_name(name) + " [" + (base ? base + 1 : info.dli_fname) + off + "]\n";
      ++shown;
    }
    auto it = std::find_if(sites.begin(), sites.end(), [&](const site& x) { return x.stack == stack; });
    if (it == sites.end()) it = sites.insert(sites.end(), site{stack});
    ++it->times;
    it->bytes += long(t.size);
  }
  std::string out;
  for (std::size_t j = 0; j < sites.size(); ++j)
    out += "call stack " + std::to_string(j + 1) + ": " + std::to_string(sites[j].times) + " allocation(s), " +
           std::to_string(sites[j].bytes) + " bytes\n" + sites[j].stack;
  if (allocations.load() > n) out += "(" + std::to_string(allocations.load() - n) + " more not traced)\n";
  return out;
}

// Loads the unwinder (libgcc_s) before anything is counted: the first backtrace() call dlopens it.
const bool warmed = [] {
  void* pc[4];
  dnnl_base();  // dladdr's first call may allocate too
  return ::backtrace(pc, 4) >= 0;
}();

}  // namespace alloc_count

void* operator new(std::size_t n) { return alloc_count::allocate_or_throw(n, 0); }
void* operator new[](std::size_t n) { return alloc_count::allocate_or_throw(n, 0); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return alloc_count::allocate_nothrow(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return alloc_count::allocate_nothrow(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return alloc_count::allocate_or_throw(n, std::size_t(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return alloc_count::allocate_or_throw(n, std::size_t(a)); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return alloc_count::allocate_nothrow(n, std::size_t(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return alloc_count::allocate_nothrow(n, std::size_t(a));
}

void operator delete(void* p) noexcept { alloc_count::release(p); }
void operator delete[](void* p) noexcept { alloc_count::release(p); }
void operator delete(void* p, std::size_t) noexcept { alloc_count::release(p); }
void operator delete[](void* p, std::size_t) noexcept { alloc_count::release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { alloc_count::release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { alloc_count::release(p); }
void operator delete(void* p, std::align_val_t) noexcept { alloc_count::release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { alloc_count::release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { alloc_count::release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { alloc_count::release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { alloc_count::release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { alloc_count::release(p); }

// ---------------------------------------------------------------- the workloads
using namespace genlm;

namespace {

/// Big enough that the CPU backend's threaded paths run with 2 threads (GELU, softmax and AdamW
/// loops split, layer-norm backward's parameter thread, oneDNN products split by blocks): 540 rows
/// x 256 hidden >= 2^17 elements; still a few milliseconds per step.
constexpr model_config wide{1, 256, 4, 512, 32, 7, 4, 32, 30};

/// Restores the backend's thread count.
struct thread_count_scope {
  int saved = cpu::num_threads();
  explicit thread_count_scope(int n) { cpu::set_num_threads(n); }
  ~thread_count_scope() { cpu::set_num_threads(saved); }
};

/// A model, a fixed batch with masked genes, and the state a training step keeps between steps
/// (the trainer's members: input tensors, loss-gradient vectors and tensors, AdamW, loss scaler).
template <model_config C>
struct workload {
  using T = float;
  using model_t = GLM<C, cpu, T>;
  using tensor_t = tensor<T, cpu>;
  index_t B, L;
  model_t model;
  adamw<T, cpu> adam;
  loss_scaler scaler = loss_scaler::for_backend<cpu>();
  lr_schedule schedule = lr_schedule::make_constant_with_warmup(1e-4, 2);
  masked_gene_loss_options loss_opt;
  tensor_t x, mask, d_hyp, d_log;
  std::vector<gene_pos> masked;
  std::vector<double> labels;
  std::vector<T> g_hyp, g_log, h_hyp, h_log;
  masked_gene_loss_workspace loss_ws;
  std::uint64_t step_no = 0;
  double last_loss = 0;

  workload(index_t B_, index_t L_) : B(B_), L(L_), model(model_options{}), adam(model.parameters()) {
    rng g(1, 7);
    std::vector<T> hx(std::size_t(B * L * C.input_dim()));
    for (auto& v : hx) v = T(g.normal());
    std::vector<T> hm(std::size_t(B * L), T(1));
    for (index_t l = L - 3; l < L; ++l) hm[std::size_t((B - 1) * L + l)] = T(0);  // some padding
    rng mg(3, 0);
    masked = mask_genes(hx, hm, B, L, C.input_dim(), mg);
    REQUIRE(!masked.empty());
    labels.resize(masked.size() * std::size_t(C.label_dim()));
    for (auto& v : labels) v = g.normal();
    x.from_host({B, L, C.input_dim()}, hx);
    mask.from_host({B, L}, hm);
  }

  /// Inference forward (eval mode: no dropout).
  void forward() { model.forward(run_context{}, x, mask); }

  /// One training step from trainer::step's forward on: forward with dropout, masked-gene loss
  /// and its gradients on the host, backward, loss-scaler check, AdamW with clip_grad_value 1.
  /// `phase` (5 entries) receives the allocations of forward, loss, gradient upload, backward and
  /// optimizer (the counts of a counting_scope around each). Returns false when the gradients were
  /// not finite (no AdamW step then, as in trainer::step).
  bool train_step(long* phase = nullptr) {
    auto counted = [&](int i, auto&& f) {
      if (!phase) return f();
      alloc_count::counting_scope s;
      f();
      phase[i] += alloc_count::allocations.load();
    };
    run_context ctx;
    ctx.training = true;
    ctx.seed = 11;
    ctx.step = step_no++;
    const tensor_t* hyp = nullptr;
    const tensor_t* logits = nullptr;
    counted(0, [&] {
      auto out = model.forward(ctx, x, mask);
      hyp = &out.hypotheses;
      logits = &out.logits;
    });
    const index_t K = C.hypotheses, D = C.label_dim();
    counted(1, [&] {
      hyp->to_host(h_hyp);  // as trainer::step: host copies and loss scratch kept across steps
      logits->to_host(h_log);
      last_loss = masked_gene_loss<T>(h_hyp, h_log, B, L, K, D, masked, labels, &g_hyp, &g_log, loss_opt, loss_ws).loss;
    });
    counted(2, [&] {
      d_hyp.from_host({B, L, K, D}, g_hyp);
      d_log.from_host({B, L, K}, g_log);
    });
    bool finite = true;
    counted(3, [&] {
      model.backward(d_hyp, d_log);
      finite = scaler.unscale_and_check(model.parameters());
    });
    if (finite) counted(4, [&] { adam.step(model.parameters(), schedule.at(adam.steps()), 1.0); });
    return finite;
  }
};

constexpr int warmup_steps = 3, counted_steps = 3;

struct measured {
  long allocations = 0, bytes = 0;
  long library = 0;  // made inside oneDNN (not required to be 0; see the top of this file)
};

/// Runs f() counted_steps times in a counting scope; prints the allocating call stacks to stderr
/// when there were any.
template <class F>
measured count_allocations(const std::string& what, F&& f) {
  measured m;
  {
    alloc_count::counting_scope s;
    for (int i = 0; i < counted_steps; ++i) f();
    m.allocations = alloc_count::allocations.load();
    m.bytes = alloc_count::bytes.load();
    m.library = alloc_count::library_allocations.load();
  }
  if (m.allocations)
    std::fprintf(stderr, "%s: %ld allocation(s), %ld bytes in %d steps after warm-up:\n%s\n", what.c_str(),
                 m.allocations, m.bytes, counted_steps, alloc_count::report().c_str());
  return m;
}

template <model_config C>
std::string describe(const char* what, index_t B, index_t L, int threads) {
  return std::string(what) + ", config " + C.str() + ", batch " + std::to_string(B) + " x " + std::to_string(L) +
         ", " + std::to_string(threads) + " thread(s)";
}

template <model_config C>
void check_forward(index_t B, index_t L, int threads) {
  thread_count_scope tc(threads);
  workload<C> w(B, L);
  for (int i = 0; i < warmup_steps; ++i) w.forward();
  const std::string what = describe<C>("inference forward", B, L, threads);
  const measured m = count_allocations(what, [&] { w.forward(); });
  INFO(what << ": " << m.allocations << " allocation(s) (" << m.bytes << " bytes) in " << counted_steps
            << " forward passes after warm-up (call stacks on stderr); inside oneDNN: " << m.library);
  CHECK(m.allocations == 0);
}

template <model_config C>
void check_train(index_t B, index_t L, int threads) {
  thread_count_scope tc(threads);
  workload<C> w(B, L);
  bool finite = true;
  for (int i = 0; i < warmup_steps; ++i) finite = w.train_step() && finite;
  const std::string what = describe<C>("training step", B, L, threads);
  const measured m = count_allocations(what, [&] { finite = w.train_step() && finite; });
  // The same steps again, counted phase by phase (which part allocates).
  long phase[5] = {0, 0, 0, 0, 0};
  for (int i = 0; i < counted_steps; ++i) finite = w.train_step(phase) && finite;
  INFO(what << ": " << m.allocations << " allocation(s) (" << m.bytes << " bytes) in " << counted_steps
            << " training steps after warm-up; by phase: forward " << phase[0] << ", loss " << phase[1]
            << ", gradient upload " << phase[2] << ", backward " << phase[3] << ", adamw " << phase[4]
            << " (call stacks on stderr); inside oneDNN: " << m.library);
  REQUIRE(finite);
  REQUIRE(std::isfinite(w.last_loss));
  CHECK(m.allocations == 0);
}

}  // namespace

namespace {
void* volatile escaped = nullptr;  // storing a pointer here keeps the compiler from eliding new/delete pairs
template <class P>
P* escape(P* p) {
  escaped = const_cast<void*>(static_cast<const void*>(p));
  return p;
}
bool aligned_to(const void* p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }
}  // namespace

TEST_CASE("the counting operator new sees every form of allocation", "[allocations]") {
  struct alignas(128) over {
    char c[128];
  };
  long n = 0;
  bool aligned[4] = {};
  {
    alloc_count::counting_scope s;
    delete escape(new int(1));                    // operator new(size_t), sized delete
    delete[] escape(new int[3]);                  // operator new[](size_t)
    delete escape(new (std::nothrow) int(2));     // nothrow
    delete[] escape(new (std::nothrow) int[2]);   // nothrow array
    over* o = escape(new over);                   // operator new(size_t, align_val_t)
    aligned[0] = aligned_to(o, 128);
    delete o;
    over* oa = escape(new over[2]);               // operator new[](size_t, align_val_t)
    aligned[1] = aligned_to(oa, 128);
    delete[] oa;
    void* p = escape(::operator new(100, std::align_val_t{64}));
    aligned[2] = aligned_to(p, 64);
    ::operator delete(p, 100, std::align_val_t{64});
    p = escape(::operator new[](1, std::align_val_t{4096}, std::nothrow));  // aligned nothrow array
    aligned[3] = aligned_to(p, 4096);
    ::operator delete[](p, std::align_val_t{4096}, std::nothrow);
    std::vector<double> v(1000);  // std::allocator (__builtin_operator_new)
    escape(v.data());
    n = alloc_count::allocations.load();
  }
  CHECK(aligned[0]);
  CHECK(aligned[1]);
  CHECK(aligned[2]);
  CHECK(aligned[3]);
  CHECK(n == 9);
  {
    alloc_count::counting_scope s;  // a scope starts from zero
    n = alloc_count::allocations.load();
  }
  CHECK(n == 0);
}

#if defined(GENLM_USE_DNNL)
TEST_CASE("allocations inside oneDNN are the library's, genlm's own still count", "[allocations]") {
  // A warmed-up x W^T product through oneDNN's matmul primitive: dnnl_primitive_execute allocates
  // its argument map inside libdnnl; an allocation of this file's own in the same scope counts.
  const index_t m = 64, n = 96, k = 80;
  std::vector<float> A(std::size_t(m * k), 0.5f), B(std::size_t(n * k), 0.25f), C(std::size_t(m * n));
  cpu_detail::onednn_matmul_nt(m, n, k, 1.f, A.data(), k, B.data(), k, 0.f, C.data(), n);  // builds the primitive
  long products = -1, own = -1, library = -1;
  {
    alloc_count::counting_scope s;
    for (int i = 0; i < 3; ++i) cpu_detail::onednn_matmul_nt(m, n, k, 1.f, A.data(), k, B.data(), k, 0.f, C.data(), n);
    products = alloc_count::allocations.load();
    delete escape(new int(1));
    own = alloc_count::allocations.load();
    library = alloc_count::library_allocations.load();
  }
  INFO("allocations inside oneDNN in 3 products: " << library);
  CHECK(products == 0);
  CHECK(own == 1);
  CHECK(C[0] == 0.5f * 0.25f * float(k));
  if (library == 0) WARN("this oneDNN allocated nothing with operator new in dnnl_primitive_execute");
}
#endif

TEST_CASE("cpu inference forward allocates nothing after warm-up", "[allocations][model]") {
  const int threads = GENERATE(1, 2);
  SECTION("tiny config") { check_forward<configs::tiny>(8, 30, threads); }
  SECTION("one wide layer, threaded loops") { check_forward<wide>(18, 30, threads); }
}

TEST_CASE("cpu training step allocates nothing after warm-up", "[allocations][training]") {
  const int threads = GENERATE(1, 2);
  SECTION("tiny config") { check_train<configs::tiny>(8, 30, threads); }
  SECTION("one wide layer, threaded loops") { check_train<wide>(18, 30, threads); }
}

/// The tiny-config model and simulated training task of the trainer cases (batch 8, seed 5).
struct tiny_training {
  using Model = GLM<configs::tiny, cpu>;
  simulated_task d{simulated_task::structured(configs::tiny.plm_dim, 60), configs::tiny.pca_components};
  Model model{model_options{}};
  train_options to = [] {
    train_options o;
    o.batch_size = 8;
    o.seed = 5;
    return o;
  }();
};

/// Warms a trainer up, then requires 0 allocations in counted_steps calls of its step().
template <class Trainer>
void check_trainer_steps(Trainer& tr, const std::string& what) {
  for (int i = 0; i < warmup_steps; ++i) tr.step();
  double loss = 0;
  const measured m = count_allocations(what, [&] { loss += tr.step().loss; });
  INFO(what << ": " << m.allocations << " allocation(s) (" << m.bytes << " bytes) in " << counted_steps
            << " steps after warm-up (call stacks on stderr)");
  REQUIRE(std::isfinite(loss));
  REQUIRE(loss > 0);
  CHECK(m.allocations == 0);
}

TEST_CASE("trainer step allocates nothing after warm-up", "[allocations][training]") {
  // genlm::trainer::step itself: host batch assembly (window indices, inputs, masking, labels),
  // forward, loss, backward, AdamW. Its host vectors are reserved for the largest batch at
  // construction, so the random number of masked genes per step cannot make one grow later.
  const int threads = GENERATE(1, 2);
  thread_count_scope tc(threads);
  tiny_training t;
  trainer<tiny_training::Model> tr(t.model, t.d.feat, t.d.train, t.to);
  check_trainer_steps(tr, "trainer::step, tiny config, " + std::to_string(threads) + " thread(s)");
}

TEST_CASE("data-parallel step with comm::single allocates nothing after warm-up", "[allocations][training][parallel]") {
  // parallel::data_parallel_trainer::step on one rank with in-memory windows: the global batch's
  // indices, the share's micro-batches (one batch, or one per window with rank-invariant dropout),
  // the communicator tags, forward, loss, backward, the bucketed "all-reduce" and AdamW. (Not
  // covered: the MPI / NCCL communicators, whose watchdog labels each collective with a string and
  // whose libraries malloc their own buffers; a file-backed window source, which reads in fetch().)
  const int threads = GENERATE(1, 2);
  const bool rank_invariant = GENERATE(false, true);
  thread_count_scope tc(threads);
  tiny_training t;
  parallel::dp_options dp;
  dp.rank_invariant_dropout = rank_invariant;
  dp.bucket_bytes = 4096;  // several buckets
  comm::single world;
  parallel::data_parallel_trainer<tiny_training::Model, comm::single> tr(t.model, world, t.d.feat, t.d.train, t.to, dp);
  check_trainer_steps(tr, std::string("data_parallel_trainer::step, ") + (rank_invariant ? "rank-invariant dropout, " : "") +
                              std::to_string(threads) + " thread(s)");
}
