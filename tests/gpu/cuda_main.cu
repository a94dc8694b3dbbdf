// Catch2 main of the CUDA test executables, and their shared start-up test.
//
// Without a usable CUDA device (no GPU, no driver, or a broken installation: genlm::cuda_device::
// count() == 0) an executable prints "no CUDA device: skipping" and exits 77, which ctest reports
// as skipped (SKIP_RETURN_CODE 77). The "[smoke]" test below is in every executable: the tests
// labelled "cuda-build" run it through run_or_skip.sh on any machine.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include <genlm/backend/cuda.cuh>

TEST_CASE("the CUDA device is visible and usable", "[smoke]") {
  using genlm::cuda;
  static_assert(!cuda::host_memory, "genlm::cuda must declare device memory");
  static_assert(std::is_base_of_v<genlm::error, genlm::cuda_error>, "cuda_error must derive genlm::error");
  static_assert(std::is_same_v<genlm::backend_precision_t<cuda>, genlm::precision::fp32>);
  static_assert(std::is_same_v<genlm::backend_precision_t<genlm::cuda_tf32>, genlm::precision::tf32>);
  static_assert(std::is_same_v<genlm::backend_precision_t<genlm::cuda_bf16>, genlm::precision::bf16>);
  static_assert(std::is_same_v<genlm::backend_precision_t<genlm::cuda_fp16>, genlm::precision::fp16>);
  CHECK(genlm::cuda_device::count() >= 1);
  CHECK(genlm::cuda_device::available());
  CHECK_FALSE(genlm::cuda_device::name().empty());
  CHECK(std::string(cuda::name).size() > 0);
  std::vector<float> v(1000);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(i % 97) - 48.5f;
  auto t = genlm::tensor<float, cuda>::from_host_data({10, 100}, v);
  CHECK(t.to_host() == v);
  cuda::scale(t.numel(), 2.0f, t.data());
  auto w = v;
  for (auto& x : w) x *= 2.0f;
  CHECK(t.to_host() == w);
  genlm::tensor<float, cuda> u = t;  // deep copy on the device
  cuda::fill(t.data(), t.numel(), 0.0f);
  CHECK(u.to_host() == w);
  CHECK(t.to_host() == std::vector<float>(v.size(), 0.0f));
  CHECK(cuda::sum_squares(u.data(), u.numel()) > 0.0);
}

int main(int argc, char* argv[]) {
  const int devices = genlm::cuda_device::count();
  if (devices == 0) {
    std::printf("no CUDA device: skipping\n");
    std::fflush(stdout);
    return 77;
  }
  std::printf("CUDA device 0 of %d: %s\n", devices, genlm::cuda_device::name(0).c_str());
  std::fflush(stdout);
  return Catch::Session().run(argc, argv);
}
