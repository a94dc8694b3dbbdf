// EXPERIMENT (not built by CMake; removed again in the next commit, docs/PERFORMANCE.md seventh
// session): would one fused Q/K/V product (240 x 3840 x 1280; the three weights side by side)
// beat the three 240 x 1280 x 1280 products the attention runs now, forward (NT), dx (NN: one
// product with k = 3840 instead of three accumulating ones) and dW (TN)? dnnl_sgemm on 1 thread,
// the two forms interleaved, best of N.
//   clang++ -O3 -std=c++17 benchmarks/experiments/fused_qkv.cpp -o /tmp/fused_qkv -ldnnl -lgomp
//   /tmp/fused_qkv 30
#include <oneapi/dnnl/dnnl.h>
#include <chrono>
#include <cstdio>
#include <vector>
#include <random>
#include <algorithm>
extern "C" void omp_set_num_threads(int);
using clk = std::chrono::steady_clock;
static double secs(clk::time_point a){return std::chrono::duration<double>(clk::now()-a).count();}
int main(int argc,char**argv){
  omp_set_num_threads(1);
  const int M=240,H=1280,reps=argc>1?atoi(argv[1]):20;
  std::vector<float> X(M*H),W(3*H*H),Y(M*3*H),Y3(M*3*H),dY(M*3*H),dX(M*H),dW(3*H*H);
  std::mt19937 g(1);std::uniform_real_distribution<float>u(-1,1);
  for(auto&v:X)v=u(g);for(auto&v:W)v=u(g);for(auto&v:dY)v=u(g);
  double best[6]={1e9,1e9,1e9,1e9,1e9,1e9};
  for(int r=0;r<reps;++r){
    auto t=clk::now();
    // fused fwd: Y(M,3H) = X W^T, W (3H,H)
    dnnl_sgemm('N','T',M,3*H,H,1.f,X.data(),H,W.data(),H,0.f,Y.data(),3*H);
    best[0]=std::min(best[0],secs(t)); t=clk::now();
    for(int i=0;i<3;++i) dnnl_sgemm('N','T',M,H,H,1.f,X.data(),H,W.data()+i*H*H,H,0.f,Y3.data()+i*M*H,H);
    best[1]=std::min(best[1],secs(t)); t=clk::now();
    // dx fused: dX(M,H) = dY(M,3H) W(3H,H)
    dnnl_sgemm('N','N',M,H,3*H,1.f,dY.data(),3*H,W.data(),H,0.f,dX.data(),H);
    best[2]=std::min(best[2],secs(t)); t=clk::now();
    for(int i=0;i<3;++i) dnnl_sgemm('N','N',M,H,H,1.f,dY.data()+i*M*H,H,W.data()+i*H*H,H,i?1.f:0.f,dX.data(),H);
    best[3]=std::min(best[3],secs(t)); t=clk::now();
    // dW fused: dW(3H,H) = dY^T X
    dnnl_sgemm('T','N',3*H,H,M,1.f,dY.data(),3*H,X.data(),H,0.f,dW.data(),H);
    best[4]=std::min(best[4],secs(t)); t=clk::now();
    for(int i=0;i<3;++i) dnnl_sgemm('T','N',H,H,M,1.f,dY.data()+i*M*H,H,X.data(),H,0.f,dW.data()+i*H*H,H);
    best[5]=std::min(best[5],secs(t));
  }
  double f=2.0*M*3*H*H/1e9;
  const char* n[6]={"fwd fused","fwd 3x","dx fused","dx 3x","dW fused","dW 3x"};
  for(int i=0;i<6;++i) printf("%-10s %.3f ms %.1f GFLOP/s\n",n[i],best[i]*1e3,f/best[i]);
}
