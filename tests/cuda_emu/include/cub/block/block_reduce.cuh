// cub::BlockReduce of the genlm CUDA host emulator (tests/cuda_emu): NOT CUB.
// Sum / Reduce over the block's threads with CUB's contract: every thread of the block calls it,
// the result is defined in thread 0 only (the others get NaN, or an all-ones pattern for integers,
// so that a kernel relying on it shows). Adds in thread order (CUB's order differs; both are fixed).
#pragma once
#include <genlm_cuda_emu/emulator.hpp>

#include <limits>
#include <string>
#include <type_traits>

namespace cub {

template <class T, int BLOCK_DIM_X, int ALGORITHM = 0, int BLOCK_DIM_Y = 1, int BLOCK_DIM_Z = 1>
class BlockReduce {
  static constexpr unsigned threads = unsigned(BLOCK_DIM_X) * BLOCK_DIM_Y * BLOCK_DIM_Z;

 public:
  struct TempStorage {
    T v[threads];
  };
  explicit BlockReduce(TempStorage& s) : s_(s) {}

  T Sum(T x) {
    return Reduce(x, [](const T& a, const T& b) { return a + b; });
  }
  template <class Op>
  T Reduce(T x, Op op) {
    auto& e = ::genlm_cuda_emu::detail::ex();
    if (e.nthreads != threads)
      ::genlm_cuda_emu::detail::fatal(std::string("kernel ") + e.kernel + ": cub::BlockReduce for " +
                                      std::to_string(threads) + " threads in a block of " +
                                      std::to_string(e.nthreads));
    const unsigned t = e.cur->linear;
    s_.v[t] = x;
    __syncthreads();
    if (t != 0) {
      if constexpr (std::is_floating_point_v<T>)
        return std::numeric_limits<T>::quiet_NaN();
      else
        return T(~T(0));
    }
    T r = s_.v[0];
    for (unsigned i = 1; i < threads; ++i) r = op(r, s_.v[i]);
    return r;
  }

 private:
  TempStorage& s_;
};

}  // namespace cub
