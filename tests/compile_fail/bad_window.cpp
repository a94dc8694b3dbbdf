// Must NOT compile: a 40-gene window does not fit a distance table of 32 positions.
#include <genlm/backend/cpu.hpp>
#include <genlm/model/glm.hpp>
constexpr genlm::model_config bad{2, 32, 4, 64, 32, 7, 4, 32, 40};
int main() { genlm::GLM<bad, genlm::cpu> m; }
