// genlm/analysis/metrics.hpp - classification metrics of the downstream analyses, defined as in
// scikit-learn: ROC AUC (rank based, ties count one half: roc_auc_score), average precision,
// precision / recall / F1 per class (zero_division = 0), accuracy, macro and weighted F1.
#pragma once
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include <genlm/core/error.hpp>
#include <genlm/core/tensor.hpp>

namespace genlm::analysis {

namespace metrics_detail {
inline void check_binary(const std::vector<double>& score, const std::vector<int>& y, const char* who,
                         index_t& pos, index_t& neg) {
  check<value_error>(!y.empty(), who, ": no samples");
  check<shape_error>(score.size() == y.size(), who, ": ", score.size(), " scores for ", y.size(), " labels");
  pos = neg = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    check<value_error>(y[i] == 0 || y[i] == 1, who, ": label of sample ", i, " is ", y[i], ", expected 0 or 1");
    check<value_error>(!std::isnan(score[i]), who, ": score of sample ", i, " is NaN");
    (y[i] ? pos : neg) += 1;
  }
  check<value_error>(pos > 0 && neg > 0, who, ": only one class present (", pos, " positives, ", neg,
                     " negatives); the metric is undefined");
}
}  // namespace metrics_detail

/// Area under the ROC curve of scores for labels 0/1 (the Mann-Whitney statistic with average
/// ranks for ties; equals sklearn.metrics.roc_auc_score). value_error for a single class.
inline double roc_auc(const std::vector<double>& score, const std::vector<int>& y) {
  index_t pos = 0, neg = 0;
  metrics_detail::check_binary(score, y, "roc_auc", pos, neg);
  std::vector<std::size_t> order(y.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return score[a] < score[b]; });
  double rank_sum = 0;  // sum of (1-based, tie-averaged) ranks of the positives
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j < order.size() && score[order[j]] == score[order[i]]) ++j;
    const double avg = 0.5 * double(i + 1 + j);  // mean of ranks i+1..j
    for (std::size_t k = i; k < j; ++k)
      if (y[order[k]]) rank_sum += avg;
    i = j;
  }
  return (rank_sum - 0.5 * double(pos) * double(pos + 1)) / (double(pos) * double(neg));
}

/// Average precision (sklearn.metrics.average_precision_score: sum over thresholds of
/// (R_n - R_{n-1}) P_n, tied scores forming one threshold).
inline double average_precision(const std::vector<double>& score, const std::vector<int>& y) {
  index_t pos = 0, neg = 0;
  metrics_detail::check_binary(score, y, "average_precision", pos, neg);
  std::vector<std::size_t> order(y.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return score[a] > score[b]; });
  double ap = 0, tp = 0, fp = 0, prev_recall = 0;
  for (std::size_t i = 0; i < order.size();) {
    std::size_t j = i;
    while (j < order.size() && score[order[j]] == score[order[i]]) {
      (y[order[j]] ? tp : fp) += 1;
      ++j;
    }
    const double recall = tp / double(pos), precision = tp / (tp + fp);
    ap += (recall - prev_recall) * precision;
    prev_recall = recall;
    i = j;
  }
  return ap;
}

/// Precision, recall and F1 of one class (sklearn's zero_division = 0).
struct class_metrics {
  int label = 0;
  double precision = 0, recall = 0, f1 = 0;
  index_t support = 0;    ///< true samples of the class
  index_t predicted = 0;  ///< samples predicted as the class
};

struct classification_report {
  index_t samples = 0;
  double accuracy = 0;
  double macro_f1 = 0;     ///< unweighted mean over all n_classes (sklearn average="macro", labels=0..K-1)
  double weighted_f1 = 0;  ///< mean weighted by support
  std::vector<class_metrics> per_class;  ///< one per label 0..n_classes-1
};

/// Per-class precision / recall / F1 and accuracy of predictions y_pred against y_true (labels in
/// 0..n_classes-1). Classes without true samples get recall 0 (and F1 0), as in sklearn.
inline classification_report classify_report(const std::vector<int>& y_true, const std::vector<int>& y_pred,
                                             int n_classes) {
  check<value_error>(!y_true.empty(), "classify_report: no samples");
  check<shape_error>(y_true.size() == y_pred.size(), "classify_report: ", y_true.size(), " true labels but ",
                     y_pred.size(), " predictions");
  check<value_error>(n_classes >= 1, "classify_report: n_classes must be >= 1, got ", n_classes);
  std::vector<index_t> tp(std::size_t(n_classes), 0), sup(std::size_t(n_classes), 0), pred(std::size_t(n_classes), 0);
  index_t correct = 0;
  for (std::size_t i = 0; i < y_true.size(); ++i) {
    check<value_error>(y_true[i] >= 0 && y_true[i] < n_classes && y_pred[i] >= 0 && y_pred[i] < n_classes,
                       "classify_report: sample ", i, " has labels (true ", y_true[i], ", predicted ", y_pred[i],
                       "), expected 0..", n_classes - 1);
    ++sup[std::size_t(y_true[i])];
    ++pred[std::size_t(y_pred[i])];
    if (y_true[i] == y_pred[i]) ++tp[std::size_t(y_true[i])], ++correct;
  }
  classification_report r;
  r.samples = index_t(y_true.size());
  r.accuracy = double(correct) / double(y_true.size());
  for (int c = 0; c < n_classes; ++c) {
    class_metrics m;
    m.label = c;
    m.support = sup[std::size_t(c)];
    m.predicted = pred[std::size_t(c)];
    const double t = double(tp[std::size_t(c)]);
    m.precision = m.predicted ? t / double(m.predicted) : 0.0;
    m.recall = m.support ? t / double(m.support) : 0.0;
    m.f1 = (m.precision + m.recall) > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
    r.macro_f1 += m.f1;
    r.weighted_f1 += m.f1 * double(m.support);
    r.per_class.push_back(m);
  }
  r.macro_f1 /= double(n_classes);
  r.weighted_f1 /= double(y_true.size());
  return r;
}

/// Precision / recall / F1 / accuracy of binary decisions score >= threshold.
struct binary_report {
  index_t tp = 0, fp = 0, fn = 0, tn = 0;
  double precision = 0, recall = 0, f1 = 0, accuracy = 0;
};

inline binary_report binary_metrics(const std::vector<double>& score, const std::vector<int>& y,
                                    double threshold = 0.5) {
  check<value_error>(!y.empty(), "binary_metrics: no samples");
  check<shape_error>(score.size() == y.size(), "binary_metrics: ", score.size(), " scores for ", y.size(), " labels");
  binary_report r;
  for (std::size_t i = 0; i < y.size(); ++i) {
    check<value_error>(y[i] == 0 || y[i] == 1, "binary_metrics: label of sample ", i, " is ", y[i],
                       ", expected 0 or 1");
    const bool p = score[i] >= threshold;
    if (p && y[i]) ++r.tp;
    else if (p) ++r.fp;
    else if (y[i]) ++r.fn;
    else ++r.tn;
  }
  r.precision = r.tp + r.fp ? double(r.tp) / double(r.tp + r.fp) : 0.0;
  r.recall = r.tp + r.fn ? double(r.tp) / double(r.tp + r.fn) : 0.0;
  r.f1 = r.precision + r.recall > 0 ? 2 * r.precision * r.recall / (r.precision + r.recall) : 0.0;
  r.accuracy = double(r.tp + r.tn) / double(y.size());
  return r;
}

}  // namespace genlm::analysis
