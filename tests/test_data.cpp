// Tests of the genome/data input side: FASTA, translation, GenBank, GFF3, Prodigal, contig
// tables, windows/stitching, the stand-in protein featuriser, protein embeddings (.npy + ids,
// safetensors, built-in features) and the simulation's size checks.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <typeinfo>
#include <vector>

#include "genlm/data/contig_table.hpp"
#include "genlm/data/dataset.hpp"
#include "genlm/data/fasta.hpp"
#include "genlm/data/featurizer.hpp"
#include "genlm/data/genbank.hpp"
#include "genlm/data/genome.hpp"
#include "genlm/data/gff.hpp"
#include "genlm/data/simulate.hpp"
#include "genlm/io/npy.hpp"
#include "genlm/io/safetensors.hpp"

#ifndef GENLM_FIXTURE_DIR
#define GENLM_FIXTURE_DIR "tests/fixtures"
#endif

namespace {

using Catch::Matchers::Contains;

std::filesystem::path fixture(const std::string& name) {
  return std::filesystem::path(GENLM_FIXTURE_DIR) / "data" / name;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

std::string to_crlf(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out.push_back('\r');
    out.push_back(c);
  }
  return out;
}

std::vector<genlm::fasta_record> fasta_str(const std::string& text, const std::string& name = "x.fa",
                                           const genlm::fasta_options& opt = {}) {
  std::istringstream in(text);
  return genlm::parse_fasta(in, name, opt);
}
std::vector<genlm::contig> gbk_str(const std::string& text, const genlm::genbank_options& opt = {}) {
  std::istringstream in(text);
  return genlm::parse_genbank(in, "bad.gbk", opt);
}
std::vector<genlm::contig> gff_str(const std::string& text) {
  std::istringstream in(text);
  return genlm::parse_gff(in, "bad.gff");
}
std::vector<genlm::contig> faa_str(const std::string& text) {
  std::istringstream in(text);
  return genlm::parse_prodigal_faa(in, "bad.faa");
}
std::vector<genlm::contig_entry> table_str(const std::string& text) {
  std::istringstream in(text);
  return genlm::parse_contig_table(in, "ct.tsv");
}

const genlm::gene& find_gene(const std::vector<genlm::contig>& g, const std::string& id) {
  for (const auto& c : g)
    for (const auto& x : c.genes)
      if (x.id == id) return x;
  FAIL("gene " << id << " not found");
  throw std::logic_error("unreachable");
}

// Removes every /translation qualifier (with its continuation lines) from GenBank text.
std::string strip_translations(const std::string& text) {
  std::istringstream in(text);
  std::string line, out;
  bool skipping = false;
  while (std::getline(in, line)) {
    if (skipping) {
      if (line.find('"') != std::string::npos) skipping = false;
      continue;
    }
    const auto pos = line.find("/translation=\"");
    if (pos != std::string::npos && line.compare(0, pos, std::string(pos, ' ')) == 0) {
      const std::string rest = line.substr(pos + 14);
      skipping = rest.find('"') == std::string::npos;
      continue;
    }
    out += line;
    out += '\n';
  }
  return out;
}

// A file name in the temp directory unique to this process and call.
std::filesystem::path temp_path(const std::string& name) {
  static std::uint64_t counter = 0;
  const auto tag = std::to_string(std::random_device{}()) + "_" + std::to_string(++counter);
  return std::filesystem::temp_directory_path() / ("genlm_test_data_" + tag + "_" + name);
}

// Temp files removed when the scope ends (also when a REQUIRE fails).
struct temp_files {
  std::vector<std::filesystem::path> paths;
  std::filesystem::path add(const std::string& name) { return paths.emplace_back(temp_path(name)); }
  std::filesystem::path text(const std::string& name, const std::string& content) {
    const auto p = add(name);
    std::ofstream out(p, std::ios::binary);
    out << content;
    return p;
  }
  ~temp_files() {
    std::error_code ec;
    for (const auto& p : paths) std::filesystem::remove(p, ec);
  }
};

// The message of the E thrown by f; a "\x01..." marker when f throws nothing or something else.
template <class E, class F>
std::string thrown_message(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("\x01wrong exception type: ") + typeid(e).name() + ": " + e.what();
  }
  return "\x01no exception";
}

}  // namespace

// Checks that the expression throws E (or a subclass) with a message the matcher accepts.
#define CHECK_ERROR(E, matcher, ...)                          \
  CHECK_THAT(thrown_message<E>([&] { (void)(__VA_ARGS__); }), \
             !Catch::Matchers::StartsWith("\x01") && (matcher))
// Checks that the expression throws E (or a subclass).
#define CHECK_THROWS_TYPE(E, ...) \
  CHECK_THAT(thrown_message<E>([&] { (void)(__VA_ARGS__); }), !Catch::Matchers::StartsWith("\x01"))

namespace {

const char* const gb_head =
    "LOCUS       T1                        60 bp    DNA     linear   BCT 01-JAN-2024\n"
    "FEATURES             Location/Qualifiers\n";
const char* const gb_origin =
    "ORIGIN\n"
    "        1 atggcctaag gtgaaataaa ttgaaataag ctgaaataaa attgaataaa atgaaataaa\n"
    "//\n";

}  // namespace

// ---------------------------------------------------------------------------------------------
// FASTA

TEST_CASE("fasta: multi-record, wrapped, CRLF, description, stop stripped", "[data][fasta]") {
  const std::string text =
      "; old-style comment\n"
      ">p1 first protein  [org=E. coli]\n"
      "MKV\n"
      "LLA*\n"
      "\n"
      ">p2\n"
      "mk v*\n"
      ">dna1 a chromosome\n"
      "ACGTACGT\n"
      "acgtNNNN\n";
  for (const auto& t : {text, to_crlf(text)}) {
    const auto r = fasta_str(t);
    REQUIRE(r.size() == 3);
    CHECK(r[0].id == "p1");
    CHECK(r[0].description == "first protein  [org=E. coli]");
    CHECK(r[0].sequence == "MKVLLA");
    CHECK(r[0].line == 2);
    CHECK(r[1].id == "p2");
    CHECK(r[1].description.empty());
    CHECK(r[1].sequence == "mkv");
    CHECK(r[2].sequence == "ACGTACGTacgtNNNN");
    CHECK(r[2].line == 8);
  }
  genlm::fasta_options keep;
  keep.strip_trailing_stop = false;
  CHECK(fasta_str(">a\nMK*\n", "x.fa", keep)[0].sequence == "MK*");
  CHECK(fasta_str("").empty());
}

TEST_CASE("fasta: errors name file and line", "[data][fasta][errors]") {
  CHECK_ERROR(genlm::format_error, Contains("x.fa:3") && Contains("empty") && Contains("non-empty sequence"),
              fasta_str(">a\nMKV\n>empty desc\n>c\nMK\n"));
  CHECK_ERROR(genlm::format_error, Contains("x.fa:3"), fasta_str(">a\nMKV\n>last\n\n"));
  CHECK_ERROR(genlm::format_error, Contains("x.fa:1"), fasta_str(">a\n*\n"));
  CHECK_ERROR(genlm::format_error, Contains("x.fa:1") && Contains("'MKV'") && Contains("'>' header"),
              fasta_str("MKV\n>a\nMK\n"));
  CHECK_ERROR(genlm::format_error, Contains("x.fa:3") && Contains("saw '1'"), fasta_str(">a\nMK\nMK1V\n"));
  CHECK_ERROR(genlm::format_error, Contains("x.fa:1") && Contains("FASTA header"), fasta_str(">\nMK\n"));
  genlm::fasta_options allow;
  allow.allow_empty = true;
  CHECK(fasta_str(">a\n>b\nM\n", "x.fa", allow).size() == 2);
  CHECK_THROWS_TYPE(genlm::error, genlm::read_fasta(fixture("does_not_exist.fa")));
}

TEST_CASE("fasta: write/read round trip and index", "[data][fasta]") {
  std::vector<genlm::fasta_record> recs = {{"a", "desc one", std::string(130, 'M'), 0}, {"b", "", "ACGT", 0}};
  std::ostringstream os;
  genlm::write_fasta(os, recs, 60);
  const std::string s = os.str();
  CHECK(s.substr(0, 13) == ">a desc one\nM");
  const auto back = fasta_str(s);
  REQUIRE(back.size() == 2);
  CHECK(back[0].sequence == recs[0].sequence);
  CHECK(back[0].description == "desc one");
  CHECK(back[1].sequence == "ACGT");
  std::ostringstream os2;
  genlm::write_fasta(os2, recs, 0);
  CHECK(os2.str().find(std::string(130, 'M') + "\n") != std::string::npos);

  const auto tmp = temp_path("roundtrip.fa");
  genlm::write_fasta(tmp, recs);
  CHECK(genlm::read_fasta(tmp).size() == 2);
  std::filesystem::remove(tmp);

  std::ostringstream bad;
  CHECK_THROWS_TYPE(genlm::value_error, genlm::write_fasta(bad, {{"a b", "", "M", 0}}));
  CHECK_THROWS_TYPE(genlm::value_error, genlm::write_fasta(bad, {{"", "", "M", 0}}));

  const auto idx = genlm::protein_index(back);
  CHECK(idx.at("b") == "ACGT");
  CHECK_ERROR(genlm::value_error, Contains("'a'") && Contains("1") && Contains("3"),
              genlm::protein_index(fasta_str(">a\nM\n>a\nK\n")));
}

// ---------------------------------------------------------------------------------------------
// Translation

TEST_CASE("translation: table 11, CDS starts, stops, ambiguity", "[data][translate]") {
  CHECK(genlm::translate("ATGGCCTAAGGG") == "MA*G");
  CHECK(genlm::translate("ATGGC") == "M");  // trailing partial codon ignored
  CHECK(genlm::translate("augGCCuaa") == "MA*");
  // Alternative start codons read as M at position 1 of a CDS, but not inside it.
  CHECK(genlm::translate_cds("GTGGTGTAA") == "MV");
  CHECK(genlm::translate_cds("TTGTTGTGA") == "ML");
  CHECK(genlm::translate_cds("CTGCTGTAG") == "ML");
  CHECK(genlm::translate_cds("ATTATT") == "MI");
  CHECK(genlm::translate_cds("ATGTAAGCC") == "M*A");  // internal stop kept
  CHECK(genlm::translate_cds("GCCGCC") == "AA");      // not a start codon: unchanged
  CHECK(genlm::translate_cds("GTGGTGTAA", 11, false) == "VV");
  CHECK(genlm::translate_cds("ATTGCC", 1) == "IA");  // ATT is no start in table 1
  CHECK(genlm::translate("TGA", 4) == "W");
  CHECK(genlm::translate("TGA", 11) == "*");
  CHECK(genlm::is_start_codon("GTG"));
  CHECK_FALSE(genlm::is_start_codon("GCG"));
  CHECK_FALSE(genlm::is_start_codon("NTG"));
  CHECK(genlm::translate_codon("GCN") == 'A');
  CHECK(genlm::translate_codon("TTR") == 'L');
  CHECK(genlm::translate_codon("YTA") == 'L');
  CHECK(genlm::translate_codon("ATH") == 'I');
  CHECK(genlm::translate_codon("RAY") == 'X');
  CHECK(genlm::translate_codon("NNN") == 'X');
  CHECK(genlm::translate_codon("A-G") == 'X');
  CHECK(genlm::translate_codon("TAR") == '*');
  CHECK_THROWS_TYPE(genlm::value_error, genlm::translate_codon("AT"));
  CHECK_ERROR(genlm::value_error, Contains("saw 2"), genlm::translate("ATG", 2));
  // All 64 codons of table 11.
  const std::string bases = "TCAG";
  std::string all;
  for (char a : bases)
    for (char b : bases)
      for (char c : bases) all += genlm::translate_codon(std::string{a, b, c});
  CHECK(all == "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG");
}

TEST_CASE("translation: reverse complement", "[data][translate]") {
  CHECK(genlm::reverse_complement("ATGCCG") == "CGGCAT");
  CHECK(genlm::reverse_complement("acgtN") == "Nacgt");
  CHECK(genlm::reverse_complement("RYKMBVDHSW") == "WSDHBVKMRY");
  CHECK(genlm::reverse_complement("AU-") == "-AT");
  CHECK(genlm::reverse_complement(genlm::reverse_complement("GATTACAnnRy")) == "GATTACAnnRy");
}

// ---------------------------------------------------------------------------------------------
// GenBank

TEST_CASE("genbank: locations", "[data][genbank]") {
  auto s = genlm::parse_location("complement(join(1..3,7..9))");
  REQUIRE(s.size() == 2);
  CHECK(s[0].start == 7);
  CHECK(s[0].end == 9);
  CHECK(s[0].strand == -1);
  CHECK(s[1].start == 1);
  CHECK(s[1].strand == -1);
  auto s2 = genlm::parse_location("join(complement(7..9),complement(1..3))");
  REQUIRE(s2.size() == 2);
  CHECK(s2[0].start == 7);
  CHECK(s2[1].end == 3);
  auto p = genlm::parse_location("<1..>90");
  CHECK(p[0].partial_low);
  CHECK(p[0].partial_high);
  auto one = genlm::parse_location("5");
  CHECK(one[0].start == 5);
  CHECK(one[0].end == 5);
  CHECK(genlm::parse_location("order(1..2, 4..5)").size() == 2);
  CHECK(genlm::parse_location("join(1..2,\n   4..5)").size() == 2);
  for (const char* bad : {"", "1..", "join(1..3", "ACC.1:1..3", "5^6", "9..3", "complement(1..3", "0..5",
                          "1..3)", "foo(1..3)"}) {
    CAPTURE(bad);
    CHECK_ERROR(genlm::format_error, Contains("f.gbk:12") && Contains("CDS location"),
                genlm::parse_location(bad, "f.gbk", 12));
  }
}

TEST_CASE("genbank: hand-made fixture", "[data][genbank]") {
  const auto g = genlm::read_genbank(fixture("tiny.gbk"));
  REQUIRE(g.size() == 2);
  CHECK(g[0].id == "TINY1");
  CHECK(g[0].length == 300);
  REQUIRE(g[0].genes.size() == 7);  // TA_0006 (/pseudo, no /translation) is skipped
  std::vector<std::string> ids;
  for (const auto& x : g[0].genes) ids.push_back(x.id);
  CHECK(ids ==
        std::vector<std::string>{"TA_0001", "TA_0002", "TA_0003", "TA_0004", "TA_0005", "pseG", "TINY1_8"});
  for (std::size_t i = 1; i < g[0].genes.size(); ++i) CHECK(g[0].genes[i - 1].start <= g[0].genes[i].start);

  const auto& a = find_gene(g, "TA_0001");
  CHECK(a.contig == "TINY1");
  CHECK(a.start == 10);
  CHECK(a.end == 45);
  CHECK(a.strand == 1);
  CHECK(a.name == "tgaA");
  CHECK(a.protein_id == "TP_0001.1");
  CHECK(a.ec_numbers == std::vector<std::string>{"2.7.2.4", "1.1.1.3"});
  CHECK(a.product == "bifunctional aspartokinase/homoserine dehydrogenase");  // multi-line
  CHECK(a.protein == "MTTRSFPCRRV");                                          // multi-line translation

  const auto& b = find_gene(g, "TA_0002");  // complement, GTG start, translated from ORIGIN
  CHECK(b.strand == -1);
  CHECK(b.start == 60);
  CHECK(b.end == 95);
  CHECK(b.protein == "MMEQGRCLRLE");

  const auto& c = find_gene(g, "TA_0003");  // join, TTG start, GCN codon -> A
  CHECK(c.start == 110);
  CHECK(c.end == 160);
  CHECK(c.strand == 1);
  CHECK(c.ec_numbers == std::vector<std::string>{"3.1.-.-"});
  CHECK(c.protein == "MDRCTRAPASEKL");

  const auto& d = find_gene(g, "TA_0004");  // complement(join(...)) over two lines
  CHECK(d.strand == -1);
  CHECK(d.start == 170);
  CHECK(d.end == 220);
  CHECK(d.protein == "MYLPPDKSMRSVG");

  const auto& e = find_gene(g, "TA_0005");  // <229..262, codon_start=2: GTG stays V
  CHECK(e.partial);
  CHECK(e.start == 229);
  CHECK(e.protein == "VAAQYAKTIG");

  CHECK(find_gene(g, "pseG").protein == "MKVL");  // /pseudo with /translation is kept
  CHECK(find_gene(g, "TINY1_8").protein == "MTVAS");

  // Record 2: no ORIGIN, so no translation; '*' stripped from /translation; protein_id as id.
  CHECK(g[1].id == "TINY2");
  CHECK(g[1].length == 120);
  REQUIRE(g[1].genes.size() == 2);
  CHECK(g[1].genes[0].id == "TB_0002");
  CHECK(g[1].genes[0].protein.empty());
  CHECK(g[1].genes[0].partial);
  CHECK(g[1].genes[0].strand == -1);
  CHECK(g[1].genes[1].id == "TP_0003.1");
  CHECK(g[1].genes[1].protein == "MAAAAAAAA");
  CHECK(genlm::count_genes(g) == 9);

  // CRLF gives the same result.
  const auto crlf = gbk_str(to_crlf(slurp(fixture("tiny.gbk"))));
  REQUIRE(crlf.size() == 2);
  REQUIRE(crlf[0].genes.size() == 7);
  for (std::size_t i = 0; i < 7; ++i) {
    CHECK(crlf[0].genes[i].id == g[0].genes[i].id);
    CHECK(crlf[0].genes[i].protein == g[0].genes[i].protein);
    CHECK(crlf[0].genes[i].product == g[0].genes[i].product);
  }

  genlm::genbank_options opt;
  opt.keep_pseudo = true;
  opt.translate_missing = false;
  std::istringstream in(slurp(fixture("tiny.gbk")));
  const auto g2 = genlm::parse_genbank(in, "tiny.gbk", opt);
  CHECK(g2[0].genes.size() == 8);
  CHECK(find_gene(g2, "TA_0006").protein.empty());
  CHECK(find_gene(g2, "TA_0002").protein.empty());
  CHECK(find_gene(g2, "TA_0001").protein == "MTTRSFPCRRV");
}

TEST_CASE("genbank: real E. coli K-12 excerpt", "[data][genbank][real]") {
  const auto g = genlm::read_genbank(fixture("ecoli_excerpt.gbk"));
  REQUIRE(g.size() == 1);
  CHECK(g[0].id == "NC_000913");
  CHECK(g[0].length == 27240);
  REQUIRE(g[0].genes.size() == 30);
  const auto& thrL = g[0].genes.front();
  CHECK(thrL.id == "b0001");
  CHECK(thrL.name == "thrL");
  CHECK(thrL.start == 190);
  CHECK(thrL.end == 255);
  CHECK(thrL.strand == 1);
  CHECK(thrL.protein == "MKRISTTITTTITITTGNGAG");
  CHECK(thrL.protein_id == "NP_414542.1");
  const auto& thrA = find_gene(g, "b0002");
  CHECK(thrA.name == "thrA");
  CHECK(thrA.ec_numbers == std::vector<std::string>{"2.7.2.4", "1.1.1.3"});
  CHECK(thrA.product ==
        "bifunctional: aspartokinase I (N-terminal); homoserine dehydrogenase I (C-terminal)");
  CHECK(thrA.protein.size() == 820);
  const auto& yaaA = find_gene(g, "b0006");
  CHECK(yaaA.strand == -1);
  CHECK(yaaA.start == 5683);
  CHECK(yaaA.end == 6459);
  std::size_t minus = 0;
  for (const auto& x : g[0].genes) {
    minus += x.strand < 0;
    CHECK(x.protein.size() > 0);
    CHECK(x.protein.front() == 'M');
    CHECK(x.protein.find('*') == std::string::npos);
  }
  CHECK(minus == 11);
  CHECK(g[0].genes.back().id == "b0029");

  // Translating every CDS from ORIGIN (no /translation) reproduces NCBI's translations, including
  // the GTG start of yaaX (b0005) and the TTG start of complement rpsT (b0023).
  const auto t = gbk_str(strip_translations(slurp(fixture("ecoli_excerpt.gbk"))));
  REQUIRE(t.size() == 1);
  REQUIRE(t[0].genes.size() == 30);
  for (std::size_t i = 0; i < 30; ++i) {
    CAPTURE(g[0].genes[i].id);
    CHECK(t[0].genes[i].id == g[0].genes[i].id);
    CHECK(t[0].genes[i].protein == g[0].genes[i].protein);
  }
  CHECK(find_gene(t, "b0005").protein.substr(0, 5) == "MKKMQ");
  CHECK(find_gene(t, "b0023").protein.substr(0, 5) == "MANIK");
}

TEST_CASE("genbank: transl_except", "[data][genbank]") {
  // Codon 3 (TAA at 7..9) becomes selenocysteine.
  const std::string text = std::string(gb_head) +
                           "     CDS             1..9\n"
                           "                     /locus_tag=\"S1\"\n"
                           "                     /transl_except=(pos:7..9,aa:Sec)\n" +
                           gb_origin;
  CHECK(gbk_str(text)[0].genes[0].protein == "MAU");  // ATG GCC TAA: the stop reads as Sec
  const std::string minus = std::string(gb_head) +
                            "     CDS             complement(11..19)\n"
                            "                     /transl_except=(pos:complement(14..16),aa:Trp)\n" +
                            gb_origin;
  // 11..19 = gtgaaataa, reverse complement ttatttcac: TTA TTT CAC -> L F H; codon 2 (14..16) -> W
  CHECK(gbk_str(minus)[0].genes[0].protein == "LWH");
}

TEST_CASE("genbank: errors name file, line, field, seen and expected", "[data][genbank][errors]") {
  const std::string head = gb_head;
  const std::string origin = gb_origin;
  auto cds = [&](const std::string& body) { return head + body + origin; };
  // 1: not a LOCUS line
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:2") && Contains("LOCUS"), gbk_str("\nDEFINITION  x\n"));
  // 2: truncated file (no //)
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:3") && Contains("'//'") && Contains("end of file"),
              gbk_str(head + "     CDS             1..9\n"));
  // 3: next LOCUS before //
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:3") && Contains("'//'"), gbk_str(head + head + origin));
  // 4: unterminated quoted value, reported at the qualifier's line
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:5") && Contains("/product") && Contains("closing"),
              gbk_str(cds("     CDS             1..9\n"
                          "                     /locus_tag=\"x\"\n"
                          "                     /product=\"never closed\n")));
  // 5: malformed location at the CDS line
  CHECK_ERROR(genlm::format_error,
              Contains("bad.gbk:4") && Contains("CDS location") && Contains("saw 'join(1..3,7..'"),
              gbk_str(cds("     gene            1..9\n"
                          "     CDS             join(1..3,7..\n"
                          "                     /locus_tag=\"x\"\n")));
  // 6: coordinates past the sequence end
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:3") && Contains("1..60"),
              gbk_str(cds("     CDS             1..61\n")));
  // 7: ORIGIN length differs from LOCUS length
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:4") && Contains("saw '60'") && Contains("61 bp"),
              gbk_str("LOCUS       T1                        61 bp    DNA\n" + origin));
  // 8: ORIGIN positions out of step (a lost line)
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:4") && Contains("saw '121'") && Contains("61"),
              gbk_str("LOCUS       T1                       120 bp    DNA\nORIGIN\n"
                      "        1 aaaaaaaaaa aaaaaaaaaa aaaaaaaaaa aaaaaaaaaa aaaaaaaaaa aaaaaaaaaa\n"
                      "      121 aaaaaaaaaa aaaaaaaaaa aaaaaaaaaa aaaaaaaaaa aaaaaaaaaa aaaaaaaaaa\n//\n"));
  // 9: bad character in ORIGIN
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:3") && Contains("saw '!'"),
              gbk_str("LOCUS       T1                         3 bp    DNA\nORIGIN\n        1 ac!\n//\n"));
  // 10: bad /codon_start
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:4") && Contains("/codon_start") && Contains("saw '4'"),
              gbk_str(cds("     CDS             1..9\n                     /codon_start=4\n")));
  // 11: a table genlm cannot translate, needed because /translation is missing
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:4") && Contains("/transl_table") && Contains("saw '5'"),
              gbk_str(cds("     CDS             1..9\n                     /transl_table=5\n")));
  // ... but fine when /translation is given
  CHECK(gbk_str(cds("     CDS             1..9\n                     /transl_table=5\n"
                    "                     /translation=\"MA\"\n"))[0]
            .genes[0]
            .protein == "MA");
  // 12: non-letters in /translation
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:4") && Contains("/translation"),
              gbk_str(cds("     CDS             1..9\n                     /translation=\"MK1\"\n")));
  // 13: segments on both strands
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:3") && Contains("one strand"),
              gbk_str(cds("     CDS             join(1..3,complement(7..9))\n")));
  // 14: bad LOCUS length
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:1") && Contains("saw '12x'"),
              gbk_str("LOCUS       T1    12x bp    DNA\n//\n"));
  // 15: malformed /transl_except
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:4") && Contains("/transl_except"),
              gbk_str(cds("     CDS             1..9\n                     /transl_except=(4..6,Sec)\n")));
  CHECK_ERROR(
      genlm::format_error, Contains("bad.gbk:4") && Contains("three-letter"),
      gbk_str(cds("     CDS             1..9\n                     /transl_except=(pos:4..6,aa:Foo)\n")));
  // 16: a qualifier before any feature key
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:3") && Contains("feature key"),
              gbk_str(head + "                     /locus_tag=\"x\"\n" + origin));
  // missing file
  CHECK_THROWS_TYPE(genlm::error, genlm::read_genbank(fixture("does_not_exist.gbk")));
}

TEST_CASE("genbank: a qualifier indented like a feature key is an error", "[data][genbank][errors]") {
  // '/locus_tag' at column 6 used to start a new (skipped) feature: the CDS silently lost it.
  CHECK_ERROR(genlm::format_error,
              Contains("bad.gbk:4: feature key (column 6): saw '/locus_tag=\"X1\"'") &&
                  Contains("qualifier /name=... indented 21 columns"),
              gbk_str(std::string(gb_head) + "     CDS             1..9\n     /locus_tag=\"X1\"\n" +
                      "                     /translation=\"MAK\"\n" + gb_origin));
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:3: feature key (column 6): saw 'CDS=1..9'"),
              gbk_str(std::string(gb_head) + "     CDS=1..9\n" + gb_origin));
  // INSDC keys with digits, quotes, hyphens are still feature keys (skipped: not CDS).
  const auto g = gbk_str(std::string(gb_head) +
                         "     5'UTR           1..3\n"
                         "     -10_signal      2..5\n"
                         "                     /note=\"x\"\n"
                         "     CDS             1..9\n"
                         "                     /locus_tag=\"X1\"\n" +
                         gb_origin);
  REQUIRE(g[0].genes.size() == 1);
  CHECK(g[0].genes[0].id == "X1");
  CHECK(g[0].genes[0].protein == "MA");
}

TEST_CASE("genbank: a line after a complete qualifier value is an error", "[data][genbank][errors]") {
  const std::string cds = std::string(gb_head) + "     CDS             1..9\n";
  // Used to give the protein MAKKKK.
  CHECK_ERROR(genlm::format_error,
              Contains("bad.gbk:6: feature table line: saw 'KKKK'") &&
                  Contains("expected a qualifier /name=... or a feature key") &&
                  Contains("/translation on line 5 is already complete"),
              gbk_str(cds + "                     /locus_tag=\"X1\"\n" + "                     /translation=\"MA\"\n" +
                      "                     KKKK\n" + gb_origin));
  // After a flag.
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:5") && Contains("saw 'stray'") && Contains("/pseudo on line 4"),
              gbk_str(cds + "                     /pseudo\n                     stray\n" + gb_origin));
  // An unquoted value continued over lines still works (joined with one space).
  const auto g = gbk_str(std::string(gb_head) +
                         "     CDS             complement(11..19)\n"
                         "                     /transl_except=(pos:complement(join(14..15,\n"
                         "                     16)),aa:Trp)\n" +
                         gb_origin);
  CHECK(g[0].genes[0].protein == "LWH");
  // So do quoted values over lines, and a location over lines.
  const auto q = gbk_str(std::string(gb_head) +
                         "     CDS             join(1..3,\n"
                         "                     4..9)\n"
                         "                     /product=\"two\n"
                         "                     lines\"\n"
                         "                     /translation=\"M\n"
                         "                     A\"\n" +
                         gb_origin);
  CHECK(q[0].genes[0].product == "two lines");
  CHECK(q[0].genes[0].protein == "MA");
}

TEST_CASE("genbank: a bad translation character is named with its residue position", "[data][genbank][errors]") {
  const std::string tr = std::string(200, 'M') + "1" + std::string(50, 'K');
  const std::string cds = std::string(gb_head) + "     CDS             1..9\n";
  const auto msg = thrown_message<genlm::format_error>(
      [&] { gbk_str(cds + "                     /translation=\"" + tr + "\"\n" + gb_origin); });
  CHECK_THAT(msg, Contains("bad.gbk:4: qualifier /translation, residue 201: saw '1', expected an amino-acid letter"));
  CHECK_THAT(msg, !Contains("MMMM"));
  // Residues are counted across continuation lines and without whitespace.
  CHECK_ERROR(genlm::format_error, Contains("bad.gbk:4") && Contains("residue 5: saw '-'"),
              gbk_str(cds + "                     /translation=\"MK V\n                     A-\"\n" + gb_origin));
}

// ---------------------------------------------------------------------------------------------
// GFF3

TEST_CASE("gff3: fixture with ##FASTA", "[data][gff]") {
  const auto g = genlm::read_gff(fixture("tiny.gff3"));
  REQUIRE(g.size() == 2);
  CHECK(g[0].id == "ctg1");
  CHECK(g[0].length == 300);
  CHECK(g[1].id == "ctg2");
  CHECK(g[1].length == 60);
  CHECK(g[1].genes.empty());
  REQUIRE(g[0].genes.size() == 6);  // pseudo=true CDS skipped
  const auto& a = find_gene(g, "GA_0001");
  CHECK(a.name == "thrA");
  CHECK(a.protein_id == "GP_0001.1");
  CHECK(a.product == "aspartokinase, homoserine dehydrogenase; bifunctional");  // %2C %3B decoded
  CHECK(a.ec_numbers == std::vector<std::string>{"2.7.2.4", "1.1.1.3"});        // eC_number, comma list
  CHECK(a.protein == "MTTRSFPCRRV");
  const auto& b = find_gene(g, "GA_0002");
  CHECK(b.strand == -1);
  CHECK(b.product == "minus strand GTG start");
  CHECK(b.protein == "MMEQGRCLRLE");
  const auto& c = find_gene(g, "GA_0003");  // two segments sharing ID
  CHECK(c.start == 110);
  CHECK(c.end == 160);
  CHECK(c.ec_numbers == std::vector<std::string>{"3.1.-.-"});
  CHECK(c.protein == "MDRCTRAPASEKL");
  const auto& d = find_gene(g, "GA_0004");  // minus-strand segments listed high first
  CHECK(d.start == 170);
  CHECK(d.end == 220);
  CHECK(d.protein == "MYLPPDKSMRSVG");
  const auto& e = find_gene(g, "cds5");  // no locus_tag: ID; phase 1 + partial=10 -> V
  CHECK(e.partial);
  CHECK(e.product == "5' partial (Prodigal-style flag)");
  CHECK(e.protein == "VAAQYAKTIG");
  CHECK(find_gene(g, "ctg1_7").protein == "MTVAS");  // attributes '.', synthesised id

  // The same proteins as the GenBank version of this sequence.
  const auto gb = genlm::read_genbank(fixture("tiny.gbk"));
  CHECK(find_gene(gb, "TA_0004").protein == d.protein);

  // Without the FASTA section there is nothing to translate from.
  std::string text = slurp(fixture("tiny.gff3"));
  const auto nf = gff_str(text.substr(0, text.find("##FASTA")));
  CHECK(find_gene(nf, "GA_0002").protein.empty());
  CHECK(nf[0].length == 300);  // from ##sequence-region
  // CRLF.
  const auto crlf = gff_str(to_crlf(text));
  CHECK(find_gene(crlf, "GA_0004").protein == d.protein);
}

TEST_CASE("gff3: attributes and translation attribute", "[data][gff]") {
  const auto g = gff_str(
      "##gff-version 3\n"
      "c%3B1\tx\tCDS\t1\t9\t.\t+\t.\tID=a;Name=nm;translation=MKV*;EC_number=1.2.3.4%2C5.6.7.8,9.9.9.9\n"
      "c%3B1\tx\tCDS\t20\t29\t.\t-\t0\tID=b;protein_id=P%25X;pseudo\n"
      "c%3B1\tx\tCDS\t40\t49\t.\t-\t0\tID=c ; product = spaced ; \n");
  REQUIRE(g.size() == 1);
  CHECK(g[0].id == "c;1");
  REQUIRE(g[0].genes.size() == 2);  // bare 'pseudo' flag skips b
  CHECK(g[0].genes[0].id == "a");
  CHECK(g[0].genes[0].name == "nm");
  CHECK(g[0].genes[0].protein == "MKV");
  CHECK(g[0].genes[0].ec_numbers == std::vector<std::string>{"1.2.3.4,5.6.7.8", "9.9.9.9"});
  CHECK(g[0].genes[1].id == "c");
  CHECK(g[0].genes[1].product == "spaced");
  CHECK(genlm::percent_decode("a%20b%2Cc") == "a b,c");
  CHECK_THROWS_TYPE(genlm::value_error, genlm::percent_decode("bad%2"));
}

TEST_CASE("gff3: errors name file and line", "[data][gff][errors]") {
  const std::string h = "##gff-version 3\n";
  CHECK_ERROR(genlm::format_error,
              Contains("bad.gff:2") && Contains("saw '7 tab-separated columns'") && Contains("9"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:2"), gff_str(h + "c x CDS 1 9 . + 0 ID=a\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:2") && Contains("start") && Contains("saw 'one'"),
              gff_str(h + "c\tx\tCDS\tone\t9\t.\t+\t0\tID=a\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:2") && Contains("end") && Contains("saw '9'"),
              gff_str(h + "c\tx\tCDS\t10\t9\t.\t+\t0\tID=a\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:2") && Contains("strand") && Contains("saw '.'"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t.\t0\tID=a\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:2") && Contains("phase") && Contains("saw '3'"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\t3\tID=a\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:2") && Contains("product") && Contains("%XX"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\t0\tID=a;product=50%ZZ\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:2") && Contains("GTF"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\t0\tgene_id \"g1\"; transcript_id \"t1\";\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:3") && Contains("'a'") && Contains("line 2"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\t0\tID=a\nc\tx\tCDS\t20\t29\t.\t-\t0\tID=a\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:2") && Contains("sequence-region"),
              gff_str(h + "##sequence-region c 1\n"));
  CHECK_ERROR(genlm::lookup_error, Contains("bad.gff:2") && Contains("saw 'c'") && Contains("##FASTA"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\t0\tID=a\n##FASTA\n>other\nACGTACGTACGT\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:2") && Contains("saw '15'") && Contains("12"),
              gff_str(h + "c\tx\tCDS\t1\t15\t.\t+\t0\tID=a\n##FASTA\n>c\nACGTACGTACGT\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:6") && Contains("unique"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\t0\tID=a\n##FASTA\n>c\nACGTACGTACGT\n>c\nAC\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:4") && Contains("non-empty"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\t0\tID=a\n##FASTA\n>c\n>d\nAC\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:2") && Contains("transl_table"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\t0\tID=a;transl_table=2\n##FASTA\n>c\nACGTACGTACGT\n"));
}

TEST_CASE("gff3: translation attribute is checked like GenBank's", "[data][gff][errors]") {
  const std::string h = "##gff-version 3\n";
  CHECK_ERROR(genlm::format_error,
              Contains("bad.gff:3: attribute translation, residue 3: saw '1', expected an amino-acid letter"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\t0\tID=a;translation=MKV\n"
                          "c\tx\tCDS\t20\t29\t.\t+\t0\tID=b;translation=MK1%2C#V\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:2") && Contains("residue 3: saw ','"),
              gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\t0\tID=a;translation=MK%2CV\n"));
  // Letters, internal '*' and a final stop are fine.
  CHECK(gff_str(h + "c\tx\tCDS\t1\t9\t.\t+\t0\tID=a;translation=mK*V*\n")[0].genes[0].protein == "mK*V");
}

TEST_CASE("gff3: CDS past the sequence length and short ##FASTA records", "[data][gff][errors]") {
  const std::string h = "##gff-version 3\n";
  // No ##FASTA: the ##sequence-region length bounds the CDS (used to be accepted).
  CHECK_ERROR(genlm::format_error,
              Contains("bad.gff:3: end (column 5) of a CDS on 'c': saw '900'") && Contains("within 1..100") &&
                  Contains("##sequence-region on line 2"),
              gff_str(h + "##sequence-region c 1 100\nc\tx\tCDS\t1\t900\t.\t+\t0\tID=a\n"));
  // ... reported at the offending segment of a multi-line CDS.
  CHECK_ERROR(genlm::format_error, Contains("bad.gff:4") && Contains("saw '101'") && Contains("1..100"),
              gff_str(h + "##sequence-region c 1 100\nc\tx\tCDS\t1\t9\t.\t+\t0\tID=a\n"
                          "c\tx\tCDS\t95\t101\t.\t+\t0\tID=a\n"));
  // A translation attribute does not lift the bound of the ##FASTA length.
  CHECK_ERROR(genlm::format_error,
              Contains("bad.gff:2") && Contains("saw '15'") && Contains("1..12 (the length of its ##FASTA sequence)"),
              gff_str(h + "c\tx\tCDS\t1\t15\t.\t+\t0\tID=a;translation=MKVLA\n##FASTA\n>c\nACGTACGTACGT\n"));
  // A ##FASTA sequence shorter than its ##sequence-region.
  CHECK_ERROR(genlm::format_error,
              Contains("bad.gff:5: ##FASTA sequence 'c' length: saw '9', expected at least 100 bp") &&
                  Contains("##sequence-region on line 2"),
              gff_str(h + "##sequence-region c 1 100\nc\tx\tCDS\t1\t9\t.\t+\t0\tID=a\n##FASTA\n>c\nATGAAATAA\n"));
  // Up to the end is fine, with and without ##FASTA.
  const auto ok = gff_str(h + "##sequence-region c 1 12\nc\tx\tCDS\t4\t12\t.\t+\t0\tID=a\n");
  CHECK(ok[0].length == 12);
  CHECK(ok[0].genes[0].end == 12);
  const auto okf =
      gff_str(h + "##sequence-region c 1 12\nc\tx\tCDS\t4\t12\t.\t+\t0\tID=a\n##FASTA\n>c\nAAAATGGCCTAA\n");
  CHECK(okf[0].genes[0].protein == "MA");
}

// ---------------------------------------------------------------------------------------------
// Prodigal

TEST_CASE("prodigal: protein FASTA headers give genes", "[data][prodigal]") {
  const auto g = genlm::read_prodigal_faa(fixture("prodigal.faa"));
  REQUIRE(g.size() == 2);
  CHECK(g[0].id == "contigA");
  REQUIRE(g[0].genes.size() == 3);
  const auto& a1 = g[0].genes[0];
  CHECK(a1.id == "contigA_1");
  CHECK(a1.contig == "contigA");
  CHECK(a1.start == 2);
  CHECK(a1.end == 310);
  CHECK(a1.strand == 1);
  CHECK(a1.partial);
  CHECK(a1.protein == "MKVLAAGSTWQELRRIAEEHGLSVDKTY");  // wrapped, '*' stripped
  CHECK(g[0].genes[1].strand == -1);
  CHECK_FALSE(g[0].genes[1].partial);
  CHECK(g[0].genes[2].partial);  // partial=01
  CHECK(g[0].genes[2].protein == "MQRFTNLLAVLLAGSLLAACS");
  CHECK(g[1].id == "NODE_7_length_950_cov_3.5");
  CHECK(g[1].genes[0].id == "NODE_7_length_950_cov_3.5_1");
  CHECK(g[1].genes[0].start == 120);
}

TEST_CASE("prodigal: errors name file and line", "[data][prodigal][errors]") {
  CHECK_ERROR(genlm::format_error, Contains("bad.faa:3") && Contains("strand") && Contains("saw '2'"),
              faa_str(">c_1 # 1 # 9 # 1 # ID=1_1\nMK\n>c_2 # 20 # 29 # 2 # ID=1_2\nMK\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.faa:1") && Contains("Prodigal header"),
              faa_str(">c_1 some protein\nMK\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.faa:1") && Contains("saw 'x'"),
              faa_str(">c_1 # x # 9 # 1 # ID=1_1\nMK\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.faa:1") && Contains("end"),
              faa_str(">c_1 # 10 # 9 # 1 # ID=1_1\nMK\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.faa:1") && Contains("saw 'gene'"),
              faa_str(">gene # 1 # 9 # 1 # ID=1_1\nMK\n"));
  CHECK_ERROR(genlm::format_error, Contains("bad.faa:1"), faa_str(">c_1 # 1 # 9 # 1 # ID=1_1\n*\n"));
}

TEST_CASE("read_genome recognises the format", "[data][genome]") {
  CHECK(genlm::read_genome(fixture("tiny.gbk")).size() == 2);
  CHECK(genlm::read_genome(fixture("tiny.gff3")).size() == 2);
  CHECK(genlm::read_genome(fixture("prodigal.faa")).size() == 2);
  CHECK(genlm::read_genome(fixture("ecoli_excerpt.gbk"))[0].genes.size() == 30);
  const auto tmp = temp_path("plain.fa");
  {
    std::ofstream out(tmp);
    out << "\n>p1 plain\nMKV\n";
  }
  CHECK_ERROR(genlm::format_error, Contains(tmp.string() + ":2") && Contains("Prodigal"),
              genlm::read_genome(tmp));
  std::filesystem::remove(tmp);
  CHECK_THROWS_TYPE(genlm::error, genlm::read_genome(fixture("does_not_exist.gbk")));
}

// ---------------------------------------------------------------------------------------------
// Contig table

TEST_CASE("contig table: read fixture, write, round trip", "[data][contig_table]") {
  const auto t = genlm::read_contig_table(fixture("contigs.tsv"));
  REQUIRE(t.size() == 3);
  CHECK(t[0].contig_id == "contig_0");
  REQUIRE(t[0].genes.size() == 3);
  CHECK(t[0].genes[0] == std::pair<std::string, int>{"prot_1", 1});
  CHECK(t[0].genes[1] == std::pair<std::string, int>{"prot_2", -1});
  CHECK(t[1].contig_id == "contig_1");  // CRLF line
  CHECK(t[1].genes == std::vector<std::pair<std::string, int>>{{"prot_4", -1}});
  CHECK(t[2].genes.size() == 5);

  std::ostringstream os;
  genlm::write_contig_table(os, t);
  CHECK(os.str() ==
        "contig_0\t+prot_1;-prot_2;+prot_3\ncontig_1\t-prot_4\ncontig_2\t+prot_5;+prot_6;-prot_7;-prot_8;+"
        "prot_9\n");
  const auto back = table_str(os.str());
  REQUIRE(back.size() == 3);
  CHECK(back[2].genes == t[2].genes);

  const auto tmp = temp_path("contigs.tsv");
  genlm::write_contig_table(tmp, t);
  CHECK(genlm::read_contig_table(tmp).size() == 3);
  std::filesystem::remove(tmp);

  std::ostringstream bad;
  CHECK_THROWS_TYPE(genlm::value_error, genlm::write_contig_table(bad, {{"c", {{"p", 0}}}}));
  CHECK_THROWS_TYPE(genlm::value_error, genlm::write_contig_table(bad, {{"c", {{"p;q", 1}}}}));
  CHECK_THROWS_TYPE(genlm::value_error, genlm::write_contig_table(bad, {{"c", {}}}));
  CHECK_THROWS_TYPE(genlm::value_error, genlm::write_contig_table(bad, {{"c\t1", {{"p", 1}}}}));

  // From a genome.
  const auto e = genlm::to_entry(genlm::read_genbank(fixture("ecoli_excerpt.gbk"))[0]);
  CHECK(e.contig_id == "NC_000913");
  CHECK(e.genes.size() == 30);
  CHECK(e.genes[0] == std::pair<std::string, int>{"b0001", 1});
  CHECK(e.genes[5] == std::pair<std::string, int>{"b0006", -1});
}

TEST_CASE("contig table: errors name file and line", "[data][contig_table][errors]") {
  CHECK_ERROR(genlm::format_error, Contains("ct.tsv:2") && Contains("no tab") && Contains("saw 'c1 +b;-c'"),
              table_str("c0\t+a\nc1 +b;-c\n"));
  CHECK_ERROR(genlm::format_error, Contains("ct.tsv:1") && Contains("contig id"), table_str("\t+a\n"));
  CHECK_ERROR(genlm::format_error, Contains("ct.tsv:3") && Contains("gene list") && Contains("'c1'"),
              table_str("c0\t+a\n\nc1\t\n"));
  CHECK_ERROR(genlm::format_error,
              Contains("ct.tsv:1") && Contains("gene 2") && Contains("saw 'b'") && Contains("strand sign"),
              table_str("c0\t+a;b;-c\n"));
  CHECK_ERROR(genlm::format_error, Contains("ct.tsv:1") && Contains("gene 2"), table_str("c0\t+a;;-c\n"));
  CHECK_ERROR(genlm::format_error,
              Contains("ct.tsv:1") && Contains("gene 2") && Contains("non-empty protein id"),
              table_str("c0\t+a;-\n"));
  CHECK_ERROR(genlm::format_error, Contains("ct.tsv:1") && Contains("whitespace"),
              table_str("c0\t+a;+b c\n"));
  CHECK_ERROR(genlm::format_error, Contains("ct.tsv:1") && Contains("2 tab"), table_str("c0\t+a\tx\n"));
  CHECK_ERROR(genlm::format_error, Contains("ct.tsv:2") && Contains("unique") && Contains("line 1"),
              table_str("c0\t+a\nc0\t+b\n"));
  CHECK(table_str("").empty());
  CHECK_THROWS_TYPE(genlm::error, genlm::read_contig_table(fixture("does_not_exist.tsv")));

  const genlm::contig_entry e{"c0", {{"a", 1}, {"zz", -1}}};
  const auto got = genlm::gather_proteins(e, {{"a", "MK"}, {"zz", "MV"}});
  CHECK(got == std::vector<std::string>{"MK", "MV"});
  CHECK_ERROR(genlm::lookup_error, Contains("'zz'") && Contains("'c0'"),
              genlm::gather_proteins(e, {{"a", "MK"}}));
}

// ---------------------------------------------------------------------------------------------
// Windows and stitching

TEST_CASE("windows: offsets, ids, coverage", "[data][windows]") {
  auto entry = [](std::size_t n) {
    genlm::contig_entry e;
    e.contig_id = "c";
    for (std::size_t i = 0; i < n; ++i) e.genes.emplace_back("p" + std::to_string(i), i % 2 ? -1 : 1);
    return e;
  };
  CHECK(genlm::windows(entry(0), 4, 1).empty());
  {
    const auto w = genlm::windows(entry(3), 4, 1);
    REQUIRE(w.size() == 1);
    CHECK(w[0].entry.contig_id == "c");
    CHECK(w[0].offset == 0);
    CHECK(w[0].entry.genes.size() == 3);
  }
  {
    const auto w = genlm::windows(entry(10), 4, 2);
    REQUIRE(w.size() == 4);
    std::vector<std::size_t> off;
    for (const auto& x : w) {
      off.push_back(x.offset);
      CHECK(x.entry.genes.size() == 4);
      CHECK(x.source_id == "c");
      CHECK(x.source_size == 10);
    }
    CHECK(off == std::vector<std::size_t>{0, 2, 4, 6});
    CHECK(w[0].entry.contig_id == "c:1-4");
    CHECK(w[3].entry.contig_id == "c:7-10");
    CHECK(w[3].entry.genes[0].first == "p6");
  }
  {
    const auto w = genlm::windows(entry(11), 4, 1);
    std::vector<std::size_t> off;
    for (const auto& x : w) off.push_back(x.offset);
    CHECK(off == std::vector<std::size_t>{0, 3, 6, 7});
  }
  CHECK(genlm::window_offsets(30, 30, 5) == std::vector<std::size_t>{0});
  CHECK(genlm::window_offsets(31, 30, 0) == std::vector<std::size_t>{0, 1});
  CHECK(genlm::window_offsets(60, 30, 0) == std::vector<std::size_t>{0, 30});
  CHECK_THROWS_TYPE(genlm::value_error, genlm::windows(entry(5), 4, 4));
  CHECK_THROWS_TYPE(genlm::value_error, genlm::windows(entry(5), 0, 0));

  // Every gene of every contig is covered; windows of a genome.
  const auto genome = genlm::read_genbank(fixture("tiny.gbk"));
  const auto ws = genlm::contigs_from_genome(genome, 3, 1);
  std::size_t tiny1 = 0;
  for (const auto& w : ws) {
    CHECK(w.entry.genes.size() <= 3);
    if (w.source_id == "TINY1") ++tiny1;
  }
  CHECK(tiny1 == 3);  // 7 genes, windows at 0, 2, 4
  CHECK(ws.back().source_id == "TINY2");
  CHECK(ws.back().entry.contig_id == "TINY2");
  CHECK(genlm::window_entries(ws).size() == ws.size());
  const auto gw = genlm::windows(genome[0], 3, 1);
  CHECK(gw[0].entry.genes[0].first == "TA_0001");
  CHECK(gw[0].entry.genes[1].second == -1);
}

TEST_CASE("stitch: averages overlapping windows back onto gene order", "[data][windows]") {
  genlm::contig_entry e;
  e.contig_id = "c";
  for (int i = 0; i < 10; ++i) e.genes.emplace_back("p" + std::to_string(i), 1);
  const auto w = genlm::windows(e, 4, 2);
  std::vector<std::vector<std::vector<float>>> outs;
  for (std::size_t k = 0; k < w.size(); ++k) {
    std::vector<std::vector<float>> o;
    for (std::size_t j = 0; j < w[k].entry.genes.size(); ++j)
      o.push_back({static_cast<float>(w[k].offset + j), static_cast<float>(k)});
    outs.push_back(o);
  }
  const auto s = genlm::stitch(w, outs);
  REQUIRE(s.size() == 10);
  for (std::size_t g = 0; g < 10; ++g) CHECK(s[g][0] == Approx(static_cast<double>(g)));
  CHECK(s[0][1] == Approx(0.0));  // window 0 only
  CHECK(s[2][1] == Approx(0.5));  // windows 0 and 1
  CHECK(s[7][1] == Approx(2.5));  // windows 2 and 3
  CHECK(s[9][1] == Approx(3.0));  // window 3 only

  auto bad = outs;
  bad[1].pop_back();
  CHECK_THROWS_TYPE(genlm::value_error, genlm::stitch(w, bad));
  bad = outs;
  bad[2][1].push_back(1.0f);
  CHECK_THROWS_TYPE(genlm::value_error, genlm::stitch(w, bad));
  CHECK_THROWS_TYPE(genlm::value_error, genlm::stitch(w, {}));
  auto gap = w;
  gap.erase(gap.begin());  // gene 0 and 1 uncovered
  auto gap_out = outs;
  gap_out.erase(gap_out.begin());
  CHECK_ERROR(genlm::value_error, Contains("no window covers"), genlm::stitch(gap, gap_out));
  // an offset whose sum with the window's size wraps around is still past the source
  auto wrap = w;
  wrap[1].offset = std::numeric_limits<std::size_t>::max() - 1;
  CHECK_ERROR(genlm::value_error, Contains("past the source's 10"), genlm::stitch(wrap, outs));

  // Several contigs at once.
  genlm::contig_entry e2{"d", {{"q0", 1}, {"q1", -1}}};
  auto all = w;
  const auto w2 = genlm::windows(e2, 4, 2);
  all.insert(all.end(), w2.begin(), w2.end());
  auto all_out = outs;
  all_out.push_back({{7.0f, 7.0f}, {8.0f, 8.0f}});
  CHECK_THROWS_TYPE(genlm::value_error, genlm::stitch(all, all_out));  // mixed sources
  const auto st = genlm::stitch_all(all, all_out);
  REQUIRE(st.size() == 2);
  CHECK(st[0].first == "c");
  CHECK(st[0].second.size() == 10);
  CHECK(st[1].first == "d");
  CHECK(st[1].second[1][0] == Approx(8.0));
}

// ---------------------------------------------------------------------------------------------
// Featuriser

namespace {
double norm(const std::vector<float>& v, std::size_t off = 0, std::size_t n = std::size_t(-1)) {
  double s = 0;
  for (std::size_t i = off; i < v.size() && i < off + n; ++i) s += static_cast<double>(v[i]) * v[i];
  return std::sqrt(s);
}
}  // namespace

TEST_CASE("featuriser: dimension, layout, normalisation, determinism", "[data][featurizer]") {
  const std::string p =
      "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPD"
      "EDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGK"
      "LSDGHRHDVRAPDYDDWSTPSELGHAGLNGDILVWNPVLEDAFELSSMGIRVDADTLKHQLALTGDEDRLELEWHQALLRGEMPQTIGGGIGQSRLTMLLLQ"
      "LPHLGQVQAGVWPAACRE";
  const auto lay = genlm::feature_layout(1280);
  CHECK(lay.dipeptide_size == 400);
  CHECK_FALSE(lay.dipeptide_hashed);
  CHECK(lay.kmer_offset == 432);
  CHECK(lay.kmer_size == 848);
  CHECK(lay.groups == 4);
  const auto v = genlm::featurize_protein(p, 1280);
  REQUIRE(v.size() == 1280);
  CHECK(norm(v) == Approx(1.0).epsilon(1e-5));
  for (std::size_t off : {std::size_t(0), std::size_t(20), std::size_t(32), std::size_t(432)}) {
    const std::size_t n = off == 0 ? 20 : off == 20 ? 12 : off == 32 ? 400 : 848;
    CHECK(norm(v, off, n) == Approx(0.5).epsilon(1e-5));  // each of 4 groups: 1/sqrt(4)
  }
  // Deterministic, bit for bit.
  const auto v2 = genlm::featurize_protein(p, 1280);
  CHECK(v == v2);
  // Case, whitespace, gaps and the final stop do not matter.
  std::string lower;
  for (char c : p) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  CHECK(genlm::featurize_protein(lower.substr(0, 50) + " \n" + p.substr(50) + "*", 1280) == v);
  CHECK(genlm::featurize_protein("MK-VL.A", 64) == genlm::featurize_protein("MKVLA", 64));
  // Different sequences differ.
  CHECK(genlm::featurize_protein(p.substr(1), 1280) != v);
  // U counts as C and O as K.
  CHECK(genlm::featurize_protein("MUKO", 64) == genlm::featurize_protein("MCKK", 64));

  // Small dims: hashed dipeptides, fewer groups.
  const auto l64 = genlm::feature_layout(64);
  CHECK(l64.dipeptide_hashed);
  CHECK(l64.dipeptide_size == 16);
  CHECK(l64.kmer_size == 16);
  const auto l32 = genlm::feature_layout(32);
  CHECK(l32.groups == 2);
  CHECK(l32.kmer_size == 0);
  const auto v32 = genlm::featurize_protein(p, 32);
  CHECK(v32.size() == 32);
  CHECK(norm(v32) == Approx(1.0).epsilon(1e-5));
  CHECK(norm(genlm::featurize_protein(p, 100)) == Approx(1.0).epsilon(1e-5));
  CHECK(genlm::featurize_protein(p, 2000).size() == 2000);

  CHECK_ERROR(genlm::value_error, Contains("saw 31"), genlm::featurize_protein(p, 31));
  CHECK_ERROR(genlm::value_error, Contains("character 3") && Contains("saw '1'"),
              genlm::featurize_protein("MK1V", 64));
}

TEST_CASE("featuriser: composition, unknown letters, empty input, batches", "[data][featurizer]") {
  // Composition group proportional to fractions; B splits between D and N.
  const auto v = genlm::featurize_protein("AACD", 64);
  // alphabet ACDEFGHIKLMNPQRSTVWY: A=0, C=1, D=2
  CHECK(v[0] == Approx(2.0 * v[1]));
  CHECK(v[1] == Approx(v[2]));
  const auto b = genlm::featurize_protein("AB", 64);
  CHECK(b[2] == Approx(b[11]));       // D and N share B
  CHECK(b[0] == Approx(2.0 * b[2]));  // A = 1, D = N = 0.5
  // X: counted as unknown (physchem slot 10), nothing in composition.
  const auto x = genlm::featurize_protein("MKXX", 64);
  const auto mk = genlm::featurize_protein("MK", 64);
  CHECK(x[20 + 10] > 0.0f);
  CHECK(mk[20 + 10] == 0.0f);
  CHECK(x[10] == Approx(mk[10]));  // M composition unchanged (fractions of known residues)
  // Internal '*' is unknown too; only a final '*' is dropped.
  CHECK(genlm::featurize_protein("MK*V", 64)[30] > 0.0f);
  // Empty / stop-only: zero vector.
  for (const char* e : {"", "*", "  \n"}) {
    const auto z = genlm::featurize_protein(e, 64);
    CHECK(z == std::vector<float>(64, 0.0f));
  }
  // Transmembrane-like stretch raises the max-window hydrophobicity slot (physchem 8).
  const auto tm = genlm::featurize_protein("MKKDE" + std::string(22, 'L') + "KKDERRDE", 1280);
  const auto sol = genlm::featurize_protein("MKKDEGSTNQDEKRSTGNQDEKRSTGDEKR", 1280);
  CHECK(tm[20 + 8] > sol[20 + 8]);
  CHECK(tm[20 + 9] > 0.0f);
  CHECK(sol[20 + 9] == 0.0f);

  // Batches.
  const std::vector<std::string> seqs = {"MKV", "", "MSTNPKPQRKTKRNTNRRPQDVKFPGG"};
  const auto many = genlm::featurize_proteins(seqs, 48);
  REQUIRE(many.size() == 3);
  CHECK(many[2] == genlm::featurize_protein(seqs[2], 48));
  const auto flat = genlm::featurize_proteins_flat(seqs, 48);
  REQUIRE(flat.size() == 3 * 48);
  CHECK(std::vector<float>(flat.begin() + 96, flat.end()) == many[2]);
  const std::vector<std::string_view> views = {"MKV", "MA"};
  CHECK(genlm::featurize_proteins(views, 48)[1] == genlm::featurize_protein("MA", 48));
  const auto genome = genlm::read_genbank(fixture("ecoli_excerpt.gbk"));
  const auto fc = genlm::featurize_contig(genome[0], 256);
  REQUIRE(fc.size() == 30);
  CHECK(fc[0] == genlm::featurize_protein("MKRISTTITTTITITTGNGAG", 256));
}

TEST_CASE("featuriser: golden values and deterministic log", "[data][featurizer]") {
  for (double x : {1e-300, 1e-5, 0.3, 0.7071, 1.0, 1.5, 2.0, 10.0, 1001.0, 123456.789, 1e300}) {
    CAPTURE(x);
    CHECK(genlm::data_detail::det_log(x) == Approx(std::log(x)).epsilon(1e-14).margin(1e-15));
  }
  // Pinned outputs: a change here means cached features must be recomputed (bump
  // featurizer_version).
  const auto v = genlm::featurize_protein("MKRISTTITTTITITTGNGAG", 64);
  const std::vector<std::pair<std::size_t, float>> golden = {
      {0, 0.0512989163f},  {7, 0.205195665f},    {16, 0.410391331f},  {20, 0.210828587f}, {21, 0.0109702162f},
      {26, 0.372488707f},  {27, -0.0850669518f}, {31, 0.0673172325f}, {33, 0.375f},       {38, -0.25f},
      {48, 0.0845154226f}, {55, 0.253546268f},   {62, -0.33806169f},  {63, 0.0f}};
  for (const auto& [i, val] : golden) {
    CAPTURE(i);
    CHECK(v[i] == Approx(val).epsilon(1e-6));
  }
  CHECK(genlm::featurizer_version == 1);
}

// ---------------------------------------------------------------------------------------------
// Protein embeddings and the simulation

TEST_CASE("embeddings: built-in features name the gene of a bad protein", "[data][dataset][errors]") {
  // A Prodigal protein with no residues used to get the all-zero vector silently.
  for (const char* empty : {"---", "."}) {
    CAPTURE(empty);
    const auto g = faa_str(std::string(">c_1 # 1 # 9 # 1 # ID=1_1\nMKV\n>c_2 # 20 # 29 # 1 # ID=1_2\n") + empty + "\n");
    CHECK_ERROR(genlm::format_error,
                Contains("t.faa: gene 'c_2' on contig 'c' (20..29): protein sequence '" + std::string(empty) +
                         "' has no residues"),
                genlm::protein_embeddings::featurize(g, 64, "t.faa"));
  }
  // featurize_protein's errors get the source and the gene.
  auto gene = [](const std::string& id, std::int64_t start, std::int64_t end, const std::string& protein) {
    genlm::gene g;
    g.id = id;
    g.contig = "c1";
    g.start = start;
    g.end = end;
    g.protein = protein;
    return g;
  };
  genlm::contig c;
  c.id = "c1";
  c.genes.push_back(gene("g0", 1, 9, "MKV"));
  c.genes.push_back(gene("g1", 20, 31, "MK1V"));
  CHECK_ERROR(genlm::value_error,
              Contains("x.gbk: gene 'g1' on contig 'c1' (20..31): featurize_protein: character 3 of the sequence: "
                       "saw '1'"),
              genlm::protein_embeddings::featurize({c}, 64, "x.gbk"));
  // A bad dim is about the dim, not about a gene.
  c.genes.pop_back();
  CHECK_ERROR(genlm::value_error, Contains("dim: saw 16") && !Contains("gene"),
              genlm::protein_embeddings::featurize({c}, 16, "x.gbk"));
  // Valid proteins (gaps inside are fine) give featurize_protein's vectors.
  c.genes.push_back(gene("g2", 40, 49, "M-KV.A*"));
  const auto e = genlm::protein_embeddings::featurize({c}, 64, "x.gbk");
  REQUIRE(e.size() == 2);
  CHECK(std::vector<float>(e.row(1), e.row(1) + 64) == genlm::featurize_protein("M-KV.A*", 64));
  CHECK(genlm::feature_residue_count("M-KV.A*") == 4);
  for (const char* none : {"", "---", ".", "*", " * ", "-.-*"}) CHECK(genlm::feature_residue_count(none) == 0);
  CHECK(genlm::feature_residue_count("*-") == 1);  // not a final stop: an unknown residue
  CHECK(genlm::feature_residue_count("MK*V") == 4);
}

TEST_CASE("embeddings: npy plus id file", "[data][dataset]") {
  temp_files tmp;
  const auto npy = tmp.add("e.npy");
  genlm::io::write_npy(npy, genlm::io::array::from<float>({3, 2}, std::vector<float>{1, 2, 3, 4, 5, 6}));
  // UTF-8 BOM, CRLF, surrounding spaces and blank lines are ignored, as by the other readers.
  const auto ids = tmp.text("ids.txt", "\xEF\xBB\xBFp1\r\n  p2 \t\r\n\r\n\tp3\r\n\r\n");
  const auto e = genlm::protein_embeddings::from_npy(npy, ids);
  CHECK(e.ids() == std::vector<std::string>{"p1", "p2", "p3"});
  CHECK(e.dim() == 2);
  CHECK(e.row(e.find("p1", "test"))[0] == 1.0f);
  CHECK(e.row(e.find("p3", "test"))[1] == 6.0f);
  CHECK_THAT(e.source(), Contains(npy.string()));

  // Duplicate ids: named at the lines of the id file.
  const auto dup = tmp.text("dup.txt", "p1\n\np2\np1\n");
  CHECK_ERROR(genlm::format_error,
              Contains(dup.string() + ":4: protein id (row 2): saw 'p1', expected unique ids (first seen on line 1)"),
              genlm::protein_embeddings::from_npy(npy, dup));
  // Spaces do not make ids different.
  const auto dup2 = tmp.text("dup2.txt", "p1\n p1\np3\n");
  CHECK_ERROR(genlm::format_error, Contains(dup2.string() + ":2") && Contains("first seen on line 1"),
              genlm::protein_embeddings::from_npy(npy, dup2));
  // Rows vs ids.
  const auto two = tmp.text("two.txt", "p1\np2\n");
  CHECK_ERROR(genlm::shape_error,
              Contains("'" + npy.string() + "' has 3 rows but id file '" + two.string() + "' lists 2 ids"),
              genlm::protein_embeddings::from_npy(npy, two));
  // Rank.
  const auto flat = tmp.add("flat.npy");
  genlm::io::write_npy(flat, genlm::io::array::from<float>({6}, std::vector<float>{1, 2, 3, 4, 5, 6}));
  CHECK_ERROR(genlm::shape_error, Contains(flat.string()) && Contains("shape has 1 dimension(s), expected 2"),
              genlm::protein_embeddings::from_npy(flat, ids));
  // Empty or missing id file.
  const auto blank = tmp.text("blank.txt", "\n  \n\r\n");
  CHECK_ERROR(genlm::format_error, Contains(blank.string()) && Contains("is empty"),
              genlm::protein_embeddings::from_npy(npy, blank));
  CHECK_ERROR(genlm::format_error, Contains("cannot open protein id file"),
              genlm::protein_embeddings::from_npy(npy, tmp.add("missing.txt")));
  // NaN.
  const auto nan = tmp.add("nan.npy");
  genlm::io::write_npy(nan, genlm::io::array::from<float>(
                                {3, 2}, std::vector<float>{1, 2, 3, std::numeric_limits<float>::quiet_NaN(), 5, 6}));
  CHECK_ERROR(genlm::value_error, Contains("'p2' (row 1)") && Contains("NaN/Inf at dimension 1"),
              genlm::protein_embeddings::from_npy(nan, ids));
}

TEST_CASE("embeddings: safetensors, 2-D with ids or one tensor per protein", "[data][dataset]") {
  temp_files tmp;
  using genlm::io::array;
  const auto two_d = array::from<float>({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  // "embeddings" (N, D) + metadata "ids".
  const auto a = tmp.add("a.safetensors");
  genlm::io::write_safetensors(a, {{"embeddings", two_d}}, {{"ids", "[\"q1\", \"q2\"]"}});
  const auto ea = genlm::protein_embeddings::from_safetensors(a);
  CHECK(ea.ids() == std::vector<std::string>{"q1", "q2"});
  CHECK(ea.dim() == 3);
  CHECK(ea.row(1)[2] == 6.0f);
  // Missing "ids".
  const auto noids = tmp.add("noids.safetensors");
  genlm::io::write_safetensors(noids, {{"embeddings", two_d}});
  CHECK_ERROR(genlm::format_error, Contains(noids.string()) && Contains("no '__metadata__' entry 'ids'"),
              genlm::protein_embeddings::from_safetensors(noids));
  // "ids" not a JSON list of strings.
  const auto badids = tmp.add("badids.safetensors");
  genlm::io::write_safetensors(badids, {{"embeddings", two_d}}, {{"ids", "[1, 2]"}});
  CHECK_ERROR(genlm::format_error, Contains(badids.string()) && Contains("not a JSON list of strings"),
              genlm::protein_embeddings::from_safetensors(badids));
  // Rows vs ids.
  const auto count = tmp.add("count.safetensors");
  genlm::io::write_safetensors(count, {{"embeddings", two_d}}, {{"ids", "[\"q1\", \"q2\", \"q3\"]"}});
  CHECK_ERROR(genlm::shape_error,
              Contains(count.string()) && Contains("'embeddings' has 2 rows but metadata 'ids' lists 3"),
              genlm::protein_embeddings::from_safetensors(count));
  // Duplicate ids.
  const auto dup = tmp.add("dup.safetensors");
  genlm::io::write_safetensors(dup, {{"embeddings", two_d}}, {{"ids", "[\"q1\", \"q1\"]"}});
  CHECK_ERROR(genlm::format_error, Contains(dup.string()) && Contains("'q1' appears twice (rows 0 and 1)"),
              genlm::protein_embeddings::from_safetensors(dup));
  // Rank of "embeddings".
  const auto rank = tmp.add("rank.safetensors");
  genlm::io::write_safetensors(rank, {{"embeddings", array::from<float>({1, 2, 3}, std::vector<float>(6, 1.0f))}},
                               {{"ids", "[\"q1\"]"}});
  CHECK_ERROR(genlm::shape_error, Contains(rank.string()) && Contains("'embeddings' has shape rank 3, expected 2"),
              genlm::protein_embeddings::from_safetensors(rank));

  // One 1-D tensor per protein, ids = tensor names.
  auto vec = [](float base, std::int64_t n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = base + 0.01f * float(i);
    return array::from<float>({n}, v);
  };
  const auto per = tmp.add("per.safetensors");
  genlm::io::write_safetensors(per, {{"L1", vec(1, 32)}, {"L2", vec(2, 32)}, {"L3", vec(3, 32)}});
  const auto ep = genlm::protein_embeddings::from_safetensors(per);
  CHECK(ep.ids() == std::vector<std::string>{"L1", "L2", "L3"});
  CHECK(ep.dim() == 32);
  CHECK(ep.row(ep.find("L2", "test"))[0] == 2.0f);
  // A tensor of another dimension.
  const auto mixed = tmp.add("mixed.safetensors");
  genlm::io::write_safetensors(mixed, {{"L1", vec(1, 32)}, {"L2", vec(2, 31)}});
  CHECK_ERROR(genlm::shape_error, Contains(mixed.string()) && Contains("tensor 'L2' has 31 dims, expected 32"),
              genlm::protein_embeddings::from_safetensors(mixed));
  // A per-protein tensor that is not 1-D.
  const auto r2 = tmp.add("r2.safetensors");
  genlm::io::write_safetensors(
      r2, {{"L1", vec(1, 4)}, {"L2", array::from<float>({2, 2}, std::vector<float>(4, 1.0f))}});
  CHECK_ERROR(genlm::shape_error, Contains(r2.string()) && Contains("tensor 'L2' has rank 2, expected 1"),
              genlm::protein_embeddings::from_safetensors(r2));
}

TEST_CASE("simulation: sizes past 2^31 elements are a value_error naming the options", "[data][simulate][errors]") {
  genlm::simulation_options o;
  o.contigs = 3;
  CHECK(genlm::simulate_contigs(o).contigs.size() == 3);  // small sizes are fine
  auto big = o;
  big.dim = std::int64_t(1) << 30;
  CHECK_ERROR(genlm::value_error,
              Contains("simulate_contigs: (families 40 + 2 x paralog_pairs 0) x dim 1073741824 family centroid "
                       "values") &&
                  Contains("at most 2^31 = 2147483648"),
              genlm::simulate_contigs(big));
  big = o;
  big.contigs = 1'000'000'000;
  CHECK_ERROR(genlm::value_error, Contains("contigs 1000000000 x contig_max 30 genes"), genlm::simulate_contigs(big));
  big = o;
  big.contigs = 10'000'000;  // 3e8 genes are allowed, but not x dim 16 values
  CHECK_ERROR(genlm::value_error, Contains("contigs 10000000 x contig_max 30 x dim 16 protein embedding values"),
              genlm::simulate_contigs(big));
  big = o;
  big.modules = std::numeric_limits<std::int64_t>::max() / 2;  // the product would overflow int64
  big.module_max = 1000;
  CHECK_ERROR(genlm::value_error, Contains("module_max 1000 module genes"), genlm::simulate_contigs(big));
  big = o;
  big.families = std::numeric_limits<std::int64_t>::max();
  big.dim = std::numeric_limits<std::int64_t>::max();
  CHECK_ERROR(genlm::value_error, Contains("family centroid values"), genlm::simulate_contigs(big));
}
