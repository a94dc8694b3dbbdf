#!/usr/bin/env bash
# The test command: installs what is missing, builds genlm's tests and examples, runs ctest.
# Usage: scripts/test.sh [extra ctest args]     (build dir: $GENLM_BUILD_DIR, default build/)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h|--help) sed -n '2,3p' "$0" | sed 's/^# //'
    echo "(arguments after the build go to ctest, e.g. scripts/test.sh -R cli_smoke; see ctest --help)"; exit 0 ;;
esac
scripts/install-deps.sh --mpi
build=${GENLM_BUILD_DIR:-build}
# clang builds Eigen's kernels markedly faster than g++ 12 (see docs/PERFORMANCE.md)
cxx=$(command -v clang++ || command -v g++)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" -DGENLM_BUILD_TESTS=ON \
  -DGENLM_BUILD_EXAMPLES=ON
cmake --build "$build" -j "$(nproc)"
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 900 -LE "gpu|long" "$@"
