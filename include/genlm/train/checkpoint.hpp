// genlm/train/checkpoint.hpp - training checkpoints in safetensors (model + normalisation + PCA +
// optimizer state + loss-scaler state + step + seed), written atomically (temp file + fsync + rename).
//
// Tensor names: the model's state-dict names ("dense.weight", "roberta.encoder.layer.0...."),
// "norm.*", "pca.*", "optimizer.*", "scaler.*" (only from runs with loss scaling). Metadata: "genlm.format", "genlm.config" (the model_config),
// "genlm.scalar", "genlm.attention", "genlm.activation" (the attention variant's and activation's
// names; checked when present), "genlm.step", "genlm.seed", plus caller-supplied entries.
//
// Every checkpoint holds a fitted feature pipeline: save_checkpoint refuses an unfitted one
// (value_error), since every consumer (resume, embed, predict) needs it. load_checkpoint first
// checks and decodes everything - metadata (format, config, scalar, step and seed as
// non-negative decimal integers), the feature pipeline (norm.* / pca.* shapes against the
// model's plm_dim and pca_components), every parameter (shape, floating dtype, finite values),
// the optimizer state (all of optimizer.exp_avg / exp_avg_sq / step when any optimizer.* tensor
// is present) and the loss-scaler state - and only then writes into the model, pipeline,
// optimizer and scaler, so a failed load leaves them as they were. "genlm.scalar" must be
// "float32" or "float64"; a checkpoint of the other scalar type loads with its values converted
// (as every tensor loader here converts between floating dtypes; values out of the model's range
// are a value_error).
#pragma once
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <genlm/io/safetensors.hpp>
#include <genlm/io/state_dict.hpp>
#include <genlm/train/loss_scaler.hpp>
#include <genlm/train/optimizer.hpp>
#include <genlm/train/trainer.hpp>

namespace genlm {

inline constexpr const char* checkpoint_format = "genlm-checkpoint/1";

template <class Model>
std::string scalar_name() {
  return std::is_same_v<typename Model::scalar, float> ? "float32" : "float64";
}

/// Writes model parameters, the feature pipeline, and (when given) optimizer state and step, and
/// the loss scaler's state when `scaler` is given and enabled (trainer::scaler()).
template <class Model>
void save_checkpoint(const std::filesystem::path& path, const Model& model, const feature_pipeline& features,
                     const adamw<typename Model::scalar, typename Model::backend>* optimizer, std::int64_t step,
                     std::uint64_t seed, std::map<std::string, std::string> metadata = {},
                     const loss_scaler* scaler = nullptr) {
  check<value_error>(features.fitted(), "save_checkpoint '", path.string(),
                     "': the feature pipeline is not fitted (fit it, or load it from a checkpoint, first); a",
                     " checkpoint without norm.* / pca.* tensors could not be used for training or inference");
  check<value_error>(step >= 0, "save_checkpoint '", path.string(), "': step ", step, " is negative");
  auto tensors = io::state_dict(model.parameters());
  features.save_to(tensors);
  if (optimizer) optimizer->save_to(tensors, "optimizer.");
  if (scaler && scaler->enabled()) scaler->save_to(tensors, "scaler.");
  metadata["genlm.format"] = checkpoint_format;
  metadata["genlm.config"] = Model::config.str();
  metadata["genlm.scalar"] = scalar_name<Model>();
  metadata["genlm.attention"] = Model::variant::name;
  metadata["genlm.activation"] = Model::activation::name;
  metadata["genlm.step"] = std::to_string(step);
  metadata["genlm.seed"] = std::to_string(seed);
  io::write_safetensors(path, tensors, metadata);
}

struct checkpoint_info {
  std::int64_t step = 0;
  std::uint64_t seed = 0;
  bool has_optimizer = false;
  bool has_scaler = false;  ///< the file holds loss-scaler state ("scaler.*")
  std::map<std::string, std::string> metadata;
};

/// The seed of a run that continues checkpoint `name` (info) up to `steps` steps in all: the
/// checkpoint's, so that the run keeps its data order, masking and dropout. A seed the caller
/// chose (`chosen`, e.g. --seed given) must be that one, and `steps` must go beyond the
/// checkpoint's step; value_error naming both values otherwise (`genlm train --resume`,
/// parallel::train_data_parallel).
inline std::uint64_t continuation_seed(const checkpoint_info& info, const std::string& name,
                                       std::optional<std::uint64_t> chosen, std::int64_t steps) {
  check<value_error>(!chosen || *chosen == info.seed, "--seed ", chosen.value_or(0), " differs from the seed ",
                     info.seed, " of checkpoint '", name,
                     "' (genlm.seed); a resumed run continues that run's data order, masking and dropout: "
                     "leave --seed out, or give --seed ", info.seed);
  check<value_error>(steps > info.step, "--steps ", steps, " is not beyond the step ", info.step, " of checkpoint '",
                     name, "': nothing to train (steps count from the start of the run, the checkpoint's included)");
  return info.seed;
}

namespace ckpt_detail {

/// A metadata value for messages, cut to 200 characters (metadata can be arbitrarily long).
inline std::string excerpt(const std::string& v) { return v.size() > 200 ? v.substr(0, 200) + "..." : v; }

/// A metadata value that must be a non-negative decimal integer <= max (no sign, no spaces).
inline std::uint64_t parse_count(const std::string& src, const std::string& key, const std::string& v,
                                 std::uint64_t max) {
  std::uint64_t x = 0;
  const char* end = v.data() + v.size();
  const auto [ptr, ec] = std::from_chars(v.data(), end, x);
  const bool digits = !v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
  check<format_error>(digits && ec == std::errc() && ptr == end && x <= max, src, ": metadata '", key, "' is '",
                      excerpt(v), "', expected a non-negative decimal integer (at most ", max, ")");
  return x;
}

/// The norm.* / pca.* tensors and the shapes the model's config implies for them (the
/// explained_variance_ratio is optional, see pca::load_from).
template <class Model>
void check_feature_shapes(const io::safetensors_file& f, const std::string& src) {
  constexpr std::int64_t d = Model::config.plm_dim, k = Model::config.pca_components;
  struct want {
    const char* name;
    std::vector<std::int64_t> shape;
    bool required;
  };
  const want all[] = {{"norm.mean", {d}, true},
                      {"norm.std", {d}, true},
                      {"pca.components", {k, d}, true},
                      {"pca.mean", {d}, true},
                      {"pca.explained_variance", {k}, true},
                      {"pca.explained_variance_ratio", {k}, false}};
  bool any = false;
  for (const auto& w : all) any = any || f.contains(w.name);
  check<format_error>(any, src, ": holds no feature pipeline (tensors norm.* and pca.*); it was not written by",
                      " save_checkpoint with a fitted feature_pipeline");
  for (const auto& w : all) {
    if (!f.contains(w.name)) {
      check<format_error>(!w.required, src, ": tensor '", w.name, "' of the feature pipeline is missing");
      continue;
    }
    const auto& s = f.at(w.name).shape;
    check<shape_error>(s == w.shape, src, ": tensor '", w.name, "' has shape ", io::shape_to_string(s),
                       " but the model type here (plm_dim ", d, ", pca_components ", k, ") expects ",
                       io::shape_to_string(w.shape));
  }
}

/// Whether the file holds optimizer state; if any "optimizer.*" tensor is there, the ones
/// adamw::load_from needs (exp_avg, exp_avg_sq, step) must all be (format_error naming the
/// missing ones; the optional "optimizer.layout" alone does not make a usable state).
inline bool has_optimizer_state(const io::safetensors_file& f, const std::string& src) {
  const std::string prefix = "optimizer.";
  const auto first = f.tensors.lower_bound(prefix);
  if (first == f.tensors.end() || first->first.rfind(prefix, 0) != 0) return false;
  std::string missing;
  for (const char* n : {"exp_avg", "exp_avg_sq", "step"})
    if (!f.contains(prefix + n)) missing += (missing.empty() ? "'" : ", '") + prefix + n + "'";
  check<format_error>(missing.empty(), src, ": has optimizer state but not all of it: ", missing, " missing",
                      " (expected optimizer.exp_avg, optimizer.exp_avg_sq and optimizer.step)");
  return true;
}

}  // namespace ckpt_detail

/// Reads a parsed checkpoint into `model` and `features` (and `optimizer` / `scaler` when non-null
/// and present; a checkpoint without scaler state leaves `scaler` as it is). A checkpoint of another model type fails with a message naming both configurations;
/// a tensor of the wrong shape fails naming the tensor and both shapes. Everything is checked
/// before anything is written: a failed load leaves model, features, optimizer and scaler unchanged.
template <class Model>
checkpoint_info load_checkpoint(const io::safetensors_file& f, Model& model, feature_pipeline& features,
                                adamw<typename Model::scalar, typename Model::backend>* optimizer = nullptr,
                                loss_scaler* scaler = nullptr) {
  const std::string src = "checkpoint '" + f.source + "'";
  auto meta = [&](const std::string& key) -> std::string {
    auto it = f.metadata.find(key);
    check<format_error>(it != f.metadata.end(), src, ": metadata field '", key, "' is missing (not a genlm checkpoint?)");
    return it->second;
  };
  const std::string fmt = meta("genlm.format");
  check<format_error>(fmt == checkpoint_format, src, ": metadata 'genlm.format' is '", ckpt_detail::excerpt(fmt),
                      "', expected '", checkpoint_format, "'");
  const std::string cfg = meta("genlm.config");
  check<shape_error>(cfg == Model::config.str(), src, ": holds a model with config {", ckpt_detail::excerpt(cfg),
                     "} but the model type here is {", Model::config.str(), "}");
  const std::string scalar = meta("genlm.scalar");
  check<format_error>(scalar == "float32" || scalar == "float64", src, ": metadata 'genlm.scalar' is '",
                      ckpt_detail::excerpt(scalar), "', expected 'float32' or 'float64' (the model type here is ",
                      scalar_name<Model>(), ")");
  // Attention variant and activation: parameters of the same shapes, another function. Files
  // written before these fields existed (all relative_key_query + gelu) have neither.
  for (const auto& [key, here] : {std::pair<std::string, std::string>{"genlm.attention", Model::variant::name},
                                  {"genlm.activation", Model::activation::name}}) {
    auto it = f.metadata.find(key);
    check<shape_error>(it == f.metadata.end() || it->second == here, src, ": holds a model with metadata '", key,
                       "' = '", it == f.metadata.end() ? std::string() : ckpt_detail::excerpt(it->second),
                       "' but the model type here has '", here, "'");
  }
  checkpoint_info info;
  info.metadata = f.metadata;
  info.step = std::int64_t(
      ckpt_detail::parse_count(src, "genlm.step", meta("genlm.step"), std::uint64_t(max_step_count)));
  info.seed = ckpt_detail::parse_count(src, "genlm.seed", meta("genlm.seed"),
                                       std::numeric_limits<std::uint64_t>::max());

  // Check and decode everything first ...
  ckpt_detail::check_feature_shapes<Model>(f, src);
  feature_pipeline feat;
  feat.load_from(f);
  io::load_options lo;
  lo.ignore = {"norm.*", "pca.*", "optimizer.*", "scaler.*"};
  auto params = io::decode_state_dict(model.parameters(), f, lo);
  info.has_optimizer = ckpt_detail::has_optimizer_state(f, src);
  info.has_scaler = f.contains("scaler.scale") || f.contains("scaler.growth_tracker");
  std::optional<loss_scaler> sc;
  if (scaler) {
    sc = *scaler;
    sc->load_from(f, "scaler.");
  }
  // ... then commit. adamw::load_from checks everything before it writes, so if it throws
  // nothing has changed yet; the rest cannot fail on a checked input.
  if (optimizer && info.has_optimizer) optimizer->load_from(f, "optimizer.");
  if (scaler) *scaler = *sc;
  features = std::move(feat);
  io::commit_state_dict(model.parameters(), std::move(params));
  return info;
}

/// Reads the checkpoint file `path` (see the overload above).
template <class Model>
checkpoint_info load_checkpoint(const std::filesystem::path& path, Model& model, feature_pipeline& features,
                                adamw<typename Model::scalar, typename Model::backend>* optimizer = nullptr,
                                loss_scaler* scaler = nullptr) {
  return load_checkpoint(io::read_safetensors(path), model, features, optimizer, scaler);
}

}  // namespace genlm
