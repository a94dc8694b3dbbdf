// EXPERIMENT (removed again in the next commit; docs/PERFORMANCE.md sixth session): AVX-512 register
// tiles of several shapes on L1-resident packed panels (k = 256), i.e. the micro-kernel ceiling.
//   clang++ -std=c++20 -O3 benchmarks/experiments/tile_l1.cpp -o /tmp/tile_l1 && /tmp/tile_l1
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <algorithm>
// generic kernel: MRr rows x NV vectors
template <int MRr, int NV>
__attribute__((target("avx512f"))) void kern(long kc, const float* __restrict Ap, const float* __restrict Bp, float* C, long ldc) {
  __m512 c[MRr][NV];
  for (int r = 0; r < MRr; ++r) for (int v = 0; v < NV; ++v) c[r][v] = _mm512_setzero_ps();
  for (long p = 0; p < kc; ++p) {
    __m512 b[NV];
    for (int v = 0; v < NV; ++v) b[v] = _mm512_load_ps(Bp + 16 * v);
    for (int r = 0; r < MRr; ++r) { const __m512 a = _mm512_set1_ps(Ap[r]);
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]); }
    Ap += MRr; Bp += 16 * NV;
  }
  for (int r = 0; r < MRr; ++r) for (int v = 0; v < NV; ++v) _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
}
template <int MRr, int NV> void run(const char* n) {
  alignas(64) static float A[MRr*256], B[256*16*NV], C[MRr*16*NV];
  for(int i=0;i<MRr*256;++i)A[i]=0.001f*i; for(int i=0;i<256*16*NV;++i)B[i]=0.002f;
  long its = 20000L * 12 * 32 / (MRr * 16 * NV);
  double best=1e9; for(int r=0;r<15;++r){auto t0=std::chrono::steady_clock::now();
  for(long it=0;it<its;++it) kern<MRr,NV>(256,A,B,C,16*NV);
  auto t1=std::chrono::steady_clock::now(); best=std::min(best,std::chrono::duration<double>(t1-t0).count());}
  printf("%s %.1f GFLOP/s (%g)\n", n, 2.0*MRr*16*NV*256*its/best/1e9, C[3]);
}
int main(){ run<12,2>("12x32"); run<14,2>("14x32"); run<6,4>("6x64"); run<8,3>("8x48"); run<7,4>("7x64"); run<4,6>("4x96"); run<12,2>("12x32"); }
