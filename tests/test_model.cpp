// The gLM model: shapes, masked-gene loss, full-model gradient check, bad input.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

#include <genlm/genlm.hpp>
#include <genlm/model/glm.hpp>
#include <genlm/train/masked_gene_loss.hpp>
#include <genlm/train/masking.hpp>
#include <genlm/train/step.hpp>

#include "../benchmarks/common.hpp"

using namespace genlm;

namespace {
constexpr model_config micro{1, 8, 2, 12, 5, 3, 2, 8, 6};

template <class M>
tensor<typename M::scalar, cpu> random_input(index_t B, index_t L, std::uint64_t seed) {
  using T = typename M::scalar;
  tensor<T, cpu> x({B, L, M::config.input_dim()});
  rng g(seed);
  for (auto& v : x.span()) v = T(g.normal());
  return x;
}
}  // namespace

TEST_CASE("parameter initialisation: fill_normal is the normal() loop; initialize = false leaves zeros", "[model][init]") {
  // rng::fill_normal draws Philox blocks 16 values at a time; values and final state must be those
  // of out[j] = T(normal() * scale), whatever n (whole groups, a remainder, none)
  for (std::size_t n : {0, 1, 15, 16, 17, 33, 1000, 4099}) {
    for (std::uint64_t seed : {0ull, 7ull, 0xFFFFFFFFFFFFull}) {
      rng a(seed, 3), b(seed, 3);
      std::vector<float> fa(n), fb(n, -1.0f);
      for (auto& v : fa) v = float(a.normal() * 0.02);
      b.fill_normal(fb.data(), n, 0.02);
      INFO("n = " << n << ", seed = " << seed);
      CHECK((n == 0 || std::memcmp(fa.data(), fb.data(), n * sizeof(float)) == 0));  // (memcmp of null: UB)
      CHECK(a.counter() == b.counter());
      CHECK(a.normal() == b.normal());  // the streams continue identically
      std::vector<double> da(n), db(n);
      for (auto& v : da) v = a.normal() * 1.5;
      b.fill_normal(db.data(), n, 1.5);
      CHECK((n == 0 || std::memcmp(da.data(), db.data(), n * sizeof(double)) == 0));
    }
  }
  // chunks drawn by several threads: the same values as one thread and as the plain loop
  // (parameters of 700k values = 3 chunks of 2^18, a zeros and a ones parameter between them)
  {
    std::vector<std::vector<float>> got;
    for (int threads : {1, 3, 8}) {
      parameter_store<float, cpu> ps;
      ps.add("a", {1000, 700});
      ps.add("bias", {5}, init_kind::zeros);
      ps.add("gain", {7}, init_kind::ones);
      ps.add("b", {300, 1001}, init_kind::normal, 0.5);
      ps.finalize();
      ps.initialize(42, threads);
      got.push_back(std::vector<float>(ps.values().data(), ps.values().data() + ps.values().numel()));
      rng ga(42, 0), gb(42, 3);
      const auto a = ps.get("a"), b = ps.get("b");
      bool same = true;
      for (float v : a) same = same && v == float(ga.normal() * 0.02);
      for (float v : b) same = same && v == float(gb.normal() * 0.5);
      INFO("threads = " << threads);
      CHECK(same);
      CHECK(ps.get("bias") == std::vector<float>(5, 0.0f));
      CHECK(ps.get("gain") == std::vector<float>(7, 1.0f));
    }
    CHECK(got[0] == got[1]);
    CHECK(got[0] == got[2]);
  }
  // a model's initial weights are the documented draws: parameter i from rng(init_seed, i)
  using M = GLM<micro, cpu>;
  model_options mo;
  mo.init_seed = 11;
  M m(mo);
  const auto& ps = m.parameters();
  bool checked = false;
  for (std::size_t i = 0; i < ps.entries().size(); ++i) {
    const auto& e = ps.entries()[i];
    if (e.init != init_kind::normal) continue;
    rng g(mo.init_seed, i);
    const auto vals = ps.get(e.name);
    for (std::size_t j = 0; j < vals.size(); ++j) REQUIRE(vals[j] == float(g.normal() * e.init_std));
    checked = true;
  }
  CHECK(checked);
  mo.initialize = false;
  M z(mo);
  const auto& vz = z.parameters().values();
  CHECK(std::all_of(vz.data(), vz.data() + vz.numel(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("fill_normal's vectorised log and cos are within a few ulps of std::log and std::cos", "[model][init]") {
  // rng::fill_normal keeps a float from random_detail's log/cos only when a relative 2^-36 cannot
  // change it; that is sound while their error stays far below it (the bound of box_muller_lanes:
  // 2^-48). Measured here in units of 2^-52, the ulp of [1, 2).
  auto rel_ulps = [](double got, double want) { return std::fabs(got - want) / std::fabs(want) / 0x1p-52; };
  rng g(17);
  double worst_log = 0;
  for (int i = 0; i < 400000; ++i) {
    double u = g.uniform();
    if (u <= 0.0) continue;
    if (i % 3 == 1) u = 1.0 - std::ldexp(std::max(g.uniform(), 0x1p-53), -(i % 53));  // near 1: log u ~ u - 1
    if (i % 3 == 2) u = std::ldexp(0.5 + 0.5 * g.uniform(), -(i % 60));            // every exponent
    if (u >= 1.0) continue;
    worst_log = std::max(worst_log, rel_ulps(random_detail::log_unit(u), std::log(u)));
  }
  for (double u : {0x1p-53, 0.5, 0.25, 0.7071067811865475, 0.7071067811865476, 1.0 - 0x1p-53})
    worst_log = std::max(worst_log, rel_ulps(random_detail::log_unit(u), std::log(u)));
  INFO("log_unit: worst " << worst_log << " ulps");
  CHECK(worst_log <= 4.0);

  double worst_cos = 0;
  int flagged = 0, flagged_far = 0;
  auto check_cos = [&](double x) {
    std::int64_t near_zero = 0;
    const double c = random_detail::cos_two_pi(x, near_zero), want = std::cos(x);
    if (near_zero) {
      ++flagged;
      flagged_far += std::fabs(want) > 0x1p-19;  // only where cos x is near zero
      return;
    }
    worst_cos = std::max(worst_cos, rel_ulps(c, want));
  };
  for (int i = 0; i < 400000; ++i) check_cos(random_detail::two_pi * g.uniform());
  // around the quadrant boundaries (k pi/4) and the zeros of cos (pi/2, 3 pi/2), at distances
  // from 2^-52 to 2^-3, including just outside the flagged band |r| < 2^-20
  for (int k = 0; k <= 8; ++k)
    for (int p = 3; p <= 52; ++p)
      for (double sgn : {-1.0, 1.0}) {
        const double x = k * 0.7853981633974483 + sgn * std::ldexp(1.0 + 0.37 * (p % 5), -p);
        if (x >= 0.0 && x <= random_detail::two_pi) check_cos(x);
      }
  check_cos(0.0);
  check_cos(random_detail::two_pi);
  INFO("cos_two_pi: worst " << worst_cos << " ulps, " << flagged << " flagged");
  CHECK(worst_cos <= 4.0);
  CHECK(flagged_far == 0);
  CHECK(flagged > 0);  // the sweep reaches into the band

  // the Box-Muller values of both: within 2^-48 of the std::log / std::cos ones
  constexpr int G = 16;
  double worst_bm = 0;
  int near_zero_count = 0;
  for (int t = 0; t < 20000; ++t) {
    double u[2 * G], v[G];
    std::int64_t nz[G];
    for (auto& x : u) x = std::max(g.uniform(), 0x1p-53);
    random_detail::box_muller_lanes<G>(u, v, nz);
    for (int e = 0; e < G; ++e) {
      if (nz[e]) {
        ++near_zero_count;
        continue;
      }
      const double want = std::sqrt(-2.0 * std::log(u[2 * e])) * std::cos(random_detail::two_pi * u[2 * e + 1]);
      worst_bm = std::max(worst_bm, rel_ulps(v[e], want));
    }
  }
  INFO("box_muller_lanes: worst " << worst_bm << " ulps, " << near_zero_count << " near zero of 320000");
  CHECK(worst_bm <= 16.0);  // 2^-48
  CHECK(near_zero_count <= 10);  // p ~ 1.3e-6 per value
}

TEST_CASE("fill_normal rounds to float only where a relative 2^-36 cannot change the float", "[model][init]") {
  constexpr int G = 16;
  rng g(23);
  // values at and near the midpoint between two neighbouring floats are flagged, the same values
  // moved a relative 2^-30 away are not, and get float(v * scale)
  int wrong = 0;
  for (int t = 0; t < 2000; ++t) {
    double v[G], far_v[G];
    float out[G], far_out[G];
    std::int64_t unsure[G] = {}, far_unsure[G] = {};
    const double scale = t % 2 ? 1.0 : -0.02;
    for (int e = 0; e < G; ++e) {
      // a float of any exponent that float(v * scale) can reach, subnormals included
      const float f = static_cast<float>(std::ldexp(1.0 + g.uniform(), int(g.below(250)) - 140));
      const double mid = (double(f) + double(std::nextafter(f, 2.0f * f))) / 2.0;
      const double rel[] = {0.0, 0x1p-40, -0x1p-40, 0x1p-37, -0x1p-37};
      v[e] = mid * (1.0 + rel[e % 5]) / scale;
      far_v[e] = mid * (1.0 + (e % 2 ? 0x1p-30 : -0x1p-30)) / scale;
    }
    random_detail::round_to_float_checked<G>(v, scale, out, unsure);
    random_detail::round_to_float_checked<G>(far_v, scale, far_out, far_unsure);
    for (int e = 0; e < G; ++e) {
      wrong += unsure[e] == 0;
      wrong += far_unsure[e] != 0;
      const float want = static_cast<float>(far_v[e] * scale);
      wrong += std::memcmp(&far_out[e], &want, sizeof(float)) != 0;
    }
  }
  CHECK(wrong == 0);
  // random values: about one in 2^11 is flagged; the others round as float(v * scale) does
  long flagged = 0, mismatched = 0, n = 0;
  for (int t = 0; t < 20000; ++t, n += G) {
    double v[G];
    float out[G];
    std::int64_t unsure[G] = {};
    for (auto& x : v) x = (g.uniform() - 0.5) * 8.0;
    random_detail::round_to_float_checked<G>(v, 0.02, out, unsure);
    for (int e = 0; e < G; ++e) {
      flagged += unsure[e] != 0;
      if (!unsure[e]) mismatched += out[e] != static_cast<float>(v[e] * 0.02);
    }
  }
  INFO(flagged << " of " << n << " flagged");
  CHECK(mismatched == 0);
  CHECK(flagged > 0);
  CHECK(flagged < n / 512);
}

TEST_CASE("fill_normal: every compiled instruction set gives the normal() loop's floats", "[model][init]") {
  using random_detail::vector_isa;
  int ran = 0;
  for (vector_isa isa : {vector_isa::generic, vector_isa::avx2, vector_isa::avx512, vector_isa::best}) {
    if (!random_detail::isa_available(isa)) {
      float x;
      rng g(1);
      CHECK_THROWS_AS(g.fill_normal(&x, 1, 1.0, isa), std::invalid_argument);
      continue;
    }
    ++ran;
    // 0.02 (the model's), a negative scale, subnormal results, and 1e31 and 0 (outside the
    // vectorised path's scales: the plain loop)
    for (double scale : {0.02, -0.7, 3e-39, 1e31, 0.0}) {
      const std::size_t n = 200003;
      rng a(5, 9), b(5, 9);
      std::vector<float> fa(n), fb(n, -1.0f);
      for (auto& v : fa) v = float(a.normal() * scale);
      b.fill_normal(fb.data(), n, scale, isa);
      INFO("isa " << int(isa) << ", scale " << scale);
      CHECK((n == 0 || std::memcmp(fa.data(), fb.data(), n * sizeof(float)) == 0));  // (memcmp of null: UB)
      CHECK(a.counter() == b.counter());
    }
  }
  CHECK(ran >= 2);
}

TEST_CASE("the benchmarks' cheap initialisation: ones, zeros, and a uniform of std 0.02", "[model][init]") {
  // genlm_workload --init cheap (benchmarks/common.hpp): each parameter as its init kind says, the
  // normal ones a hashed uniform pattern of std 0.02 on +-0.0347, the same every time.
  parameter_store<float, cpu> ps;
  ps.add("a", {300, 257});
  ps.add("bias", {5}, init_kind::zeros);
  ps.add("gain", {7}, init_kind::ones);
  ps.add("b", {1000, 33});
  ps.finalize();
  std::fill(ps.values().data(), ps.values().data() + ps.values().numel(), 9.0f);  // overwritten, padding too
  bench::cheap_init(ps);
  CHECK(ps.get("bias") == std::vector<float>(5, 0.0f));
  CHECK(ps.get("gain") == std::vector<float>(7, 1.0f));
  for (const char* name : {"a", "b"}) {
    const auto v = ps.get(name);
    double sum = 0, sq = 0, lo = 1, hi = -1;
    for (float x : v) sum += x, sq += double(x) * x, lo = std::min(lo, double(x)), hi = std::max(hi, double(x));
    const double n = double(v.size()), mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
    INFO(name << ": mean " << mean << ", std " << sd << ", range " << lo << " .. " << hi);
    CHECK(std::abs(mean) < 5 * 0.02 / std::sqrt(n));  // 5 standard errors
    CHECK(sd == Approx(0.02).epsilon(0.02));
    CHECK(lo >= -0.0347);
    CHECK(hi <= 0.0347);
    CHECK(hi - lo > 0.068);  // the whole range is used
    CHECK(std::set<float>(v.begin(), v.end()).size() > v.size() * 99 / 100);  // not a short cycle
  }
  const std::vector<float> first(ps.values().data(), ps.values().data() + ps.values().numel());
  bench::cheap_init(ps);
  CHECK(std::vector<float>(ps.values().data(), ps.values().data() + ps.values().numel()) == first);
  CHECK(std::count(first.begin(), first.end(), 9.0f) == 0);
}

TEST_CASE("GLM forward shapes and attention maps", "[model]") {
  GLM<configs::tiny, cpu> m;
  auto x = random_input<decltype(m)>(3, 7, 1);
  tensor<float, cpu> mask({3, 7});
  for (auto& v : mask.span()) v = 1;
  mask.at({2, 6}) = 0;
  auto out = m.forward({}, x, mask);
  CHECK(out.hidden.shape() == shape_t{3, 7, 32});
  CHECK(out.hypotheses.shape() == shape_t{3, 7, 4, 8});
  CHECK(out.logits.shape() == shape_t{3, 7, 4});
  CHECK(m.attention(1).shape() == shape_t{3, 4, 7, 7});
  CHECK(m.attention(0).at({2, 1, 3, 6}) == 0.0f);  // padding key gets no attention
  CHECK(m.parameters().contains("roberta.encoder.layer.1.attention.self.distance_embedding.weight"));
  CHECK(m.parameters().contains("lm_head.dense_prob.weight"));
  CHECK(m.parameters().at(m.parameters().find("dense.weight")).shape == shape_t{32, 33});
}

TEST_CASE("GLM with masked-gene loss passes the gradient check", "[model][gradcheck]") {
  using M = GLM<micro, cpu, double>;
  model_options o;
  o.hidden_dropout = 0.1;
  o.attention_dropout = 0.1;
  M m(o);
  {
    rng g(5);
    for (auto& v : m.parameters().values().span()) v = v != 0 ? v + 0.3 * g.normal() : 0.3 * g.normal();
  }
  const index_t B = 2, L = 5, K = micro.hypotheses, D = micro.label_dim();
  auto x = random_input<M>(B, L, 2);
  tensor<double, cpu> mask({B, L});
  for (index_t l = 0; l < L; ++l) mask.at({0, l}) = 1, mask.at({1, l}) = l < 3;
  auto xs = x.to_host();
  rng mg(3);
  auto masked = mask_genes(xs, std::vector<double>(mask.span().begin(), mask.span().end()), B, L,
                           index_t(micro.input_dim()), mg, {.probability = 0.5});
  REQUIRE(masked.size() >= 2);
  x.from_host(x.shape(), xs);
  std::vector<double> labels(masked.size() * std::size_t(D));
  rng lg(4);
  for (auto& v : labels) v = lg.normal();

  run_context ctx;
  ctx.training = true;
  ctx.seed = 11;
  masked_gene_loss_options lo;
  lo.ce_weight = GENERATE(1e-4, 1.0);  // 1.0: the likelihood path is not hidden under the MSE term
  tensor<double, cpu> loss({1}), dh, dl;
  std::vector<double> gh, gl;
  auto r = gradient_check<cpu>(
      &m.parameters(), {},
      [&]() -> const tensor<double, cpu>& {
        auto out = m.forward(ctx, x, mask);
        auto met = masked_gene_loss<double>(out.hypotheses.to_host(), out.logits.to_host(), B, L, K, D, masked, labels,
                                            &gh, &gl, lo);
        loss.at({0}) = met.loss;
        return loss;
      },
      [&](const tensor<double, cpu>& c) {
        for (auto& v : gh) v *= c.at({0});
        for (auto& v : gl) v *= c.at({0});
        dh.from_host({B, L, K, D}, gh);
        dl.from_host({B, L, K}, gl);
        m.backward(dh, dl);
      });
  INFO("ce_weight " << lo.ce_weight << ": " << r.summary());
  CHECK(r.checked == std::size_t(m.parameters().count()));
  CHECK(r.max_rel_error < 1e-6);
}

TEST_CASE("masked-gene loss picks the closest hypothesis and scores accuracy", "[model][loss]") {
  // one contig, two masked genes, K = 2 hypotheses of dim 2
  const index_t B = 1, L = 2, K = 2, D = 2;
  std::vector<double> hyp = {0, 0, 1, 1,     // gene 0: h0 = (0,0), h1 = (1,1)
                             5, 5, -1, -1};  // gene 1: h0 = (5,5), h1 = (-1,-1)
  std::vector<double> logits = {0, 2, 3, 0};
  std::vector<double> labels = {1, 2, -1, -2};  // closest: gene 0 -> h1, gene 1 -> h1
  std::vector<double> dh, dl;
  auto m = masked_gene_loss<double>(hyp, logits, B, L, K, D, {{0, 0}, {0, 1}}, labels, &dh, &dl);
  const double mse = ((0 + 1) + (0 + 1)) / 4.0;
  const double ce0 = std::log(1 + std::exp(0.0 - 2.0)), ce1 = std::log(std::exp(3.0) + 1) - 0.0;
  CHECK(m.mse == Approx(mse).epsilon(1e-12));
  CHECK(m.ce == Approx((ce0 + ce1) / 2).epsilon(1e-12));
  CHECK(m.loss == Approx(mse + 1e-4 * (ce0 + ce1) / 2).epsilon(1e-12));
  // most likely: gene 0 -> h1 = (1,1) nearest label 0 (1,2): correct; gene 1 -> h0 = (5,5): nearest label 0: wrong
  CHECK(m.correct == 1);
  CHECK(m.strand_correct == 1);  // last label dim: gene 0 (+, +) agrees, gene 1 (+, -) does not
  CHECK(dh[2] == Approx(2.0 / 4 * (1 - 1)));
  CHECK(dh[3] == Approx(2.0 / 4 * (1 - 2)));
  CHECK(dh[0] == 0.0);
  // labels are clipped to [-10, 10]
  auto c = masked_gene_loss<double>(hyp, logits, B, L, K, D, {{0, 0}}, {100.0, 1.0}, nullptr, nullptr);
  CHECK(c.mse == Approx(((10 - 1) * (10 - 1) + 0) / 2.0));
}

namespace {
/// Every field of two masked-gene results equal (bit for bit: ==).
void check_same_metrics(const masked_gene_metrics& got, const masked_gene_metrics& want) {
  CHECK(got.loss == want.loss);
  CHECK(got.mse == want.mse);
  CHECK(got.ce == want.ce);
  CHECK(got.masked == want.masked);
  CHECK(got.correct == want.correct);
  CHECK(got.cosine == want.cosine);
  CHECK(got.mse_most_likely == want.mse_most_likely);
  CHECK(got.strand_correct == want.strand_correct);
  CHECK(got.skipped == want.skipped);
}
}  // namespace

TEST_CASE("masked-gene loss in two parts (gradients, then metrics) equals the one call bit for bit", "[model][loss]") {
  const index_t B = 3, L = 7, K = 4, D = 5;
  rng r(12, 0);
  std::vector<float> hyp(std::size_t(B * L * K * D)), logits(std::size_t(B * L * K));
  for (auto& v : hyp) v = float(r.normal());
  for (auto& v : logits) v = float(r.normal());
  const std::vector<gene_pos> masked = {{0, 1}, {0, 4}, {1, 0}, {2, 6}, {2, 2}};
  std::vector<double> labels(masked.size() * std::size_t(D));
  for (auto& v : labels) v = r.normal();
  std::vector<float> dh1, dl1, dh2, dl2;
  masked_gene_loss_workspace ws1, ws2;
  const auto a = masked_gene_loss<float>(hyp, logits, B, L, K, D, masked, labels, &dh1, &dl1, {}, ws1);
  auto b = masked_gene_loss_grads<float>(hyp, logits, B, L, K, D, masked, labels, &dh2, &dl2, {}, ws2);
  CHECK(b.correct == 0);  // not yet
  CHECK(b.cosine == 0.0);
  CHECK(b.loss == a.loss);
  CHECK(dh2 == dh1);
  CHECK(dl2 == dl1);
  masked_gene_loss_metrics<float>(hyp, K, D, ws2, b);
  check_same_metrics(b, a);
  CHECK(a.masked == 5);
  CHECK(a.cosine != 0.0);
  // the metrics need the first part's workspace
  masked_gene_loss_workspace fresh;
  CHECK_THROWS_WITH(masked_gene_loss_metrics<float>(hyp, K, D, fresh, b),
                    Catch::Contains("call that first") && Catch::Contains("5 masked genes"));
}

TEMPLATE_TEST_CASE("cpu::masked_gene_metrics_rows follows the metric definitions (ties, NaN, zeros)", "[model][loss]",
                   float, double) {
  using T = TestType;
  const index_t K = 2, D = 2, n = 4;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // hyp (4 rows, K, D); labels y0..y3; gene i sits at rows[i] and its most likely hypothesis is choice[2i+1]
  const std::vector<T> hyp = {T(0), T(1), T(9), T(9),          // row 0: k0 = (0, 1)
                              T(-0.0), T(0.0), T(9), T(9),     // row 1: k0 = (-0, 0)
                              T(9), T(9), T(1), T(1),          // row 2: k1 = (1, 1)
                              T(9), T(9), T(nan), T(0)};       // row 3: k1 = (NaN, 0)
  const std::vector<double> y = {1, 1, -1, 1, 1, -1, 0.5, 0};
  const std::vector<std::int64_t> rows = {2, 0, 3, 1};
  const std::vector<std::int32_t> choice = {0, 1, 1, 0, 0, 1, 1, 0};
  std::vector<double> out(std::size_t(4 * n), -7.0);
  cpu::masked_gene_metrics_rows(hyp.data(), K, D, rows.data(), y.data(), choice.data(), n, out.data());
  // gene 0: h = (1, 1) = y0: nearest, cosine 1, distance 0, strand (+, +)
  CHECK(out[0] == Approx(1.0));
  CHECK(out[1] == 0.0);
  CHECK(out[2] == 1.0);
  CHECK(out[3] == 1.0);
  // gene 1: h = (0, 1) is 1 from y0 and y1 (exact tie): the first, y0, is nearest -> wrong
  CHECK(out[4] == Approx(1.0 / std::sqrt(2.0)));
  CHECK(out[5] == 1.0);
  CHECK(out[6] == 1.0);
  CHECK(out[7] == 0.0);
  // gene 2: h = (NaN, 0): every distance NaN -> no nearest label; 0 vs -1 -> strand wrong
  CHECK(std::isnan(out[8]));
  CHECK(std::isnan(out[9]));
  CHECK(out[10] == 0.0);
  CHECK(out[11] == 0.0);
  // gene 3: h = (-0, 0): cosine 0 / max(0, 1e-30) = 0, nearest y3 = (0.5, 0), -0 >= 0 and 0 >= 0 agree
  CHECK(out[12] == 0.0);
  CHECK(out[13] == 0.25);
  CHECK(out[14] == 1.0);
  CHECK(out[15] == 1.0);
  // the public definition of the accuracy: nearest_label_correct on the most likely hypotheses
  std::vector<double> pred;
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < D; ++j)
      pred.push_back(double(hyp[std::size_t((rows[std::size_t(i)] * K + choice[std::size_t(2 * i + 1)]) * D + j)]));
  CHECK(nearest_label_correct(pred, y, n, D) == 2);
  // random genes (37: blocks of labels and a remainder; 2 threads): every output is the plain
  // loops' value bit for bit (the nearest label too); correct counts as nearest_label_correct's
  const index_t R2 = 50, K2 = 3, D2 = 9, n2 = 37;
  rng g(23, 0);
  std::vector<T> h2(std::size_t(R2 * K2 * D2));
  std::vector<double> y2(std::size_t(n2 * D2));
  for (auto& v : h2) v = T(g.normal());
  for (auto& v : y2) v = g.normal();
  for (index_t j = 0; j < D2; ++j) y2[std::size_t(5 * D2 + j)] = y2[std::size_t(3 * D2 + j)];  // labels 3 and 5 equal
  std::vector<std::int64_t> rows2;
  std::vector<std::int32_t> choice2;
  for (index_t i = 0; i < n2; ++i) {
    rows2.push_back((i * 7) % R2);
    choice2.push_back(std::int32_t(g.below(3))), choice2.push_back(std::int32_t(g.below(3)));
  }
  // gene 5's prediction is label 3 (= label 5): the tie goes to 3, so gene 3 is right and 5 wrong
  for (index_t j = 0; j < D2; ++j) {
    h2[std::size_t((rows2[3] * K2 + choice2[7]) * D2 + j)] = T(y2[std::size_t(3 * D2 + j)]);
    h2[std::size_t((rows2[5] * K2 + choice2[11]) * D2 + j)] = T(y2[std::size_t(3 * D2 + j)]);
  }
  std::vector<double> out2(std::size_t(4 * n2)), pred2;
  const int threads = cpu::num_threads();
  cpu::set_num_threads(2);
  cpu::masked_gene_metrics_rows(h2.data(), K2, D2, rows2.data(), y2.data(), choice2.data(), n2, out2.data());
  cpu::set_num_threads(threads);
  index_t flagged = 0;
  for (index_t i = 0; i < n2; ++i) {
    const T* hp = &h2[std::size_t((rows2[std::size_t(i)] * K2 + choice2[std::size_t(2 * i + 1)]) * D2)];
    const double* yi = &y2[std::size_t(i * D2)];
    double dot = 0, nh = 0, ny = 0, sq = 0;
    for (index_t j = 0; j < D2; ++j) {
      const double a = double(hp[j]);
      pred2.push_back(a);
      dot += a * yi[j], nh += a * a, ny += yi[j] * yi[j];
      sq += (a - yi[j]) * (a - yi[j]);
    }
    CAPTURE(i);
    CHECK(out2[std::size_t(4 * i)] == dot / std::max(std::sqrt(nh * ny), 1e-30));
    CHECK(out2[std::size_t(4 * i + 1)] == sq);
    CHECK(out2[std::size_t(4 * i + 2)] == ((hp[D2 - 1] >= 0) == (yi[D2 - 1] >= 0) ? 1.0 : 0.0));
    index_t best = -1;  // the nearest label one distance at a time, the first on ties
    double bd = std::numeric_limits<double>::infinity();
    for (index_t j = 0; j < n2; ++j) {
      double d = 0;
      for (index_t c = 0; c < D2; ++c) d += (double(hp[c]) - y2[std::size_t(j * D2 + c)]) * (double(hp[c]) - y2[std::size_t(j * D2 + c)]);
      if (d < bd) bd = d, best = j;
    }
    CHECK(out2[std::size_t(4 * i + 3)] == (best == i ? 1.0 : 0.0));
    flagged += out2[std::size_t(4 * i + 3)] != 0;
  }
  CHECK(out2[4 * 3 + 3] == 1.0);
  CHECK(out2[4 * 5 + 3] == 0.0);
  CHECK(flagged == nearest_label_correct(pred2, y2, n2, D2));
  CHECK(flagged >= 1);
}

namespace {
/// masked_gene_pass's reference: forward, host copies, masked_gene_loss on them, the gradients
/// scaled by s on the host, backward. Returns the metrics; the model holds the gradients.
template <class M>
masked_gene_metrics host_loss_pass(M& m, const run_context& ctx, const masked_batch<float>& mb, double s,
                                   bool backward) {
  constexpr auto C = M::config;
  const host_batch<float>& b = mb.b;
  const auto x = tensor<float, cpu>::from_host_data({b.B, b.L, b.F}, b.x);
  const auto mask = tensor<float, cpu>::from_host_data({b.B, b.L}, b.mask);
  auto out = m.forward(ctx, x, mask);
  std::vector<float> gh, gl;
  const auto r = masked_gene_loss<float>(out.hypotheses.to_host(), out.logits.to_host(), b.B, b.L, C.hypotheses,
                                         C.label_dim(), mb.masked, mb.labels, &gh, &gl);
  if (backward) {
    for (auto& v : gh) v = float(double(v) * s);
    for (auto& v : gl) v = float(double(v) * s);
    m.backward(tensor<float, cpu>::from_host_data({b.B, b.L, C.hypotheses, C.label_dim()}, gh),
               tensor<float, cpu>::from_host_data({b.B, b.L, C.hypotheses}, gl));
  }
  return r;
}
masked_batch<float> random_masked_batch(index_t B, index_t L, index_t F, index_t D, const std::vector<gene_pos>& masked,
                                        std::uint64_t seed) {
  masked_batch<float> mb;
  rng g(seed);
  mb.b.B = B, mb.b.L = L, mb.b.F = F;
  for (index_t i = 0; i < B * L * F; ++i) mb.b.x.push_back(float(g.normal()));
  mb.b.mask.assign(std::size_t(B * L), 1.0f);
  mb.b.mask.back() = 0.0f;  // a padded position
  mb.masked = masked;
  for (std::size_t i = 0; i < masked.size() * std::size_t(D); ++i) mb.labels.push_back(2.0 * g.normal());
  if (mb.labels.size() > 1) mb.labels[1] = 25.0;  // clipped to 10
  return mb;
}
}  // namespace

TEST_CASE("masked_gene_pass (the loss on the backend) equals forward + host loss + backward bit for bit",
          "[model][loss][training]") {
  using M = GLM<micro, cpu>;
  constexpr auto C = M::config;
  model_options mo;
  mo.init_seed = 5;
  M a(mo), b(mo);
  masked_gene_pass<M> pass;
  pass.reserve(64);
  const index_t B = 3, L = 5, F = C.input_dim(), D = C.label_dim();
  const std::vector<std::vector<gene_pos>> masks = {{{0, 1}, {2, 4}, {1, 0}, {0, 3}, {2, 0}, {1, 2}}, {{1, 4}}, {}};
  std::uint64_t seed = 40;
  for (const double s : {1.0, 0.125}) {  // powers of two: scaling before or after rounding to float agree
    for (const auto& masked : masks) {
      for (const bool backward : {true, false}) {
        CAPTURE(s, masked.size(), backward);
        const auto mb = random_masked_batch(B, L, F, D, masked, ++seed);
        run_context ctx;
        ctx.training = true, ctx.seed = 9, ctx.step = seed;
        a.parameters().zero_grads();
        b.parameters().zero_grads();
        const auto want = host_loss_pass(a, ctx, mb, s, backward);
        const auto got = pass.run(b, ctx, mb, {}, s, backward);
        CHECK(got.masked == index_t(masked.size()));
        check_same_metrics(got, want);
        if (!masked.empty()) CHECK(got.loss > 0);
        const auto ga = a.parameters().grads().to_host(), gb = b.parameters().grads().to_host();
        REQUIRE(ga.size() == gb.size());
        CHECK(std::memcmp(ga.data(), gb.data(), ga.size() * sizeof(float)) == 0);
        if (backward && !masked.empty())
          CHECK(std::any_of(gb.begin(), gb.end(), [](float v) { return v != 0.0f; }));
      }
    }
  }
  SECTION("another scale is folded into the gradients in double: within a rounding of the host's") {
    const auto mb = random_masked_batch(B, L, F, D, masks[0], 77);
    const double s = 0.3;
    a.parameters().zero_grads();
    host_loss_pass(a, run_context{}, mb, s, true);
    pass.run(b, run_context{}, mb, {}, s, true);
    const auto ga = a.parameters().grads().to_host(), gb = b.parameters().grads().to_host();
    double worst = 0, scale = 0;
    for (std::size_t i = 0; i < ga.size(); ++i)
      worst = std::max(worst, std::abs(double(ga[i]) - double(gb[i]))), scale = std::max(scale, std::abs(double(ga[i])));
    CHECK(scale > 0);
    CHECK(worst <= 1e-5 * scale);
  }
  SECTION("count_nonfinite_gradients: the gradients' NaN/Inf count comes back with the results") {
    masked_gene_pass<M> counting;
    counting.count_nonfinite_gradients(true);
    CHECK(pass.nonfinite_gradients() == -1);  // not counting
    for (const auto& masked : masks) {
      CAPTURE(masked.size());
      const auto mb = random_masked_batch(B, L, F, D, masked, 81);
      const auto plain = pass.run(a, run_context{}, mb, {}, 1.0, true);
      const auto ga = a.parameters().grads().to_host();
      const auto got = counting.run(b, run_context{}, mb, {}, 1.0, true);
      check_same_metrics(got, plain);
      const auto gb = b.parameters().grads().to_host();
      CHECK(std::memcmp(ga.data(), gb.data(), ga.size() * sizeof(float)) == 0);
      CHECK(counting.nonfinite_gradients() == 0);
      CHECK(pass.nonfinite_gradients() == -1);
      counting.run(b, run_context{}, mb, {}, 1.0, false);
      CHECK(counting.nonfinite_gradients() == -1);  // no backward
    }
    // an Inf weight of the hypothesis head spreads NaN/Inf through the gradients: counted
    auto w = b.parameters().get("lm_head.dense.weight");
    w[3] = std::numeric_limits<float>::infinity();
    b.parameters().set("lm_head.dense.weight", b.parameters().at(b.parameters().find("lm_head.dense.weight")).shape, w);
    counting.run(b, run_context{}, random_masked_batch(B, L, F, D, masks[0], 82), {}, 1.0, true);
    const auto& g = b.parameters().grads();
    CHECK(counting.nonfinite_gradients() > 0);
    CHECK(counting.nonfinite_gradients() == cpu::count_nonfinite(g.data(), g.numel()));
  }
  SECTION("bad labels and positions throw before the forward pass, naming them") {
    auto mb = random_masked_batch(B, L, F, D, masks[0], 78);
    mb.labels[std::size_t(D + 2)] = std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH(pass.run(b, run_context{}, mb, {}, 1.0, true),
                      Catch::Contains("label (row 1, column 2)") && Catch::Contains("inf"));
    mb = random_masked_batch(B, L, F, D, {{0, 1}, {3, 0}}, 79);
    CHECK_THROWS_WITH(pass.run(b, run_context{}, mb, {}, 1.0, true),
                      Catch::Contains("masked gene (3, 0) outside the batch (3, 5)"));
    mb = random_masked_batch(B, L, F, D, {{0, 1}, {0, 1}}, 80);
    CHECK_THROWS_WITH(pass.run(b, run_context{}, mb, {}, 1.0, true), Catch::Contains("masked more than once"));
  }
}

TEST_CASE("GLM rejects bad input with clear messages", "[model][errors]") {
  GLM<configs::tiny, cpu> m;
  tensor<float, cpu> mask({1, 4});
  for (auto& v : mask.span()) v = 1;
  SECTION("wrong feature dimension") {
    tensor<float, cpu> x({1, 4, 32});
    x.zero();
    CHECK_THROWS_WITH(m.forward({}, x, mask), Catch::Contains("(1, 4, 32)") && Catch::Contains("33"));
    CHECK_THROWS_AS(m.forward({}, x, mask), shape_error);
  }
  SECTION("NaN input") {
    auto x = random_input<decltype(m)>(1, 4, 1);
    x.at({0, 2, 5}) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_AS(m.forward({}, x, mask), value_error);
    CHECK_THROWS_WITH(m.forward({}, x, mask), Catch::Contains("gene 2, feature 5"));
  }
  SECTION("contig longer than the distance table allows") {
    auto x = random_input<decltype(m)>(1, 33, 1);
    tensor<float, cpu> mk({1, 33});
    for (auto& v : mk.span()) v = 1;
    CHECK_THROWS_WITH(m.forward({}, x, mk), Catch::Contains("33 genes exceeds max_positions 32"));
  }
  SECTION("mask of the wrong shape") {
    auto x = random_input<decltype(m)>(2, 4, 1);
    CHECK_THROWS_WITH(m.forward({}, x, mask), Catch::Contains("attention mask: shape (1, 4), expected (2, 4)"));
  }
  SECTION("attention layer: over-long sequence") {
    parameter_store<double, cpu> ps;
    relative_attention<double, cpu> att(ps, "a", 4, 2, 3, 0.0, 1);
    ps.finalize();
    tensor<double, cpu> x({1, 4, 4}), y;
    x.zero();
    CHECK_THROWS_WITH(att.forward({}, x, nullptr, y), Catch::Contains("sequence length 4 is outside 1..3"));
  }
  SECTION("linear: mismatched input") {
    parameter_store<double, cpu> ps;
    linear<double, cpu> lin(ps, "fc", 3, 2);
    ps.finalize();
    tensor<double, cpu> x({2, 4}), y;
    CHECK_THROWS_WITH(lin.forward(x, y), Catch::Contains("linear 'fc': input shape (2, 4), expected last dimension 3"));
  }
}

TEST_CASE("masked-gene loss rejects empty dimensions, non-finite labels, bad options and duplicate genes",
          "[model][loss][errors]") {
  std::vector<double> dh, dl;
  SECTION("K = 0 or D = 0") {
    std::vector<double> none, logits(2, 0.0);
    REQUIRE_THROWS_AS(masked_gene_loss<double>(none, logits, 1, 1, 2, 0, {{0, 0}}, {}, &dh, &dl), shape_error);
    REQUIRE_THROWS_WITH(masked_gene_loss<double>(none, logits, 1, 1, 2, 0, {{0, 0}}, {}, &dh, &dl),
                        Catch::Contains("D = 0"));
    REQUIRE_THROWS_AS(masked_gene_loss<double>(none, none, 1, 1, 0, 3, {{0, 0}}, {1, 2, 3}, &dh, &dl), shape_error);
    REQUIRE_THROWS_WITH(masked_gene_loss<double>(none, none, 1, 1, 0, 3, {{0, 0}}, {1, 2, 3}, &dh, &dl),
                        Catch::Contains("K = 0"));
  }
  // B = 1, L = 2, K = 2, D = 4
  const std::vector<double> hyp(16, 0.5), logits(4, 0.0);
  SECTION("NaN / Inf labels name their row, column and value") {
    std::vector<double> labels = {1, 2, 3, 4, 5, 6, std::nan(""), 8};
    REQUIRE_THROWS_AS(masked_gene_loss<double>(hyp, logits, 1, 2, 2, 4, {{0, 0}, {0, 1}}, labels, &dh, &dl),
                      value_error);
    REQUIRE_THROWS_WITH(masked_gene_loss<double>(hyp, logits, 1, 2, 2, 4, {{0, 0}, {0, 1}}, labels, &dh, &dl),
                        Catch::Contains("label (row 1, column 2) is nan"));
    labels[6] = 7;
    labels[1] = -std::numeric_limits<double>::infinity();
    REQUIRE_THROWS_WITH(masked_gene_loss<double>(hyp, logits, 1, 2, 2, 4, {{0, 0}, {0, 1}}, labels, nullptr, nullptr),
                        Catch::Contains("label (row 0, column 1) is -inf"));
  }
  SECTION("options: ce_weight finite >= 0, label_clip finite > 0") {
    const std::vector<double> labels = {100, 1, 2, 3};
    auto with = [&](double ce, double clip) {
      masked_gene_loss_options o;
      o.ce_weight = ce;
      o.label_clip = clip;
      return masked_gene_loss<double>(hyp, logits, 1, 2, 2, 4, {{0, 0}}, labels, &dh, &dl, o);
    };
    REQUIRE_THROWS_AS(with(-5, 10), value_error);
    REQUIRE_THROWS_WITH(with(-5, 10), Catch::Contains("ce_weight = -5"));
    REQUIRE_THROWS_WITH(with(std::nan(""), 10), Catch::Contains("ce_weight = nan"));
    REQUIRE_THROWS_WITH(with(1e-4, -1), Catch::Contains("label_clip = -1"));
    REQUIRE_THROWS_WITH(with(1e-4, 0), Catch::Contains("label_clip = 0"));
    REQUIRE_THROWS_WITH(with(1e-4, std::nan("")), Catch::Contains("label_clip = nan"));
    REQUIRE_THROWS_WITH(with(1e-4, std::numeric_limits<double>::infinity()), Catch::Contains("label_clip = inf"));
    masked_gene_loss_options ok;
    ok.ce_weight = 0;  // allowed: no cross entropy
    ok.label_clip = 2;
    const auto m = masked_gene_loss<double>(hyp, logits, 1, 2, 2, 4, {{0, 0}}, labels, &dh, &dl, ok);
    // clipped label (2, 1, 2, 2) against h = 0.5: ((1.5)^2 + 0.25 + 2.25 + 2.25) / 4
    CHECK(m.mse == Approx((2.25 + 0.25 + 2.25 + 2.25) / 4).epsilon(1e-12));
    CHECK(m.loss == Approx(m.mse).epsilon(1e-12));
    for (double g : dl) CHECK(g == 0.0);
  }
  SECTION("a gene masked twice") {
    const std::vector<double> labels = {1, 1, 1, 1, -1, -1, -1, -1, 0, 0, 0, 0};
    REQUIRE_THROWS_AS(masked_gene_loss<double>(hyp, logits, 1, 2, 2, 4, {{0, 1}, {0, 0}, {0, 1}}, labels, &dh, &dl),
                      value_error);
    REQUIRE_THROWS_WITH(masked_gene_loss<double>(hyp, logits, 1, 2, 2, 4, {{0, 1}, {0, 0}, {0, 1}}, labels, &dh, &dl),
                        Catch::Contains("gene (0, 1) is masked more than once"));
    // a reused workspace is not fooled by an earlier call's positions
    masked_gene_loss_workspace ws;
    masked_gene_loss<double>(hyp, logits, 1, 2, 2, 4, {{0, 1}}, {1, 1, 1, 1}, &dh, &dl, {}, ws);
    const auto m = masked_gene_loss<double>(hyp, logits, 1, 2, 2, 4, {{0, 1}}, {1, 1, 1, 1}, &dh, &dl, {}, ws);
    CHECK(m.masked == 1);
  }
}

TEST_CASE("GLM forward rejects attention masks other than 0 and 1 or without a gene", "[model][errors]") {
  GLM<configs::tiny, cpu> m;
  auto x = random_input<decltype(m)>(2, 4, 1);
  tensor<float, cpu> mask({2, 4});
  for (auto& v : mask.span()) v = 1;
  mask.at({1, 3}) = 0;  // padding is fine
  REQUIRE_NOTHROW(m.forward({}, x, mask));
  SECTION("NaN") {
    mask.at({1, 1}) = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_AS(m.forward({}, x, mask), value_error);
    REQUIRE_THROWS_WITH(m.forward({}, x, mask), Catch::Contains("mask value nan at contig 1, gene 1"));
  }
  SECTION("values other than 0 and 1") {
    mask.at({0, 2}) = 2;
    REQUIRE_THROWS_WITH(m.forward({}, x, mask), Catch::Contains("mask value 2 at contig 0, gene 2"));
    mask.at({0, 2}) = 0.5f;
    REQUIRE_THROWS_WITH(m.forward({}, x, mask), Catch::Contains("mask value 0.5 at contig 0, gene 2"));
    mask.at({0, 2}) = -1;
    REQUIRE_THROWS_AS(m.forward({}, x, mask), value_error);
  }
  SECTION("a contig without genes") {
    for (index_t l = 0; l < 4; ++l) mask.at({1, l}) = 0;
    REQUIRE_THROWS_AS(m.forward({}, x, mask), value_error);
    REQUIRE_THROWS_WITH(m.forward({}, x, mask), Catch::Contains("attention mask of contig 1 is all zero"));
  }
}

TEST_CASE("GLM forward of host inputs: the tensor forward's outputs bit for bit, its errors word for word",
          "[model][errors]") {
  using M = GLM<configs::tiny, cpu>;
  M m;
  const index_t B = 2, L = 4;
  auto x = random_input<M>(B, L, 1);
  tensor<float, cpu> mask({B, L});
  for (auto& v : mask.span()) v = 1;
  mask.at({1, 3}) = 0;
  const auto same = [](const tensor<float, cpu>& a, const tensor<float, cpu>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), std::size_t(a.numel()) * sizeof(float)) == 0;
  };
  for (const bool training : {false, true}) {
    CAPTURE(training);
    run_context ctx;
    ctx.training = training, ctx.seed = 3, ctx.step = 7;
    const auto o = m.forward(ctx, x, mask);
    const tensor<float, cpu> h = o.hidden, hyp = o.hypotheses, lg = o.logits;
    const auto p = m.forward(ctx, B, L, x.span(), mask.span());
    CHECK(same(p.hidden, h));
    CHECK(same(p.hypotheses, hyp));
    CHECK(same(p.logits, lg));
  }
  const auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const genlm::error& e) {
      return e.what();
    }
    return "no error";
  };
  // the same message from both overloads and from GLM::check_inputs, and it contains `want`
  CHECK_NOTHROW(M::check_inputs(B, L, x.span(), mask.span()));
  const auto both = [&](const tensor<float, cpu>& xs, const tensor<float, cpu>& ms, const std::string& want) {
    const std::string a = message([&] { m.forward({}, xs, ms); });
    const std::string b = message([&] { m.forward({}, xs.dim(0), xs.dim(1), xs.span(), ms.span()); });
    const std::string c = message([&] { M::check_inputs(xs.dim(0), xs.dim(1), xs.span(), ms.span()); });
    CHECK(a == b);
    CHECK(c == b);
    CHECK_THAT(b, Catch::Contains(want));
  };
  SECTION("NaN and Inf inputs") {
    x.at({1, 2, 5}) = std::numeric_limits<float>::quiet_NaN();
    x.at({1, 3, 0}) = -std::numeric_limits<float>::infinity();
    both(x, mask, "2 NaN/Inf input value(s); first at contig 1, gene 2, feature 5");
  }
  SECTION("mask values") {
    mask.at({0, 2}) = 0.5f;
    both(x, mask, "mask value 0.5 at contig 0, gene 2");
    mask.at({0, 2}) = std::numeric_limits<float>::quiet_NaN();
    both(x, mask, "mask value nan at contig 0, gene 2");
    mask.at({0, 2}) = 1;
    for (index_t l = 0; l < L; ++l) mask.at({1, l}) = 0;
    both(x, mask, "attention mask of contig 1 is all zero");
  }
  SECTION("over-long contig") {
    const auto xl = random_input<M>(1, 33, 2);
    tensor<float, cpu> ml({1, 33});
    for (auto& v : ml.span()) v = 1;
    both(xl, ml, "33 genes exceeds max_positions 32");
  }
  SECTION("sizes that do not match (B, L)") {
    const auto F = std::size_t(M::config.input_dim());
    std::vector<float> hx(std::size_t(B * L) * F, 0.5f), hm(std::size_t(B * L), 1.0f);
    REQUIRE_NOTHROW(m.forward({}, B, L, hx, hm));
    hx.pop_back();
    CHECK_THROWS_AS(m.forward({}, B, L, hx, hm), shape_error);
    CHECK_THROWS_WITH(m.forward({}, B, L, hx, hm), Catch::Contains(std::to_string(hx.size()) + " input values") &&
                                                       Catch::Contains("expected " + std::to_string(hx.size() + 1)));
    hx.push_back(0.5f);
    hm.pop_back();
    CHECK_THROWS_WITH(m.forward({}, B, L, hx, hm), Catch::Contains("attention mask of 7 values") &&
                                                       Catch::Contains("expected 8"));
    CHECK_THROWS_WITH(m.forward({}, 0, L, {}, {}), Catch::Contains("empty batch"));
  }
}

TEST_CASE("GLM backward uses the forward's input even when the caller's tensor changed or is gone",
          "[model][gradcheck]") {
  using M = GLM<micro, cpu, double>;
  M m;
  const index_t B = 2, L = 3, K = micro.hypotheses, D = micro.label_dim();
  tensor<double, cpu> mask({B, L}), dh({B, L, K, D}), dl({B, L, K});
  for (auto& v : mask.span()) v = 1;
  rng g(9);
  for (auto& v : dh.span()) v = g.normal();
  for (auto& v : dl.span()) v = g.normal();
  const auto x = random_input<M>(B, L, 4);
  // reference: the input alive and unchanged
  m.forward({}, x, mask);
  m.backward(dh, dl);
  const auto want = m.parameters().get_grad("dense.weight");
  REQUIRE(std::any_of(want.begin(), want.end(), [](double v) { return v != 0; }));
  SECTION("overwritten after forward") {
    auto y = x;
    m.forward({}, y, mask);
    for (auto& v : y.span()) v = 7.0;
    m.backward(dh, dl);
    CHECK(m.parameters().get_grad("dense.weight") == want);
  }
  SECTION("destroyed after forward") {
    {
      auto y = x;
      m.forward({}, y, mask);
    }
    const auto z = random_input<M>(B, L, 5);  // likely reuses the freed memory
    REQUIRE(z.numel() == x.numel());
    m.backward(dh, dl);
    CHECK(m.parameters().get_grad("dense.weight") == want);
  }
}
