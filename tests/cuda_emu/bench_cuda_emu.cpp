// benchmarks/bench_cuda.cu (Google Benchmark) against the CUDA host emulator (see CMakeLists.txt).
#include "../../benchmarks/bench_cuda.cu"
