// benchmarks/workload_cuda.cu against the CUDA host emulator (see CMakeLists.txt).
#include "../../benchmarks/workload_cuda.cu"
