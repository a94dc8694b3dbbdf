// genlm/backend/cuda.cuh - the CUDA backend policy (nvcc-compiled translation units only).
//
//   genlm::GLM<configs::paper, genlm::cuda>        float32 everywhere (cuBLAS CUBLAS_COMPUTE_32F)
//   genlm::GLM<configs::paper, genlm::cuda_tf32>   TF32 tensor-core GEMMs
//   genlm::GLM<configs::paper, genlm::cuda_bf16>   bf16 autocast GEMMs, float32 master weights
//   genlm::GLM<configs::paper, genlm::cuda_fp16>   fp16 autocast GEMMs + loss scaling (trainer)
//
// cuda_backend<Precision> implements the op set of genlm::cpu (genlm/backend/cpu.hpp) with the
// same signatures on device pointers: layers call these ops and never branch on the backend.
// - Memory: the caching allocator of cuda/runtime.cuh; tensors live in device memory.
// - Products: cuBLAS (cublasGemmEx / cublasGemmStridedBatchedEx for float with the policy's
//   compute type, cublasDgemm(StridedBatched) for double), row-major via the transposed call.
// - Everything else: the kernels of cuda/kernels.cuh (same formulas and accumulation types as the
//   CPU loops; dropout masks bit-identical). Reductions (sum of squares, dot, non-finite count)
//   are deterministic two-pass CUB block reductions.
// - All work runs in order on one stream per device (cuda_context); ops that return a host value
//   (sum_squares, dot, count_nonfinite, count_input_faults) and copy_to_host synchronise that
//   stream (count_nonfinite_into only queues its count, into device memory); copy_from_host
//   does not (it stages the bytes in pinned memory and queues the copy).
// Precision: storage, activations, gradients and optimizer state are the model's scalar type in
// every policy; only float GEMMs change (see genlm/backend/precision.hpp). double GEMMs are always
// exact IEEE double.
//
// genlm-cuda-backend: ready
#pragma once
#if !defined(__CUDACC__) && !defined(GENLM_CUDA_EMULATOR)
#error "genlm/backend/cuda.cuh needs nvcc: compile this translation unit as CUDA (.cu) and link genlm::cuda"
#endif
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <genlm/backend/adamw_update.hpp>
#include <genlm/backend/cuda/kernels.cuh>
#include <genlm/backend/cuda/runtime.cuh>
#include <genlm/backend/ops_common.hpp>
#include <genlm/backend/precision.hpp>
#include <genlm/core/tensor.hpp>

namespace genlm {

namespace cuda_detail {
template <class P>
constexpr cublasComputeType_t compute_type() {
  if constexpr (std::is_same_v<P, precision::tf32>)
    return CUBLAS_COMPUTE_32F_FAST_TF32;
  else if constexpr (std::is_same_v<P, precision::bf16>)
    return CUBLAS_COMPUTE_32F_FAST_16BF;
  else if constexpr (std::is_same_v<P, precision::fp16>)
    return CUBLAS_COMPUTE_32F_FAST_16F;
  else
    return CUBLAS_COMPUTE_32F;
}
inline int to_int(index_t v, const char* what) {
  check<cuda_error>(v >= 0 && v <= index_t(0x7fffffff), "cuBLAS: ", what, " = ", v, " does not fit in int");
  return int(v);
}
}  // namespace cuda_detail

template <class Precision = precision::fp32>
struct cuda_backend {
  static_assert(std::is_same_v<Precision, ::genlm::precision::fp32> || std::is_same_v<Precision, ::genlm::precision::tf32> ||
                    std::is_same_v<Precision, ::genlm::precision::bf16> || std::is_same_v<Precision, ::genlm::precision::fp16>,
                "cuda_backend<Precision>: Precision must be ::genlm::precision::fp32, tf32, bf16 or fp16");
  static constexpr bool host_memory = false;
  using precision = Precision;
  static constexpr const char* name = std::is_same_v<Precision, ::genlm::precision::fp32>   ? "cuda"
                                      : std::is_same_v<Precision, ::genlm::precision::tf32> ? "cuda_tf32"
                                      : std::is_same_v<Precision, ::genlm::precision::bf16> ? "cuda_bf16"
                                                                                   : "cuda_fp16";

  static cuda_context& ctx() { return cuda_context::get(); }
  /// The stream every op of the current device runs on.
  static cudaStream_t stream() { return ctx().stream; }
  /// Waits for all work queued on the current device's stream (and reports its errors).
  static void synchronize() { GENLM_CUDA_CHECK(cudaStreamSynchronize(stream())); }

  // ---------------------------------------------------------------- memory
  template <class T>
  static T* allocate(index_t n) {
    check<cuda_error>(n >= 0, "cuda_backend::allocate: negative element count ", n);
    check<cuda_error>(std::uint64_t(n) <= std::numeric_limits<std::size_t>::max() / sizeof(T),
                      "cuda_backend::allocate: ", n, " elements of ", sizeof(T), " bytes overflow size_t");
    return static_cast<T*>(cuda_allocator::allocate(static_cast<std::size_t>(n) * sizeof(T)));
  }
  template <class T>
  static void deallocate(T* p) {
    cuda_allocator::deallocate(p);
  }
  template <class T>
  static void copy(T* dst, const T* src, index_t n) {
    if (n > 0 && dst != src)
      GENLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, std::size_t(n) * sizeof(T), cudaMemcpyDeviceToDevice, stream()));
  }
  /// Device -> host; returns when the data is on the host.
  template <class T>
  static void copy_to_host(T* host, const T* src, index_t n) {
    if (n <= 0) return;
    const cudaStream_t s = stream();
    GENLM_CUDA_CHECK(cudaMemcpyAsync(host, src, std::size_t(n) * sizeof(T), cudaMemcpyDeviceToHost, s));
    GENLM_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  /// Host -> device in stream order; the host buffer may be reused as soon as this returns. Staged
  /// through the device's pinned upload_ring: the host does not wait for the stream (the copy
  /// lands before any op queued after this call runs).
  template <class T>
  static void copy_from_host(T* dst, const T* host, index_t n) {
    if (n <= 0) return;
    cuda_context& c = ctx();
    c.uploads.copy(dst, host, std::size_t(n) * sizeof(T), c.stream);
  }

  // ---------------------------------------------------------------- elementwise
  template <class T>
  static void fill(T* x, index_t n, T v) {
    launch_1d("fill", n, &cuda_kernels::fill<T>, x, n, v);
  }
  template <class T>
  static void axpy(index_t n, T alpha, const T* x, T* y) {
    launch_1d("axpy", n, &cuda_kernels::axpy<T>, n, alpha, x, y);
  }
  template <class T>
  static void scale(index_t n, T alpha, T* x) {
    launch_1d("scale", n, &cuda_kernels::scale<T>, n, alpha, x);
  }
  template <class T>
  static void add(index_t n, const T* a, const T* b, T* y) {
    launch_1d("add", n, &cuda_kernels::add<T>, n, a, b, y);
  }

  // ---------------------------------------------------------------- GEMM (row-major)
  /// C(m,n) = alpha * op(A) op(B) + beta * C (as cpu::gemm). Row-major C = op(A) op(B) is the
  /// column-major product C^T = op(B)^T op(A)^T, so cuBLAS gets (B, A) and (n, m).
  template <class T>
  static void gemm(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* A, index_t lda,
                   const T* B, index_t ldb, T beta, T* C, index_t ldc) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
      launch_1d("scale_matrix (gemm with k = 0)", m * n, &cuda_kernels::scale_matrix<T>, C, m, n, ldc, beta);
      return;
    }
    using cuda_detail::to_int;
    const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasHandle_t h = ctx().blas;
    if constexpr (std::is_same_v<T, double>) {
      GENLM_CUBLAS_CHECK(cublasDgemm(h, tb, ta, to_int(n, "n"), to_int(m, "m"), to_int(k, "k"), &alpha, B,
                                     to_int(ldb, "ldb"), A, to_int(lda, "lda"), &beta, C, to_int(ldc, "ldc")));
    } else {
      static_assert(std::is_same_v<T, float>, "cuda_backend::gemm: float or double");
      GENLM_CUBLAS_CHECK(cublasGemmEx(h, tb, ta, to_int(n, "n"), to_int(m, "m"), to_int(k, "k"), &alpha, B,
                                      CUDA_R_32F, to_int(ldb, "ldb"), A, CUDA_R_32F, to_int(lda, "lda"), &beta, C,
                                      CUDA_R_32F, to_int(ldc, "ldc"), cuda_detail::compute_type<Precision>(),
                                      CUBLAS_GEMM_DEFAULT));
    }
  }

  /// `batch` independent GEMMs; matrix i starts at A + i*stride_a etc. (stride 0 = shared).
  template <class T>
  static void gemm_strided_batched(bool trans_a, bool trans_b, index_t m, index_t n, index_t k, T alpha, const T* A,
                                   index_t lda, index_t stride_a, const T* B, index_t ldb, index_t stride_b, T beta,
                                   T* C, index_t ldc, index_t stride_c, index_t batch) {
    if (m == 0 || n == 0 || batch == 0) return;
    if (k == 0) {
      for (index_t i = 0; i < batch; ++i) gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C + i * stride_c, ldc);
      return;
    }
    using cuda_detail::to_int;
    const cublasOperation_t ta = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasHandle_t h = ctx().blas;
    if constexpr (std::is_same_v<T, double>) {
      GENLM_CUBLAS_CHECK(cublasDgemmStridedBatched(h, tb, ta, to_int(n, "n"), to_int(m, "m"), to_int(k, "k"), &alpha,
                                                   B, to_int(ldb, "ldb"), stride_b, A, to_int(lda, "lda"), stride_a,
                                                   &beta, C, to_int(ldc, "ldc"), stride_c, to_int(batch, "batch")));
    } else {
      static_assert(std::is_same_v<T, float>, "cuda_backend::gemm_strided_batched: float or double");
      GENLM_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
          h, tb, ta, to_int(n, "n"), to_int(m, "m"), to_int(k, "k"), &alpha, B, CUDA_R_32F, to_int(ldb, "ldb"),
          stride_b, A, CUDA_R_32F, to_int(lda, "lda"), stride_a, &beta, C, CUDA_R_32F, to_int(ldc, "ldc"), stride_c,
          to_int(batch, "batch"), cuda_detail::compute_type<Precision>(), CUBLAS_GEMM_DEFAULT));
    }
  }

  // ---------------------------------------------------------------- bias / reductions
  template <class T>
  static void add_bias(T* y, const T* b, index_t rows, index_t cols) {
    launch_1d("add_bias", rows * cols, &cuda_kernels::add_bias<T>, y, b, rows, cols);
  }
  /// y(rows, cols) += b, then g = gelu(y) (as cpu::bias_gelu_forward).
  template <class T>
  static void bias_gelu_forward(T* y, const T* b, T* g, index_t rows, index_t cols) {
    launch_1d("bias_gelu_forward", rows * cols, &cuda_kernels::bias_gelu_forward<T>, y, b, g, rows, cols);
  }
  /// y = dropout(y + b) + res (as cpu::bias_dropout_add; keep == nullptr: no dropout).
  template <class T>
  static void bias_dropout_add(T* y, const T* b, const T* res, std::uint8_t* keep, index_t rows, index_t cols,
                               double p, std::uint64_t key, std::uint64_t step) {
    const index_t n = rows * cols;
    launch_1d("bias_dropout_add", (n + 3) / 4, &cuda_kernels::bias_dropout_add<T>, y, b, res, keep, n, cols, float(p),
              keep ? T(1.0 / (1.0 - p)) : T(1), key, step);
  }
  template <class T>
  static void sum_rows(const T* dy, index_t rows, index_t cols, T* db, T beta) {
    launch_column_sums<1, T>(rows, cols, [&](dim3 grid, index_t chunk_rows, T* part) {
      launch("sum_rows", grid, cuda_kernels::colsum_threads, &cuda_kernels::sum_rows<T>, dy, rows, chunk_rows, cols, db,
             beta, part);
    }, [&](const T* part, index_t chunks) {
      launch_1d("sum_rows_finish", cols, &cuda_kernels::sum_rows_finish<T>, part, chunks, cols, db, beta);
    });
  }
  template <class T>
  static double sum_squares(const T* x, index_t n) {
    return reduce(x, static_cast<const T*>(nullptr), n, cuda_kernels::square_op{});
  }
  template <class T>
  static double dot(const T* x, const T* y, index_t n) {
    return reduce(x, y, n, cuda_kernels::dot_op{});
  }
  template <class T>
  static index_t count_nonfinite(const T* x, index_t n) {
    if (n <= 0) return 0;
    cuda_context& c = ctx();
    count_nonfinite_into(x, n, c.d_result);
    return index_t(fetch_result(c));
  }
  /// Queued: *out (device memory) = the count, when the stream gets there (no wait).
  template <class T>
  static void count_nonfinite_into(const T* x, index_t n, double* out) {
    cuda_context& c = ctx();
    const int parts = int(std::min<index_t>(cuda_context::reduce_blocks, cuda_kernels::grid_for(n)));
    launch("count_nonfinite_partial", parts, cuda_kernels::block_threads, &cuda_kernels::count_nonfinite_partial<T>,
           x, n, c.d_count);
    count_final(c, parts, out);
  }
  /// Counted on the device and read back: one wait (see cpu_backend::count_input_faults).
  template <class T>
  static index_t count_input_faults(const T* x, index_t n, const T* mask, index_t B, index_t L) {
    if (n <= 0 && B <= 0) return 0;
    cuda_context& c = ctx();
    const int parts =
        int(std::min<index_t>(cuda_context::reduce_blocks, cuda_kernels::grid_for(std::max(n, B))));
    launch("input_faults_partial", parts, cuda_kernels::block_threads, &cuda_kernels::input_faults_partial<T>, x, n,
           mask, B, L, c.d_count);
    count_final(c, parts, c.d_result);
    return index_t(fetch_result(c));
  }
  template <class T>
  static void clip_by_value(T* x, index_t n, T c) {
    launch_1d("clip_by_value", n, &cuda_kernels::clip_by_value<T>, x, n, c);
  }

  // ---------------------------------------------------------------- layer norm over the last dim
  template <class T>
  static void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, index_t rows,
                                 index_t cols, double eps) {
    launch_rows("layer_norm_forward", rows, &cuda_kernels::layer_norm_forward<T>, x, gamma, beta, y, mean, rstd, rows,
                cols, eps);
  }
  /// dx += LN backward (accumulate false: dx = ...); dgamma, dbeta assigned.
  template <class T>
  static void layer_norm_backward(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, T* dx,
                                  T* dgamma, T* dbeta, index_t rows, index_t cols, bool accumulate = true) {
    launch_rows("layer_norm_backward_dx", rows, &cuda_kernels::layer_norm_backward_dx<T>, dy, x, gamma, mean, rstd, dx,
                rows, cols, accumulate);
    launch_column_sums<2, T>(rows, cols, [&](dim3 grid, index_t chunk_rows, T* part) {
      launch("layer_norm_backward_params", grid, cuda_kernels::colsum_threads,
             &cuda_kernels::layer_norm_backward_params<T>, dy, x, mean, rstd, dgamma, dbeta, rows, chunk_rows, cols, part);
    }, [&](const T* part, index_t chunks) {
      launch_1d("layer_norm_backward_params_finish", cols, &cuda_kernels::layer_norm_backward_params_finish<T>, part,
                chunks, cols, dgamma, dbeta);
    });
  }

  // ---------------------------------------------------------------- activations
  template <class T>
  static void gelu_forward(const T* x, T* y, index_t n) {
    launch_1d("gelu_forward", n, &cuda_kernels::gelu_forward<T>, x, y, n);
  }
  /// dx += dy * gelu'(x) (accumulate false: dx = ...).
  template <class T>
  static void gelu_backward(const T* x, const T* dy, T* dx, index_t n, bool accumulate = true) {
    launch_1d("gelu_backward", n, &cuda_kernels::gelu_backward<T>, x, dy, dx, n, accumulate);
  }

  // ---------------------------------------------------------------- dropout (inverted)
  template <class T>
  static void dropout_forward(const T* x, T* y, std::uint8_t* keep, index_t n, double p, std::uint64_t key,
                              std::uint64_t step) {
    // one thread per Philox block of 4 elements
    launch_1d("dropout_forward", (n + 3) / 4, &cuda_kernels::dropout_forward<T>, x, y, keep, n, float(p),
              T(1.0 / (1.0 - p)), key, step);
  }
  template <class T>
  static void dropout_backward(const T* dy, const std::uint8_t* keep, T* dx, index_t n, double p, bool accumulate) {
    launch_1d("dropout_backward", n, &cuda_kernels::dropout_backward<T>, dy, keep, dx, n, T(1.0 / (1.0 - p)),
              accumulate);
  }

  // ---------------------------------------------------------------- layout
  template <class T>
  static void permute_0213(const T* src, T* dst, index_t A, index_t B, index_t C, index_t D, bool accumulate,
                           const T* bias = nullptr) {
    launch_1d("permute_0213", A * B * C * D, &cuda_kernels::permute_0213<T>, src, dst, A, B, C, D, accumulate, bias);
  }

  // ---------------------------------------------------------------- relative position terms
  template <class T>
  static void relpos_add(T* S, const T* QE, const T* KE, index_t batch, index_t L) {
    launch_1d("relpos_add", batch * L * L, &cuda_kernels::relpos_add<T>, S, QE, KE, batch, L);
  }
  template <class T>
  static void relpos_grad(const T* dS, T* dQE, T* dKE, index_t batch, index_t L) {
    launch_1d("relpos_grad", batch * L * (2 * L - 1), &cuda_kernels::relpos_grad<T>, dS, dQE, dKE, batch, L);
  }

  // ---------------------------------------------------------------- attention softmax
  template <class T>
  static void masked_softmax_forward(const T* S, const T* mask, T* A, index_t B, index_t H, index_t L, T scale) {
    const index_t rows = B * H * L;
    launch_rows("masked_softmax_forward", rows, &cuda_kernels::masked_softmax_forward<T>, S, mask, A, rows, H, L,
                scale);
  }
  template <class T>
  static void softmax_backward(const T* A, const T* dA, T* dS, index_t rows, index_t L, T scale) {
    launch_rows("softmax_backward", rows, &cuda_kernels::softmax_backward<T>, A, dA, dS, rows, L, scale);
  }
  /// relpos_add + masked_softmax_forward in one kernel (as cpu::relpos_softmax_forward).
  template <class T>
  static void relpos_softmax_forward(const T* S, const T* QE, const T* KE, const T* mask, T* A, index_t B, index_t H,
                                     index_t L, T scale) {
    const index_t rows = B * H * L;
    launch_rows("relpos_softmax_forward", rows, &cuda_kernels::relpos_softmax_forward<T>, S, QE, KE, mask, A, rows, H,
                L, scale);
  }
  /// softmax_backward then relpos_grad (as cpu::softmax_relpos_backward): two kernels here, since
  /// the dKE gather reads columns of dS that other warps write.
  template <class T>
  static void softmax_relpos_backward(const T* A, const T* dA, T* dS, T* dQE, T* dKE, index_t batch, index_t L,
                                      T scale) {
    softmax_backward(A, dA, dS, batch * L, L, scale);
    relpos_grad(dS, dQE, dKE, batch, L);
  }

  // ---------------------------------------------------------------- masked-gene loss
  /// As cpu::masked_gene_loss_grad; rows, labels, terms and choice are device pointers. d_hyp and
  /// d_logits must not alias hyp or logits (every lane of a warp reads all K logits of its gene
  /// while others write).
  template <class T>
  static void masked_gene_loss_grad(const T* hyp, const T* logits, index_t K, index_t D, const std::int64_t* rows,
                                    const double* labels, index_t n, double mse_scale, double ce_scale, T* d_hyp,
                                    T* d_logits, double* terms, std::int32_t* choice) {
    launch_rows("masked_gene_loss_grad", n, &cuda_kernels::masked_gene_loss_grad<T>, hyp, logits, K, D, rows, labels,
                n, mse_scale, ce_scale, d_hyp, d_logits, terms, choice);
  }

  /// As cpu::masked_gene_metrics_rows (all pointers on the device); the sums over D in another
  /// order, so a distance may differ from the CPU's in its last bits (a near-tie may then resolve
  /// to another label).
  template <class T>
  static void masked_gene_metrics_rows(const T* hyp, index_t K, index_t D, const std::int64_t* rows,
                                       const double* labels, const std::int32_t* choice, index_t n, double* out) {
    launch_rows("masked_gene_metrics_rows", n, &cuda_kernels::masked_gene_metrics_rows<T>, hyp, K, D, rows, labels,
                choice, n, out);
  }

  // ---------------------------------------------------------------- optimiser
  /// One fused AdamW pass over the flat buffers (genlm/backend/adamw_update.hpp's update, as
  /// the CPU backend).
  template <class T>
  static void adamw_step(T* p, const T* g, T* m, T* v, index_t n, const adamw_hparams& h) {
    if (n <= 0) return;
    const auto k = optim_detail::make_coeffs<T>(h);
    if (k.torch_style)
      launch_1d("adamw_torch", n, &cuda_kernels::adamw_torch<T>, p, g, m, v, n, k);
    else
      launch_1d("adamw", n, &cuda_kernels::adamw<T>, p, g, m, v, n, k);
  }

 private:
  /// kernel<<<grid, block>>>(args) on the current device's stream; the launch is checked (and, with
  /// GENLM_CUDA_DEBUG_SYNC=1, its execution). Arguments convert to the kernel's parameter types.
  template <class... P, class... A>
  static void launch(const char* what, dim3 grid, unsigned block, void (*kernel)(P...), A... args) {
    const cudaStream_t s = stream();
    GENLM_CUDA_KERNEL_LAUNCH(kernel, grid, block, s, what)(static_cast<P>(args)...);
    cuda_detail::check_launch(what, s, __FILE__, __LINE__);
  }
  /// A grid-stride kernel over n items (nothing to launch for n <= 0).
  template <class... P, class... A>
  static void launch_1d(const char* what, index_t n, void (*kernel)(P...), A... args) {
    if (n > 0) launch(what, cuda_kernels::grid_for(n), cuda_kernels::block_threads, kernel, args...);
  }
  /// A warp-per-row kernel over `rows` rows (nothing to launch for rows <= 0).
  template <class... P, class... A>
  static void launch_rows(const char* what, index_t rows, void (*kernel)(P...), A... args) {
    if (rows > 0) launch(what, rows_grid(rows), cuda_kernels::block_threads, kernel, args...);
  }
  /// A tiled column-sum kernel of N sums per column over (rows, cols): up to colsum_single_max rows
  /// in one chunk (one launch), more split along the rows: chunks of chunk_rows rows (colsum_chunk,
  /// more when there would be over 65535 chunks: the grid's y limit), one block row each.
  /// sums(grid, chunk_rows, partial) launches the kernel; with one chunk partial is null (the
  /// kernel writes the results), else it is a (chunks, N, cols) buffer that finish(partial, chunks)
  /// adds up: the context's scratch (cuda_context::scratch, grown to the largest request, then
  /// reused: no allocation per call).
  template <int N, class T, class Sums, class Finish>
  static void launch_column_sums(index_t rows, index_t cols, Sums sums, Finish finish) {
    if (cols <= 0) return;
    const index_t chunk_rows = rows <= cuda_kernels::colsum_single_max
                                   ? std::max<index_t>(rows, 1)
                                   : std::max<index_t>(cuda_kernels::colsum_chunk, (rows + 65534) / 65535);
    const index_t chunks = std::max<index_t>(1, (rows + chunk_rows - 1) / chunk_rows);
    if (chunks == 1) return sums(dim3(colsum_grid(cols)), chunk_rows, static_cast<T*>(nullptr));
    T* part = static_cast<T*>(ctx().scratch(std::size_t(chunks * N * cols) * sizeof(T)));
    sums(dim3(colsum_grid(cols), unsigned(chunks)), chunk_rows, part);
    finish(static_cast<const T*>(part), chunks);
  }
  /// Blocks for the tiled column-sum kernels (cols > 0).
  static unsigned colsum_grid(index_t cols) {
    check<cuda_error>(cols / cuda_kernels::colsum_width < index_t(0x7fffffff), "cuda_backend: ", cols,
                      " columns exceed the grid limit");
    return unsigned((cols + cuda_kernels::colsum_width - 1) / cuda_kernels::colsum_width);
  }
  /// Blocks for the warp-per-row kernels.
  static unsigned rows_grid(index_t rows) {
    const index_t b = (rows + cuda_kernels::warps_per_block - 1) / cuda_kernels::warps_per_block;
    check<cuda_error>(b <= index_t(0x7fffffff), "cuda_backend: ", rows, " rows exceed the grid limit");
    return unsigned(b);
  }
  /// out[0] = the sum of the first `parts` per-block counts of c.d_count (device memory).
  static void count_final(cuda_context& c, int parts, double* out) {
    // launched directly: the host compiler cannot take the address of this non-dependent kernel
    // template-id in nvcc's generated code (launch() fails to deduce it)
    GENLM_CUDA_KERNEL_LAUNCH(cuda_kernels::count_final<0>, 1, cuda_kernels::block_threads, c.stream,
                             "count_final")(c.d_count, parts, out);
    cuda_detail::check_launch("count_final", c.stream, __FILE__, __LINE__);
  }
  static double fetch_result(cuda_context& c) {
    GENLM_CUDA_CHECK(cudaMemcpyAsync(c.h_result, c.d_result, sizeof(double), cudaMemcpyDeviceToHost, c.stream));
    GENLM_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    return c.h_result[0];
  }
  template <class T, class F>
  static double reduce(const T* x, const T* y, index_t n, F f) {
    if (n <= 0) return 0.0;
    cuda_context& c = ctx();
    const int parts = int(std::min<index_t>(cuda_context::reduce_blocks, cuda_kernels::grid_for(n)));
    launch("reduce_partial", parts, cuda_kernels::block_threads, &cuda_kernels::reduce_partial<T, F>, x, y, n,
           c.d_partial, f);
    GENLM_CUDA_KERNEL_LAUNCH(cuda_kernels::reduce_final<0>, 1, cuda_kernels::block_threads, c.stream,
                             "reduce_final")(c.d_partial, parts, c.d_result);
    cuda_detail::check_launch("reduce_final", c.stream, __FILE__, __LINE__);  // direct: see count_final
    return fetch_result(c);
  }
};

using cuda = cuda_backend<precision::fp32>;
using cuda_tf32 = cuda_backend<precision::tf32>;
using cuda_bf16 = cuda_backend<precision::bf16>;
using cuda_fp16 = cuda_backend<precision::fp16>;

}  // namespace genlm
