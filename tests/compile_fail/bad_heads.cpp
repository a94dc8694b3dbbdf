// Must NOT compile: hidden 100 is not a multiple of 3 heads (checked by tests/CMakeLists.txt).
#include <genlm/backend/cpu.hpp>
#include <genlm/model/glm.hpp>
constexpr genlm::model_config bad{2, 100, 3, 64, 32, 7, 4, 32, 30};
int main() { genlm::GLM<bad, genlm::cpu> m; }
