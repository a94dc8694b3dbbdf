// tests/gpu/cuda_main.cu (Catch2 main and the "[smoke]" test) against the CUDA host emulator.
#include "../gpu/cuda_main.cu"
