// genlm/core/gradcheck.hpp - numerical gradient checker shipped with the library.
//
// For a function out = f(params, inputs) with an explicit backward, draws a random cotangent c,
// and compares the analytic gradient of phi = dot(out, c) with central differences
// for EVERY parameter element and every input element. The numeric derivative is the fourth-order
// central stencil (8(phi(x+h) - phi(x-h)) - (phi(x+2h) - phi(x-2h))) / 12h, whose truncation
// error is O(h^4), so round-off (~1e-16 |phi| / h) dominates. The relative error of one scalar is
// |a - n| / max(|a|, |n|, floor), floor = max(abs_floor, scale_floor * max_j |a_j|): gradients that
// are tiny compared with the largest one are judged against that scale instead of against
// round-off noise. Use it with the CPU backend in double precision (tolerance 1e-6).
#pragma once
#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include <genlm/core/parameters.hpp>
#include <genlm/core/random.hpp>

namespace genlm {

struct gradcheck_options {
  double step = 1e-4;         // finite-difference step h
  double abs_floor = 1e-8;    // see the file comment
  double scale_floor = 1e-4;  // floor relative to the largest analytic gradient
  std::uint64_t seed = 1234; // cotangent seed
};

struct gradcheck_result {
  double max_rel_error = 0;
  std::string worst;       // "<parameter or input name>[flat index]"
  double worst_analytic = 0, worst_numeric = 0;
  std::size_t checked = 0;  // number of scalars compared
  std::string summary() const {
    std::ostringstream os;
    os << "checked " << checked << " scalars; max relative error " << max_rel_error << " at " << worst
       << " (analytic " << worst_analytic << ", numeric " << worst_numeric << ")";
    return os.str();
  }
};

/// A differentiable input of the function under test: the tensor and where backward writes its
/// gradient (backward must ACCUMULATE into it; the checker zeroes it first).
template <class Backend>
struct gradcheck_input {
  std::string name;
  tensor<double, Backend>* value;
  tensor<double, Backend>* grad;
};

/// forward: () -> const tensor<double, Backend>& (runs the function on the current values).
/// backward: (const tensor<double, Backend>& cotangent) -> void; assigns parameter gradients in
/// `params` and accumulates input gradients into each input's grad tensor.
template <class Backend, class Forward, class Backward>
gradcheck_result gradient_check(parameter_store<double, Backend>* params, std::vector<gradcheck_input<Backend>> inputs,
                                Forward&& forward, Backward&& backward, const gradcheck_options& opt = {}) {
  static_assert(Backend::host_memory, "gradient_check runs on a host-memory backend (genlm::cpu)");
  // analytic pass
  const tensor<double, Backend>& out0 = forward();
  tensor<double, Backend> cot(out0.shape());
  rng g(opt.seed, 77);
  for (auto& v : cot.span()) v = g.normal();
  if (params) params->zero_grads();
  for (auto& in : inputs) in.grad->resize_zero(in.value->shape());
  backward(cot);

  auto phi = [&]() {
    const tensor<double, Backend>& o = forward();
    expect_shape(o.shape(), cot.shape(), "gradient_check: output");
    return Backend::dot(o.data(), cot.data(), o.numel());
  };
  // analytic gradients, and the scale for the floor
  std::vector<std::vector<double>> analytic;
  double max_abs = 0;
  if (params) analytic.emplace_back(params->grads().span().begin(), params->grads().span().end());
  for (auto& in : inputs) analytic.emplace_back(in.grad->span().begin(), in.grad->span().end());
  for (const auto& a : analytic)
    for (double v : a) max_abs = std::max(max_abs, std::abs(v));
  const double floor = std::max(opt.abs_floor, opt.scale_floor * max_abs);

  gradcheck_result res;
  auto compare = [&](const std::string& name, index_t i, double analytic, double* x) {
    const double saved = *x;
    auto at = [&](double delta) {
      *x = saved + delta;
      return phi();
    };
    const double h = opt.step;
    const double d1 = at(h) - at(-h), d2 = at(2 * h) - at(-2 * h);
    *x = saved;
    const double numeric = (8 * d1 - d2) / (12 * h);
    const double denom = std::max({std::abs(analytic), std::abs(numeric), floor});
    const double rel = std::abs(analytic - numeric) / denom;
    ++res.checked;
    if (!(rel <= res.max_rel_error)) {  // also catches NaN
      res.max_rel_error = std::isnan(rel) ? INFINITY : rel;
      res.worst = name + "[" + std::to_string(i) + "]";
      res.worst_analytic = analytic;
      res.worst_numeric = numeric;
    }
  };
  std::size_t k = 0;
  if (params) {
    const std::vector<double>& grads = analytic[k++];
    for (const auto& e : params->entries())
      for (index_t i = 0; i < e.shape.numel(); ++i)
        compare(e.name, i, grads[std::size_t(e.offset + i)], params->values().data() + e.offset + i);
  }
  for (auto& in : inputs) {
    const std::vector<double>& grads = analytic[k++];
    for (index_t i = 0; i < in.value->numel(); ++i) compare(in.name, i, grads[std::size_t(i)], in.value->data() + i);
  }
  return res;
}

}  // namespace genlm
