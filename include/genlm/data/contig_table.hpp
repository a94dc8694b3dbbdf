// genlm/data/contig_table.hpp - the gLM reference contig format and contig windowing.
//
// Contig table (the reference's contig_to_prots.tsv), one contig per line, no header:
//     contig_id<TAB>+protA;-protB;+protC
// Blank lines are skipped; CRLF is accepted. Every other line must have exactly one tab, a
// non-empty contig id, and a non-empty ';'-separated list of genes, each '+' or '-' followed by a
// non-empty protein id (no whitespace). Duplicate contig ids are an error. Errors are format_errors
// naming file:line, the field, the value seen and what was expected.
//
// Windows: gLM reads contigs of at most 30 genes (max_position_embeddings bounds it at 512), so a
// longer contig is cut into windows of max_genes genes that overlap by `overlap` genes. Windows
// start at 0, s, 2s, ... (s = max_genes - overlap) while they end before the contig does; the last
// window is aligned to the contig's end (so every window is full and consecutive windows overlap
// by at least `overlap` genes). A contig of n <= max_genes genes is one window with the contig's
// own id; windows of a longer contig are named "<id>:<first>-<last>" (1-based gene indices,
// inclusive). Each window records its source contig and the offset of its first gene, and
// stitch() averages per-gene outputs of overlapping windows back onto the source gene order.
#pragma once
#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <istream>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "genlm/core/error.hpp"
#include "genlm/data/genome.hpp"
#include "genlm/io/atomic_file.hpp"

namespace genlm {

/// One line of a contig table: a contig id and its genes as (protein id, strand +1/-1).
struct contig_entry {
  std::string contig_id;
  std::vector<std::pair<std::string, int>> genes;
};

/// A window of a contig.
struct contig_window {
  contig_entry entry;           ///< window id ("<source>" or "<source>:<first>-<last>") and its genes
  std::string source_id;        ///< id of the contig the window was cut from
  std::size_t offset = 0;       ///< index in the source contig of entry.genes[0]
  std::size_t source_size = 0;  ///< number of genes of the source contig
};

/// Parses a contig table from a stream; `source` names it in error messages.
inline std::vector<contig_entry> parse_contig_table(std::istream& in,
                                                    const std::string& source = "<stream>") {
  using namespace data_detail;
  line_reader lines(in, source);
  std::vector<contig_entry> out;
  std::map<std::string, std::size_t> seen;
  std::string line;
  while (lines.next(line)) {
    const std::string_view l = line;
    if (trim(l).empty()) continue;
    const std::size_t tab = l.find('\t');
    if (tab == std::string_view::npos)
      fail_format(source, lines.line(), "contig line", l, "'contig_id<TAB>+protA;-protB;...' (no tab found)");
    const std::string_view id = trim(l.substr(0, tab));
    const std::string_view rest = trim(l.substr(tab + 1));
    if (id.empty())
      fail_format(source, lines.line(), "contig id (column 1)", l.substr(0, tab), "a non-empty contig id");
    if (rest.find('\t') != std::string_view::npos)
      fail_format(source, lines.line(), "columns of contig '" + std::string(id) + "'", l,
                  "exactly 2 tab-separated columns");
    if (rest.empty())
      fail_format(source, lines.line(), "gene list of contig '" + std::string(id) + "'", rest,
                  "at least one gene such as '+protA'");
    auto [it, fresh] = seen.emplace(std::string(id), lines.line());
    if (!fresh)
      fail_format(source, lines.line(), "contig id (column 1)", id,
                  "a unique contig id (also on line " + std::to_string(it->second) + ")");
    contig_entry e;
    e.contig_id = std::string(id);
    std::size_t k = 0;
    for (auto item : split(rest, ';')) {
      ++k;
      const std::string_view raw = item;
      item = trim(item);
      const std::string field = "gene " + std::to_string(k) + " of contig '" + e.contig_id + "'";
      if (item.empty() || (item.front() != '+' && item.front() != '-'))
        fail_format(source, lines.line(), field, raw, "a strand sign '+' or '-' followed by a protein id");
      const std::string_view prot = item.substr(1);
      if (prot.empty())
        fail_format(source, lines.line(), field, raw, "a non-empty protein id after the strand sign");
      for (char c : prot)
        if (is_space(c)) fail_format(source, lines.line(), field, raw, "a protein id without whitespace");
      e.genes.emplace_back(std::string(prot), item.front() == '+' ? 1 : -1);
    }
    out.push_back(std::move(e));
  }
  return out;
}

/// Reads a contig table file.
inline std::vector<contig_entry> read_contig_table(const std::filesystem::path& path) {
  auto in = data_detail::open_input(path);
  return parse_contig_table(in, path.string());
}

/// Writes a contig table. value_error for ids that would not read back (empty, holding a tab,
/// a line break, or - for protein ids - ';' or whitespace), for empty gene lists and for strands
/// other than +1/-1.
inline void write_contig_table(std::ostream& out, const std::vector<contig_entry>& entries) {
  for (const auto& e : entries) {
    check<value_error>(!e.contig_id.empty() && e.contig_id.find_first_of("\t\r\n") == std::string::npos &&
                           data_detail::trim(e.contig_id).size() == e.contig_id.size(),
                       "write_contig_table: contig id: saw '", e.contig_id,
                       "', expected a non-empty id without tabs, line breaks or edge spaces");
    check<value_error>(!e.genes.empty(), "write_contig_table: genes of contig '", e.contig_id,
                       "': saw none, expected at least one");
    out << e.contig_id << '\t';
    for (std::size_t i = 0; i < e.genes.size(); ++i) {
      const auto& [prot, strand] = e.genes[i];
      check<value_error>(!prot.empty() && prot.find_first_of("; \t\r\n") == std::string::npos,
                         "write_contig_table: protein id ", i + 1, " of contig '", e.contig_id, "': saw '",
                         prot, "', expected a non-empty id without ';' or whitespace");
      if (i) out << ';';
      out << strand_sign(strand) << prot;
    }
    out << '\n';
  }
  data_detail::check_written(out, "write_contig_table");
}

inline void write_contig_table(const std::filesystem::path& path, const std::vector<contig_entry>& entries) {
  io::write_text_atomic(path, [&](std::ostream& out) { write_contig_table(out, entries); });
}

/// A genome contig as a contig-table entry (gene ids and strands).
inline contig_entry to_entry(const contig& c) {
  contig_entry e;
  e.contig_id = c.id;
  e.genes.reserve(c.genes.size());
  for (const auto& g : c.genes) e.genes.emplace_back(g.id, g.strand);
  return e;
}

/// Start offsets of the windows of a contig of n genes (see the header comment).
inline std::vector<std::size_t> window_offsets(std::size_t n, std::size_t max_genes, std::size_t overlap) {
  check<value_error>(max_genes >= 1, "windows: max_genes: saw 0, expected >= 1");
  check<value_error>(overlap < max_genes, "windows: overlap: saw ", overlap, ", expected < max_genes (",
                     max_genes, ")");
  std::vector<std::size_t> out;
  if (n == 0) return out;
  if (n <= max_genes) return {0};
  const std::size_t stride = max_genes - overlap;
  std::size_t s = 0;
  for (; s + max_genes < n; s += stride) out.push_back(s);
  out.push_back(n - max_genes);
  return out;
}

/// Cuts a contig-table entry into windows of at most max_genes genes overlapping by `overlap`
/// (value_error unless 1 <= max_genes and overlap < max_genes). An entry without genes gives none.
inline std::vector<contig_window> windows(const contig_entry& c, std::size_t max_genes, std::size_t overlap) {
  std::vector<contig_window> out;
  const std::size_t n = c.genes.size();
  for (std::size_t off : window_offsets(n, max_genes, overlap)) {
    contig_window w;
    w.source_id = c.contig_id;
    w.offset = off;
    w.source_size = n;
    const std::size_t len = std::min(max_genes, n - off);
    w.entry.contig_id = n <= max_genes
                            ? c.contig_id
                            : c.contig_id + ":" + std::to_string(off + 1) + "-" + std::to_string(off + len);
    w.entry.genes.assign(c.genes.begin() + static_cast<std::ptrdiff_t>(off),
                         c.genes.begin() + static_cast<std::ptrdiff_t>(off + len));
    out.push_back(std::move(w));
  }
  return out;
}

/// Windows of a genome contig (genes as gene id + strand).
inline std::vector<contig_window> windows(const contig& c, std::size_t max_genes, std::size_t overlap) {
  return windows(to_entry(c), max_genes, overlap);
}

/// Windows of every contig of a genome or contig table (contig or contig_entry), in contig order
/// (contigs without genes give none).
template <class Contig>
std::vector<contig_window> contigs_from_genome(const std::vector<Contig>& genome, std::size_t max_genes,
                                               std::size_t overlap) {
  std::vector<contig_window> out;
  for (const auto& c : genome) {
    auto w = windows(c, max_genes, overlap);
    for (auto& x : w) out.push_back(std::move(x));
  }
  return out;
}

/// The window entries alone (e.g. to write them as a contig table).
inline std::vector<contig_entry> window_entries(const std::vector<contig_window>& ws) {
  std::vector<contig_entry> out;
  out.reserve(ws.size());
  for (const auto& w : ws) out.push_back(w.entry);
  return out;
}

/// Averages per-gene vectors of overlapping windows of ONE source contig back onto its gene order.
/// outputs[i] holds one vector per gene of windows[i] (all vectors the same length). Returns
/// source_size vectors. value_error for mixed sources, count/size mismatches, windows past the
/// source's end, or source genes no window covers.
inline std::vector<std::vector<float>> stitch(const std::vector<contig_window>& ws,
                                              const std::vector<std::vector<std::vector<float>>>& outputs) {
  check<value_error>(!ws.empty(), "stitch: windows: saw none, expected at least one");
  check<value_error>(ws.size() == outputs.size(), "stitch: outputs: saw ", outputs.size(),
                     " windows of outputs, expected ", ws.size());
  const std::string& src = ws.front().source_id;
  const std::size_t n = ws.front().source_size;
  std::size_t dim = 0;
  bool have_dim = false;
  std::vector<std::vector<double>> sum(n);
  std::vector<std::size_t> count(n, 0);
  for (std::size_t i = 0; i < ws.size(); ++i) {
    const auto& w = ws[i];
    check<value_error>(w.source_id == src && w.source_size == n, "stitch: window '", w.entry.contig_id,
                       "': source '", w.source_id, "' (", w.source_size, " genes), expected '", src, "' (", n,
                       " genes); stitch one contig at a time or use stitch_all");
    check<value_error>(outputs[i].size() == w.entry.genes.size(), "stitch: outputs of window '",
                       w.entry.contig_id, "': saw ", outputs[i].size(), " genes, expected ",
                       w.entry.genes.size());
    check<value_error>(w.offset <= n && w.entry.genes.size() <= n - w.offset, "stitch: window '", w.entry.contig_id,
                       "': genes ", w.offset, "..", w.offset + w.entry.genes.size(), " past the source's ", n,
                       " genes");
    for (std::size_t j = 0; j < outputs[i].size(); ++j) {
      const auto& v = outputs[i][j];
      if (!have_dim) {
        dim = v.size();
        have_dim = true;
      }
      check<value_error>(v.size() == dim, "stitch: vector of gene ", j, " of window '", w.entry.contig_id,
                         "': saw length ", v.size(), ", expected ", dim);
      auto& s = sum[w.offset + j];
      if (s.empty()) s.assign(dim, 0.0);
      for (std::size_t d = 0; d < dim; ++d) s[d] += static_cast<double>(v[d]);
      ++count[w.offset + j];
    }
  }
  std::vector<std::vector<float>> out(n);
  for (std::size_t g = 0; g < n; ++g) {
    check<value_error>(count[g] > 0, "stitch: gene index ", g, " of contig '", src, "': no window covers it");
    out[g].resize(dim);
    for (std::size_t d = 0; d < dim; ++d)
      out[g][d] = static_cast<float>(sum[g][d] / static_cast<double>(count[g]));
  }
  return out;
}

/// stitch() for windows of several contigs (e.g. from contigs_from_genome): groups windows by
/// source id and returns (source id, per-gene vectors) in order of first appearance.
inline std::vector<std::pair<std::string, std::vector<std::vector<float>>>> stitch_all(
    const std::vector<contig_window>& ws, const std::vector<std::vector<std::vector<float>>>& outputs) {
  check<value_error>(ws.size() == outputs.size(), "stitch_all: outputs: saw ", outputs.size(),
                     " windows of outputs, expected ", ws.size());
  std::vector<std::string> order;
  std::map<std::string, std::pair<std::vector<contig_window>, std::vector<std::vector<std::vector<float>>>>>
      groups;
  for (std::size_t i = 0; i < ws.size(); ++i) {
    auto [it, fresh] = groups.try_emplace(ws[i].source_id);
    if (fresh) order.push_back(ws[i].source_id);
    it->second.first.push_back(ws[i]);
    it->second.second.push_back(outputs[i]);
  }
  std::vector<std::pair<std::string, std::vector<std::vector<float>>>> out;
  for (const auto& id : order) {
    const auto& g = groups.at(id);
    out.emplace_back(id, stitch(g.first, g.second));
  }
  return out;
}

/// Looks up each gene's protein sequence of an entry by protein id; lookup_error naming the
/// contig and the id for a protein the map lacks.
inline std::vector<std::string> gather_proteins(const contig_entry& e,
                                                const std::map<std::string, std::string>& proteins) {
  std::vector<std::string> out;
  out.reserve(e.genes.size());
  for (const auto& [id, strand] : e.genes) {
    auto it = proteins.find(id);
    if (it == proteins.end())
      throw lookup_error(detail::concat("contig '", e.contig_id, "': protein id '", id,
                                        "' not found among the ", proteins.size(), " given proteins"));
    out.push_back(it->second);
  }
  return out;
}

}  // namespace genlm
