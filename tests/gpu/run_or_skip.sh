#!/usr/bin/env bash
# Runs a CUDA test executable on any machine: passes when it passes or when it skips because there
# is no CUDA device (exit 77 after printing "no CUDA device: skipping"); fails otherwise (a crash
# at start-up, a missing shared library, a failing test). Proves that the CUDA build links and
# starts cleanly on machines without a GPU or driver.
# Usage: run_or_skip.sh <executable> [catch2 arguments...]
set -u
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -eq 77 ]; then
  if printf '%s\n' "$out" | grep -q "no CUDA device: skipping"; then
    echo "run_or_skip: $1 skipped cleanly (no CUDA device)"
    exit 0
  fi
  echo "run_or_skip: $1 exited 77 without the skip message" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "run_or_skip: $1 failed with exit code $rc" >&2
fi
exit "$rc"
