// genlm/train/pca.hpp - host-side PCA and per-dimension normalisation for the gLM labels.
//
// The pretraining label of a gene is the PCA (99 components) of its normalised pLM embedding
// (SPEC.md, "Pretraining objective"). Both transforms are fitted once on the host, stored next to
// the model (safetensors) and applied to every embedding before training.
//
// pca<T> reproduces sklearn.decomposition.PCA(n_components=k, svd_solver="full") (checked against
// scikit-learn 1.9, tests/fixtures/train/pca.safetensors):
//   mean_                     column means of X
//   components_ (k, d)        top-k right singular vectors of X - mean_, one per row, computed here
//                             as the top-k eigenvectors of the (d, d) covariance
//                             (X - mean_)^T (X - mean_) / (n - 1) with Eigen's
//                             SelfAdjointEigenSolver in double precision
//   explained_variance_ (k)   S^2 / (n - 1) = the top-k covariance eigenvalues (ddof = 1; tiny
//                             negative round-off is clipped to 0 like sklearn's covariance solver)
//   explained_variance_ratio_ explained_variance_ / total variance (= trace of the covariance,
//                             i.e. the sum over ALL singular values, as sklearn)
//   sign convention           sklearn's svd_flip(u_based_decision=False): in every component the
//                             entry of largest absolute value (the first one on exact ties, as
//                             numpy's argmax) is made positive
//   transform(X)              (X - mean_) components_^T          -> (n, k)
//   inverse_transform(Z)      Z components_ + mean_              -> (n, d)
// Everything is computed in double whatever T is; T is only the element type of the inputs and
// outputs. The covariance route costs O(n d^2) + O(d^3) and needs O(d^2) memory (the data are
// streamed in blocks of rows), which is cheap for the gLM sizes (d = 1280, n up to ~1e5). Its
// accuracy relative to a direct SVD is ~eps * lambda_max / (eigenvalue gap), i.e. ~1e-12 for
// well-separated components; components whose eigenvalues (nearly) coincide are not unique in
// sklearn either.
//
// normalizer: per-dimension mean and POPULATION standard deviation (ddof = 0, numpy's default
// np.std); apply(x) = (x - mean) / std, invert(z) = z * std + mean. A dimension whose std is below
// normalizer::min_std (1e-12) - a constant column - gets std = 1 instead, so it maps to 0 rather
// than to NaN/Inf.
//
// Errors: shape_error for bad sizes (n < 2 for PCA, n < 1 for the normalizer, d < 1, input widths
// that do not match the fitted width, stored tensors of the wrong shape); value_error for
// n_components outside [1, min(n, d)], NaN/Inf inputs (naming row, column and value) and invalid
// stored values; format_error for stored tensors of a non-floating dtype; lookup_error (from
// io::safetensors_file::at) for missing tensors.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <Eigen/Dense>

#include <genlm/core/error.hpp>
#include <genlm/core/tensor.hpp>
#include <genlm/io/array.hpp>
#include <genlm/io/safetensors.hpp>

namespace genlm {

namespace pca_detail {

using mat_rm = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using vec = Eigen::VectorXd;
using row_vec = Eigen::RowVectorXd;

/// Rows are processed in blocks of this many (bounds the double copy of the data).
inline constexpr index_t block_rows = 2048;

/// Throws value_error naming `who`, the first NaN/Inf (row, column, value) and how many there are.
template <class T>
void check_finite(const T* X, index_t n, index_t d, const char* who, const char* what) {
  index_t bad = 0, first = -1;
  for (index_t i = 0; i < n * d; ++i)
    if (!std::isfinite(X[i])) {
      if (bad++ == 0) first = i;
    }
  check<value_error>(bad == 0, who, ": ", what, " (", n, " x ", d, ") contains ", bad,
                     " NaN/Inf value(s); the first is ", bad ? X[first] : T(0), " at row ",
                     bad ? first / d : 0, ", column ", bad ? first % d : 0);
}

/// Copies rows [r0, r0 + m) of the row-major (n, d) array X into a double matrix.
template <class T>
mat_rm rows_to_double(const T* X, index_t r0, index_t m, index_t d) {
  Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> src(X + r0 * d, m, d);
  return src.template cast<double>();
}

/// Reads a floating-point tensor `name` of `f` as double values, returning its shape in `shape`.
inline std::vector<double> read_float_tensor(const io::safetensors_file& f, const std::string& name,
                                             const char* who, std::vector<std::int64_t>& shape) {
  const io::array& a = f.at(name);
  check<format_error>(io::is_floating(a.dtype), who, ": tensor '", name, "' in '", f.source, "' has dtype ",
                      io::dtype_name(a.dtype), ", expected a floating-point dtype (F64, F32, F16, BF16)");
  shape = a.shape;
  return a.to<double>();
}

/// "(d0, d1, ...)" like io::shape_to_string.
inline std::string shape_str(const std::vector<std::int64_t>& s) { return io::shape_to_string(s); }

/// Throws shape_error naming the tensor, the shape seen and the shape expected.
inline void expect_tensor_shape(const io::safetensors_file& f, const std::string& name, const char* who,
                                const std::vector<std::int64_t>& seen, const std::vector<std::int64_t>& expected,
                                const std::string& why = {}) {
  check<shape_error>(seen == expected, who, ": tensor '", name, "' in '", f.source, "' has shape ",
                     shape_str(seen), ", expected ", shape_str(expected), why);
}

}  // namespace pca_detail

/// Principal component analysis, equivalent to sklearn.decomposition.PCA(n_components=k,
/// svd_solver="full") (see the file comment for the exact definitions and sign convention).
/// T (float or double) is the element type of the data passed in and out; internally double.
template <class T>
class pca {
  static_assert(std::is_floating_point_v<T>, "genlm::pca<T>: T must be float or double");

 public:
  pca() = default;

  /// Fits on the row-major (n, d) data X (n samples of d features) keeping `components` components.
  /// Throws shape_error for n < 2 or d < 1, value_error for components outside [1, min(n, d)] or
  /// NaN/Inf in X.
  void fit(const T* X, index_t n, index_t d, index_t components) {
    constexpr const char* who = "pca::fit";
    check<shape_error>(d >= 1, who, ": need at least 1 feature, got n_features = ", d);
    check<shape_error>(n >= 2, who, ": need at least 2 samples, got n_samples = ", n);
    check<value_error>(components >= 1 && components <= std::min(n, d), who, ": n_components = ", components,
                       " must be between 1 and min(n_samples, n_features) = min(", n, ", ", d,
                       ") = ", std::min(n, d));
    check<value_error>(X != nullptr, who, ": null data pointer");
    pca_detail::check_finite(X, n, d, who, "data");

    using namespace pca_detail;
    // Column means (double accumulation).
    row_vec mu = row_vec::Zero(d);
    for (index_t r0 = 0; r0 < n; r0 += block_rows) {
      const index_t m = std::min(block_rows, n - r0);
      mu += rows_to_double(X, r0, m, d).colwise().sum();
    }
    mu /= double(n);

    // Covariance of the centred data (lower triangle accumulated block by block).
    Eigen::MatrixXd C = Eigen::MatrixXd::Zero(d, d);
    for (index_t r0 = 0; r0 < n; r0 += block_rows) {
      const index_t m = std::min(block_rows, n - r0);
      mat_rm B = rows_to_double(X, r0, m, d);
      B.rowwise() -= mu;
      C.selfadjointView<Eigen::Lower>().rankUpdate(B.transpose());
    }
    C /= double(n - 1);
    double total = 0;
    for (index_t j = 0; j < d; ++j) total += C(j, j);
    // the lower triangle (rankUpdate's) and the mean must be finite: values near the double range
    // overflow the sums (a NaN covariance would give NaN components without an error)
    check<value_error>(mu.allFinite() && C.triangularView<Eigen::Lower>().toDenseMatrix().allFinite() &&
                           std::isfinite(total),
                       who, ": the mean or covariance of the ", n, " x ", d,
                       " data is not finite (values too large for double sums)");

    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es;
    es.compute(C, Eigen::ComputeEigenvectors);  // reads the lower triangle only
    check<error>(es.info() == Eigen::Success, who, ": the eigen-decomposition of the ", d, " x ", d,
                 " covariance did not converge");

    n_samples_ = n;
    d_ = d;
    k_ = components;
    total_variance_ = total;
    mean_.assign(mu.data(), mu.data() + d);
    components_.assign(static_cast<std::size_t>(k_ * d_), 0.0);
    variance_.assign(static_cast<std::size_t>(k_), 0.0);
    ratio_.assign(static_cast<std::size_t>(k_), 0.0);
    for (index_t j = 0; j < k_; ++j) {
      const index_t col = d - 1 - j;  // eigenvalues come in increasing order
      const double ev = std::max(es.eigenvalues()(col), 0.0);
      variance_[std::size_t(j)] = ev;
      ratio_[std::size_t(j)] = total > 0 ? ev / total : 0.0;
      // svd_flip(u_based_decision=False): largest |entry| (first on ties) made positive.
      index_t arg = 0;
      double best = -1;
      for (index_t c = 0; c < d; ++c) {
        const double a = std::abs(es.eigenvectors()(c, col));
        if (a > best) {
          best = a;
          arg = c;
        }
      }
      const double sign = es.eigenvectors()(arg, col) < 0 ? -1.0 : 1.0;
      for (index_t c = 0; c < d; ++c) components_[std::size_t(j * d + c)] = sign * es.eigenvectors()(c, col);
    }
  }
  void fit(std::span<const T> X, index_t d, index_t components) {
    check<shape_error>(d >= 1 && X.size() % std::size_t(d) == 0, "pca::fit: ", X.size(),
                       " values are not a whole number of rows of n_features = ", d);
    fit(X.data(), index_t(X.size()) / d, d, components);
  }

  bool fitted() const { return k_ > 0; }
  index_t n_components() const { return k_; }
  index_t n_features() const { return d_; }
  /// Number of samples seen by fit (0 when loaded from a file).
  index_t n_samples() const { return n_samples_; }

  /// Z (n, k) = (X - mean) components^T for the row-major (n, d) data X. Z may not alias X.
  void transform(const T* X, index_t n, T* Z) const {
    constexpr const char* who = "pca::transform";
    require_fitted(who);
    check<shape_error>(n >= 0, who, ": negative number of rows ", n);
    if (n == 0) return;
    pca_detail::check_finite(X, n, d_, who, "data");
    using namespace pca_detail;
    const Eigen::Map<const mat_rm> comp(components_.data(), k_, d_);
    const Eigen::Map<const row_vec> mu(mean_.data(), d_);
    for (index_t r0 = 0; r0 < n; r0 += block_rows) {
      const index_t m = std::min(block_rows, n - r0);
      mat_rm B = rows_to_double(X, r0, m, d_);
      B.rowwise() -= mu;
      const mat_rm out = B * comp.transpose();
      Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(Z + r0 * k_, m, k_) =
          out.template cast<T>();
    }
  }
  /// X.size() must be a multiple of n_features(); returns the (n, k) result row-major.
  std::vector<T> transform(std::span<const T> X) const {
    const index_t n = rows_of(X.size(), d_, "pca::transform", "n_features");
    std::vector<T> Z(static_cast<std::size_t>(n * k_));
    transform(X.data(), n, Z.data());
    return Z;
  }

  /// X (n, d) = Z components + mean for the row-major (n, k) scores Z. X may not alias Z.
  void inverse_transform(const T* Z, index_t n, T* X) const {
    constexpr const char* who = "pca::inverse_transform";
    require_fitted(who);
    check<shape_error>(n >= 0, who, ": negative number of rows ", n);
    if (n == 0) return;
    pca_detail::check_finite(Z, n, k_, who, "scores");
    using namespace pca_detail;
    const Eigen::Map<const mat_rm> comp(components_.data(), k_, d_);
    const Eigen::Map<const row_vec> mu(mean_.data(), d_);
    for (index_t r0 = 0; r0 < n; r0 += block_rows) {
      const index_t m = std::min(block_rows, n - r0);
      mat_rm out = rows_to_double(Z, r0, m, k_) * comp;
      out.rowwise() += mu;
      Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(X + r0 * d_, m, d_) =
          out.template cast<T>();
    }
  }
  /// Z.size() must be a multiple of n_components(); returns the (n, d) result row-major.
  std::vector<T> inverse_transform(std::span<const T> Z) const {
    const index_t n = rows_of(Z.size(), k_, "pca::inverse_transform", "n_components");
    std::vector<T> X(static_cast<std::size_t>(n * d_));
    inverse_transform(Z.data(), n, X.data());
    return X;
  }

  /// components_ (k, d), row-major, one component per row.
  const std::vector<double>& components() const { return components_; }
  /// mean_ (d).
  const std::vector<double>& mean() const { return mean_; }
  /// explained_variance_ (k), ddof = 1.
  const std::vector<double>& explained_variance() const { return variance_; }
  /// explained_variance_ratio_ (k).
  const std::vector<double>& explained_variance_ratio() const { return ratio_; }
  /// Total variance of the fitted data (trace of the covariance, ddof = 1).
  double total_variance() const { return total_variance_; }

  /// Stores prefix + {"components" (k, d), "mean" (d), "explained_variance" (k),
  /// "explained_variance_ratio" (k)} as F64 tensors into `out` (replacing existing entries).
  void save_to(std::map<std::string, io::array>& out, const std::string& prefix = "pca.") const {
    require_fitted("pca::save_to");
    out.insert_or_assign(prefix + "components", io::array::from<double>({k_, d_}, components_));
    out.insert_or_assign(prefix + "mean", io::array::from<double>({d_}, mean_));
    out.insert_or_assign(prefix + "explained_variance", io::array::from<double>({k_}, variance_));
    out.insert_or_assign(prefix + "explained_variance_ratio", io::array::from<double>({k_}, ratio_));
  }

  /// Loads what save_to wrote (any floating dtype). "explained_variance_ratio" is optional (zeros
  /// when absent; total_variance() is then reconstructed only when it is present). Shapes are
  /// checked against each other: shape_error names the tensor, the shape seen and the one expected.
  void load_from(const io::safetensors_file& f, const std::string& prefix = "pca.") {
    constexpr const char* who = "pca::load_from";
    using pca_detail::expect_tensor_shape;
    std::vector<std::int64_t> sc, sm, sv, sr;
    const std::string nc = prefix + "components", nm = prefix + "mean", nv = prefix + "explained_variance",
                      nr = prefix + "explained_variance_ratio";
    auto comp = pca_detail::read_float_tensor(f, nc, who, sc);
    check<shape_error>(sc.size() == 2 && sc[0] >= 1 && sc[1] >= 1 && sc[0] <= sc[1], who, ": tensor '", nc,
                       "' in '", f.source, "' has shape ", pca_detail::shape_str(sc),
                       ", expected (n_components, n_features) with 1 <= n_components <= n_features");
    const index_t k = sc[0], d = sc[1];
    auto mu = pca_detail::read_float_tensor(f, nm, who, sm);
    expect_tensor_shape(f, nm, who, sm, {d}, " (n_features of '" + nc + "')");
    auto var = pca_detail::read_float_tensor(f, nv, who, sv);
    expect_tensor_shape(f, nv, who, sv, {k}, " (n_components of '" + nc + "')");
    std::vector<double> ratio(static_cast<std::size_t>(k), 0.0);
    if (f.contains(nr)) {
      ratio = pca_detail::read_float_tensor(f, nr, who, sr);
      expect_tensor_shape(f, nr, who, sr, {k}, " (n_components of '" + nc + "')");
    }
    for (const auto* v : {&comp, &mu, &var, &ratio})
      for (double x : *v)
        check<value_error>(std::isfinite(x), who, ": non-finite value ", x, " in '", f.source, "' under '",
                           prefix, "'");
    for (double x : var)
      check<value_error>(x >= 0, who, ": tensor '", nv, "' in '", f.source, "' has a negative variance ", x);
    d_ = d;
    k_ = k;
    n_samples_ = 0;
    components_ = std::move(comp);
    mean_ = std::move(mu);
    variance_ = std::move(var);
    ratio_ = std::move(ratio);
    total_variance_ = (!ratio_.empty() && ratio_[0] > 0) ? variance_[0] / ratio_[0] : 0.0;
  }

 private:
  void require_fitted(const char* who) const { check(fitted(), who, ": the PCA is not fitted (call fit or load_from)"); }
  static index_t rows_of(std::size_t size, index_t width, const char* who, const char* what) {
    check(width > 0, who, ": the PCA is not fitted (call fit or load_from)");
    check<shape_error>(size % std::size_t(width) == 0, who, ": ", size, " values are not a whole number of rows of ",
                       what, " = ", width);
    return index_t(size) / width;
  }

  index_t n_samples_ = 0, d_ = 0, k_ = 0;
  double total_variance_ = 0;
  std::vector<double> components_, mean_, variance_, ratio_;
};

/// Per-dimension standardisation with the population std (ddof = 0, numpy's np.std default).
/// Dimensions with std < min_std (constant columns) use std = 1, so they map to x - mean.
struct normalizer {
  static constexpr double min_std = 1e-12;

  std::vector<double> mean;  ///< (d)
  std::vector<double> stddev;  ///< (d), every entry >= min_std (replaced ones are exactly 1)

  index_t n_features() const { return index_t(mean.size()); }
  bool fitted() const { return !mean.empty(); }

  /// Fits on the row-major (n, d) data X (n >= 1). Two-pass mean / variance in double.
  template <class T>
  void fit(const T* X, index_t n, index_t d) {
    constexpr const char* who = "normalizer::fit";
    check<shape_error>(d >= 1, who, ": need at least 1 feature, got n_features = ", d);
    check<shape_error>(n >= 1, who, ": need at least 1 sample, got n_samples = ", n);
    check<value_error>(X != nullptr, who, ": null data pointer");
    pca_detail::check_finite(X, n, d, who, "data");
    std::vector<double> mu(static_cast<std::size_t>(d), 0.0), var(static_cast<std::size_t>(d), 0.0);
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < d; ++c) mu[std::size_t(c)] += double(X[i * d + c]);
    for (auto& m : mu) m /= double(n);
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < d; ++c) {
        const double e = double(X[i * d + c]) - mu[std::size_t(c)];
        var[std::size_t(c)] += e * e;
      }
    for (auto& v : var) {
      v = std::sqrt(v / double(n));
      if (std::isfinite(v) && !(v >= min_std)) v = 1.0;
    }
    for (index_t c = 0; c < d; ++c)
      check<value_error>(std::isfinite(mu[std::size_t(c)]) && std::isfinite(var[std::size_t(c)]), who,
                         ": feature ", c, " has mean ", mu[std::size_t(c)], " and standard deviation ",
                         var[std::size_t(c)], ": its values are too large for double sums (finite results expected)");
    mean = std::move(mu);
    stddev = std::move(var);
  }
  template <class T>
  void fit(std::span<const T> X, index_t d) {
    check<shape_error>(d >= 1 && X.size() % std::size_t(d) == 0, "normalizer::fit: ", X.size(),
                       " values are not a whole number of rows of n_features = ", d);
    fit(X.data(), index_t(X.size()) / d, d);
  }

  /// out = (X - mean) / std for the row-major (n, d) X; out may alias X.
  template <class T>
  void apply(const T* X, index_t n, T* out) const {
    require_fitted("normalizer::apply");
    const index_t d = n_features();
    pca_detail::check_finite(X, n, d, "normalizer::apply", "data");
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < d; ++c)
        out[i * d + c] = T((double(X[i * d + c]) - mean[std::size_t(c)]) / stddev[std::size_t(c)]);
  }
  template <class T>
  std::vector<T> apply(std::span<const T> X) const {
    std::vector<T> out(X.size());
    apply(X.data(), rows(X.size(), "normalizer::apply"), out.data());
    return out;
  }

  /// out = Z * std + mean for the row-major (n, d) Z; out may alias Z.
  template <class T>
  void invert(const T* Z, index_t n, T* out) const {
    require_fitted("normalizer::invert");
    const index_t d = n_features();
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < d; ++c)
        out[i * d + c] = T(double(Z[i * d + c]) * stddev[std::size_t(c)] + mean[std::size_t(c)]);
  }
  template <class T>
  std::vector<T> invert(std::span<const T> Z) const {
    std::vector<T> out(Z.size());
    invert(Z.data(), rows(Z.size(), "normalizer::invert"), out.data());
    return out;
  }

  /// Stores prefix + {"mean", "std"} (d) as F64 tensors.
  void save_to(std::map<std::string, io::array>& out, const std::string& prefix = "norm.") const {
    require_fitted("normalizer::save_to");
    out.insert_or_assign(prefix + "mean", io::array::from<double>({n_features()}, mean));
    out.insert_or_assign(prefix + "std", io::array::from<double>({n_features()}, stddev));
  }
  /// Loads what save_to wrote (any floating dtype); shape_error names the tensor and the shapes,
  /// value_error flags non-finite values or std <= 0.
  void load_from(const io::safetensors_file& f, const std::string& prefix = "norm.") {
    constexpr const char* who = "normalizer::load_from";
    std::vector<std::int64_t> sm, ss;
    const std::string nm = prefix + "mean", ns = prefix + "std";
    auto mu = pca_detail::read_float_tensor(f, nm, who, sm);
    check<shape_error>(sm.size() == 1 && sm[0] >= 1, who, ": tensor '", nm, "' in '", f.source, "' has shape ",
                       pca_detail::shape_str(sm), ", expected (n_features,) with n_features >= 1");
    auto sd = pca_detail::read_float_tensor(f, ns, who, ss);
    pca_detail::expect_tensor_shape(f, ns, who, ss, sm, " (the shape of '" + nm + "')");
    for (double x : mu)
      check<value_error>(std::isfinite(x), who, ": tensor '", nm, "' in '", f.source, "' has a non-finite value ", x);
    for (double x : sd)
      check<value_error>(std::isfinite(x) && x > 0, who, ": tensor '", ns, "' in '", f.source,
                         "' has the value ", x, "; every std must be finite and > 0");
    mean = std::move(mu);
    stddev = std::move(sd);
  }

 private:
  void require_fitted(const char* who) const { check(fitted(), who, ": the normalizer is not fitted (call fit or load_from)"); }
  index_t rows(std::size_t size, const char* who) const {
    require_fitted(who);
    check<shape_error>(size % mean.size() == 0, who, ": ", size, " values are not a whole number of rows of n_features = ",
                       mean.size());
    return index_t(size / mean.size());
  }
};

}  // namespace genlm
