// genlm/data/fasta.hpp - FASTA reading/writing and DNA translation.
//
// Reader: multi-record files, wrapped sequence lines, CRLF line ends, blank lines and ';' comment
// lines between records. The header line ">id description" is split at the first run of
// whitespace. Whitespace inside sequence lines is dropped; sequence letters keep their case. A
// record with an empty sequence is a format_error (unless fasta_options::allow_empty), as is any
// character other than letters, '*', '-' and '.' in a sequence line. A single trailing '*' (the
// stop codon of protein FASTA such as Prodigal's .faa) is stripped by default.
//
// Translation: NCBI genetic codes 11 (bacterial, archaeal and plant plastid; the default), 1
// (standard) and 4 (mycoplasma, TGA = W). Codons are read case-insensitively, 'U' reads as 'T',
// IUPAC ambiguity codes translate to the amino acid all their expansions share (GCN -> A) and to
// 'X' otherwise; a trailing incomplete codon is ignored. translate_cds() reads the first codon as
// 'M' when it is one of the table's start codons (GTG, TTG, ... for table 11) and drops one
// terminal stop.
#pragma once
#include <cstddef>
#include <filesystem>
#include <istream>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "genlm/core/error.hpp"
#include "genlm/data/genome.hpp"
#include "genlm/io/atomic_file.hpp"

namespace genlm {

/// One FASTA record.
struct fasta_record {
  std::string id;           ///< header text up to the first whitespace (never empty)
  std::string description;  ///< rest of the header line, trimmed (may be empty)
  std::string sequence;     ///< concatenated sequence lines without whitespace
  std::size_t line = 0;     ///< line number of the '>' header (0 when not read from a file)
};

struct fasta_options {
  bool strip_trailing_stop = true;  ///< drop one '*' at the end of each sequence
  bool allow_empty = false;         ///< accept records whose sequence is empty
};

namespace data_detail {

/// Reads FASTA records from `lines` until EOF. Used by parse_fasta and by the GFF3 reader for its
/// embedded ##FASTA section (so that line numbers stay those of the whole file).
inline std::vector<fasta_record> parse_fasta_lines(line_reader& lines, const fasta_options& opt) {
  std::vector<fasta_record> out;
  std::string line;
  bool have = false;
  fasta_record cur;
  auto finish = [&]() {
    if (!have) return;
    if (opt.strip_trailing_stop && !cur.sequence.empty() && cur.sequence.back() == '*')
      cur.sequence.pop_back();
    if (cur.sequence.empty() && !opt.allow_empty)
      fail_format(lines.source(), cur.line, "sequence of record '" + cur.id + "'", "",
                  "a non-empty sequence after the header");
    out.push_back(std::move(cur));
    cur = fasta_record{};
    have = false;
  };
  while (lines.next(line)) {
    const std::string_view t = trim(line);
    if (t.empty()) continue;
    if (t.front() == '>') {
      finish();
      const std::string_view h = trim(t.substr(1));
      if (h.empty())
        fail_format(lines.source(), lines.line(), "FASTA header", std::string(t), "'>id [description]'");
      std::size_t ws = 0;
      while (ws < h.size() && !is_space(h[ws])) ++ws;
      cur.id = std::string(h.substr(0, ws));
      cur.description = std::string(trim(h.substr(ws)));
      cur.line = lines.line();
      have = true;
      continue;
    }
    if (t.front() == ';') continue;  // old-style comment line
    if (!have)
      fail_format(lines.source(), lines.line(), "FASTA file", std::string(t),
                  "a '>' header line before any sequence");
    for (char c : t) {
      if (is_space(c)) continue;
      if (!(is_alpha(c) || c == '*' || c == '-' || c == '.'))
        fail_format(lines.source(), lines.line(), "sequence of record '" + cur.id + "'", std::string(1, c),
                    "letters, '*', '-' or '.'");
      cur.sequence.push_back(c);
    }
  }
  finish();
  return out;
}

}  // namespace data_detail

/// Parses FASTA text from a stream; `source` names it in error messages.
inline std::vector<fasta_record> parse_fasta(std::istream& in, const std::string& source = "<stream>",
                                             const fasta_options& opt = {}) {
  data_detail::line_reader lines(in, source);
  return data_detail::parse_fasta_lines(lines, opt);
}

/// Reads a FASTA file.
inline std::vector<fasta_record> read_fasta(const std::filesystem::path& path,
                                            const fasta_options& opt = {}) {
  auto in = data_detail::open_input(path);
  return parse_fasta(in, path.string(), opt);
}

/// Writes records as FASTA, sequence lines wrapped at `width` letters (0: no wrapping).
/// value_error for an empty id or an id/description holding a line break.
inline void write_fasta(std::ostream& out, const std::vector<fasta_record>& records, std::size_t width = 60) {
  for (const auto& r : records) {
    check<value_error>(!r.id.empty(), "write_fasta: record id: saw '', expected a non-empty id");
    check<value_error>(r.id.find_first_of(" \t\r\n") == std::string::npos, "write_fasta: record id: saw '",
                       r.id, "', expected no whitespace");
    check<value_error>(r.description.find_first_of("\r\n") == std::string::npos,
                       "write_fasta: description of '", r.id, "': expected no line break");
    out << '>' << r.id;
    if (!r.description.empty()) out << ' ' << r.description;
    out << '\n';
    if (width == 0) {
      out << r.sequence << '\n';
    } else {
      for (std::size_t i = 0; i < r.sequence.size(); i += width)
        out << std::string_view(r.sequence).substr(i, width) << '\n';
    }
  }
  data_detail::check_written(out, "write_fasta");
}

inline void write_fasta(const std::filesystem::path& path, const std::vector<fasta_record>& records,
                        std::size_t width = 60) {
  io::write_text_atomic(path, [&](std::ostream& out) { write_fasta(out, records, width); });
}

/// id -> sequence map; value_error naming both header lines for a duplicate id.
inline std::map<std::string, std::string> protein_index(const std::vector<fasta_record>& records) {
  std::map<std::string, std::string> out;
  std::map<std::string, std::size_t> line_of;
  for (const auto& r : records) {
    auto [it, fresh] = line_of.emplace(r.id, r.line);
    check<value_error>(fresh, "protein_index: duplicate id '", r.id, "' (header lines ", it->second, " and ",
                       r.line, ")");
    out.emplace(r.id, r.sequence);
  }
  return out;
}

/// The proteins of a genome as FASTA records: id = gene id, description = product.
/// Genes with an empty protein are skipped.
inline std::vector<fasta_record> proteins_from_genome(const std::vector<contig>& contigs) {
  std::vector<fasta_record> out;
  for (const auto& c : contigs)
    for (const auto& g : c.genes)
      if (!g.protein.empty()) out.push_back({g.id, g.product, g.protein, 0});
  return out;
}

// ---------------------------------------------------------------------------------------------
// Translation

namespace data_detail {

/// Nucleotide -> bit mask over T,C,A,G (bit 0 = T, 1 = C, 2 = A, 3 = G); 0 for non-nucleotides.
inline unsigned base_mask(char c) {
  switch (upper(c)) {
    case 'T':
    case 'U':
      return 1;
    case 'C':
      return 2;
    case 'A':
      return 4;
    case 'G':
      return 8;
    case 'R':
      return 4 | 8;
    case 'Y':
      return 1 | 2;
    case 'S':
      return 2 | 8;
    case 'W':
      return 1 | 4;
    case 'K':
      return 1 | 8;
    case 'M':
      return 2 | 4;
    case 'B':
      return 1 | 2 | 8;
    case 'D':
      return 1 | 4 | 8;
    case 'H':
      return 1 | 2 | 4;
    case 'V':
      return 2 | 4 | 8;
    case 'N':
      return 15;
    default:
      return 0;
  }
}

struct code_table {
  const char* aa;      // 64 amino acids, codons in TCAG order
  const char* starts;  // 'M' marks start codons
};

inline code_table genetic_code(int table) {
  static constexpr const char* std_aa = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG";
  static constexpr const char* myc_aa = "FFLLSSSSYY**CCWWLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG";
  switch (table) {
    case 11:
      return {std_aa, "---M------**--*----M------------MMMM---------------M------------"};
    case 1:
      return {std_aa, "---M------**--*----M---------------M----------------------------"};
    case 4:
      return {myc_aa, "--MM------**-------M------------MMMM---------------M------------"};
    default:
      throw value_error(detail::concat("genetic code table: saw ", table,
                                       ", expected 11 (bacterial), 1 (standard) or 4 (mycoplasma)"));
  }
}

inline int bit_index(unsigned single_bit) {
  return single_bit == 1 ? 0 : single_bit == 2 ? 1 : single_bit == 4 ? 2 : 3;
}

inline char translate_codon(const code_table& t, char a, char b, char c) {
  const unsigned m0 = base_mask(a), m1 = base_mask(b), m2 = base_mask(c);
  if (m0 == 0 || m1 == 0 || m2 == 0) return 'X';
  char aa = 0;
  for (unsigned x = 1; x <= 8; x <<= 1) {
    if (!(m0 & x)) continue;
    for (unsigned y = 1; y <= 8; y <<= 1) {
      if (!(m1 & y)) continue;
      for (unsigned z = 1; z <= 8; z <<= 1) {
        if (!(m2 & z)) continue;
        const char r = t.aa[bit_index(x) * 16 + bit_index(y) * 4 + bit_index(z)];
        if (aa == 0)
          aa = r;
        else if (aa != r)
          return 'X';
      }
    }
  }
  return aa;
}

inline bool is_single(unsigned m) { return m == 1 || m == 2 || m == 4 || m == 8; }

}  // namespace data_detail

/// Translates one codon (3 letters) with the given NCBI table; 'X' for untranslatable codons.
inline char translate_codon(std::string_view codon, int table = 11) {
  check<value_error>(codon.size() == 3, "translate_codon: codon length: saw ", codon.size(), ", expected 3");
  return data_detail::translate_codon(data_detail::genetic_code(table), codon[0], codon[1], codon[2]);
}

/// True when the (unambiguous) codon is a start codon of the table (table 11: ATG GTG TTG CTG
/// ATT ATC ATA).
inline bool is_start_codon(std::string_view codon, int table = 11) {
  if (codon.size() != 3) return false;
  const auto t = data_detail::genetic_code(table);
  const unsigned m0 = data_detail::base_mask(codon[0]), m1 = data_detail::base_mask(codon[1]),
                 m2 = data_detail::base_mask(codon[2]);
  if (!data_detail::is_single(m0) || !data_detail::is_single(m1) || !data_detail::is_single(m2)) return false;
  using data_detail::bit_index;
  return t.starts[bit_index(m0) * 16 + bit_index(m1) * 4 + bit_index(m2)] == 'M';
}

/// Translates every complete codon (stops become '*'; nothing is stripped).
inline std::string translate(std::string_view dna, int table = 11) {
  const auto t = data_detail::genetic_code(table);
  std::string out;
  out.reserve(dna.size() / 3);
  for (std::size_t i = 0; i + 3 <= dna.size(); i += 3)
    out.push_back(data_detail::translate_codon(t, dna[i], dna[i + 1], dna[i + 2]));
  return out;
}

/// Translates a coding sequence: like translate(), but the first codon reads as 'M' when it is a
/// start codon of the table and `initial_methionine` is set (clear it for 5'-partial CDSs), and
/// one terminal '*' is dropped. Internal stops stay as '*'.
inline std::string translate_cds(std::string_view dna, int table = 11, bool initial_methionine = true) {
  std::string out = translate(dna, table);
  if (initial_methionine && !out.empty() && is_start_codon(dna.substr(0, 3), table)) out[0] = 'M';
  if (!out.empty() && out.back() == '*') out.pop_back();
  return out;
}

/// Reverse complement; IUPAC codes complemented (R<->Y, K<->M, B<->V, D<->H, S, W, N kept),
/// case kept, 'U' complements to 'A'; other characters are kept as they are.
inline std::string reverse_complement(std::string_view dna) {
  std::string out(dna.rbegin(), dna.rend());
  for (char& c : out) {
    const bool lower = c >= 'a' && c <= 'z';
    char r;
    switch (data_detail::upper(c)) {
      case 'A':
        r = 'T';
        break;
      case 'T':
      case 'U':
        r = 'A';
        break;
      case 'C':
        r = 'G';
        break;
      case 'G':
        r = 'C';
        break;
      case 'R':
        r = 'Y';
        break;
      case 'Y':
        r = 'R';
        break;
      case 'K':
        r = 'M';
        break;
      case 'M':
        r = 'K';
        break;
      case 'B':
        r = 'V';
        break;
      case 'V':
        r = 'B';
        break;
      case 'D':
        r = 'H';
        break;
      case 'H':
        r = 'D';
        break;
      default:
        r = data_detail::upper(c);
        break;  // S, W, N, gaps...
    }
    c = (lower && data_detail::is_alpha(r)) ? static_cast<char>(r - 'A' + 'a') : r;
  }
  return out;
}

}  // namespace genlm
