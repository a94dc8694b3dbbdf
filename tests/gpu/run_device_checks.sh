#!/usr/bin/env bash
# Runs the three CUDA parity executables on a GPU machine, writes full logs (with every measured
# error: GENLM_PARITY_REPORT=1) and prints the "[measured]" summary lines and any failures.
# Usage: tests/gpu/run_device_checks.sh [build dir, default build] [extra Catch2 arguments...]
# Logs go to $OUT/gpu_parity_logs when OUT is set (the device runner), else /tmp/gpu_parity_logs.
set -u
build=${1:-build}
shift $(( $# > 0 ? 1 : 0 ))
logs=${OUT:-/tmp}/gpu_parity_logs
mkdir -p "$logs"
status=0
for t in test_cuda_ops test_cuda_gemm test_cuda_model; do
  exe=$build/tests/gpu/$t
  if [ ! -x "$exe" ]; then
    echo "== $t: missing $exe (cmake --build $build --target $t)"
    status=1
    continue
  fi
  start=$(date +%s)
  GENLM_PARITY_REPORT=1 "$exe" "$@" >"$logs/$t.log" 2>&1
  rc=$?
  echo "== $t: exit $rc after $(($(date +%s) - start)) s (log: $logs/$t.log)"
  head -1 "$logs/$t.log"
  grep "^\[measured\]" "$logs/$t.log"
  if [ "$rc" -ne 0 ]; then
    status=1
    grep -B3 -A14 "FAILED:" "$logs/$t.log" | head -120
  fi
  tail -2 "$logs/$t.log"
done
exit "$status"
