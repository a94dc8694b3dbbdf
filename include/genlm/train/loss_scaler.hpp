// genlm/train/loss_scaler.hpp - dynamic loss scaling for reduced-precision training (the
// algorithm of torch.cuda.amp.GradScaler), independent of the backend.
//
// A float16 GEMM flushes gradients below ~6e-8 to zero. Loss scaling multiplies the gradient of the
// loss by a scale S before the backward pass, so the small gradients stay representable, and
// multiplies the parameter gradients by 1/S afterwards:
//   1. dL/dout *= S                      (trainer: the host loss gradients, before the upload)
//   2. backward                          (every backward op is linear in its upstream gradient)
//   3. unscale_and_check(store): if any gradient is NaN/Inf the step overflowed: the gradients are
//      left as they are and false is returned; else g *= 1/S (one Backend::scale pass, skipped
//      when S == 1) and true is returned (unscale(store, finite): the same with the caller's count,
//      e.g. the one masked_gene_pass brings back with the loss)
//   4. on overflow the caller skips clipping and the optimizer step
//   5. update(found_inf): overflow -> S *= backoff_factor and the growth tracker restarts; else
//      ++tracker, and after growth_interval overflow-free steps in a row S *= growth_factor (kept
//      only when the product is finite, as torch does) and the tracker restarts.
//
// Exactness: with S a power of two (init_scale 2^16, growth 2, backoff 0.5: the defaults) the
// multiplication by S and the one by 1/S are exact, and so is every product and sum of the
// backward pass (it is linear in the scaled gradient, and scaling by 2^k commutes exactly with IEEE
// rounding). As long as nothing overflows and no intermediate value is subnormal, a scaled step
// therefore gives bit for bit the gradients of an unscaled step (tests/test_loss_scaler.cpp checks
// this for whole training runs). Other factors (any growth_factor > 1, backoff_factor in (0, 1))
// are allowed, but then S is no power of two and unscaling rounds.
//
// State in checkpoints (save_to / load_from, prefix "scaler."): "scaler.scale" (F64, shape (1,)),
// "scaler.growth_tracker" (I64, (1,)) and "scaler.skipped_steps" (I64, (1,)). load_from accepts a
// file without them (a checkpoint of a run without loss scaling) and keeps the current state.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <genlm/backend/precision.hpp>
#include <genlm/core/error.hpp>
#include <genlm/core/parameters.hpp>
#include <genlm/io/array.hpp>
#include <genlm/io/safetensors.hpp>

namespace genlm {

/// Whether a trainer scales the loss: automatic = what the backend's precision policy asks for
/// (backend_precision_t<Backend>::loss_scaling: on for precision::fp16 only).
enum class loss_scaling_mode { automatic, on, off };

/// GradScaler's options (same defaults as torch.cuda.amp.GradScaler).
struct loss_scale_options {
  loss_scaling_mode enabled = loss_scaling_mode::automatic;
  double init_scale = 65536.0;  ///< 2^16
  double growth_factor = 2.0;   ///< > 1; a power of two keeps unscaling exact
  double backoff_factor = 0.5;  ///< in (0, 1); a power of two keeps unscaling exact
  std::int64_t growth_interval = 2000;  ///< overflow-free steps in a row before the scale grows

  /// Throws value_error naming the first invalid field and its value.
  void validate() const {
    const char* who = "loss_scale_options";
    check<value_error>(std::isfinite(init_scale) && init_scale > 0, who, ": init_scale = ", init_scale,
                       " must be finite and > 0 (a power of two keeps unscaling exact)");
    check<value_error>(std::isfinite(growth_factor) && growth_factor > 1, who, ": growth_factor = ", growth_factor,
                       " must be finite and > 1 (a power of two, e.g. 2, keeps unscaling exact)");
    check<value_error>(backoff_factor > 0 && backoff_factor < 1, who, ": backoff_factor = ", backoff_factor,
                       " must be in (0, 1) (a power of two, e.g. 0.5, keeps unscaling exact)");
    check<value_error>(growth_interval >= 1, who, ": growth_interval = ", growth_interval, " must be >= 1");
  }
  /// Resolves `enabled`: automatic gives `automatic_default` (the precision policy's choice).
  bool resolve(bool automatic_default) const {
    return enabled == loss_scaling_mode::automatic ? automatic_default : enabled == loss_scaling_mode::on;
  }
};

/// Dynamic loss scaler (torch.cuda.amp.GradScaler). A disabled scaler has scale() 1, its
/// unscale_and_check only checks the gradients and its update does nothing.
class loss_scaler {
 public:
  /// `automatic_default` decides loss_scaling_mode::automatic (see loss_scale_options::resolve);
  /// note that a default-constructed scaler is therefore disabled (use loss_scaling_mode::on, or
  /// for_backend<Backend>()).
  explicit loss_scaler(const loss_scale_options& o = {}, bool automatic_default = false)
      : opt_(o), enabled_(o.resolve(automatic_default)) {
    opt_.validate();
    scale_ = opt_.init_scale;
  }
  /// The scaler a trainer on Backend uses: automatic = backend_precision_t<Backend>::loss_scaling.
  template <class Backend>
  static loss_scaler for_backend(const loss_scale_options& o = {}) {
    return loss_scaler(o, backend_precision_t<Backend>::loss_scaling);
  }

  bool enabled() const { return enabled_; }
  const loss_scale_options& options() const { return opt_; }
  /// The current scale (1 when disabled).
  double scale() const { return enabled_ ? scale_ : 1.0; }
  /// Overflow-free steps since the last growth or backoff.
  std::int64_t growth_tracker() const { return tracker_; }
  /// Steps skipped because of non-finite gradients (update(true) calls), in total.
  std::int64_t skipped_steps() const { return skipped_; }
  /// update(true) calls since the last update(false).
  std::int64_t consecutive_skipped_steps() const { return consecutive_; }

  /// Whether scale() is representable in T: a larger scale overflows at once (and converting it
  /// would be undefined), so a trainer counts that step as an overflow without a backward pass.
  template <class T>
  bool scale_fits() const {
    return scale() <= double(std::numeric_limits<T>::max());
  }

  /// After a backward pass of the loss scaled by scale(): false when a gradient of `store` is
  /// NaN/Inf (the gradients are left unchanged: the caller skips the step); else multiplies the
  /// gradients by 1/scale() (Backend::scale; nothing to do at scale 1) and returns true.
  template <class T, class Backend>
  bool unscale_and_check(parameter_store<T, Backend>& store) const {
    const auto& g = store.grads();
    return unscale(store, g.numel() == 0 || Backend::count_nonfinite(g.data(), g.numel()) == 0);
  }
  /// unscale_and_check with the check already made by the caller: `finite` says that no gradient
  /// of `store` is NaN/Inf (with a GPU backend counting them is a wait for the device, which a
  /// caller can share with other results). false: returns false and leaves the gradients.
  template <class T, class Backend>
  bool unscale(parameter_store<T, Backend>& store, bool finite) const {
    if (!finite) return false;
    auto& g = store.grads();
    if (g.numel() == 0) return true;
    const double s = scale();
    if (s == 1.0) return true;
    const double inv = 1.0 / s;
    check<value_error>(inv <= double(std::numeric_limits<T>::max()), "loss_scaler: scale ", s,
                       " is too small to unscale in this scalar type (1/scale overflows) after ", consecutive_,
                       " skipped steps in a row; the gradients are non-finite at every scale (NaN inputs or a"
                       " diverged model?)");
    Backend::scale(g.numel(), T(inv), g.data());
    return true;
  }

  /// Adjusts the scale after a step: found_inf -> backoff (the step was skipped), else count the
  /// step and grow the scale after growth_interval overflow-free steps in a row.
  void update(bool found_inf) {
    if (!enabled_) return;
    if (found_inf) {
      const double next = scale_ * opt_.backoff_factor;
      check<value_error>(next >= std::numeric_limits<double>::min(), "loss_scaler: the scale fell to ", next,
                         " after ", consecutive_ + 1, " skipped steps in a row; the gradients are non-finite at every"
                         " scale (NaN inputs or a diverged model?)");
      scale_ = next;
      tracker_ = 0;
      ++skipped_;
      ++consecutive_;
      return;
    }
    consecutive_ = 0;
    if (++tracker_ >= opt_.growth_interval) {
      const double next = scale_ * opt_.growth_factor;
      if (std::isfinite(next)) scale_ = next;
      tracker_ = 0;
    }
  }

  /// Writes prefix + "scale" (F64), "growth_tracker" and "skipped_steps" (I64), each of shape (1,).
  void save_to(std::map<std::string, io::array>& out, const std::string& prefix = "scaler.") const {
    out.insert_or_assign(prefix + "scale", io::array::from<double>({1}, std::vector<double>{scale_}));
    out.insert_or_assign(prefix + "growth_tracker",
                         io::array::from<std::int64_t>({1}, std::vector<std::int64_t>{tracker_}));
    out.insert_or_assign(prefix + "skipped_steps",
                         io::array::from<std::int64_t>({1}, std::vector<std::int64_t>{skipped_}));
  }

  /// Reads what save_to wrote and returns true; returns false and keeps the current state when the
  /// file has neither prefix + "scale" nor prefix + "growth_tracker" (older checkpoints, runs
  /// without loss scaling). One without the other is a format_error; the scale must be finite and
  /// > 0, the counters integers >= 0 (value_error naming the tensor). "skipped_steps" is optional.
  bool load_from(const io::safetensors_file& f, const std::string& prefix = "scaler.") {
    constexpr const char* who = "loss_scaler::load_from";
    const std::string ns = prefix + "scale", nt = prefix + "growth_tracker", nk = prefix + "skipped_steps";
    const bool has_s = f.contains(ns), has_t = f.contains(nt);
    if (!has_s && !has_t) return false;
    check<format_error>(has_s && has_t, who, ": '", f.source, "' has tensor '", has_s ? ns : nt, "' but not '",
                        has_s ? nt : ns, "'");
    auto one = [&](const std::string& name, bool floating) -> const io::array& {
      const io::array& a = f.at(name);
      check<format_error>(floating ? io::is_floating(a.dtype) : (a.dtype == io::dtype::i64 || a.dtype == io::dtype::i32),
                          who, ": tensor '", name, "' in '", f.source, "' has dtype ", io::dtype_name(a.dtype),
                          floating ? ", expected a floating-point dtype" : ", expected I64");
      check<shape_error>(a.numel() == 1, who, ": tensor '", name, "' in '", f.source, "' has shape ",
                         io::shape_to_string(a.shape), ", expected (1,)");
      return a;
    };
    const double s = one(ns, true).to<double>()[0];
    check<value_error>(std::isfinite(s) && s > 0, who, ": tensor '", ns, "' in '", f.source, "' holds scale ", s,
                       ", expected a finite value > 0");
    const std::int64_t t = one(nt, false).to<std::int64_t>()[0];
    check<value_error>(t >= 0, who, ": tensor '", nt, "' in '", f.source, "' holds ", t, ", expected >= 0");
    std::int64_t k = 0;
    if (f.contains(nk)) {
      k = one(nk, false).to<std::int64_t>()[0];
      check<value_error>(k >= 0, who, ": tensor '", nk, "' in '", f.source, "' holds ", k, ", expected >= 0");
    }
    scale_ = s;
    tracker_ = t;
    skipped_ = k;
    consecutive_ = 0;
    return true;
  }

 private:
  loss_scale_options opt_;
  bool enabled_ = false;
  double scale_ = 65536.0;
  std::int64_t tracker_ = 0, skipped_ = 0, consecutive_ = 0;
};

}  // namespace genlm
