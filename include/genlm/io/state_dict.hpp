// genlm/io/state_dict.hpp - moving a parameter_store to and from safetensors by state-dict name.
#pragma once
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <genlm/core/parameters.hpp>
#include <genlm/io/safetensors.hpp>

namespace genlm::io {

struct load_options {
  /// Tensors in the file that are neither parameters nor listed here make the load fail when
  /// strict is true (they usually mean a different model type).
  bool strict = true;
  /// Names (exact) or prefixes ending in '.' or '*' that may be present and are ignored.
  std::vector<std::string> ignore;
  /// Tried in turn when a parameter is not in the file under its own name: each entry is
  /// removed from the front of the parameter name (e.g. "roberta.").
  std::vector<std::string> strip_prefixes;
};

/// What a load found: which file tensors were used and which were ignored.
struct load_report {
  std::vector<std::string> loaded;
  std::vector<std::string> ignored;
};

namespace sd_detail {
inline bool st_ignored(const std::string& name, const std::vector<std::string>& ignore) {
  for (const auto& p : ignore) {
    if (p == name) return true;
    if (!p.empty() && p.back() == '*' && name.compare(0, p.size() - 1, p, 0, p.size() - 1) == 0) return true;
    if (!p.empty() && p.back() == '.' && name.compare(0, p.size(), p) == 0) return true;
  }
  return false;
}
}  // namespace sd_detail

/// The parameters of a file, checked (decode_state_dict) but not yet written to the store, so
/// that a caller can validate everything else before committing. It holds no copy of the values
/// (a paper-size model would need 1.1 GB more): commit_state_dict converts them again from the
/// same file, which must stay alive until then.
template <class T>
struct decoded_state_dict {
  const safetensors_file* file = nullptr;
  std::vector<std::pair<std::string, std::string>> keys;  ///< parameter name -> tensor name in the file
  load_report report;
};

/// Checks and converts every parameter of `ps` from `file` without touching `ps`. A missing
/// tensor, a shape mismatch (of any rank) or (strict) an unexpected tensor throws, naming the
/// file, the tensor and the shapes seen vs expected; a non-floating dtype is a format_error
/// naming the dtype; NaN/Inf, or float64 values beyond the range of T, are a value_error naming
/// the tensor, the flat index and the value.
template <class T, class Backend>
decoded_state_dict<T> decode_state_dict(const parameter_store<T, Backend>& ps, const safetensors_file& file,
                                        const load_options& opt = {}) {
  decoded_state_dict<T> out;
  out.file = &file;
  load_report& rep = out.report;
  std::set<std::string> used;
  for (const auto& e : ps.entries()) {
    std::string key = e.name;
    if (!file.contains(key))
      for (const auto& pre : opt.strip_prefixes)
        if (key.rfind(pre, 0) == 0 && file.contains(key.substr(pre.size()))) {
          key = key.substr(pre.size());
          break;
        }
    if (!file.contains(key))
      throw lookup_error(genlm::detail::concat("safetensors file '", file.source, "': parameter '", e.name,
                                               "' (shape ", e.shape.str(), ") is missing; the model type does not",
                                               " match this file"));
    const array& a = file.at(key);
    const std::string where = "safetensors file '" + file.source + "': tensor '" + key + "'";
    check<shape_error>(a.shape == e.shape.dims(), where, " has shape ", shape_to_string(a.shape),
                       " but the model expects ", shape_to_string(e.shape.dims()), " for parameter '", e.name, "'");
    check<format_error>(is_floating(a.dtype), where, " has dtype ", dtype_name(a.dtype), " but parameter '", e.name,
                        "' needs a floating-point dtype (F16, BF16, F32, F64)");
    const std::vector<T> v = a.template to<T>(where);  // checked here, converted again by commit
    for (std::size_t i = 0; i < v.size(); ++i)
      check<value_error>(std::isfinite(v[i]), where, " has a non-finite value ", v[i], " at flat index ", i,
                         " (parameter '", e.name, "' must be finite)");
    out.keys.emplace_back(e.name, key);
    used.insert(key);
    rep.loaded.push_back(key);
  }
  for (const auto& [name, a] : file.tensors) {
    if (used.count(name)) continue;
    if (sd_detail::st_ignored(name, opt.ignore) || !opt.strict) {
      rep.ignored.push_back(name);
      continue;
    }
    throw format_error(genlm::detail::concat("safetensors file '", file.source, "': unexpected tensor '", name,
                                             "' (not a parameter of this model type); is this a checkpoint of",
                                             " another configuration?"));
  }
  return out;
}

/// Writes what decode_state_dict checked into `ps` (the store it was decoded for), converting
/// each tensor of the (still alive) file once more.
template <class T, class Backend>
load_report commit_state_dict(parameter_store<T, Backend>& ps, decoded_state_dict<T> d) {
  for (const auto& [name, key] : d.keys) {
    const auto& e = ps.at(ps.find(name));
    ps.set(name, e.shape, d.file->at(key).template to<T>(key));
  }
  return std::move(d.report);
}

/// Copies every parameter of `ps` from `file` (converting the file's float dtype to T). Nothing
/// is written unless every parameter passes the checks of decode_state_dict (same errors).
template <class T, class Backend>
load_report load_state_dict(parameter_store<T, Backend>& ps, const safetensors_file& file,
                            const load_options& opt = {}) {
  return commit_state_dict(ps, decode_state_dict(ps, file, opt));
}

/// All parameters of `ps` as arrays keyed by state-dict name (optionally with a name prefix),
/// ready for write_safetensors.
template <class T, class Backend>
std::map<std::string, array> state_dict(const parameter_store<T, Backend>& ps, const std::string& prefix = "") {
  std::map<std::string, array> out;
  for (const auto& e : ps.entries()) {
    const std::vector<T> v = ps.get(e.name);
    out.emplace(prefix + e.name, array::from(e.shape.dims(), v));
  }
  return out;
}

}  // namespace genlm::io
