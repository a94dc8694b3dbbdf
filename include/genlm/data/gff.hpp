// genlm/data/gff.hpp - GFF3 reader (with an embedded ##FASTA section) and Prodigal protein FASTA
// reader, plus read_genome(), which recognises GenBank / GFF3 / Prodigal .faa by content.
//
// GFF3: nine tab-separated columns; '#' lines are comments/directives (##sequence-region gives
// contig lengths); "##FASTA" (or a first '>' line) starts a FASTA section that runs to the end of
// the file. Attributes are ';'-separated key=value pairs with %XX percent-decoding (keys and
// values; multi-valued EC attributes are split on raw ',' before decoding). Only CDS lines become
// genes. CDS lines sharing an ID are one multi-segment CDS (they must share seqid and strand);
// a CDS line without ID is a gene of its own.
//   - gene id: locus_tag, else protein_id, else ID, else Name, else "<seqid>_<n>" (n = 1-based CDS
//     index in the file);  name: gene, else Name;  product: product;
//     EC numbers: EC_number, eC_number (Prokka) or ec_number, each possibly comma-separated.
//   - protein: a translation attribute if present; else, when the file has a FASTA section, the
//     CDS is translated from it (segments joined in transcription order, minus strand reverse
//     complemented, the first segment's phase skipped, transl_table attribute or 11, first codon
//     read as M unless the 5' end is partial: Prodigal partial=10/01/11, NCBI start_range/end_range
//     or partial=true). A CDS whose seqid has no FASTA sequence is a lookup_error. Without a FASTA
//     section proteins stay empty.
//   - pseudo=true (or a bare "pseudo") CDSs without a translation attribute are skipped.
//   - contigs: every seqid of ##sequence-region lines and feature lines, in order of first
//     appearance (contigs without CDSs are returned with no genes); genes ordered by start.
// Prodigal .faa: headers ">contig_N # start # end # strand # ID=..;partial=..;..." (strand 1/-1).
// The contig is the id without its "_N" suffix; the trailing '*' is stripped; genes get
// id = contig_N, coordinates, strand and partial (partial != 00).
// Errors: format_error naming file:line, the field, the value seen and the one expected; among them
// a CDS end past its sequence's length (##sequence-region end, else ##FASTA length), a ##FASTA
// sequence shorter than its ##sequence-region, non-letters in a translation attribute.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <istream>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "genlm/core/error.hpp"
#include "genlm/data/fasta.hpp"
#include "genlm/data/genbank.hpp"
#include "genlm/data/genome.hpp"

namespace genlm {

namespace data_detail {

inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// %XX decoding; nullopt-like failure reported through `ok`.
inline std::string percent_decode(std::string_view v, bool& ok) {
  ok = true;
  std::string out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') {
      out.push_back(v[i]);
      continue;
    }
    const int hi = i + 1 < v.size() ? hex_value(v[i + 1]) : -1;
    const int lo = i + 2 < v.size() ? hex_value(v[i + 2]) : -1;
    if (hi < 0 || lo < 0) {
      ok = false;
      return out;
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

struct gff_attributes {
  std::vector<std::pair<std::string, std::string>> raw;  // decoded key, raw (still encoded) value
  const std::string* find(std::string_view key) const {
    for (const auto& kv : raw)
      if (kv.first == key) return &kv.second;
    return nullptr;
  }
};

inline std::string gff_decode(std::string_view v, std::string_view source, std::size_t line,
                              std::string_view field) {
  bool ok = true;
  std::string out = percent_decode(v, ok);
  if (!ok) fail_format(source, line, field, v, "valid %XX percent escapes");
  return out;
}

inline gff_attributes parse_gff_attributes(std::string_view col, std::string_view source, std::size_t line) {
  gff_attributes a;
  if (trim(col) == ".") return a;
  for (auto part : split(col, ';')) {
    part = trim(part);
    if (part.empty()) continue;
    const std::size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      // A bare tag (e.g. "pseudo") is a flag; GTF-style 'key "value"' is not GFF3.
      if (part.find_first_of(" \"") != std::string_view::npos)
        fail_format(source, line, "attributes (column 9)", part,
                    "key=value pairs (GFF3; GTF-style 'key \"value\"' is not supported)");
      a.raw.emplace_back(gff_decode(part, source, line, "attribute name"), "true");
      continue;
    }
    a.raw.emplace_back(gff_decode(trim(part.substr(0, eq)), source, line, "attribute name"),
                       std::string(trim(part.substr(eq + 1))));
  }
  return a;
}

struct gff_segment {
  std::int64_t start = 0, end = 0;
  int phase = 0;
  std::size_t line = 0;
};

struct gff_cds {
  std::string seqid;
  int strand = 1;
  std::string id_attr;
  gff_attributes attrs;
  std::vector<gff_segment> segments;
  std::size_t line = 0;
  std::size_t index = 0;
};

}  // namespace data_detail

/// Percent-decodes a GFF3 column value (%2C -> ','); value_error for a malformed escape.
inline std::string percent_decode(std::string_view v) {
  bool ok = true;
  std::string out = data_detail::percent_decode(v, ok);
  check<value_error>(ok, "percent_decode: saw '", v, "', expected valid %XX escapes");
  return out;
}

/// Parses GFF3 text from a stream; `source` names it in error messages.
inline std::vector<contig> parse_gff(std::istream& in, const std::string& source = "<stream>") {
  using namespace data_detail;
  line_reader lines(in, source);
  std::string line;
  std::vector<std::string> contig_order;
  std::map<std::string, std::int64_t> lengths;
  std::map<std::string, std::size_t> region_line;  // seqid -> ##sequence-region line giving its length
  std::vector<gff_cds> cdss;
  std::map<std::string, std::size_t> cds_by_id;
  std::vector<fasta_record> fasta;
  bool has_fasta = false;
  auto see_contig = [&](const std::string& id) {
    if (lengths.emplace(id, 0).second) contig_order.push_back(id);
  };

  while (lines.next(line)) {
    const std::string_view l = line;
    if (trim(l).empty()) continue;
    if (starts_with(l, "##FASTA") || l.front() == '>') {
      if (l.front() == '>') lines.push_back(line);
      fasta_options fo;
      fo.strip_trailing_stop = false;
      fasta = parse_fasta_lines(lines, fo);
      has_fasta = true;
      break;
    }
    if (starts_with(l, "##sequence-region")) {
      const auto tok = tokens(l);
      std::int64_t a = 0, b = 0;
      if (tok.size() != 4 || !parse_int(tok[2], a) || !parse_int(tok[3], b) || a < 1 || b < a)
        fail_format(source, lines.line(), "##sequence-region", l, "'##sequence-region seqid start end'");
      const std::string id = gff_decode(tok[1], source, lines.line(), "seqid");
      see_contig(id);
      if (b > lengths[id]) region_line[id] = lines.line();
      lengths[id] = std::max(lengths[id], b);
      continue;
    }
    if (l.front() == '#') continue;
    const auto cols = split(l, '\t');
    if (cols.size() != 9)
      fail_format(source, lines.line(), "columns", std::to_string(cols.size()) + " tab-separated columns",
                  "9 (GFF3: seqid source type start end score strand phase attributes)");
    const std::string seqid = gff_decode(cols[0], source, lines.line(), "seqid (column 1)");
    if (seqid.empty()) fail_format(source, lines.line(), "seqid (column 1)", cols[0], "a sequence id");
    see_contig(seqid);
    std::int64_t start = 0, end = 0;
    if (!parse_int(cols[3], start) || start < 1)
      fail_format(source, lines.line(), "start (column 4)", cols[3], "a positive integer");
    if (!parse_int(cols[4], end) || end < start)
      fail_format(source, lines.line(), "end (column 5)", cols[4],
                  "an integer >= start " + std::to_string(start));
    if (cols[2] != "CDS") continue;
    int strand = 0;
    if (cols[6] == "+")
      strand = 1;
    else if (cols[6] == "-")
      strand = -1;
    else
      fail_format(source, lines.line(), "strand (column 7) of a CDS", cols[6], "'+' or '-'");
    int phase = 0;
    if (cols[7] == "0" || cols[7] == ".")
      phase = 0;
    else if (cols[7] == "1")
      phase = 1;
    else if (cols[7] == "2")
      phase = 2;
    else
      fail_format(source, lines.line(), "phase (column 8) of a CDS", cols[7], "0, 1 or 2");
    auto attrs = parse_gff_attributes(cols[8], source, lines.line());
    std::string id_attr;
    if (const auto* v = attrs.find("ID")) id_attr = gff_decode(*v, source, lines.line(), "attribute ID");
    const gff_segment seg{start, end, phase, lines.line()};
    if (!id_attr.empty()) {
      auto it = cds_by_id.find(id_attr);
      if (it != cds_by_id.end()) {
        auto& c = cdss[it->second];
        if (c.seqid != seqid || c.strand != strand)
          fail_format(source, lines.line(), "CDS '" + id_attr + "' segment",
                      seqid + " " + std::string(cols[6]),
                      "the seqid and strand of its first segment on line " + std::to_string(c.line) + " (" +
                          c.seqid + " " + (c.strand > 0 ? "+" : "-") + ")");
        c.segments.push_back(seg);
        continue;
      }
      cds_by_id.emplace(id_attr, cdss.size());
    }
    gff_cds c;
    c.seqid = seqid;
    c.strand = strand;
    c.id_attr = id_attr;
    c.attrs = std::move(attrs);
    c.segments.push_back(seg);
    c.line = lines.line();
    c.index = cdss.size() + 1;
    cdss.push_back(std::move(c));
  }

  std::map<std::string, const fasta_record*> seqs;
  for (const auto& r : fasta) {
    auto [it, fresh] = seqs.emplace(r.id, &r);
    if (!fresh)
      fail_format(source, r.line, "##FASTA sequence id", r.id,
                  "unique ids (first seen on line " + std::to_string(it->second->line) + ")");
    if (lengths.count(r.id) && lengths[r.id] == 0)
      lengths[r.id] = static_cast<std::int64_t>(r.sequence.size());
    else if (region_line.count(r.id) && static_cast<std::int64_t>(r.sequence.size()) < lengths[r.id])
      fail_format(source, r.line, "##FASTA sequence '" + r.id + "' length", std::to_string(r.sequence.size()),
                  "at least " + std::to_string(lengths[r.id]) + " bp, the end of its ##sequence-region on line " +
                      std::to_string(region_line[r.id]));
  }

  std::vector<contig> out;
  std::map<std::string, std::size_t> contig_index;
  for (const auto& id : contig_order) {
    contig_index.emplace(id, out.size());
    contig c;
    c.id = id;
    c.length = lengths[id];
    out.push_back(std::move(c));
  }

  for (auto& c : cdss) {
    auto get = [&](std::string_view key) -> std::string {
      const auto* v = c.attrs.find(key);
      return v ? gff_decode(*v, source, c.line, "attribute " + std::string(key)) : std::string();
    };
    std::sort(c.segments.begin(), c.segments.end(),
              [](const gff_segment& a, const gff_segment& b) { return a.start < b.start; });
    const std::int64_t len = lengths.at(c.seqid);
    for (const auto& s : c.segments)
      if (len > 0 && s.end > len)
        fail_format(source, s.line, "end (column 5) of a CDS on '" + c.seqid + "'", std::to_string(s.end),
                    "a coordinate within 1.." + std::to_string(len) +
                        (region_line.count(c.seqid)
                             ? " (##sequence-region on line " + std::to_string(region_line[c.seqid]) + ")"
                             : " (the length of its ##FASTA sequence)") +
                        "; a CDS across the origin is two segments sharing an ID");
    gene g;
    g.contig = c.seqid;
    g.strand = c.strand;
    g.start = c.segments.front().start;
    g.end = c.segments.front().end;
    for (const auto& s : c.segments) g.end = std::max(g.end, s.end);
    g.protein_id = get("protein_id");
    g.name = get("gene");
    if (g.name.empty()) g.name = get("Name");
    g.product = get("product");
    for (const char* key : {"EC_number", "eC_number", "ec_number"}) {
      if (const auto* v = c.attrs.find(key))
        for (auto part : split(*v, ',')) {
          const std::string ec = std::string(trim(gff_decode(part, source, c.line, key)));
          if (!ec.empty()) g.ec_numbers.push_back(ec);
        }
    }
    // Partial ends.
    const std::string partial = get("partial");
    bool low_partial = false, high_partial = false;
    if (partial.size() == 2 && (partial[0] == '0' || partial[0] == '1') &&
        (partial[1] == '0' || partial[1] == '1')) {  // Prodigal: left/right edge
      low_partial = partial[0] == '1';
      high_partial = partial[1] == '1';
    } else if (partial == "true") {
      const bool sr = c.attrs.find("start_range") != nullptr, er = c.attrs.find("end_range") != nullptr;
      low_partial = sr || !er;
      high_partial = er || !sr;
    }
    if (c.attrs.find("start_range")) low_partial = true;
    if (c.attrs.find("end_range")) high_partial = true;
    g.partial = low_partial || high_partial;
    const bool five_partial = c.strand > 0 ? low_partial : high_partial;

    const std::string pseudo = get("pseudo");
    const bool is_pseudo = pseudo == "true" || pseudo == "True" || pseudo == "TRUE";
    append_translation(g.protein, get("translation"), source, c.line, "attribute translation");
    if (!g.protein.empty() && g.protein.back() == '*') g.protein.pop_back();
    if (is_pseudo && g.protein.empty()) continue;
    if (g.protein.empty() && has_fasta) {
      auto it = seqs.find(c.seqid);
      if (it == seqs.end())
        throw lookup_error(detail::concat(source, ":", c.line, ": CDS seqid: saw '", c.seqid,
                                          "', expected a sequence of that id in the ##FASTA section"));
      const std::string& dna = it->second->sequence;
      std::int64_t table = 11;
      const std::string tt = get("transl_table");
      if (!tt.empty() && (!parse_int(tt, table) || (table != 11 && table != 1 && table != 4)))
        fail_format(source, c.line, "attribute transl_table", tt, "11, 1 or 4 (the tables genlm translates)");
      std::vector<location_segment> segs;
      for (const auto& s : c.segments) {
        if (s.end > static_cast<std::int64_t>(dna.size()))
          fail_format(source, s.line, "end (column 5)", std::to_string(s.end),
                      "at most the length " + std::to_string(dna.size()) + " of sequence '" + c.seqid + "'");
        segs.push_back({s.start, s.end, c.strand, false, false});
      }
      int phase = c.segments.front().phase;
      if (c.strand < 0) {
        std::reverse(segs.begin(), segs.end());
        phase = c.segments.back().phase;
      }
      std::string cds = data_detail::location_sequence(dna, segs);
      cds.erase(0, std::min<std::size_t>(static_cast<std::size_t>(phase), cds.size()));
      g.protein = translate_cds(cds, static_cast<int>(table), phase == 0 && !five_partial);
    }
    g.id = get("locus_tag");
    if (g.id.empty()) g.id = g.protein_id;
    if (g.id.empty()) g.id = c.id_attr;
    if (g.id.empty()) g.id = get("Name");
    if (g.id.empty()) g.id = c.seqid + "_" + std::to_string(c.index);
    out[contig_index.at(c.seqid)].genes.push_back(std::move(g));
  }
  for (auto& c : out) sort_genes(c);
  return out;
}

/// Reads a GFF3 file.
inline std::vector<contig> read_gff(const std::filesystem::path& path) {
  auto in = data_detail::open_input(path);
  return parse_gff(in, path.string());
}

/// Builds contigs from Prodigal protein FASTA records (headers ">contig_N # start # end # strand #
/// attributes"); `source` names the file in error messages.
inline std::vector<contig> prodigal_contigs(const std::vector<fasta_record>& records,
                                            const std::string& source = "<prodigal>") {
  using namespace data_detail;
  std::vector<contig> out;
  std::map<std::string, std::size_t> index;
  for (const auto& r : records) {
    const auto parts = split(r.description, '#');
    if (parts.size() < 5 || !trim(parts[0]).empty())
      fail_format(source, r.line, "Prodigal header of '" + r.id + "'", r.description,
                  "'# start # end # strand # attributes'");
    std::int64_t start = 0, end = 0, strand = 0;
    if (!parse_int(trim(parts[1]), start) || start < 1)
      fail_format(source, r.line, "Prodigal start", trim(parts[1]), "a positive integer");
    if (!parse_int(trim(parts[2]), end) || end < start)
      fail_format(source, r.line, "Prodigal end", trim(parts[2]), "an integer >= start");
    if (!parse_int(trim(parts[3]), strand) || (strand != 1 && strand != -1))
      fail_format(source, r.line, "Prodigal strand", trim(parts[3]), "1 or -1");
    const std::size_t us = r.id.rfind('_');
    std::int64_t n = 0;
    if (us == std::string::npos || us == 0 || !parse_int(std::string_view(r.id).substr(us + 1), n))
      fail_format(source, r.line, "Prodigal protein id", r.id, "'<contig>_<n>'");
    gene g;
    g.id = r.id;
    g.contig = r.id.substr(0, us);
    g.start = start;
    g.end = end;
    g.strand = static_cast<int>(strand);
    g.protein = r.sequence;
    if (!g.protein.empty() && g.protein.back() == '*') g.protein.pop_back();
    for (auto kv : split(parts[4], ';')) {
      kv = trim(kv);
      if (starts_with(kv, "partial=")) g.partial = kv.substr(8) != "00";
    }
    auto [it, fresh] = index.emplace(g.contig, out.size());
    if (fresh) {
      contig c;
      c.id = g.contig;
      out.push_back(std::move(c));
    }
    out[it->second].genes.push_back(std::move(g));
  }
  for (auto& c : out) sort_genes(c);
  return out;
}

/// Parses a Prodigal protein FASTA (.faa) stream.
inline std::vector<contig> parse_prodigal_faa(std::istream& in, const std::string& source = "<stream>") {
  return prodigal_contigs(parse_fasta(in, source), source);
}

/// Reads a Prodigal protein FASTA (.faa) file.
inline std::vector<contig> read_prodigal_faa(const std::filesystem::path& path) {
  auto in = data_detail::open_input(path);
  return parse_prodigal_faa(in, path.string());
}

/// Reads a genome annotation file, recognising the format by its first non-blank line:
/// "LOCUS" -> GenBank, "##gff-version" / "#" / 9 tab-separated columns -> GFF3, ">... # a # b # s #"
/// -> Prodigal .faa. format_error naming the file for anything else (e.g. plain FASTA, which has
/// no coordinates).
inline std::vector<contig> read_genome(const std::filesystem::path& path) {
  using namespace data_detail;
  std::string first;
  std::size_t first_line = 0;
  {
    auto in = open_input(path);
    line_reader lines(in, path.string());
    std::string l;
    while (lines.next(l)) {
      if (!trim(l).empty()) {
        first = l;
        first_line = lines.line();
        break;
      }
    }
  }
  if (first_line == 0)
    fail_format(path.string(), 1, "genome file", "empty file", "GenBank, GFF3 or Prodigal .faa");
  if (starts_with(first, "LOCUS")) return read_genbank(path);
  if (first.front() == '#' || split(first, '\t').size() == 9) return read_gff(path);
  if (first.front() == '>' && split(first, '#').size() >= 5) return read_prodigal_faa(path);
  fail_format(path.string(), first_line, "genome file format", first,
              "a GenBank 'LOCUS' line, a GFF3 line or a Prodigal '>id # start # end # strand #' header");
}

}  // namespace genlm
