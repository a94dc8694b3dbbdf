// genlm/backend/cpu.hpp - the CPU backend policy: host memory, Eigen/BLAS GEMM and loop kernels.
//
// Every backend implements the same static op set on raw pointers into its own memory (row-major,
// sizes at run time); layers call these ops and never branch on the backend. The CUDA backend
// (genlm/backend/cuda.cuh, nvcc only) mirrors each op.
//
// GEMM path (measured, see docs/PERFORMANCE.md): with GENLM_USE_CBLAS defined (CMake option
// GENLM_USE_OPENBLAS, default ON when OpenBLAS is found) gemm calls cblas_{s,d}gemm from
// OpenBLAS; otherwise Eigen's own product kernels (fast under clang, ~55% of peak under g++ 12).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include <Eigen/Core>

#include <genlm/core/error.hpp>
#include <genlm/core/random.hpp>
#include <genlm/core/tensor.hpp>

#if defined(GENLM_USE_CBLAS)
#include <cblas.h>
#endif

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
};

struct cpu {
  static constexpr bool host_memory = true;
  static constexpr const char* name = "cpu";

  // ---------------------------------------------------------------- memory
  template <class T>
  static T* allocate(index_t n) {
    void* p = ::operator new[](static_cast<std::size_t>(n) * sizeof(T), std::align_val_t{64});
    return static_cast<T*>(p);
  }
  template <class T>
  static void deallocate(T* p) {
    ::operator delete[](p, std::align_val_t{64});
  }
  template <class T>
  static void copy(T* dst, const T* src, index_t n) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
  }
  template <class T>
  static void copy_to_host(T* host, const T* src, index_t n) {
    copy(host, src, n);
  }
  template <class T>
  static void copy_from_host(T* dst, const T* host, index_t n) {
    copy(dst, host, n);
  }
  static void synchronize() {}

  // ---------------------------------------------------------------- elementwise
  template <class T>
  static void fill(T* x, index_t n, T v) {
    std::fill(x, x + n, v);
  }
  /// y += alpha * x
  template <class T>
  static void axpy(index_t n, T alpha, const T* x, T* y) {
    for (index_t i = 0; i < n; ++i) y[i] += alpha * x[i];
  }
  /// x *= alpha
  template <class T>
  static void scale(index_t n, T alpha, T* x) {
    for (index_t i = 0; i < n; ++i) x[i] *= alpha;
  }
  /// y = a + b (elementwise), y may alias a or b.
  template <class T>
  static void add(index_t n, const T* a, const T* b, T* y) {
    for (index_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
  }

  // ---------------------------------------------------------------- GEMM (row-major)
  /// C(m,n) = alpha * op(A) op(B) + beta * C, op(A) (m,k), op(B) (k,n); lda/ldb/ldc are row
  /// strides of the stored (untransposed) matrices. beta == 0 never reads C.
  template <class T>
  static void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* A,
                   index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
      for (index_t i = 0; i < m; ++i)
        for (index_t j = 0; j < n; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
      return;
    }
#if defined(GENLM_USE_CBLAS)
    // Small products go to Eigen's single-threaded kernels: OpenBLAS's thread start-up costs
    // more than the product itself below ~2^18 multiply-adds (measured: see docs/PERFORMANCE.md).
    if (m * n * k >= cblas_min_work) {
      cblas_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
#endif
    eigen_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  }

#if defined(GENLM_USE_CBLAS)
  static constexpr index_t cblas_min_work = index_t(1) << 18;
  template <class T>
  static void cblas_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* A,
                         index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    const auto ta = trans_a ? CblasTrans : CblasNoTrans;
    const auto tb = trans_b ? CblasTrans : CblasNoTrans;
    if constexpr (std::is_same_v<T, float>)
      cblas_sgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), alpha, A, int(lda), B, int(ldb), beta, C,
                  int(ldc));
    else
      cblas_dgemm(CblasRowMajor, ta, tb, int(m), int(n), int(k), alpha, A, int(lda), B, int(ldb), beta, C,
                  int(ldc));
  }
#endif

  /// Eigen's product kernels (row-major maps, no temporaries with noalias).
  template <class T>
  static void eigen_gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* A,
                         index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
    Eigen::Map<Mat, 0, Eigen::OuterStride<>> Cm(C, m, n, Eigen::OuterStride<>(ldc));
    CMap Am(A, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
    CMap Bm(B, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
    if (beta == T(0))
      Cm.setZero();
    else if (beta != T(1))
      Cm *= beta;
    if (!trans_a && !trans_b)
      Cm.noalias() += alpha * (Am * Bm);
    else if (!trans_a && trans_b)
      Cm.noalias() += alpha * (Am * Bm.transpose());
    else if (trans_a && !trans_b)
      Cm.noalias() += alpha * (Am.transpose() * Bm);
    else
      Cm.noalias() += alpha * (Am.transpose() * Bm.transpose());
  }

  /// `batch` independent GEMMs; matrix i starts at A + i*stride_a etc. (stride 0 = shared).
  template <class T>
  static void gemm_strided_batched(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha,
                                   const T* A, index_t lda, index_t stride_a, const T* B, index_t ldb,
                                   index_t stride_b, T beta, T* C, index_t ldc, index_t stride_c,
                                   index_t batch) {
    for (index_t i = 0; i < batch; ++i)
      gemm(trans_a, trans_b, m, n, k, alpha, A + i * stride_a, lda, B + i * stride_b, ldb, beta,
           C + i * stride_c, ldc);
  }

  // ---------------------------------------------------------------- bias / reductions
  /// y(rows, cols) += b(cols) broadcast over rows.
  template <class T>
  static void add_bias(T* y, const T* b, index_t rows, index_t cols) {
    for (index_t r = 0; r < rows; ++r) {
      T* yr = y + r * cols;
      for (index_t c = 0; c < cols; ++c) yr[c] += b[c];
    }
  }
  /// db(cols) = beta * db + sum over rows of dy(rows, cols).
  template <class T>
  static void sum_rows(const T* dy, index_t rows, index_t cols, T* db, T beta) {
    for (index_t c = 0; c < cols; ++c) db[c] = beta == T(0) ? T(0) : beta * db[c];
    for (index_t r = 0; r < rows; ++r) {
      const T* d = dy + r * cols;
      for (index_t c = 0; c < cols; ++c) db[c] += d[c];
    }
  }
  /// Sum of squares (accumulated in double).
  template <class T>
  static double sum_squares(const T* x, index_t n) {
    double s = 0;
    for (index_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
    return s;
  }
  /// Dot product (accumulated in double).
  template <class T>
  static double dot(const T* x, const T* y, index_t n) {
    double s = 0;
    for (index_t i = 0; i < n; ++i) s += double(x[i]) * double(y[i]);
    return s;
  }
  /// Number of NaN/Inf values.
  template <class T>
  static index_t count_nonfinite(const T* x, index_t n) {
    index_t c = 0;
    for (index_t i = 0; i < n; ++i) c += !std::isfinite(x[i]);
    return c;
  }
  /// x = clamp(x, -c, c)  (torch.nn.utils.clip_grad_value_)
  template <class T>
  static void clip_by_value(T* x, index_t n, T c) {
    for (index_t i = 0; i < n; ++i) x[i] = std::clamp(x[i], -c, c);
  }

  // ---------------------------------------------------------------- layer norm over the last dim
  /// y = (x - mean) * rstd * gamma + beta per row; saves mean and rstd (rows).
  template <class T>
  static void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd,
                                 index_t rows, index_t cols, double eps) {
    for (index_t r = 0; r < rows; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      double mu = 0;
      for (index_t c = 0; c < cols; ++c) mu += xr[c];
      mu /= double(cols);
      double var = 0;
      for (index_t c = 0; c < cols; ++c) var += (xr[c] - mu) * (xr[c] - mu);
      var /= double(cols);
      const double rs = 1.0 / std::sqrt(var + eps);
      mean[r] = T(mu);
      rstd[r] = T(rs);
      for (index_t c = 0; c < cols; ++c) yr[c] = T((xr[c] - mu) * rs) * gamma[c] + beta[c];
    }
  }
  /// dx += LN backward; dgamma, dbeta assigned (summed over rows).
  template <class T>
  static void layer_norm_backward(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd,
                                  T* dx, T* dgamma, T* dbeta, index_t rows, index_t cols) {
    std::fill(dgamma, dgamma + cols, T(0));
    std::fill(dbeta, dbeta + cols, T(0));
    for (index_t r = 0; r < rows; ++r) {
      const T* dyr = dy + r * cols;
      const T* xr = x + r * cols;
      T* dxr = dx + r * cols;
      const double mu = mean[r], rs = rstd[r];
      double sum_g = 0, sum_gx = 0;  // sums of g = dy*gamma and g*xhat
      for (index_t c = 0; c < cols; ++c) {
        const double xhat = (xr[c] - mu) * rs;
        const double g = double(dyr[c]) * gamma[c];
        sum_g += g;
        sum_gx += g * xhat;
        dgamma[c] += T(dyr[c] * xhat);
        dbeta[c] += dyr[c];
      }
      const double inv_n = 1.0 / double(cols);
      for (index_t c = 0; c < cols; ++c) {
        const double xhat = (xr[c] - mu) * rs;
        const double g = double(dyr[c]) * gamma[c];
        dxr[c] += T(rs * (g - inv_n * sum_g - xhat * inv_n * sum_gx));
      }
    }
  }

  // ---------------------------------------------------------------- activations
  /// Exact GELU: 0.5 x (1 + erf(x / sqrt 2)).
  template <class T>
  static void gelu_forward(const T* x, T* y, index_t n) {
    constexpr double r2 = 0.70710678118654752440;
    for (index_t i = 0; i < n; ++i) y[i] = T(0.5 * x[i] * (1.0 + std::erf(x[i] * r2)));
  }
  /// dx += dy * (Phi(x) + x phi(x)).
  template <class T>
  static void gelu_backward(const T* x, const T* dy, T* dx, index_t n) {
    constexpr double r2 = 0.70710678118654752440, inv_sqrt_2pi = 0.39894228040143267794;
    for (index_t i = 0; i < n; ++i) {
      const double xv = x[i];
      const double d = 0.5 * (1.0 + std::erf(xv * r2)) + xv * inv_sqrt_2pi * std::exp(-0.5 * xv * xv);
      dx[i] += T(dy[i] * d);
    }
  }

  // ---------------------------------------------------------------- dropout (inverted)
  /// keep[i] = uniform(key, step, i) >= p; y = x * keep / (1 - p). y may alias x.
  template <class T>
  static void dropout_forward(const T* x, T* y, std::uint8_t* keep, index_t n, double p, std::uint64_t key,
                              std::uint64_t step) {
    const T s = T(1.0 / (1.0 - p));
    for (index_t i = 0; i < n; ++i) {
      const bool k = stream_uniform(key, step, std::uint64_t(i)) >= float(p);
      keep[i] = k;
      y[i] = k ? x[i] * s : T(0);
    }
  }
  /// dx += dy * keep / (1 - p). dx may alias dy only when dx held zeros... use accumulate=false
  template <class T>
  static void dropout_backward(const T* dy, const std::uint8_t* keep, T* dx, index_t n, double p, bool accumulate) {
    const T s = T(1.0 / (1.0 - p));
    for (index_t i = 0; i < n; ++i) {
      const T v = keep[i] ? dy[i] * s : T(0);
      dx[i] = accumulate ? dx[i] + v : v;
    }
  }

  // ---------------------------------------------------------------- layout
  /// dst(a, c, b, d) (+)= src(a, b, c, d): (B, L, heads, hd) <-> (B, heads, L, hd).
  template <class T>
  static void permute_0213(const T* src, T* dst, index_t A, index_t B, index_t C, index_t D, bool accumulate) {
    for (index_t a = 0; a < A; ++a)
      for (index_t b = 0; b < B; ++b)
        for (index_t c = 0; c < C; ++c) {
          const T* s = src + ((a * B + b) * C + c) * D;
          T* d = dst + ((a * C + c) * B + b) * D;
          if (accumulate)
            for (index_t e = 0; e < D; ++e) d[e] += s[e];
          else
            std::copy(s, s + D, d);
        }
  }

  // ---------------------------------------------------------------- relative position terms
  // For each of `batch` (= B*heads) score matrices S (L, L):
  //   S[l, r] += QE[l, l - r + L - 1] (+ KE[r, l - r + L - 1] when KE != nullptr)
  // where QE = Q E_sub^T, KE = K E_sub^T (L, 2L-1) and E_sub = rows M-L .. M+L-2 of the distance
  // table, so column j of QE is distance l - r = j - (L - 1).
  template <class T>
  static void relpos_add(T* S, const T* QE, const T* KE, index_t batch, index_t L) {
    const index_t W = 2 * L - 1;
    for (index_t b = 0; b < batch; ++b) {
      T* s = S + b * L * L;
      const T* qe = QE + b * L * W;
      const T* ke = KE ? KE + b * L * W : nullptr;
      for (index_t l = 0; l < L; ++l)
        for (index_t r = 0; r < L; ++r) {
          const index_t j = l - r + L - 1;
          T v = qe[l * W + j];
          if (ke) v += ke[r * W + j];
          s[l * L + r] += v;
        }
    }
  }
  /// Adjoint of relpos_add: dQE[l, j] = dS[l, l - j + L - 1] and dKE[r, j] = dS[r + j - L + 1, r]
  /// where those indices exist, 0 elsewhere (dKE skipped when nullptr).
  template <class T>
  static void relpos_grad(const T* dS, T* dQE, T* dKE, index_t batch, index_t L) {
    const index_t W = 2 * L - 1;
    for (index_t b = 0; b < batch; ++b) {
      const T* ds = dS + b * L * L;
      T* dqe = dQE + b * L * W;
      T* dke = dKE ? dKE + b * L * W : nullptr;
      std::fill(dqe, dqe + L * W, T(0));
      if (dke) std::fill(dke, dke + L * W, T(0));
      for (index_t l = 0; l < L; ++l)
        for (index_t r = 0; r < L; ++r) {
          const index_t j = l - r + L - 1;
          dqe[l * W + j] = ds[l * L + r];
          if (dke) dke[r * W + j] = ds[l * L + r];
        }
    }
  }

  // ---------------------------------------------------------------- attention softmax
  /// A[b,h,l,:] = softmax(scale * S[b,h,l,:] + (1 - m[b,:]) * lowest) for S (B, H, L, L) and key
  /// mask m (B, L) (nullptr = no mask). lowest = numeric_limits<T>::lowest(), as Hugging Face's
  /// finfo(dtype).min. A may alias S.
  template <class T>
  static void masked_softmax_forward(const T* S, const T* mask, T* A, index_t B, index_t H, index_t L, T scale) {
    const T lowest = std::numeric_limits<T>::lowest();
    for (index_t b = 0; b < B; ++b)
      for (index_t h = 0; h < H; ++h)
        for (index_t l = 0; l < L; ++l) {
          const T* s = S + ((b * H + h) * L + l) * L;
          T* a = A + ((b * H + h) * L + l) * L;
          T mx = lowest;
          for (index_t r = 0; r < L; ++r) {
            T v = s[r] * scale;
            if (mask) v += (T(1) - mask[b * L + r]) * lowest;
            a[r] = v;
            mx = std::max(mx, v);
          }
          T sum = 0;
          for (index_t r = 0; r < L; ++r) {
            a[r] = std::exp(a[r] - mx);
            sum += a[r];
          }
          const T inv = T(1) / sum;
          for (index_t r = 0; r < L; ++r) a[r] *= inv;
        }
  }
  /// dS = scale * A * (dA - rowsum(dA * A)) over rows of length L; dS may alias dA.
  template <class T>
  static void softmax_backward(const T* A, const T* dA, T* dS, index_t rows, index_t L, T scale) {
    for (index_t i = 0; i < rows; ++i) {
      const T* a = A + i * L;
      const T* da = dA + i * L;
      T* ds = dS + i * L;
      T dotv = 0;
      for (index_t r = 0; r < L; ++r) dotv += a[r] * da[r];
      for (index_t r = 0; r < L; ++r) ds[r] = scale * a[r] * (da[r] - dotv);
    }
  }

  // ---------------------------------------------------------------- optimiser
  /// One fused AdamW pass over n parameters (flat buffer); see adamw_hparams.
  template <class T>
  static void adamw_step(T* p, const T* g, T* m, T* v, index_t n, const adamw_hparams& h) {
    const double b1 = h.beta1, b2 = h.beta2;
    const double bc1 = 1.0 - std::pow(b1, double(h.step));
    const double bc2 = 1.0 - std::pow(b2, double(h.step));
    if (h.torch_style) {
      const double decay = 1.0 - h.lr * h.weight_decay, step_size = h.lr / bc1, sbc2 = std::sqrt(bc2);
      for (index_t i = 0; i < n; ++i) {
        p[i] = T(p[i] * decay);
        m[i] = T(b1 * m[i] + (1 - b1) * g[i]);
        v[i] = T(b2 * v[i] + (1 - b2) * double(g[i]) * g[i]);
        p[i] = T(p[i] - step_size * m[i] / (std::sqrt(double(v[i])) / sbc2 + h.eps));
      }
    } else {
      const double step_size = h.lr * std::sqrt(bc2) / bc1, wd = h.lr * h.weight_decay;
      for (index_t i = 0; i < n; ++i) {
        m[i] = T(b1 * m[i] + (1 - b1) * g[i]);
        v[i] = T(b2 * v[i] + (1 - b2) * double(g[i]) * g[i]);
        p[i] = T(p[i] - step_size * m[i] / (std::sqrt(double(v[i])) + h.eps));
        if (wd != 0) p[i] = T(p[i] - wd * p[i]);
      }
    }
  }
};

}  // namespace genlm
