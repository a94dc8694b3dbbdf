// genlm/analysis/logistic.hpp - L2-regularised logistic regression (binary and multinomial) in
// double precision, feature standardisation, grouped k-fold splits and cross-validated choice of
// the regularisation strength C. Used by the downstream analyses (operons from attention, the EC
// probe); see docs/ANALYSES.md.
//
// Objectives are scikit-learn's LogisticRegression(penalty="l2", C=C, fit_intercept=True), so
// fitted coefficients agree with sklearn's (solver "lbfgs", tight tolerance) to ~1e-6:
//   binary (y in {0,1}):   C * sum_i [log(1 + exp(z_i)) - y_i z_i] + 1/2 ||w||^2,  z_i = x_i.w + b
//   multinomial (K >= 2):  C * sum_i [logsumexp_k(z_ik) - z_i,y_i] + 1/2 ||W||_F^2, z_ik = x_i.W_k + b_k
// The intercepts are never penalised. Binary fits use Newton's method (IRLS) with a backtracking
// line search; multinomial fits use L-BFGS started at zero, so the intercepts (only defined up to
// a common shift) come out centred (sum 0), like sklearn's. Note the multinomial model with K = 2
// is a different parametrisation from the binary one (sklearn uses the binary model for 2 classes).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include <genlm/core/error.hpp>
#include <genlm/core/tensor.hpp>

namespace genlm::analysis {

/// A dense row-major matrix of doubles (samples x features).
struct dmatrix {
  index_t rows = 0, cols = 0;
  std::vector<double> v;

  dmatrix() = default;
  dmatrix(index_t r, index_t c, double fill = 0.0) : rows(r), cols(c), v(elements(r, c), fill) {}
  /// From row-major values; shape_error unless values.size() == r * c.
  dmatrix(index_t r, index_t c, std::vector<double> values) : rows(r), cols(c), v(std::move(values)) {
    check<shape_error>(v.size() == elements(r, c), "dmatrix: ", v.size(), " values for shape (", r, ", ", c, ")");
  }
  /// r * c, checked before anything is allocated: shape_error for a negative or overflowing shape.
  static std::size_t elements(index_t r, index_t c) {
    check<shape_error>(r >= 0 && c >= 0, "dmatrix: negative shape (", r, ", ", c, ")");
    return std::size_t(shape_t{r, c}.numel());
  }
  double* row(index_t i) { return v.data() + i * cols; }
  const double* row(index_t i) const { return v.data() + i * cols; }
  double& operator()(index_t i, index_t j) { return v[std::size_t(i * cols + j)]; }
  double operator()(index_t i, index_t j) const { return v[std::size_t(i * cols + j)]; }
  bool empty() const { return rows == 0; }
};

/// The rows `idx` of X, in that order.
inline dmatrix take_rows(const dmatrix& X, const std::vector<index_t>& idx) {
  dmatrix out(index_t(idx.size()), X.cols);
  for (std::size_t i = 0; i < idx.size(); ++i) {
    check<shape_error>(idx[i] >= 0 && idx[i] < X.rows, "take_rows: row ", idx[i], " of a matrix with ", X.rows,
                       " rows");
    std::copy_n(X.row(idx[i]), X.cols, out.row(index_t(i)));
  }
  return out;
}

template <class V>
std::vector<V> take(const std::vector<V>& y, const std::vector<index_t>& idx) {
  std::vector<V> out;
  out.reserve(idx.size());
  for (index_t i : idx) out.push_back(y[std::size_t(i)]);
  return out;
}

namespace logistic_detail {

inline void check_finite(const dmatrix& X, const char* who) {
  for (index_t i = 0; i < X.rows; ++i)
    for (index_t j = 0; j < X.cols; ++j)
      check<value_error>(std::isfinite(X(i, j)), who, ": feature ", j, " of sample ", i, " is NaN/Inf");
}

/// log(1 + exp(z)) without overflow.
inline double log1pexp(double z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }
inline double sigmoid(double z) {
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

}  // namespace logistic_detail

struct logistic_options {
  double C = 1.0;              ///< inverse regularisation strength (sklearn's C), > 0
  bool fit_intercept = true;   ///< unpenalised intercept(s)
  int max_iter = 0;            ///< 0: 100 Newton steps (binary) / 5000 L-BFGS steps (multinomial)
  double tol = 1e-10;          ///< stop when max |gradient| <= tol * (1 + C * n)
};

/// Binary L2 logistic regression, labels 0/1.
class binary_logistic {
 public:
  std::vector<double> coef;  ///< (d)
  double intercept = 0.0;
  int iterations = 0;
  bool converged = false;

  /// Fits on X (n x d) and y (n values 0/1). value_error for empty data, a single class, labels
  /// other than 0/1, C <= 0 or NaN/Inf; shape_error for mismatched sizes.
  binary_logistic& fit(const dmatrix& X, const std::vector<int>& y, const logistic_options& o = {}) {
    using namespace logistic_detail;
    constexpr const char* who = "binary_logistic::fit";
    check<value_error>(X.rows > 0 && X.cols > 0, who, ": empty data (", X.rows, " samples x ", X.cols, " features)");
    check<shape_error>(index_t(y.size()) == X.rows, who, ": ", y.size(), " labels for ", X.rows, " samples");
    check<value_error>(o.C > 0 && std::isfinite(o.C), who, ": C must be a positive number, got ", o.C);
    index_t pos = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      check<value_error>(y[i] == 0 || y[i] == 1, who, ": label of sample ", i, " is ", y[i], ", expected 0 or 1");
      pos += y[i];
    }
    check<value_error>(pos > 0 && pos < X.rows, who, ": all ", X.rows, " samples have label ", y[0],
                       "; need both classes (0 and 1) to fit");
    check_finite(X, who);
    const index_t n = X.rows, d = X.cols, p = d + (o.fit_intercept ? 1 : 0);
    const int max_iter = o.max_iter > 0 ? o.max_iter : 100;
    Eigen::VectorXd w = Eigen::VectorXd::Zero(p);
    auto objective = [&](const Eigen::VectorXd& wv) {
      double f = 0.5 * wv.head(d).squaredNorm() / o.C;
      for (index_t i = 0; i < n; ++i) {
        double z = o.fit_intercept ? wv[d] : 0.0;
        const double* x = X.row(i);
        for (index_t j = 0; j < d; ++j) z += x[j] * wv[j];
        f += log1pexp(z) - (y[std::size_t(i)] ? z : 0.0);
      }
      return f;  // objective / C (same minimiser, better scaled)
    };
    const double gtol = o.tol * (1.0 + o.C * double(n)) / o.C;
    double f = objective(w);
    converged = false;
    for (iterations = 0; iterations < max_iter; ++iterations) {
      Eigen::VectorXd g = Eigen::VectorXd::Zero(p);
      Eigen::MatrixXd H = Eigen::MatrixXd::Zero(p, p);
      Eigen::VectorXd xi(p);
      for (index_t i = 0; i < n; ++i) {
        const double* x = X.row(i);
        double z = o.fit_intercept ? w[d] : 0.0;
        for (index_t j = 0; j < d; ++j) z += x[j] * w[j], xi[j] = x[j];
        if (o.fit_intercept) xi[d] = 1.0;
        const double pr = sigmoid(z);
        g.noalias() += (pr - double(y[std::size_t(i)])) * xi;
        H.selfadjointView<Eigen::Lower>().rankUpdate(xi, std::max(pr * (1.0 - pr), 1e-300));
      }
      H = H.selfadjointView<Eigen::Lower>();
      g.head(d) += w.head(d) / o.C;
      for (index_t j = 0; j < d; ++j) H(j, j) += 1.0 / o.C;
      if (g.cwiseAbs().maxCoeff() <= gtol) {
        converged = true;
        break;
      }
      Eigen::LDLT<Eigen::MatrixXd> ldlt(H);
      Eigen::VectorXd step = ldlt.solve(-g);
      if (!step.allFinite() || step.dot(g) >= 0) step = -g;  // fall back to steepest descent
      double t = 1.0, fn = 0.0;
      const double slope = step.dot(g);
      Eigen::VectorXd wn;
      for (int ls = 0; ls < 60; ++ls, t *= 0.5) {
        wn = w + t * step;
        fn = objective(wn);
        if (fn <= f + 1e-4 * t * slope) break;
      }
      const double change = (wn - w).cwiseAbs().maxCoeff();
      w = wn;
      f = fn;
      if (change <= 1e-15 * (1.0 + w.cwiseAbs().maxCoeff())) {
        converged = true;
        ++iterations;
        break;
      }
    }
    coef.assign(w.data(), w.data() + d);
    intercept = o.fit_intercept ? w[d] : 0.0;
    return *this;
  }

  bool fitted() const { return !coef.empty(); }

  /// z = x.w + b per sample.
  std::vector<double> decision_function(const dmatrix& X) const {
    check<value_error>(fitted(), "binary_logistic: not fitted");
    check<shape_error>(X.cols == index_t(coef.size()), "binary_logistic: ", X.cols, " features, the model has ",
                       coef.size());
    std::vector<double> z(std::size_t(X.rows));
    for (index_t i = 0; i < X.rows; ++i) {
      double s = intercept;
      for (index_t j = 0; j < X.cols; ++j) s += X(i, j) * coef[std::size_t(j)];
      z[std::size_t(i)] = s;
    }
    return z;
  }
  /// P(y = 1 | x) per sample.
  std::vector<double> predict_proba(const dmatrix& X) const {
    auto z = decision_function(X);
    for (auto& v : z) v = logistic_detail::sigmoid(v);
    return z;
  }
};

/// Multinomial (softmax) L2 logistic regression, labels 0..K-1.
class multinomial_logistic {
 public:
  index_t classes = 0, features = 0;
  std::vector<double> coef;       ///< (K, d) row-major
  std::vector<double> intercept;  ///< (K), centred (sums to 0)
  int iterations = 0;
  bool converged = false;

  /// Fits on X (n x d) and labels y in 0..K-1 (K = n_classes, >= 2; every class need not occur,
  /// but at least two must). Errors as binary_logistic::fit.
  multinomial_logistic& fit(const dmatrix& X, const std::vector<int>& y, index_t n_classes,
                            const logistic_options& o = {}) {
    using namespace logistic_detail;
    constexpr const char* who = "multinomial_logistic::fit";
    check<value_error>(X.rows > 0 && X.cols > 0, who, ": empty data (", X.rows, " samples x ", X.cols, " features)");
    check<shape_error>(index_t(y.size()) == X.rows, who, ": ", y.size(), " labels for ", X.rows, " samples");
    check<value_error>(n_classes >= 2, who, ": n_classes must be >= 2, got ", n_classes);
    check<value_error>(o.C > 0 && std::isfinite(o.C), who, ": C must be a positive number, got ", o.C);
    std::vector<index_t> count(std::size_t(n_classes), 0);
    for (std::size_t i = 0; i < y.size(); ++i) {
      check<value_error>(y[i] >= 0 && y[i] < n_classes, who, ": label of sample ", i, " is ", y[i], ", expected 0..",
                         n_classes - 1);
      ++count[std::size_t(y[i])];
    }
    check<value_error>(std::count_if(count.begin(), count.end(), [](index_t c) { return c > 0; }) >= 2, who,
                       ": all ", X.rows, " samples have label ", y[0], "; need at least two classes to fit");
    check_finite(X, who);
    const index_t n = X.rows, d = X.cols, K = n_classes, dp = d + 1;
    const bool fi = o.fit_intercept;
    classes = K;
    features = d;
    // parameters: K rows of (w_k (d), b_k)
    const index_t P = K * dp;
    const std::size_t np = static_cast<std::size_t>(P);
    std::vector<double> w(np, 0.0), g(np), z(static_cast<std::size_t>(K));
    // f/C and its gradient
    auto eval = [&](const std::vector<double>& wv, std::vector<double>& gv) {
      std::fill(gv.begin(), gv.end(), 0.0);
      double f = 0.0;
      for (index_t k = 0; k < K; ++k)
        for (index_t j = 0; j < d; ++j) {
          const double a = wv[std::size_t(k * dp + j)];
          f += 0.5 * a * a / o.C;
          gv[std::size_t(k * dp + j)] = a / o.C;
        }
      for (index_t i = 0; i < n; ++i) {
        const double* x = X.row(i);
        double mx = -std::numeric_limits<double>::infinity();
        for (index_t k = 0; k < K; ++k) {
          const double* wk = &wv[std::size_t(k * dp)];
          double s = fi ? wk[d] : 0.0;
          for (index_t j = 0; j < d; ++j) s += x[j] * wk[j];
          z[std::size_t(k)] = s;
          mx = std::max(mx, s);
        }
        double se = 0.0;
        for (index_t k = 0; k < K; ++k) se += std::exp(z[std::size_t(k)] - mx);
        const double lse = mx + std::log(se);
        const int yi = y[std::size_t(i)];
        f += lse - z[std::size_t(yi)];
        for (index_t k = 0; k < K; ++k) {
          const double r = std::exp(z[std::size_t(k)] - lse) - (k == yi ? 1.0 : 0.0);
          double* gk = &gv[std::size_t(k * dp)];
          for (index_t j = 0; j < d; ++j) gk[j] += r * x[j];
          if (fi) gk[d] += r;
        }
      }
      return f;
    };
    const int max_iter = o.max_iter > 0 ? o.max_iter : 5000;
    const double gtol = o.tol * (1.0 + o.C * double(n)) / o.C;
    constexpr int M = 10;
    std::vector<std::vector<double>> S, Y;
    std::vector<double> rho;
    double f = eval(w, g);
    std::vector<double> dir(np), wn(np), gn(np), alpha(M);
    auto maxabs = [](const std::vector<double>& v) {
      double m = 0;
      for (double a : v) m = std::max(m, std::abs(a));
      return m;
    };
    converged = false;
    for (iterations = 0; iterations < max_iter; ++iterations) {
      if (maxabs(g) <= gtol) {
        converged = true;
        break;
      }
      // two-loop recursion: dir = -H g
      for (index_t i = 0; i < P; ++i) dir[std::size_t(i)] = -g[std::size_t(i)];
      const int m = int(S.size());
      for (int k = m - 1; k >= 0; --k) {
        double a = 0;
        for (index_t i = 0; i < P; ++i) a += S[std::size_t(k)][std::size_t(i)] * dir[std::size_t(i)];
        a *= rho[std::size_t(k)];
        alpha[std::size_t(k)] = a;
        for (index_t i = 0; i < P; ++i) dir[std::size_t(i)] -= a * Y[std::size_t(k)][std::size_t(i)];
      }
      double gamma = 1.0;
      if (m > 0) {
        double sy = 0, yy = 0;
        for (index_t i = 0; i < P; ++i)
          sy += S.back()[std::size_t(i)] * Y.back()[std::size_t(i)], yy += Y.back()[std::size_t(i)] * Y.back()[std::size_t(i)];
        gamma = sy / yy;
      } else {
        gamma = 1.0 / std::max(1.0, std::sqrt(std::inner_product(g.begin(), g.end(), g.begin(), 0.0)));
      }
      for (auto& v : dir) v *= gamma;
      for (int k = 0; k < m; ++k) {
        double b = 0;
        for (index_t i = 0; i < P; ++i) b += Y[std::size_t(k)][std::size_t(i)] * dir[std::size_t(i)];
        b *= rho[std::size_t(k)];
        for (index_t i = 0; i < P; ++i) dir[std::size_t(i)] += (alpha[std::size_t(k)] - b) * S[std::size_t(k)][std::size_t(i)];
      }
      double slope = std::inner_product(dir.begin(), dir.end(), g.begin(), 0.0);
      if (!(slope < 0)) {  // not a descent direction: restart from steepest descent
        S.clear(), Y.clear(), rho.clear();
        for (index_t i = 0; i < P; ++i) dir[std::size_t(i)] = -g[std::size_t(i)] * gamma;
        slope = std::inner_product(dir.begin(), dir.end(), g.begin(), 0.0);
      }
      double t = 1.0, fn = f;
      bool ok = false;
      for (int ls = 0; ls < 60; ++ls, t *= 0.5) {
        for (index_t i = 0; i < P; ++i) wn[std::size_t(i)] = w[std::size_t(i)] + t * dir[std::size_t(i)];
        fn = eval(wn, gn);
        // Armijo; or, where f no longer resolves the decrease (near the optimum, in double), the
        // curvature condition on the directional derivative (approximate Wolfe, Hager-Zhang)
        const double slope_new = std::inner_product(dir.begin(), dir.end(), gn.begin(), 0.0);
        if (fn <= f + 1e-4 * t * slope || (fn <= f + 1e-12 * (1.0 + std::abs(f)) && std::abs(slope_new) <= 0.9 * std::abs(slope))) {
          ok = true;
          break;
        }
      }
      if (!ok) {  // no decrease possible at double precision: at the minimum
        converged = maxabs(g) <= 1e3 * gtol;
        break;
      }
      std::vector<double> s(np), yv(np);
      double sy = 0;
      for (index_t i = 0; i < P; ++i) {
        s[std::size_t(i)] = wn[std::size_t(i)] - w[std::size_t(i)];
        yv[std::size_t(i)] = gn[std::size_t(i)] - g[std::size_t(i)];
        sy += s[std::size_t(i)] * yv[std::size_t(i)];
      }
      w.swap(wn);
      g.swap(gn);
      f = fn;
      if (sy > 1e-300) {
        if (int(S.size()) == M) S.erase(S.begin()), Y.erase(Y.begin()), rho.erase(rho.begin());
        S.push_back(std::move(s));
        Y.push_back(std::move(yv));
        rho.push_back(1.0 / sy);
      }
    }
    coef.assign(std::size_t(K * d), 0.0);
    intercept.assign(std::size_t(K), 0.0);
    for (index_t k = 0; k < K; ++k) {
      std::copy_n(&w[std::size_t(k * dp)], d, &coef[std::size_t(k * d)]);
      intercept[std::size_t(k)] = fi ? w[std::size_t(k * dp + d)] : 0.0;
    }
    const double mean_b = std::accumulate(intercept.begin(), intercept.end(), 0.0) / double(K);
    for (auto& b : intercept) b -= mean_b;
    return *this;
  }

  bool fitted() const { return classes > 0; }

  /// Class probabilities (n x K).
  dmatrix predict_proba(const dmatrix& X) const {
    check<value_error>(fitted(), "multinomial_logistic: not fitted");
    check<shape_error>(X.cols == features, "multinomial_logistic: ", X.cols, " features, the model has ", features);
    dmatrix P(X.rows, classes);
    for (index_t i = 0; i < X.rows; ++i) {
      double mx = -std::numeric_limits<double>::infinity();
      for (index_t k = 0; k < classes; ++k) {
        double s = intercept[std::size_t(k)];
        for (index_t j = 0; j < features; ++j) s += X(i, j) * coef[std::size_t(k * features + j)];
        P(i, k) = s;
        mx = std::max(mx, s);
      }
      double se = 0;
      for (index_t k = 0; k < classes; ++k) se += (P(i, k) = std::exp(P(i, k) - mx));
      for (index_t k = 0; k < classes; ++k) P(i, k) /= se;
    }
    return P;
  }
  /// Most probable class per sample (lowest index on ties).
  std::vector<int> predict(const dmatrix& X) const {
    const dmatrix P = predict_proba(X);
    std::vector<int> out(std::size_t(X.rows));
    for (index_t i = 0; i < X.rows; ++i)
      out[std::size_t(i)] = int(std::max_element(P.row(i), P.row(i) + classes) - P.row(i));
    return out;
  }
};

/// sklearn's StandardScaler: per-feature mean and population std (ddof 0); a constant feature
/// keeps scale 1.
struct standard_scaler {
  std::vector<double> mean, scale;

  standard_scaler& fit(const dmatrix& X) {
    check<value_error>(X.rows > 0 && X.cols > 0, "standard_scaler::fit: empty data (", X.rows, " x ", X.cols, ")");
    mean.assign(std::size_t(X.cols), 0.0);
    scale.assign(std::size_t(X.cols), 0.0);
    for (index_t i = 0; i < X.rows; ++i)
      for (index_t j = 0; j < X.cols; ++j) mean[std::size_t(j)] += X(i, j);
    for (auto& m : mean) m /= double(X.rows);
    for (index_t i = 0; i < X.rows; ++i)
      for (index_t j = 0; j < X.cols; ++j) {
        const double c = X(i, j) - mean[std::size_t(j)];
        scale[std::size_t(j)] += c * c;
      }
    for (auto& s : scale) {
      s = std::sqrt(s / double(X.rows));
      if (!(s > 1e-12)) s = 1.0;
    }
    return *this;
  }
  dmatrix transform(const dmatrix& X) const {
    check<shape_error>(X.cols == index_t(mean.size()), "standard_scaler: ", X.cols, " features, fitted on ",
                       mean.size());
    dmatrix out = X;
    for (index_t i = 0; i < X.rows; ++i)
      for (index_t j = 0; j < X.cols; ++j) out(i, j) = (X(i, j) - mean[std::size_t(j)]) / scale[std::size_t(j)];
    return out;
  }
};

/// Fold (0..k-1) of every sample, keeping groups together: the distinct group ids, in increasing
/// order, are dealt to folds round-robin (group number r -> fold r % k), so neighbouring blocks of
/// a genome land in different folds. value_error unless there are at least k distinct groups.
inline std::vector<int> group_folds(const std::vector<index_t>& groups, int k) {
  check<value_error>(k >= 2, "group_folds: k must be >= 2, got ", k);
  std::map<index_t, int> fold_of;
  for (index_t g : groups) fold_of.emplace(g, 0);
  check<value_error>(index_t(fold_of.size()) >= k, "group_folds: ", fold_of.size(), " distinct groups (",
                     groups.size(), " samples) cannot fill ", k, " folds; use fewer folds or more data");
  int r = 0;
  for (auto& [g, f] : fold_of) f = r++ % k;
  std::vector<int> out;
  out.reserve(groups.size());
  for (index_t g : groups) out.push_back(fold_of[g]);
  return out;
}

/// Train/test sample indices of fold f.
inline void fold_split(const std::vector<int>& folds, int f, std::vector<index_t>& train, std::vector<index_t>& test) {
  train.clear();
  test.clear();
  for (std::size_t i = 0; i < folds.size(); ++i) (folds[i] == f ? test : train).push_back(index_t(i));
}

/// The default grid of C values: 10^-3 .. 10^2.
inline std::vector<double> default_c_grid() { return {1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0}; }

/// Result of choosing C by cross-validation: mean held-out log loss per grid value.
struct cv_choice {
  std::vector<double> Cs;
  std::vector<double> mean_log_loss;  ///< per C, averaged over held-out samples of all folds
  double best_C = 1.0;
};

namespace logistic_detail {
inline double clip_prob(double p) { return std::clamp(p, 1e-15, 1.0 - 1e-15); }

inline void check_cv_args(const dmatrix& X, std::size_t ny, const std::vector<int>& folds,
                          const std::vector<double>& Cs, const char* who) {
  check<value_error>(X.rows > 0, who, ": empty data");
  check<shape_error>(index_t(ny) == X.rows && index_t(folds.size()) == X.rows, who, ": ", X.rows, " samples but ", ny,
                     " labels and ", folds.size(), " fold assignments");
  check<value_error>(!Cs.empty(), who, ": empty grid of C values");
  // folds number 0..k-1 with k >= 2 (every sample held out once; at most one fold per sample)
  for (std::size_t i = 0; i < folds.size(); ++i)
    check<value_error>(folds[i] >= 0 && index_t(folds[i]) < X.rows, who, ": sample ", i, " is in fold ", folds[i],
                       ", expected 0..", X.rows - 1);
  check<value_error>(*std::max_element(folds.begin(), folds.end()) >= 1, who,
                     ": every sample is in fold 0; cross-validation needs at least 2 folds");
}
}  // namespace logistic_detail

namespace logistic_detail {
/// Cross-validation of C shared by the binary and multinomial searches: for every fold, checks the
/// training labels with check_train(fold, folds_total, ytr), standardises the features on the
/// training part, and adds held_out_loss(C, Ztr, ytr, Zte, yte) (summed log loss of the held-out
/// part) for every C of the grid. Returns the mean held-out log loss per C and the best C.
template <class CheckTrain, class HeldOutLoss>
cv_choice cross_validate_c(const dmatrix& X, const std::vector<int>& y, const std::vector<int>& folds,
                           const std::vector<double>& Cs, const char* who, CheckTrain&& check_train,
                           HeldOutLoss&& held_out_loss) {
  check_cv_args(X, y.size(), folds, Cs, who);
  const int k = *std::max_element(folds.begin(), folds.end()) + 1;
  cv_choice out;
  out.Cs = Cs;
  out.mean_log_loss.assign(Cs.size(), 0.0);
  std::vector<index_t> tr, te;
  for (int f = 0; f < k; ++f) {
    fold_split(folds, f, tr, te);
    if (te.empty()) continue;
    const dmatrix Xtr = take_rows(X, tr), Xte = take_rows(X, te);
    const auto ytr = take(y, tr), yte = take(y, te);
    check_train(f, k, ytr);
    standard_scaler sc;
    sc.fit(Xtr);
    const dmatrix Ztr = sc.transform(Xtr), Zte = sc.transform(Xte);
    for (std::size_t c = 0; c < Cs.size(); ++c) out.mean_log_loss[c] += held_out_loss(Cs[c], Ztr, ytr, Zte, yte);
  }
  for (auto& l : out.mean_log_loss) l /= double(X.rows);
  out.best_C = Cs[std::size_t(std::min_element(out.mean_log_loss.begin(), out.mean_log_loss.end()) -
                              out.mean_log_loss.begin())];
  return out;
}
}  // namespace logistic_detail

/// Chooses C for binary logistic regression by the held-out log loss over the folds (features
/// standardised within each training fold). value_error when a training fold has one class.
inline cv_choice choose_c_binary(const dmatrix& X, const std::vector<int>& y, const std::vector<int>& folds,
                                 const std::vector<double>& Cs = default_c_grid()) {
  return logistic_detail::cross_validate_c(
      X, y, folds, Cs, "choose_c_binary",
      [](int f, int k, const std::vector<int>& ytr) {
        const int pos = std::accumulate(ytr.begin(), ytr.end(), 0);
        check<value_error>(pos > 0 && pos < int(ytr.size()), "choose_c_binary: the training part of fold ", f + 1,
                           " of ", k, " holds only label ", ytr.empty() ? 0 : ytr[0], "; use fewer folds or more data");
      },
      [](double C, const dmatrix& Ztr, const std::vector<int>& ytr, const dmatrix& Zte, const std::vector<int>& yte) {
        binary_logistic m;
        logistic_options o;
        o.C = C;
        o.tol = 1e-8;
        m.fit(Ztr, ytr, o);
        const auto p = m.predict_proba(Zte);
        double loss = 0;
        for (std::size_t i = 0; i < p.size(); ++i) {
          const double q = logistic_detail::clip_prob(p[i]);
          loss -= yte[i] ? std::log(q) : std::log1p(-q);
        }
        return loss;
      });
}

/// Chooses C for multinomial logistic regression by held-out log loss (features standardised
/// within each training fold).
inline cv_choice choose_c_multinomial(const dmatrix& X, const std::vector<int>& y, index_t n_classes,
                                      const std::vector<int>& folds, const std::vector<double>& Cs = default_c_grid()) {
  for (std::size_t i = 0; i < y.size(); ++i)
    check<value_error>(y[i] >= 0 && y[i] < n_classes, "choose_c_multinomial: sample ", i, " has label ", y[i],
                       ", expected 0..", n_classes - 1);
  return logistic_detail::cross_validate_c(
      X, y, folds, Cs, "choose_c_multinomial", [](int, int, const std::vector<int>&) {},
      [n_classes](double C, const dmatrix& Ztr, const std::vector<int>& ytr, const dmatrix& Zte,
                  const std::vector<int>& yte) {
        multinomial_logistic m;
        logistic_options o;
        o.C = C;
        o.tol = 1e-6;
        m.fit(Ztr, ytr, n_classes, o);
        const dmatrix p = m.predict_proba(Zte);
        double loss = 0;
        for (std::size_t i = 0; i < yte.size(); ++i) loss -= std::log(logistic_detail::clip_prob(p(index_t(i), yte[i])));
        return loss;
      });
}

}  // namespace genlm::analysis
