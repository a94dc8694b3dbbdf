// genlm/data/simulate.hpp - synthetic metagenomic contigs with known ground truth.
//
// Gene families have a centroid embedding; each protein is its family centroid plus noise.
// Co-regulated modules are runs of families in a conserved order and strand (operon-like). A
// contig is a sequence of modules interleaved with random "noise" genes. A masked gene inside a
// module is predictable from its neighbours, never from nothing: the ground truth that the
// training tests and analyses check against.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include <genlm/core/random.hpp>
#include <genlm/data/dataset.hpp>

namespace genlm {

struct simulation_options {
  index_t dim = 16;                        // embedding dimension
  index_t families = 40;                   // gene families
  index_t modules = 10;                    // co-regulated modules
  index_t module_min = 3, module_max = 5;  // genes per module
  index_t contigs = 200;
  index_t contig_min = 15, contig_max = 30;  // genes per contig (the paper's training range)
  double noise_gene_rate = 0.2;              // probability of inserting a random gene between modules
  double protein_noise = 0.15;               // std of a protein around its family centroid (centroids ~ N(0,1))
  std::uint64_t seed = 1;
};

struct simulated_data {
  protein_embeddings proteins;        // one protein per gene occurrence
  std::vector<contig_entry> contigs;  // protein ids + strands
  std::vector<index_t> family_of;     // protein row -> family
  std::vector<index_t> module_of;     // protein row -> module (-1 = noise gene)
  std::vector<std::vector<index_t>> module_families;
};

inline simulated_data simulate_contigs(const simulation_options& o) {
  check<value_error>(o.families >= 2 && o.modules >= 1 && o.module_min >= 1 && o.module_max >= o.module_min &&
                         o.contig_min >= 1 && o.contig_max >= o.contig_min && o.dim >= 1,
                     "simulate_contigs: invalid options");
  rng g(o.seed, 0x51);
  std::vector<double> centroid(std::size_t(o.families * o.dim));
  for (auto& v : centroid) v = g.normal();
  simulated_data s;
  std::vector<int> module_strand;
  for (index_t m = 0; m < o.modules; ++m) {
    const index_t len = o.module_min + index_t(g.below(std::uint64_t(o.module_max - o.module_min + 1)));
    std::vector<index_t> fams;
    for (index_t i = 0; i < len; ++i) fams.push_back(index_t(g.below(std::uint64_t(o.families))));
    s.module_families.push_back(fams);
    module_strand.push_back(g.uniform() < 0.5 ? 1 : -1);
  }
  std::vector<std::string> ids;
  std::vector<float> values;
  auto add_protein = [&](index_t fam, index_t module) {
    const std::string id = "p" + std::to_string(ids.size());
    ids.push_back(id);
    for (index_t j = 0; j < o.dim; ++j)
      values.push_back(float(centroid[std::size_t(fam * o.dim + j)] + o.protein_noise * g.normal()));
    s.family_of.push_back(fam);
    s.module_of.push_back(module);
    return id;
  };
  for (index_t c = 0; c < o.contigs; ++c) {
    contig_entry e;
    e.contig_id = "contig_" + std::to_string(c);
    const index_t target = o.contig_min + index_t(g.below(std::uint64_t(o.contig_max - o.contig_min + 1)));
    while (index_t(e.genes.size()) < target) {
      if (g.uniform() < o.noise_gene_rate) {
        const index_t fam = index_t(g.below(std::uint64_t(o.families)));
        e.genes.emplace_back(add_protein(fam, -1), g.uniform() < 0.5 ? 1 : -1);
        continue;
      }
      const index_t m = index_t(g.below(std::uint64_t(o.modules)));
      const auto& fams = s.module_families[std::size_t(m)];
      // modules keep their order relative to their strand (a reversed module reads backwards)
      const bool flip = g.uniform() < 0.5;
      const int strand = module_strand[std::size_t(m)] * (flip ? -1 : 1);
      for (std::size_t i = 0; i < fams.size() && index_t(e.genes.size()) < target; ++i) {
        const index_t fam = fams[flip ? fams.size() - 1 - i : i];
        e.genes.emplace_back(add_protein(fam, m), strand);
      }
    }
    s.contigs.push_back(std::move(e));
  }
  s.proteins = protein_embeddings(std::move(ids), o.dim, std::move(values), "simulated proteins");
  return s;
}

}  // namespace genlm
