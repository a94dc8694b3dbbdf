// Running a model over windowed contigs (include/genlm/model/inference.hpp): stitching of
// overlapping windows, and clear errors for windows of two contigs with one id, non-finite model
// outputs and invalid batch sizes.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include <genlm/data/simulate.hpp>
#include <genlm/model/inference.hpp>
#include <genlm/train/trainer.hpp>

using namespace genlm;

namespace {
using Model = GLM<configs::tiny, cpu>;

struct setup {
  simulated_data sim;
  feature_pipeline pipe;
  gene_features feat;
  Model model;
  setup() {
    simulation_options so;
    so.dim = configs::tiny.plm_dim;
    so.contigs = 4;
    so.contig_min = 25;
    so.contig_max = 30;
    so.families = 12;
    so.modules = 3;
    so.seed = 5;
    sim = simulate_contigs(so);
    pipe.fit(sim.proteins, configs::tiny.pca_components);
    feat = pipe.features(sim.proteins);
  }
  std::vector<gene_window> windows_of(const std::vector<contig_entry>& cs, std::size_t w, std::size_t overlap) const {
    std::vector<contig_window> cw;
    for (const auto& c : cs)
      for (auto& x : windows(c, w, overlap)) cw.push_back(x);
    return resolve_windows(cw, sim.proteins, "sim");
  }
};
}  // namespace

TEST_CASE("embed_windows averages overlapping windows back onto each contig", "[inference]") {
  setup s;
  const auto whole = s.windows_of({s.sim.contigs[0]}, 30, 0);  // one window per contig (<= 30 genes)
  REQUIRE(whole.size() == 1);
  const auto ref = embed_windows(s.model, s.feat, whole, 4);
  REQUIRE(ref.size() == 1);
  REQUIRE(ref[0].values.size() == s.sim.contigs[0].genes.size() * std::size_t(configs::tiny.hidden));
  // the same contig in overlapping windows of 10: every gene is covered, values differ (other
  // context) but stay finite, and a gene in two windows is their mean
  const auto split = s.windows_of({s.sim.contigs[0]}, 10, 5);
  const auto parts = embed_windows(s.model, s.feat, split, 3);
  REQUIRE(parts.size() == 1);
  REQUIRE(parts[0].values.size() == ref[0].values.size());
  for (float v : parts[0].values) REQUIRE(std::isfinite(v));
  auto alone = [&](gene_window w) {  // one window as a contig of its own
    w.source_id = w.id, w.offset = 0, w.source_size = w.genes.size();
    return embed_windows(s.model, s.feat, {w}, 1)[0].values;
  };
  const auto w0 = alone(split[0]), w1 = alone(split[1]);
  const std::size_t H = std::size_t(configs::tiny.hidden), g = 7;  // gene 7: in windows 0 (0-9) and 1 (5-14)
  REQUIRE(split[1].offset == 5);
  for (std::size_t j = 0; j < H; ++j)
    CHECK(parts[0].values[g * H + j] == Approx((w0[g * H + j] + w1[(g - 5) * H + j]) / 2).margin(1e-6));
  // gene 2 is in window 0 only
  for (std::size_t j = 0; j < H; ++j) CHECK(parts[0].values[2 * H + j] == Approx(w0[2 * H + j]).margin(1e-6));
}

TEST_CASE("inference refuses two contigs with one id, bad batch sizes and non-finite outputs", "[inference][errors]") {
  setup s;
  auto ws = s.windows_of({s.sim.contigs[0], s.sim.contigs[1]}, 30, 0);
  REQUIRE(ws.size() == 2);

  SECTION("a window offset whose sum with its size wraps around") {
    ws[1].offset = std::numeric_limits<std::size_t>::max() - 1;
    CHECK_THROWS_WITH(embed_windows(s.model, s.feat, ws, 4), Catch::Contains("reaches past its contig"));
  }

  SECTION("two contigs of different sizes under one id") {
    REQUIRE(ws[0].source_size != ws[1].source_size);
    ws[1].source_id = ws[0].source_id;
    CHECK_THROWS_AS(embed_windows(s.model, s.feat, ws, 4), shape_error);
    CHECK_THROWS_WITH(embed_windows(s.model, s.feat, ws, 4),
                      Catch::Contains("both belong to contig '" + ws[0].source_id + "'") &&
                          Catch::Contains("two different contigs with one id?"));
  }
  SECTION("two contigs of one size under one id") {
    ws[1].source_id = ws[0].source_id;
    ws[1].source_size = ws[0].source_size;
    ws[1].genes.resize(std::min(ws[1].genes.size(), ws[0].genes.size()));
    CHECK_THROWS_WITH(embed_windows(s.model, s.feat, ws, 1), Catch::Contains("hold different proteins") &&
                                                                  Catch::Contains("at gene 0"));
  }
  SECTION("batch sizes below 1") {
    for (index_t b : {index_t(0), index_t(-3)}) {
      CHECK_THROWS_WITH(embed_windows(s.model, s.feat, ws, b), Catch::Contains("batch_size must be >= 1, got " + std::to_string(b)));
      CHECK_THROWS_WITH(predict_masked(s.model, s.feat, ws, {{0, 0}}, b),
                        Catch::Contains("batch_size must be >= 1, got " + std::to_string(b)));
    }
  }
  SECTION("a NaN weight") {
    auto& ps = s.model.parameters();
    auto w = ps.get("dense.weight");
    w[3] = std::numeric_limits<float>::quiet_NaN();
    ps.set("dense.weight", ps.at(ps.find("dense.weight")).shape, w);
    CHECK_THROWS_WITH(embed_windows(s.model, s.feat, ws, 4),
                      Catch::Contains("embed_windows: the model's output for window '" + ws[0].id) &&
                          Catch::Contains("non-finite"));
    CHECK_THROWS_WITH(predict_masked(s.model, s.feat, ws, {{1, 2}}, 4),
                      Catch::Contains("predict_masked: the model's output for window '" + ws[1].id));
  }
}
