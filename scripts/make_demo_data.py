#!/usr/bin/env python3
"""Builds data/ecoli_k12_cds.gbk, the bundled default data of the README's main command.

Source: Debian package cct-examples (NCBI RefSeq NC_000913, Escherichia coli K-12 MG1655). The
script keeps the LOCUS/DEFINITION/ACCESSION/VERSION/SOURCE header and every CDS feature with the
qualifiers genlm reads (/locus_tag, /gene, /product, /EC_number, /protein_id, /translation,
/pseudo, /codon_start, /transl_table), and drops the nucleotide sequence (ORIGIN) and other
features, so the file stays small while keeping real gene order, strands, products, EC numbers
and protein sequences. Only the Python standard library is needed.

Usage:  cd /tmp && apt-get download cct-examples && dpkg-deb -x cct-examples_*.deb cct
        python3 scripts/make_demo_data.py /tmp/cct/usr/share/doc/cct/examples/sample_projects/sample_project_3/comparison_genomes/NC_000913.gbk.gz data/ecoli_k12_cds.gbk
"""
import gzip
import sys

KEEP = ("/locus_tag=", "/gene=", "/product=", "/EC_number=", "/protein_id=", "/translation=", "/pseudo",
        "/codon_start=", "/transl_table=", "/transl_except=")


def main(src, dst):
    opener = gzip.open if src.endswith(".gz") else open
    with opener(src, "rt") as f:
        lines = f.read().splitlines()
    out = []
    i = 0
    # header up to FEATURES
    keeping = False
    while not lines[i].startswith("FEATURES"):
        key = lines[i][:12].strip()
        if key:
            keeping = key in ("LOCUS", "DEFINITION", "ACCESSION", "VERSION", "SOURCE", "ORGANISM")
        if keeping:
            out.append(lines[i])
        i += 1
    out.append("COMMENT     Reduced by genlm scripts/make_demo_data.py from Debian package cct-examples")
    out.append("            (NCBI RefSeq NC_000913): CDS features only, nucleotide sequence removed.")
    out.append(lines[i])
    i += 1
    cds = 0
    while i < len(lines) and not lines[i].startswith("ORIGIN") and not lines[i].startswith("//"):
        line = lines[i]
        if line.startswith("     ") and line[5] != " ":  # feature key line
            key = line[5:21].strip()
            block = [line]
            i += 1
            while i < len(lines) and lines[i].startswith("                     "):
                block.append(lines[i])
                i += 1
            if key != "CDS":
                continue
            cds += 1
            out.append(block[0])
            j = 1
            while j < len(block) and not block[j][21:].startswith("/"):  # location continuation
                out.append(block[j])
                j += 1
            keep = False
            for b in block[j:]:
                if b[21:].startswith("/"):
                    keep = b[21:].startswith(KEEP)
                if keep:
                    out.append(b)
            continue
        i += 1
    out.append("//")
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"{dst}: {cds} CDS features")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
