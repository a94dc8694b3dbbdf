// tests/gpu/test_cuda_model.cu compiled as C++ against the CUDA host emulator (see CMakeLists.txt).
#include "../gpu/test_cuda_model.cu"
