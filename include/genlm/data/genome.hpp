// genlm/data/genome.hpp - genome data types (genes, contigs) shared by every input reader, plus the
// small parsing helpers the readers use (line reader with CRLF handling, file:line error messages).
//
// Coordinates are 1-based and inclusive, as in GenBank and GFF3. A gene that spans several
// segments (join(...)) gets start = lowest and end = highest coordinate over its segments, so
// start <= end always holds (an origin-spanning gene on a circular contig therefore covers the whole
// contig; its protein is still assembled in the right order).
#pragma once
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <istream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "genlm/core/error.hpp"

namespace genlm {

/// One protein-coding gene (a CDS feature).
struct gene {
  std::string id;          ///< locus_tag, else protein_id, else ID / gene name, else "<contig>_<n>"
  std::string contig;      ///< id of the contig (sequence) the gene lies on
  std::int64_t start = 0;  ///< 1-based, inclusive, start <= end
  std::int64_t end = 0;    ///< 1-based, inclusive
  int strand = +1;         ///< +1 or -1
  std::string product;     ///< free-text product description (may be empty)
  std::vector<std::string> ec_numbers;  ///< EC numbers in file order (may be empty)
  std::string protein;                  ///< amino-acid sequence without the terminal '*', may be empty
  // Extra fields (after the core ones so positional aggregate initialisation still works):
  std::string name;        ///< gene symbol (/gene, gene=, Name=) when known, e.g. "thrL"
  std::string protein_id;  ///< /protein_id or protein_id= when known, e.g. "NP_414542.1"
  bool partial = false;    ///< either end marked incomplete ('<', '>', Prodigal partial != 00)
};

/// A contig (sequence record) with its genes ordered by start coordinate.
struct contig {
  std::string id;
  std::vector<gene> genes;  ///< ordered by start (ties keep file order)
  std::int64_t length = 0;  ///< length in bp when known (LOCUS, ##sequence-region, FASTA), else 0
};

/// '+' for +1, '-' for -1; value_error otherwise.
inline char strand_sign(int strand) {
  check<value_error>(strand == 1 || strand == -1, "strand: saw ", strand, ", expected +1 or -1");
  return strand > 0 ? '+' : '-';
}

/// Sorts genes by start (stable: equal starts keep their order).
inline void sort_genes(contig& c) {
  std::stable_sort(c.genes.begin(), c.genes.end(),
                   [](const gene& a, const gene& b) { return a.start < b.start; });
}

/// Total number of genes over all contigs.
inline std::size_t count_genes(const std::vector<contig>& contigs) {
  std::size_t n = 0;
  for (const auto& c : contigs) n += c.genes.size();
  return n;
}

/// Internal helpers of the data readers (a namespace of their own so that other genlm headers'
/// detail helpers can never collide with them).
namespace data_detail {

/// Shortens a value for an error message.
inline std::string shown(std::string_view v, std::size_t max = 80) {
  if (v.size() <= max) return std::string(v);
  return std::string(v.substr(0, max)) + "...";
}

/// "source:line: field: saw 'seen', expected expected" as a format_error.
[[noreturn]] inline void fail_format(std::string_view source, std::size_t line, std::string_view field,
                                     std::string_view seen, std::string_view expected) {
  throw format_error(
      detail::concat(source, ":", line, ": ", field, ": saw '", shown(seen), "', expected ", expected));
}

inline bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

inline bool starts_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(0, p.size()) == p;
}

/// Splits on a single character; keeps empty fields.
inline std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t next = s.find(sep, pos);
    if (next == std::string_view::npos) {
      out.push_back(s.substr(pos));
      return out;
    }
    out.push_back(s.substr(pos, next - pos));
    pos = next + 1;
  }
}

/// Splits on runs of whitespace; drops empty tokens.
inline std::vector<std::string_view> tokens(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    std::size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

/// Parses a whole string as a decimal integer (optional leading '-'); false on any junk.
inline bool parse_int(std::string_view s, std::int64_t& out) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = s.data() + s.size();
  if (*b == '+') ++b;
  const auto r = std::from_chars(b, e, out);
  return r.ec == std::errc() && r.ptr == e && b != e;
}

inline char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }
inline bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

/// Reads lines, strips a trailing '\r' (CRLF files) and a leading UTF-8 BOM, counts line numbers
/// (1-based; line() is the number of the line last returned).
class line_reader {
 public:
  line_reader(std::istream& in, std::string source) : in_(in), source_(std::move(source)) {}

  bool next(std::string& out) {
    if (has_pushed_) {
      has_pushed_ = false;
      out = std::move(pushed_);
      ++line_;
      return true;
    }
    if (!std::getline(in_, out)) return false;
    ++line_;
    if (!out.empty() && out.back() == '\r') out.pop_back();
    if (line_ == 1 && starts_with(out, "\xEF\xBB\xBF")) out.erase(0, 3);
    return true;
  }
  /// Gives one line back; the next call to next() returns it again.
  void push_back(std::string line) {
    pushed_ = std::move(line);
    has_pushed_ = true;
    --line_;
  }
  std::size_t line() const { return line_; }
  const std::string& source() const { return source_; }

 private:
  std::istream& in_;
  std::string source_;
  std::size_t line_ = 0;
  std::string pushed_;
  bool has_pushed_ = false;
};

/// Opens a file for reading (binary: CRLF is handled by line_reader); genlm::error if it fails.
inline std::ifstream open_input(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw error(detail::concat(path.string(), ": cannot open file for reading"));
  return in;
}

/// Opens a file for writing; genlm::error if it fails.
inline std::ofstream open_output(const std::filesystem::path& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw error(detail::concat(path.string(), ": cannot open file for writing"));
  return out;
}

/// Throws genlm::error if a stream went bad while writing.
inline void check_written(std::ostream& out, std::string_view what) {
  if (!out) throw error(detail::concat(what, ": write failed"));
}

}  // namespace data_detail
}  // namespace genlm
