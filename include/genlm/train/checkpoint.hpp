// genlm/train/checkpoint.hpp - training checkpoints in safetensors (model + normalisation + PCA +
// optimizer state + loss-scaler state + step + seed), written atomically (temp file + fsync + rename).
//
// Tensor names: the model's state-dict names ("dense.weight", "roberta.encoder.layer.0...."),
// "norm.*", "pca.*", "optimizer.*", "scaler.*" (only from runs with loss scaling). Metadata: "genlm.format", "genlm.config" (the model_config),
// "genlm.scalar", "genlm.attention", "genlm.step", "genlm.seed", plus caller-supplied entries.
#pragma once
#include <filesystem>
#include <map>
#include <string>

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
  auto tensors = io::state_dict(model.parameters());
  if (features.fitted()) features.save_to(tensors);
  if (optimizer) optimizer->save_to(tensors, "optimizer.");
  if (scaler && scaler->enabled()) scaler->save_to(tensors, "scaler.");
  metadata["genlm.format"] = checkpoint_format;
  metadata["genlm.config"] = Model::config.str();
  metadata["genlm.scalar"] = scalar_name<Model>();
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

/// Reads a parsed checkpoint into `model` and `features` (and `optimizer` / `scaler` when non-null
/// and present; a checkpoint without scaler state leaves `scaler` as it is). A checkpoint of another model type fails with a message naming both configurations;
/// a tensor of the wrong shape fails naming the tensor and both shapes.
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
  check<format_error>(fmt == checkpoint_format, src, ": metadata 'genlm.format' is '", fmt, "', expected '",
                      checkpoint_format, "'");
  const std::string cfg = meta("genlm.config");
  check<shape_error>(cfg == Model::config.str(), src, ": holds a model with config {", cfg,
                     "} but the model type here is {", Model::config.str(), "}");
  io::load_options lo;
  lo.ignore = {"norm.*", "pca.*", "optimizer.*", "scaler.*"};
  io::load_state_dict(model.parameters(), f, lo);
  features.load_from(f);
  checkpoint_info info;
  info.metadata = f.metadata;
  try {
    info.step = std::stoll(meta("genlm.step"));
    info.seed = std::stoull(meta("genlm.seed"));
  } catch (const std::logic_error&) {
    throw format_error(detail::concat(src, ": metadata 'genlm.step'/'genlm.seed' are not integers ('",
                                      meta("genlm.step"), "', '", meta("genlm.seed"), "')"));
  }
  info.has_optimizer = f.contains("optimizer.exp_avg");
  if (optimizer && info.has_optimizer) optimizer->load_from(f, "optimizer.");
  info.has_scaler = f.contains("scaler.scale") || f.contains("scaler.growth_tracker");
  if (scaler) scaler->load_from(f, "scaler.");
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
