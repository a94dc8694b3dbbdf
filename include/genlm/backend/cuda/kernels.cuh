// genlm/backend/cuda/kernels.cuh - the CUDA backend's own kernels (nvcc only).
//
// Kernels are templated on the scalar type only; every size is a run-time argument (no
// per-shape instantiations). Each mirrors the loop of the same name in genlm/backend/cpu.hpp and
// keeps its accumulation type (double where the CPU uses double), so both backends compute the
// same function; dropout uses the same Philox streams and gives bit-identical masks.
// Indexing is 64-bit throughout; 1-D kernels use grid-stride loops.
#pragma once
#if !defined(__CUDACC__) && !defined(GENLM_CUDA_EMULATOR)
#error "genlm/backend/cuda/kernels.cuh needs nvcc: include it only from .cu translation units"
#endif
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include <cub/block/block_reduce.cuh>

#include <genlm/backend/adamw_update.hpp>
#include <genlm/backend/ops_common.hpp>
#include <genlm/core/random.hpp>
#include <genlm/core/tensor.hpp>

namespace genlm::cuda_kernels {

constexpr int block_threads = 256;
constexpr int warps_per_block = block_threads / 32;

#define GENLM_GRID_STRIDE(i, n) \
  for (index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += index_t(blockDim.x) * gridDim.x)

/// Blocks for a grid-stride loop over n items (at most 2^20 blocks; the loop covers the rest).
inline unsigned grid_for(index_t n, int threads = block_threads) {
  const index_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > (index_t(1) << 20) ? (index_t(1) << 20) : b));
}

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class T>
__device__ __forceinline__ T warp_max(T v) {
  for (int o = 16; o > 0; o >>= 1) {
    const T w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}
template <class T>
__device__ __forceinline__ T dev_lowest() {
  if constexpr (std::is_same_v<T, float>)
    return -3.402823466e+38f;
  else
    return -1.7976931348623157e+308;
}

// ------------------------------------------------------------------ elementwise
template <class T>
__global__ void fill(T* x, index_t n, T v) {
  GENLM_GRID_STRIDE(i, n) x[i] = v;
}
template <class T>
__global__ void axpy(index_t n, T alpha, const T* x, T* y) {
  GENLM_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}
template <class T>
__global__ void scale(index_t n, T alpha, T* x) {
  GENLM_GRID_STRIDE(i, n) x[i] *= alpha;
}
template <class T>
__global__ void add(index_t n, const T* a, const T* b, T* y) {
  GENLM_GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
/// C(m, n) (row stride ldc) = beta * C, or 0 when beta == 0 (GEMM with k == 0).
template <class T>
__global__ void scale_matrix(T* C, index_t m, index_t n, index_t ldc, T beta) {
  GENLM_GRID_STRIDE(i, m * n) {
    T& c = C[(i / n) * ldc + i % n];
    c = beta == T(0) ? T(0) : beta * c;
  }
}
using optim_detail::clamp_keep_nan;  // genlm/backend/adamw_update.hpp, shared with the CPU
template <class T>
__global__ void clip_by_value(T* x, index_t n, T c) {
  GENLM_GRID_STRIDE(i, n) x[i] = clamp_keep_nan(x[i], c);
}
template <class T>
__global__ void add_bias(T* y, const T* b, index_t rows, index_t cols) {
  GENLM_GRID_STRIDE(i, rows * cols) y[i] += b[i % cols];
}
// Column sums of a (rows, cols) matrix, tiled: a block of colsum_threads takes colsum_width
// adjacent columns (one per lane, so a warp reads 128 contiguous bytes of a float row) and
// colsum_groups row groups (warp g sums rows g, g + colsum_groups, ... in order); the group sums
// of a column are then added in group order. (One thread per column was too little parallelism:
// 1280 columns fill 5 of an H100's 132 SMs, each thread walking every row.) Matrices of more than
// colsum_single_max rows are also split along the rows: grid (column tiles, row chunks of
// colsum_chunk), each block writes its chunk's sums to a partial array and a second kernel adds the
// chunks in order (1920 rows x 1280 columns: 15 x 40 = 600 blocks instead of 40). Up to
// colsum_single_max rows (a paper-model batch of up to 34 windows of 30 genes) one launch sums all
// rows: a warp then walks at most 64 of them, a few microseconds of work, about what the second
// launch would cost (an estimate: the launches of a small-batch step are what it waits for; not
// measured on a GPU). The order depends on `rows` only, so results are reproducible run to run.
constexpr int colsum_width = 32, colsum_groups = 16, colsum_threads = colsum_width * colsum_groups;
constexpr index_t colsum_single_max = 1024;  // rows summed by one launch (one block row)
constexpr index_t colsum_chunk = 128;        // rows per block above that (more when grid.y would pass 65535)

/// The tiled core shared by sum_rows and layer_norm_backward_params: add_row(r, c, acc) adds row
/// r's N terms of column c into acc, for the rows [blockIdx.y * chunk_rows, + chunk_rows) of this
/// block's chunk. Every thread of the block must call it (it synchronises). Returns true in the
/// one thread that holds column c's N chunk totals in acc (group 0, c < cols).
template <int N, class T, class AddRow>
__device__ __forceinline__ bool column_sums(index_t rows, index_t chunk_rows, index_t cols, index_t& c, T (&acc)[N],
                                            AddRow add_row) {
  __shared__ T part[N][colsum_groups][colsum_width + 1];
  const int lane = int(threadIdx.x) % colsum_width, g = int(threadIdx.x) / colsum_width;
  c = index_t(blockIdx.x) * colsum_width + lane;
  const index_t r0 = index_t(blockIdx.y) * chunk_rows, r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  for (int j = 0; j < N; ++j) acc[j] = T(0);
  if (c < cols)
    for (index_t r = r0 + g; r < r1; r += colsum_groups) add_row(r, c, acc);
  for (int j = 0; j < N; ++j) part[j][g][lane] = acc[j];
  __syncthreads();
  if (g != 0 || c >= cols) return false;
  for (int j = 0; j < N; ++j) {
    acc[j] = T(0);
    for (int k = 0; k < colsum_groups; ++k) acc[j] += part[j][k][lane];
  }
  return true;
}
/// Adds column c's N chunk sums of partial (chunks, N, cols) in chunk order.
template <int N, class T>
__device__ __forceinline__ void column_chunks_total(const T* partial, index_t chunks, index_t cols, index_t c,
                                                    T (&acc)[N]) {
  for (int j = 0; j < N; ++j) acc[j] = T(0);
  for (index_t k = 0; k < chunks; ++k)
    for (int j = 0; j < N; ++j) acc[j] += partial[(k * N + j) * cols + c];
}

/// db[c] = beta * db[c] + sum_r dy[r, c] (db not read when beta == 0); block colsum_threads. With
/// more than one row chunk (gridDim.y > 1) the chunk sums go to partial (chunks, 1, cols) and
/// sum_rows_finish writes db.
template <class T>
__global__ void sum_rows(const T* dy, index_t rows, index_t chunk_rows, index_t cols, T* db, T beta, T* partial) {
  index_t c;
  T sum[1];
  if (!column_sums(rows, chunk_rows, cols, c, sum,
                   [&](index_t r, index_t col, T(&acc)[1]) { acc[0] += dy[r * cols + col]; }))
    return;
  if (gridDim.y == 1)
    db[c] = (beta == T(0) ? T(0) : beta * db[c]) + sum[0];
  else
    partial[index_t(blockIdx.y) * cols + c] = sum[0];
}
template <class T>
__global__ void sum_rows_finish(const T* partial, index_t chunks, index_t cols, T* db, T beta) {
  GENLM_GRID_STRIDE(c, cols) {
    T sum[1];
    column_chunks_total(partial, chunks, cols, c, sum);
    db[c] = (beta == T(0) ? T(0) : beta * db[c]) + sum[0];
  }
}

// ------------------------------------------------------------------ reductions (deterministic)
// Pass 1: a fixed grid; block b reduces a fixed grid-stride subset into partial[b]. Pass 2: one
// block reduces the partials. The order is fixed, so results are reproducible run to run.
template <class T, class F>
__global__ void reduce_partial(const T* x, const T* y, index_t n, double* partial, F f) {
  using br = cub::BlockReduce<double, block_threads>;
  __shared__ typename br::TempStorage tmp;
  double acc = 0;
  GENLM_GRID_STRIDE(i, n) acc += f(x, y, i);
  const double s = br(tmp).Sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
template <int = 0>
__global__ void reduce_final(const double* partial, int parts, double* out) {
  using br = cub::BlockReduce<double, block_threads>;
  __shared__ typename br::TempStorage tmp;
  double acc = 0;
  for (int i = threadIdx.x; i < parts; i += blockDim.x) acc += partial[i];
  const double s = br(tmp).Sum(acc);
  if (threadIdx.x == 0) out[0] = s;
}
struct square_op {
  template <class T>
  __device__ double operator()(const T* x, const T*, index_t i) const {
    return double(x[i]) * double(x[i]);
  }
};
struct dot_op {
  template <class T>
  __device__ double operator()(const T* x, const T* y, index_t i) const {
    return double(x[i]) * double(y[i]);
  }
};
template <class T>
__global__ void count_nonfinite_partial(const T* x, index_t n, unsigned long long* partial) {
  using br = cub::BlockReduce<unsigned long long, block_threads>;
  __shared__ typename br::TempStorage tmp;
  unsigned long long c = 0;
  GENLM_GRID_STRIDE(i, n) c += !isfinite(x[i]);
  const unsigned long long s = br(tmp).Sum(c);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
// Faults of a model input (cpu_backend::count_input_faults): NaN/Inf values of x (n), and each
// mask row's faults (mask_row_faults, backend/ops_common.hpp); the rows are strided over the grid.
template <class T>
__global__ void input_faults_partial(const T* x, index_t n, const T* mask, index_t B, index_t L,
                                     unsigned long long* partial) {
  using br = cub::BlockReduce<unsigned long long, block_threads>;
  __shared__ typename br::TempStorage tmp;
  unsigned long long c = 0;
  GENLM_GRID_STRIDE(i, n) c += !isfinite(x[i]);
  GENLM_GRID_STRIDE(b, B) c += mask_row_faults(mask + b * L, L);
  const unsigned long long s = br(tmp).Sum(c);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
template <int = 0>
__global__ void count_final(const unsigned long long* partial, int parts, double* out) {
  using br = cub::BlockReduce<unsigned long long, block_threads>;
  __shared__ typename br::TempStorage tmp;
  unsigned long long c = 0;
  for (int i = threadIdx.x; i < parts; i += blockDim.x) c += partial[i];
  const unsigned long long s = br(tmp).Sum(c);
  if (threadIdx.x == 0) out[0] = double(s);  // exact below 2^53
}

// ------------------------------------------------------------------ layer norm (warp per row)
template <class T>
__global__ void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, index_t rows,
                                   index_t cols, double eps) {
  const index_t row = index_t(blockIdx.x) * warps_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T* xr = x + row * cols;
  T* yr = y + row * cols;
  double s = 0;
  for (index_t c = lane; c < cols; c += 32) s += double(xr[c]);
  const double mu = warp_sum(s) / double(cols);
  double v = 0;
  for (index_t c = lane; c < cols; c += 32) {
    const double d = double(xr[c]) - mu;
    v += d * d;
  }
  const double var = warp_sum(v) / double(cols);
  const double rs = 1.0 / sqrt(var + eps);
  if (lane == 0) {
    mean[row] = T(mu);
    rstd[row] = T(rs);
  }
  if constexpr (std::is_same_v<T, float>) {
    const float muf = float(mu), rsf = float(rs);
    for (index_t c = lane; c < cols; c += 32) yr[c] = ((xr[c] - muf) * rsf) * gamma[c] + beta[c];
  } else {
    for (index_t c = lane; c < cols; c += 32) yr[c] = T((xr[c] - mu) * rs) * gamma[c] + beta[c];
  }
}
/// dx += rs * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma (warp per row); accumulate
/// false: dx = ... (dx's old contents never read).
template <class T>
__global__ void layer_norm_backward_dx(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, T* dx,
                                       index_t rows, index_t cols, bool accumulate) {
  const index_t row = index_t(blockIdx.x) * warps_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T* dyr = dy + row * cols;
  const T* xr = x + row * cols;
  T* dxr = dx + row * cols;
  const double mu = mean[row], rs = rstd[row];
  double sg = 0, sgx = 0;
  for (index_t c = lane; c < cols; c += 32) {
    const double g = double(dyr[c]) * gamma[c];
    sg += g;
    sgx += g * ((xr[c] - mu) * rs);
  }
  const double a = warp_sum(sg) / double(cols), b = warp_sum(sgx) / double(cols);
  for (index_t c = lane; c < cols; c += 32) {
    const double xhat = (xr[c] - mu) * rs;
    const double g = double(dyr[c]) * gamma[c];
    const T v = T(rs * (g - a - xhat * b));
    dxr[c] = accumulate ? dxr[c] + v : v;
  }
}
/// dgamma[c] = sum_r dy * xhat, dbeta[c] = sum_r dy (assigned), tiled and split as sum_rows
/// (column_sums; partial (chunks, 2, cols), then layer_norm_backward_params_finish).
template <class T>
__global__ void layer_norm_backward_params(const T* dy, const T* x, const T* mean, const T* rstd, T* dgamma, T* dbeta,
                                           index_t rows, index_t chunk_rows, index_t cols, T* partial) {
  index_t c;
  T sum[2];  // dgamma, dbeta
  const bool mine = column_sums(rows, chunk_rows, cols, c, sum, [&](index_t r, index_t col, T(&acc)[2]) {
    const double mu = mean[r], rs = rstd[r];
    const T d = dy[r * cols + col];
    acc[0] += T(d * ((x[r * cols + col] - mu) * rs));
    acc[1] += d;
  });
  if (!mine) return;
  if (gridDim.y == 1) {
    dgamma[c] = sum[0];
    dbeta[c] = sum[1];
  } else {
    partial[(index_t(blockIdx.y) * 2 + 0) * cols + c] = sum[0];
    partial[(index_t(blockIdx.y) * 2 + 1) * cols + c] = sum[1];
  }
}
template <class T>
__global__ void layer_norm_backward_params_finish(const T* partial, index_t chunks, index_t cols, T* dgamma, T* dbeta) {
  GENLM_GRID_STRIDE(c, cols) {
    T sum[2];
    column_chunks_total(partial, chunks, cols, c, sum);
    dgamma[c] = sum[0];
    dbeta[c] = sum[1];
  }
}

// ------------------------------------------------------------------ GELU (exact erf form)
template <class T>
__device__ __forceinline__ T gelu_value(T x) {
  if constexpr (std::is_same_v<T, float>)
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
  else
    return 0.5 * x * (1.0 + erf(x * 0.70710678118654752440));
}
template <class T>
__global__ void gelu_forward(const T* x, T* y, index_t n) {
  GENLM_GRID_STRIDE(i, n) y[i] = gelu_value(x[i]);
}
/// y[r, c] += b[c]; g = gelu(y): add_bias and gelu_forward in one pass.
template <class T>
__global__ void bias_gelu_forward(T* y, const T* b, T* g, index_t rows, index_t cols) {
  GENLM_GRID_STRIDE(i, rows * cols) {
    const T v = y[i] + b[i % cols];
    y[i] = v;
    g[i] = gelu_value(v);
  }
}
/// dx += dy * gelu'(x); accumulate false: dx = dy * gelu'(x) (dx's old contents never read).
template <class T>
__global__ void gelu_backward(const T* x, const T* dy, T* dx, index_t n, bool accumulate) {
  GENLM_GRID_STRIDE(i, n) {
    T v;
    if constexpr (std::is_same_v<T, float>) {
      const float xv = x[i];
      const float d = 0.5f * (1.0f + erff(xv * 0.70710678118654752440f)) +
                      xv * 0.39894228040143267794f * expf(-0.5f * xv * xv);
      v = dy[i] * d;
    } else {
      const double xv = x[i];
      const double d = 0.5 * (1.0 + erf(xv * 0.70710678118654752440)) +
                       xv * 0.39894228040143267794 * exp(-0.5 * xv * xv);
      v = T(dy[i] * d);
    }
    dx[i] = accumulate ? dx[i] + v : v;
  }
}

// ------------------------------------------------------------------ dropout (Philox, as the CPU)
/// One thread per Philox block of 4 elements: keep[i] = uniform(key, step, i) >= p.
template <class T>
__global__ void dropout_forward(const T* x, T* y, std::uint8_t* keep, index_t n, float p, T s, std::uint64_t key,
                                std::uint64_t step) {
  GENLM_GRID_STRIDE(blk, (n + 3) / 4) {
    const std::uint64_t i0 = std::uint64_t(blk) * 4;
    const philox_result r = stream_block(key, step, i0);
    const index_t e = index_t(i0) + 4 < n ? index_t(i0) + 4 : n;
    for (index_t i = index_t(i0); i < e; ++i) {
      const bool k = uniform01(r.v[i & 3]) >= p;
      keep[i] = k;
      y[i] = k ? x[i] * s : T(0);
    }
  }
}
/// y = dropout(y + b) + res (add_bias, dropout_forward and add in one pass, the same mask); one
/// thread per Philox block of 4 elements. keep == nullptr: no dropout; b == nullptr: no bias.
template <class T>
__global__ void bias_dropout_add(T* y, const T* b, const T* res, std::uint8_t* keep, index_t n, index_t cols, float p,
                                 T s, std::uint64_t key, std::uint64_t step) {
  GENLM_GRID_STRIDE(blk, (n + 3) / 4) {
    const std::uint64_t i0 = std::uint64_t(blk) * 4;
    const philox_result r = keep ? stream_block(key, step, i0) : philox_result{};
    const index_t e = index_t(i0) + 4 < n ? index_t(i0) + 4 : n;
    for (index_t i = index_t(i0); i < e; ++i) {
      T v = b ? y[i] + b[i % cols] : y[i];
      if (keep) {
        const bool k = uniform01(r.v[i & 3]) >= p;
        keep[i] = k;
        v = k ? v * s : T(0);
      }
      y[i] = v + res[i];
    }
  }
}
template <class T>
__global__ void dropout_backward(const T* dy, const std::uint8_t* keep, T* dx, index_t n, T s, bool accumulate) {
  GENLM_GRID_STRIDE(i, n) {
    const T v = keep[i] ? dy[i] * s : T(0);
    dx[i] = accumulate ? dx[i] + v : v;
  }
}

// ------------------------------------------------------------------ layout
/// dst(a, c, b, d) (+)= src(a, b, c, d) [+ bias(c, d)] for src (A, B, C, D); bias (C, D) or nullptr;
/// one thread per element.
template <class T>
__global__ void permute_0213(const T* src, T* dst, index_t A, index_t B, index_t C, index_t D, bool accumulate,
                             const T* bias) {
  GENLM_GRID_STRIDE(i, A * B * C * D) {
    const index_t d = i % D;
    index_t t = i / D;
    const index_t c = t % C;
    t /= C;
    const index_t b = t % B;
    const index_t a = t / B;
    T& o = dst[((a * C + c) * B + b) * D + d];
    const T v = bias ? T(src[i] + bias[c * D + d]) : src[i];
    o = accumulate ? o + v : v;
  }
}

// ------------------------------------------------------------------ relative position terms
/// S[b, l, r] += QE[b, l, l - r + L - 1] (+ KE[b, r, l - r + L - 1]); one thread per S element.
template <class T>
__global__ void relpos_add(T* S, const T* QE, const T* KE, index_t batch, index_t L) {
  const index_t W = 2 * L - 1;
  GENLM_GRID_STRIDE(i, batch * L * L) {
    const index_t r = i % L, l = (i / L) % L, b = i / (L * L);
    const index_t j = l - r + L - 1;
    T v = QE[(b * L + l) * W + j];
    if (KE) v += KE[(b * L + r) * W + j];
    S[i] += v;
  }
}
/// dQE[b, l, j] = dS[b, l, l - j + L - 1], dKE[b, r, j] = dS[b, r + j - L + 1, r] (0 where the
/// index leaves 0..L-1); a gather, one thread per (b, row, j), no atomics.
template <class T>
__global__ void relpos_grad(const T* dS, T* dQE, T* dKE, index_t batch, index_t L) {
  const index_t W = 2 * L - 1;
  GENLM_GRID_STRIDE(i, batch * L * W) {
    const index_t j = i % W, row = (i / W) % L, b = i / (L * W);
    const T* ds = dS + b * L * L;
    const index_t r = row - j + L - 1;  // dQE: l = row
    dQE[i] = (r >= 0 && r < L) ? ds[row * L + r] : T(0);
    if (dKE) {
      const index_t l = row + j - L + 1;  // dKE: r = row
      dKE[i] = (l >= 0 && l < L) ? ds[l * L + row] : T(0);
    }
  }
}

// ------------------------------------------------------------------ attention softmax (warp per row)
/// The end of a warp's softmax row: a[r] = exp(a[r] - max) / sum, mx = this lane's running max of
/// the (already scaled and masked) scores.
template <class T>
__device__ __forceinline__ void softmax_row_finish(T* a, index_t L, int lane, T mx) {
  mx = warp_max(mx);
  T sum = 0;
  for (index_t r = lane; r < L; r += 32) {
    T e;
    if constexpr (std::is_same_v<T, float>)
      e = expf(a[r] - mx);
    else
      e = exp(a[r] - mx);
    a[r] = e;
    sum += e;
  }
  const T inv = T(1) / warp_sum(sum);
  for (index_t r = lane; r < L; r += 32) a[r] *= inv;
}
/// A[row, :] = softmax(scale * S[row, :] + (1 - m[b, :]) * lowest); A may alias S.
template <class T>
__global__ void masked_softmax_forward(const T* S, const T* mask, T* A, index_t rows, index_t H, index_t L, T scale) {
  const index_t row = index_t(blockIdx.x) * warps_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const index_t b = row / (H * L);
  const T lowest = dev_lowest<T>();
  const T* s = S + row * L;
  T* a = A + row * L;
  T mx = lowest;
  for (index_t r = lane; r < L; r += 32) {
    T v = s[r] * scale;
    if (mask) v += (T(1) - mask[b * L + r]) * lowest;
    a[r] = v;
    mx = v > mx ? v : mx;
  }
  softmax_row_finish(a, L, lane, mx);
}
/// relpos_add and masked_softmax_forward in one pass (warp per row):
/// A[row, r] = softmax_r((S[row, r] + (QE[row, j] (+ KE[bh, r, j]))) * scale + mask), j = l - r + L - 1.
template <class T>
__global__ void relpos_softmax_forward(const T* S, const T* QE, const T* KE, const T* mask, T* A, index_t rows,
                                       index_t H, index_t L, T scale) {
  const index_t row = index_t(blockIdx.x) * warps_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const index_t b = row / (H * L), bh = row / L, l = row % L, W = 2 * L - 1;
  const T lowest = dev_lowest<T>();
  const T* s = S + row * L;
  const T* qe = QE + row * W;
  const T* ke = KE ? KE + bh * L * W : nullptr;
  T* a = A + row * L;
  T mx = lowest;
  for (index_t r = lane; r < L; r += 32) {
    const index_t j = l - r + L - 1;
    T rel = qe[j];
    if (ke) rel += ke[r * W + j];
    T v = (s[r] + rel) * scale;
    if (mask) v += (T(1) - mask[b * L + r]) * lowest;
    a[r] = v;
    mx = v > mx ? v : mx;
  }
  softmax_row_finish(a, L, lane, mx);
}
/// dS = scale * A * (dA - rowsum(dA * A)); dS may alias dA.
template <class T>
__global__ void softmax_backward(const T* A, const T* dA, T* dS, index_t rows, index_t L, T scale) {
  const index_t row = index_t(blockIdx.x) * warps_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T* a = A + row * L;
  const T* da = dA + row * L;
  T* ds = dS + row * L;
  T dotv = 0;
  for (index_t r = lane; r < L; r += 32) dotv += a[r] * da[r];
  dotv = warp_sum(dotv);
  for (index_t r = lane; r < L; r += 32) ds[r] = scale * a[r] * (da[r] - dotv);
}

// ------------------------------------------------------------------ masked-gene loss (warp per gene)
template <class T>
__global__ void masked_gene_loss_grad(const T* hyp, const T* logits, index_t K, index_t D, const std::int64_t* rows,
                                      const double* labels, index_t n, double mse_scale, double ce_scale, T* d_hyp,
                                      T* d_logits, double* terms, std::int32_t* choice) {
  const index_t i = index_t(blockIdx.x) * warps_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (i >= n) return;
  const index_t row = rows[i];
  const T* h = hyp + row * K * D;
  const T* z = logits + row * K;
  const double* y = labels + i * D;
  index_t ks = 0, kml = 0;
  // From +/-inf as on the CPU, so that a NaN distance or logit is skipped there and here alike.
  const double inf = __longlong_as_double(0x7ff0000000000000LL);
  double best = inf, mx = -inf;
  for (index_t k = 0; k < K; ++k) {
    double d = 0;
    for (index_t j = lane; j < D; j += 32) {
      const double e = double(h[k * D + j]) - y[j];
      d += e * e;
    }
    d = warp_sum(d);  // identical in every lane
    if (d < best) best = d, ks = k;
    const double zk = double(z[k]);
    if (zk > mx) mx = zk, kml = k;
  }
  double se = 0;
  for (index_t k = 0; k < K; ++k) se += exp(double(z[k]) - mx);
  const double lse = mx + log(se);
  if (lane == 0) {
    terms[2 * i] = best;
    terms[2 * i + 1] = lse - double(z[ks]);
    if (choice) choice[2 * i] = std::int32_t(ks), choice[2 * i + 1] = std::int32_t(kml);
  }
  if (d_logits)
    for (index_t k = lane; k < K; k += 32)
      d_logits[row * K + k] = T(ce_scale * (exp(double(z[k]) - lse) - (k == ks ? 1.0 : 0.0)));
  if (d_hyp)
    for (index_t j = lane; j < D; j += 32)
      d_hyp[(row * K + ks) * D + j] = T(2.0 * mse_scale * (double(h[ks * D + j]) - y[j]));
}

/// cpu::masked_gene_metrics_rows, a warp per masked gene: its lanes share the sums over D, then
/// each takes every 32nd label for the nearest-label search (each distance summed over D in order,
/// as on the CPU) and the warp keeps the smallest distance, the lowest label index on ties.
template <class T>
__global__ void masked_gene_metrics_rows(const T* hyp, index_t K, index_t D, const std::int64_t* rows,
                                         const double* labels, const std::int32_t* choice, index_t n, double* out) {
  const index_t i = index_t(blockIdx.x) * warps_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (i >= n) return;
  const T* h = hyp + (rows[i] * K + choice[2 * i + 1]) * D;  // (D) the most likely hypothesis
  const double* y = labels + i * D;                          // (D) its label
  double dot = 0, nh = 0, ny = 0, sq = 0;
  for (index_t j = lane; j < D; j += 32) {
    const double hj = double(h[j]), e = hj - y[j];
    dot += hj * y[j], nh += hj * hj, ny += y[j] * y[j], sq += e * e;
  }
  dot = warp_sum(dot), nh = warp_sum(nh), ny = warp_sum(ny), sq = warp_sum(sq);
  const double inf = __longlong_as_double(0x7ff0000000000000LL);
  double bd = inf;
  index_t best = -1;  // a NaN distance is never the nearest (as on the CPU)
  for (index_t j = lane; j < n; j += 32) {
    const double* yj = labels + j * D;
    double d = 0;
    for (index_t c = 0; c < D; ++c) {
      const double e = double(h[c]) - yj[c];
      d += e * e;
    }
    if (d < bd) bd = d, best = j;
  }
  for (int o = 16; o > 0; o >>= 1) {  // butterfly arg-min: (found, distance, index) order, the same in every lane
    const double od = __shfl_xor_sync(0xffffffffu, bd, o);
    const index_t ob = __shfl_xor_sync(0xffffffffu, best, o);
    if (ob >= 0 && (best < 0 || od < bd || (od == bd && ob < best))) bd = od, best = ob;
  }
  if (lane == 0) {
    const double den = sqrt(nh * ny);
    double* r = out + 4 * i;
    r[0] = dot / (den < 1e-30 ? 1e-30 : den);  // std::max(den, 1e-30): a NaN den stays NaN
    r[1] = sq;
    r[2] = (double(h[D - 1]) >= 0) == (y[D - 1] >= 0) ? 1.0 : 0.0;
    r[3] = best == i ? 1.0 : 0.0;
  }
}

// ------------------------------------------------------------------ AdamW
/// AdamW: genlm/backend/adamw_update.hpp's element updates, the same functions as the CPU loops.
template <class T>
__global__ void adamw(T* p, const T* g, T* m, T* v, index_t n, optim_detail::coeffs<T> k) {
  GENLM_GRID_STRIDE(i, n) optim_detail::update(p[i], g[i], m[i], v[i], k);
}
template <class T>
__global__ void adamw_torch(T* p, const T* g, T* m, T* v, index_t n, optim_detail::coeffs<T> k) {
  GENLM_GRID_STRIDE(i, n) optim_detail::update_torch(p[i], g[i], m[i], v[i], k);
}

#undef GENLM_GRID_STRIDE

}  // namespace genlm::cuda_kernels
