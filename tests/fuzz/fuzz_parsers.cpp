// libFuzzer harness of genlm's file parsers (GenBank, GFF3, FASTA, Prodigal .faa, npy, safetensors,
// contig tables). The first input byte picks the parser, the rest is the file. A genlm::error is
// the expected answer to bad input; anything else - a crash, a sanitizer report, or another
// exception type escaping (which would reach a user without the file and field named) - is a
// finding. Built with -DGENLM_BUILD_FUZZERS=ON (clang); run with scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <span>
#include <sstream>
#include <string>

#include <genlm/data/contig_table.hpp>
#include <genlm/data/fasta.hpp>
#include <genlm/data/genbank.hpp>
#include <genlm/data/gff.hpp>
#include <genlm/io/npy.hpp>
#include <genlm/io/safetensors.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const int parser = data[0] % 7;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(text.data()), text.size());
  std::istringstream in(text);
  try {
    switch (parser) {
      case 0: (void)genlm::parse_genbank(in, "fuzz.gbk"); break;
      case 1: (void)genlm::parse_gff(in, "fuzz.gff"); break;
      case 2: (void)genlm::parse_fasta(in, "fuzz.fa"); break;
      case 3: (void)genlm::parse_prodigal_faa(in, "fuzz.faa"); break;
      case 4: (void)genlm::io::read_npy_from_memory(bytes, "fuzz.npy"); break;
      case 5: (void)genlm::io::read_safetensors_from_memory(bytes, "fuzz.safetensors"); break;
      default: (void)genlm::parse_contig_table(in, "fuzz.tsv"); break;
    }
  } catch (const genlm::error&) {
  }
  return 0;
}
