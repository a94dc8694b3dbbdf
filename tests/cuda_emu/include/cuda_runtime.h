// cuda_runtime.h of the genlm CUDA host emulator (tests/cuda_emu): NOT the CUDA runtime.
// See genlm_cuda_emu/emulator.hpp.
#pragma once
#if !defined(GENLM_CUDA_EMULATOR)
#error "tests/cuda_emu/include is the CUDA host emulator's; define GENLM_CUDA_EMULATOR (or drop this include path)"
#endif
#include <genlm_cuda_emu/emulator.hpp>
