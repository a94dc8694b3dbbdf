// Training parts against their Python references: pca / normalizer (scikit-learn 1.9, numpy),
// AdamW (torch.optim.AdamW and transformers 4.22 AdamW), transformers' LR schedules and torch's
// gradient clipping. Fixtures: scripts/gen_train_fixtures.py -> tests/fixtures/train/.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <genlm/backend/cpu.hpp>
#include <genlm/core/parameters.hpp>
#include <genlm/io/safetensors.hpp>
#include <genlm/train/optimizer.hpp>
#include <genlm/train/pca.hpp>
#include <genlm/train/trainer.hpp>

#ifndef GENLM_FIXTURE_DIR
#define GENLM_FIXTURE_DIR "tests/fixtures"
#endif

using namespace genlm;

namespace {

io::safetensors_file fixture(const std::string& name) {
  return io::read_safetensors(std::string(GENLM_FIXTURE_DIR) + "/train/" + name);
}

/// max |got - want| / max |want| (scale-relative error over the whole tensor).
template <class A, class B>
double rel_err(const std::vector<A>& got, const std::vector<B>& want) {
  REQUIRE(got.size() == want.size());
  double scale = 0, diff = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    scale = std::max(scale, std::abs(double(want[i])));
    diff = std::max(diff, std::abs(double(got[i]) - double(want[i])));
  }
  return diff / std::max(scale, 1e-300);
}

/// Row r of a row-major (rows, cols) matrix.
template <class T>
std::vector<T> row(const std::vector<T>& m, std::size_t r, std::size_t cols) {
  return {m.begin() + std::ptrdiff_t(r * cols), m.begin() + std::ptrdiff_t((r + 1) * cols)};
}

/// Round trip through an in-memory safetensors image.
io::safetensors_file round_trip(const std::map<std::string, io::array>& tensors) {
  return io::read_safetensors_from_memory(io::serialize_safetensors(tensors), "<test>");
}

using genlm_test::message_of;

}  // namespace

// ------------------------------------------------------------------------------------------ PCA

TEMPLATE_TEST_CASE("pca matches sklearn PCA(svd_solver='full')", "[train][pca]", double, float) {
  using T = TestType;
  const double tol = std::is_same_v<T, double> ? 1e-6 : 1e-4;
  const auto f = fixture("pca.safetensors");
  const auto& xa = f.at("input.X");
  const index_t n = xa.shape[0], d = xa.shape[1];
  const index_t k = f.at("sklearn.components").shape[0];
  const std::vector<T> X = xa.to<T>();

  pca<T> p;
  p.fit(X.data(), n, d, k);
  REQUIRE(p.n_components() == k);
  REQUIRE(p.n_features() == d);
  REQUIRE(p.n_samples() == n);

  const double e_comp = rel_err(p.components(), f.at("sklearn.components").to<double>());
  const double e_mean = rel_err(p.mean(), f.at("sklearn.mean").to<double>());
  const double e_var = rel_err(p.explained_variance(), f.at("sklearn.explained_variance").to<double>());
  const double e_ratio = rel_err(p.explained_variance_ratio(), f.at("sklearn.explained_variance_ratio").to<double>());
  CHECK(e_comp <= tol);
  CHECK(e_mean <= tol);
  CHECK(e_var <= tol);
  CHECK(e_ratio <= tol);
  // Per component too: a sign flip or swapped component would show here.
  const auto want_c = f.at("sklearn.components").to<double>();
  for (index_t j = 0; j < k; ++j) {
    INFO("component " << j);
    CHECK(rel_err(row(p.components(), std::size_t(j), std::size_t(d)), row(want_c, std::size_t(j), std::size_t(d))) <=
          tol);
  }

  const std::vector<T> Z = p.transform(X);
  const double e_tr = rel_err(Z, f.at("sklearn.transform").to<double>());
  CHECK(e_tr <= tol);
  const std::vector<T> Xr = p.inverse_transform(Z);
  const double e_inv = rel_err(Xr, f.at("sklearn.inverse_transform").to<double>());
  CHECK(e_inv <= tol);
  // The sklearn inverse of sklearn's own scores too (isolates inverse_transform).
  const std::vector<T> Zs = f.at("sklearn.transform").to<T>();
  CHECK(rel_err(p.inverse_transform(Zs), f.at("sklearn.inverse_transform").to<double>()) <= tol);

  // Pointer API on a subset of rows gives the same rows (up to GEMM blocking round-off).
  std::vector<T> z3(std::size_t(3 * k));
  p.transform(X.data() + 5 * d, 3, z3.data());
  for (index_t i = 0; i < 3 * k; ++i) CHECK(z3[std::size_t(i)] == Approx(Z[std::size_t(5 * k + i)]).epsilon(1e-5));
}

TEST_CASE("pca save_to / load_from round trip and shape checks", "[train][pca]") {
  const auto f = fixture("pca.safetensors");
  const auto& xa = f.at("input.X");
  const index_t n = xa.shape[0], d = xa.shape[1];
  const std::vector<double> X = xa.to<double>();
  pca<double> p;
  p.fit(X.data(), n, d, 5);

  std::map<std::string, io::array> m;
  p.save_to(m);
  REQUIRE(m.count("pca.components"));
  REQUIRE(m.count("pca.mean"));
  REQUIRE(m.count("pca.explained_variance"));
  CHECK(m.at("pca.components").shape == std::vector<std::int64_t>{5, d});

  pca<float> q;  // a different T reads the same file
  q.load_from(round_trip(m));
  CHECK(q.n_components() == 5);
  CHECK(q.n_features() == d);
  CHECK(q.components() == p.components());
  CHECK(q.mean() == p.mean());
  CHECK(q.explained_variance() == p.explained_variance());
  CHECK(q.total_variance() == Approx(p.total_variance()).epsilon(1e-12));
  pca<double> r;
  r.load_from(round_trip(m));
  CHECK(r.transform(X) == p.transform(X));

  SECTION("mean of the wrong length") {
    auto bad = m;
    bad["pca.mean"] = io::array::from<double>({d - 1}, std::vector<double>(std::size_t(d - 1), 0.0));
    const auto msg = message_of<shape_error>([&] { r.load_from(round_trip(bad)); });
    CHECK_THAT(msg, Catch::Contains("pca.mean") && Catch::Contains("(23,)") && Catch::Contains("(24,)"));
  }
  SECTION("explained_variance of the wrong length") {
    auto bad = m;
    bad["pca.explained_variance"] = io::array::from<double>({6}, std::vector<double>(6, 1.0));
    const auto msg = message_of<shape_error>([&] { r.load_from(round_trip(bad)); });
    CHECK_THAT(msg, Catch::Contains("pca.explained_variance") && Catch::Contains("(6,)") && Catch::Contains("(5,)"));
  }
  SECTION("components not 2-D") {
    auto bad = m;
    bad["pca.components"] = io::array::from<double>({5 * d}, p.components());
    const auto msg = message_of<shape_error>([&] { r.load_from(round_trip(bad)); });
    CHECK_THAT(msg, Catch::Contains("pca.components") && Catch::Contains("(120,)"));
  }
  SECTION("missing tensor") {
    auto bad = m;
    bad.erase("pca.mean");
    const auto msg = message_of<lookup_error>([&] { r.load_from(round_trip(bad)); });
    CHECK_THAT(msg, Catch::Contains("pca.mean"));
  }
  SECTION("custom prefix") {
    std::map<std::string, io::array> m2;
    p.save_to(m2, "labels.pca.");
    pca<double> s;
    s.load_from(round_trip(m2), "labels.pca.");
    CHECK(s.components() == p.components());
  }
}

TEST_CASE("pca error paths", "[train][pca]") {
  std::vector<double> X(10 * 4);
  for (std::size_t i = 0; i < X.size(); ++i) X[i] = std::sin(double(i) * 1.7) + 0.01 * double(i);
  pca<double> p;

  SECTION("too many components") {
    auto msg = message_of<value_error>([&] { p.fit(X.data(), 10, 4, 5); });
    CHECK_THAT(msg, Catch::Contains("n_components = 5") && Catch::Contains("min(10, 4) = 4"));
    msg = message_of<value_error>([&] { p.fit(X.data(), 3, 4, 4); });  // min is n here
    CHECK_THAT(msg, Catch::Contains("n_components = 4") && Catch::Contains("= 3"));
    message_of<value_error>([&] { p.fit(X.data(), 10, 4, 0); });
    CHECK_FALSE(p.fitted());
  }
  SECTION("too few samples") {
    const auto msg = message_of<shape_error>([&] { p.fit(X.data(), 1, 4, 1); });
    CHECK_THAT(msg, Catch::Contains("n_samples = 1"));
  }
  SECTION("NaN / Inf in the data") {
    X[2 * 4 + 3] = std::numeric_limits<double>::quiet_NaN();
    auto msg = message_of<value_error>([&] { p.fit(X.data(), 10, 4, 2); });
    CHECK_THAT(msg, Catch::Contains("NaN/Inf") && Catch::Contains("row 2, column 3"));
    X[2 * 4 + 3] = 0;
    X[7 * 4] = std::numeric_limits<double>::infinity();
    msg = message_of<value_error>([&] { p.fit(X.data(), 10, 4, 2); });
    CHECK_THAT(msg, Catch::Contains("inf") && Catch::Contains("row 7, column 0"));
    X[7 * 4] = 0;
    p.fit(X.data(), 10, 4, 2);
    std::vector<double> x1(X.begin(), X.begin() + 4);
    x1[1] = std::numeric_limits<double>::quiet_NaN();
    msg = message_of<value_error>([&] { (void)p.transform(x1); });
    CHECK_THAT(msg, Catch::Contains("pca::transform") && Catch::Contains("column 1"));
  }
  SECTION("width mismatch and unfitted use") {
    message_of<error>([&] { (void)p.transform(std::vector<double>(4, 0.0)); });
    p.fit(X.data(), 10, 4, 2);
    const auto msg = message_of<shape_error>([&] { (void)p.transform(std::vector<double>(6, 0.0)); });
    CHECK_THAT(msg, Catch::Contains("n_features = 4"));
    message_of<shape_error>([&] { (void)p.inverse_transform(std::vector<double>(3, 0.0)); });
  }
}

TEST_CASE("pca handles n < d and rank-deficient data", "[train][pca]") {
  // 5 samples in 8 dims: rank <= 4 after centring. The first components are still well defined.
  std::vector<double> X(5 * 8);
  for (std::size_t i = 0; i < X.size(); ++i) X[i] = std::cos(double(i * i) * 0.37) * double(1 + i % 3);
  pca<double> p;
  p.fit(X.data(), 5, 8, 5);
  for (double v : p.explained_variance()) CHECK(v >= 0);
  CHECK(p.explained_variance()[4] == Approx(0).margin(1e-10));
  // Projection onto 4 components reconstructs the centred data exactly (rank 4).
  pca<double> q;
  q.fit(X.data(), 5, 8, 4);
  CHECK(rel_err(q.inverse_transform(q.transform(X)), X) < 1e-12);
  double sum = 0;
  for (double r : q.explained_variance_ratio()) sum += r;
  CHECK(sum == Approx(1.0).epsilon(1e-12));
  // Components are orthonormal.
  for (index_t a = 0; a < 4; ++a)
    for (index_t b = 0; b < 4; ++b) {
      double dot = 0;
      for (index_t c = 0; c < 8; ++c) dot += q.components()[std::size_t(a * 8 + c)] * q.components()[std::size_t(b * 8 + c)];
      CHECK(dot == Approx(a == b ? 1.0 : 0.0).margin(1e-12));
    }
}

// ----------------------------------------------------------------------------------- normalizer

TEST_CASE("normalizer matches numpy mean / std (ddof=0), constant column -> std 1", "[train][pca]") {
  const auto f = fixture("pca.safetensors");
  const auto& xa = f.at("input.X");
  const index_t n = xa.shape[0], d = xa.shape[1];
  const index_t cc = std::stoll(f.metadata.at("norm_const_col"));
  const double cv = std::stod(f.metadata.at("norm_const_value"));
  std::vector<double> X = xa.to<double>();
  for (index_t i = 0; i < n; ++i) X[std::size_t(i * d + cc)] = cv;

  normalizer nz;
  nz.fit(X.data(), n, d);
  std::vector<double> want_std = f.at("numpy.norm_std").to<double>();
  CHECK(want_std[std::size_t(cc)] == 0.0);
  want_std[std::size_t(cc)] = 1.0;  // documented replacement
  CHECK(rel_err(nz.mean, f.at("numpy.norm_mean").to<double>()) <= 1e-12);
  CHECK(rel_err(nz.stddev, want_std) <= 1e-12);

  const std::vector<double> Z = nz.apply(std::span<const double>(X));
  for (index_t i = 0; i < n; ++i) CHECK(Z[std::size_t(i * d + cc)] == 0.0);
  // Standardised columns: mean 0, population std 1.
  for (index_t c = 0; c < d; ++c) {
    if (c == cc) continue;
    double s = 0, s2 = 0;
    for (index_t i = 0; i < n; ++i) s += Z[std::size_t(i * d + c)];
    for (index_t i = 0; i < n; ++i) s2 += Z[std::size_t(i * d + c)] * Z[std::size_t(i * d + c)];
    CHECK(s / double(n) == Approx(0).margin(1e-12));
    CHECK(std::sqrt(s2 / double(n)) == Approx(1).epsilon(1e-12));
  }
  CHECK(rel_err(nz.invert(std::span<const double>(Z)), X) <= 1e-15);

  // float data, in place.
  std::vector<float> Xf(X.begin(), X.end());
  normalizer nf;
  nf.fit(Xf.data(), n, d);
  CHECK(rel_err(nf.stddev, want_std) <= 1e-6);
  nf.apply(Xf.data(), n, Xf.data());
  CHECK(rel_err(Xf, Z) <= 1e-6);

  SECTION("save / load") {
    std::map<std::string, io::array> m;
    nz.save_to(m);
    REQUIRE(m.count("norm.mean"));
    REQUIRE(m.count("norm.std"));
    normalizer back;
    back.load_from(round_trip(m));
    CHECK(back.mean == nz.mean);
    CHECK(back.stddev == nz.stddev);
    auto bad = m;
    bad["norm.std"] = io::array::from<double>({d + 1}, std::vector<double>(std::size_t(d + 1), 1.0));
    auto msg = message_of<shape_error>([&] { back.load_from(round_trip(bad)); });
    CHECK_THAT(msg, Catch::Contains("norm.std") && Catch::Contains("(25,)") && Catch::Contains("(24,)"));
    bad = m;
    bad["norm.std"] = io::array::from<double>({d}, std::vector<double>(std::size_t(d), 0.0));
    msg = message_of<value_error>([&] { back.load_from(round_trip(bad)); });
    CHECK_THAT(msg, Catch::Contains("norm.std"));
  }
  SECTION("errors") {
    message_of<shape_error>([&] { nz.fit(X.data(), 0, d); });
    X[17] = std::numeric_limits<double>::quiet_NaN();
    const auto msg = message_of<value_error>([&] { nz.fit(X.data(), n, d); });
    CHECK_THAT(msg, Catch::Contains("normalizer::fit") && Catch::Contains("row 0, column 17"));
    message_of<shape_error>([&] { (void)nz.apply(std::span<const double>(X.data(), std::size_t(d + 1))); });
  }
}

// ---------------------------------------------------------------------------------------- AdamW

namespace {

/// A store with two parameters (20 + 30 values; flat size 64 with alignment gaps).
template <class T>
struct two_param_store {
  parameter_store<T, cpu> ps;
  param_id a, b;
  two_param_store() {
    a = ps.add("a", {4, 5});
    b = ps.add("b", {30});
    ps.finalize();
  }
  void set_values(const std::vector<T>& v) {
    ps.set("a", {4, 5}, std::span<const T>(v.data(), 20));
    ps.set("b", {30}, std::span<const T>(v.data() + 20, 30));
  }
  void set_grads(const std::vector<T>& g) {
    std::copy(g.begin(), g.begin() + 20, ps.grad(a));
    std::copy(g.begin() + 20, g.begin() + 50, ps.grad(b));
  }
  std::vector<T> values() const {
    auto v = ps.get("a");
    auto w = ps.get("b");
    v.insert(v.end(), w.begin(), w.end());
    return v;
  }
  std::vector<T> grads() {
    std::vector<T> g(ps.grad(a), ps.grad(a) + 20);
    g.insert(g.end(), ps.grad(b), ps.grad(b) + 30);
    return g;
  }
};

/// Runs the fixture's gradient sequence and returns the worst scale-relative error of the
/// trajectory against `want` (S, P).
template <class T>
double run_trajectory(const io::safetensors_file& f, const adamw_options& o, const std::vector<double>& want,
                      double lr) {
  const auto grads = f.at("input.grads").to<T>();
  const std::size_t P = 50, S = grads.size() / P;
  REQUIRE(f.at("input.p0").numel() == std::int64_t(P));
  two_param_store<T> st;
  st.set_values(f.at("input.p0").to<T>());
  adamw<T, cpu> opt(st.ps, o);
  double worst = 0;
  for (std::size_t s = 0; s < S; ++s) {
    st.set_grads(row(grads, s, P));
    opt.step(st.ps, lr);
    worst = std::max(worst, rel_err(st.values(), row(want, s, P)));
  }
  CHECK(opt.steps() == std::int64_t(S));
  // The alignment gaps stay exactly zero.
  const auto all = st.ps.values().to_host();
  for (std::size_t i = 20; i < 32; ++i) CHECK(all[i] == T(0));
  for (std::size_t i = 62; i < 64; ++i) CHECK(all[i] == T(0));
  return worst;
}

adamw_options fixture_options(const io::safetensors_file& f, bool torch_style, bool with_wd) {
  adamw_options o;
  o.lr = std::stod(f.metadata.at("lr"));
  o.beta1 = std::stod(f.metadata.at("beta1"));
  o.beta2 = std::stod(f.metadata.at("beta2"));
  o.eps = std::stod(f.metadata.at("eps"));
  o.weight_decay = with_wd ? std::stod(f.metadata.at("weight_decay")) : 0.0;
  o.torch_style = torch_style;
  return o;
}

}  // namespace

TEST_CASE("adamw defaults are the gLM reference's", "[train][adamw]") {
  const adamw_options o;
  CHECK(o.beta1 == 0.9);
  CHECK(o.beta2 == 0.999);
  CHECK(o.eps == 1e-6);
  CHECK(o.weight_decay == 0.0);
  CHECK_FALSE(o.torch_style);
  const auto t = adamw_options::torch_defaults();
  CHECK(t.torch_style);
  CHECK(t.eps == 1e-8);
  CHECK(t.weight_decay == 1e-2);
}

TEST_CASE("adamw matches transformers 4.22 AdamW and torch.optim.AdamW trajectories", "[train][adamw]") {
  const auto f = fixture("adamw.safetensors");
  const double lr = std::stod(f.metadata.at("lr"));
  const auto hf = f.at("hf422.trajectory").to<double>();
  const auto hf0 = f.at("hf422_nowd.trajectory").to<double>();
  const auto th = f.at("torch.trajectory").to<double>();
  const auto th32 = f.at("torch_f32.trajectory").to<double>();

  SECTION("double") {
    const double e_hf = run_trajectory<double>(f, fixture_options(f, false, true), hf, lr);
    const double e_hf0 = run_trajectory<double>(f, fixture_options(f, false, false), hf0, lr);
    const double e_th = run_trajectory<double>(f, fixture_options(f, true, true), th, lr);
    CHECK(e_hf <= 1e-6);
    CHECK(e_hf0 <= 1e-6);
    CHECK(e_th <= 1e-6);
    // The rules differ measurably (so each test really checks its own rule).
    CHECK(rel_err(hf, th) > 1e-8);
    // step(store) uses options().lr.
    auto o = fixture_options(f, false, true);
    two_param_store<double> s1, s2;
    s1.set_values(f.at("input.p0").to<double>());
    s2.set_values(f.at("input.p0").to<double>());
    adamw<double, cpu> a1(s1.ps, o), a2(s2.ps, o);
    const auto g = f.at("input.grads").to<double>();
    s1.set_grads(row(g, 0, 50));
    s2.set_grads(row(g, 0, 50));
    a1.step(s1.ps);
    a2.step(s2.ps, o.lr);
    CHECK(s1.values() == s2.values());
  }
  SECTION("float") {
    // float32 state and parameters: vs torch's own float32 run and vs the float64 references.
    const double e_th32 = run_trajectory<float>(f, fixture_options(f, true, true), th32, lr);
    const double e_th = run_trajectory<float>(f, fixture_options(f, true, true), th, lr);
    const double e_hf = run_trajectory<float>(f, fixture_options(f, false, true), hf, lr);
    const double e_hf0 = run_trajectory<float>(f, fixture_options(f, false, false), hf0, lr);
    // float32 arithmetic as torch's float32 run (2.3e-8 measured; the double-arithmetic update of
    // before 2026-12-01's fifth session was 3.7e-7 away from it).
    CHECK(e_th32 <= 1e-7);
    CHECK(e_th <= 2e-6);
    CHECK(e_hf <= 2e-6);
    CHECK(e_hf0 <= 2e-6);
  }
}

TEST_CASE("adamw state save / load", "[train][adamw]") {
  const auto f = fixture("adamw.safetensors");
  const auto g = f.at("input.grads").to<double>();
  const auto o = fixture_options(f, false, true);
  two_param_store<double> s1, s2;
  s1.set_values(f.at("input.p0").to<double>());
  adamw<double, cpu> a1(s1.ps, o);
  for (std::size_t s = 0; s < 5; ++s) {
    s1.set_grads(row(g, s, 50));
    a1.step(s1.ps);
  }
  std::map<std::string, io::array> m;
  a1.save_to(m);
  REQUIRE(m.count("optimizer.exp_avg"));
  REQUIRE(m.count("optimizer.exp_avg_sq"));
  REQUIRE(m.count("optimizer.step"));
  CHECK(m.at("optimizer.exp_avg").shape == std::vector<std::int64_t>{64});
  CHECK(m.at("optimizer.step").dtype == io::dtype::i64);
  CHECK(m.at("optimizer.step").to<std::int64_t>() == std::vector<std::int64_t>{5});

  // Resume into a fresh optimizer / store and continue: identical to the uninterrupted run.
  s2.set_values(s1.values());
  adamw<double, cpu> a2(s2.ps, o);
  a2.load_from(round_trip(m));
  CHECK(a2.steps() == 5);
  for (std::size_t s = 5; s < 12; ++s) {
    s1.set_grads(row(g, s, 50));
    s2.set_grads(row(g, s, 50));
    a1.step(s1.ps);
    a2.step(s2.ps);
  }
  CHECK(s1.values() == s2.values());
  CHECK(rel_err(s2.values(), row(f.at("hf422.trajectory").to<double>(), 11, 50)) <= 1e-12);

  SECTION("wrong-size state") {
    parameter_store<double, cpu> small;
    small.add("w", {10});
    small.finalize();
    adamw<double, cpu> a3(small, o);
    auto msg = message_of<shape_error>([&] { a3.load_from(round_trip(m)); });
    CHECK_THAT(msg, Catch::Contains("optimizer.exp_avg") && Catch::Contains("(64,)") && Catch::Contains("(16,)"));
    auto bad = m;
    bad["optimizer.exp_avg_sq"] = io::array::from<double>({63}, std::vector<double>(63, 0.0));
    msg = message_of<shape_error>([&] { a2.load_from(round_trip(bad)); });
    CHECK_THAT(msg, Catch::Contains("optimizer.exp_avg_sq") && Catch::Contains("(63,)") && Catch::Contains("(64,)"));
  }
  SECTION("bad values and missing tensors") {
    auto bad = m;
    bad["optimizer.exp_avg_sq"] = io::array::from<double>({64}, std::vector<double>(64, -1.0));
    auto msg = message_of<value_error>([&] { a2.load_from(round_trip(bad)); });
    CHECK_THAT(msg, Catch::Contains("optimizer.exp_avg_sq"));
    bad = m;
    bad["optimizer.step"] = io::array::from<std::int64_t>({1}, std::vector<std::int64_t>{-3});
    msg = message_of<value_error>([&] { a2.load_from(round_trip(bad)); });
    CHECK_THAT(msg, Catch::Contains("optimizer.step"));
    bad = m;
    bad.erase("optimizer.step");
    msg = message_of<lookup_error>([&] { a2.load_from(round_trip(bad)); });
    CHECK_THAT(msg, Catch::Contains("optimizer.step"));
  }
  SECTION("a float optimizer reads a double checkpoint") {
    two_param_store<float> sf;
    adamw<float, cpu> af(sf.ps, o);
    af.load_from(round_trip(m));
    CHECK(af.steps() == 5);
  }
  SECTION("step on a different store") {
    parameter_store<double, cpu> other;
    other.add("w", {100});
    other.finalize();
    const auto msg = message_of<shape_error>([&] { a1.step(other); });
    CHECK_THAT(msg, Catch::Contains("112") && Catch::Contains("64"));
  }
}

// ------------------------------------------------------------------------------------ schedules

TEST_CASE("lr schedules match transformers' LambdaLR values", "[train][schedule]") {
  const auto f = fixture("adamw.safetensors");
  const double base = std::stod(f.metadata.at("sched.base_lr"));
  const std::int64_t warmup = std::stoll(f.metadata.at("sched.warmup"));
  const std::int64_t total = std::stoll(f.metadata.at("sched.total"));
  const auto check_sched = [&](const lr_schedule& s, const std::string& name) {
    const auto want = f.at(name).to<double>();
    for (std::size_t k = 0; k < want.size(); ++k) {
      INFO(name << " step " << k);
      CHECK(std::abs(s.at(std::int64_t(k)) - want[k]) <= 1e-12 * base);
      CHECK(s.at(std::int64_t(k)) == want[k]);  // same float operations: bit-identical
    }
  };
  check_sched(lr_schedule::make_constant(base), "sched.constant");
  check_sched(lr_schedule::make_constant_with_warmup(base, warmup), "sched.constant_with_warmup");
  check_sched(lr_schedule::make_linear_with_warmup(base, warmup, total), "sched.linear_with_warmup");

  const auto s = lr_schedule::make_constant_with_warmup(1e-4, 5000);  // the gLM reference
  CHECK(s.at(0) == 0.0);
  CHECK(s.at(2500) == Approx(5e-5).epsilon(1e-15));
  CHECK(s.at(5000) == 1e-4);
  CHECK(s.at(1'296'959) == 1e-4);
  message_of<value_error>([&] { (void)s.at(-1); });
}

// ------------------------------------------------------------------------------------- clipping

namespace {
template <class T>
struct clip_store {
  parameter_store<T, cpu> ps;
  std::vector<param_id> ids;
  std::vector<std::int64_t> sizes;
  explicit clip_store(const std::vector<std::int64_t>& sz) : sizes(sz) {
    for (std::size_t i = 0; i < sz.size(); ++i) ids.push_back(ps.add("p" + std::to_string(i), {sz[i]}));
    ps.finalize();
  }
  void set_grads(const std::vector<T>& flat) {
    std::size_t off = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      std::copy(flat.begin() + std::ptrdiff_t(off), flat.begin() + std::ptrdiff_t(off + std::size_t(sizes[i])),
                ps.grad(ids[i]));
      off += std::size_t(sizes[i]);
    }
  }
  std::vector<T> grads() const {
    std::vector<T> out;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      auto g = ps.get_grad("p" + std::to_string(i));
      out.insert(out.end(), g.begin(), g.end());
    }
    return out;
  }
};
}  // namespace

TEMPLATE_TEST_CASE("gradient clipping matches torch.nn.utils", "[train][clip]", double, float) {
  using T = TestType;
  const double tol = std::is_same_v<T, double> ? 1e-12 : 1e-6;
  const auto f = fixture("adamw.safetensors");
  const auto sizes = f.at("clip.sizes").to<std::int64_t>();
  const auto grads = f.at("clip.grads").to<T>();
  const auto max_norms = f.at("clip.norm.max_norm").to<double>();
  const auto totals = f.at("clip.norm.total").to<double>();
  const auto norm_out = f.at("clip.norm.out").to<double>();
  const std::size_t G = grads.size();
  clip_store<T> cs(sizes);

  for (std::size_t i = 0; i < max_norms.size(); ++i) {
    INFO("max_norm " << max_norms[i]);
    cs.set_grads(grads);
    CHECK(grads_finite(cs.ps));
    const double total = clip_grad_norm(cs.ps, max_norms[i]);
    CHECK(std::abs(total - totals[i]) <= tol * totals[i]);
    CHECK(rel_err(cs.grads(), row(norm_out, i, G)) <= tol);
  }
  const auto cvals = f.at("clip.value.c").to<double>();
  const auto value_out = f.at("clip.value.out").to<double>();
  for (std::size_t i = 0; i < cvals.size(); ++i) {
    cs.set_grads(grads);
    clip_grad_value(cs.ps, cvals[i]);
    const auto want = row(value_out, i, G);  // clamping is exact: compare in T
    CHECK(cs.grads() == std::vector<T>(want.begin(), want.end()));
  }

  // Non-finite gradients.
  auto g2 = grads;
  g2[4] = std::numeric_limits<T>::quiet_NaN();
  cs.set_grads(g2);
  CHECK_FALSE(grads_finite(cs.ps));
  CHECK(std::isnan(grad_norm(cs.ps)));
  g2[4] = std::numeric_limits<T>::infinity();
  cs.set_grads(g2);
  CHECK_FALSE(grads_finite(cs.ps));
  message_of<value_error>([&] { clip_grad_value(cs.ps, -1.0); });
  message_of<value_error>([&] { (void)clip_grad_norm(cs.ps, -1.0); });
}

TEMPLATE_TEST_CASE("cpu clip_by_value and count_nonfinite on large buffers, 1 and 2 threads", "[train][clip]", double,
                   float) {
  using T = TestType;
  const index_t n = 3'000'017;  // above the threading threshold, not a multiple of anything
  std::vector<T> base(static_cast<std::size_t>(n));
  rng g(17);
  for (auto& v : base) v = T(g.normal() * 2.0);
  const std::size_t nan_at = 5, pinf_at = 1'999'999, minf_at = std::size_t(n) - 1, big_at = 1'500'000;
  base[nan_at] = std::numeric_limits<T>::quiet_NaN();
  base[pinf_at] = std::numeric_limits<T>::infinity();
  base[minf_at] = -std::numeric_limits<T>::infinity();
  base[big_at] = std::numeric_limits<T>::max();
  const int saved = cpu::num_threads();
  for (int threads : {1, 2}) {
    INFO("threads = " << threads);
    cpu::set_num_threads(threads);
    CHECK(cpu::count_nonfinite(base.data(), n) == 3);
    CHECK(cpu::count_nonfinite(base.data() + nan_at + 1, pinf_at - nan_at - 1) == 0);
    auto x = base;
    cpu::clip_by_value(x.data(), n, T(1));
    index_t wrong = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const T want = std::clamp(base[i], T(-1), T(1));  // torch.clamp: NaN stays NaN
      if (std::isnan(base[i]) ? !std::isnan(x[i]) : x[i] != want) ++wrong;
    }
    CHECK(wrong == 0);
    CHECK(x[pinf_at] == T(1));
    CHECK(x[minf_at] == T(-1));
    CHECK(x[big_at] == T(1));
  }
  cpu::set_num_threads(saved);
}

TEMPLATE_TEST_CASE("adamw with clip_value fused equals clip_grad_value then adamw, grads untouched", "[train][adamw][clip]",
                   double, float) {
  using T = TestType;
  const auto f = fixture("adamw.safetensors");
  const auto grads = f.at("input.grads").to<T>();
  const std::size_t P = 50, S = grads.size() / P;
  for (const bool torch_style : {false, true}) {
    INFO("torch_style " << torch_style);
    const auto o = fixture_options(f, torch_style, true);
    two_param_store<T> fused, separate;
    fused.set_values(f.at("input.p0").to<T>());
    separate.set_values(f.at("input.p0").to<T>());
    adamw<T, cpu> a_fused(fused.ps, o), a_separate(separate.ps, o);
    // a clip value inside the gradients' range, so that some steps clamp and some do not
    std::vector<T> mags;
    for (auto g : grads) mags.push_back(std::abs(g));
    std::nth_element(mags.begin(), mags.begin() + mags.size() / 2, mags.end());
    const double c = double(mags[mags.size() / 2]);
    std::size_t clamped = 0;
    for (std::size_t s = 0; s < S; ++s) {
      auto g = row(grads, s, P);
      g[3] = std::numeric_limits<T>::infinity();  // clamps to c in both
      fused.set_grads(g);
      separate.set_grads(g);
      a_fused.step(fused.ps, o.lr, c);
      clip_grad_value(separate.ps, c);
      a_separate.step(separate.ps, o.lr);
      REQUIRE(fused.values() == separate.values());  // the same formulas: bit-identical
      CHECK(fused.grads() == g);                     // read, not written
      for (auto v : g) clamped += std::abs(double(v)) > c;
    }
    CHECK(clamped > S);  // the clamp really acted
    // clip_value 0 = no clipping; negative or non-finite values are refused with their value
    const auto before = fused.values();
    fused.set_grads(row(grads, 0, P));
    separate.set_values(before);
    separate.set_grads(row(grads, 0, P));
    adamw<T, cpu> b1(fused.ps, o), b2(separate.ps, o);
    b1.step(fused.ps, o.lr, 0.0);
    b2.step(separate.ps, o.lr);
    CHECK(fused.values() == separate.values());
    const auto msg = message_of<value_error>([&] { b1.step(fused.ps, o.lr, -1.0); });
    CHECK_THAT(msg, Catch::Contains("clip_value = -1"));
    message_of<value_error>([&] { b1.step(fused.ps, o.lr, std::numeric_limits<double>::quiet_NaN()); });
  }
}

// ------------------------------------------------------------------------- option and state checks

TEST_CASE("adamw refuses eps of zero, which gives 0/0 for a zero gradient", "[train][adamw][errors]") {
  two_param_store<double> s;
  adamw_options o;
  o.eps = 0;
  using adam_d = adamw<double, cpu>;
  REQUIRE_THROWS_AS(adam_d(s.ps, o), value_error);
  REQUIRE_THROWS_WITH(adam_d(s.ps, o), Catch::Contains("eps = 0 must be finite and > 0"));
  o.eps = -1e-8;
  REQUIRE_THROWS_WITH(o.validate(), Catch::Contains("eps = -1e-08"));
  o.eps = std::numeric_limits<double>::infinity();
  REQUIRE_THROWS_WITH(o.validate(), Catch::Contains("eps = inf"));
  adamw<double, cpu> a(s.ps);
  o.eps = 0;
  REQUIRE_THROWS_WITH(a.set_options(o), Catch::Contains("eps = 0"));
}

TEST_CASE("adamw load_from refuses the state of another layout with the same flat size", "[train][adamw][errors]") {
  two_param_store<double> s;  // a (4, 5), b (30): flat size 64
  adamw<double, cpu> a(s.ps);
  s.set_grads(std::vector<double>(50, 0.25));
  a.step(s.ps, 1e-3);
  std::map<std::string, io::array> m;
  a.save_to(m);
  REQUIRE(m.count("optimizer.layout"));
  CHECK(m.at("optimizer.layout").dtype == io::dtype::u8);
  const auto bytes = m.at("optimizer.layout").to<std::uint8_t>();
  CHECK(std::string(bytes.begin(), bytes.end()) == "a\t(4, 5)\nb\t(30)\n");

  auto other = [&](std::vector<std::pair<std::string, shape_t>> params) {
    auto ps = std::make_unique<parameter_store<double, cpu>>();
    for (auto& [name, shape] : params) ps->add(name, shape);
    ps->finalize();
    REQUIRE(ps->flat_size() == s.ps.flat_size());
    return ps;
  };
  SECTION("another shape") {
    auto ps = other({{"a", {5, 4}}, {"b", {30}}});
    adamw<double, cpu> b(*ps);
    REQUIRE_THROWS_AS(b.load_from(round_trip(m)), shape_error);
    REQUIRE_THROWS_WITH(b.load_from(round_trip(m)), Catch::Contains("parameter 0 of the optimizer state") &&
                                                        Catch::Contains("is 'a' (4, 5)") &&
                                                        Catch::Contains("parameter 0 is 'a' (5, 4)"));
    CHECK(b.steps() == 0);  // nothing loaded
  }
  SECTION("another name") {
    auto ps = other({{"a", {4, 5}}, {"c", {30}}});
    adamw<double, cpu> b(*ps);
    REQUIRE_THROWS_WITH(b.load_from(round_trip(m)), Catch::Contains("parameter 1") &&
                                                        Catch::Contains("'b' (30)") && Catch::Contains("'c' (30)"));
  }
  SECTION("more parameters") {
    auto ps = other({{"a", {4, 5}}, {"b", {10}}, {"d", {10}}});
    adamw<double, cpu> b(*ps);
    REQUIRE_THROWS_WITH(b.load_from(round_trip(m)), Catch::Contains("parameter 1") &&
                                                        Catch::Contains("'b' (30)") && Catch::Contains("'b' (10)"));
  }
  SECTION("the same layout, and files without a layout (written before it was saved)") {
    two_param_store<double> s2;
    adamw<double, cpu> b(s2.ps);
    b.load_from(round_trip(m));
    CHECK(b.steps() == 1);
    CHECK(b.exp_avg().to_host() == a.exp_avg().to_host());
    auto old = m;
    old.erase("optimizer.layout");
    auto ps = other({{"a", {5, 4}}, {"b", {30}}});
    adamw<double, cpu> c(*ps);
    c.load_from(round_trip(old));  // only the flat size can be checked
    CHECK(c.steps() == 1);
  }
  SECTION("a layout tensor of the wrong dtype") {
    auto bad = m;
    bad["optimizer.layout"] = io::array::from<float>({2}, std::vector<float>{1, 2});
    two_param_store<double> s2;
    adamw<double, cpu> b(s2.ps);
    REQUIRE_THROWS_AS(b.load_from(round_trip(bad)), format_error);
    REQUIRE_THROWS_WITH(b.load_from(round_trip(bad)), Catch::Contains("optimizer.layout"));
  }
}

namespace {
using tiny_model = GLM<configs::tiny, cpu>;

gene_features random_features(index_t N, index_t plm, index_t pca) {
  gene_features f;
  f.plm_dim = plm;
  f.pca_dim = pca;
  rng g(1);
  f.normalized.resize(std::size_t(N * plm));
  for (auto& v : f.normalized) v = float(g.normal());
  f.pca.resize(std::size_t(N * pca));
  for (auto& v : f.pca) v = g.normal();
  return f;
}

std::vector<gene_window> chain_windows(index_t nw, index_t len, index_t N) {
  std::vector<gene_window> ws;
  for (index_t w = 0; w < nw; ++w) {
    gene_window gw;
    gw.id = "w" + std::to_string(w);
    gw.source_id = gw.id;
    gw.source_size = std::size_t(len);
    for (index_t l = 0; l < len; ++l) gw.genes.push_back({(w * len + l) % N, l % 2 ? 1 : -1});
    ws.push_back(gw);
  }
  return ws;
}
}  // namespace

TEST_CASE("feature_pipeline load_from refuses a normalizer and a PCA of different widths", "[train][pca][errors]") {
  rng g(1);
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) ids.push_back("p" + std::to_string(i));
  std::vector<float> v32(10 * 32), v16(10 * 16);
  for (auto& x : v32) x = float(g.normal());
  for (auto& x : v16) x = float(g.normal());
  const protein_embeddings e32(ids, 32, v32, "e32"), e16(ids, 16, v16, "e16");
  feature_pipeline a, b;
  a.fit(e32, 4);
  b.fit(e16, 4);
  std::map<std::string, io::array> t;
  a.norm.save_to(t, "norm.");
  b.pc.save_to(t, "pca.");
  feature_pipeline p;
  REQUIRE_THROWS_AS(p.load_from(round_trip(t)), shape_error);
  REQUIRE_THROWS_WITH(p.load_from(round_trip(t)), Catch::Contains("normalizer of 32 features") &&
                                                      Catch::Contains("PCA of 16 features"));
  CHECK(!p.fitted());  // left unchanged
  std::map<std::string, io::array> good;
  a.save_to(good);
  p.load_from(round_trip(good));
  CHECK(p.fitted());
  CHECK(p.features(e32).pca == a.features(e32).pca);
}

TEST_CASE("context_free_baseline refuses K below 1, D of 0, unfitted use and labels of another width",
          "[train][baseline][errors]") {
  context_free_baseline b;
  std::vector<double> y(10 * 4);
  rng g(3);
  for (auto& v : y) v = g.normal();
  REQUIRE_THROWS_AS(b.fit(y, 10, 4, 0, 1), value_error);
  REQUIRE_THROWS_WITH(b.fit(y, 10, 4, 0, 1), Catch::Contains("K = 0"));
  REQUIRE_THROWS_WITH(b.fit(y, 10, 4, -2, 1), Catch::Contains("K = -2"));
  REQUIRE_THROWS_AS(b.fit({}, 10, 0, 2, 1), shape_error);
  REQUIRE_THROWS_WITH(b.fit({}, 10, 0, 2, 1), Catch::Contains("D = 0"));
  CHECK(!b.fitted());
  REQUIRE_THROWS_AS(b.score(y, 10), value_error);
  REQUIRE_THROWS_WITH(b.score(y, 10), Catch::Contains("not fitted"));
  b.fit(y, 10, 4, 2, 1);
  REQUIRE(b.fitted());
  const std::vector<double> wide(3 * 8, 0.25), narrow(3 * 2, 0.25);
  REQUIRE_THROWS_AS(b.score(wide, 3), shape_error);
  REQUIRE_THROWS_WITH(b.score(wide, 3), Catch::Contains("labels hold 24 values, expected 3 genes x D = 4"));
  REQUIRE_THROWS_WITH(b.score(narrow, 3), Catch::Contains("labels hold 6 values, expected 3 genes x D = 4"));
  const auto s = b.score(std::vector<double>(3 * 4, 0.25), 3);
  CHECK(s.masked == 3);
}

TEST_CASE("trainer validates its options, naming the field and the value", "[train][trainer][errors]") {
  const auto f = random_features(40, 32, 7);
  const auto ws = chain_windows(8, 10, 40);
  tiny_model m;
  train_options base;
  base.batch_size = 4;
  auto refused = [&](auto&& change) {
    train_options o = base;
    change(o);
    return message_of<value_error>([&] { trainer<tiny_model> t(m, f, ws, o); });
  };
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  CHECK_THAT(refused([](auto& o) { o.lr = 0; }), Catch::Contains("lr = 0"));
  CHECK_THAT(refused([&](auto& o) { o.lr = nan; }), Catch::Contains("lr = nan"));
  CHECK_THAT(refused([](auto& o) { o.warmup_steps = -5; }), Catch::Contains("warmup_steps = -5"));
  CHECK_THAT(refused([&](auto& o) { o.clip_value = nan; }), Catch::Contains("clip_value = nan"));
  CHECK_THAT(refused([&](auto& o) { o.clip_value = inf; }), Catch::Contains("clip_value = inf"));
  CHECK_THAT(refused([&](auto& o) { o.clip_norm = nan; }), Catch::Contains("clip_norm = nan"));
  CHECK_THAT(refused([](auto& o) { o.masking.probability = 0; }), Catch::Contains("masking.probability = 0"));
  CHECK_THAT(refused([](auto& o) { o.masking.probability = 1; }), Catch::Contains("masking.probability = 1"));
  CHECK_THAT(refused([&](auto& o) { o.masking.probability = nan; }), Catch::Contains("masking.probability = nan"));
  CHECK_THAT(refused([](auto& o) { o.masking.mask_value = std::numeric_limits<float>::quiet_NaN(); }),
             Catch::Contains("masking.mask_value = nan"));
  CHECK_THAT(refused([](auto& o) { o.loss.ce_weight = -1; }), Catch::Contains("ce_weight = -1"));
  CHECK_THAT(refused([](auto& o) { o.loss.label_clip = -3; }), Catch::Contains("label_clip = -3"));
  CHECK_THAT(refused([](auto& o) { o.batch_size = 0; }), Catch::Contains("batch_size must be >= 1, got 0"));
  // clipping switched off with <= 0, as documented
  train_options off = base;
  off.clip_value = 0;
  off.clip_norm = -1;
  off.masking.probability = 0.5;
  trainer<tiny_model> t(m, f, ws, off);
  const auto r = t.step();
  CHECK(r.masked > 0);
  CHECK(t.optimizer().steps() == 1);
}

TEST_CASE("trainer, evaluator and labels refuse features, baselines and batch sizes that do not fit",
          "[train][trainer][errors]") {
  auto f = random_features(40, 32, 7);
  const auto ws = chain_windows(8, 10, 40);
  tiny_model m;
  train_options o;
  o.batch_size = 4;
  SECTION("gene_features whose pca is short") {
    auto bad = f;
    bad.pca.resize(5 * 7);
    REQUIRE_THROWS_AS(trainer<tiny_model>(m, bad, ws, o), shape_error);
    REQUIRE_THROWS_WITH(trainer<tiny_model>(m, bad, ws, o), Catch::Contains("pca.size() = 35, expected 40 proteins"));
    const auto b = make_batch<float>(ws, {1}, bad, 32);
    REQUIRE_THROWS_AS(batch_labels(b, {{0, 4}}, bad), shape_error);
    REQUIRE_THROWS_WITH(batch_labels(b, {{0, 4}}, bad), Catch::Contains("pca.size() = 35"));
    REQUIRE_THROWS_WITH(batch_labels(b, {{0, 10}}, f), Catch::Contains("gene (0, 10) outside window 'w1'"));
    REQUIRE_THROWS_WITH(batch_labels(b, {{1, 0}}, f), Catch::Contains("gene (1, 0) outside the batch"));
    // features shrunk after the trainer was built
    auto later = f;
    trainer<tiny_model> t(m, later, ws, o);
    index_t n = 0;
    CHECK(t.training_labels(n).size() == std::size_t(80 * 8));
    later.pca.resize(10);
    REQUIRE_THROWS_WITH(t.training_labels(n), Catch::Contains("pca.size() = 10"));
  }
  SECTION("evaluation: batch size, baseline, masking probability") {
    trainer<tiny_model> t(m, f, ws, o);
    index_t n = 0;
    const auto labels = t.training_labels(n);
    context_free_baseline base;
    REQUIRE_THROWS_AS(t.evaluate(ws, base, 3), value_error);
    REQUIRE_THROWS_WITH(t.evaluate(ws, base, 3), Catch::Contains("baseline is not fitted"));
    context_free_baseline narrow;
    narrow.fit(std::vector<double>(10 * 4, 0.5), 10, 4, 2, 1);
    REQUIRE_THROWS_AS(t.evaluate(ws, narrow, 3), shape_error);
    REQUIRE_THROWS_WITH(t.evaluate(ws, narrow, 3), Catch::Contains("D = 4, expected the model's label_dim 8"));
    base.fit(labels, n, 8, 4, 1);
    REQUIRE_THROWS_AS(t.evaluate(ws, base, 3, -1), value_error);
    REQUIRE_THROWS_WITH(t.evaluate(ws, base, 3, -1), Catch::Contains("batch_size = -1"));
    const auto [a, b] = t.evaluate(ws, base, 3, 0);  // 0: the training batch size
    const auto [a2, b2] = t.evaluate(ws, base, 3, 4);
    CHECK(a.masked > 0);
    CHECK(a.masked == a2.masked);
    CHECK(b.mse_most_likely == b2.mse_most_likely);
    masking_options none;
    none.probability = 0;
    REQUIRE_THROWS_AS(masked_gene_evaluator<tiny_model>(m, f, none, {}), value_error);
    REQUIRE_THROWS_WITH(masked_gene_evaluator<tiny_model>(m, f, none, {}), Catch::Contains("masking.probability = 0"));
    masked_gene_loss_options bad_loss;
    bad_loss.label_clip = std::numeric_limits<double>::quiet_NaN();
    REQUIRE_THROWS_WITH(masked_gene_evaluator<tiny_model>(m, f, {}, bad_loss), Catch::Contains("label_clip = nan"));
  }
}

TEST_CASE("API bad input from a probe: overflowing sizes, steps, NaN features, strands, layers", "[train][errors]") {
  // element counts that do not fit int64 are shape errors, not wrapped sizes
  CHECK_THROWS_WITH((shape_t{index_t(1) << 40, index_t(1) << 40}.numel()), Catch::Contains("element count exceeds"));
  CHECK_THROWS_AS((tensor<float, cpu>(shape_t{index_t(1) << 62, 4})), shape_error);
  {
    std::vector<float> x(4 * 33, 0.1f), mk(4, 1.f);
    tiny_model m;
    CHECK_THROWS_AS(m.forward(run_context{}, (index_t(1) << 62) + 1, 4, x, mk), shape_error);
    CHECK_THROWS_WITH(m.attention(5), Catch::Contains("layer 5 of a model with 2 layers"));
    rng g(1);
    std::vector<gene_pos> out;
    CHECK_THROWS_AS(mask_genes(x, mk, (index_t(1) << 62) + 1, 4, 1, g, masking_options{}, out), shape_error);
  }
  // an allocation that cannot succeed names its size
  CHECK_THROWS_WITH((tensor<float, cpu>(shape_t{index_t(1) << 50})), Catch::Contains("out of memory for"));
  // step counts stay far from the int64 limit
  {
    two_param_store<double> s;
    adamw<double, cpu> a(s.ps, adamw_options{});
    std::map<std::string, io::array> m;
    a.save_to(m);
    m.insert_or_assign("optimizer.step",
                       io::array::from<std::int64_t>({1}, std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::max()}));
    CHECK_THROWS_WITH(a.load_from(round_trip(m)), Catch::Contains("expected 0..4611686018427387904"));
  }
  // NaN / overflowing features and labels
  normalizer n;
  n.fit(std::span<const double>(std::vector<double>{1, 2, 3, 4}), 2);
  CHECK_THROWS_WITH(n.apply(std::span<const double>(std::vector<double>{NAN, 1})), Catch::Contains("NaN/Inf"));
  CHECK_THROWS_WITH(normalizer().fit(std::span<const double>(std::vector<double>{1e308, 1, 1e308, 2}), 2),
                    Catch::Contains("too large for double sums"));
  CHECK_THROWS_WITH(pca<double>().fit(std::span<const double>(std::vector<double>{1e308, 1, -1e308, 2, 3, 5}), 2, 1),
                    Catch::Contains("not finite"));
  CHECK_THROWS_WITH(context_free_baseline().fit({NAN, 1, 2, 3}, 2, 2, 2, 0), Catch::Contains("finite labels"));
  // a strand other than +1 / -1 and an evaluation batch of 0
  const gene_features f = random_features(8, 32, 7);
  auto ws = chain_windows(2, 4, 8);
  ws[1].genes[2].strand = 5;
  CHECK_THROWS_WITH(make_batch<float>(ws, {0, 1}, f, 30), Catch::Contains("strand 5, expected +1 or -1"));
  CHECK_THROWS_WITH(masked_gene_evaluator<tiny_model>::num_batches(ws, 0), Catch::Contains("batch_size must be >= 1"));
  tiny_model m;
  const auto ok_windows = chain_windows(2, 4, 8);
  trainer<tiny_model> t(m, f, ok_windows, train_options{});
  CHECK_THROWS_WITH(t.set_step(max_step_count + 1), Catch::Contains("expected 0..4611686018427387904"));
}
