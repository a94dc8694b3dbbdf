// Parts of the downstream analyses that need no training: EC classes, label tables, operon proxy
// labels, the simulator's ground truth, attention pair features of an (untrained) model, the SVG
// pictures, and clear errors for bad input.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>

#include <genlm/analysis/operons.hpp>
#include <genlm/analysis/paralogs.hpp>
#include <genlm/analysis/plot.hpp>
#include <genlm/analysis/probe.hpp>
#include <genlm/data/genbank.hpp>
#include <genlm/data/simulate.hpp>
#include <genlm/train/trainer.hpp>

#ifndef GENLM_FIXTURE_DIR
#define GENLM_FIXTURE_DIR "tests/fixtures"
#endif

using namespace genlm;
using namespace genlm::analysis;

TEST_CASE("EC classes and class encoding", "[analysis][probe]") {
  CHECK(ec_class("2.7.1.15", 1) == "2");
  CHECK(ec_class("2.7.1.15", 2) == "2.7");
  CHECK(ec_class("2.7.1.15", 4) == "2.7.1.15");
  CHECK(ec_class("2.7.-.-", 2) == "2.7");
  CHECK(ec_class("2.-.-.-", 2) == "");
  CHECK(ec_class("3.1.1.n2", 3) == "3.1.1");
  CHECK(ec_class("3.1.1.n2", 4) == "");
  CHECK(ec_class("", 1) == "");
  CHECK(ec_class("1.1", 3) == "");
  CHECK_THROWS_AS(ec_class("1.1.1.1", 0), value_error);

  const auto cl = encode_classes({"2", "", "3", "2", "1", "3", "2"}, 2);
  CHECK(cl.names == std::vector<std::string>{"2", "3"});
  CHECK(cl.y == std::vector<int>{0, -1, 1, 0, -1, 1, 0});
  CHECK(cl.dropped == std::vector<std::string>{"1"});
}

TEST_CASE("operon labels: coordinate proxy and label tables", "[analysis][operons]") {
  const auto genome = read_genbank(std::string(GENLM_FIXTURE_DIR) + "/data/ecoli_excerpt.gbk");
  REQUIRE(genome.size() == 1);
  const auto& c = genome[0];
  const auto lab = distance_operon_labels(c, 50);
  REQUIRE(lab.size() == c.genes.size() - 1);
  for (std::size_t i = 0; i < lab.size(); ++i) {
    const bool same = c.genes[i].strand == c.genes[i + 1].strand;
    CHECK(lab[i] == (same && c.genes[i + 1].start - c.genes[i].end - 1 < 50 ? 1 : 0));
  }
  // thrL-thrA: 81 bp apart (leader peptide); thrA-thrB-thrC: the thr operon (gaps 1 and 0 bp)
  CHECK(lab[0] == 0);
  CHECK(lab[1] == 1);
  CHECK(lab[2] == 1);
  CHECK(intergenic_distance(c.genes[1], c.genes[2]) == 1);

  std::istringstream t("gene_a\tgene_b\tlabel\n# comment\nb0002\tb0003\t1\n\nb0004\tb0005\t0\r\n");
  const auto m = read_pair_labels(t, "pairs.tsv");
  CHECK(m.size() == 4);
  CHECK(m.at({"b0003", "b0002"}) == 1);
  CHECK(m.at({"b0004", "b0005"}) == 0);
  std::istringstream bad1("a\tb\t1\nc\td\tyes\n");
  CHECK_THROWS_AS(read_pair_labels(bad1, "pairs.tsv"), format_error);
  std::istringstream bad1b("a\tb\t1\nc\td\tyes\n");
  CHECK_THROWS_WITH(read_pair_labels(bad1b, "pairs.tsv"), Catch::Contains("pairs.tsv:2") && Catch::Contains("0 or 1"));
  std::istringstream bad2("a\tb\n");
  CHECK_THROWS_WITH(read_pair_labels(bad2, "p.tsv"), Catch::Contains("p.tsv:1") && Catch::Contains("3 tab-separated"));
  std::istringstream bad3("a\tb\t1\nb\ta\t0\n");
  CHECK_THROWS_WITH(read_pair_labels(bad3, "p.tsv"), Catch::Contains("p.tsv:2") && Catch::Contains("earlier line"));
  std::istringstream empty("# nothing\n");
  CHECK_THROWS_WITH(read_pair_labels(empty, "p.tsv"), Catch::Contains("no labelled gene pairs"));
}

TEST_CASE("simulator extensions: ground truth of modules, functions and paralog pairs", "[analysis][simulate]") {
  simulation_options so;
  so.dim = 16;
  so.contigs = 60;
  so.families = 20;
  so.modules = 6;
  so.module_family_pool = 5;
  so.function_classes = 3;
  so.paralog_pairs = 4;
  so.paralog_rate = 0.2;
  so.seed = 5;
  const auto s = simulate_contigs(so);
  const std::size_t n = std::size_t(s.proteins.size());
  REQUIRE(s.instance_of.size() == n);
  REQUIRE(s.function_of.size() == n);
  REQUIRE(s.paralog_of.size() == n);
  REQUIRE(s.paralog_role.size() == n);
  for (const auto& fams : s.module_families)
    for (index_t f : fams) CHECK(f < 5);  // module families come from the pool
  std::set<index_t> pairs_seen;
  index_t pair_genes = 0;
  for (std::size_t c = 0; c < s.contigs.size(); ++c) {
    const auto& g = s.contigs[c].genes;
    const auto lab = s.operon_labels(c);
    REQUIRE(lab.size() + 1 == g.size());
    for (std::size_t i = 0; i < g.size(); ++i) {
      const auto r = std::size_t(s.row(g[i].first));
      if (s.module_of[r] >= 0) CHECK(s.function_of[r] == s.module_of[r] % 3);
      if (s.module_of[r] < 0) CHECK(s.function_of[r] == -1);
      if (s.paralog_role[r] == 0) {
        ++pair_genes;
        pairs_seen.insert(s.paralog_of[r]);
        CHECK(s.family_of[r] == so.families + 2 * s.paralog_of[r]);
        // the partner B_i is adjacent, on the same strand, downstream in transcription order
        const std::size_t j = g[i].second > 0 ? i + 1 : i - 1;
        REQUIRE(j < g.size());
        const auto rb = std::size_t(s.row(g[j].first));
        CHECK(s.paralog_role[rb] == 1);
        CHECK(s.paralog_of[rb] == s.paralog_of[r]);
        CHECK(g[j].second == g[i].second);
        CHECK(lab[std::min(i, j)] == 1);
      }
    }
    for (std::size_t i = 0; i + 1 < g.size(); ++i) {
      const auto a = std::size_t(s.row(g[i].first)), b = std::size_t(s.row(g[i + 1].first));
      if (lab[i]) {
        CHECK(g[i].second == g[i + 1].second);  // an operon lies on one strand
        CHECK(s.instance_of[a] == s.instance_of[b]);
      }
    }
  }
  CHECK(pairs_seen.size() == 4);
  CHECK(pair_genes > 20);
  // paralogs are similar: A_i centroids are closer to each other than to other families
  std::vector<std::vector<double>> mean(std::size_t(so.families + 2 * so.paralog_pairs), std::vector<double>(16, 0.0));
  std::vector<int> cnt(mean.size(), 0);
  for (std::size_t r = 0; r < n; ++r) {
    ++cnt[std::size_t(s.family_of[r])];
    for (int j = 0; j < 16; ++j) mean[std::size_t(s.family_of[r])][std::size_t(j)] += s.proteins.row(index_t(r))[j];
  }
  auto dist = [&](std::size_t a, std::size_t b) {
    double d = 0;
    for (int j = 0; j < 16; ++j) {
      const double e = mean[a][std::size_t(j)] / cnt[a] - mean[b][std::size_t(j)] / cnt[b];
      d += e * e;
    }
    return std::sqrt(d);
  };
  const std::size_t A0 = std::size_t(so.families), A1 = A0 + 2;
  double other = 0;
  int k = 0;
  for (std::size_t f = 0; f < std::size_t(so.families); ++f)
    if (cnt[f]) other += dist(A0, f), ++k;
  CHECK(dist(A0, A1) < 0.6 * other / k);

  SECTION("invalid extension options") {
    simulation_options bad = so;
    bad.module_family_pool = 50;
    CHECK_THROWS_WITH(simulate_contigs(bad), Catch::Contains("module_family_pool"));
    bad = so;
    bad.paralog_rate = 0;
    CHECK_THROWS_WITH(simulate_contigs(bad), Catch::Contains("paralog_rate"));
  }
}

namespace {
using Model = GLM<configs::tiny, cpu>;
struct untrained {
  simulated_data sim;
  feature_pipeline pipe;
  gene_features feat;
  std::vector<contig_window> cw;
  std::vector<gene_window> ws;
  Model model;
  untrained() {
    simulation_options so;
    so.dim = 32;
    so.contigs = 12;
    so.contig_min = 40;
    so.contig_max = 50;
    so.families = 20;
    so.modules = 4;
    so.seed = 3;
    sim = simulate_contigs(so);
    pipe.fit(sim.proteins, configs::tiny.pca_components);
    feat = pipe.features(sim.proteins);
    for (const auto& c : sim.contigs)
      for (auto& w : windows(c, 20, 6)) cw.push_back(w);
    ws = resolve_windows(cw, sim.proteins, "sim");
  }
};
}  // namespace

TEST_CASE("attention pair features cover every adjacent pair of overlapping windows", "[analysis][operons]") {
  untrained u;
  const auto f = attention_pair_features(u.model, u.feat, u.ws, 8);
  std::size_t expected = 0;
  for (const auto& c : u.sim.contigs) expected += c.genes.size() - 1;
  CHECK(f.pairs.size() == expected);
  CHECK(f.uncovered == 0);
  CHECK(f.x.cols == 2 * 2 * 4);
  CHECK(f.column_name(0) == "layer 1 head 1 i->i+1");
  CHECK(f.column_name(15) == "layer 2 head 4 i+1->i");
  for (index_t i = 0; i < f.x.rows; ++i)
    for (index_t j = 0; j < f.x.cols; ++j) {
      REQUIRE(f.x(i, j) >= 0.0);
      REQUIRE(f.x(i, j) <= 1.0);
    }
  // a pair inside one window equals that window's attention entries
  const auto att = window_attention(u.model, u.feat, u.ws[0]);  // (layers, heads, L, L)
  const index_t L = index_t(u.ws[0].genes.size());
  REQUIRE(index_t(att.size()) == 2 * 4 * L * L);
  const index_t r = f.find(u.ws[0].source_id, 2);
  REQUIRE(r >= 0);
  CHECK(f.pairs[std::size_t(r)].protein_a == u.ws[0].genes[2].protein);
  for (index_t layer = 0; layer < 2; ++layer)
    for (index_t h = 0; h < 4; ++h) {
      CHECK(f.x(r, layer * 4 + h) == Approx(att[std::size_t(((layer * 4 + h) * L + 2) * L + 3)]).margin(1e-6));
      CHECK(f.x(r, (2 + layer) * 4 + h) == Approx(att[std::size_t(((layer * 4 + h) * L + 3) * L + 2)]).margin(1e-6));
    }
  // windows without overlap miss the pairs at their boundaries
  std::vector<contig_window> cw0;
  for (const auto& c : u.sim.contigs)
    for (auto& w : windows(c, 20, 0)) cw0.push_back(w);
  const auto f0 = attention_pair_features(u.model, u.feat, resolve_windows(cw0, u.sim.proteins, "sim"), 8);
  CHECK(f0.uncovered > 0);
  CHECK(f0.pairs.size() + std::size_t(f0.uncovered) == expected);

  SECTION("evaluation errors") {
    std::vector<int> labels(f.pairs.size(), 0);
    CHECK_THROWS_WITH(evaluate_operons(f, labels), Catch::Contains("need at least 2 operon pairs"));
    labels.pop_back();
    CHECK_THROWS_AS(evaluate_operons(f, labels), shape_error);
    std::vector<int> few(f.pairs.size(), -1);
    few[0] = few[1] = 1, few[2] = few[3] = 0;
    CHECK_THROWS_WITH(evaluate_operons(f, few), Catch::Contains("1 genome block(s) of 30 genes, fewer than the 5 folds"));
    std::vector<int> wrong(f.pairs.size(), 2);
    CHECK_THROWS_WITH(evaluate_operons(f, wrong), Catch::Contains("expected 1, 0 or -1"));
  }
}

TEST_CASE("paralog matching and probe reject bad input", "[analysis][errors]") {
  untrained u;
  dmatrix cand = candidate_labels(u.feat, {0, 1, 2});
  CHECK(cand.rows == 3);
  CHECK(cand.cols == u.feat.pca_dim);
  CHECK(cand(1, 0) == u.feat.pca[std::size_t(u.feat.pca_dim)]);
  CHECK_THROWS_AS(candidate_labels(u.feat, {u.feat.size()}), lookup_error);
  CHECK_THROWS_WITH(match_paralogs(u.model, u.feat, u.ws, {}, cand), Catch::Contains("no queries"));
  CHECK_THROWS_WITH(match_paralogs(u.model, u.feat, u.ws, {{0, 1, 5}}, cand), Catch::Contains("true candidate 5"));
  CHECK_THROWS_AS(match_paralogs(u.model, u.feat, u.ws, {{0, 1, 0}}, dmatrix(3, 2)), shape_error);
  // features that do not fit the model, and batch sizes below 1
  {
    gene_features other = u.feat;  // 5 PCA components, the model predicts 7
    other.pca_dim = 5;
    other.pca.assign(std::size_t(other.size() * 5), 0.0);
    REQUIRE_THROWS_AS(match_paralogs(u.model, other, u.ws, {{0, 1, 0}}, dmatrix(3, 5)), shape_error);
    REQUIRE_THROWS_WITH(match_paralogs(u.model, other, u.ws, {{0, 1, 0}}, dmatrix(3, 5)),
                        Catch::Contains("pca_dim 5") && Catch::Contains("pca_components 7"));
    REQUIRE_THROWS_WITH(match_paralogs(u.model, other, u.ws, {{0, 1, 0}}, dmatrix(3, 5), 4,
                                       paralog_scoring::nearest_hypothesis),
                        Catch::Contains("pca_dim 5"));
    gene_features short_pca = u.feat;
    short_pca.pca.resize(10);
    REQUIRE_THROWS_AS(candidate_labels(short_pca, {0}), shape_error);
    REQUIRE_THROWS_WITH(candidate_labels(short_pca, {0}), Catch::Contains("pca.size() = 10"));
    REQUIRE_THROWS_AS(match_paralogs(u.model, u.feat, u.ws, {{0, 1, 0}}, cand, 0), value_error);
    REQUIRE_THROWS_WITH(match_paralogs(u.model, u.feat, u.ws, {{0, 1, 0}}, cand, 0),
                        Catch::Contains("match_paralogs: batch_size = 0"));
    REQUIRE_THROWS_WITH(match_paralogs(u.model, u.feat, u.ws, {{0, 1, 0}}, cand, -2),
                        Catch::Contains("match_paralogs: batch_size = -2"));
    REQUIRE_THROWS_AS(attention_pair_features(u.model, u.feat, u.ws, 0), value_error);
    REQUIRE_THROWS_WITH(attention_pair_features(u.model, u.feat, u.ws, -1),
                        Catch::Contains("attention_pair_features: batch_size = -1"));
  }
  // the masked genes' own labels as candidates: ranks recomputed here from the predictions
  const std::vector<paralog_query> queries = {{0, 0, 0}, {0, 1, 1}, {0, 2, 2}};
  const dmatrix own = candidate_labels(u.feat, {u.ws[0].genes[0].protein, u.ws[0].genes[1].protein,
                                                u.ws[0].genes[2].protein});
  const auto preds = predict_masked(u.model, u.feat, u.ws, {{0, 0}, {0, 1}, {0, 2}}, 16);
  REQUIRE(preds.size() == 3);
  const index_t P = u.feat.pca_dim, D = configs::tiny.label_dim(), K = configs::tiny.hypotheses;
  auto expected = [&](bool nearest) {
    std::vector<index_t> ranks, best;
    for (std::size_t i = 0; i < 3; ++i) {
      std::vector<double> d(3, std::numeric_limits<double>::infinity());
      for (index_t k = 0; k < K; ++k) {
        if (!nearest && k != preds[i].most_likely) continue;
        for (index_t c = 0; c < 3; ++c) {
          double s = 0;
          for (index_t j = 0; j < P; ++j) s += std::pow(preds[i].hypotheses[std::size_t(k * D + j)] - own(c, j), 2);
          d[std::size_t(c)] = std::min(d[std::size_t(c)], s);
        }
      }
      index_t rank = 1;
      for (index_t c = 0; c < 3; ++c) rank += c != index_t(i) && d[std::size_t(c)] <= d[i];
      ranks.push_back(rank);
      best.push_back(index_t(std::min_element(d.begin(), d.end()) - d.begin()));
    }
    return std::make_pair(ranks, best);
  };
  for (const bool nearest : {false, true}) {
    INFO("nearest_hypothesis " << nearest);
    const auto r = match_paralogs(u.model, u.feat, u.ws, queries, own, 16,
                                  nearest ? paralog_scoring::nearest_hypothesis : paralog_scoring::most_likely);
    const auto [ranks, best] = expected(nearest);
    CHECK(r.candidates == 3);
    CHECK(r.chance == Approx(1.0 / 3));
    CHECK(r.rank == ranks);
    CHECK(r.predicted == best);
    CHECK(r.correct == index_t(std::count(ranks.begin(), ranks.end(), index_t(1))));
    CHECK(r.mean_rank == Approx(double(ranks[0] + ranks[1] + ranks[2]) / 3));
  }
  // candidates at known distances 0, P and 4P from gene 1's most likely prediction: ranks 1, 2, 3
  dmatrix near(3, P);
  for (index_t c = 0; c < 3; ++c)
    for (index_t j = 0; j < P; ++j)
      near(c, j) = preds[1].hypotheses[std::size_t(preds[1].most_likely * D + j)] + double(c);
  const auto rk = match_paralogs(u.model, u.feat, u.ws, {{0, 1, 2}, {0, 1, 0}, {0, 1, 1}}, near);
  CHECK(rk.rank == std::vector<index_t>{3, 1, 2});
  CHECK(rk.predicted == std::vector<index_t>{0, 0, 0});
  CHECK(rk.correct == 1);
  CHECK(rk.mean_rank == Approx(2.0));

  dmatrix X(6, 2, {0, 1, 1, 0, 2, 1, 0, 3, 1, 1, 2, 2});
  CHECK_THROWS_WITH(linear_probe(dmatrix(0, 2), {}, 2, {}), Catch::Contains("empty data"));
  CHECK_THROWS_AS(linear_probe(X, {0, 1, 0}, 2, {0, 1, 2, 3, 4, 5}), shape_error);
  CHECK_THROWS_WITH(linear_probe(X, {0, 1, 0, 1, 0, 1}, 1, {0, 1, 2, 3, 4, 5}), Catch::Contains("at least 2 classes"));
  CHECK_THROWS_WITH(linear_probe(X, {-1, -1, -1, -1, -1, -1}, 2, {0, 1, 2, 3, 4, 5}),
                    Catch::Contains("no labelled samples"));
  CHECK_THROWS_WITH(linear_probe(X, {0, 1, 0, 1, 0, 1}, 2, {0, 0, 0, 1, 1, 1}),
                    Catch::Contains("2 group(s) (genome blocks), fewer than the 5 folds"));
  CHECK_THROWS_WITH(linear_probe(X, {0, 0, 0, 0, 0, 1}, 2, {0, 1, 2, 3, 4, 5}, {2, 2, {1.0}}),
                    Catch::Contains("single class"));
  // 4 groups in 2 outer folds leave 2 groups to each training part: too few for 3 inner folds
  // (the message names the inner folds, not only the outer ones the user chose)
  CHECK_THROWS_WITH(linear_probe(X, {0, 1, 0, 1, 0, 1}, 2, {0, 0, 1, 1, 2, 3}, {2, 3, {0.1, 1.0}}),
                    Catch::Contains("training part of fold 1 of 2 lies in 2 group(s)") &&
                        Catch::Contains("fewer than the 3 inner folds that choose C"));
  CHECK_THROWS_WITH(pca_2d(dmatrix(1, 3)), Catch::Contains("at least 2 samples"));
  // shapes checked before allocating; folds and labels of the C search checked before fitting
  CHECK_THROWS_WITH(dmatrix(-1, 1), Catch::Contains("negative shape"));
  CHECK_THROWS_AS(dmatrix((index_t(1) << 62) + 1, 4, std::vector<double>(4, 1.0)), shape_error);
  const dmatrix X1(6, 1, {0, 1, 2, 3, 4, 5});
  CHECK_THROWS_WITH(choose_c_multinomial(X1, {0, 1, 0, 1, 2, 1000}, 3, {1, 1, 1, 1, 1, 0}, {1.0}),
                    Catch::Contains("sample 5 has label 1000, expected 0..2"));
  CHECK_THROWS_WITH(choose_c_binary(X1, {0, 1, 0, 1, 0, 1}, {-1, -1, -1, -1, -1, -1}, {1.0}),
                    Catch::Contains("sample 0 is in fold -1"));
  CHECK_THROWS_WITH(choose_c_binary(X1, {0, 1, 0, 1, 0, 1}, {0, 0, 0, 0, 0, 0}, {1.0}),
                    Catch::Contains("at least 2 folds"));
}

TEST_CASE("SVG pictures: heatmap and embedding map", "[analysis][plot]") {
  std::ostringstream h;
  heatmap_options ho;
  ho.title = "attention <layer 1>";
  ho.outlined = {{0, 1}};
  ho.outline_label = "operon pair";
  write_heatmap_svg(h, {0.1, 0.9, 0.5, 0.0}, 2, 2, {"thrA +", "b&b -"}, {"thrA +", "b&b -"}, ho);
  const std::string s = h.str();
  CHECK(s.rfind("<?xml", 0) == 0);
  CHECK(s.find("<svg xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
  CHECK(s.find("attention &lt;layer 1&gt;") != std::string::npos);
  CHECK(s.find("b&amp;b -") != std::string::npos);
  CHECK(s.find("b&b") == std::string::npos);
  CHECK(s.find("stroke=\"white\"") != std::string::npos);
  CHECK(s.find("operon pair") != std::string::npos);
  CHECK(s.substr(s.size() - 7) == "</svg>\n");
  // balanced tags: every opened <text> is closed
  std::size_t open = 0, close = 0;
  for (std::size_t p = 0; (p = s.find("<text", p)) != std::string::npos; ++p) ++open;
  for (std::size_t p = 0; (p = s.find("</text>", p)) != std::string::npos; ++p) ++close;
  CHECK(open == close);
  CHECK_THROWS_AS(write_heatmap_svg(h, {0.1, 0.2, 0.3}, 2, 2, {"a", "b"}, {"a", "b"}), shape_error);
  CHECK_THROWS_AS(write_heatmap_svg(h, {0.1, 0.2, 0.3, 0.4}, 2, 2, {"a"}, {"a", "b"}), shape_error);
  heatmap_options bad;
  bad.outlined = {{2, 0}};
  CHECK_THROWS_AS(write_heatmap_svg(h, {0.1, 0.2, 0.3, 0.4}, 2, 2, {"a", "b"}, {"a", "b"}, bad), value_error);

  std::ostringstream m;
  scatter_panel a{"input", {0, 0, 1, 1, 2, 0.5}, {0, 1, -1}};
  scatter_panel b{"gLM", {1, 0, 0, 1, 3, 3}, {0, 1, -1}};
  write_scatter_svg(m, {a, b}, {"EC 1", "EC 2"}, "map", "no EC");
  const std::string t = m.str();
  std::size_t circles = 0;
  for (std::size_t p = 0; (p = t.find("<circle", p)) != std::string::npos; ++p) ++circles;
  CHECK(circles == 6 + 3);  // points + legend entries (2 classes + "no EC")
  CHECK(t.find("no EC") != std::string::npos);
  CHECK(t.find("#d9d9d9") != std::string::npos);  // unlabelled points in grey
  scatter_panel c{"bad", {0, 0}, {5}};
  CHECK_THROWS_WITH(write_scatter_svg(m, {c}, {"EC 1"}), Catch::Contains("category 5"));
  scatter_panel d{"bad", {0, 0, 1}, {0}};
  CHECK_THROWS_AS(write_scatter_svg(m, {d}, {"EC 1"}), shape_error);
  // a 2-D map of real vectors
  dmatrix X(5, 3, {1, 0, 0, 2, 0, 1, 3, 1, 0, 4, 0, 0, 5, 1, 1});
  const auto xy = pca_2d(X);
  CHECK(xy.size() == 10);
}
