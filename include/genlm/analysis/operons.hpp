// genlm/analysis/operons.hpp - operon prediction from gLM's attention (the paper's analysis).
//
// Features: for every pair of adjacent genes (i, i+1) of a contig, the attention weight from i to
// i+1 and from i+1 to i in every layer and head (2 x layers x heads numbers; pairs covered by
// several overlapping windows average over them). Classifier: L2 logistic regression on the
// standardised features, C chosen by inner cross-validation. Evaluation: grouped k-fold over
// blocks of the genome (a block's pairs are never split between training and test), giving a
// held-out probability for every labelled pair; reported with ROC AUC, average precision and
// precision / recall / F1 at 0.5, next to a strand-only baseline (same strand = operon) and the AUC
// among same-strand pairs only (where strand tells nothing).
//
// Labels: ground truth from the simulator (simulated_data::operon_labels), a user table of pairs
// (read_pair_labels), or the coordinate proxy distance_operon_labels (same strand and intergenic
// distance < 50 bp). The proxy uses distances, which gLM never sees; it stands in for an operon
// database and is a label, not a feature.
#pragma once
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <genlm/analysis/logistic.hpp>
#include <genlm/analysis/metrics.hpp>
#include <genlm/data/genome.hpp>
#include <genlm/model/inference.hpp>

namespace genlm::analysis {

/// Adjacent genes (index, index + 1) of a source contig.
struct gene_pair {
  std::string contig;     ///< source contig id
  std::size_t contig_no = 0;  ///< order of first appearance of the contig among the windows
  std::size_t index = 0;  ///< position of the first gene in the contig
  index_t protein_a = 0, protein_b = 0;  ///< protein rows (ids: protein_embeddings::ids())
  int strand_a = 1, strand_b = 1;
};

/// Attention features of adjacent gene pairs. Column l*H + h: attention of gene i to gene i+1 in
/// layer l, head h; column (layers + l)*H + h: attention of gene i+1 to gene i.
struct pair_features {
  std::vector<gene_pair> pairs;
  dmatrix x;
  index_t layers = 0, heads = 0;
  index_t uncovered = 0;  ///< adjacent pairs no window holds (windows without overlap)

  /// "layer 1 head 2 i->i+1" (1-based).
  std::string column_name(index_t j) const {
    const bool back = j >= layers * heads;
    const index_t k = back ? j - layers * heads : j;
    return "layer " + std::to_string(k / heads + 1) + " head " + std::to_string(k % heads + 1) +
           (back ? " i+1->i" : " i->i+1");
  }
  /// Row of the pair starting at gene `index` of `contig`; -1 when absent.
  index_t find(const std::string& contig, std::size_t index) const {
    auto it = lookup_.find({contig, index});
    return it == lookup_.end() ? -1 : it->second;
  }
  void index_pairs() {
    lookup_.clear();
    for (std::size_t i = 0; i < pairs.size(); ++i) lookup_[{pairs[i].contig, pairs[i].index}] = index_t(i);
  }

 private:
  std::map<std::pair<std::string, std::size_t>, index_t> lookup_;
};

/// Runs the model (no masking, no dropout) over the windows and collects the attention features
/// of every adjacent pair that some window holds. Windows must overlap by >= 1 gene for pairs at
/// window boundaries to be covered (the others are counted in `uncovered`).
template <class Model>
pair_features attention_pair_features(Model& model, const gene_features& feat, const std::vector<gene_window>& windows,
                                      index_t batch_size = 16,
                                      const std::function<void(std::size_t)>& on_batch = {}) {
  check<value_error>(!windows.empty(), "attention_pair_features: no windows");
  check<value_error>(batch_size >= 1, "attention_pair_features: batch_size = ", batch_size, ", expected >= 1");
  const index_t NL = index_t(Model::num_layers()), H = Model::config.heads;
  struct acc {
    std::vector<double> sum;
    int count = 0;
    gene_pair pair;
  };
  std::map<std::string, std::size_t> contig_no;
  std::map<std::pair<std::size_t, std::size_t>, acc> sums;  // (contig no, index) -> sums
  std::map<std::string, std::size_t> sizes;
  attention_callback cb = [&](const gene_window& w, std::size_t layer, const std::vector<float>& p, index_t heads,
                              index_t L) {
    const auto [cit, fresh] = contig_no.emplace(w.source_id, contig_no.size());
    (void)fresh;
    sizes[w.source_id] = w.source_size;
    for (index_t l = 0; l + 1 < L; ++l) {
      acc& a = sums[{cit->second, w.offset + std::size_t(l)}];
      if (a.sum.empty()) {
        a.sum.assign(std::size_t(2 * NL * H), 0.0);
        const gene_ref& ga = w.genes[std::size_t(l)];
        const gene_ref& gb = w.genes[std::size_t(l + 1)];
        a.pair = {w.source_id, cit->second, w.offset + std::size_t(l), ga.protein, gb.protein, ga.strand, gb.strand};
      }
      for (index_t h = 0; h < heads; ++h) {
        a.sum[std::size_t(index_t(layer) * H + h)] += p[std::size_t((h * L + l) * L + l + 1)];
        a.sum[std::size_t((NL + index_t(layer)) * H + h)] += p[std::size_t((h * L + l + 1) * L + l)];
      }
      if (layer == 0) ++a.count;
    }
  };
  embed_windows(model, feat, windows, batch_size, cb, on_batch);
  pair_features out;
  out.layers = NL;
  out.heads = H;
  out.x = dmatrix(index_t(sums.size()), 2 * NL * H);
  index_t r = 0;
  for (auto& [key, a] : sums) {
    for (index_t j = 0; j < 2 * NL * H; ++j) out.x(r, j) = a.sum[std::size_t(j)] / double(a.count);
    out.pairs.push_back(a.pair);
    ++r;
  }
  index_t total = 0;
  for (const auto& [id, n] : sizes) total += n > 0 ? index_t(n) - 1 : 0;
  out.uncovered = total - index_t(out.pairs.size());
  out.index_pairs();
  return out;
}

/// Attention probabilities of every layer of one window: (layers, heads, L, L) row-major.
template <class Model>
std::vector<float> window_attention(Model& model, const gene_features& feat, const gene_window& window) {
  std::vector<float> out;
  attention_callback cb = [&](const gene_window&, std::size_t, const std::vector<float>& p, index_t, index_t) {
    out.insert(out.end(), p.begin(), p.end());
  };
  gene_window alone = window;  // on its own: embed_windows insists that a source contig is covered
  alone.offset = 0;
  alone.source_size = alone.genes.size();
  embed_windows(model, feat, std::vector<gene_window>{alone}, 1, cb);
  return out;
}

/// Intergenic distance in bp between adjacent genes a and b (b after a): b.start - a.end - 1
/// (negative when they overlap).
inline std::int64_t intergenic_distance(const gene& a, const gene& b) { return b.start - a.end - 1; }

/// Operon proxy labels of the adjacent pairs (i, i+1) of a contig: 1 when both genes are on the
/// same strand and their intergenic distance is below max_gap bp, else 0. A proxy for an operon
/// database (distance is not a gLM input); see the header comment.
inline std::vector<int> distance_operon_labels(const contig& c, std::int64_t max_gap = 50) {
  std::vector<int> out;
  for (std::size_t i = 0; i + 1 < c.genes.size(); ++i)
    out.push_back(c.genes[i].strand == c.genes[i + 1].strand &&
                          intergenic_distance(c.genes[i], c.genes[i + 1]) < max_gap
                      ? 1
                      : 0);
  return out;
}

/// Labelled gene pairs from a table: gene_a<TAB>gene_b<TAB>label (1 = same operon, 0 = not);
/// '#' lines and blank lines are skipped, and a first line whose label is not 0/1 is a header. The
/// map holds both orders (a, b) and (b, a). format_error naming file:line for malformed lines or
/// conflicting duplicates.
inline std::map<std::pair<std::string, std::string>, int> read_pair_labels(std::istream& in,
                                                                           const std::string& source = "<stream>") {
  using namespace data_detail;
  line_reader lines(in, source);
  std::map<std::pair<std::string, std::string>, int> out;
  std::string line;
  bool first = true;
  while (lines.next(line)) {
    const std::string_view l = trim(line);
    if (l.empty() || l.front() == '#') continue;
    auto f = split(l, '\t');
    if (f.size() != 3)
      fail_format(source, lines.line(), "pair line", l, "3 tab-separated columns: gene_a, gene_b, label (0 or 1)");
    const std::string a(trim(f[0])), b(trim(f[1]));
    const std::string_view lab = trim(f[2]);
    if (lab != "0" && lab != "1") {
      if (first) {  // a header
        first = false;
        continue;
      }
      fail_format(source, lines.line(), "label (column 3)", lab, "0 or 1");
    }
    first = false;
    if (a.empty() || b.empty() || a == b) fail_format(source, lines.line(), "gene ids", l, "two different gene ids");
    const int v = lab == "1" ? 1 : 0;
    for (const auto& key : {std::make_pair(a, b), std::make_pair(b, a)}) {
      auto [it, fresh] = out.emplace(key, v);
      if (!fresh && it->second != v)
        fail_format(source, lines.line(), "label of pair " + a + "/" + b, lab,
                    "the same label as an earlier line (" + std::to_string(it->second) + ")");
    }
  }
  check<format_error>(!out.empty(), source,
                      ": no labelled gene pairs (a first line whose label is not 0 or 1 is read as a header)");
  return out;
}

inline std::map<std::pair<std::string, std::string>, int> read_pair_labels(const std::filesystem::path& path) {
  auto in = data_detail::open_input(path);
  return read_pair_labels(in, path.string());
}

struct operon_options {
  int folds = 5;        ///< outer folds: a held-out probability for every labelled pair
  int inner_folds = 3;  ///< folds of the choice of C within each training part
  std::vector<double> Cs = default_c_grid();
  std::size_t block = 30;  ///< genes per genome block; folds never split a block
};

struct operon_evaluation {
  std::vector<index_t> rows;        ///< rows of the pair features that were labelled (evaluated)
  std::vector<int> labels;          ///< their labels
  std::vector<double> probability;  ///< held-out P(same operon) of each evaluated pair
  std::vector<double> chosen_C;     ///< C chosen in each outer fold
  index_t positives = 0, negatives = 0;
  double auc = 0, average_precision = 0;
  binary_report at_half;                ///< decisions at probability 0.5
  double strand_auc = 0;                ///< strand-only baseline (same strand scores 1)
  double strand_average_precision = 0;
  binary_report strand_report;          ///< the baseline's decisions (same strand = operon)
  double same_strand_auc = std::numeric_limits<double>::quiet_NaN();  ///< model AUC among same-strand pairs
  index_t same_strand_pairs = 0;
  std::vector<double> feature_auc;  ///< AUC of each attention feature alone
  // the model refitted on all labelled pairs (C by cross-validation), for unlabelled pairs
  standard_scaler scaler;
  binary_logistic model;
  double final_C = 1.0;

  /// P(same operon) of every pair of `f`: held-out values for the evaluated pairs, the final
  /// model's for the others. `held_out[i]` says which.
  std::vector<double> all_probabilities(const pair_features& f, std::vector<bool>* held_out = nullptr) const {
    std::vector<double> p = model.predict_proba(scaler.transform(f.x));
    if (held_out) held_out->assign(p.size(), false);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      p[std::size_t(rows[i])] = probability[i];
      if (held_out) (*held_out)[std::size_t(rows[i])] = true;
    }
    return p;
  }
};

/// Cross-validated operon prediction from the pair features; labels[i] is the label of pair i
/// (1 / 0, or -1 = unlabelled, left out). value_error for mismatched sizes, fewer than 2 pairs of
/// either class, or too few genome blocks for the folds.
inline operon_evaluation evaluate_operons(const pair_features& f, const std::vector<int>& labels,
                                          const operon_options& o = {}) {
  check<shape_error>(labels.size() == f.pairs.size() && f.x.rows == index_t(f.pairs.size()), "evaluate_operons: ",
                     labels.size(), " labels for ", f.pairs.size(), " gene pairs");
  check<value_error>(o.block >= 1, "evaluate_operons: block must be >= 1");
  operon_evaluation ev;
  std::vector<index_t> groups;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    check<value_error>(labels[i] >= -1 && labels[i] <= 1, "evaluate_operons: label of pair ", i, " is ", labels[i],
                       ", expected 1, 0 or -1 (unlabelled)");
    if (labels[i] < 0) continue;
    ev.rows.push_back(index_t(i));
    ev.labels.push_back(labels[i]);
    (labels[i] ? ev.positives : ev.negatives) += 1;
    groups.push_back(index_t(f.pairs[i].contig_no) * 1000003 + index_t(f.pairs[i].index / o.block));
  }
  check<value_error>(ev.positives >= 2 && ev.negatives >= 2, "evaluate_operons: need at least 2 operon pairs and 2 "
                     "non-operon pairs, got ", ev.positives, " and ", ev.negatives);
  const dmatrix X = take_rows(f.x, ev.rows);
  const std::set<index_t> blocks(groups.begin(), groups.end());
  check<value_error>(index_t(blocks.size()) >= o.folds, "evaluate_operons: the ", ev.rows.size(),
                     " labelled pairs lie in ", blocks.size(), " genome block(s) of ", o.block, " genes, fewer than the ",
                     o.folds, " folds; use fewer folds, smaller blocks or more data");
  const auto folds = group_folds(groups, o.folds);
  ev.probability.assign(ev.rows.size(), 0.0);
  std::vector<index_t> tr, te;
  for (int k = 0; k < o.folds; ++k) {
    fold_split(folds, k, tr, te);
    const dmatrix Xtr = take_rows(X, tr);
    const auto ytr = take(ev.labels, tr);
    std::vector<index_t> gtr = take(groups, tr);
    const double C = choose_c_binary(Xtr, ytr, group_folds(gtr, o.inner_folds), o.Cs).best_C;
    ev.chosen_C.push_back(C);
    standard_scaler sc;
    sc.fit(Xtr);
    binary_logistic m;
    logistic_options lo;
    lo.C = C;
    m.fit(sc.transform(Xtr), ytr, lo);
    const auto p = m.predict_proba(sc.transform(take_rows(X, te)));
    for (std::size_t i = 0; i < te.size(); ++i) ev.probability[std::size_t(te[i])] = p[i];
  }
  ev.auc = roc_auc(ev.probability, ev.labels);
  ev.average_precision = average_precision(ev.probability, ev.labels);
  ev.at_half = binary_metrics(ev.probability, ev.labels, 0.5);
  std::vector<double> same(ev.rows.size());
  std::vector<double> ps;
  std::vector<int> ys;
  for (std::size_t i = 0; i < ev.rows.size(); ++i) {
    const auto& pr = f.pairs[std::size_t(ev.rows[i])];
    same[i] = pr.strand_a == pr.strand_b ? 1.0 : 0.0;
    if (same[i] > 0) ps.push_back(ev.probability[i]), ys.push_back(ev.labels[i]);
  }
  ev.strand_auc = roc_auc(same, ev.labels);
  ev.strand_report = binary_metrics(same, ev.labels, 0.5);
  ev.strand_average_precision = average_precision(same, ev.labels);
  ev.same_strand_pairs = index_t(ys.size());
  const index_t sp = std::accumulate(ys.begin(), ys.end(), index_t(0));
  if (sp > 0 && sp < index_t(ys.size())) ev.same_strand_auc = roc_auc(ps, ys);
  for (index_t j = 0; j < X.cols; ++j) {
    std::vector<double> col(std::size_t(X.rows));
    for (index_t i = 0; i < X.rows; ++i) col[std::size_t(i)] = X(i, j);
    ev.feature_auc.push_back(roc_auc(col, ev.labels));
  }
  ev.final_C = choose_c_binary(X, ev.labels, group_folds(groups, o.inner_folds), o.Cs).best_C;
  ev.scaler.fit(X);
  logistic_options lo;
  lo.C = ev.final_C;
  ev.model.fit(ev.scaler.transform(X), ev.labels, lo);
  return ev;
}

}  // namespace genlm::analysis
