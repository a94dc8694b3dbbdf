// cuda_runtime_api.h of the genlm CUDA host emulator (tests/cuda_emu): NOT CUDA's.
#pragma once
#include <cuda_runtime.h>
