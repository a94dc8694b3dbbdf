// cuda_bf16.h of the genlm CUDA host emulator (tests/cuda_emu): NOT CUDA's. __nv_bfloat16 as 16
// stored bits with round-to-nearest-even conversion from float (what __float2bfloat16 does).
#pragma once
#include <genlm_cuda_emu/emulator.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  std::uint16_t bits = 0;
};
inline __nv_bfloat16 __float2bfloat16(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, 4);
  __nv_bfloat16 r;
  if (std::isnan(x))
    r.bits = std::uint16_t((b >> 16) | 0x40u);  // stays a (quiet) NaN
  else
    r.bits = std::uint16_t((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
  return r;
}
inline float __bfloat162float(__nv_bfloat16 h) {
  const std::uint32_t b = std::uint32_t(h.bits) << 16;
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}
