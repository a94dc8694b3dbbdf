// genlm/backend/precision.hpp - precision policies of the GEMMs (a backend's template parameter).
//
// Storage, activations, gradients, optimizer state and master weights stay in the model's scalar
// type (float) in every policy; the policy chooses how the backend's matrix products compute:
//   fp32  - IEEE float32 products (cuBLAS CUBLAS_COMPUTE_32F; the CPU backend always does this)
//   tf32  - tensor-core TF32 products (inputs rounded to 10-bit mantissas, float32 accumulation)
//   bf16  - autocast to bfloat16: GEMM inputs rounded to bf16, float32 accumulation and output
//   fp16  - autocast to float16: as bf16 with float16 inputs; needs loss scaling, since gradients
//           below float16's range (~6e-8) flush to zero inside the products
// Policies are types: genlm::cuda_backend<precision::bf16> (alias genlm::cuda_bf16).
#pragma once
#include <type_traits>

namespace genlm {
namespace precision {
struct fp32 {
  static constexpr const char* name = "fp32";
  static constexpr bool loss_scaling = false;
};
struct tf32 {
  static constexpr const char* name = "tf32";
  static constexpr bool loss_scaling = false;
};
struct bf16 {
  static constexpr const char* name = "bf16";
  static constexpr bool loss_scaling = false;
};
struct fp16 {
  static constexpr const char* name = "fp16";
  static constexpr bool loss_scaling = true;
};
}  // namespace precision

/// The precision policy of a backend: Backend::precision when it declares one, else fp32.
template <class Backend>
struct backend_precision {
  using type = precision::fp32;
};
template <class Backend>
  requires requires { typename Backend::precision; }
struct backend_precision<Backend> {
  using type = typename Backend::precision;
};
template <class Backend>
using backend_precision_t = typename backend_precision<Backend>::type;

}  // namespace genlm
