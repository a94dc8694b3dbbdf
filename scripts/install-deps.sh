#!/usr/bin/env bash
# Installs the Debian packages genlm's build, tests and examples need (idempotent).
# Usage: scripts/install-deps.sh [--bench] [--mpi]
set -euo pipefail
pkgs=(cmake make g++ clang libeigen3-dev catch2 libopenblas-dev libdnnl-dev libcli11-dev nlohmann-json3-dev)
for a in "$@"; do
  case "$a" in
    --bench) pkgs+=(libbenchmark-dev) ;;
    --mpi) pkgs+=(libopenmpi-dev openmpi-bin) ;;
    -h|--help) sed -n '2,3p' "$0" | sed 's/^# //'; exit 0 ;;
    *) echo "install-deps.sh: unknown option '$a' (known: --bench, --mpi)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "genlm: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "genlm: need root to run: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
