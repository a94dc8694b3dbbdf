// genlm/train/masking.hpp - masked gene modelling inputs: 15% of real genes masked with -1.0.
#pragma once
#include <vector>

#include <genlm/core/random.hpp>
#include <genlm/core/tensor.hpp>
#include <genlm/train/masked_gene_loss.hpp>

namespace genlm {

struct masking_options {
  double probability = 0.15;  // per real gene, independently
  float mask_value = -1.0f;   // the masked gene's whole input vector is set to this
};

/// Chooses masked genes among real ones (mask (B, L) host values 1/0) with a seeded generator
/// (deterministic: one draw per real gene in row-major order) and overwrites their inputs
/// x (B, L, F) host values with mask_value. Returns the masked positions in row-major order.
/// This form writes the positions into `out` (cleared first; no allocation once its capacity
/// suffices).
template <class T>
void mask_genes(std::vector<T>& x, const std::vector<T>& mask, index_t B, index_t L, index_t F, rng& g,
                const masking_options& opt, std::vector<gene_pos>& out) {
  const index_t n = shape_t{B, L, F}.numel();  // shape_error for negative sizes or an overflowing count
  check<shape_error>(index_t(x.size()) == n && index_t(mask.size()) == B * L, "mask_genes: sizes ",
                     x.size(), "/", mask.size(), " do not match (", B, ", ", L, ", ", F, ")");
  check<value_error>(opt.probability >= 0 && opt.probability <= 1, "mask_genes: probability must be in [0, 1], got ",
                     opt.probability);
  out.clear();
  for (index_t b = 0; b < B; ++b)
    for (index_t l = 0; l < L; ++l) {
      if (mask[std::size_t(b * L + l)] == T(0)) continue;
      if (g.uniform() < opt.probability) {
        out.push_back({b, l});
        std::fill(x.begin() + (b * L + l) * F, x.begin() + (b * L + l + 1) * F, T(opt.mask_value));
      }
    }
}
template <class T>
std::vector<gene_pos> mask_genes(std::vector<T>& x, const std::vector<T>& mask, index_t B, index_t L, index_t F,
                                 rng& g, const masking_options& opt = {}) {
  std::vector<gene_pos> out;
  mask_genes(x, mask, B, L, F, g, opt, out);
  return out;
}

}  // namespace genlm
