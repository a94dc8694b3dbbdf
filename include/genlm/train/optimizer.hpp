// genlm/train/optimizer.hpp - AdamW on a parameter_store's flat buffers, learning-rate schedules,
// gradient clipping.
//
// adamw<T, Backend> keeps exp_avg / exp_avg_sq as two flat tensors the size of the store's flat
// buffer (alignment gaps included: their values and gradients are zero and stay zero), so one step
// is one fused Backend::adamw_step pass, computed in T's own arithmetic as torch computes a float32
// tensor's update in float32 (the element update is backend/adamw_update.hpp, shared by the CPU
// loop and the CUDA kernel). Two update rules (see adamw_hparams in backend/ops_common.hpp):
//   torch_style = false (default): transformers 4.22 AdamW, the optimiser of the gLM reference
//       (SPEC.md): m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//       p -= lr sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps);  then p -= lr*wd * p.
//   torch_style = true: torch.optim.AdamW: p *= 1 - lr*wd; m, v as above;
//       p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
// t is the 1-based number of the step being taken. Both are checked against the reference
// trajectories in tests/fixtures/train/adamw.safetensors (scripts/gen_train_fixtures.py).
//
// lr_schedule reproduces transformers' LambdaLR schedules with their step indexing: the learning
// rate of the k-th optimizer step (k = 0, 1, ...; i.e. adamw::steps() before the step) is
// at(k) = base_lr * lambda(k), where lambda(k) is
//   constant:              1
//   constant_with_warmup:  k < warmup ? k / max(1, warmup) : 1   (get_constant_schedule_with_warmup)
//   linear_with_warmup:    k < warmup ? k / max(1, warmup)
//                          : max(0, (total - k) / max(1, total - warmup))  (get_linear_schedule_with_warmup)
// so the very first step of a warm-up schedule uses lr = 0, exactly as transformers does.
//
// Clipping works on the whole flat gradient buffer: clip_grad_value = torch.nn.utils.
// clip_grad_value_ (clamp to [-c, c]); clip_grad_norm = torch.nn.utils.clip_grad_norm_ with
// norm_type 2: total = ||g||_2 (accumulated in double), coef = max_norm / (total + 1e-6), the
// gradients are multiplied by coef when coef < 1 (torch multiplies by min(coef, 1)); a NaN/Inf
// total norm propagates into the gradients as in torch (error_if_nonfinite=False).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <genlm/backend/cpu.hpp>
#include <genlm/core/error.hpp>
#include <genlm/core/parameters.hpp>
#include <genlm/core/tensor.hpp>
#include <genlm/io/array.hpp>
#include <genlm/io/safetensors.hpp>

namespace genlm {

/// AdamW hyper-parameters. The defaults are the gLM reference's (transformers 4.22 AdamW with its
/// defaults betas 0.9/0.999, eps 1e-6, weight decay 0, bias correction on; lr 1e-4).
/// The largest step count an optimizer, a trainer or a checkpoint holds (2^62): far beyond any
/// run, and far enough from the int64 limit that counting on never overflows.
inline constexpr std::int64_t max_step_count = std::int64_t(1) << 62;

struct adamw_options {
  double lr = 1e-4;  ///< used by adamw::step(store) (step(store, lr) overrides it)
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-6;
  double weight_decay = 0.0;
  bool torch_style = false;  ///< true: torch.optim.AdamW's update rule

  /// transformers 4.22 AdamW defaults (lr 1e-3, eps 1e-6, weight decay 0).
  static adamw_options transformers_4_22(double lr = 1e-3, double weight_decay = 0.0) {
    adamw_options o;
    o.lr = lr;
    o.weight_decay = weight_decay;
    return o;
  }
  /// torch.optim.AdamW defaults (lr 1e-3, eps 1e-8, weight decay 1e-2).
  static adamw_options torch_defaults(double lr = 1e-3, double weight_decay = 1e-2) {
    adamw_options o;
    o.lr = lr;
    o.eps = 1e-8;
    o.weight_decay = weight_decay;
    o.torch_style = true;
    return o;
  }

  /// Throws value_error naming the first invalid field.
  void validate() const {
    const char* who = "adamw_options";
    check<value_error>(std::isfinite(lr) && lr >= 0, who, ": lr = ", lr, " must be finite and >= 0");
    check<value_error>(beta1 >= 0 && beta1 < 1, who, ": beta1 = ", beta1, " must be in [0, 1)");
    check<value_error>(beta2 >= 0 && beta2 < 1, who, ": beta2 = ", beta2, " must be in [0, 1)");
    check<value_error>(std::isfinite(eps) && eps > 0, who, ": eps = ", eps,
                       " must be finite and > 0 (0 divides 0 by 0 for a zero gradient)");
    check<value_error>(std::isfinite(weight_decay) && weight_decay >= 0, who, ": weight_decay = ", weight_decay,
                       " must be finite and >= 0");
  }
};

/// AdamW over all parameters of one parameter_store (one fused pass over the flat buffers).
template <class T, class Backend>
class adamw {
 public:
  using store_type = parameter_store<T, Backend>;
  using tensor_type = tensor<T, Backend>;

  /// The store must be finalized; the state is zero-initialised to its flat size. The store's
  /// layout (parameter names and shapes) is recorded for save_to / load_from.
  explicit adamw(const store_type& store, adamw_options options = {}) : opt_(options) {
    opt_.validate();
    check(store.finalized(), "adamw: the parameter_store must be finalized before creating the optimizer");
    exp_avg_.resize_zero({store.flat_size()});
    exp_avg_sq_.resize_zero({store.flat_size()});
    for (const auto& e : store.entries())
      layout_.append(e.name).append(1, '\t').append(e.shape.str()).append(1, '\n');
  }

  /// One AdamW step with learning rate lr on store.values() using store.grads(). clip_value > 0
  /// clamps each gradient to [-clip_value, clip_value] inside the same pass: the same update as
  /// clip_grad_value(store, clip_value) followed by step(store, lr), one pass over the gradients
  /// fewer; store.grads() is then left unclipped.
  void step(store_type& store, double lr, double clip_value = 0.0) {
    check<value_error>(std::isfinite(lr) && lr >= 0, "adamw::step: lr = ", lr, " must be finite and >= 0");
    check<value_error>(std::isfinite(clip_value) && clip_value >= 0, "adamw::step: clip_value = ", clip_value,
                       " must be finite and >= 0 (0: no clipping)");
    check<shape_error>(store.flat_size() == exp_avg_.numel(), "adamw::step: the parameter_store has ",
                       store.flat_size(), " flat elements but the optimizer state has ", exp_avg_.numel(),
                       " (a different store?)");
    adamw_hparams h;
    h.lr = lr;
    h.beta1 = opt_.beta1;
    h.beta2 = opt_.beta2;
    h.eps = opt_.eps;
    h.weight_decay = opt_.weight_decay;
    h.torch_style = opt_.torch_style;
    check<value_error>(step_ < max_step_count, "adamw::step: the step count ", step_, " is at its limit ",
                       max_step_count);
    h.step = step_ + 1;
    h.clip_value = clip_value;
    if (exp_avg_.numel())
      Backend::adamw_step(store.values().data(), store.grads().data(), exp_avg_.data(), exp_avg_sq_.data(),
                          exp_avg_.numel(), h);
    ++step_;
  }
  /// Step with options().lr.
  void step(store_type& store) { step(store, opt_.lr); }

  /// Number of steps taken so far (the k of the next step for lr_schedule::at).
  std::int64_t steps() const { return step_; }
  const adamw_options& options() const { return opt_; }
  /// Replaces the hyper-parameters (validated; the moments and the step counter are kept).
  void set_options(const adamw_options& o) {
    o.validate();
    opt_ = o;
  }

  const tensor_type& exp_avg() const { return exp_avg_; }
  const tensor_type& exp_avg_sq() const { return exp_avg_sq_; }

  /// Zeroes the moments and the step counter.
  void reset() {
    exp_avg_.zero();
    exp_avg_sq_.zero();
    step_ = 0;
  }

  /// Writes prefix + "exp_avg", "exp_avg_sq" (flat 1-D, dtype of T), "step" (I64, shape (1,))
  /// and "layout" (U8, the parameter store's layout as text: one "name<TAB>(shape)" line per
  /// parameter, in flat-buffer order).
  void save_to(std::map<std::string, io::array>& out, const std::string& prefix = "optimizer.") const {
    const std::int64_t n = exp_avg_.numel();
    out.insert_or_assign(prefix + "exp_avg", io::array::from<T>({n}, exp_avg_.to_host()));
    out.insert_or_assign(prefix + "exp_avg_sq", io::array::from<T>({n}, exp_avg_sq_.to_host()));
    out.insert_or_assign(prefix + "step", io::array::from<std::int64_t>({1}, std::vector<std::int64_t>{step_}));
    const std::vector<std::uint8_t> layout(layout_.begin(), layout_.end());
    out.insert_or_assign(prefix + "layout", io::array::from<std::uint8_t>({std::int64_t(layout.size())}, layout));
  }

  /// Reads what save_to wrote. The moments may be any floating dtype but must be 1-D with the
  /// store's flat size (shape_error naming the tensor and both sizes); the step must be an integer
  /// tensor of one element, >= 0; exp_avg_sq must be finite and >= 0 (value_error). When the file
  /// holds a "layout" (files written before it was added do not), it must equal this store's:
  /// shape_error naming the first parameter that differs (the state of another model).
  void load_from(const io::safetensors_file& f, const std::string& prefix = "optimizer.") {
    constexpr const char* who = "adamw::load_from";
    const std::int64_t n = exp_avg_.numel();
    auto read_moment = [&](const std::string& name) {
      const io::array& a = f.at(name);
      check<format_error>(io::is_floating(a.dtype), who, ": tensor '", name, "' in '", f.source, "' has dtype ",
                          io::dtype_name(a.dtype), ", expected a floating-point dtype");
      check<shape_error>(a.shape.size() == 1 && a.shape[0] == n, who, ": tensor '", name, "' in '", f.source,
                         "' has shape ", io::shape_to_string(a.shape), ", expected (", n,
                         ",) (the parameter store's flat size)");
      std::vector<T> v = a.to<T>(std::string(who) + ": tensor '" + name + "' in '" + f.source + "'");
      for (std::size_t i = 0; i < v.size(); ++i)
        check<value_error>(std::isfinite(v[i]), who, ": tensor '", name, "' in '", f.source,
                           "' has a non-finite value ", v[i], " at index ", i);
      return v;
    };
    const std::string nm = prefix + "exp_avg", nv = prefix + "exp_avg_sq", ns = prefix + "step";
    std::vector<T> m = read_moment(nm), v = read_moment(nv);
    for (std::size_t i = 0; i < v.size(); ++i)
      check<value_error>(v[i] >= T(0), who, ": tensor '", nv, "' in '", f.source, "' has a negative value ", v[i],
                         " at index ", i);
    const io::array& s = f.at(ns);
    check<format_error>(s.dtype == io::dtype::i64 || s.dtype == io::dtype::i32, who, ": tensor '", ns, "' in '",
                        f.source, "' has dtype ", io::dtype_name(s.dtype), ", expected I64");
    check<shape_error>(s.numel() == 1, who, ": tensor '", ns, "' in '", f.source, "' has shape ",
                       io::shape_to_string(s.shape), ", expected (1,)");
    const std::int64_t st = s.to<std::int64_t>()[0];
    check<value_error>(st >= 0 && st <= max_step_count, who, ": tensor '", ns, "' in '", f.source, "' holds step ",
                       st, ", expected 0..", max_step_count);
    if (f.contains(prefix + "layout")) check_layout(f, prefix + "layout");
    exp_avg_.from_host({n}, m);
    exp_avg_sq_.from_host({n}, v);
    step_ = st;
  }

 private:
  /// Compares the saved layout (tensor `name` of f) with this store's, line by line.
  void check_layout(const io::safetensors_file& f, const std::string& name) const {
    constexpr const char* who = "adamw::load_from";
    const io::array& a = f.at(name);
    check<format_error>(a.dtype == io::dtype::u8 && a.shape.size() == 1, who, ": tensor '", name, "' in '", f.source,
                        "' has dtype ", io::dtype_name(a.dtype), " and shape ", io::shape_to_string(a.shape),
                        ", expected a 1-D U8 tensor (the parameter layout)");
    const std::vector<std::uint8_t> bytes = a.to<std::uint8_t>(name);
    const std::string saved(bytes.begin(), bytes.end());
    auto next_line = [](const std::string& s, std::size_t& pos) {
      if (pos >= s.size()) return std::string();
      std::size_t end = s.find('\n', pos);
      if (end == std::string::npos) end = s.size();
      std::string line = s.substr(pos, end - pos);
      pos = end + 1;
      return line;
    };
    auto describe = [](const std::string& line) {
      if (line.empty()) return std::string("absent");
      const std::size_t tab = line.find('\t');
      if (tab == std::string::npos) return "'" + line + "'";
      return "'" + line.substr(0, tab) + "' " + line.substr(tab + 1);
    };
    std::size_t ps = 0, pm = 0;
    for (std::size_t i = 0; ps < saved.size() || pm < layout_.size(); ++i) {
      const std::string ls = next_line(saved, ps), lm = next_line(layout_, pm);
      check<shape_error>(ls == lm, who, ": parameter ", i, " of the optimizer state in '", f.source, "' is ",
                         describe(ls), " but this store's parameter ", i, " is ", describe(lm),
                         " (the optimizer state of a different model?)");
    }
  }

  adamw_options opt_;
  tensor_type exp_avg_, exp_avg_sq_;
  std::int64_t step_ = 0;
  std::string layout_;  // "name\t(shape)\n" per parameter of the store, in order
};

/// Learning-rate schedules of transformers (LambdaLR indexing: at(k) is the lr of the k-th
/// optimizer step, k = 0-based).
struct lr_schedule {
  enum kind { constant, constant_with_warmup, linear_with_warmup };

  kind type = constant;
  double base_lr = 1e-4;
  std::int64_t warmup_steps = 0;  ///< constant_with_warmup, linear_with_warmup
  std::int64_t total_steps = 0;   ///< linear_with_warmup (num_training_steps)

  static lr_schedule make_constant(double lr) { return {constant, lr, 0, 0}; }
  static lr_schedule make_constant_with_warmup(double lr, std::int64_t warmup) {
    return {constant_with_warmup, lr, warmup, 0};
  }
  static lr_schedule make_linear_with_warmup(double lr, std::int64_t warmup, std::int64_t total) {
    return {linear_with_warmup, lr, warmup, total};
  }

  /// lambda(step) (the multiplier of base_lr), computed with the same floating-point operations
  /// as transformers' lambdas.
  double factor(std::int64_t step) const {
    check<value_error>(step >= 0, "lr_schedule: step ", step, " must be >= 0");
    check<value_error>(warmup_steps >= 0, "lr_schedule: warmup_steps = ", warmup_steps, " must be >= 0");
    switch (type) {
      case constant: return 1.0;
      case constant_with_warmup:
        if (step < warmup_steps) return double(step) / std::max(1.0, double(warmup_steps));
        return 1.0;
      case linear_with_warmup:
        if (step < warmup_steps) return double(step) / double(std::max<std::int64_t>(1, warmup_steps));
        return std::max(0.0, double(total_steps - step) /
                                 double(std::max<std::int64_t>(1, total_steps - warmup_steps)));
    }
    throw value_error(detail::concat("lr_schedule: unknown schedule kind ", int(type)));
  }
  /// base_lr * lambda(step).
  double at(std::int64_t step) const { return base_lr * factor(step); }
};

/// torch.nn.utils.clip_grad_value_ on the whole flat gradient buffer: g = clamp(g, -c, c).
template <class T, class Backend>
void clip_grad_value(parameter_store<T, Backend>& store, double clip_value) {
  check<value_error>(clip_value >= 0, "clip_grad_value: clip_value = ", clip_value, " must be >= 0");
  auto& g = store.grads();
  if (g.numel()) Backend::clip_by_value(g.data(), g.numel(), T(clip_value));
}

/// L2 norm of all gradients (accumulated in double).
template <class T, class Backend>
double grad_norm(const parameter_store<T, Backend>& store) {
  const auto& g = store.grads();
  return g.numel() ? std::sqrt(Backend::sum_squares(g.data(), g.numel())) : 0.0;
}

/// torch.nn.utils.clip_grad_norm_(params, max_norm) (norm_type 2): scales the gradients by
/// max_norm / (total + 1e-6) when that is < 1 and returns the total norm before clipping.
template <class T, class Backend>
double clip_grad_norm(parameter_store<T, Backend>& store, double max_norm) {
  check<value_error>(std::isfinite(max_norm) && max_norm >= 0, "clip_grad_norm: max_norm = ", max_norm,
                     " must be finite and >= 0");
  const double total = grad_norm(store);
  const double coef = max_norm / (total + 1e-6);
  auto& g = store.grads();
  if (!(coef >= 1.0) && g.numel()) Backend::scale(g.numel(), T(coef), g.data());
  return total;
}

/// True when no gradient is NaN or Inf.
template <class T, class Backend>
bool grads_finite(const parameter_store<T, Backend>& store) {
  const auto& g = store.grads();
  return g.numel() == 0 || Backend::count_nonfinite(g.data(), g.numel()) == 0;
}

}  // namespace genlm
