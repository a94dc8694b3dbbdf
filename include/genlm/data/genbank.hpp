// genlm/data/genbank.hpp - GenBank flat file reader (NCBI/INSDC feature table format).
//
// Reads multi-record files (LOCUS ... //) into one genlm::contig per record (contig id = the LOCUS
// name, length = the LOCUS length). Only CDS features become genes:
//   - locations: a..b, single bases, complement(...), join(...)/order(...), complement(join(...)),
//     join(complement(...),...), '<' / '>' partial markers, locations continued over several lines;
//     remote (ACC:a..b) and between-base (a^b) locations are a format_error.
//   - qualifiers, quoted values may span lines (joined with one space; /translation joined with
//     nothing): /locus_tag, /protein_id, /gene, /product, /EC_number (repeats), /translation,
//     /codon_start, /transl_table, /transl_except (e.g. Sec), /pseudo and /pseudogene.
//   - gene id: /locus_tag, else /protein_id, else /gene, else "<LOCUS name>_<n>" (n = 1-based index
//     of the CDS in its record).
//   - protein: /translation; when missing and the record has an ORIGIN sequence it is translated
//     (table /transl_table, default 11; /codon_start honoured; first codon read as M unless the
//     5' end is partial; terminal stop dropped). /pseudo CDSs without /translation are skipped
//     (genbank_options::keep_pseudo keeps them, with an empty protein, never translated).
//   - genes are ordered by start (ties keep file order).
// Errors (format_error) name the file, the line, the field and what was seen vs expected: missing
// LOCUS, missing '//', unterminated quoted values, malformed locations, coordinates past the
// sequence end, ORIGIN length != LOCUS length, ORIGIN position numbers out of step, bad
// /codon_start or /transl_table, non-letters in /translation (the character and its residue
// position), a feature key that is not one (e.g. a qualifier indented 5 columns instead of 21), a
// continuation line after a value that is already complete (a closed quoted value or a flag).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

#include "genlm/core/error.hpp"
#include "genlm/data/fasta.hpp"
#include "genlm/data/genome.hpp"

namespace genlm {

/// One contiguous piece of a feature location, in transcription order.
struct location_segment {
  std::int64_t start = 0;     ///< 1-based, inclusive, start <= end
  std::int64_t end = 0;       ///< 1-based, inclusive
  int strand = +1;            ///< +1, or -1 inside complement(...)
  bool partial_low = false;   ///< '<' on the low coordinate
  bool partial_high = false;  ///< '>' on the high coordinate
};

struct genbank_options {
  bool translate_missing = true;  ///< translate CDSs without /translation from ORIGIN
  bool keep_pseudo = false;       ///< keep /pseudo CDSs lacking /translation (empty protein)
};

namespace data_detail {

class location_parser {
 public:
  location_parser(std::string_view text, std::string_view source, std::size_t line)
      : original_(text), source_(source), line_(line) {
    for (char c : text)
      if (!is_space(c)) s_.push_back(c);
  }

  std::vector<location_segment> parse() {
    if (s_.empty()) fail("a location such as 12..345");
    auto segs = parse_loc(0);
    if (i_ != s_.size()) fail("end of location after '" + s_.substr(0, i_) + "'");
    return segs;
  }

 private:
  [[noreturn]] void fail(const std::string& expected) const {
    fail_format(source_, line_, "CDS location", original_, expected);
  }
  bool eat(std::string_view p) {
    if (std::string_view(s_).substr(i_, p.size()) == p) {
      i_ += p.size();
      return true;
    }
    return false;
  }
  std::int64_t number() {
    const std::size_t b = i_;
    while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
    std::int64_t v = 0;
    if (b == i_ || !parse_int(std::string_view(s_).substr(b, i_ - b), v) || v < 1)
      fail("a positive base number at offset " + std::to_string(b));
    return v;
  }
  std::vector<location_segment> parse_loc(int depth) {
    if (depth > 32) fail("locations nested at most 32 deep");
    if (eat("complement(")) {
      auto inner = parse_loc(depth + 1);
      if (!eat(")")) fail("')' closing complement(");
      std::reverse(inner.begin(), inner.end());
      for (auto& seg : inner) seg.strand = -seg.strand;
      return inner;
    }
    if (eat("join(") || eat("order(")) {
      std::vector<location_segment> out;
      do {
        auto part = parse_loc(depth + 1);
        out.insert(out.end(), part.begin(), part.end());
      } while (eat(","));
      if (!eat(")")) fail("')' closing join(");
      return out;
    }
    return {parse_range()};
  }
  location_segment parse_range() {
    location_segment seg;
    seg.partial_low = eat("<");
    if (i_ < s_.size() && !is_digit(s_[i_])) {
      if (s_.find(':', i_) != std::string::npos)
        fail("a local location (remote references ACC:a..b are not supported)");
      fail("a base number, complement( or join( at offset " + std::to_string(i_));
    }
    seg.start = number();
    if (eat("..")) {
      seg.partial_high = eat(">");
      seg.end = number();
    } else if (i_ < s_.size() && s_[i_] == '^') {
      fail("a base range (between-base sites a^b are not CDS locations)");
    } else if (i_ < s_.size() && s_[i_] == ':') {
      fail("a local location (remote references ACC:a..b are not supported)");
    } else {
      seg.end = seg.start;
    }
    if (seg.end < seg.start)
      fail("start <= end in '" + std::to_string(seg.start) + ".." + std::to_string(seg.end) + "'");
    return seg;
  }

  std::string_view original_;
  std::string_view source_;
  std::size_t line_;
  std::string s_;
  std::size_t i_ = 0;
};

struct gb_qualifier {
  std::string name;
  std::string value;  // without the quotes; "" unescaped
  std::size_t line = 0;
  bool quoted = false;
  bool open = false;       // closing quote not seen yet
  bool has_value = false;  // '=' seen (flags such as /pseudo have none)
};

struct gb_feature {
  std::string key;
  std::string location;
  std::size_t line = 0;
  bool skip = true;  // not a CDS
  std::vector<gb_qualifier> qualifiers;
};

/// Appends a chunk of a quoted value; returns true when the closing quote was in this chunk.
inline bool append_quoted(gb_qualifier& q, std::string_view chunk, bool first_chunk) {
  if (!first_chunk && !q.value.empty()) {
    if (q.name != "translation") q.value.push_back(' ');
  }
  for (std::size_t j = 0; j < chunk.size(); ++j) {
    const char c = chunk[j];
    if (c == '"') {
      if (j + 1 < chunk.size() && chunk[j + 1] == '"') {
        q.value.push_back('"');
        ++j;
        continue;
      }
      return true;  // closing quote; anything after it is ignored
    }
    q.value.push_back(c);
  }
  return false;
}

/// True for an INSDC feature key: letters, digits, '_', '-', '\'' and '*', at least one letter
/// (CDS, misc_feature, 5'UTR, -10_signal).
inline bool is_feature_key(std::string_view k) {
  bool letter = false;
  for (char c : k) {
    if (is_alpha(c))
      letter = true;
    else if (!is_digit(c) && c != '_' && c != '-' && c != '\'' && c != '*')
      return false;
  }
  return letter;
}

/// Appends the residues of a translation value (GenBank /translation, GFF3 translation=) to
/// `protein`, skipping whitespace; format_error naming the first character that is neither a
/// letter nor '*' and its 1-based residue position in the value.
inline void append_translation(std::string& protein, std::string_view value, std::string_view source,
                               std::size_t line, std::string_view field) {
  std::size_t residue = 0;
  for (char c : value) {
    if (is_space(c)) continue;
    ++residue;
    if (!is_alpha(c) && c != '*')
      fail_format(source, line, std::string(field) + ", residue " + std::to_string(residue), std::string(1, c),
                  "an amino-acid letter or '*'");
    protein.push_back(c);
  }
}

inline const gb_qualifier* find_qualifier(const gb_feature& f, std::string_view name) {
  for (const auto& q : f.qualifiers)
    if (q.name == name) return &q;
  return nullptr;
}

/// Extracts the sequence of a location (segments in transcription order) from `seq`.
inline std::string location_sequence(std::string_view seq, const std::vector<location_segment>& segs) {
  std::string out;
  for (const auto& s : segs) {
    const auto piece =
        seq.substr(static_cast<std::size_t>(s.start - 1), static_cast<std::size_t>(s.end - s.start + 1));
    if (s.strand > 0)
      out += piece;
    else
      out += reverse_complement(piece);
  }
  return out;
}

/// True when the 5' end of the location (first segment in transcription order) is partial.
inline bool five_prime_partial(const std::vector<location_segment>& segs) {
  if (segs.empty()) return false;
  const auto& f = segs.front();
  return f.strand > 0 ? f.partial_low : f.partial_high;
}

/// One-letter code of a /transl_except amino acid ("Sec" -> 'U', "TERM" -> '*'); 0 if unknown.
inline char three_letter_aa(std::string_view a) {
  static constexpr const char* names[] = {"Ala", "Arg", "Asn", "Asp", "Cys", "Gln", "Glu",  "Gly",
                                          "His", "Ile", "Leu", "Lys", "Met", "Phe", "Pro",  "Ser",
                                          "Thr", "Trp", "Tyr", "Val", "Sec", "Pyl", "TERM", "OTHER"};
  static constexpr char codes[] = "ARNDCQEGHILKMFPSTWYVUO*X";
  for (std::size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i)
    if (a == names[i]) return codes[i];
  return 0;
}

/// Offset, within the spliced transcript of `segs`, of the first base (in transcription order)
/// of `pos`; -1 when no segment contains it.
inline std::int64_t transcript_offset(const std::vector<location_segment>& segs,
                                      const location_segment& pos) {
  std::int64_t acc = 0;
  for (const auto& s : segs) {
    if (s.strand > 0 && pos.start >= s.start && pos.start <= s.end) return acc + (pos.start - s.start);
    if (s.strand < 0 && pos.end >= s.start && pos.end <= s.end) return acc + (s.end - pos.end);
    acc += s.end - s.start + 1;
  }
  return -1;
}

struct gb_pending {
  gb_feature feature;
  std::vector<location_segment> segments;
  std::size_t index = 0;  // 1-based CDS index within the record
};

}  // namespace data_detail

/// Parses an INSDC location string into segments in transcription order (complement(join(a,b))
/// gives [b-, a-]). `source`/`line` name it in format_error messages.
inline std::vector<location_segment> parse_location(std::string_view text,
                                                    std::string_view source = "<location>",
                                                    std::size_t line = 0) {
  return data_detail::location_parser(text, source, line).parse();
}

/// Parses GenBank text from a stream; `source` names it in error messages.
inline std::vector<contig> parse_genbank(std::istream& in, const std::string& source = "<stream>",
                                         const genbank_options& opt = {}) {
  using namespace data_detail;
  enum class section { outside, header, features, origin };
  line_reader lines(in, source);
  std::vector<contig> out;
  std::string line;
  section state = section::outside;

  contig cur;
  std::int64_t locus_length = 0;
  std::size_t locus_line = 0;
  std::string seq;
  bool has_origin = false;
  std::vector<gb_pending> pending;
  gb_feature feat;
  bool have_feat = false;
  std::size_t cds_count = 0;

  auto flush_feature = [&]() {
    if (!have_feat) return;
    have_feat = false;
    if (feat.skip) return;
    for (const auto& q : feat.qualifiers)
      if (q.open) fail_format(source, q.line, "qualifier /" + q.name, q.value, "a closing '\"'");
    gb_pending p;
    p.segments = parse_location(feat.location, source, feat.line);
    p.index = ++cds_count;
    p.feature = std::move(feat);
    pending.push_back(std::move(p));
  };

  auto finish_record = [&]() {
    const std::size_t end_line = lines.line();
    if (has_origin && locus_length > 0 && static_cast<std::int64_t>(seq.size()) != locus_length)
      fail_format(source, end_line, "ORIGIN sequence length of record '" + cur.id + "'",
                  std::to_string(seq.size()),
                  std::to_string(locus_length) + " bp as on the LOCUS line " + std::to_string(locus_line));
    cur.length = locus_length > 0 ? locus_length : static_cast<std::int64_t>(seq.size());
    for (auto& p : pending) {
      const auto& f = p.feature;
      std::int64_t lo = p.segments.front().start, hi = p.segments.front().end;
      bool partial = false;
      for (const auto& s : p.segments) {
        lo = std::min(lo, s.start);
        hi = std::max(hi, s.end);
        partial = partial || s.partial_low || s.partial_high;
      }
      if ((cur.length > 0 || has_origin) && hi > cur.length)
        fail_format(source, f.line, "CDS location", f.location,
                    "coordinates within 1.." + std::to_string(cur.length) + " (record '" + cur.id + "')");
      int strand = p.segments.front().strand;
      for (const auto& s : p.segments)
        if (s.strand != strand)
          fail_format(source, f.line, "CDS location", f.location, "all segments on one strand");

      gene g;
      g.contig = cur.id;
      g.start = lo;
      g.end = hi;
      g.strand = strand;
      g.partial = partial;
      bool pseudo = false;
      std::int64_t codon_start = 1, table = 11;
      std::size_t table_line = f.line;
      for (const auto& q : f.qualifiers) {
        if (q.name == "locus_tag") {
          if (g.id.empty()) g.id = std::string(trim(q.value));
        } else if (q.name == "protein_id") {
          if (g.protein_id.empty()) g.protein_id = std::string(trim(q.value));
        } else if (q.name == "gene") {
          if (g.name.empty()) g.name = std::string(trim(q.value));
        } else if (q.name == "product") {
          if (g.product.empty()) g.product = std::string(trim(q.value));
        } else if (q.name == "EC_number") {
          const auto v = trim(q.value);
          if (!v.empty()) g.ec_numbers.emplace_back(v);
        } else if (q.name == "translation") {
          append_translation(g.protein, q.value, source, q.line, "qualifier /translation");
          if (!g.protein.empty() && g.protein.back() == '*') g.protein.pop_back();
        } else if (q.name == "pseudo" || q.name == "pseudogene") {
          pseudo = true;
        } else if (q.name == "codon_start") {
          if (!parse_int(trim(q.value), codon_start) || codon_start < 1 || codon_start > 3)
            fail_format(source, q.line, "qualifier /codon_start", q.value, "1, 2 or 3");
        } else if (q.name == "transl_table") {
          if (!parse_int(trim(q.value), table) || table < 1)
            fail_format(source, q.line, "qualifier /transl_table", q.value, "an NCBI table number");
          table_line = q.line;
        }
      }
      if (pseudo && g.protein.empty() && !opt.keep_pseudo) continue;
      if (g.protein.empty() && has_origin && opt.translate_missing && !pseudo) {
        if (table != 11 && table != 1 && table != 4)
          fail_format(source, table_line, "qualifier /transl_table", std::to_string(table),
                      "11, 1 or 4 (the tables genlm translates)");
        std::string dna = location_sequence(seq, p.segments);
        const auto skip = static_cast<std::size_t>(codon_start - 1);
        dna.erase(0, std::min(skip, dna.size()));
        // As translate_cds(), but the terminal stop is dropped only after /transl_except.
        g.protein = translate(dna, static_cast<int>(table));
        if (codon_start == 1 && !five_prime_partial(p.segments) && !g.protein.empty() &&
            is_start_codon(std::string_view(dna).substr(0, 3), static_cast<int>(table)))
          g.protein[0] = 'M';
        // /transl_except=(pos:a..b,aa:Sec): amino acids the genetic code does not give.
        for (const auto& q : f.qualifiers) {
          if (q.name != "transl_except") continue;
          std::string v(trim(q.value));
          const std::size_t pp = v.find("pos:"), ap = v.find(",aa:");
          if (v.size() < 2 || v.front() != '(' || v.back() != ')' || pp != 1 || ap == std::string::npos)
            fail_format(source, q.line, "qualifier /transl_except", q.value, "(pos:LOCATION,aa:XXX)");
          const auto where = parse_location(std::string_view(v).substr(5, ap - 5), source, q.line);
          const char aa = three_letter_aa(trim(std::string_view(v).substr(ap + 4, v.size() - ap - 5)));
          if (aa == 0)
            fail_format(source, q.line, "qualifier /transl_except amino acid", q.value,
                        "a three-letter code such as Sec, or TERM/OTHER");
          const std::int64_t off = transcript_offset(p.segments, where.front()) - (codon_start - 1);
          if (off < 0) continue;
          const auto idx = static_cast<std::size_t>(off / 3);
          if (idx < g.protein.size()) g.protein[idx] = aa;
        }
        if (!g.protein.empty() && g.protein.back() == '*') g.protein.pop_back();
      }
      if (g.id.empty()) g.id = !g.protein_id.empty() ? g.protein_id : g.name;
      if (g.id.empty()) g.id = cur.id + "_" + std::to_string(p.index);
      cur.genes.push_back(std::move(g));
    }
    sort_genes(cur);
    out.push_back(std::move(cur));
    cur = contig{};
    locus_length = 0;
    seq.clear();
    has_origin = false;
    pending.clear();
    cds_count = 0;
    state = section::outside;
  };

  while (lines.next(line)) {
    const std::string_view l = line;
    if (state == section::outside) {
      if (trim(l).empty()) continue;
      if (!starts_with(l, "LOCUS"))
        fail_format(source, lines.line(), "GenBank record start", l, "a 'LOCUS' line");
      const auto tok = tokens(l);
      if (tok.size() < 2 || tok[0] != "LOCUS")
        fail_format(source, lines.line(), "LOCUS line", l, "'LOCUS <name> <length> bp ...'");
      cur.id = std::string(tok[1]);
      locus_line = lines.line();
      locus_length = 0;
      if (tok.size() >= 4 && (tok[3] == "bp" || tok[3] == "aa")) {
        std::int64_t n = 0;
        if (!parse_int(tok[2], n) || n < 0)
          fail_format(source, lines.line(), "LOCUS length", tok[2], "a base count");
        locus_length = n;
      }
      state = section::header;
      continue;
    }
    if (!l.empty() && l[0] != ' ' && l[0] != '\t') {
      // A top-level keyword: ends the feature table and any ORIGIN block.
      flush_feature();
      if (starts_with(l, "//")) {
        finish_record();
        continue;
      }
      if (starts_with(l, "LOCUS"))
        fail_format(source, lines.line(), "record '" + cur.id + "'", l,
                    "'//' ending the record before the next LOCUS");
      if (starts_with(l, "FEATURES")) {
        state = section::features;
      } else if (starts_with(l, "ORIGIN")) {
        state = section::origin;
        has_origin = true;
      } else {
        state = section::header;
      }
      continue;
    }
    if (state == section::header) continue;
    if (state == section::origin) {
      std::string_view t = trim(l);
      if (t.empty()) continue;
      std::size_t k = 0;
      while (k < t.size() && is_digit(t[k])) ++k;
      if (k > 0) {
        std::int64_t pos = 0;
        parse_int(t.substr(0, k), pos);
        if (pos != static_cast<std::int64_t>(seq.size()) + 1)
          fail_format(source, lines.line(), "ORIGIN position", t.substr(0, k),
                      std::to_string(seq.size() + 1) + " (bases read so far + 1)");
      }
      for (char c : t.substr(k)) {
        if (is_space(c)) continue;
        if (!is_alpha(c))
          fail_format(source, lines.line(), "ORIGIN sequence", std::string(1, c), "nucleotide letters");
        seq.push_back(c);
      }
      continue;
    }
    // Feature table line.
    if (trim(l).empty()) continue;
    if (l.size() > 5 && l.substr(0, 5) == "     " && l[5] != ' ') {
      std::size_t e = 5;
      while (e < l.size() && !is_space(l[e])) ++e;
      if (!is_feature_key(l.substr(5, e - 5)))
        fail_format(source, lines.line(), "feature key (column 6)", l.substr(5, e - 5),
                    "a feature key such as CDS or gene, or a qualifier /name=... indented 21 columns");
      flush_feature();
      feat = gb_feature{};
      feat.key = std::string(l.substr(5, e - 5));
      feat.location = std::string(trim(l.substr(e)));
      feat.line = lines.line();
      feat.skip = feat.key != "CDS";
      have_feat = true;
      continue;
    }
    if (!have_feat)
      fail_format(source, lines.line(), "feature table", l, "a feature key line (5 spaces, then the key)");
    if (feat.skip) continue;
    const std::string_view t = trim(l);
    if (!feat.qualifiers.empty() && feat.qualifiers.back().open) {
      auto& q = feat.qualifiers.back();
      if (append_quoted(q, t, false)) q.open = false;
      continue;
    }
    if (t.front() == '/') {
      gb_qualifier q;
      q.line = lines.line();
      const std::size_t eq = t.find('=');
      q.name = std::string(t.substr(1, eq == std::string_view::npos ? std::string_view::npos : eq - 1));
      if (eq != std::string_view::npos) {
        q.has_value = true;
        const std::string_view v = t.substr(eq + 1);
        if (!v.empty() && v.front() == '"') {
          q.quoted = true;
          q.open = !append_quoted(q, v.substr(1), true);
        } else {
          q.value = std::string(v);
        }
      }
      feat.qualifiers.push_back(std::move(q));
      continue;
    }
    if (feat.qualifiers.empty()) {
      feat.location += t;  // location continued on the next line
    } else {
      auto& q = feat.qualifiers.back();  // unquoted value continued (lenient)
      if (q.quoted || !q.has_value)      // ... but a closed quoted value or a flag is complete
        fail_format(source, lines.line(), "feature table line", t,
                    "a qualifier /name=... or a feature key (/" + q.name + " on line " + std::to_string(q.line) +
                        " is already complete)");
      q.value.push_back(' ');
      q.value += t;
    }
  }
  if (state != section::outside)
    fail_format(source, lines.line(), "record '" + cur.id + "'", "end of file", "'//' ending the record");
  return out;
}

/// Reads a GenBank file (.gbk/.gb/.gbff).
inline std::vector<contig> read_genbank(const std::filesystem::path& path, const genbank_options& opt = {}) {
  auto in = data_detail::open_input(path);
  return parse_genbank(in, path.string(), opt);
}

}  // namespace genlm
