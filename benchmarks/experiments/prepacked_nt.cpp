// EXPERIMENT (not built by CMake; removed again in the next commit, docs/PERFORMANCE.md sixth
// session): can the forward's NT products C = A W^T (A: 240 x k activations, W: n x k weights) beat
// oneDNN's dnnl_sgemm by the ~20% that the forward target (>= 1.2x PyTorch, whose MKL products run
// at dnnl_sgemm's rate) would need, if the weights are packed once (an inference-only cache)?
// A 12x32 / 10x32 / 8x32 AVX-512 register tile over weights pre-packed into 32-column panels, A
// packed per call; v2 = one pass over the full k per tile, v1 = k blocked (kc) Goto-style.
//   clang++ -std=c++20 -O3 benchmarks/experiments/prepacked_nt.cpp -o /tmp/prepacked_nt -ldnnl
//   OMP_NUM_THREADS=1 /tmp/prepacked_nt 25
#include <oneapi/dnnl/dnnl.h>
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>
typedef long index_t;
constexpr int NR = 32;
template <int MRr>
__attribute__((target("avx512f"))) inline void kern(index_t kc, const float* __restrict Ap, const float* __restrict Bp, float* C, index_t ldc, bool acc) {
  __m512 c[MRr][2];
  for (int r = 0; r < MRr; ++r) c[r][0] = c[r][1] = _mm512_setzero_ps();
  for (index_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(Bp), b1 = _mm512_load_ps(Bp + 16);
    for (int r = 0; r < MRr; ++r) { const __m512 a = _mm512_set1_ps(Ap[r]);
      c[r][0] = _mm512_fmadd_ps(a, b0, c[r][0]); c[r][1] = _mm512_fmadd_ps(a, b1, c[r][1]); }
    Ap += MRr; Bp += NR;
  }
  for (int r = 0; r < MRr; ++r) { float* cc = C + r * ldc; __m512 y0 = c[r][0], y1 = c[r][1];
    if (acc) { y0 = _mm512_add_ps(y0, _mm512_loadu_ps(cc)); y1 = _mm512_add_ps(y1, _mm512_loadu_ps(cc + 16)); }
    _mm512_storeu_ps(cc, y0); _mm512_storeu_ps(cc + 16, y1); }
}
// pack A rows [0,m) (m multiple of MRr for this test), k cols [p0,p0+kc) -> panels kc x MRr
template <int MRr> void pack_a(const float* A, index_t lda, index_t m, index_t p0, index_t kc, float* out) {
  for (index_t s = 0; s < m; s += MRr) { float* d = out + s * kc;
    for (int r = 0; r < MRr; ++r) { const float* src = A + (s + r) * lda + p0; for (index_t p = 0; p < kc; ++p) d[p * MRr + r] = src[p]; } }
}
// W (n,k) -> [n/32][k][32]
void prepack(const float* W, index_t n, index_t k, float* out) {
  for (index_t j = 0; j < n; ++j) for (index_t p = 0; p < k; ++p) out[(j / NR) * k * NR + p * NR + j % NR] = W[j * k + p];
}
template <int MRr> void v2(index_t m, index_t n, index_t k, const float* A, const float* Wp, float* C, float* Ap) {
  pack_a<MRr>(A, k, m, 0, k, Ap);
  for (index_t jr = 0; jr < n; jr += NR) for (index_t ir = 0; ir < m; ir += MRr) kern<MRr>(k, Ap + ir * k, Wp + jr * k, C + ir * n + jr, n, false);
}
template <int MRr> void v1(index_t m, index_t n, index_t k, const float* A, const float* Wp, float* C, float* Ap, index_t KC) {
  for (index_t pc = 0; pc < k; pc += KC) { const index_t kc = std::min(KC, k - pc); pack_a<MRr>(A, k, m, pc, kc, Ap);
    for (index_t jr = 0; jr < n; jr += NR) for (index_t ir = 0; ir < m; ir += MRr) kern<MRr>(kc, Ap + ir * kc, Wp + jr * k + pc * NR, C + ir * n + jr, n, pc > 0); }
}
int main(int argc, char** argv) {
  const int reps = argc > 1 ? atoi(argv[1]) : 20;
  struct S { const char* name; long m, n, k; };
  S shapes[] = {{"qkvo 240x1280x1280", 240, 1280, 1280}, {"ffn_in 240x3072x1280", 240, 3072, 1280}, {"ffn_out 240x1280x3072", 240, 1280, 3072}};
  auto now = [] { return std::chrono::steady_clock::now(); };
  for (auto& s : shapes) {
    std::vector<float> A(s.m * s.k), W(s.n * s.k), C0(s.m * s.n);
    std::vector<std::vector<float>> Cs(5, std::vector<float>(s.m * s.n));
    std::mt19937 g(1); std::normal_distribution<float> nd;
    for (auto& x : A) x = nd(g); for (auto& x : W) x = 0.05f * nd(g);
    float* Wp = (float*)std::aligned_alloc(64, s.n * s.k * 4); prepack(W.data(), s.n, s.k, Wp);
    float* Ap = (float*)std::aligned_alloc(64, 252 * s.k * 4);
    double best[6]; std::fill(best, best + 6, 1e9);
    for (int r = 0; r < reps; ++r) {
      auto t0 = now(); dnnl_sgemm('N', 'T', s.m, s.n, s.k, 1.f, A.data(), s.k, W.data(), s.k, 0.f, C0.data(), s.n);
      auto t1 = now(); v2<12>(s.m, s.n, s.k, A.data(), Wp, Cs[0].data(), Ap);
      auto t2 = now(); v2<10>(s.m, s.n, s.k, A.data(), Wp, Cs[1].data(), Ap);
      auto t3 = now(); v1<12>(s.m, s.n, s.k, A.data(), Wp, Cs[2].data(), Ap, 192);
      auto t4 = now(); v1<12>(s.m, s.n, s.k, A.data(), Wp, Cs[3].data(), Ap, 320);
      auto t5 = now(); v2<8>(s.m, s.n, s.k, A.data(), Wp, Cs[4].data(), Ap);
      auto t6 = now();
      decltype(t0) ts[] = {t0, t1, t2, t3, t4, t5, t6};
      for (int i = 0; i < 6; ++i) best[i] = std::min(best[i], std::chrono::duration<double>(ts[i + 1] - ts[i]).count());
    }
    double md = 0; for (auto& C : Cs) for (size_t i = 0; i < C0.size(); ++i) md = std::max(md, (double)std::fabs(C0[i] - C[i]));
    const double fl = 2.0 * s.m * s.n * s.k;
    std::printf("%-22s dnnl %5.1f | v2x12 %5.1f v2x10 %5.1f v1x12kc192 %5.1f v1x12kc320 %5.1f v2x8 %5.1f  diff %.1g\n", s.name,
      fl / best[0] / 1e9, fl / best[1] / 1e9, fl / best[2] / 1e9, fl / best[3] / 1e9, fl / best[4] / 1e9, fl / best[5] / 1e9, md);
  }
}
