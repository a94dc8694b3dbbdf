// cublas_v2.h of the genlm CUDA host emulator (tests/cuda_emu): NOT cuBLAS.
// The calls genlm's CUDA backend makes (cublasGemmEx, cublasGemmStridedBatchedEx, cublasDgemm,
// cublasDgemmStridedBatched and the handle calls), column-major as cuBLAS, computed with Eigen.
// Checked as cuBLAS does: m, n, k, batch >= 0; lda >= max(1, rows of op(A) stored), ldb likewise,
// ldc >= max(1, m); storage types CUDA_R_32F with a 32F compute type (or 64F for D-GEMMs).
// Checked beyond cuBLAS: every operand's extent (leading dimension, batch stride) lies inside one
// device allocation; otherwise the call fails with CUBLAS_STATUS_EXECUTION_FAILED and a sticky
// cudaErrorIllegalAddress, with a message naming the operand. beta == 0: C is not read.
// bf16-stored A and B with CUDA_R_32F C and CUBLAS_COMPUTE_32F are widened to float first.
// Compute types: 32F float products; FAST_TF32 rounds A and B to TF32 (10 mantissa bits, round to
// nearest, ties away from zero), FAST_16BF to bf16 (round to nearest even), FAST_16F to fp16
// (round to nearest even, fp16's range: overflow to inf, subnormals); accumulation in float.
#pragma once
#include <genlm_cuda_emu/emulator.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
using cudaDataType = cudaDataType_t;
enum cublasStatus_t {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };
enum cublasMath_t {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_TENSOR_OP_MATH = 1,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3
};
enum cublasComputeType_t {
  CUBLAS_COMPUTE_16F = 64,
  CUBLAS_COMPUTE_32F = 68,
  CUBLAS_COMPUTE_32F_PEDANTIC = 69,
  CUBLAS_COMPUTE_64F = 70,
  CUBLAS_COMPUTE_32F_FAST_16F = 74,
  CUBLAS_COMPUTE_32F_FAST_16BF = 75,
  CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
};
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1, CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99 };
struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};
using cublasHandle_t = cublasContext*;

inline const char* cublasGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
inline const char* cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid value was used as an argument";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    default: return "cuBLAS error";
  }
}
inline cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->math = m;
  return CUBLAS_STATUS_SUCCESS;
}

namespace genlm_cuda_emu::blas {

/// TF32: float with 10 explicit mantissa bits, round to nearest, ties away from zero.
inline float round_tf32(float x) {
  if (!std::isfinite(x)) return x;
  std::uint32_t b;
  std::memcpy(&b, &x, 4);
  b = (b + 0x1000u) & ~0x1fffu;
  float r;
  std::memcpy(&r, &b, 4);
  return r;
}
/// bf16: the top 16 bits of a float, round to nearest even.
inline float round_bf16(float x) {
  if (std::isnan(x)) return x;
  std::uint32_t b;
  std::memcpy(&b, &x, 4);
  b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
  float r;
  std::memcpy(&r, &b, 4);
  return r;
}
/// fp16 (IEEE binary16): 11 significant bits, round to nearest even, max 65504, subnormals 2^-24.
inline float round_fp16(float x) {
  if (!std::isfinite(x)) return x;
  const float a = std::fabs(x);
  if (a >= 65520.0f) return std::copysign(std::numeric_limits<float>::infinity(), x);
  float q;  // the fp16 quantum at a
  if (a < 6.103515625e-05f) {
    q = 5.9604644775390625e-08f;  // 2^-24
  } else {
    int e;
    std::frexp(a, &e);  // a in [2^(e-1), 2^e)
    q = std::ldexp(1.0f, e - 11);
  }
  return std::copysign(std::nearbyint(a / q) * q, x);
}

template <class T>
using mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <class T>
using cmap = Eigen::Map<const mat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using map = Eigen::Map<mat<T>, 0, Eigen::OuterStride<>>;

inline bool extent_ok(const void* p, std::size_t elem, long long rows, long long cols, long long ld, long long stride,
                      long long batch) {
  if (rows == 0 || cols == 0 || batch == 0) return true;
  if (stride < 0) return false;
  const long long span = (cols - 1) * ld + rows + (batch - 1) * stride;
  return detail::is_device_range(p, std::size_t(span) * elem);
}

/// C_i = alpha op(A_i) op(B_i) + beta C_i, i < batch (column-major), with the checks above.
template <class T>
cublasStatus_t gemm(const char* call, cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, const T* alpha, const T* A, int lda, long long sa, const T* B, int ldb, long long sb,
                    const T* beta, T* C, int ldc, long long sc, int batch, cublasComputeType_t ct) {
  using detail::report;
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  fake_cuda_drain(h->stream);  // stream order: after a pending copy or collective
  if (detail::sticky() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
  const auto bad = [&](const std::string& what) {
    report(std::string(call) + ": " + what + " (CUBLAS_STATUS_INVALID_VALUE)");
    return CUBLAS_STATUS_INVALID_VALUE;
  };
  if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
    return bad("only CUBLAS_OP_N and CUBLAS_OP_T are emulated");
  if (m < 0 || n < 0 || k < 0 || batch < 0) return bad("negative m, n, k or batch");
  const int ra = ta == CUBLAS_OP_N ? m : k, ca = ta == CUBLAS_OP_N ? k : m;  // A as stored
  const int rb = tb == CUBLAS_OP_N ? k : n, cb = tb == CUBLAS_OP_N ? n : k;  // B as stored
  if (lda < std::max(1, ra)) return bad("lda " + std::to_string(lda) + " < max(1, " + std::to_string(ra) + ")");
  if (ldb < std::max(1, rb)) return bad("ldb " + std::to_string(ldb) + " < max(1, " + std::to_string(rb) + ")");
  if (ldc < std::max(1, m)) return bad("ldc " + std::to_string(ldc) + " < max(1, " + std::to_string(m) + ")");
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  const auto outside = [&](const char* what) {
    detail::fault(cudaErrorIllegalAddress, std::string(call) + ": operand " + what +
                                               " (leading dimension, batch stride) runs outside its device "
                                               "allocation, or is not device memory");
    return CUBLAS_STATUS_EXECUTION_FAILED;
  };
  if (k > 0 && !extent_ok(A, sizeof(T), ra, ca, lda, sa, batch)) return outside("A");
  if (k > 0 && !extent_ok(B, sizeof(T), rb, cb, ldb, sb, batch)) return outside("B");
  if (!extent_ok(C, sizeof(T), m, n, ldc, sc, batch)) return outside("C");
  detail::queued(h->stream, call);  // checked, not empty: work a device would run
  float (*round)(float) = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    if (ct == CUBLAS_COMPUTE_32F_FAST_TF32) round = round_tf32;
    if (ct == CUBLAS_COMPUTE_32F_FAST_16BF) round = round_bf16;
    if (ct == CUBLAS_COMPUTE_32F_FAST_16F) round = round_fp16;
  }
  for (int i = 0; i < batch; ++i) {
    map<T> c(C + i * sc, m, n, Eigen::OuterStride<>(ldc));
    if (*beta == T(0))
      c.setZero();
    else
      c *= *beta;
    if (k == 0) continue;
    const cmap<T> a0(A + i * sa, ra, ca, Eigen::OuterStride<>(lda));
    const cmap<T> b0(B + i * sb, rb, cb, Eigen::OuterStride<>(ldb));
    mat<T> a = ta == CUBLAS_OP_N ? mat<T>(a0) : mat<T>(a0.transpose());  // (m, k)
    mat<T> b = tb == CUBLAS_OP_N ? mat<T>(b0) : mat<T>(b0.transpose());  // (k, n)
    if constexpr (std::is_same_v<T, float>) {
      if (round) {
        a = a.unaryExpr(round);
        b = b.unaryExpr(round);
      }
    }
    c.noalias() += *alpha * (a * b);
  }
  return CUBLAS_STATUS_SUCCESS;
}

inline bool float_compute(cublasComputeType_t ct) {
  return ct == CUBLAS_COMPUTE_32F || ct == CUBLAS_COMPUTE_32F_PEDANTIC || ct == CUBLAS_COMPUTE_32F_FAST_TF32 ||
         ct == CUBLAS_COMPUTE_32F_FAST_16BF || ct == CUBLAS_COMPUTE_32F_FAST_16F;
}

}  // namespace genlm_cuda_emu::blas

inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const void* alpha, const void* A, cudaDataType_t at, int lda, const void* B,
                                   cudaDataType_t bt, int ldb, const void* beta, void* C, cudaDataType_t ctype,
                                   int ldc, cublasComputeType_t ct, cublasGemmAlgo_t) {
  if (at == CUDA_R_16BF && bt == CUDA_R_16BF && ctype == CUDA_R_32F && ct == CUBLAS_COMPUTE_32F) {
    // bf16-stored inputs (benchmarks' reference peak): widened to float device copies, then as float
    const int ra = ta == CUBLAS_OP_N ? m : k, ca = ta == CUBLAS_OP_N ? k : m;
    const int rb = tb == CUBLAS_OP_N ? k : n, cb = tb == CUBLAS_OP_N ? n : k;
    const auto widen = [](const void* p, int rows, int cols, int ld, float** out) {
      const std::size_t span = rows > 0 && cols > 0 ? std::size_t(cols - 1) * std::size_t(ld) + std::size_t(rows) : 0;
      if (span && !genlm_cuda_emu::detail::is_device_range(p, span * 2)) return false;
      if (cudaMalloc(reinterpret_cast<void**>(out), std::max<std::size_t>(span, 1) * sizeof(float)) != cudaSuccess)
        return false;
      const auto* b = static_cast<const std::uint16_t*>(p);
      for (std::size_t i = 0; i < span; ++i) {
        const std::uint32_t w = std::uint32_t(b[i]) << 16;
        std::memcpy(*out + i, &w, 4);
      }
      return true;
    };
    float *fa = nullptr, *fb = nullptr;
    cublasStatus_t r = CUBLAS_STATUS_EXECUTION_FAILED;
    if (lda >= 1 && ldb >= 1 && widen(A, ra, ca, lda, &fa) && widen(B, rb, cb, ldb, &fb))
      r = genlm_cuda_emu::blas::gemm<float>("cublasGemmEx (bf16 inputs)", h, ta, tb, m, n, k,
                                            static_cast<const float*>(alpha), fa, lda, 0, fb, ldb, 0,
                                            static_cast<const float*>(beta), static_cast<float*>(C), ldc, 0, 1, ct);
    else
      genlm_cuda_emu::detail::report("cublasGemmEx (bf16 inputs): an operand is not inside a device allocation");
    cudaFree(fa);
    cudaFree(fb);
    return r;
  }
  if (at != CUDA_R_32F || bt != CUDA_R_32F || ctype != CUDA_R_32F || !genlm_cuda_emu::blas::float_compute(ct)) {
    genlm_cuda_emu::detail::report("cublasGemmEx: only float32 storage with a 32F compute type is emulated");
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return genlm_cuda_emu::blas::gemm<float>("cublasGemmEx", h, ta, tb, m, n, k, static_cast<const float*>(alpha),
                                           static_cast<const float*>(A), lda, 0, static_cast<const float*>(B), ldb, 0,
                                           static_cast<const float*>(beta), static_cast<float*>(C), ldc, 0, 1, ct);
}
inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                 int n, int k, const void* alpha, const void* A, cudaDataType_t at,
                                                 int lda, long long sa, const void* B, cudaDataType_t bt, int ldb,
                                                 long long sb, const void* beta, void* C, cudaDataType_t ctype,
                                                 int ldc, long long sc, int batch, cublasComputeType_t ct,
                                                 cublasGemmAlgo_t) {
  if (at != CUDA_R_32F || bt != CUDA_R_32F || ctype != CUDA_R_32F || !genlm_cuda_emu::blas::float_compute(ct)) {
    genlm_cuda_emu::detail::report("cublasGemmStridedBatchedEx: only float32 storage with a 32F compute type is emulated");
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return genlm_cuda_emu::blas::gemm<float>("cublasGemmStridedBatchedEx", h, ta, tb, m, n, k,
                                           static_cast<const float*>(alpha), static_cast<const float*>(A), lda, sa,
                                           static_cast<const float*>(B), ldb, sb, static_cast<const float*>(beta),
                                           static_cast<float*>(C), ldc, sc, batch, ct);
}
inline cublasStatus_t cublasDgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const double* alpha, const double* A, int lda, const double* B, int ldb,
                                  const double* beta, double* C, int ldc) {
  return genlm_cuda_emu::blas::gemm<double>("cublasDgemm", h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C,
                                            ldc, 0, 1, CUBLAS_COMPUTE_64F);
}
inline cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                int n, int k, const double* alpha, const double* A, int lda,
                                                long long sa, const double* B, int ldb, long long sb,
                                                const double* beta, double* C, int ldc, long long sc, int batch) {
  return genlm_cuda_emu::blas::gemm<double>("cublasDgemmStridedBatched", h, ta, tb, m, n, k, alpha, A, lda, sa, B,
                                            ldb, sb, beta, C, ldc, sc, batch, CUBLAS_COMPUTE_64F);
}
