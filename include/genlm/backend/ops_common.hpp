// genlm/backend/ops_common.hpp - argument types and element rules shared by every backend's op
// set (no Eigen, no CUDA headers: included by genlm/backend/cpu.hpp and genlm/backend/cuda.cuh
// alike; the rules are __host__ __device__ under nvcc, so both backends compute the same thing).
#pragma once
#include <cstdint>

#include <genlm/core/random.hpp>  // GENLM_HD

namespace genlm {

/// AdamW hyper-parameters for one step. `torch_style` selects torch.optim.AdamW's update
/// (eps added to the bias-corrected sqrt(v); weight decay applied before the update); otherwise
/// transformers 4.22's AdamW as used by the gLM reference (eps added to the raw sqrt(v), step
/// size lr*sqrt(1-b2^t)/(1-b1^t), weight decay applied after the update).
struct adamw_hparams {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-6;
  double weight_decay = 0.0;
  std::int64_t step = 1;  // 1-based step number after increment
  bool torch_style = false;
  /// > 0: each gradient is first clamped to [-clip_value, clip_value] (NaN kept), the same as
  /// torch.nn.utils.clip_grad_value_ before the step but inside the same pass (the gradient
  /// buffer is read once and not written: it stays unclipped). 0: no clipping.
  double clip_value = 0.0;
};

/// Faults of one attention-mask row m[0..L): values other than 0 and 1, plus 1 when none is 1 (a
/// contig without genes). count_input_faults of every backend adds these up over the rows.
template <class T>
GENLM_HD inline std::int64_t mask_row_faults(const T* m, std::int64_t L) {
  std::int64_t bad = 0;
  bool gene = false;
  for (std::int64_t l = 0; l < L; ++l) {
    gene = gene || m[l] == T(1);
    bad += !(m[l] == T(0) || m[l] == T(1));
  }
  return bad + !gene;
}

}  // namespace genlm
