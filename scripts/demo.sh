#!/usr/bin/env bash
# The main command: trains a small gLM on the bundled E. coli K-12 genome (data/ecoli_k12_cds.gbk,
# 4,242 proteins in genome order), prints held-out masked-gene accuracy against a context-free
# baseline, then writes contextualised gene embeddings and masked-gene predictions to out/.
# Usage: scripts/demo.sh            (STEPS=1500 by default; STEPS=300 for a quick look)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build=${GENLM_DEMO_BUILD_DIR:-build-demo}
cxx=$(command -v clang++ || command -v g++)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" -DGENLM_BUILD_TESTS=OFF \
  -DGENLM_BUILD_EXAMPLES=ON > "$build.configure.log" || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" --target genlm_cli -j "$(nproc)"
genlm="$build/examples/genlm"
mkdir -p out
"$genlm" train -g data/ecoli_k12_cds.gbk --config small --steps "${STEPS:-1500}" -o out/ecoli_small.safetensors
"$genlm" embed -m out/ecoli_small.safetensors -g data/ecoli_k12_cds.gbk -o out/ecoli_glm_embeddings.npy \
  --attention out/ecoli_attention.safetensors
"$genlm" predict -m out/ecoli_small.safetensors -g data/ecoli_k12_cds.gbk -o out/ecoli_masked_predictions.tsv
echo "outputs in out/: ecoli_small.safetensors (checkpoint), ecoli_glm_embeddings.npy + .genes.tsv," \
  "ecoli_attention.safetensors, ecoli_masked_predictions.tsv"
