// Statistics of the downstream analyses against scikit-learn: binary and multinomial L2 logistic
// regression, StandardScaler, ROC AUC / average precision, per-class precision / recall / F1;
// grouped folds, choice of C by cross-validation, and error paths.
// Fixtures: scripts/gen_analysis_fixtures.py -> tests/fixtures/analysis/sklearn.safetensors.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include <genlm/analysis/logistic.hpp>
#include <genlm/analysis/metrics.hpp>
#include <genlm/core/random.hpp>
#include <genlm/io/safetensors.hpp>

#ifndef GENLM_FIXTURE_DIR
#define GENLM_FIXTURE_DIR "tests/fixtures"
#endif

using namespace genlm;
using namespace genlm::analysis;

namespace {
const io::safetensors_file& fx() {
  static const io::safetensors_file f = io::read_safetensors(std::string(GENLM_FIXTURE_DIR) + "/analysis/sklearn.safetensors");
  return f;
}
std::vector<double> vec(const std::string& name) { return fx().at(name).to<double>(); }
std::vector<int> ivec(const std::string& name) {
  const auto v = fx().at(name).to<std::int64_t>();
  return {v.begin(), v.end()};
}
dmatrix mat(const std::string& name) {
  const auto& a = fx().at(name);
  REQUIRE(a.shape.size() == 2);
  return dmatrix(a.shape[0], a.shape[1], a.to<double>());
}
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}
}  // namespace

TEST_CASE("binary logistic regression matches sklearn LogisticRegression(lbfgs)", "[analysis][sklearn]") {
  const dmatrix X = mat("binary.X"), Xt = mat("binary.Xtest");
  const auto y = ivec("binary.y");
  const auto Cs = vec("binary.Cs");
  for (std::size_t i = 0; i < Cs.size(); ++i) {
    const std::string p = "binary.C" + std::to_string(i);
    binary_logistic m;
    logistic_options o;
    o.C = Cs[i];
    m.fit(X, y, o);
    INFO("C = " << Cs[i] << ", " << m.iterations << " Newton steps");
    CHECK(m.converged);
    CHECK(max_abs_diff(m.coef, vec(p + ".coef")) < 1e-6);
    CHECK(std::abs(m.intercept - vec(p + ".intercept")[0]) < 1e-6);
    CHECK(max_abs_diff(m.predict_proba(Xt), vec(p + ".proba")) < 1e-7);
  }
  SECTION("without intercept") {
    binary_logistic m;
    logistic_options o;
    o.fit_intercept = false;
    m.fit(X, y, o);
    CHECK(m.intercept == 0.0);
    CHECK(max_abs_diff(m.coef, vec("binary.noint.coef")) < 1e-6);
    CHECK(max_abs_diff(m.predict_proba(Xt), vec("binary.noint.proba")) < 1e-7);
  }
  SECTION("separable data stays finite (L2 penalty)") {
    binary_logistic m;
    m.fit(mat("binary.separable.X"), ivec("binary.separable.y"));
    CHECK(m.converged);
    CHECK(max_abs_diff(m.coef, vec("binary.separable.coef")) < 1e-6);
    CHECK(std::abs(m.intercept - vec("binary.separable.intercept")[0]) < 1e-6);
  }
}

TEST_CASE("multinomial logistic regression matches sklearn (softmax, L2)", "[analysis][sklearn]") {
  const dmatrix X = mat("multi.X"), Xt = mat("multi.Xtest");
  const auto y = ivec("multi.y");
  const auto Cs = vec("multi.Cs");
  for (std::size_t i = 0; i < Cs.size(); ++i) {
    const std::string p = "multi.C" + std::to_string(i);
    multinomial_logistic m;
    logistic_options o;
    o.C = Cs[i];
    m.fit(X, y, 4, o);
    INFO("C = " << Cs[i] << ", " << m.iterations << " L-BFGS steps");
    CHECK(m.converged);
    CHECK(max_abs_diff(m.coef, vec(p + ".coef")) < 1e-5);
    CHECK(max_abs_diff(m.intercept, vec(p + ".intercept")) < 1e-5);
    CHECK(max_abs_diff(m.predict_proba(Xt).v, vec(p + ".proba")) < 1e-6);
    const auto pred = m.predict(Xt);
    const dmatrix P = m.predict_proba(Xt);
    for (index_t r = 0; r < Xt.rows; ++r)
      for (index_t k = 0; k < 4; ++k) CHECK(P(r, pred[std::size_t(r)]) >= P(r, k));
  }
}

TEST_CASE("StandardScaler, ROC AUC with ties, average precision, per-class F1 match sklearn",
          "[analysis][sklearn]") {
  standard_scaler sc;
  sc.fit(mat("binary.X"));
  CHECK(max_abs_diff(sc.mean, vec("scaler.mean")) < 1e-12);
  CHECK(max_abs_diff(sc.scale, vec("scaler.scale")) < 1e-12);

  const auto s = vec("auc.score");
  const auto y = ivec("auc.y");
  CHECK(roc_auc(s, y) == Approx(vec("auc.roc_auc")[0]).margin(1e-12));
  CHECK(average_precision(s, y) == Approx(vec("auc.average_precision")[0]).margin(1e-12));
  // simple cases
  CHECK(roc_auc({0.1, 0.2, 0.3, 0.4}, {0, 0, 1, 1}) == 1.0);
  CHECK(roc_auc({0.4, 0.3, 0.2, 0.1}, {0, 0, 1, 1}) == 0.0);
  CHECK(roc_auc({0.5, 0.5, 0.5, 0.5}, {0, 1, 0, 1}) == 0.5);

  const auto r = classify_report(ivec("f1.y_true"), ivec("f1.y_pred"), 5);
  std::vector<double> p, rc, f;
  for (const auto& c : r.per_class) p.push_back(c.precision), rc.push_back(c.recall), f.push_back(c.f1);
  CHECK(max_abs_diff(p, vec("f1.precision")) < 1e-12);
  CHECK(max_abs_diff(rc, vec("f1.recall")) < 1e-12);
  CHECK(max_abs_diff(f, vec("f1.f1")) < 1e-12);
  const auto sup = ivec("f1.support");
  for (int c = 0; c < 5; ++c) CHECK(r.per_class[std::size_t(c)].support == sup[std::size_t(c)]);
  CHECK(r.accuracy == Approx(vec("f1.accuracy")[0]).margin(1e-12));
  CHECK(r.macro_f1 == Approx(vec("f1.macro")[0]).margin(1e-12));
  CHECK(r.weighted_f1 == Approx(vec("f1.weighted")[0]).margin(1e-12));

  const auto b = binary_metrics({0.9, 0.6, 0.4, 0.2, 0.7}, {1, 0, 1, 0, 1});
  CHECK(b.tp == 2);
  CHECK(b.fp == 1);
  CHECK(b.fn == 1);
  CHECK(b.tn == 1);
  CHECK(b.precision == Approx(2.0 / 3));
  CHECK(b.recall == Approx(2.0 / 3));
}

TEST_CASE("grouped folds and cross-validated choice of C", "[analysis][cv]") {
  // groups 0..9, 12 samples each
  std::vector<index_t> groups;
  for (index_t g = 0; g < 10; ++g)
    for (int i = 0; i < 12; ++i) groups.push_back(g * 3 + 1);  // ids need not be contiguous
  const auto folds = group_folds(groups, 5);
  for (std::size_t i = 0; i < groups.size(); ++i)
    for (std::size_t j = 0; j < groups.size(); ++j)
      if (groups[i] == groups[j]) REQUIRE(folds[i] == folds[j]);
  for (int f = 0; f < 5; ++f) CHECK(std::count(folds.begin(), folds.end(), f) == 24);
  CHECK(folds[0] != folds[12]);  // neighbouring blocks go to different folds

  // informative feature + noise: the CV log loss prefers some regularisation over C = 1e-3
  rng g(3, 1);
  dmatrix X(120, 6);
  std::vector<int> y(120);
  for (index_t i = 0; i < 120; ++i) {
    y[std::size_t(i)] = g.uniform() < 0.5;
    for (index_t j = 0; j < 6; ++j) X(i, j) = g.normal();
    X(i, 0) += 1.5 * y[std::size_t(i)];
  }
  const auto cb = choose_c_binary(X, y, folds);
  CHECK(cb.Cs.size() == cb.mean_log_loss.size());
  CHECK(cb.best_C > 1e-3);
  CHECK(*std::min_element(cb.mean_log_loss.begin(), cb.mean_log_loss.end()) < std::log(2.0));
  std::vector<int> y3 = y;
  for (index_t i = 0; i < 120; ++i)
    if (X(i, 1) > 0.8) y3[std::size_t(i)] = 2;
  const auto cm = choose_c_multinomial(X, y3, 3, folds, {0.01, 1.0});
  CHECK((cm.best_C == 0.01 || cm.best_C == 1.0));
}

TEST_CASE("analysis statistics reject bad input with clear errors", "[analysis][errors]") {
  const dmatrix X(4, 2, {0, 1, 1, 0, 2, 1, 0, 3});
  binary_logistic b;
  multinomial_logistic m;
  CHECK_THROWS_AS(b.fit(dmatrix(0, 2), {}), value_error);
  CHECK_THROWS_WITH(b.fit(dmatrix(0, 2), {}), Catch::Contains("empty data"));
  CHECK_THROWS_WITH(b.fit(X, {1, 1, 1, 1}), Catch::Contains("need both classes"));
  CHECK_THROWS_AS(b.fit(X, {1, 0, 1}), shape_error);
  CHECK_THROWS_WITH(b.fit(X, {1, 0, 1}), Catch::Contains("3 labels for 4 samples"));
  CHECK_THROWS_WITH(b.fit(X, {1, 0, 2, 0}), Catch::Contains("expected 0 or 1"));
  logistic_options bad;
  bad.C = 0;
  CHECK_THROWS_WITH(b.fit(X, {1, 0, 1, 0}, bad), Catch::Contains("C must be a positive number"));
  dmatrix nan = X;
  nan(2, 1) = std::nan("");
  CHECK_THROWS_WITH(b.fit(nan, {1, 0, 1, 0}), Catch::Contains("feature 1 of sample 2 is NaN"));
  CHECK_THROWS_WITH(m.fit(X, {2, 2, 2, 2}, 3), Catch::Contains("need at least two classes"));
  CHECK_THROWS_WITH(m.fit(X, {0, 1, 5, 0}, 3), Catch::Contains("expected 0..2"));
  CHECK_THROWS_AS(m.fit(X, {0, 1}, 3), shape_error);
  CHECK_THROWS_AS(b.predict_proba(X), value_error);  // not fitted
  b.fit(X, {1, 0, 1, 0});
  CHECK_THROWS_AS(b.predict_proba(dmatrix(2, 3)), shape_error);

  CHECK_THROWS_WITH(roc_auc({0.1, 0.2}, {1, 1}), Catch::Contains("only one class"));
  CHECK_THROWS_AS(roc_auc({}, {}), value_error);
  CHECK_THROWS_AS(roc_auc({0.1}, {1, 0}), shape_error);
  CHECK_THROWS_AS(classify_report({0, 1}, {0}, 2), shape_error);
  CHECK_THROWS_WITH(classify_report({0, 3}, {0, 1}, 2), Catch::Contains("expected 0..1"));
  CHECK_THROWS_WITH(group_folds({1, 1, 2, 2}, 3), Catch::Contains("2 distinct groups"));
  CHECK_THROWS_WITH(choose_c_binary(X, {1, 1, 1, 0}, {0, 1, 0, 1}), Catch::Contains("holds only label 1"));
  CHECK_THROWS_AS(dmatrix(2, 2, std::vector<double>{1, 2, 3}), shape_error);
}
