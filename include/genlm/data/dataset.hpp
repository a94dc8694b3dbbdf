// genlm/data/dataset.hpp - protein embeddings by id and contig windows resolved against them.
//
// gLM's input per gene is a protein embedding (ESM2 in the paper) plus the gene's strand. This
// header loads embeddings from .npy (+ an id list) or safetensors, or computes the built-in
// stand-in features (data/featurizer.hpp) from protein sequences, and turns contig windows
// (protein ids + strands) into index form, failing clearly on unknown ids.
#pragma once
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <genlm/core/error.hpp>
#include <genlm/core/tensor.hpp>
#include <genlm/data/contig_table.hpp>
#include <genlm/data/featurizer.hpp>
#include <genlm/data/genome.hpp>
#include <genlm/io/npy.hpp>
#include <genlm/io/safetensors.hpp>

namespace genlm {

/// One row per protein id: (N, dim) float32 embeddings.
class protein_embeddings {
 public:
  protein_embeddings() = default;
  /// Builds from ids and row-major values; checks sizes, duplicate ids and NaN/Inf.
  protein_embeddings(std::vector<std::string> ids, index_t dim, std::vector<float> values, std::string source)
      : ids_(std::move(ids)), dim_(dim), values_(std::move(values)), source_(std::move(source)) {
    check<shape_error>(dim_ > 0, source_, ": embedding dimension must be positive, got ", dim_);
    check<shape_error>(index_t(values_.size()) == shape_t{index_t(ids_.size()), dim_}.numel(), source_, ": ",
                       values_.size(),
                       " values for ", ids_.size(), " proteins x ", dim_, " dims (expected ",
                       index_t(ids_.size()) * dim_, ")");
    for (std::size_t i = 0; i < ids_.size(); ++i) {
      check<format_error>(!ids_[i].empty(), source_, ": protein id of row ", i, " is empty");
      const auto [it, fresh] = index_.emplace(ids_[i], index_t(i));
      check<format_error>(fresh, source_, ": protein id '", ids_[i], "' appears twice (rows ", it->second, " and ", i,
                          ")");
      for (index_t j = 0; j < dim_; ++j)
        check<value_error>(std::isfinite(values_[i * std::size_t(dim_) + std::size_t(j)]), source_,
                           ": embedding of protein '", ids_[i], "' (row ", i, ") has a NaN/Inf at dimension ", j);
    }
  }

  /// (N, D) float32/float16/float64 .npy plus a text file with one protein id per line (surrounding
  /// whitespace, CRLF and a UTF-8 BOM ignored, blank lines skipped; ids must be unique).
  static protein_embeddings from_npy(const std::filesystem::path& npy, const std::filesystem::path& ids_file) {
    const io::array a = io::read_npy(npy);
    check<shape_error>(a.shape.size() == 2, "embeddings file '", npy.string(), "': shape has ", a.shape.size(),
                       " dimension(s), expected 2 (proteins, dim)");
    std::vector<std::string> ids = read_ids(ids_file);  // trimmed, blank lines skipped, unique
    check<shape_error>(index_t(ids.size()) == a.shape[0], "embeddings file '", npy.string(), "' has ", a.shape[0],
                       " rows but id file '", ids_file.string(), "' lists ", ids.size(), " ids");
    const std::string src = "embeddings file '" + npy.string() + "'";
    return protein_embeddings(std::move(ids), a.shape[1], a.to<float>(src), src);
  }

  /// safetensors with either a 2-D tensor "embeddings" (N, D) and metadata "ids" (JSON list of N
  /// strings), or one 1-D tensor (D) per protein named by its id (e.g. per-protein ESM outputs).
  static protein_embeddings from_safetensors(const std::filesystem::path& path) {
    const io::safetensors_file f = io::read_safetensors(path);
    const std::string src = "embeddings file '" + path.string() + "'";
    if (f.contains("embeddings")) {
      const io::array& a = f.at("embeddings");
      check<shape_error>(a.shape.size() == 2, src, ": tensor 'embeddings' has shape rank ", a.shape.size(),
                         ", expected 2 (proteins, dim)");
      auto it = f.metadata.find("ids");
      check<format_error>(it != f.metadata.end(), src,
                          ": has tensor 'embeddings' but no '__metadata__' entry 'ids' (JSON list of protein ids)");
      std::vector<std::string> ids;
      try {
        ids = nlohmann::json::parse(it->second).get<std::vector<std::string>>();
      } catch (const std::exception& e) {
        throw format_error(detail::concat(src, ": metadata 'ids' is not a JSON list of strings: ", e.what()));
      }
      check<shape_error>(index_t(ids.size()) == a.shape[0], src, ": 'embeddings' has ", a.shape[0],
                         " rows but metadata 'ids' lists ", ids.size());
      return protein_embeddings(std::move(ids), a.shape[1], a.to<float>(src + ", tensor 'embeddings'"), src);
    }
    check<format_error>(!f.tensors.empty(), src, ": holds no tensors");
    std::vector<std::string> ids;
    std::vector<float> values;
    index_t dim = -1;
    for (const auto& [name, a] : f.tensors) {
      check<shape_error>(a.shape.size() == 1, src, ": tensor '", name, "' has rank ", a.shape.size(),
                         ", expected 1 (one embedding per protein) or a 2-D tensor named 'embeddings'");
      if (dim < 0) dim = a.shape[0];
      check<shape_error>(a.shape[0] == dim, src, ": tensor '", name, "' has ", a.shape[0], " dims, expected ", dim,
                         " like the others");
      ids.push_back(name);
      const auto v = a.to<float>(src + ", tensor '" + name + "'");
      values.insert(values.end(), v.begin(), v.end());
    }
    return protein_embeddings(std::move(ids), dim, std::move(values), src);
  }

  /// The built-in stand-in features (NOT a pLM; see data/featurizer.hpp) of every gene with a
  /// protein sequence in `genome`, keyed by gene id. A gene without a protein, or with one that has
  /// no residues ("---") or a character featurize_protein rejects, is an error naming `source`,
  /// the gene and its contig.
  static protein_embeddings featurize(const std::vector<contig>& genome, std::size_t dim, const std::string& source) {
    (void)feature_layout(dim);  // a bad dim is reported as such, not as a problem of the first gene
    std::vector<std::string> ids;
    std::vector<float> values;
    std::map<std::string, std::pair<const std::string*, const std::string*>> seen;  // id -> (protein, contig)
    for (const auto& c : genome)
      for (const auto& g : c.genes) {
        check<format_error>(!g.protein.empty(), source, ": gene '", g.id, "' on contig '", c.id,
                            "' has no protein sequence (no /translation and no sequence to translate)");
        if (auto it = seen.find(g.id); it != seen.end()) {
          // the same id twice is fine only for the same protein (e.g. a gene listed in two files)
          check<format_error>(*it->second.first == g.protein, source, ": gene id '", g.id, "' is used on contig '",
                              *it->second.second, "' and on contig '", c.id,
                              "' for different proteins; gene ids must be unique");
          continue;
        }
        seen.emplace(g.id, std::make_pair(&g.protein, &c.id));
        auto where = [&] {
          return detail::concat(source, ": gene '", g.id, "' on contig '", c.id, "' (", g.start, "..", g.end, ")");
        };
        std::vector<float> f;
        try {
          f = featurize_protein(g.protein, dim);
        } catch (const value_error& e) {  // e.g. a digit in the sequence: say which gene
          throw value_error(detail::concat(where(), ": ", e.what()));
        }
        if (feature_residue_count(g.protein) == 0)  // would be the all-zero vector
          throw format_error(detail::concat(where(), ": protein sequence '", data_detail::shown(g.protein),
                                            "' has no residues (only gaps '-', '.' or a stop '*')"));
        ids.push_back(g.id);
        values.insert(values.end(), f.begin(), f.end());
      }
    return protein_embeddings(std::move(ids), index_t(dim), std::move(values), source + " (built-in features)");
  }

  index_t size() const { return index_t(ids_.size()); }
  index_t dim() const { return dim_; }
  const std::string& source() const { return source_; }
  const std::vector<std::string>& ids() const { return ids_; }
  const std::vector<float>& values() const { return values_; }
  const float* row(index_t i) const { return values_.data() + i * dim_; }
  bool contains(const std::string& id) const { return index_.count(id) != 0; }
  /// Row of protein `id`; throws lookup_error naming the id, where it was used, and this source.
  index_t find(const std::string& id, const std::string& used_in) const {
    auto it = index_.find(id);
    if (it == index_.end())
      throw lookup_error(detail::concat("unknown protein id '", id, "' in ", used_in, ": not among the ", ids_.size(),
                                        " proteins of ", source_));
    return it->second;
  }

 private:
  /// One id per line, surrounding whitespace, CR and a UTF-8 BOM stripped, blank lines skipped;
  /// a repeated id is a format_error naming both lines of the id file.
  static std::vector<std::string> read_ids(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    check<format_error>(bool(in), "cannot open protein id file '", p.string(), "'");
    data_detail::line_reader lines(in, p.string());
    std::vector<std::string> ids;
    std::map<std::string, std::size_t> first_line;
    std::string line;
    while (lines.next(line)) {
      const std::string id(data_detail::trim(line));
      if (id.empty()) continue;
      const auto [it, fresh] = first_line.emplace(id, lines.line());
      if (!fresh)
        data_detail::fail_format(p.string(), lines.line(), "protein id (row " + std::to_string(ids.size()) + ")", id,
                                 "unique ids (first seen on line " + std::to_string(it->second) + ")");
      ids.push_back(id);
    }
    check<format_error>(!ids.empty(), "protein id file '", p.string(), "' is empty");
    return ids;
  }

  std::vector<std::string> ids_;
  std::map<std::string, index_t> index_;
  index_t dim_ = 0;
  std::vector<float> values_;
  std::string source_;
};

/// A gene of a window: protein row and strand (+1 / -1).
struct gene_ref {
  index_t protein = 0;
  int strand = 1;
};

/// A window of at most max_genes genes, in index form.
struct gene_window {
  std::string id;         // window id
  std::string source_id;  // contig it was cut from
  std::size_t offset = 0; // position of genes[0] in the source contig
  std::size_t source_size = 0;
  std::vector<gene_ref> genes;
};

/// Resolves windows against the embeddings; unknown protein ids and empty windows throw,
/// naming the contig (and `where`, e.g. the contig file).
inline std::vector<gene_window> resolve_windows(const std::vector<contig_window>& ws, const protein_embeddings& emb,
                                                const std::string& where) {
  std::vector<gene_window> out;
  out.reserve(ws.size());
  for (const auto& w : ws) {
    check<format_error>(!w.entry.genes.empty(), where, ": contig '", w.source_id, "' has no genes");
    gene_window g{w.entry.contig_id, w.source_id, w.offset, w.source_size, {}};
    for (const auto& [pid, strand] : w.entry.genes) {
      check<format_error>(strand == 1 || strand == -1, where, ": contig '", w.source_id, "', protein '", pid,
                          "': strand ", strand, ", expected +1 or -1");
      g.genes.push_back({emb.find(pid, where + ", contig '" + w.source_id + "'"), strand});
    }
    out.push_back(std::move(g));
  }
  return out;
}

}  // namespace genlm
