// genlm/model/config.hpp - the structural configuration of a gLM, fixed at compile time (C++20 NTTP).
#pragma once
#include <string>

namespace genlm {

/// Model shape. Sizes of training (batch, contig length) stay run-time values; these fix the
/// parameter shapes. Pass as a template argument: GLM<configs::paper, cpu>.
struct model_config {
  int num_layers = 19;        // encoder layers
  int hidden = 1280;          // hidden size
  int heads = 10;             // attention heads (head_dim = hidden / heads)
  int intermediate = 3072;    // FFN size
  int plm_dim = 1280;         // protein embedding size (ESM2 650M: 1280); input = plm_dim + 1 (strand)
  int pca_components = 99;    // label = PCA(plm, pca_components) + strand
  int hypotheses = 4;         // predicted hypotheses per masked gene
  int max_positions = 512;    // relative distance table covers |l - r| < max_positions
  int max_genes = 30;         // genes per training window (contigs are windowed to this)

  constexpr int input_dim() const { return plm_dim + 1; }
  constexpr int label_dim() const { return pca_components + 1; }
  constexpr int head_dim() const { return heads > 0 ? hidden / heads : 0; }
  std::string str() const {
    return "layers=" + std::to_string(num_layers) + " hidden=" + std::to_string(hidden) +
           " heads=" + std::to_string(heads) + " intermediate=" + std::to_string(intermediate) +
           " plm_dim=" + std::to_string(plm_dim) + " pca=" + std::to_string(pca_components) +
           " hypotheses=" + std::to_string(hypotheses) + " max_positions=" + std::to_string(max_positions) +
           " max_genes=" + std::to_string(max_genes);
  }
};

namespace configs {
/// The paper's model: 19 layers x 1280 hidden x 10 heads, FFN 3072, ESM2-650M inputs.
inline constexpr model_config paper{19, 1280, 10, 3072, 1280, 99, 4, 512, 30};
/// A small model for CPU experiments with the built-in featuriser (256-d protein features).
inline constexpr model_config small{4, 128, 4, 512, 256, 99, 4, 32, 30};
/// A tiny model for tests (32-d inputs: the smallest the built-in featuriser makes).
inline constexpr model_config tiny{2, 32, 4, 64, 32, 7, 4, 32, 30};
}  // namespace configs

/// Compile-time validation; every message names the legal values.
template <model_config C>
constexpr bool validate_config() {
  static_assert(C.num_layers >= 1, "model_config: num_layers must be >= 1");
  static_assert(C.heads >= 1 && C.hidden >= 1, "model_config: hidden and heads must be >= 1");
  static_assert(C.hidden % C.heads == 0, "model_config: hidden must be a multiple of heads (head_dim = hidden/heads)");
  static_assert(C.intermediate >= 1, "model_config: intermediate (FFN size) must be >= 1");
  static_assert(C.plm_dim >= 1, "model_config: plm_dim must be >= 1");
  static_assert(C.pca_components >= 1 && C.pca_components <= C.plm_dim,
                "model_config: pca_components must be in 1..plm_dim");
  static_assert(C.hypotheses >= 1, "model_config: hypotheses must be >= 1 (the paper uses 4)");
  static_assert(C.max_positions >= 1, "model_config: max_positions must be >= 1");
  static_assert(C.max_genes >= 1 && C.max_genes <= C.max_positions,
                "model_config: max_genes must be in 1..max_positions (the distance table must cover a window)");
  return true;
}

}  // namespace genlm
