// examples/train_cuda.cu (GPU training after a CPU parity check) against the CUDA host emulator.
#include "../../examples/train_cuda.cu"
