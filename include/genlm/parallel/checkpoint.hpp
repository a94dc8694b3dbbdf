// genlm/parallel/checkpoint.hpp - checkpoints of data-parallel training.
//
// save_checkpoint: rank 0 writes the ordinary genlm checkpoint (train/checkpoint.hpp: model,
// feature pipeline, AdamW state, step, seed; atomic temp file + fsync + rename, so a job killed
// mid-write keeps the previous checkpoint) plus metadata "genlm.world_size" and
// "genlm.communicator"; the call is collective and returns on every rank once the file is
// complete (a failed write throws collective_error on every rank).
//
// load_checkpoint: rank 0 reads the file, broadcasts its bytes, and every rank loads the same
// image (no shared file system needed). The replicated training state (parameters, moments,
// step, seed) does not depend on the number of ranks, so a checkpoint written with P ranks
// resumes with any number of ranks (or with genlm::trainer) and continues the same trajectory.
#pragma once
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <string>

#include <genlm/io/safetensors.hpp>
#include <genlm/io/state_dict.hpp>
#include <genlm/parallel/comm.hpp>
#include <genlm/train/checkpoint.hpp>

namespace genlm::parallel {

/// Collective; rank 0 writes `path` atomically.
template <class Model, class Comm>
void save_checkpoint(Comm& comm, const std::filesystem::path& path, const Model& model, const feature_pipeline& features,
                     const adamw<typename Model::scalar, typename Model::backend>* optimizer, std::int64_t step,
                     std::uint64_t seed, std::map<std::string, std::string> metadata = {},
                     const loss_scaler* scaler = nullptr) {
  metadata["genlm.world_size"] = std::to_string(comm.size());
  metadata["genlm.communicator"] = comm.name();
  collective_try(comm, genlm::detail::concat("writing checkpoint '", path.string(), "' on rank 0"), [&] {
    if (comm.rank() == 0) genlm::save_checkpoint(path, model, features, optimizer, step, seed, metadata, scaler);
  });
}

/// Loads a checkpoint image (the bytes of a file) exactly as genlm::load_checkpoint loads a file.
template <class Model>
checkpoint_info load_checkpoint_image(const std::string& bytes, const std::string& name, Model& model,
                                      feature_pipeline& features,
                                      adamw<typename Model::scalar, typename Model::backend>* optimizer = nullptr) {
  return genlm::load_checkpoint(
      io::read_safetensors_from_memory(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), name), model,
      features, optimizer);
}

/// Collective: rank 0 reads the bytes of `path` and broadcasts them; every rank returns them.
/// A missing or unreadable file throws collective_error on every rank.
template <class Comm>
std::string read_checkpoint_image(Comm& comm, const std::filesystem::path& path) {
  std::string bytes;
  collective_try(comm, genlm::detail::concat("reading checkpoint '", path.string(), "' on rank 0"), [&] {
    if (comm.rank() != 0) return;
    std::error_code ec;
    const auto n = std::filesystem::file_size(path, ec);
    check(!ec, "cannot read checkpoint '", path.string(), "': ", ec.message());
    std::ifstream in(path, std::ios::binary);
    check(bool(in), "cannot open checkpoint '", path.string(), "'");
    parallel::resize_bytes(bytes, n, genlm::detail::concat("reading checkpoint '", path.string(), "'"));
    in.read(bytes.data(), std::streamsize(n));
    check(in.gcount() == std::streamsize(n), "checkpoint '", path.string(), "': read ", in.gcount(), " of ", n,
          " bytes");
  });
  comm.broadcast_bytes(bytes, 0, "checkpoint broadcast");
  return bytes;
}

/// Loads the AdamW state of a checkpoint image (format_error when it has none or only part of
/// it), and the loss scaler's state when `scaler` is given and the image has one (else the scaler
/// is left as it is). A failure leaves both unchanged.
template <class T, class Backend>
void load_optimizer_image(const std::string& bytes, const std::string& name, adamw<T, Backend>& optimizer,
                          loss_scaler* scaler = nullptr) {
  const io::safetensors_file f =
      io::read_safetensors_from_memory(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), name);
  check<format_error>(ckpt_detail::has_optimizer_state(f, "checkpoint '" + name + "'"), "checkpoint '", name,
                      "' has no optimizer state; cannot resume training from it");
  std::optional<loss_scaler> sc;  // checked before the optimizer is written: a failure changes neither
  if (scaler) {
    sc = *scaler;
    sc->load_from(f, "scaler.");
  }
  optimizer.load_from(f, "optimizer.");
  if (scaler) *scaler = *sc;
}

/// Collective: rank 0 reads `path`, every rank loads the same bytes. Errors (missing file, other
/// model type, truncated file) are thrown as collective_error on every rank.
template <class Model, class Comm>
checkpoint_info load_checkpoint(Comm& comm, const std::filesystem::path& path, Model& model,
                                feature_pipeline& features,
                                adamw<typename Model::scalar, typename Model::backend>* optimizer = nullptr) {
  const std::string bytes = read_checkpoint_image(comm, path);
  checkpoint_info info;
  collective_try(comm, genlm::detail::concat("loading checkpoint '", path.string(), "'"),
                 [&] { info = load_checkpoint_image(bytes, path.string(), model, features, optimizer); });
  return info;
}

}  // namespace genlm::parallel
