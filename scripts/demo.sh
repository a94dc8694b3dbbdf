#!/usr/bin/env bash
# The main command: trains a small gLM on real bacterial/archaeal genomes, prints held-out
# masked-gene accuracy against a context-free baseline, then writes contextualised gene embeddings,
# attention maps and masked-gene predictions for E. coli K-12 to out/.
#
# Data: data/ecoli_k12_cds.gbk (bundled; E. coli K-12 MG1655, 4,242 proteins in genome order) plus,
# when the Debian archive is reachable, five more complete genomes from the Debian package
# cct-examples (Bradyrhizobium japonicum, Methanosarcina acetivorans, Thermococcus kodakaraensis,
# Methanococcus maripaludis, Methanobacterium thermoautotrophicum; ~19,000 more genes), fetched
# with apt-get download into out/. One genome alone is too little data for context to generalise.
# Usage: scripts/demo.sh        (STEPS=3000 by default; STEPS=300 for a quick look; GENOMES=ecoli
#                                to train on the bundled genome only)
set -euo pipefail
cd "$(dirname "$0")/.."
# arguments and settings first, before installing or building anything
case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "demo.sh: unknown argument '$1' (it takes none; settings: STEPS=N, GENOMES=all|ecoli)" >&2; exit 2 ;;
esac
case "${STEPS:-3000}" in
  ''|*[!0-9]*) echo "demo.sh: STEPS='${STEPS}' is not a whole number of training steps" >&2; exit 2 ;;
esac
case "${GENOMES:-all}" in
  all|ecoli) ;;
  *) echo "demo.sh: GENOMES='${GENOMES}': expected all (E. coli + five cct-examples genomes) or ecoli" >&2; exit 2 ;;
esac
scripts/install-deps.sh
build=${GENLM_DEMO_BUILD_DIR:-build-demo}
cxx=$(command -v clang++ || command -v g++)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" -DGENLM_BUILD_TESTS=OFF \
  -DGENLM_BUILD_EXAMPLES=ON > "$build.configure.log" || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" --target genlm_cli -j "$(nproc)"
genlm="$build/examples/genlm"
mkdir -p out
genomes=(-g data/ecoli_k12_cds.gbk)
if [ "${GENOMES:-all}" != ecoli ]; then
  ex=out/cct/usr/share/doc/cct/examples/sample_projects
  if [ ! -d "$ex" ]; then
    echo "demo: fetching the Debian package cct-examples for more training genomes"
    (cd out && rm -f cct-examples_*.deb && apt-get download cct-examples > /dev/null 2>&1 \
      && dpkg-deb -x cct-examples_*.deb cct) || echo "demo: cct-examples not available; training on E. coli only"
  fi
  if [ -d "$ex" ]; then
    mkdir -p out/genomes
    for f in sample_project_3/reference_genome/NC_004463.gbk.gz \
             sample_project_2/comparison_genomes/Methanosarcina_acetivorans.gbk.gz \
             sample_project_2/comparison_genomes/Thermococcus_kodakaraensis.gbk.gz \
             sample_project_2/comparison_genomes/Methanococcus_maripaludis.gbk.gz \
             sample_project_2/reference_genome/Methanobacterium_thermoautotrophicum.gbk.gz; do
      g=out/genomes/$(basename "$f" .gz)
      [ -s "$g" ] || gzip -dc "$ex/$f" > "$g"
      genomes+=(-g "$g")
    done
  fi
fi
"$genlm" train "${genomes[@]}" --config small --steps "${STEPS:-3000}" -o out/genlm_small.safetensors
"$genlm" embed -m out/genlm_small.safetensors -g data/ecoli_k12_cds.gbk -o out/ecoli_glm_embeddings.npy \
  --attention out/ecoli_attention.safetensors
"$genlm" predict -m out/genlm_small.safetensors -g data/ecoli_k12_cds.gbk -o out/ecoli_masked_predictions.tsv
echo "outputs in out/: genlm_small.safetensors (checkpoint), ecoli_glm_embeddings.npy + .genes.tsv," \
  "ecoli_attention.safetensors, ecoli_masked_predictions.tsv"
