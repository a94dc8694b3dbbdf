// genlm/data/featurizer.hpp - a deterministic, built-in protein featuriser.
//
// *** This is a STAND-IN, not a protein language model. ***
// gLM's real per-gene input is the ESM2 (esm2_t33_650M_UR50D) mean-pooled 1280-d embedding of the
// protein (see SPEC.md). genlm cannot run ESM2 itself, so when no pLM embeddings are available this
// header maps a protein sequence to a fixed-length vector of hand-made sequence statistics. It
// carries composition-level signal only (no structure, homology or evolutionary information), so
// models trained or evaluated on it are NOT comparable with the paper's numbers. Use it for
// pipelines, tests and demos; feed real pLM embeddings for science.
//
// Layout of a dim-length vector (dim >= 32; feature_layout() gives the offsets):
//   [0, 20)   amino-acid composition, alphabet ACDEFGHIKLMNPQRSTVWY (fractions of known residues)
//   [20, 32)  12 physico-chemical summaries:
//               0 ln(1+L)/ln(1001) (L = residues incl. unknown),  1 Kyte-Doolittle mean / 4.5,
//               2 net charge (K+R-D-E) per residue,  3 aromatic fraction (F W Y),
//               4 charged fraction (D E K R),  5 polar fraction (S T N Q),
//               6 aliphatic index / 100,  7 (mean residue mass - 110 Da) / 50 Da,
//               8 max Kyte-Doolittle mean over 19-residue windows / 4.5,
//               9 ln(1 + number of transmembrane-like runs (window mean >= 1.6)) / ln(16),
//              10 unknown fraction,  11 P+G fraction
//   then      dipeptide composition: the 400 pairs exactly when dim >= 32 + 400 + 64, else hashed
//             (signed, as below, key 'D' + the 2 letters) into half of the remaining dims
//   then      hashed 3-mer counts in the remaining dims (0 wide when dim = 32): the 64-bit FNV-1a
//             hash of the 3 upper-case letters, mixed by MurmurHash3's fmix64 finaliser, gives the
//             bucket (hash mod size) and the sign (top bit set: -1, else +1)
// Each group is L2-normalised and scaled by 1/sqrt(number of groups), so every non-empty group
// contributes equally and the whole vector has unit norm.
//
// Letters: case-insensitive. Ambiguity codes share their weight: B = D/N, Z = E/Q, J = I/L (half
// each); U (selenocysteine) counts as C and O (pyrrolysine) as K. X, and '*' other than a single
// final stop (which is dropped), are unknown residues: they count in L and in the unknown fraction
// and break dipeptides/3-mers, but add nothing to composition. Dipeptides and 3-mers use the 20
// standard letters only (B/Z/J break them too). Whitespace, '-' and '.' are skipped. Any other
// character is a value_error. An empty sequence gives the all-zero vector.
//
// Determinism: no std::hash, no unordered containers, fixed iteration order, integer hashing, a
// self-contained logarithm (frexp + a fixed series; no libm transcendental functions), sums in
// double in a fixed order, rounded to float at the end. Identical input gives identical output
// on every IEEE-754 platform (barring a compiler fusing multiply-adds differently, which changes
// at most the last bits of the double intermediates).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "genlm/core/error.hpp"
#include "genlm/data/genome.hpp"

namespace genlm {

/// Bumped whenever the features change, so cached features can be invalidated.
inline constexpr int featurizer_version = 1;
/// ESM2-650M's embedding width, the natural size for gLM's input.
inline constexpr std::size_t default_feature_dim = 1280;
/// The smallest supported dim (composition + physico-chemical groups).
inline constexpr std::size_t min_feature_dim = 32;

struct featurizer_layout {
  std::size_t dim = 0;
  std::size_t composition_offset = 0, composition_size = 20;
  std::size_t physchem_offset = 20, physchem_size = 12;
  std::size_t dipeptide_offset = 32, dipeptide_size = 0;
  bool dipeptide_hashed = true;
  std::size_t kmer_offset = 32, kmer_size = 0;
  std::size_t groups = 2;  ///< number of non-empty groups
};

/// The group layout for a vector of `dim` values; value_error for dim < 32.
inline featurizer_layout feature_layout(std::size_t dim) {
  check<value_error>(dim >= min_feature_dim, "featurize_protein: dim: saw ", dim,
                     ", expected >= ", min_feature_dim);
  featurizer_layout l;
  l.dim = dim;
  const std::size_t rest = dim - 32;
  if (rest >= 400 + 64) {
    l.dipeptide_size = 400;
    l.dipeptide_hashed = false;
  } else {
    l.dipeptide_size = rest / 2;
    l.dipeptide_hashed = true;
  }
  l.kmer_offset = l.dipeptide_offset + l.dipeptide_size;
  l.kmer_size = dim - l.kmer_offset;
  l.groups = std::size_t{2} + (l.dipeptide_size > 0 ? 1u : 0u) + (l.kmer_size > 0 ? 1u : 0u);
  return l;
}

namespace data_detail {

inline constexpr char feat_alphabet[] = "ACDEFGHIKLMNPQRSTVWY";
inline constexpr double feat_kd[20] = {1.8, 2.5,  -3.5, -3.5, 2.8,  -0.4, -3.2, 4.5, -3.9, 3.8,
                                       1.9, -3.5, -1.6, -3.5, -4.5, -0.8, -0.7, 4.2, -0.9, -1.3};
inline constexpr double feat_mass[20] = {71.0788,  103.1388, 115.0886, 129.1155, 147.1766, 57.0519, 137.1411,
                                         113.1594, 128.1741, 113.1594, 131.1926, 114.1038, 97.1167, 128.1307,
                                         156.1875, 87.0782,  101.1051, 99.1326,  186.2132, 163.1760};
enum : int {
  fa_A,
  fa_C,
  fa_D,
  fa_E,
  fa_F,
  fa_G,
  fa_H,
  fa_I,
  fa_K,
  fa_L,
  fa_M,
  fa_N,
  fa_P,
  fa_Q,
  fa_R,
  fa_S,
  fa_T,
  fa_V,
  fa_W,
  fa_Y
};
// Residue codes: 0..19 standard, 20 = B (D/N), 21 = Z (E/Q), 22 = J (I/L), 23 = unknown.
enum : int { fc_B = 20, fc_Z = 21, fc_J = 22, fc_unknown = 23 };

inline int feat_code(char c) {
  switch (upper(c)) {
    case 'A':
      return fa_A;
    case 'C':
      return fa_C;
    case 'D':
      return fa_D;
    case 'E':
      return fa_E;
    case 'F':
      return fa_F;
    case 'G':
      return fa_G;
    case 'H':
      return fa_H;
    case 'I':
      return fa_I;
    case 'K':
      return fa_K;
    case 'L':
      return fa_L;
    case 'M':
      return fa_M;
    case 'N':
      return fa_N;
    case 'P':
      return fa_P;
    case 'Q':
      return fa_Q;
    case 'R':
      return fa_R;
    case 'S':
      return fa_S;
    case 'T':
      return fa_T;
    case 'V':
      return fa_V;
    case 'W':
      return fa_W;
    case 'Y':
      return fa_Y;
    case 'U':
      return fa_C;  // selenocysteine
    case 'O':
      return fa_K;  // pyrrolysine
    case 'B':
      return fc_B;
    case 'Z':
      return fc_Z;
    case 'J':
      return fc_J;
    default:
      return fc_unknown;  // X, '*'
  }
}

/// Natural logarithm from frexp and a fixed atanh series: the same bits on every IEEE platform.
inline double det_log(double x) {
  int e = 0;
  double m = std::frexp(x, &e);  // x = m * 2^e, m in [0.5, 1)
  if (m < 0.70710678118654752440) {
    m = m * 2.0;
    e = e - 1;
  }
  const double s = (m - 1.0) / (m + 1.0);  // |s| < 0.172
  const double s2 = s * s;
  double term = s;
  double sum = 0.0;
  for (int k = 1; k < 40; k += 2) {
    const double t = term / static_cast<double>(k);
    sum = sum + t;
    term = term * s2;
  }
  const double a = 2.0 * sum;
  const double b = static_cast<double>(e) * 0.69314718055994530942;
  return a + b;
}

inline std::uint64_t fnv1a(const unsigned char* p, std::size_t n) {
  std::uint64_t h = 14695981039346656037ULL;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/// MurmurHash3's 64-bit finaliser: FNV-1a alone mixes short keys poorly into the high bits.
inline std::uint64_t fmix64(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

/// Feature hashing: bucket = hash mod size, sign = top bit of the hash.
inline std::uint64_t feature_hash(const unsigned char* key, std::size_t n) { return fmix64(fnv1a(key, n)); }

inline void hashed_add(std::span<double> bins, const unsigned char* key, std::size_t n) {
  const std::uint64_t h = feature_hash(key, n);
  const std::size_t b = static_cast<std::size_t>(h % bins.size());
  bins[b] += (h >> 63) ? -1.0 : 1.0;
}

inline void normalise_group(std::span<double> g, double scale) {
  double ss = 0.0;
  for (double v : g) ss = ss + v * v;
  if (ss <= 0.0) return;
  const double f = scale / std::sqrt(ss);
  for (double& v : g) v = v * f;
}

}  // namespace data_detail

/// Features of one protein written into `out` (dim = out.size(), see the header comment).
inline void featurize_protein_into(std::string_view aa_sequence, std::span<float> out) {
  using namespace data_detail;
  const featurizer_layout lay = feature_layout(out.size());
  // Residue codes.
  std::size_t last = aa_sequence.size();
  while (last > 0 && is_space(aa_sequence[last - 1])) --last;
  if (last > 0 && aa_sequence[last - 1] == '*') --last;  // terminal stop
  std::vector<int> codes;
  codes.reserve(last);
  for (std::size_t i = 0; i < last; ++i) {
    const char c = aa_sequence[i];
    if (is_space(c) || c == '-' || c == '.') continue;
    if (!is_alpha(c) && c != '*')
      throw value_error(detail::concat("featurize_protein: character ", i + 1, " of the sequence: saw '",
                                       std::string(1, c),
                                       "', expected an amino-acid letter, '*', '-' or '.'"));
    codes.push_back(feat_code(c));
  }
  std::vector<double> v(lay.dim, 0.0);
  const std::size_t L = codes.size();
  if (L == 0) {
    for (auto& x : out) x = 0.0f;
    return;
  }
  // Composition (and per-residue weights).
  double comp[20] = {};
  std::size_t unknown = 0;
  std::vector<double> kd_pos(L, 0.0);
  for (std::size_t i = 0; i < L; ++i) {
    const int c = codes[i];
    if (c < 20) {
      comp[c] += 1.0;
      kd_pos[i] = feat_kd[c];
    } else if (c == fc_unknown) {
      ++unknown;
    } else {
      const int a = c == fc_B ? fa_D : c == fc_Z ? fa_E : fa_I;
      const int b = c == fc_B ? fa_N : c == fc_Z ? fa_Q : fa_L;
      comp[a] += 0.5;
      comp[b] += 0.5;
      kd_pos[i] = 0.5 * feat_kd[a] + 0.5 * feat_kd[b];
    }
  }
  const double known = static_cast<double>(L - unknown);
  double frac[20] = {};
  if (known > 0)
    for (int a = 0; a < 20; ++a) frac[a] = comp[a] / known;
  for (int a = 0; a < 20; ++a) v[lay.composition_offset + static_cast<std::size_t>(a)] = frac[a];

  // Physico-chemical summaries.
  double kd_mean = 0.0, mass = 0.0;
  for (int a = 0; a < 20; ++a) {
    kd_mean = kd_mean + frac[a] * feat_kd[a];
    mass = mass + frac[a] * feat_mass[a];
  }
  const std::size_t w = L < 19 ? L : 19;
  double wsum = 0.0;
  for (std::size_t i = 0; i < w; ++i) wsum = wsum + kd_pos[i];
  double best = wsum / static_cast<double>(w);
  std::size_t tm_runs = 0;
  bool in_run = false;
  for (std::size_t s = 0; s + w <= L; ++s) {
    if (s > 0) wsum = (wsum + kd_pos[s + w - 1]) - kd_pos[s - 1];
    const double mean = wsum / static_cast<double>(w);
    if (mean > best) best = mean;
    const bool tm = w >= 19 && mean >= 1.6;
    if (tm && !in_run) ++tm_runs;
    in_run = tm;
  }
  double* p = v.data() + lay.physchem_offset;
  p[0] = det_log(1.0 + static_cast<double>(L)) / det_log(1001.0);
  p[1] = kd_mean / 4.5;
  p[2] = (frac[fa_K] + frac[fa_R]) - (frac[fa_D] + frac[fa_E]);
  p[3] = frac[fa_F] + frac[fa_W] + frac[fa_Y];
  p[4] = (frac[fa_D] + frac[fa_E]) + (frac[fa_K] + frac[fa_R]);
  p[5] = (frac[fa_S] + frac[fa_T]) + (frac[fa_N] + frac[fa_Q]);
  const double ali = frac[fa_A] + 2.9 * frac[fa_V];
  p[6] = ali + 3.9 * (frac[fa_I] + frac[fa_L]);
  p[7] = known > 0 ? (mass - 110.0) / 50.0 : 0.0;
  p[8] = best / 4.5;
  p[9] = det_log(1.0 + static_cast<double>(tm_runs)) / det_log(16.0);
  p[10] = static_cast<double>(unknown) / static_cast<double>(L);
  p[11] = frac[fa_P] + frac[fa_G];

  // Dipeptides.
  if (lay.dipeptide_size > 0) {
    std::span<double> dp(v.data() + lay.dipeptide_offset, lay.dipeptide_size);
    for (std::size_t i = 0; i + 1 < L; ++i) {
      const int a = codes[i], b = codes[i + 1];
      if (a >= 20 || b >= 20) continue;
      if (!lay.dipeptide_hashed) {
        dp[static_cast<std::size_t>(a * 20 + b)] += 1.0;
      } else {
        const unsigned char key[3] = {'D', static_cast<unsigned char>(feat_alphabet[a]),
                                      static_cast<unsigned char>(feat_alphabet[b])};
        hashed_add(dp, key, 3);
      }
    }
  }
  // Hashed 3-mers.
  if (lay.kmer_size > 0) {
    std::span<double> km(v.data() + lay.kmer_offset, lay.kmer_size);
    for (std::size_t i = 0; i + 2 < L; ++i) {
      const int a = codes[i], b = codes[i + 1], c = codes[i + 2];
      if (a >= 20 || b >= 20 || c >= 20) continue;
      const unsigned char key[3] = {static_cast<unsigned char>(feat_alphabet[a]),
                                    static_cast<unsigned char>(feat_alphabet[b]),
                                    static_cast<unsigned char>(feat_alphabet[c])};
      hashed_add(km, key, 3);
    }
  }
  // Group normalisation.
  const double scale = 1.0 / std::sqrt(static_cast<double>(lay.groups));
  normalise_group(std::span<double>(v.data() + lay.composition_offset, lay.composition_size), scale);
  normalise_group(std::span<double>(v.data() + lay.physchem_offset, lay.physchem_size), scale);
  if (lay.dipeptide_size > 0)
    normalise_group(std::span<double>(v.data() + lay.dipeptide_offset, lay.dipeptide_size), scale);
  if (lay.kmer_size > 0) normalise_group(std::span<double>(v.data() + lay.kmer_offset, lay.kmer_size), scale);
  for (std::size_t i = 0; i < lay.dim; ++i) out[i] = static_cast<float>(v[i]);
}

/// Number of residues featurize_protein counts in a sequence (L of the header comment): letters
/// and '*', less a single final stop; whitespace, '-' and '.' skipped. 0 (e.g. "", "---", ".")
/// means the all-zero vector. Other characters are not counted (featurize_protein rejects them).
inline std::size_t feature_residue_count(std::string_view aa_sequence) {
  using namespace data_detail;
  std::size_t last = aa_sequence.size();
  while (last > 0 && is_space(aa_sequence[last - 1])) --last;
  if (last > 0 && aa_sequence[last - 1] == '*') --last;  // terminal stop
  std::size_t n = 0;
  for (std::size_t i = 0; i < last; ++i) n += is_alpha(aa_sequence[i]) || aa_sequence[i] == '*';
  return n;
}

/// Features of one protein: a dim-length vector (dim >= 32; default 1280 like ESM2-650M).
inline std::vector<float> featurize_protein(std::string_view aa_sequence,
                                            std::size_t dim = default_feature_dim) {
  std::vector<float> out(dim);
  featurize_protein_into(aa_sequence, out);
  return out;
}

/// Features of many proteins, one vector each.
inline std::vector<std::vector<float>> featurize_proteins(const std::vector<std::string>& seqs,
                                                          std::size_t dim = default_feature_dim) {
  std::vector<std::vector<float>> out;
  out.reserve(seqs.size());
  for (const auto& s : seqs) out.push_back(featurize_protein(s, dim));
  return out;
}

inline std::vector<std::vector<float>> featurize_proteins(const std::vector<std::string_view>& seqs,
                                                          std::size_t dim = default_feature_dim) {
  std::vector<std::vector<float>> out;
  out.reserve(seqs.size());
  for (const auto s : seqs) out.push_back(featurize_protein(s, dim));
  return out;
}

/// Features of many proteins as one row-major [seqs.size(), dim] array.
inline std::vector<float> featurize_proteins_flat(const std::vector<std::string>& seqs,
                                                  std::size_t dim = default_feature_dim) {
  (void)feature_layout(dim);
  std::vector<float> out(seqs.size() * dim);
  for (std::size_t i = 0; i < seqs.size(); ++i)
    featurize_protein_into(seqs[i], std::span<float>(out.data() + i * dim, dim));
  return out;
}

/// Features of a contig's genes in gene order (genes without a protein give zero vectors).
inline std::vector<std::vector<float>> featurize_contig(const contig& c,
                                                        std::size_t dim = default_feature_dim) {
  std::vector<std::vector<float>> out;
  out.reserve(c.genes.size());
  for (const auto& g : c.genes) out.push_back(featurize_protein(g.protein, dim));
  return out;
}

}  // namespace genlm
