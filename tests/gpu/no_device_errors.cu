// Without a usable CUDA device (CI: no GPU, no driver) the CUDA backend must fail with a clear
// genlm::cuda_error naming the CUDA call, never crash. Runs on machines WITHOUT a device (label
// "cpu;cuda-build"); with a device it has nothing to check and exits 77 (skipped).
#include <cstdio>
#include <exception>
#include <string>

#include <genlm/backend/cuda.cuh>
#include <genlm/model/glm.hpp>

namespace {
int failures = 0;

template <class F>
void expect_cuda_error(const char* what, F&& f, const char* must_contain) {
  try {
    f();
    std::printf("FAIL %s: no exception\n", what);
    ++failures;
  } catch (const genlm::cuda_error& e) {
    const std::string msg = e.what();
    const bool ok = msg.find(must_contain) != std::string::npos;
    std::printf("%s %s: cuda_error \"%s\"\n", ok ? "ok  " : "FAIL", what, msg.c_str());
    failures += !ok;
  } catch (const std::exception& e) {
    std::printf("FAIL %s: wrong exception type: %s\n", what, e.what());
    ++failures;
  }
}

template <genlm::model_config C>
void run_checks() {
  using B = genlm::cuda;
  expect_cuda_error("tensor allocation", [] { genlm::tensor<float, B> t({4, 4}); }, "cudaGetDevice");
  expect_cuda_error("GLM construction", [] { genlm::GLM<C, B> m; }, "cudaGetDevice");
  expect_cuda_error("synchronize", [] { B::synchronize(); }, "cudaGetDevice");
  expect_cuda_error("cuda_device::set(0)", [] { genlm::cuda_device::set(0); }, "0 CUDA device(s) are visible");
  // an empty tensor never touches the device
  genlm::tensor<float, B> empty;
  if (!empty.empty() || !empty.to_host().empty()) {
    std::printf("FAIL empty tensor\n");
    ++failures;
  }
}
}  // namespace

int main() {
  if (genlm::cuda_device::count() > 0) {
    std::printf("a CUDA device is visible: the no-device checks do not apply (skipped)\n");
    return 77;
  }
  run_checks<genlm::configs::tiny>();
  std::printf("%d passed, %d failed\n", 5 - failures, failures);
  return failures ? 1 : 0;
}
