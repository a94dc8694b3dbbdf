// The CPU backend's fused ops give exactly (bit for bit) what the separate ops they replace give:
//   bias_gelu_forward        = add_bias; gelu_forward
//   bias_dropout_add         = add_bias; dropout_forward (same mask); add      (and without dropout)
//   relpos_softmax_forward   = relpos_add; masked_softmax_forward
//   softmax_relpos_backward  = softmax_backward; relpos_grad
// for float and double, ragged sizes (rows x cols not a multiple of the Philox block of 4), with and
// without mask / key term / bias, on 1 and 2 threads (sizes large enough to split). The encoder
// layer built on them is covered by the gradient checks and the Hugging Face parity tests, and
// below against the same layer with an activation that has no fused form (the unfused path).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <genlm/backend/cpu.hpp>
#include <genlm/layers/encoder_layer.hpp>

using namespace genlm;

namespace {

template <class T>
std::vector<T> randn(std::size_t n, std::uint32_t seed, double scale = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd(0.0, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = T(nd(gen));
  return v;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

struct thread_guard {
  int saved = cpu::num_threads();
  explicit thread_guard(int n) { cpu::set_num_threads(n); }
  ~thread_guard() { cpu::set_num_threads(saved); }
};

}  // namespace

TEMPLATE_TEST_CASE("cpu bias_gelu_forward equals add_bias then gelu_forward bit for bit", "[fused]", float, double) {
  using T = TestType;
  for (int threads : {1, 2})
    for (auto [rows, cols] : {std::pair<index_t, index_t>{1, 1}, {3, 7}, {5, 130}, {240, 3072}}) {
      CAPTURE(threads, rows, cols);
      thread_guard tg(threads);
      const auto y0 = randn<T>(std::size_t(rows * cols), 1, 2.0);
      const auto b = randn<T>(std::size_t(cols), 2);
      auto y_ref = y0, g_ref = std::vector<T>(y0.size());
      cpu::add_bias(y_ref.data(), b.data(), rows, cols);
      cpu::gelu_forward(y_ref.data(), g_ref.data(), rows * cols);
      auto y = y0, g = std::vector<T>(y0.size());
      cpu::bias_gelu_forward(y.data(), b.data(), g.data(), rows, cols);
      CHECK(same_bits(y, y_ref));  // the pre-activation kept for the backward
      CHECK(same_bits(g, g_ref));
    }
}

TEMPLATE_TEST_CASE("cpu bias_dropout_add equals add_bias, dropout_forward and add bit for bit", "[fused]", float,
                   double) {
  using T = TestType;
  const std::uint64_t key = 0x9e3779b97f4a7c15ull, step = 41;
  for (int threads : {1, 2})
    for (auto [rows, cols] : {std::pair<index_t, index_t>{1, 1}, {3, 7}, {5, 130}, {33, 61}, {240, 1280}})
      for (bool with_bias : {true, false})
        for (double p : {0.0, 0.1, 0.5}) {
          CAPTURE(threads, rows, cols, with_bias, p);
          thread_guard tg(threads);
          const index_t n = rows * cols;
          const auto y0 = randn<T>(std::size_t(n), 3, 2.0);
          const auto res = randn<T>(std::size_t(n), 4);
          const auto b = randn<T>(std::size_t(cols), 5);
          const T* bias = with_bias ? b.data() : nullptr;
          // reference: the separate ops
          auto y_ref = y0;
          std::vector<std::uint8_t> keep_ref(std::size_t(n), 7), keep(std::size_t(n), 9);
          if (bias) cpu::add_bias(y_ref.data(), bias, rows, cols);
          if (p > 0) cpu::dropout_forward(y_ref.data(), y_ref.data(), keep_ref.data(), n, p, key, step);
          cpu::add(n, y_ref.data(), res.data(), y_ref.data());
          auto y = y0;
          cpu::bias_dropout_add(y.data(), bias, res.data(), p > 0 ? keep.data() : nullptr, rows, cols, p, key, step);
          CHECK(same_bits(y, y_ref));
          if (p > 0) {
            CHECK(keep == keep_ref);
            // the mask is the documented stream: keep[i] = stream_uniform(key, step, i) >= p
            index_t wrong = 0;
            for (index_t i = 0; i < n; ++i)
              wrong += keep[std::size_t(i)] != (stream_uniform(key, step, std::uint64_t(i)) >= float(p) ? 1 : 0);
            CHECK(wrong == 0);
          } else {
            CHECK(keep == std::vector<std::uint8_t>(std::size_t(n), 9));  // not touched without dropout
          }
        }
}

TEMPLATE_TEST_CASE("cpu relpos_softmax_forward equals relpos_add then masked_softmax_forward bit for bit", "[fused]",
                   float, double) {
  using T = TestType;
  for (int threads : {1, 2})
    for (auto [B, H, L] : {std::tuple<index_t, index_t, index_t>{1, 1, 1}, {2, 3, 5}, {8, 10, 30}, {4, 2, 40}})
      for (bool key_term : {true, false})
        for (bool masked : {true, false}) {
          CAPTURE(threads, B, H, L, key_term, masked);
          thread_guard tg(threads);
          const index_t W = 2 * L - 1, BH = B * H;
          const auto S0 = randn<T>(std::size_t(BH * L * L), 6, 3.0);
          const auto QE = randn<T>(std::size_t(BH * L * W), 7, 2.0);
          const auto KE = randn<T>(std::size_t(BH * L * W), 8, 2.0);
          std::vector<T> mask(std::size_t(B * L), T(1));
          for (index_t b = 0; b < B; ++b)  // the last genes of each contig are padding (at least one kept)
            for (index_t l = L - b % std::max<index_t>(1, L); l < L; ++l) mask[std::size_t(b * L + l)] = T(0);
          const T* m = masked ? mask.data() : nullptr;
          const T* ke = key_term ? KE.data() : nullptr;
          const T scale = T(0.125);
          auto ref = S0;
          cpu::relpos_add(ref.data(), QE.data(), ke, BH, L);
          cpu::masked_softmax_forward(ref.data(), m, ref.data(), B, H, L, scale);
          auto in_place = S0;
          cpu::relpos_softmax_forward(in_place.data(), QE.data(), ke, m, in_place.data(), B, H, L, scale);
          CHECK(same_bits(in_place, ref));
          std::vector<T> out(S0.size());
          cpu::relpos_softmax_forward(S0.data(), QE.data(), ke, m, out.data(), B, H, L, scale);
          CHECK(same_bits(out, ref));
        }
}

TEMPLATE_TEST_CASE("cpu softmax_relpos_backward equals softmax_backward then relpos_grad bit for bit", "[fused]", float,
                   double) {
  using T = TestType;
  for (int threads : {1, 2})
    for (auto [BH, L] : {std::pair<index_t, index_t>{1, 1}, {6, 5}, {80, 30}, {8, 40}})
      for (bool key_term : {true, false}) {
        CAPTURE(threads, BH, L, key_term);
        thread_guard tg(threads);
        const index_t W = 2 * L - 1;
        auto A = randn<T>(std::size_t(BH * L * L), 9);
        for (auto& a : A) a = a * a;  // any values: the op is linear in dA
        const auto dA = randn<T>(std::size_t(BH * L * L), 10);
        const T scale = T(0.25);
        auto ds_ref = dA;
        std::vector<T> dqe_ref(std::size_t(BH * L * W), T(5)), dke_ref(dqe_ref.size(), T(5));
        cpu::softmax_backward(A.data(), ds_ref.data(), ds_ref.data(), BH * L, L, scale);
        cpu::relpos_grad(ds_ref.data(), dqe_ref.data(), key_term ? dke_ref.data() : nullptr, BH, L);
        auto ds = dA;
        std::vector<T> dqe(dqe_ref.size(), T(-3)), dke(dqe_ref.size(), T(-3));
        cpu::softmax_relpos_backward(A.data(), ds.data(), ds.data(), dqe.data(), key_term ? dke.data() : nullptr, BH, L,
                                     scale);
        CHECK(same_bits(ds, ds_ref));
        CHECK(same_bits(dqe, dqe_ref));
        if (key_term) CHECK(same_bits(dke, dke_ref));
      }
}

TEMPLATE_TEST_CASE("cpu threaded add_bias, sum_rows, add and permute_0213 (with and without a bias) equal the one-thread results", "[fused]",
                   float, double) {
  using T = TestType;
  const index_t rows = 240, cols = 1283, A = 8, B = 30, C = 10, D = 128;
  const auto y0 = randn<T>(std::size_t(rows * cols), 11);
  const auto b = randn<T>(std::size_t(cols), 12);
  const auto x = randn<T>(std::size_t(A * B * C * D), 13);
  const auto pbias = randn<T>(std::size_t(C * D), 14);
  auto run = [&](int threads) {
    thread_guard tg(threads);
    std::vector<T> y = y0, db(std::size_t(cols), T(2)), s(y0.size()), p(x.size(), T(1));
    cpu::add_bias(y.data(), b.data(), rows, cols);
    cpu::sum_rows(y0.data(), rows, cols, db.data(), T(0.5));
    cpu::add(rows * cols, y0.data(), y.data(), s.data());
    cpu::permute_0213(x.data(), p.data(), A, B, C, D, true);
    // with a bias (C, D): assigned, then accumulated
    std::vector<T> pb(x.size(), std::numeric_limits<T>::quiet_NaN()), pba(x.size(), T(1));
    cpu::permute_0213(x.data(), pb.data(), A, B, C, D, false, pbias.data());
    cpu::permute_0213(x.data(), pba.data(), A, B, C, D, true, pbias.data());
    return std::vector<std::vector<T>>{y, db, s, p, pb, pba};
  };
  const auto one = run(1), two = run(2);
  for (std::size_t i = 0; i < one.size(); ++i) {
    CAPTURE(i);
    CHECK(same_bits(one[i], two[i]));
  }
  // and they compute what they say: spot checks against plain loops
  CHECK(one[0][std::size_t(5 * cols + 7)] == y0[std::size_t(5 * cols + 7)] + b[7]);
  T col3 = T(0.5) * T(2);
  for (index_t r = 0; r < rows; ++r) col3 += y0[std::size_t(r * cols + 3)];
  CHECK(one[1][3] == col3);
  // permute (a, b, c, d) -> (a, c, b, d), accumulated onto ones
  const index_t a = 3, bb = 17, c = 4, d = 99;
  CHECK(one[3][std::size_t(((a * C + c) * B + bb) * D + d)] == T(1) + x[std::size_t(((a * B + bb) * C + c) * D + d)]);
  // with the bias of (c, d): the value add_bias would give, then accumulated onto ones
  const T xb = x[std::size_t(((a * B + bb) * C + c) * D + d)] + pbias[std::size_t(c * D + d)];
  CHECK(one[4][std::size_t(((a * C + c) * B + bb) * D + d)] == xb);
  CHECK(one[5][std::size_t(((a * C + c) * B + bb) * D + d)] == T(1) + xb);
  std::size_t nans = 0;
  for (const T v : one[4]) nans += std::isnan(v);
  CHECK(nans == 0);  // every element assigned
}

namespace {
/// GELU without forward_bias: encoder_layer then adds the bias with add_bias and calls forward().
struct gelu_without_fusion {
  template <class T, class Backend>
  static void forward(const tensor<T, Backend>& x, tensor<T, Backend>& y) {
    gelu::forward(x, y);
  }
  template <class T, class Backend>
  static void backward(const tensor<T, Backend>& x, const tensor<T, Backend>& dy, tensor<T, Backend>& dx) {
    gelu::backward(x, dy, dx);
  }
};
}  // namespace

TEST_CASE("encoder layer: the fused path and an activation without a fused form give the same bits", "[fused]") {
  encoder_dims d;
  d.hidden = 64;
  d.heads = 4;
  d.intermediate = 96;
  d.max_positions = 32;
  const index_t B = 3, L = 20;
  parameter_store<float, cpu> ps_a, ps_b;
  encoder_layer<float, cpu> fused(ps_a, "layer", d, 7);
  encoder_layer<float, cpu, relative_key_query, gelu_without_fusion> plain(ps_b, "layer", d, 7);
  ps_a.finalize();
  ps_b.finalize();
  ps_a.initialize(5);
  ps_b.initialize(5);
  using ten = tensor<float, cpu>;
  const ten x = ten::from_host_data({B, L, d.hidden}, randn<float>(std::size_t(B * L * d.hidden), 21));
  const ten dy = ten::from_host_data({B, L, d.hidden}, randn<float>(std::size_t(B * L * d.hidden), 22));
  std::vector<float> mv(std::size_t(B * L), 1.0f);
  for (index_t l = 15; l < L; ++l) mv[std::size_t(2 * L + l)] = 0.0f;
  const ten mask = ten::from_host_data({B, L}, mv);
  for (const bool training : {false, true}) {
    CAPTURE(training);
    run_context ctx;
    ctx.training = training;
    ctx.seed = 13;
    ctx.step = 4;
    const auto ya = fused.forward(ctx, x, &mask).to_host();
    const auto yb = plain.forward(ctx, x, &mask).to_host();
    CHECK(same_bits(ya, yb));
    ten dxa, dxb;
    dxa.resize_zero(x.shape());
    dxb.resize_zero(x.shape());
    fused.backward(x, dy, dxa);
    plain.backward(x, dy, dxb);
    CHECK(same_bits(dxa.to_host(), dxb.to_host()));
    CHECK(same_bits(ps_a.grads().to_host(), ps_b.grads().to_host()));
  }
}

TEST_CASE("cpu fast_expf and fast_erff: accuracy against std, and special values", "[fused]") {
  // the float kernels of softmax and GELU; every value is checked against the double-precision std
  // function over the range the ops use
  double worst_exp = 0, worst_erf = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.01171875f) {  // 2^-7 + 2^-9: not a grid of ln2
    const double want = std::exp(double(x));
    worst_exp = std::max(worst_exp, std::abs(double(cpu_detail::fast_expf(x)) - want) / want);
  }
  for (float x = -6.0f; x <= 6.0f; x += 0.0009765625f)
    worst_erf = std::max(worst_erf, std::abs(double(cpu_detail::fast_erff(x)) - std::erf(double(x))));
  INFO("fast_expf worst relative error " << worst_exp << ", fast_erff worst absolute error " << worst_erf);
  CHECK(worst_exp < 3e-7);  // ~2 float ulp
  CHECK(worst_erf < 5e-7);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // NaN propagates (the exp's exponent was a NaN -> int conversion: undefined behaviour under UBSan;
  // the erf's clamp turned NaN into -1)
  CHECK(std::isnan(cpu_detail::fast_expf(nan)));
  CHECK(std::isnan(cpu_detail::fast_erff(nan)));
  CHECK(cpu_detail::fast_expf(-inf) == 0.0f);
  CHECK(cpu_detail::fast_expf(-100.0f) == 0.0f);
  CHECK(cpu_detail::fast_expf(0.0f) == 1.0f);
  CHECK(cpu_detail::fast_erff(inf) == 1.0f);
  CHECK(cpu_detail::fast_erff(-inf) == -1.0f);
  CHECK(cpu_detail::fast_erff(0.0f) == 0.0f);
}
