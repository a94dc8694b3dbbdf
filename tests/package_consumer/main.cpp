#include <cstdio>
#include <genlm/model/glm.hpp>
#include <genlm/backend/cpu.hpp>
int main() {
  genlm::GLM<genlm::configs::tiny, genlm::cpu> m;
  genlm::tensor<float, genlm::cpu> x({1, 3, 33}), mask({1, 3});
  x.zero();
  for (auto& v : mask.span()) v = 1;
  auto o = m.forward({}, x, mask);
  std::printf("hidden %s\n", o.hidden.shape().str().c_str());
}
