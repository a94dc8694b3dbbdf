#!/usr/bin/env bash
# Builds genlm's benchmarks (build dir: $GENLM_BENCH_BUILD, default build-perf) and runs them.
# Usage: scripts/bench.sh [gemm|libs|profile|layers|model|peak|compare|all|cuda|compare-cuda] [extra args for the chosen tool]
#   libs: genlm_sgemm_libs, OpenBLAS vs oneDNN sgemm interleaved (built when both are found)
#   profile: genlm_train_phases [steps] [threads] under LD_PRELOAD=libgenlm_gemm_profile.so: the
#            time and rate of every product shape in place, printed at exit
#   GENLM_BENCH_BATCH=8   contigs per batch (30 genes each) for the Google Benchmark suites
#   compare: scripts/compare_pytorch.py (needs a Python with torch + transformers: $PYTHON,
#            default /opt/fixenv/bin/python)
#   cuda:         genlm_bench_cuda (needs nvcc + cuBLAS to build, a GPU to run; docs/GPU.md)
#   compare-cuda: scripts/compare_pytorch.py --device cuda (a Python whose torch sees the GPU:
#                 $PYTHON, default python3). The whole GPU check: scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-all}" in
  gemm|libs|profile|layers|model|peak|compare|all|cuda|compare-cuda) ;;
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "bench.sh: unknown benchmark '$1' (gemm, libs, profile, layers, model, peak, compare, all, cuda," \
       "compare-cuda)" >&2; exit 2 ;;
esac
build=${GENLM_BENCH_BUILD:-build-perf}
cxx=${CXX:-$(command -v clang++ || command -v g++)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" -DGENLM_BUILD_BENCHMARKS=ON >/dev/null
what=${1:-all}
shift || true
case "$what" in
  cuda|compare-cuda)
    if ! cmake --build "$build" --target help 2>/dev/null | grep -q genlm_bench_cuda; then
      echo "bench.sh $what: this build has no CUDA targets (nvcc + cuBLAS not found at configure time)" >&2
      exit 1
    fi
    cmake --build "$build" -j "$(nproc)" --target genlm_bench_cuda genlm_workload_cuda ;;
  libs) cmake --build "$build" -j "$(nproc)" --target genlm_sgemm_libs ;;
  profile) cmake --build "$build" -j "$(nproc)" --target genlm_gemm_profile genlm_train_phases ;;
  *)
    cmake --build "$build" -j "$(nproc)" --target genlm_fma_peak genlm_bench_gemm genlm_bench_layers genlm_bench_model \
      genlm_workload ;;
esac
b="$build/benchmarks"
case "$what" in
  cuda) "$b/genlm_bench_cuda" --benchmark_min_time=0.1 "$@" ;;
  compare-cuda) "${PYTHON:-python3}" scripts/compare_pytorch.py --device cuda --build "$build" "$@" ;;
  peak) "$b/genlm_fma_peak" "$@" ;;
  gemm) "$b/genlm_bench_gemm" --benchmark_min_time=0.2 "$@" ;;
  libs) "$b/genlm_sgemm_libs" "$@" ;;
  profile)
    threads=${2:-1}
    OPENBLAS_NUM_THREADS=$threads LD_PRELOAD="$PWD/$b/libgenlm_gemm_profile.so" "$b/genlm_train_phases" "$@" ;;
  layers) "$b/genlm_bench_layers" --benchmark_min_time=0.2 "$@" ;;
  model) "$b/genlm_bench_model" --benchmark_min_time=0.1 "$@" ;;
  compare) "${PYTHON:-/opt/fixenv/bin/python}" scripts/compare_pytorch.py --build "$build" "$@" ;;
  all)
    "$b/genlm_fma_peak"
    "$b/genlm_bench_gemm" --benchmark_min_time=0.2
    "$b/genlm_bench_layers" --benchmark_min_time=0.2
    "$b/genlm_bench_model" --benchmark_min_time=0.1
    "${PYTHON:-/opt/fixenv/bin/python}" scripts/compare_pytorch.py --build "$build" "$@"
    ;;
  *) echo "usage: $0 [gemm|libs|profile|layers|model|peak|compare|all|cuda|compare-cuda] [args]" >&2; exit 2 ;;
esac
