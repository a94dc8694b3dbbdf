// genlm/analysis/probe.hpp - linear probes of gene representations (the paper's enzyme-function
// analysis): a multinomial L2 logistic regression predicts a gene's class (an EC class, or a
// simulated function) from a representation - gLM's contextualised embedding (last hidden state)
// or the input protein features - with the same folds for every representation.
//
// Splits are by genome position: samples carry a group (a block of the genome, e.g. the model
// window the gene was embedded in) and folds never split a group, so no window is shared between
// training and test genes. Every sample gets a held-out prediction (k-fold); C is chosen by inner
// cross-validation on each training part; features are standardised on the training part.
#pragma once
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <genlm/analysis/logistic.hpp>
#include <genlm/analysis/metrics.hpp>
#include <genlm/train/pca.hpp>

namespace genlm::analysis {

/// The class of an EC number at `level` (1..4): "2.7.1.15" -> "2" (level 1), "2.7" (level 2).
/// Returns "" when the number is not specific down to that level ("2.-.-.-" at level 2) or is
/// malformed (non-numeric fields; EC numbers like "3.1.1.n2" are fine above level 4).
inline std::string ec_class(const std::string& ec, int level) {
  check<value_error>(level >= 1 && level <= 4, "ec_class: level must be 1..4, got ", level);
  std::string out;
  std::size_t pos = 0;
  for (int l = 0; l < level; ++l) {
    const std::size_t dot = ec.find('.', pos);
    const std::string field = ec.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (field.empty() || !std::all_of(field.begin(), field.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return "";
    out += (l ? "." : "") + field;
    if (dot == std::string::npos) {
      if (l + 1 < level) return "";
      break;
    }
    pos = dot + 1;
  }
  return out;
}

/// Class names and integer labels: classes with fewer than min_count samples are dropped
/// (label -1, like samples without a class ""), the rest are numbered in name order.
struct class_labels {
  std::vector<std::string> names;
  std::vector<int> y;           ///< per sample, -1 = not used
  std::vector<std::string> dropped;  ///< rare classes left out
};

inline class_labels encode_classes(const std::vector<std::string>& raw, index_t min_count = 1) {
  std::map<std::string, index_t> count;
  for (const auto& r : raw)
    if (!r.empty()) ++count[r];
  class_labels out;
  std::map<std::string, int> code;
  for (const auto& [name, n] : count) {
    if (n >= min_count) {
      code[name] = int(out.names.size());
      out.names.push_back(name);
    } else {
      out.dropped.push_back(name);
    }
  }
  out.y.reserve(raw.size());
  for (const auto& r : raw) {
    auto it = code.find(r);
    out.y.push_back(it == code.end() ? -1 : it->second);
  }
  return out;
}

struct probe_options {
  int folds = 5;
  int inner_folds = 3;
  std::vector<double> Cs = {1e-2, 1e-1, 1.0, 10.0};
};

struct probe_result {
  classification_report report;  ///< of the held-out predictions of every sample
  std::vector<int> y_true, y_pred;
  std::vector<double> chosen_C;  ///< per fold
  double majority_accuracy = 0;  ///< predicting each fold's most frequent training class
};

/// k-fold probe: X (n x d), labels y in 0..n_classes-1 (samples with y = -1 are left out),
/// groups per sample (folds keep groups together). value_error for empty input, mismatched sizes,
/// fewer than two classes, or too few groups for the folds.
inline probe_result linear_probe(const dmatrix& X, const std::vector<int>& y, index_t n_classes,
                                 const std::vector<index_t>& groups, const probe_options& o = {}) {
  check<value_error>(X.rows > 0 && X.cols > 0, "linear_probe: empty data (", X.rows, " samples x ", X.cols,
                     " features)");
  check<shape_error>(index_t(y.size()) == X.rows && index_t(groups.size()) == X.rows, "linear_probe: ", X.rows,
                     " samples but ", y.size(), " labels and ", groups.size(), " groups");
  check<value_error>(n_classes >= 2, "linear_probe: need at least 2 classes, got ", n_classes);
  std::vector<index_t> keep;
  for (std::size_t i = 0; i < y.size(); ++i) {
    check<value_error>(y[i] >= -1 && y[i] < n_classes, "linear_probe: label of sample ", i, " is ", y[i],
                       ", expected -1 (unused) or 0..", n_classes - 1);
    if (y[i] >= 0) keep.push_back(index_t(i));
  }
  check<value_error>(!keep.empty(), "linear_probe: no labelled samples");
  const dmatrix Xk = take_rows(X, keep);
  const auto yk = take(y, keep);
  const auto gk = take(groups, keep);
  const std::set<index_t> blocks(gk.begin(), gk.end());
  check<value_error>(index_t(blocks.size()) >= o.folds, "linear_probe: the ", keep.size(), " labelled samples lie in ",
                     blocks.size(), " group(s) (genome blocks), fewer than the ", o.folds,
                     " folds; use fewer folds or more data");
  const auto folds = group_folds(gk, o.folds);
  probe_result r;
  r.y_true = yk;
  r.y_pred.assign(yk.size(), 0);
  std::vector<index_t> tr, te;
  index_t majority_hits = 0;
  for (int k = 0; k < o.folds; ++k) {
    fold_split(folds, k, tr, te);
    const dmatrix Xtr = take_rows(Xk, tr);
    const auto ytr = take(yk, tr);
    std::vector<index_t> cnt(std::size_t(n_classes), 0);
    for (int v : ytr) ++cnt[std::size_t(v)];
    check<value_error>(std::count_if(cnt.begin(), cnt.end(), [](index_t c) { return c > 0; }) >= 2,
                       "linear_probe: the training part of fold ", k + 1, " holds a single class");
    const int majority = int(std::max_element(cnt.begin(), cnt.end()) - cnt.begin());
    if (o.Cs.size() > 1) {
      const auto gtr = take(gk, tr);
      const std::size_t groups_tr = std::set<index_t>(gtr.begin(), gtr.end()).size();
      check<value_error>(index_t(groups_tr) >= o.inner_folds, "linear_probe: the training part of fold ", k + 1,
                         " of ", o.folds, " lies in ", groups_tr, " group(s) (genome blocks), fewer than the ",
                         o.inner_folds, " inner folds that choose C; use more data (or more outer folds)");
    }
    const double C = o.Cs.size() == 1 ? o.Cs[0]
                                      : choose_c_multinomial(Xtr, ytr, n_classes,
                                                             group_folds(take(gk, tr), o.inner_folds), o.Cs)
                                            .best_C;
    r.chosen_C.push_back(C);
    standard_scaler sc;
    sc.fit(Xtr);
    multinomial_logistic m;
    logistic_options lo;
    lo.C = C;
    lo.tol = 1e-6;
    m.fit(sc.transform(Xtr), ytr, n_classes, lo);
    const auto pred = m.predict(sc.transform(take_rows(Xk, te)));
    for (std::size_t i = 0; i < te.size(); ++i) {
      r.y_pred[std::size_t(te[i])] = pred[i];
      majority_hits += yk[std::size_t(te[i])] == majority;
    }
  }
  r.report = classify_report(r.y_true, r.y_pred, int(n_classes));
  r.majority_accuracy = double(majority_hits) / double(yk.size());
  return r;
}

/// The first two principal components of X (n x 2, row-major), for embedding maps.
inline std::vector<double> pca_2d(const dmatrix& X) {
  check<value_error>(X.rows >= 2 && X.cols >= 2, "pca_2d: need at least 2 samples x 2 features, got ", X.rows, " x ",
                     X.cols);
  pca<double> p;
  p.fit(X.v.data(), X.rows, X.cols, 2);
  std::vector<double> out(std::size_t(X.rows * 2));
  p.transform(X.v.data(), X.rows, out.data());
  return out;
}

}  // namespace genlm::analysis
