// genlm/io/state_dict.hpp - moving a parameter_store to and from safetensors by state-dict name.
#pragma once
#include <map>
#include <set>
#include <string>
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
  }
  return false;
}
}  // namespace sd_detail

/// Copies every parameter of `ps` from `file` (converting the file's float dtype to T). A missing
/// tensor, a shape mismatch or (strict) an unexpected tensor throws, naming the file, the tensor
/// and the shapes seen vs expected.
template <class T, class Backend>
load_report load_state_dict(parameter_store<T, Backend>& ps, const safetensors_file& file,
                            const load_options& opt = {}) {
  load_report rep;
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
    const shape_t s = shape_t::from_range(a.shape.begin(), a.shape.end());
    check<shape_error>(s == e.shape, "safetensors file '", file.source, "': tensor '", key, "' has shape ", s.str(),
                       " but the model expects ", e.shape.str(), " for parameter '", e.name, "'");
    const std::vector<T> v = a.template to<T>();
    ps.set(e.name, e.shape, v);
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
  return rep;
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
