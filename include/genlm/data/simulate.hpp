// genlm/data/simulate.hpp - synthetic metagenomic contigs with known ground truth.
//
// Gene families have a centroid embedding; each protein is its family centroid plus noise.
// Co-regulated modules are runs of families in a conserved order and strand (operon-like). A
// contig is a sequence of modules interleaved with random "noise" genes. A masked gene inside a
// module is predictable from its neighbours, never from nothing: the ground truth that the
// training tests and analyses check against.
//
// Extensions for the downstream analyses (all off by default; with the defaults the simulation is
// the one above, draw for draw):
//   - module_family_pool: modules draw their families from the first N families only, so one
//     family sits in several modules and what a gene does is a matter of its context;
//   - function_classes: module m has function class m % function_classes, given to its genes
//     (the "EC class" of the probe analysis; noise genes have none);
//   - interacting paralog pairs (A_i, B_i), i < paralog_pairs: the A_i are paralogs of one
//     another (centroid a + paralog_spread * u_i, so all A_i embeddings are similar), likewise the
//     B_i; A_i and B_i always occur together as adjacent partners on one strand (like ModA/ModC),
//     so which A paralog sits next to a B_i is identified from context;
//   - per-gene ground truth: module occurrence (instance_of: adjacent genes of one occurrence are
//     in one operon), function class, paralog pair and role.
#pragma once
#include <algorithm>
#include <string>
#include <utility>
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
  // Extensions (see the header comment); the defaults change nothing.
  index_t module_family_pool = 0;  // modules draw families from the first N families (0 = all)
  index_t function_classes = 0;    // > 0: module m has function class m % function_classes
  index_t paralog_pairs = 0;       // interacting paralog pairs (A_i, B_i)
  double paralog_spread = 0.35;    // scale of a paralog's offset from its family's shared centroid
  double paralog_rate = 0.0;       // probability of inserting a pair at each insertion point
};

struct simulated_data {
  protein_embeddings proteins;        // one protein per gene occurrence
  std::vector<contig_entry> contigs;  // protein ids + strands
  std::vector<index_t> family_of;     // protein row -> family
  std::vector<index_t> module_of;     // protein row -> module (-1 = noise gene)
  std::vector<std::vector<index_t>> module_families;
  // Ground truth per protein row (one protein per gene occurrence):
  std::vector<index_t> instance_of;  // module / pair occurrence (-1 = noise gene); adjacent genes of
                                     // one occurrence belong to one operon
  std::vector<index_t> function_of;  // function class (-1 = none: noise genes, paralog pairs, or
                                     // function_classes == 0)
  std::vector<index_t> paralog_of;   // paralog pair index i (-1 = not a paralog-pair gene)
  std::vector<int> paralog_role;     // 0 = A_i, 1 = B_i, -1 = none
  index_t instances = 0;             // number of module / pair occurrences

  /// Protein row of a simulated protein id ("p<row>").
  index_t row(const std::string& id) const { return proteins.find(id, "simulated data"); }
  /// Operon labels of the adjacent gene pairs (i, i+1) of contig c: 1 when both genes belong to
  /// the same module (or paralog pair) occurrence, else 0.
  std::vector<int> operon_labels(std::size_t c) const {
    check<lookup_error>(c < contigs.size(), "simulated_data::operon_labels: contig ", c, " of ", contigs.size());
    const auto& g = contigs[c].genes;
    std::vector<int> out;
    for (std::size_t i = 0; i + 1 < g.size(); ++i) {
      const index_t a = instance_of[std::size_t(row(g[i].first))], b = instance_of[std::size_t(row(g[i + 1].first))];
      out.push_back(a >= 0 && a == b ? 1 : 0);
    }
    return out;
  }
};

inline simulated_data simulate_contigs(const simulation_options& o) {
  check<value_error>(o.families >= 2 && o.modules >= 1 && o.module_min >= 1 && o.module_max >= o.module_min &&
                         o.contig_min >= 1 && o.contig_max >= o.contig_min && o.dim >= 1,
                     "simulate_contigs: invalid options");
  check<value_error>(o.module_family_pool >= 0 && o.module_family_pool <= o.families, "simulate_contigs: module_family_pool ",
                     o.module_family_pool, " must be in 0..families (", o.families, ")");
  check<value_error>(o.function_classes >= 0 && o.paralog_pairs >= 0 && o.paralog_spread >= 0 &&
                         o.paralog_rate >= 0 && o.paralog_rate < 1,
                     "simulate_contigs: function_classes, paralog_pairs, paralog_spread must be >= 0 and "
                     "paralog_rate in [0, 1)");
  check<value_error>(o.paralog_pairs == 0 || o.paralog_rate > 0, "simulate_contigs: paralog_pairs ", o.paralog_pairs,
                     " needs paralog_rate > 0 to place them");
  // Sizes: at most 2^31 elements per array (a guard against typos such as dim 1280000, so that they
  // give this message rather than std::bad_alloc; products taken in double, so they cannot overflow).
  auto check_size = [](const std::string& what, double n) {
    constexpr double limit = 2147483648.0;  // 2^31
    check<value_error>(n <= limit, "simulate_contigs: ", what, " = ", n, " elements requested, at most 2^31 = ",
                       std::int64_t(limit), " supported");
  };
  const double contigs = double(std::max<index_t>(o.contigs, 0));
  check_size("(families " + std::to_string(o.families) + " + 2 x paralog_pairs " + std::to_string(o.paralog_pairs) +
                 ") x dim " + std::to_string(o.dim) + " family centroid values",
             (double(o.families) + 2.0 * double(o.paralog_pairs)) * double(o.dim));
  check_size("modules " + std::to_string(o.modules) + " x module_max " + std::to_string(o.module_max) +
                 " module genes",
             double(o.modules) * double(o.module_max));
  check_size("contigs " + std::to_string(o.contigs) + " x contig_max " + std::to_string(o.contig_max) + " genes",
             contigs * double(o.contig_max));
  check_size("contigs " + std::to_string(o.contigs) + " x contig_max " + std::to_string(o.contig_max) + " x dim " +
                 std::to_string(o.dim) + " protein embedding values",
             contigs * double(o.contig_max) * double(o.dim));
  rng g(o.seed, 0x51);
  std::vector<double> centroid(std::size_t(o.families * o.dim));
  for (auto& v : centroid) v = g.normal();
  simulated_data s;
  std::vector<int> module_strand;
  for (index_t m = 0; m < o.modules; ++m) {
    const index_t len = o.module_min + index_t(g.below(std::uint64_t(o.module_max - o.module_min + 1)));
    std::vector<index_t> fams;
    const index_t pool = o.module_family_pool > 0 ? o.module_family_pool : o.families;
    for (index_t i = 0; i < len; ++i) fams.push_back(index_t(g.below(std::uint64_t(pool))));
    s.module_families.push_back(fams);
    module_strand.push_back(g.uniform() < 0.5 ? 1 : -1);
  }
  if (o.paralog_pairs > 0) {  // families + 2i = A_i, families + 2i + 1 = B_i
    std::vector<double> shared(std::size_t(2 * o.dim));
    for (auto& v : shared) v = g.normal();
    for (index_t i = 0; i < o.paralog_pairs; ++i)
      for (int role = 0; role < 2; ++role)
        for (index_t j = 0; j < o.dim; ++j)
          centroid.push_back(shared[std::size_t(role * o.dim + j)] + o.paralog_spread * g.normal());
  }
  std::vector<std::string> ids;
  std::vector<float> values;
  index_t instance = -1, paralog = -1;
  int role = -1;
  auto add_protein = [&](index_t fam, index_t module) {
    std::string id = "p";  // (not "p" + to_string(): g++ 12 -O3 warns falsely, -Wrestrict)
    id += std::to_string(ids.size());
    ids.push_back(id);
    for (index_t j = 0; j < o.dim; ++j)
      values.push_back(float(centroid[std::size_t(fam * o.dim + j)] + o.protein_noise * g.normal()));
    s.family_of.push_back(fam);
    s.module_of.push_back(module);
    s.instance_of.push_back(instance);
    s.function_of.push_back(module >= 0 && o.function_classes > 0 ? module % o.function_classes : -1);
    s.paralog_of.push_back(paralog);
    s.paralog_role.push_back(role);
    return id;
  };
  for (index_t c = 0; c < o.contigs; ++c) {
    contig_entry e;
    e.contig_id = "contig_" + std::to_string(c);
    const index_t target = o.contig_min + index_t(g.below(std::uint64_t(o.contig_max - o.contig_min + 1)));
    while (index_t(e.genes.size()) < target) {
      instance = -1, paralog = -1, role = -1;
      if (o.paralog_pairs > 0 && g.uniform() < o.paralog_rate) {
        // an interacting pair A_i B_i, adjacent, one strand; A first in the direction of transcription
        paralog = index_t(g.below(std::uint64_t(o.paralog_pairs)));
        const int strand = g.uniform() < 0.5 ? 1 : -1;
        if (target - index_t(e.genes.size()) < 2) continue;  // no room for both partners
        instance = s.instances++;
        std::pair<std::string, int> genes[2];
        for (role = 0; role < 2; ++role) genes[role] = {add_protein(o.families + 2 * paralog + role, -1), strand};
        if (strand < 0) std::swap(genes[0], genes[1]);
        e.genes.push_back(genes[0]);
        e.genes.push_back(genes[1]);
        continue;
      }
      if (g.uniform() < o.noise_gene_rate) {
        const index_t fam = index_t(g.below(std::uint64_t(o.families)));
        // protein first, then its strand: sequenced explicitly (as function arguments the order of
        // the two draws would be up to the compiler, and g++ and clang differ)
        std::string id = add_protein(fam, -1);
        const int strand = g.uniform() < 0.5 ? 1 : -1;
        e.genes.emplace_back(std::move(id), strand);
        continue;
      }
      const index_t m = index_t(g.below(std::uint64_t(o.modules)));
      const auto& fams = s.module_families[std::size_t(m)];
      // modules keep their order relative to their strand (a reversed module reads backwards)
      const bool flip = g.uniform() < 0.5;
      const int strand = module_strand[std::size_t(m)] * (flip ? -1 : 1);
      instance = s.instances++;
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

/// Every simulated contig cut into windows of at most max_genes genes and resolved against the
/// simulated proteins.
inline std::vector<gene_window> simulated_windows(const simulated_data& s, std::size_t max_genes = 30,
                                                  std::size_t overlap = 0) {
  return resolve_windows(contigs_from_genome(s.contigs, max_genes, overlap), s.proteins, "simulated contigs");
}

}  // namespace genlm
