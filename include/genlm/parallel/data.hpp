// genlm/parallel/data.hpp - training windows for data-parallel training: the epoch sampler
// (the same deterministic batch order as genlm::trainer) and window sources, in memory or read
// on demand from contig tables, each rank reading only its own part.
//
// Global batch of step k: the windows perm_e[j*B .. j*B+B) where e = k / batches_per_epoch,
// j = k % batches_per_epoch and perm_e is a seeded permutation of all N windows for epoch e
// (rng(seed, 0xE90C0000 + e), Fisher-Yates) - exactly genlm::trainer::batch_indices. Rank r of P
// takes the contiguous share shard_range(B, r, P) of that batch. The batch, its order and the
// masking of each window therefore never depend on the number of ranks.
//
// contig_file_windows: each rank scans and validates only its byte range of every contig table
// (the lines that start in [r*S/P, (r+1)*S/P)), the per-line gene counts are all-gathered into a
// small index (file, byte offset, genes) that every rank holds, and at every step each rank reads
// just the lines of its own share (seek + parse one line). Protein embeddings/features are held
// by every rank (they are per protein, not per contig).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <genlm/core/random.hpp>
#include <genlm/data/contig_table.hpp>
#include <genlm/data/dataset.hpp>
#include <genlm/parallel/comm.hpp>

namespace genlm::parallel {

/// Seeded per-epoch permutation and batch slicing, identical to genlm::trainer::batch_indices
/// (the permutation of the current epoch is cached).
class epoch_sampler {
 public:
  epoch_sampler() = default;
  epoch_sampler(std::size_t n, index_t batch_size, std::uint64_t seed) : n_(n), batch_(std::size_t(batch_size)), seed_(seed) {
    check<value_error>(n >= 1, "epoch_sampler: no training windows");
    check<value_error>(batch_size >= 1, "epoch_sampler: batch_size must be >= 1, got ", batch_size);
  }
  std::size_t size() const { return n_; }
  std::size_t batches_per_epoch() const { return (n_ + batch_ - 1) / batch_; }

  /// Window indices of step k (the global batch).
  std::vector<std::size_t> batch(std::int64_t k) {
    std::vector<std::size_t> out;
    batch(k, out);
    return out;
  }
  /// As above, into out (assigned; no allocation once its capacity holds a batch).
  void batch(std::int64_t k, std::vector<std::size_t>& out) {
    check<value_error>(k >= 0, "epoch_sampler: step ", k, " must be >= 0");
    const std::size_t bpe = batches_per_epoch();
    const std::uint64_t epoch = std::uint64_t(k) / bpe, j = std::uint64_t(k) % bpe;
    if (!cached_ || epoch != epoch_) {
      perm_.resize(n_);
      std::iota(perm_.begin(), perm_.end(), std::size_t(0));
      rng g(seed_, 0xE90C0000ull + epoch);
      for (std::size_t i = perm_.size(); i > 1; --i) std::swap(perm_[i - 1], perm_[std::size_t(g.below(i))]);
      epoch_ = epoch;
      cached_ = true;
    }
    const std::size_t lo = std::size_t(j) * batch_, hi = std::min(perm_.size(), lo + batch_);
    out.assign(perm_.begin() + std::ptrdiff_t(lo), perm_.begin() + std::ptrdiff_t(hi));
  }

 private:
  std::size_t n_ = 0, batch_ = 1;
  std::uint64_t seed_ = 0;
  std::vector<std::size_t> perm_;
  std::uint64_t epoch_ = 0;
  bool cached_ = false;
};

/// Where the training windows come from. fetch() is called by one rank for its own share only.
class window_source {
 public:
  virtual ~window_source() = default;
  /// Number of windows (identical on every rank).
  virtual std::size_t size() const = 0;
  /// Real genes of window i (needed by every rank for every window of a batch: the masking draws
  /// of a batch are consumed in window order).
  virtual std::size_t genes(std::size_t i) const = 0;
  /// The windows idx[0..] in index form (resolved against the protein embeddings).
  virtual std::vector<gene_window> fetch(const std::vector<std::size_t>& idx) const = 0;
  /// A hash of the window index (compared across ranks before training).
  virtual std::uint64_t fingerprint() const = 0;
  /// A line for logs and for the cross-rank settings check (must be identical on every rank).
  virtual std::string describe() const = 0;
  /// The windows themselves when the source holds them all in memory (window i = (*in_memory())[i]),
  /// so that a trainer can build batches without copying them; nullptr for sources that read.
  virtual const std::vector<gene_window>* in_memory() const { return nullptr; }
};

/// All windows in memory (every rank holds the same vector).
class memory_windows final : public window_source {
 public:
  explicit memory_windows(std::vector<gene_window> w) : w_(std::move(w)) {
    std::uint64_t h = hash_bytes(nullptr, 0, w_.size());
    for (const auto& x : w_) {
      std::vector<std::int64_t> v;
      v.reserve(x.genes.size() * 2);
      for (const auto& g : x.genes) v.push_back(g.protein), v.push_back(g.strand);
      h = hash_combine(h, hash_bytes(v.data(), v.size() * sizeof(std::int64_t)));
    }
    fp_ = h;
  }
  std::size_t size() const override { return w_.size(); }
  std::size_t genes(std::size_t i) const override { return w_.at(i).genes.size(); }
  std::vector<gene_window> fetch(const std::vector<std::size_t>& idx) const override {
    std::vector<gene_window> out;
    out.reserve(idx.size());
    for (std::size_t i : idx) {
      check<shape_error>(i < w_.size(), "memory_windows: window index ", i, " out of range (", w_.size(), ")");
      out.push_back(w_[i]);
    }
    return out;
  }
  std::uint64_t fingerprint() const override { return fp_; }
  std::string describe() const override { return genlm::detail::concat(w_.size(), " windows in memory"); }
  const std::vector<gene_window>& windows() const { return w_; }
  const std::vector<gene_window>* in_memory() const override { return &w_; }

 private:
  std::vector<gene_window> w_;
  std::uint64_t fp_ = 0;
};

/// Windows of contig tables (contig<TAB>+protA;-protB;...), read on demand. Build it with
/// contig_file_windows::build (collective). The window order is that of reading the files in
/// order, cutting every contig with windows(entry, max_genes, overlap): the same windows, in the
/// same order, as read_contig_table + windows + resolve_windows on each file. The embeddings must
/// outlive the source. fetch() reads files and is not thread-safe.
class contig_file_windows final : public window_source {
 public:
  struct line_entry {
    std::uint32_t file = 0;
    std::uint32_t genes = 0;
    std::uint64_t offset = 0;  // byte offset of the line in its file
    std::uint64_t id_hash = 0;  // of the contig id (duplicate check)
  };
  struct window_entry {
    std::uint64_t line = 0;    // index into lines()
    std::uint32_t number = 0;  // window number within its contig
    std::uint32_t genes = 0;
  };

  /// Collective. Each rank parses (validate = true: fully, resolving every protein id against
  /// `emb`) the lines that start in its byte range of each file; a bad line on any rank makes
  /// every rank throw collective_error naming the file, the byte offset and the problem.
  template <class Comm>
  static contig_file_windows build(Comm& comm, const std::vector<std::filesystem::path>& files,
                                   const protein_embeddings& emb, std::size_t max_genes, std::size_t overlap,
                                   bool validate = true) {
    contig_file_windows s;
    s.files_ = files;
    s.emb_ = &emb;
    s.max_genes_ = max_genes;
    s.overlap_ = overlap;
    // the checks below see the same on every rank (the options agreed, the index all-gathered):
    // collective errors, so that the job ends cleanly rather than as one rank's failure
    if (files.empty()) throw collective_error("contig_file_windows: no contig files");
    std::vector<line_entry> mine;
    collective_try(comm, "reading the contig tables", [&] {
      (void)window_offsets(1, max_genes, overlap);  // validates max_genes / overlap
      for (std::uint32_t f = 0; f < files.size(); ++f) {
        std::error_code ec;
        const std::uint64_t size = std::filesystem::file_size(files[f], ec);
        check(!ec, "contig table '", files[f].string(), "': cannot read: ", ec.message());
        s.file_sizes_.push_back(size);
        const auto [lo, hi] = shard_range(std::size_t(size), comm.rank(), comm.size());
        scan_range(files[f], f, lo, hi, validate ? &emb : nullptr, max_genes, overlap, mine);
      }
    });
    // all-gather the index parts (rank order = byte order within each file)
    std::string bytes(mine.size() * sizeof(line_entry), '\0');
    if (!mine.empty()) std::memcpy(bytes.data(), mine.data(), bytes.size());
    const std::vector<std::string> parts = comm.allgather(bytes, "contig index exchange");
    for (const auto& p : parts) {
      const std::size_t n = p.size() / sizeof(line_entry);
      const std::size_t at = s.lines_.size();
      s.lines_.resize(at + n);
      if (n) std::memcpy(s.lines_.data() + at, p.data(), n * sizeof(line_entry));
    }
    std::stable_sort(s.lines_.begin(), s.lines_.end(), [](const line_entry& a, const line_entry& b) {
      return a.file != b.file ? a.file < b.file : a.offset < b.offset;
    });
    collective_try(comm, "checking the contig tables", [&] { s.check_duplicates(comm.rank()); });
    for (std::uint64_t li = 0; li < s.lines_.size(); ++li) {
      const auto offs = window_offsets(s.lines_[li].genes, max_genes, overlap);
      for (std::size_t w = 0; w < offs.size(); ++w)
        s.windows_.push_back({li, std::uint32_t(w),
                              std::uint32_t(std::min<std::size_t>(max_genes, s.lines_[li].genes - offs[w]))});
    }
    if (s.windows_.empty()) {
      std::string names;
      for (const auto& f : files) names += (names.empty() ? "" : ", ") + f.string();
      throw collective_error(genlm::detail::concat("contig tables ", names, " hold no contigs"));
    }
    std::uint64_t h = hash_bytes(s.file_sizes_.data(), s.file_sizes_.size() * sizeof(std::uint64_t), max_genes * 1000 + overlap);
    h = hash_combine(h, hash_bytes(s.lines_.data(), s.lines_.size() * sizeof(line_entry)));
    s.fp_ = h;
    return s;
  }

  std::size_t size() const override { return windows_.size(); }
  std::size_t genes(std::size_t i) const override { return windows_.at(i).genes; }
  std::vector<gene_window> fetch(const std::vector<std::size_t>& idx) const override {
    std::vector<gene_window> out;
    out.reserve(idx.size());
    for (std::size_t i : idx) {
      check<shape_error>(i < windows_.size(), "contig_file_windows: window index ", i, " out of range (",
                         windows_.size(), ")");
      const window_entry& w = windows_[i];
      const line_entry& l = lines_[std::size_t(w.line)];
      const contig_entry e = read_line(l);
      const auto ws = genlm::windows(e, max_genes_, overlap_);
      check<format_error>(w.number < ws.size() && ws[w.number].entry.genes.size() == w.genes, where(l),
                          ": the file changed since it was indexed (contig '", e.contig_id, "')");
      auto g = resolve_windows({ws[w.number]}, *emb_, where(l));
      out.push_back(std::move(g.front()));
    }
    return out;
  }
  std::uint64_t fingerprint() const override { return fp_; }
  std::string describe() const override {
    std::string s = genlm::detail::concat(windows_.size(), " windows of ", lines_.size(), " contigs in ");
    for (std::size_t f = 0; f < files_.size(); ++f)
      s += genlm::detail::concat(f ? ", " : "", files_[f].filename().string(), " (", file_sizes_[f], " bytes)");
    return s;
  }
  const std::vector<line_entry>& lines() const { return lines_; }

 private:
  std::string where(const line_entry& l) const {
    return genlm::detail::concat(files_[l.file].string(), " (line at byte ", l.offset, ")");
  }
  contig_entry read_line(const line_entry& l) const {
    std::ifstream in(files_[l.file], std::ios::binary);
    check(bool(in), files_[l.file].string(), ": cannot open contig table for reading");
    in.seekg(std::streamoff(l.offset));
    std::string line;
    std::getline(in, line);
    std::istringstream is(line);
    auto es = parse_contig_table(is, where(l));
    check<format_error>(es.size() == 1, where(l), ": expected one contig line");
    return std::move(es.front());
  }

  /// Lines starting in [lo, hi) of one file.
  static void scan_range(const std::filesystem::path& path, std::uint32_t f, std::uint64_t lo, std::uint64_t hi,
                         const protein_embeddings* emb, std::size_t max_genes, std::size_t overlap,
                         std::vector<line_entry>& out) {
    if (lo >= hi) return;
    std::ifstream in(path, std::ios::binary);
    check(bool(in), path.string(), ": cannot open contig table for reading");
    std::uint64_t pos = lo;
    std::string line;
    if (lo > 0) {  // the line holding byte lo-1 belongs to the previous rank unless it ends there
      in.seekg(std::streamoff(lo - 1));
      char c = 0;
      in.get(c);
      if (c != '\n') {
        std::getline(in, line);
        pos = lo + line.size() + (in.eof() ? 0 : 1);
      }
    }
    in.clear();
    in.seekg(std::streamoff(pos));
    while (pos < hi && std::getline(in, line)) {
      const std::uint64_t start = pos;
      pos += line.size() + (in.eof() ? 0 : 1);
      std::string_view v = line;
      if (start == 0 && v.substr(0, 3) == "\xEF\xBB\xBF") v.remove_prefix(3);
      if (v.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos) continue;  // blank line
      const std::string src = genlm::detail::concat(path.string(), " (line at byte ", start, ")");
      std::istringstream is{std::string(line)};
      const auto es = parse_contig_table(is, src);
      if (es.empty()) continue;
      const contig_entry& e = es.front();
      if (emb) (void)resolve_windows(genlm::windows(e, max_genes, overlap), *emb, src);
      out.push_back({f, std::uint32_t(e.genes.size()), start, hash_bytes(e.contig_id.data(), e.contig_id.size())});
    }
  }

  /// Duplicate contig ids within one file (as read_contig_table rejects them). Only rank 0
  /// reports, the others agree through collective_try.
  void check_duplicates(int rank) const {
    std::map<std::pair<std::uint32_t, std::uint64_t>, std::size_t> seen;
    for (std::size_t i = 0; i < lines_.size(); ++i) {
      const auto [it, fresh] = seen.emplace(std::make_pair(lines_[i].file, lines_[i].id_hash), i);
      if (fresh || rank != 0) continue;
      const line_entry &a = lines_[it->second], &b = lines_[i];
      const contig_entry ea = read_line(a), eb = read_line(b);
      if (ea.contig_id != eb.contig_id) continue;  // hash collision
      throw format_error(genlm::detail::concat(where(b), ": contig id '", eb.contig_id,
                                               "' appears twice (also in the line at byte ", a.offset, ")"));
    }
  }

  std::vector<std::filesystem::path> files_;
  std::vector<std::uint64_t> file_sizes_;
  const protein_embeddings* emb_ = nullptr;
  std::size_t max_genes_ = 30, overlap_ = 0;
  std::vector<line_entry> lines_;
  std::vector<window_entry> windows_;
  std::uint64_t fp_ = 0;
};

}  // namespace genlm::parallel
