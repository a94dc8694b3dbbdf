#!/usr/bin/env bash
# Installs genlm from the build tree into a temporary prefix, then configures, builds and runs a
# downstream project that finds it with find_package(genlm). Usage: package_test.sh BUILD_DIR SRC_DIR CXX
set -euo pipefail
build=$1 src=$2 cxx=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > /dev/null
cmake -S "$src/tests/package_consumer" -B "$tmp/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$tmp/b" > /dev/null
"$tmp/b/consumer"
