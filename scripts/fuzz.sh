#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] - coverage-guided fuzzing of the file parsers (tests/fuzz/fuzz_parsers.cpp)
# under AddressSanitizer + UBSan, two workers, seeded with every parser fixture of the repository.
# Needs clang (libFuzzer ships with it). Findings are written as crash-* / leak-* / timeout-* files
# in build-fuzz/run/; exit status 1 when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 2; }
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DGENLM_BUILD_TESTS=ON \
  -DGENLM_BUILD_EXAMPLES=OFF -DGENLM_ENABLE_CUDA=OFF -DGENLM_BUILD_FUZZERS=ON >/dev/null
cmake --build build-fuzz -j2 --target genlm_fuzz_parsers
run=build-fuzz/run
rm -rf "$run" && mkdir -p "$run/corpus"
i=0
while IFS= read -r f; do
  case "$f" in
    *.gbk|*.gb|*.genbank) p=0 ;; *.gff|*.gff3) p=1 ;; *.fa|*.fasta|*.fna) p=2 ;; *.faa) p=3 ;;
    *.npy) p=4 ;; *.safetensors) p=5 ;; *.tsv|*.txt) p=6 ;; *) continue ;;
  esac
  { printf "\\x$(printf %02x "$p")"; cat "$f"; } > "$run/corpus/seed$i"
  i=$((i + 1))
done < <(find tests/fixtures data -type f -size -200k | sort)
echo "fuzz.sh: $i seed files, ${secs} s, 2 workers"
cd "$run"
../tests/fuzz/genlm_fuzz_parsers -max_total_time="$secs" -max_len=65536 -rss_limit_mb=4096 -jobs=2 -workers=2 \
  corpus > fuzz.log 2>&1 || true
grep -ho "Done [0-9]* runs in [0-9]* second(s)" fuzz-*.log || true
if ls crash-* leak-* timeout-* oom-* >/dev/null 2>&1; then
  echo "fuzz.sh: findings in $PWD:" && ls crash-* leak-* timeout-* oom-* 2>/dev/null
  exit 1
fi
echo "fuzz.sh: no finding"
