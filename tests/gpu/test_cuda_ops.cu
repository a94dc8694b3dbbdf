// Parity of every non-GEMM op of genlm::cuda with genlm::cpu (float and double), zero-size calls,
// and CUDA error reporting. GEMMs: test_cuda_gemm.cu; model and training: test_cuda_model.cu.
//
// Measure: scale-relative error max|gpu - cpu| / max|cpu| per output buffer (see parity.hpp);
// thresholds 1e-5 (float) and 1e-12 (double) unless stated. Data movement, masks, counts and
// choices are compared bit for bit. Outputs that an op assigns are pre-filled with NaN, so an
// element the GPU forgets to write fails the comparison; outputs that an op accumulates into are
// pre-filled with random values.
#include "parity.hpp"
#include <limits>

#include <genlm/layers/linear.hpp>

using namespace gpu_parity;
using genlm::cpu;
// genlm::cuda under a short name: CUDA 13's libcu++ declares a global namespace ::cuda, so a
// using-declaration of genlm::cuda at namespace scope does not compile.
using cuda32 = genlm::cuda;

namespace {
// Sizes that are not multiples of 32 / 4 (Philox blocks), 1, and a few large ones.
const std::vector<index_t> vector_sizes = {1, 3, 4, 7, 1003, (index_t(1) << 20) + 5};

struct rc_shape {
  index_t rows, cols;
};
// The column sums (sum_rows, layer_norm_backward_params) take up to 1024 rows in one launch and
// split more into chunks of 128 rows: 1024 x 33 is the largest single launch, 1025 x 65 and
// 3001 x 7 are split (9 chunks, the last of one row; 24 chunks).
const std::vector<rc_shape> matrix_shapes = {{1, 1},      {1, 33},     {7, 32},   {300, 1280}, {64, 3072},
                                             {3001, 7},   {129, 130},  {1024, 33}, {1025, 65}};

/// n distinct rows of 0..R-1 in random order (a Fisher-Yates shuffle drawn from g, the first n
/// kept): the masked genes' flat positions of the loss op tests.
std::vector<std::int64_t> distinct_rows(index_t R, index_t n, genlm::rng& g) {
  std::vector<std::int64_t> rows(static_cast<std::size_t>(R));
  for (index_t i = 0; i < R; ++i) rows[std::size_t(i)] = i;
  for (std::size_t i = rows.size(); i > 1; --i) std::swap(rows[i - 1], rows[std::size_t(g.below(i))]);
  rows.resize(std::size_t(n));
  return rows;
}
}  // namespace

TEMPLATE_TEST_CASE("memory: allocate, device copies, host transfers", "[ops][memory]", float, double, std::uint8_t,
                   std::int32_t, std::int64_t) {
  using T = TestType;
  const index_t n = 1003;
  std::vector<T> v(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) v[std::size_t(i)] = T((i * 7 + 3) % 251);
  T* a = cuda32::allocate<T>(n);
  T* b = cuda32::allocate<T>(n);
  cuda32::copy_from_host(a, v.data(), n);
  cuda32::copy(b, a, n);               // device to device
  cuda32::copy(b + 1, a + 500, 400);   // at offsets
  cuda32::copy_from_host(b + 990, v.data(), 13);
  std::vector<T> back(static_cast<std::size_t>(n)), part(5);
  cuda32::copy_to_host(back.data(), b, n);
  cuda32::copy_to_host(part.data(), a + 17, 5);
  cuda32::synchronize();
  cuda32::deallocate(a);
  cuda32::deallocate(b);
  std::vector<T> want = v;
  std::copy(v.begin() + 500, v.begin() + 900, want.begin() + 1);
  std::copy(v.begin(), v.begin() + 13, want.begin() + 990);
  CHECK(back == want);
  CHECK(part == std::vector<T>(v.begin() + 17, v.begin() + 22));
}

TEST_CASE("uploads: staged through pinned memory, host buffers reusable at once, the ring wraps, large copies split",
          "[ops][memory]") {
  // copy_from_host returns before the copy ran (genlm::upload_ring); each host buffer is
  // overwritten right after the call, and the sizes make the ring wrap and split copies larger
  // than itself. Under the emulator a copy from pinned memory runs only when the stream next works,
  // so a staging region rewritten too early shows up here as wrong device data.
  const std::size_t ring = genlm::upload_ring::capacity / sizeof(float);
  const std::vector<std::size_t> sizes = {1,        1000, ring / 3, ring / 2 + 7, 5,        ring - 1,
                                          ring + 12345, 3,    2 * ring + 3, 17,     ring / 4};
  std::vector<float*> dev;
  std::vector<std::vector<float>> want;
  std::vector<float> h;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    h.resize(sizes[k]);
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = float((i * 31 + k * 7) % 1009);
    want.push_back(h);
    dev.push_back(cuda32::allocate<float>(index_t(h.size())));
    cuda32::copy_from_host(dev.back(), h.data(), index_t(h.size()));
    std::fill(h.begin(), h.end(), -1.0f);
  }
  // a kernel queued after an upload sees the uploaded data (stream order)
  cuda32::scale(index_t(sizes[1]), 2.0f, dev[1]);
  for (float& v : want[1]) v *= 2.0f;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    std::vector<float> back(sizes[k]);
    cuda32::copy_to_host(back.data(), dev[k], index_t(back.size()));
    std::size_t wrong = 0;  // counted: printing two vectors of millions of floats would take minutes
    for (std::size_t i = 0; i < back.size(); ++i) wrong += back[i] != want[k][i];
    INFO("upload " << k << " of " << sizes[k] << " floats");
    CHECK(wrong == 0);
    cuda32::deallocate(dev[k]);
  }
}

TEST_CASE("caching allocator: statistics and reuse", "[ops][memory]") {
  const auto s0 = genlm::cuda_allocator::stats();
  const std::size_t bytes = 1000 * 1000 * sizeof(float);
  {
    genlm::tensor<float, cuda32> t({1000, 1000});
    const auto s1 = genlm::cuda_allocator::stats();
    CHECK(s1.bytes_in_use >= s0.bytes_in_use + bytes);
    CHECK(s1.peak_bytes >= s1.bytes_in_use);
  }
  const auto s2 = genlm::cuda_allocator::stats();
  CHECK(s2.bytes_in_use == s0.bytes_in_use);
  if (genlm::cuda_allocator::caching()) {  // the freed block is kept and handed out again
    CHECK(s2.bytes_cached >= bytes);
    genlm::tensor<float, cuda32> t({1000, 1000});
    CHECK(genlm::cuda_allocator::stats().cuda_mallocs == s2.cuda_mallocs);
  }
}

TEST_CASE("allocator without caching: exact sizes, a cudaMalloc per request", "[ops][memory]") {
  const bool was = genlm::cuda_allocator::caching();
  genlm::cuda_allocator::set_caching(false);
  const auto s0 = genlm::cuda_allocator::stats();
  void* p = genlm::cuda_allocator::allocate(1001);  // a caching allocator rounds this to 1024
  const auto s1 = genlm::cuda_allocator::stats();
  genlm::cuda_allocator::deallocate(p);
  const auto s2 = genlm::cuda_allocator::stats();
  genlm::cuda_allocator::set_caching(was);
  CHECK(s1.bytes_in_use == s0.bytes_in_use + 1001);
  CHECK(s1.cuda_mallocs == s0.cuda_mallocs + 1);
  CHECK(s2.bytes_in_use == s0.bytes_in_use);
  CHECK(s2.bytes_cached == s0.bytes_cached);
}

TEMPLATE_TEST_CASE("elementwise: fill, axpy, scale, add, clip_by_value", "[ops][elementwise]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  for (const index_t n : vector_sizes) {
    CAPTURE(n);
    const auto sz = std::size_t(n);
    {
      dual<T> x(randn<T>(sz, 1));
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::fill(P<B>(x), n, T(-2.5));
        if (n >= 3) B::fill(P<B>(x) + 1, n - 2, T(0.125));
      });
      GPU_CHECK_BITWISE("fill", x.got(), x.ref());
    }
    {
      dual<T> x(randn<T>(sz, 2)), y(randn<T>(sz, 3));
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::axpy(n, T(0.37), P<B>(x), P<B>(y));
      });
      GPU_CHECK_CLOSE("axpy", y.got(), y.ref(), tol);
    }
    {
      dual<T> x(randn<T>(sz, 4));
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::scale(n, T(-1.7), P<B>(x));
      });
      GPU_CHECK_CLOSE("scale", x.got(), x.ref(), tol);
    }
    {
      dual<T> a(randn<T>(sz, 5)), b(randn<T>(sz, 6)), y(nans<T>(sz));
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::add(n, P<B>(a), P<B>(b), P<B>(y));
      });
      GPU_CHECK_CLOSE("add", y.got(), y.ref(), tol);
      on_both([&](auto t) {  // y aliases a, then b
        using B = typename decltype(t)::type;
        B::add(n, P<B>(a), P<B>(b), P<B>(a));
        B::add(n, P<B>(a), P<B>(b), P<B>(b));
      });
      GPU_CHECK_CLOSE("add (y aliases a)", a.got(), a.ref(), tol);
      GPU_CHECK_CLOSE("add (y aliases b)", b.got(), b.ref(), tol);
    }
    {
      auto v = randn<T>(sz, 7, 3.0);
      v[0] = T(1.0);
      if (n > 1) v[1] = T(-1.0);
      if (n > 2) v[2] = T(-1e30);
      dual<T> x(v);
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::clip_by_value(P<B>(x), n, T(1.0));
      });
      GPU_CHECK_BITWISE("clip_by_value", x.got(), x.ref());
    }
  }
}

TEMPLATE_TEST_CASE("add_bias and sum_rows", "[ops][bias]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  for (const auto& s : matrix_shapes) {
    const index_t rows = s.rows, cols = s.cols;
    CAPTURE(rows, cols);
    const auto n = std::size_t(rows * cols);
    {
      dual<T> y(randn<T>(n, 10)), b(randn<T>(std::size_t(cols), 11));
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::add_bias(P<B>(y), P<B>(b), rows, cols);
      });
      GPU_CHECK_CLOSE("add_bias", y.got(), y.ref(), tol);
    }
    const auto dy_h = randn<T>(n, 12);
    for (const double beta : {0.0, 1.0, 0.5}) {
      CAPTURE(beta);
      dual<T> dy(dy_h), db(randn<T>(std::size_t(cols), 13, 5.0));  // beta 0: old contents ignored
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::sum_rows(P<B>(dy), rows, cols, P<B>(db), T(beta));
      });
      GPU_CHECK_CLOSE("sum_rows", db.got(), db.ref(), tol);
    }
    {
      // beta == 0 never reads db (the CPU op assigns it, as BLAS does for beta 0): NaN must not leak.
      dual<T> dy(dy_h), db(nans<T>(std::size_t(cols)));
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::sum_rows(P<B>(dy), rows, cols, P<B>(db), T(0));
      });
      GPU_CHECK_CLOSE("sum_rows, beta 0 over NaN", db.got(), db.ref(), tol);
    }
  }
}

TEMPLATE_TEST_CASE("reductions: sum_squares, dot, count_nonfinite", "[ops][reduce]", float, double) {
  using T = TestType;
  // Both backends accumulate in double: relative to sum |x_i y_i| the results agree to ~1e-15;
  // float accumulation would be ~1e-7 off, so 1e-10 also checks that contract.
  const double tol = 1e-10;
  for (const index_t n : vector_sizes) {
    CAPTURE(n);
    const auto sz = std::size_t(n);
    dual<T> x(randn<T>(sz, 20)), y(randn<T>(sz, 21));
    double abs_dot = 0;
    {
      const auto xh = x.ref(), yh = y.ref();
      for (std::size_t i = 0; i < sz; ++i) abs_dot += std::abs(double(xh[i]) * double(yh[i]));
    }
    const double ss_c = cpu::sum_squares(P<cpu>(x), n), ss_g = cuda32::sum_squares(P<cuda32>(x), n);
    CHECK(std::abs(ss_g - ss_c) <= tol * ss_c);
    const double dot_c = cpu::dot(P<cpu>(x), P<cpu>(y), n), dot_g = cuda32::dot(P<cuda32>(x), P<cuda32>(y), n);
    INFO("dot cpu " << dot_c << " gpu " << dot_g << " sum|xy| " << abs_dot);
    CHECK(std::abs(dot_g - dot_c) <= tol * abs_dot);

    CHECK(cuda32::count_nonfinite(P<cuda32>(x), n) == 0);
    auto v = x.ref();
    const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
    v[0] = nan;
    v[sz - 1] = inf;
    v[sz / 2] = -inf;
    for (std::size_t i = sz / 3; i < std::min(sz, sz / 3 + 40); ++i) v[i] = nan;
    if (sz > 10) v[sz / 5 + 1] = std::numeric_limits<T>::max();  // finite
    index_t expected = 0;
    for (const T e : v) expected += !std::isfinite(e);
    x.set(v);
    const index_t cnt_c = cpu::count_nonfinite(P<cpu>(x), n), cnt_g = cuda32::count_nonfinite(P<cuda32>(x), n);
    CHECK(cnt_c == expected);
    CHECK(cnt_g == cnt_c);
    // the queued form writes the count into the backend's memory (a GPU: no wait until read)
    dual<double> out(std::vector<double>{-1.0, 5.0});
    cpu::count_nonfinite_into(P<cpu>(x), n, P<cpu>(out));
    cuda32::count_nonfinite_into(P<cuda32>(x), n, P<cuda32>(out));
    CHECK(out.ref() == std::vector<double>{double(expected), 5.0});
    CHECK(out.got() == std::vector<double>{double(expected), 5.0});
  }
}

TEMPLATE_TEST_CASE("count_input_faults: NaN/Inf inputs, mask values other than 0 and 1, rows without a gene",
                   "[ops][reduce]", float, double) {
  using T = TestType;
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  struct fault_case {
    index_t B, L, F;
  };
  // up to 1100 rows (more than one block of the grid-strided rows) and 4.5 M inputs
  for (const auto& c : {fault_case{1, 1, 1}, fault_case{3, 17, 33}, fault_case{64, 30, 1281}, fault_case{1100, 2, 7},
                        fault_case{120, 30, 1281}}) {
    CAPTURE(c.B, c.L, c.F);
    const index_t n = c.B * c.L * c.F;
    const auto sz = std::size_t(n);
    std::vector<T> xv = randn<T>(sz, 30), mv(std::size_t(c.B * c.L), T(1));
    for (index_t b = 0; b < c.B; ++b)  // padding at the end of every other row, never the whole row
      for (index_t l = c.L - (b % 2) * (c.L / 2); l < c.L; ++l) mv[std::size_t(b * c.L + l)] = T(0);
    dual<T> x(xv), m(mv);
    const auto faults = [&](auto t) {
      using B = typename decltype(t)::type;
      return B::count_input_faults(P<B>(x), n, P<B>(m), c.B, c.L);
    };
    CHECK(faults(tag<cpu>{}) == 0);
    CHECK(faults(tag<cuda32>{}) == 0);
    index_t want = 0;
    xv[0] = nan;
    ++want;
    if (sz > 1) xv[sz - 1] = -inf, ++want;
    if (sz > 100) xv[sz / 3] = inf, xv[sz / 3 + 1] = std::numeric_limits<T>::max(), ++want;  // max is finite
    mv[0] = T(0.5);  // a value other than 0 and 1 (row 0 keeps other genes when L > 1)
    ++want;
    if (c.L == 1) ++want;  // row 0 has no gene left
    if (c.B > 2) {  // row 1 (not the last): NaN is neither 0 nor 1
      mv[std::size_t(1 * c.L + c.L - 1)] = nan;
      ++want;
      if (c.L == 1) ++want;
    }
    if (c.B > 1) {  // row B - 1 all padding: one fault for the row
      std::fill_n(mv.begin() + (c.B - 1) * c.L, c.L, T(0));
      ++want;
    }
    x.set(xv);
    m.set(mv);
    CHECK(faults(tag<cpu>{}) == want);
    CHECK(faults(tag<cuda32>{}) == want);
  }
}

TEMPLATE_TEST_CASE("layer_norm forward and backward", "[ops][layer_norm]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  struct ln_case {
    index_t rows, cols;
    double eps;
  };
  for (const auto& s : {ln_case{1, 3, 1e-5}, ln_case{1, 33, 1e-12}, ln_case{7, 32, 1e-12}, ln_case{300, 1280, 1e-12},
                        ln_case{64, 3072, 1e-5}, ln_case{5, 1000, 1e-5}, ln_case{129, 130, 1e-12},
                        ln_case{1024, 40, 1e-12}, ln_case{1030, 40, 1e-5}}) {  // one launch; 9 chunks
    const index_t rows = s.rows, cols = s.cols;
    const double eps = s.eps;
    CAPTURE(rows, cols, eps);
    const auto n = std::size_t(rows * cols), c = std::size_t(cols), r = std::size_t(rows);
    dual<T> x(randn<T>(n, 30, 1.5, 2.0)), gamma(randn<T>(c, 31, 0.2, 1.0)), beta(randn<T>(c, 32, 0.1));
    dual<T> y(nans<T>(n)), mean(nans<T>(r)), rstd(nans<T>(r));
    on_both([&](auto t) {
      using B = typename decltype(t)::type;
      B::layer_norm_forward(P<B>(x), P<B>(gamma), P<B>(beta), P<B>(y), P<B>(mean), P<B>(rstd), rows, cols, eps);
    });
    GPU_CHECK_CLOSE("layer_norm_forward y", y.got(), y.ref(), tol);
    GPU_CHECK_CLOSE("layer_norm_forward mean", mean.got(), mean.ref(), tol);
    GPU_CHECK_CLOSE("layer_norm_forward rstd", rstd.got(), rstd.ref(), tol);

    // backward from the same saved statistics (the CPU's), dx accumulated, dgamma/dbeta assigned
    dual<T> mean_in(mean.ref()), rstd_in(rstd.ref());
    dual<T> dy(randn<T>(n, 33)), dx(randn<T>(n, 34)), dgamma(nans<T>(c)), dbeta(nans<T>(c));
    dual<T> dx_set(nans<T>(n)), dgamma2(nans<T>(c)), dbeta2(nans<T>(c));  // dx assigned (accumulate false)
    on_both([&](auto t) {
      using B = typename decltype(t)::type;
      B::layer_norm_backward(P<B>(dy), P<B>(x), P<B>(gamma), P<B>(mean_in), P<B>(rstd_in), P<B>(dx), P<B>(dgamma),
                             P<B>(dbeta), rows, cols);
      B::layer_norm_backward(P<B>(dy), P<B>(x), P<B>(gamma), P<B>(mean_in), P<B>(rstd_in), P<B>(dx_set),
                             P<B>(dgamma2), P<B>(dbeta2), rows, cols, false);
    });
    GPU_CHECK_CLOSE("layer_norm_backward dx (accumulated)", dx.got(), dx.ref(), tol);
    GPU_CHECK_CLOSE("layer_norm_backward dx (assigned over NaN)", dx_set.got(), dx_set.ref(), tol);
    GPU_CHECK_BITWISE("layer_norm_backward dgamma, either mode", dgamma2.got(), dgamma.got());
    GPU_CHECK_CLOSE("layer_norm_backward dgamma", dgamma.got(), dgamma.ref(), tol);
    GPU_CHECK_CLOSE("layer_norm_backward dbeta", dbeta.got(), dbeta.ref(), tol);
  }
}

TEMPLATE_TEST_CASE("gelu forward and backward", "[ops][gelu]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  const std::vector<T> special = {T(0), T(1e-3), T(-1e-3), T(4), T(-4), T(5), T(-5), T(10), T(-10), T(20), T(-20)};
  for (const index_t n : vector_sizes) {
    CAPTURE(n);
    const auto sz = std::size_t(n);
    auto xv = randn<T>(sz, 40, 2.5);
    for (std::size_t i = 0; i < special.size() && i < sz; ++i) xv[i] = special[i];
    dual<T> x(xv), y(nans<T>(sz)), dy(randn<T>(sz, 41)), dx(randn<T>(sz, 42)), dx_set(nans<T>(sz));
    on_both([&](auto t) {
      using B = typename decltype(t)::type;
      B::gelu_forward(P<B>(x), P<B>(y), n);
      B::gelu_backward(P<B>(x), P<B>(dy), P<B>(dx), n);
      B::gelu_backward(P<B>(x), P<B>(dy), P<B>(dx_set), n, false);
    });
    GPU_CHECK_CLOSE("gelu_forward", y.got(), y.ref(), tol);
    GPU_CHECK_CLOSE("gelu_backward (accumulated)", dx.got(), dx.ref(), tol);
    GPU_CHECK_CLOSE("gelu_backward (assigned over NaN)", dx_set.got(), dx_set.ref(), tol);
  }
}

TEMPLATE_TEST_CASE("dropout: bit-identical Philox masks, forward and backward", "[ops][dropout]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  for (const index_t n : vector_sizes)
    for (const double p : {0.1, 0.5})
      for (const std::uint64_t step : {std::uint64_t(0), (std::uint64_t(1) << 33) + 7}) {
        CAPTURE(n, p, step);
        const auto sz = std::size_t(n);
        const std::uint64_t key = genlm::splitmix64(0xC0FFEEull ^ std::uint64_t(n));
        const auto xv = randn<T>(sz, 50);
        dual<T> x(xv), y(nans<T>(sz));
        dual<std::uint8_t> keep(filled<std::uint8_t>(sz, 0xAB));
        on_both([&](auto t) {
          using B = typename decltype(t)::type;
          B::dropout_forward(P<B>(x), P<B>(y), P<B>(keep), n, p, key, step);
        });
        GPU_CHECK_BITWISE("dropout keep mask", keep.got(), keep.ref());
        GPU_CHECK_CLOSE("dropout_forward y", y.got(), y.ref(), tol);
        if (n > 1000) {  // the CPU reference itself drops about p of the elements
          const auto k = keep.ref();
          const double kept = double(std::count(k.begin(), k.end(), std::uint8_t(1))) / double(n);
          CHECK(std::abs(kept - (1 - p)) < 0.05);
        }

        // in place (y aliases x), same key and step: the same mask again
        dual<T> xy(xv);
        dual<std::uint8_t> keep2(filled<std::uint8_t>(sz, 0xCD));
        on_both([&](auto t) {
          using B = typename decltype(t)::type;
          B::dropout_forward(P<B>(xy), P<B>(xy), P<B>(keep2), n, p, key, step);
        });
        GPU_CHECK_BITWISE("dropout keep mask (in place)", keep2.got(), keep.ref());
        GPU_CHECK_CLOSE("dropout_forward in place", xy.got(), xy.ref(), tol);

        // backward: accumulate into dx, assign over NaN, and in place (dx aliases dy)
        dual<std::uint8_t> kin(keep.ref());
        const auto dyv = randn<T>(sz, 51);
        dual<T> dy(dyv), dx_acc(randn<T>(sz, 52)), dx_set(nans<T>(sz)), dd(dyv);
        on_both([&](auto t) {
          using B = typename decltype(t)::type;
          B::dropout_backward(P<B>(dy), P<B>(kin), P<B>(dx_acc), n, p, true);
          B::dropout_backward(P<B>(dy), P<B>(kin), P<B>(dx_set), n, p, false);
          B::dropout_backward(P<B>(dd), P<B>(kin), P<B>(dd), n, p, false);
        });
        GPU_CHECK_CLOSE("dropout_backward accumulate", dx_acc.got(), dx_acc.ref(), tol);
        GPU_CHECK_CLOSE("dropout_backward assign", dx_set.got(), dx_set.ref(), tol);
        GPU_CHECK_CLOSE("dropout_backward in place", dd.got(), dd.ref(), tol);
      }
}

TEMPLATE_TEST_CASE("permute_0213 with and without accumulation and bias", "[ops][permute]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  struct p_case {
    index_t A, B, C, D;
  };
  for (const auto& s : {p_case{1, 1, 1, 1}, p_case{3, 7, 5, 9}, p_case{2, 30, 4, 8}, p_case{2, 17, 10, 128},
                        p_case{1, 64, 3, 33}, p_case{5, 1, 7, 3}}) {
    CAPTURE(s.A, s.B, s.C, s.D);
    const auto n = std::size_t(s.A * s.B * s.C * s.D);
    const auto sv = randn<T>(n, 60);
    dual<T> src(sv), dst(nans<T>(n)), acc(randn<T>(n, 61));
    // with a bias (C, D) added on the way: assigned and accumulated
    dual<T> bias(randn<T>(std::size_t(s.C * s.D), 62)), dstb(nans<T>(n)), accb(randn<T>(n, 63));
    on_both([&](auto t) {
      using B = typename decltype(t)::type;
      B::permute_0213(P<B>(src), P<B>(dst), s.A, s.B, s.C, s.D, false);
      B::permute_0213(P<B>(src), P<B>(acc), s.A, s.B, s.C, s.D, true);
      B::permute_0213(P<B>(src), P<B>(dstb), s.A, s.B, s.C, s.D, false, P<B>(bias));
      B::permute_0213(P<B>(src), P<B>(accb), s.A, s.B, s.C, s.D, true, P<B>(bias));
    });
    GPU_CHECK_BITWISE("permute_0213", dst.got(), dst.ref());
    GPU_CHECK_CLOSE("permute_0213 accumulate", acc.got(), acc.ref(), tol);
    GPU_CHECK_BITWISE("permute_0213 with bias", dstb.got(), dstb.ref());
    GPU_CHECK_CLOSE("permute_0213 with bias, accumulate", accb.got(), accb.ref(), tol);
    // and back: (A, C, B, D) -> (A, B, C, D) restores the input exactly
    dual<T> back(nans<T>(n));
    cuda32::permute_0213(P<cuda32>(dst), P<cuda32>(back), s.A, s.C, s.B, s.D, false);
    GPU_CHECK_BITWISE("permute_0213 round trip", back.got(), sv);
  }
}

TEMPLATE_TEST_CASE("relpos_add and relpos_grad", "[ops][relpos]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  for (const index_t batch : {index_t(1), index_t(3), index_t(12)})
    for (const index_t L : {index_t(1), index_t(2), index_t(7), index_t(30), index_t(64), index_t(130)}) {
      CAPTURE(batch, L);
      const index_t W = 2 * L - 1;
      const auto ns = std::size_t(batch * L * L), ne = std::size_t(batch * L * W);
      const auto sv = randn<T>(ns, 70);
      dual<T> S(sv), S2(sv), QE(randn<T>(ne, 71)), KE(randn<T>(ne, 72));
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::relpos_add(P<B>(S), P<B>(QE), P<B>(KE), batch, L);
        B::relpos_add(P<B>(S2), P<B>(QE), static_cast<const T*>(nullptr), batch, L);
      });
      GPU_CHECK_CLOSE("relpos_add with KE", S.got(), S.ref(), tol);
      GPU_CHECK_CLOSE("relpos_add without KE", S2.got(), S2.ref(), tol);

      dual<T> dS(randn<T>(ns, 73)), dQE(nans<T>(ne)), dKE(nans<T>(ne)), dQE2(nans<T>(ne));
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::relpos_grad(P<B>(dS), P<B>(dQE), P<B>(dKE), batch, L);
        B::relpos_grad(P<B>(dS), P<B>(dQE2), static_cast<T*>(nullptr), batch, L);
      });
      GPU_CHECK_BITWISE("relpos_grad dQE", dQE.got(), dQE.ref());
      GPU_CHECK_BITWISE("relpos_grad dKE", dKE.got(), dKE.ref());
      GPU_CHECK_BITWISE("relpos_grad dQE (no dKE)", dQE2.got(), dQE2.ref());
    }
}

TEMPLATE_TEST_CASE("masked softmax forward and softmax backward", "[ops][softmax]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  struct s_case {
    index_t B, H, L;
  };
  for (const auto& s : {s_case{1, 1, 1}, s_case{2, 3, 5}, s_case{3, 4, 30}, s_case{2, 2, 64}, s_case{2, 2, 130},
                        s_case{1, 10, 33}}) {
    const index_t Bn = s.B, H = s.H, L = s.L, rows = Bn * H * L;
    CAPTURE(Bn, H, L);
    const auto n = std::size_t(rows * L);
    // key mask: ~30% padding; contig 1 (when there is one) entirely masked: its rows become
    // uniform 1/L on the CPU (every score equals lowest), as in Hugging Face
    std::vector<T> mv(std::size_t(Bn * L));
    genlm::rng g(80);
    for (auto& m : mv) m = g.uniform() < 0.3 ? T(0) : T(1);
    mv[0] = T(1);
    if (Bn >= 2)
      for (index_t l = 0; l < L; ++l) mv[std::size_t(L + l)] = T(0);
    const auto sv = randn<T>(n, 81, 3.0);
    const T scale = T(1.0 / std::sqrt(8.0));
    dual<T> S(sv), mask(mv), A(nans<T>(n)), A_nomask(nans<T>(n)), S_inplace(sv);
    on_both([&](auto t) {
      using B = typename decltype(t)::type;
      B::masked_softmax_forward(P<B>(S), P<B>(mask), P<B>(A), Bn, H, L, scale);
      B::masked_softmax_forward(P<B>(S), static_cast<const T*>(nullptr), P<B>(A_nomask), Bn, H, L, scale);
      B::masked_softmax_forward(P<B>(S_inplace), P<B>(mask), P<B>(S_inplace), Bn, H, L, scale);
    });
    GPU_CHECK_CLOSE("masked_softmax_forward", A.got(), A.ref(), tol);
    GPU_CHECK_CLOSE("masked_softmax_forward, no mask", A_nomask.got(), A_nomask.ref(), tol);
    GPU_CHECK_CLOSE("masked_softmax_forward in place", S_inplace.got(), S_inplace.ref(), tol);
    if (Bn >= 2) {  // the reference's all-masked rows are uniform
      const auto a = A.ref();
      CHECK(std::abs(double(a[std::size_t(H * L * L)]) - 1.0 / double(L)) < 1e-6);
    }

    dual<T> probs(A.ref());
    const auto dav = randn<T>(n, 82);
    dual<T> dA(dav), dS(nans<T>(n)), dA_inplace(dav);
    on_both([&](auto t) {
      using B = typename decltype(t)::type;
      B::softmax_backward(P<B>(probs), P<B>(dA), P<B>(dS), rows, L, scale);
      B::softmax_backward(P<B>(probs), P<B>(dA_inplace), P<B>(dA_inplace), rows, L, scale);
    });
    GPU_CHECK_CLOSE("softmax_backward", dS.got(), dS.ref(), tol);
    GPU_CHECK_CLOSE("softmax_backward in place", dA_inplace.got(), dA_inplace.ref(), tol);
  }
}

TEMPLATE_TEST_CASE("fused ops: bias_gelu_forward, bias_dropout_add, relpos_softmax_forward, softmax_relpos_backward",
                   "[ops][fused]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  for (const auto& s : matrix_shapes) {
    const index_t rows = s.rows, cols = s.cols, n = rows * cols;
    CAPTURE(rows, cols);
    const auto sz = std::size_t(n);
    const auto yv = randn<T>(sz, 90, 2.0);
    dual<T> y(yv), g(nans<T>(sz)), b(randn<T>(std::size_t(cols), 91));
    on_both([&](auto t) {
      using B = typename decltype(t)::type;
      B::bias_gelu_forward(P<B>(y), P<B>(b), P<B>(g), rows, cols);
    });
    GPU_CHECK_CLOSE("bias_gelu_forward pre-activation", y.got(), y.ref(), tol);
    GPU_CHECK_CLOSE("bias_gelu_forward", g.got(), g.ref(), tol);
    const std::uint64_t key = genlm::splitmix64(0xFEEDull ^ std::uint64_t(n)), step = 12;
    for (const double p : {0.0, 0.1}) {
      CAPTURE(p);
      dual<T> yd(yv), res(randn<T>(sz, 92)), yn(yv);
      dual<std::uint8_t> keep(filled<std::uint8_t>(sz, 0xAB));
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::bias_dropout_add(P<B>(yd), P<B>(b), P<B>(res), p > 0 ? P<B>(keep) : static_cast<std::uint8_t*>(nullptr),
                            rows, cols, p, key, step);
        B::bias_dropout_add(P<B>(yn), static_cast<const T*>(nullptr), P<B>(res), static_cast<std::uint8_t*>(nullptr),
                            rows, cols, p, key, step);
      });
      GPU_CHECK_BITWISE("bias_dropout_add keep mask", keep.got(), keep.ref());
      GPU_CHECK_CLOSE("bias_dropout_add", yd.got(), yd.ref(), tol);
      GPU_CHECK_CLOSE("bias_dropout_add, no bias, no dropout", yn.got(), yn.ref(), tol);
    }
  }
  for (const index_t L : {index_t(1), index_t(7), index_t(30), index_t(64)}) {
    const index_t Bn = 2, H = 3, BH = Bn * H, W = 2 * L - 1;
    CAPTURE(L);
    const auto ns = std::size_t(BH * L * L), ne = std::size_t(BH * L * W);
    std::vector<T> mv(std::size_t(Bn * L), T(1));
    for (index_t l = L / 2 + 1; l < L; ++l) mv[std::size_t(L + l)] = T(0);  // contig 1: padding at the end
    const T scale = T(1.0 / std::sqrt(8.0));
    dual<T> S(randn<T>(ns, 93, 3.0)), QE(randn<T>(ne, 94)), KE(randn<T>(ne, 95)), mask(mv), A(nans<T>(ns));
    on_both([&](auto t) {
      using B = typename decltype(t)::type;
      B::relpos_softmax_forward(P<B>(S), P<B>(QE), P<B>(KE), P<B>(mask), P<B>(A), Bn, H, L, scale);
    });
    GPU_CHECK_CLOSE("relpos_softmax_forward", A.got(), A.ref(), tol);
    dual<T> probs(A.ref()), dA(randn<T>(ns, 96)), dQE(nans<T>(ne)), dKE(nans<T>(ne));
    on_both([&](auto t) {
      using B = typename decltype(t)::type;
      B::softmax_relpos_backward(P<B>(probs), P<B>(dA), P<B>(dA), P<B>(dQE), P<B>(dKE), BH, L, scale);
    });
    GPU_CHECK_CLOSE("softmax_relpos_backward dS", dA.got(), dA.ref(), tol);
    GPU_CHECK_CLOSE("softmax_relpos_backward dQE", dQE.got(), dQE.ref(), tol);
    GPU_CHECK_CLOSE("softmax_relpos_backward dKE", dKE.got(), dKE.ref(), tol);
  }
}

TEMPLATE_TEST_CASE("masked_gene_loss_grad", "[ops][loss]", float, double) {
  using T = TestType;
  const double tol = op_tol<T>();
  struct l_case {
    index_t B, L, K, D, n;
  };
  for (const auto& s : {l_case{2, 30, 4, 100, 9}, l_case{3, 17, 3, 7, 20}, l_case{1, 1, 4, 8, 1}}) {
    const index_t R = s.B * s.L, K = s.K, D = s.D, n = s.n;
    CAPTURE(s.B, s.L, K, D, n);
    auto hyp = randn<T>(std::size_t(R * K * D), 90);
    auto logits = randn<T>(std::size_t(R * K), 91, 2.0);
    auto labels = randn<double>(std::size_t(n * D), 92);
    genlm::rng g(93);
    const std::vector<std::int64_t> rows = distinct_rows(R, n, g);
    // gene 0: exact ties (dyadic values, so every summation order gives the same distances):
    // hypotheses 0 and 1 equally closest -> k* = 0; logits 2 and 3 equally largest -> k^ = 2
    const index_t r0 = rows[0];
    for (index_t j = 0; j < D; ++j) {
      const double y = double((j * 5) % 17 - 8) * 0.25;
      labels[std::size_t(j)] = y;
      for (index_t k = 0; k < K; ++k) hyp[std::size_t((r0 * K + k) * D + j)] = T(y + (k < 2 ? 0.5 : 1.0));
    }
    for (index_t k = 0; k < K; ++k) logits[std::size_t(r0 * K + k)] = T(k >= 2 ? 4.0 : (k == 0 ? 1.0 : -1.0));
    // gene 1: hypothesis 0 is NaN; both backends skip its NaN distance (k* is another hypothesis)
    if (n >= 2) hyp[std::size_t(rows[1] * K * D)] = std::numeric_limits<T>::quiet_NaN();
    const double mse_scale = 1.0 / double(n * D), ce_scale = 1e-4 / double(n);

    dual<T> h(hyp), z(logits), dh(filled<T>(hyp.size(), T(7))), dz(filled<T>(logits.size(), T(-3)));
    dual<T> dh2(filled<T>(hyp.size(), T(7))), dz2(filled<T>(logits.size(), T(-3)));
    dual<std::int64_t> rw(rows);
    dual<double> y(labels), terms(nans<double>(std::size_t(2 * n))), terms2(nans<double>(std::size_t(2 * n)));
    dual<std::int32_t> choice(filled<std::int32_t>(std::size_t(2 * n), -5));
    on_both([&](auto t) {
      using B = typename decltype(t)::type;
      B::masked_gene_loss_grad(P<B>(h), P<B>(z), K, D, P<B>(rw), P<B>(y), n, mse_scale, ce_scale, P<B>(dh), P<B>(dz),
                               P<B>(terms), P<B>(choice));
      B::masked_gene_loss_grad(P<B>(h), P<B>(z), K, D, P<B>(rw), P<B>(y), n, mse_scale, ce_scale, P<B>(dh2),
                               P<B>(dz2), P<B>(terms2), static_cast<std::int32_t*>(nullptr));
    });
    const auto ch = choice.ref();
    if (K >= 4) {  // the tie construction on the reference
      CHECK(ch[0] == 0);
      CHECK(ch[1] == 2);
    }
    if (n >= 2) CHECK(ch[2] != 0);
    GPU_CHECK_BITWISE("masked_gene_loss_grad choices", choice.got(), ch);
    GPU_CHECK_CLOSE("masked_gene_loss_grad terms (double)", terms.got(), terms.ref(), 1e-10);
    GPU_CHECK_CLOSE("masked_gene_loss_grad d_hyp", dh.got(), dh.ref(), tol);
    GPU_CHECK_CLOSE("masked_gene_loss_grad d_logits", dz.got(), dz.ref(), tol);
    GPU_CHECK_CLOSE("masked_gene_loss_grad terms (no choice)", terms2.got(), terms2.ref(), 1e-10);
    GPU_CHECK_CLOSE("masked_gene_loss_grad d_hyp (no choice)", dh2.got(), dh2.ref(), tol);
    GPU_CHECK_CLOSE("masked_gene_loss_grad d_logits (no choice)", dz2.got(), dz2.ref(), tol);
  }
}

TEMPLATE_TEST_CASE("masked_gene_metrics_rows", "[ops][loss]", float, double) {
  using T = TestType;
  struct m_case {
    index_t R, K, D, n;
  };
  for (const auto& s : {m_case{64, 4, 100, 45}, m_case{40, 3, 7, 33}, m_case{2, 4, 8, 1}}) {
    const index_t R = s.R, K = s.K, D = s.D, n = s.n;
    CAPTURE(R, K, D, n);
    auto hyp = randn<T>(std::size_t(R * K * D), 94);
    auto labels = randn<double>(std::size_t(n * D), 95);
    genlm::rng g(96);
    const std::vector<std::int64_t> rows = distinct_rows(R, n, g);
    std::vector<std::int32_t> choice(std::size_t(2 * n));
    for (auto& c : choice) c = std::int32_t(g.below(std::uint64_t(K)));
    const auto at = [&](index_t i) -> T* {  // gene i's most likely hypothesis
      return &hyp[std::size_t((rows[std::size_t(i)] * K + choice[std::size_t(2 * i + 1)]) * D)];
    };
    // small dyadic values, so that every summation order gives the same distances:
    // gene 0 is its own label (nearest, distance 0); gene 1 lies exactly between labels 0 and 1
    // (a tie: label 0, the first, is nearest -> wrong) and every other label is further
    if (n >= 3) {
      for (index_t j = 0; j < D; ++j) {
        const double y0 = double((j * 3) % 5 - 2) * 0.25, y1 = y0 + (j == 0 ? 1.0 : 0.0);
        labels[std::size_t(j)] = y0;
        labels[std::size_t(D + j)] = y1;
        at(0)[j] = T(y0);
        at(1)[j] = T(y0 + (j == 0 ? 0.5 : 0.0));
      }
      for (index_t i = 2; i < n; ++i) labels[std::size_t(i * D)] += 8.0;  // further than 0.5 from gene 1
      // gene 2: a NaN in its most likely hypothesis (no nearest label on either backend)
      at(2)[D - 1] = std::numeric_limits<T>::quiet_NaN();
    }
    dual<T> h(hyp);
    dual<std::int64_t> rw(rows);
    dual<std::int32_t> ch(choice);
    dual<double> y(labels), out(nans<double>(std::size_t(4 * n)));
    on_both([&](auto t) {
      using B = typename decltype(t)::type;
      B::masked_gene_metrics_rows(P<B>(h), K, D, P<B>(rw), P<B>(y), P<B>(ch), n, P<B>(out));
    });
    const auto ref = out.ref(), got = out.got();
    if (n >= 3) {
      CHECK(ref[3] == 1.0);  // gene 0 nearest to its own label
      CHECK(ref[1] == 0.0);
      CHECK(ref[7] == 0.0);  // gene 1: the tie goes to label 0
      CHECK(std::isnan(ref[8]));
      CHECK(ref[11] == 0.0);
    }
    std::vector<double> cos_r, cos_g, sq_r, sq_g, flags_r, flags_g;
    index_t correct = 0;
    for (index_t i = 0; i < n; ++i) {
      const auto k = std::size_t(4 * i);
      cos_r.push_back(ref[k]), cos_g.push_back(got[k]), sq_r.push_back(ref[k + 1]), sq_g.push_back(got[k + 1]);
      for (std::size_t c : {k + 2, k + 3}) flags_r.push_back(ref[c]), flags_g.push_back(got[c]);
      correct += ref[k + 3] != 0;
    }
    CHECK((n < 3 || correct >= 1));
    GPU_CHECK_BITWISE("masked_gene_metrics_rows strand and nearest flags", flags_g, flags_r);
    GPU_CHECK_CLOSE("masked_gene_metrics_rows cosine", cos_g, cos_r, 1e-12);
    GPU_CHECK_CLOSE("masked_gene_metrics_rows squared distance", sq_g, sq_r, 1e-12);
  }
}

TEMPLATE_TEST_CASE("adamw_step, both update rules, 5 steps, clip_value fused from step 3", "[ops][adamw]", float,
                   double) {
  using T = TestType;
  const double tol = op_tol<T>();
  const index_t n = 100003;
  const auto sz = std::size_t(n);
  for (const bool torch_style : {false, true}) {
    CAPTURE(torch_style);
    dual<T> p(randn<T>(sz, 100, 0.5)), m(filled<T>(sz, T(0))), v(filled<T>(sz, T(0))), gr;
    genlm::adamw_hparams h;
    h.lr = 1e-3;
    h.beta1 = 0.9;
    h.beta2 = 0.999;
    h.eps = torch_style ? 1e-8 : 1e-6;
    h.weight_decay = 0.01;
    h.torch_style = torch_style;
    for (std::int64_t step = 1; step <= 5; ++step) {
      CAPTURE(step);
      auto gv = randn<T>(sz, 101 + std::uint64_t(step), 0.1);
      for (std::size_t i = 0; i < sz; i += 7) gv[i] = T(0);  // some elements never see a gradient
      gr.set(gv);
      h.step = step;
      h.clip_value = step >= 3 ? 0.05 : 0.0;  // gradients ~N(0, 0.1): about 60% clamped
      on_both([&](auto t) {
        using B = typename decltype(t)::type;
        B::adamw_step(P<B>(p), P<B>(gr), P<B>(m), P<B>(v), n, h);
      });
      GPU_CHECK_CLOSE("adamw params", p.got(), p.ref(), tol);
      GPU_CHECK_CLOSE("adamw exp_avg", m.got(), m.ref(), tol);
      GPU_CHECK_CLOSE("adamw exp_avg_sq", v.got(), v.ref(), tol);
    }
  }
}

TEST_CASE("zero-size calls are no-ops, as on the CPU", "[ops][edge]") {
  using T = float;
  dual<T> x(randn<T>(8, 110)), y(randn<T>(8, 111));
  dual<std::uint8_t> keep(filled<std::uint8_t>(8, 1));
  dual<std::int64_t> rows(std::vector<std::int64_t>{0});
  dual<double> lab(filled<double>(8, 0.0)), terms(filled<double>(2, 0.0));
  const auto xv = x.ref(), yv = y.ref();
  on_both([&](auto t) {
    using B = typename decltype(t)::type;
    B::fill(P<B>(x), 0, T(1));
    B::axpy(index_t(0), T(2), P<B>(x), P<B>(y));
    B::scale(index_t(0), T(2), P<B>(x));
    B::add(index_t(0), P<B>(x), P<B>(y), P<B>(y));
    B::clip_by_value(P<B>(x), 0, T(0.1));
    B::gelu_forward(P<B>(x), P<B>(y), 0);
    B::gelu_backward(P<B>(x), P<B>(x), P<B>(y), 0);
    B::dropout_forward(P<B>(x), P<B>(y), P<B>(keep), 0, 0.5, 1, 2);
    B::dropout_backward(P<B>(x), P<B>(keep), P<B>(y), 0, 0.5, true);
    B::gemm(false, false, 0, 3, 2, T(1), P<B>(x), 2, P<B>(x), 3, T(0), P<B>(y), 3);
    B::gemm(false, false, 3, 0, 2, T(1), P<B>(x), 2, P<B>(x), 1, T(0), P<B>(y), 1);
    B::add_bias(P<B>(y), P<B>(x), 0, 4);
    B::permute_0213(P<B>(x), P<B>(y), 0, 2, 2, 2, false);
    B::layer_norm_forward(P<B>(x), P<B>(x), P<B>(x), P<B>(y), P<B>(y), P<B>(y), 0, 4, 1e-5);
    B::masked_gene_loss_grad(P<B>(x), P<B>(x), 2, 2, P<B>(rows), P<B>(lab), 0, 1.0, 1.0, P<B>(y), P<B>(y), P<B>(terms),
                             static_cast<std::int32_t*>(nullptr));
    B::masked_gene_metrics_rows(P<B>(x), 2, 2, P<B>(rows), P<B>(lab), static_cast<const std::int32_t*>(nullptr), 0,
                                P<B>(terms));
    genlm::adamw_hparams h;
    B::adamw_step(P<B>(x), P<B>(x), P<B>(y), P<B>(y), 0, h);
    CHECK(B::sum_squares(P<B>(x), 0) == 0.0);
    CHECK(B::dot(P<B>(x), P<B>(y), 0) == 0.0);
    CHECK(B::count_nonfinite(P<B>(x), 0) == 0);
    CHECK(B::count_input_faults(P<B>(x), 0, P<B>(x), 0, 4) == 0);
  });
  GPU_CHECK_BITWISE("untouched x", x.got(), xv);
  GPU_CHECK_BITWISE("untouched y", y.got(), yv);
}

TEST_CASE("CUDA errors surface as genlm::cuda_error naming the call", "[errors]") {
  // 2^50 floats = 2^52 bytes (4 PiB): no device has that; any power-of-two rounding of a caching
  // allocator keeps the byte count.
  const index_t n = index_t(1) << 50;
  const std::string bytes = "4503599627370496";
  try {
    float* p = cuda32::allocate<float>(n);
    cuda32::deallocate(p);
    FAIL("allocating 4 PiB did not throw");
  } catch (const genlm::cuda_error& e) {
    INFO("message: " << e.what());
    CHECK_THAT(e.what(), Catch::Contains("cudaMalloc") && Catch::Contains(bytes));
  }
  CHECK_THROWS_AS((genlm::tensor<float, cuda32>({n})), genlm::cuda_error);
  CHECK_THROWS_AS((genlm::tensor<float, cuda32>({n})), genlm::error);
  // byte counts that would wrap: 2^62 floats overflow size_t; SIZE_MAX - 5 bytes would wrap in the
  // caching allocator's rounding to a small block. Both refused before any cudaMalloc.
  CHECK_THROWS_WITH(cuda32::allocate<float>(index_t(1) << 62), Catch::Contains("overflow size_t"));
  CHECK_THROWS_WITH(genlm::cuda_allocator::allocate(std::numeric_limits<std::size_t>::max() - 5),
                    Catch::Contains("larger than any device memory"));

  // an out-of-memory error is not sticky: the device keeps working
  dual<float> x(randn<float>(1000, 120)), y(randn<float>(1000, 121));
  on_both([&](auto t) {
    using B = typename decltype(t)::type;
    B::axpy(index_t(1000), 0.5f, P<B>(x), P<B>(y));
  });
  GPU_CHECK_CLOSE("axpy after a failed allocation", y.got(), y.ref(), 1e-5);

  // shape errors still come from the layers, before any kernel runs
  genlm::parameter_store<float, cuda32> ps;
  genlm::linear<float, cuda32> lin(ps, "lin", 5, 3);
  ps.finalize();
  genlm::tensor<float, cuda32> in({4, 6}), out;
  CHECK_THROWS_AS(lin.forward(in, out), genlm::shape_error);
  CHECK_THROWS_WITH(lin.forward(in, out), Catch::Contains("expected last dimension 5"));
}
