#!/usr/bin/env bash
# scripts/gpu-check.sh - the GPU check of genlm's CUDA backend, as one prepared run for a machine
# with an NVIDIA GPU (H100/H200: builds for sm_90). Steps, each bounded by `timeout` and recorded
# (a failed step does not stop the next):
#   1. environment: date, nvidia-smi -L / driver, nvcc, cmake, compilers, python + torch
#   2. dependencies: Eigen 3.4, Catch2 2, Google Benchmark (from $GENLM_GPU_DEPS when staged there,
#      else the system; missing ones are installed with apt-get when that works, else named)
#   3. configure (Release, CMAKE_CUDA_ARCHITECTURES=90, tests + benchmarks on, examples off) and
#      build only the GPU targets (tests/gpu, train_cuda, genlm_bench_cuda, genlm_workload_cuda,
#      and train_nccl + train_mpi where MPI, CLI11 and NCCL are found) in one build, -j$(nproc)
#   4. ctest -L gpu --output-on-failure
#   5. scripts/compare_pytorch.py --check-builtin and --device cuda (only when $PYTHON imports a
#      torch that sees the GPU; skipped with the reason otherwise): issue 7's target, so it runs
#      before the long benchmark suite
#   5b. compute-sanitizer (memcheck, racecheck, initcheck) over the op tests and memcheck over the
#      float32 trainer steps, when the tool is installed (GPU_CHECK_SANITIZE=0 skips it)
#   6. genlm_bench_cuda (GEMM shapes vs cuBLAS peak, paper/small forward + training step, fp32 /
#      tf32 / bf16) with a short min_time, JSON kept; it gets what is left of the budget (a run cut
#      short keeps the benchmarks that finished: the summary reads the JSON up to the last one)
#   7. summary.md: date, device, pass/fail counts, key throughput numbers
# Everything goes to ${OUT:-gpu-check-out}/ (at most 8 files: summary.md, log.txt, build.log,
# ctest.log, bench_cuda.txt, bench_cuda.json, compare_pytorch.txt, compare_pytorch.json).
#
# Usage:
#   scripts/gpu-check.sh                 the check (without a GPU: reports that and stops early)
#   scripts/gpu-check.sh --build-only    configure + build even without a GPU (a compile check)
#   scripts/gpu-check.sh --stage-deps [DIR]
#       copies this machine's Eigen / Catch2 / Google Benchmark Debian packages into DIR (default
#       build-gpu-deps/, ~12 MB) so that a machine without them and without network (the device
#       machine) can build: carry DIR along, the check picks it up.
# Environment: OUT, PYTHON (default python3), GENLM_GPU_BUILD (build dir, default build-gpu),
#   GENLM_GPU_DEPS (default build-gpu-deps), GPU_CHECK_BUDGET_S (whole run, default 480),
#   GPU_CHECK_BENCH_MIN_TIME (default 0.05), GPU_CHECK_BENCH_FILTER (default: all),
#   GPU_CHECK_COMPARE_ARGS (default: paper, train+forward, fp32/tf32/bf16, batches 8 and 64),
#   GENLM_BENCH_CUDA_BATCHES / GENLM_BENCH_CUDA_PRECISIONS (see benchmarks/bench_cuda.cu),
#   CMAKE_CUDA_ARCHITECTURES (default 90), GENLM_GPU_TEST_TARGETS (override the test targets),
#   GPU_CHECK_SKIP_BUILD=1 (a rerun: skip configure + build, use what is in the build dir).
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
DEPS=${GENLM_GPU_DEPS:-build-gpu-deps}
case "$DEPS" in /*) ;; *) DEPS="$REPO/$DEPS" ;; esac

# ------------------------------------------------------------------------------ --stage-deps
if [ "${1:-}" = "--stage-deps" ]; then
  dest=${2:-$DEPS}
  case "$dest" in /*) ;; *) dest="$REPO/$dest" ;; esac
  pkgs=(libeigen3-dev catch2 libbenchmark-dev libbenchmark1debian)
  for p in "${pkgs[@]}"; do
    if ! dpkg -s "$p" >/dev/null 2>&1; then
      echo "gpu-check --stage-deps: Debian package $p is not installed here (scripts/install-deps.sh --bench)" >&2
      exit 1
    fi
  done
  rm -rf "$dest"
  mkdir -p "$dest"
  n=0
  for p in "${pkgs[@]}"; do
    while IFS= read -r f; do
      [ -f "$f" ] || continue                      # files and links to files only
      case "$f" in /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*|*/pkgconfig/*) continue ;; esac
      rel=${f#/usr/}
      mkdir -p "$dest/$(dirname "$rel")"
      cp -L "$f" "$dest/$rel" && n=$((n + 1))
    done < <(dpkg -L "$p")
  done
  echo "gpu-check: staged $n files of ${pkgs[*]} into $dest ($(du -sh "$dest" | cut -f1));"
  echo "  carry it to the device machine (run tool: carry [\"${dest#$REPO/}\"]); scripts/gpu-check.sh uses it"
  exit 0
fi

case "${1:-}" in
  ""|--build-only) ;;
  -h|--help) sed -n '2,/^set -u$/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "gpu-check.sh: unknown argument '$1' (none, --build-only, --stage-deps [DIR] or --help)" >&2; exit 2 ;;
esac
case "${GPU_CHECK_BUDGET_S:-480}" in
  ''|*[!0-9]*) echo "gpu-check.sh: GPU_CHECK_BUDGET_S='${GPU_CHECK_BUDGET_S}' is not a whole number of seconds" >&2
    exit 2 ;;
esac
for v in GPU_CHECK_SANITIZE GPU_CHECK_SKIP_BUILD; do
  case "${!v:-0}" in 0|1) ;; *) echo "gpu-check.sh: $v='${!v}': expected 0 or 1" >&2; exit 2 ;; esac
done
BUILD_ONLY=0
[ "${1:-}" = "--build-only" ] && BUILD_ONLY=1
OUTD=${OUT:-gpu-check-out}
mkdir -p "$OUTD"
OUTD=$(cd "$OUTD" && pwd)
LOG="$OUTD/log.txt"
: >"$LOG"
BUILD=${GENLM_GPU_BUILD:-build-gpu}
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET_S:-480}
JOBS=$(nproc 2>/dev/null || echo 4)
export PYTHONUNBUFFERED=1
START_DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')

STEP_NAMES=()
STEP_RESULTS=()
STEP_SECS=()
NOTES=()
say() { echo "gpu-check: $*" | tee -a "$LOG"; }
note() {
  NOTES+=("$*")
  say "$*"
}
record() { # name result seconds
  STEP_NAMES+=("$1")
  STEP_RESULTS+=("$2")
  STEP_SECS+=("$3")
  say "[$1] $2 (${3}s)"
}
# run_step NAME TIMEOUT_S LOGFILE CMD... : runs CMD with stdout+stderr into LOGFILE and log.txt,
# capped by TIMEOUT_S and by what is left of the whole run's budget.
run_step() {
  local name=$1 limit=$2 logf=$3
  shift 3
  local left=$((BUDGET - SECONDS - 20))
  if [ "$left" -lt 15 ]; then
    record "$name" "SKIPPED (time budget of ${BUDGET}s spent)" 0
    return 125
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  echo "===== [$name] $(date -u +%H:%M:%S) (limit ${limit}s): $*" | tee -a "$logf" >>"$LOG"
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$logf" >>"$LOG"
  local rc=${PIPESTATUS[0]}
  local dt=$((SECONDS - t0))
  if [ "$rc" -eq 0 ]; then
    record "$name" "ok" "$dt"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    record "$name" "TIMEOUT after ${limit}s" "$dt"
  else
    record "$name" "FAILED (exit $rc)" "$dt"
  fi
  return "$rc"
}

# ------------------------------------------------------------------------------ 1. environment
say "start $START_DATE on $(hostname 2>/dev/null || echo '?'), $JOBS CPUs, repo $REPO, output $OUTD"
HAVE_GPU=0
DEVICE="none"
DRIVER="none"
for d in /usr/local/nvidia/bin /usr/lib/wsl/lib; do
  if ! command -v nvidia-smi >/dev/null 2>&1 && [ -x "$d/nvidia-smi" ]; then export PATH="$PATH:$d"; fi
done
if command -v nvidia-smi >/dev/null 2>&1; then
  if nvidia-smi -L >>"$LOG" 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    HAVE_GPU=1
    DEVICE=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)
    DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
    nvidia-smi --query-gpu=index,name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit,temperature.gpu \
      --format=csv >>"$LOG" 2>&1
  else
    note "nvidia-smi is installed but lists no GPU (no device or no driver)"
  fi
elif [ -e /dev/nvidia0 ]; then
  HAVE_GPU=1
  DEVICE="unknown (/dev/nvidia0 exists, no nvidia-smi)"
  note "nvidia-smi not found but /dev/nvidia0 exists: trying the GPU steps"
else
  note "nvidia-smi not found and no /dev/nvidia0: no NVIDIA GPU or driver on this machine"
fi
NVCC=""
for c in "${CUDACXX:-}" "$(command -v nvcc 2>/dev/null)" /usr/local/cuda/bin/nvcc; do
  if [ -n "$c" ] && [ -x "$c" ]; then NVCC=$c; break; fi
done
NVCC_VER=$([ -n "$NVCC" ] && "$NVCC" --version 2>/dev/null | grep -o 'release [0-9.]*, V[0-9.]*' || echo "not found")
CMAKE_VER=$(cmake --version 2>/dev/null | head -1 || echo "cmake not found")
CXX_BIN=${CXX:-$(command -v g++ || command -v clang++ || command -v c++)}
CXX_VER=$([ -n "$CXX_BIN" ] && "$CXX_BIN" --version 2>/dev/null | head -1 || echo "no C++ compiler")
GENERATOR="Unix Makefiles"
command -v ninja >/dev/null 2>&1 && GENERATOR=Ninja
TORCH_INFO=$("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available" if torch.cuda.is_available() else "no-device")' 2>/dev/null || echo "not importable by $PY")
TRANSFORMERS_INFO=$("$PY" -c 'import transformers; print(transformers.__version__)' 2>/dev/null || echo "not importable")
COMMIT=${GENLM_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
DIRTY=$(git status --porcelain 2>/dev/null | grep -v '^??' | wc -l | tr -d ' ' || echo "?")
{
  echo "date: $START_DATE"
  echo "device: $DEVICE"
  echo "driver: $DRIVER"
  echo "nvcc: $NVCC ($NVCC_VER)"
  echo "cmake: $CMAKE_VER, generator $GENERATOR"
  echo "c++: $CXX_BIN ($CXX_VER)"
  echo "python: $PY ($("$PY" --version 2>&1)), torch: $TORCH_INFO, transformers: $TRANSFORMERS_INFO"
  echo "commit: $COMMIT (modified tracked files: $DIRTY)"
} | tee -a "$LOG"
record environment ok 0

# ------------------------------------------------------------------------------ 2. dependencies
MISSING=()
[ -z "$NVCC" ] && MISSING+=("nvcc (the CUDA toolkit: /usr/local/cuda/bin/nvcc or CUDACXX)")
command -v cmake >/dev/null 2>&1 || MISSING+=("cmake")
[ -z "$CXX_BIN" ] && MISSING+=("a C++ compiler (g++)")
have_hdr() { # header relative to an include dir: staged deps or the system
  [ -f "$DEPS/include/$1" ] || [ -f "/usr/include/$1" ] || [ -f "/usr/local/include/$1" ]
}
PREFIX_PATH=""
if [ -d "$DEPS" ]; then
  PREFIX_PATH=$DEPS
  export LD_LIBRARY_PATH="$DEPS/lib/x86_64-linux-gnu:$DEPS/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "using staged dependencies in $DEPS"
fi
need_pkgs=()
have_hdr eigen3/Eigen/Core || need_pkgs+=(libeigen3-dev)
have_hdr catch2/catch.hpp || need_pkgs+=(catch2)
have_hdr benchmark/benchmark.h || need_pkgs+=(libbenchmark-dev)
if [ ${#need_pkgs[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  say "missing Debian packages ${need_pkgs[*]}: trying apt-get (90 s at most; no network -> fails)"
  run_step apt-get 90 "$OUTD/build.log" bash -c "DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${need_pkgs[*]}"
  need_pkgs=()
  have_hdr eigen3/Eigen/Core || need_pkgs+=(libeigen3-dev)
  have_hdr catch2/catch.hpp || need_pkgs+=(catch2)
  have_hdr benchmark/benchmark.h || need_pkgs+=(libbenchmark-dev)
fi
WITH_TESTS=ON
WITH_BENCH=ON
for p in "${need_pkgs[@]}"; do
  case "$p" in
    libeigen3-dev) MISSING+=("Eigen 3.4 headers (Debian libeigen3-dev): nothing can be built") ;;
    catch2) WITH_TESTS=OFF; MISSING+=("Catch2 2 (Debian catch2): the GPU tests are not built") ;;
    libbenchmark-dev) WITH_BENCH=OFF; MISSING+=("Google Benchmark (Debian libbenchmark-dev): the GPU benchmarks are not built") ;;
  esac
done
if [ ${#MISSING[@]} -gt 0 ]; then
  for m in "${MISSING[@]}"; do note "missing: $m"; done
  note "stage the Debian packages on a machine that has them with 'scripts/gpu-check.sh --stage-deps' and carry $(basename "$DEPS")/ along"
  record dependencies "MISSING ${#MISSING[@]}" 0
else
  record dependencies ok 0
fi

CAN_BUILD=1
{ [ -z "$NVCC" ] || ! command -v cmake >/dev/null 2>&1 || [ -z "$CXX_BIN" ] || ! have_hdr eigen3/Eigen/Core; } && CAN_BUILD=0
if [ "$HAVE_GPU" -eq 0 ] && [ "$BUILD_ONLY" -eq 0 ]; then
  note "no GPU here: nothing to run (scripts/gpu-check.sh --build-only compiles the GPU targets anyway)"
  CAN_BUILD=0
fi

# ------------------------------------------------------------------------------ 3. configure + build
BENCH_BIN="$BUILD/benchmarks/genlm_bench_cuda"
WL_BIN="$BUILD/benchmarks/genlm_workload_cuda"
TESTS_BUILT=0
if [ "${GPU_CHECK_SKIP_BUILD:-0}" = 1 ]; then
  # a rerun on the same machine: use what an earlier run built in $BUILD
  record build "SKIPPED (GPU_CHECK_SKIP_BUILD=1: using $BUILD as it is)" 0
  [ -n "${GENLM_GPU_TEST_TARGETS:-}" ] || [ -d "$BUILD/tests/gpu" ] && TESTS_BUILT=1
elif [ "$CAN_BUILD" -eq 1 ]; then
  cfg=(cmake -S "$REPO" -B "$BUILD" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_CUDA_ARCHITECTURES=${CMAKE_CUDA_ARCHITECTURES:-90}" -DCMAKE_CUDA_COMPILER="$NVCC"
    -DCMAKE_CXX_COMPILER="$CXX_BIN" -DGENLM_ENABLE_CUDA=ON -DGENLM_BUILD_TESTS=$WITH_TESTS
    -DGENLM_BUILD_BENCHMARKS=$WITH_BENCH -DGENLM_BUILD_EXAMPLES=OFF)
  [ -n "$PREFIX_PATH" ] && cfg+=("-DCMAKE_PREFIX_PATH=$PREFIX_PATH")
  if [ -f "$BUILD/CMakeCache.txt" ] && ! grep -q "CMAKE_GENERATOR:INTERNAL=$GENERATOR\$" "$BUILD/CMakeCache.txt"; then
    rm -rf "$BUILD"  # made by another generator
  fi
  if run_step configure 180 "$OUTD/build.log" "${cfg[@]}"; then
    targets=()
    if [ "$WITH_TESTS" = ON ]; then
      if [ -n "${GENLM_GPU_TEST_TARGETS:-}" ]; then
        read -r -a targets <<<"$GENLM_GPU_TEST_TARGETS"
      elif [ -d "$BUILD/tests/gpu" ]; then
        # every target of tests/gpu/ (the directory's "all")
        if [ "$GENERATOR" = Ninja ]; then targets+=(tests/gpu/all); else targets+=(__dir_tests_gpu); fi
      else
        # no tests/gpu/ directory: targets whose name says gpu or cuda
        while IFS= read -r t; do targets+=("$t"); done < <(cmake --build "$BUILD" --target help 2>/dev/null |
          sed -n 's/^\.\.\. \([^ ]*\).*/\1/p; s/^\([A-Za-z0-9_./-]*\): phony$/\1/p' | grep -E '(gpu|cuda)' |
          grep -vE '^(genlm_bench_cuda|genlm_workload_cuda)$|/|\.o$|\.i$|\.s$|edit_cache|rebuild_cache|^genlm_cuda$' | sort -u)
      fi
      if [ ${#targets[@]} -eq 0 ]; then
        note "no GPU test target found (no tests/gpu/ and no target named *gpu*/*cuda*)"
      fi
    fi
    # One build of everything the later steps run, so that the few heavy nvcc files compile side
    # by side (-j $JOBS) rather than one build after another; Ninja keeps going past a failure
    # (-k 0) so that one file that does not compile leaves the rest to run.
    all_targets=()
    if [ ${#targets[@]} -gt 0 ]; then
      if [ "${targets[0]}" = __dir_tests_gpu ]; then  # Makefiles: a directory is no --target
        run_step build-tests 420 "$OUTD/build.log" make -C "$BUILD/tests/gpu" -j "$JOBS"
      else
        all_targets+=("${targets[@]}")
      fi
      # examples/train_cuda (run by the gpu-labelled ctest gpu_train_example*); train_nccl and
      # train_mpi where they exist (MPI, CLI11 and NCCL found: the gpu-labelled nccl_train_* tests)
      all_targets+=(genlm_train_cuda)
      known=$(cmake --build "$BUILD" --target help 2>/dev/null)
      for t in genlm_train_nccl genlm_train_mpi; do
        grep -qE "(^|[ .])$t(:| |$)" <<<"$known" && all_targets+=("$t")
      done
    fi
    [ "$WITH_BENCH" = ON ] && all_targets+=(genlm_bench_cuda genlm_workload_cuda)
    if [ ${#all_targets[@]} -gt 0 ]; then
      keep=()
      [ "$GENERATOR" = Ninja ] && keep=(-- -k 0)
      run_step build 480 "$OUTD/build.log" cmake --build "$BUILD" -j "$JOBS" --target "${all_targets[@]}" "${keep[@]}" &&
        [ ${#targets[@]} -gt 0 ] && TESTS_BUILT=1
    fi
    # after a failed build: run what of tests/gpu/ compiled (ctest reports each test whose binary is missing)
    if [ ${#targets[@]} -gt 0 ] && [ -n "$(find "$BUILD/tests/gpu" -maxdepth 2 -type f -perm -u+x 2>/dev/null | head -1)" ]; then
      TESTS_BUILT=1
    fi
  fi
else
  record build "SKIPPED" 0
fi

# ------------------------------------------------------------------------------ 4. ctest -L gpu
CTEST_SUMMARY="not run"
if [ "$HAVE_GPU" -eq 1 ] && [ "$TESTS_BUILT" -eq 1 ]; then
  run_step ctest-gpu 300 "$OUTD/ctest.log" ctest --test-dir "$BUILD" -L gpu --output-on-failure --timeout 240
  CTEST_SUMMARY=$(grep -E 'tests passed|No tests were found' "$OUTD/ctest.log" | tail -1)
  [ -z "$CTEST_SUMMARY" ] && CTEST_SUMMARY="no summary line (see ctest.log)"
elif [ "$HAVE_GPU" -eq 1 ]; then
  record ctest-gpu "SKIPPED (GPU tests not built)" 0
fi

# ------------------------------------------------------------------------------ 5. PyTorch comparison (issue 7's target: before the long benchmark suite)
if [ "$HAVE_GPU" -eq 1 ] && [ -x "$WL_BIN" ]; then
  if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    run_step check-builtin 120 "$OUTD/compare_pytorch.txt" "$PY" scripts/compare_pytorch.py --check-builtin
    read -r -a cargs <<<"${GPU_CHECK_COMPARE_ARGS:---configs paper --workloads train,forward --precision fp32,tf32,bf16 --batch 8,64 --iters 10 --warmup 3}"
    run_step compare-pytorch 240 "$OUTD/compare_pytorch.txt" "$PY" scripts/compare_pytorch.py \
      --device cuda --build "$BUILD" --markdown --json "$OUTD/compare_pytorch.json" "${cargs[@]}"
  else
    record compare-pytorch "SKIPPED ($PY has no torch with CUDA: $TORCH_INFO)" 0
  fi
elif [ "$HAVE_GPU" -eq 1 ]; then
  record compare-pytorch "SKIPPED (genlm_workload_cuda not built)" 0
fi

# ------------------------------------------------------------------------------ 5b. compute-sanitizer
# What the host emulator (tests/cuda_emu) cannot see, checked on the GPU by NVIDIA's
# compute-sanitizer: out-of-bounds and misaligned accesses (memcheck), reads of device memory that
# nothing wrote (initcheck: the backward passes assign their workspaces instead of zeroing them),
# and shared-memory races between a block's threads (racecheck: the column sums and the CUB block
# reductions). Each over the op tests (small shapes, every op) under the plain allocator (each
# buffer its own cudaMalloc, so a stray access does not land in a neighbour); memcheck also over
# the float32 trainer steps. The tests that provoke CUDA errors on purpose ([errors]) and those that
# copy unwritten buffers ([memory], initcheck) are left out. Output into ctest.log.
SANITIZER=""
for c in "$(command -v compute-sanitizer 2>/dev/null)" "${NVCC:+$(dirname "$NVCC")/compute-sanitizer}" \
  /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  if [ -n "$c" ] && [ -x "$c" ]; then SANITIZER=$c; break; fi
done
OPS_BIN="$BUILD/tests/gpu/test_cuda_ops"
MODEL_BIN="$BUILD/tests/gpu/test_cuda_model"
SANITIZER_SUMMARY=()
if [ "$HAVE_GPU" -eq 1 ] && [ -x "$OPS_BIN" ] && [ -n "$SANITIZER" ] && [ "${GPU_CHECK_SANITIZE:-1}" = 1 ]; then
  sanitize() { # name tool binary catch2-spec
    local before
    before=$(grep -c 'ERROR SUMMARY' "$OUTD/ctest.log" 2>/dev/null)
    run_step "$1" 75 "$OUTD/ctest.log" env GENLM_CUDA_ALLOCATOR=plain "$SANITIZER" --tool "$2" --error-exitcode 99 \
      --print-limit 20 "$3" "$4"
    local line
    line=$(grep 'ERROR SUMMARY' "$OUTD/ctest.log" 2>/dev/null | tail -n +$((${before:-0} + 1)) | tail -1 |
      sed 's/^=* *//')
    SANITIZER_SUMMARY+=("$1 ($2 on $(basename "$3") '$4'): ${line:-no ERROR SUMMARY line (see ctest.log)}")
  }
  sanitize sanitize-memcheck memcheck "$OPS_BIN" '~[errors]'
  sanitize sanitize-racecheck racecheck "$OPS_BIN" '[bias],[layer_norm],[reduce],[loss]'
  sanitize sanitize-initcheck initcheck "$OPS_BIN" '~[errors]~[memory]'
  [ -x "$MODEL_BIN" ] && sanitize sanitize-memcheck-train memcheck "$MODEL_BIN" '[training]~[double]~[fp16]'
elif [ "$HAVE_GPU" -eq 1 ]; then
  record sanitize "SKIPPED ($([ -z "$SANITIZER" ] && echo "compute-sanitizer not found" || echo "test_cuda_ops not built or GPU_CHECK_SANITIZE=0"))" 0
fi

# ------------------------------------------------------------------------------ 6. GPU benchmarks (last: they take what is left of the budget)
if [ "$HAVE_GPU" -eq 1 ] && [ -x "$BENCH_BIN" ]; then
  bargs=("--benchmark_min_time=${GPU_CHECK_BENCH_MIN_TIME:-0.05}" "--benchmark_out=$OUTD/bench_cuda.json"
    --benchmark_out_format=json --benchmark_counters_tabular=true)
  [ -n "${GPU_CHECK_BENCH_FILTER:-}" ] && bargs+=("--benchmark_filter=$GPU_CHECK_BENCH_FILTER")
  run_step bench-cuda 300 "$OUTD/bench_cuda.txt" "$BENCH_BIN" "${bargs[@]}"
  nerr=$(grep -c '"error_occurred": true' "$OUTD/bench_cuda.json" 2>/dev/null)
  if [ "${nerr:-0}" -gt 0 ]; then record bench-cuda-errors "FAILED ($nerr benchmarks reported an error)" 0; fi
elif [ "$HAVE_GPU" -eq 1 ]; then
  record bench-cuda "SKIPPED (genlm_bench_cuda not built)" 0
fi

# ------------------------------------------------------------------------------ 7. summary.md
SUM="$OUTD/summary.md"
n_ok=0
n_bad=0
n_skip=0
for r in "${STEP_RESULTS[@]}"; do
  case "$r" in ok) n_ok=$((n_ok + 1)) ;; SKIPPED*) n_skip=$((n_skip + 1)) ;; *) n_bad=$((n_bad + 1)) ;; esac
done
{
  echo "# genlm GPU check"
  echo
  echo "- date: $START_DATE (took ${SECONDS}s)"
  echo "- device: ${DEVICE}; driver ${DRIVER}"
  echo "- nvcc: $NVCC_VER; $CMAKE_VER ($GENERATOR); $CXX_VER"
  echo "- CUDA architectures: ${CMAKE_CUDA_ARCHITECTURES:-90}; build dir $BUILD; $JOBS CPUs"
  echo "- python: $PY; torch: $TORCH_INFO; transformers: $TRANSFORMERS_INFO"
  echo "- commit: $COMMIT (modified tracked files: $DIRTY)"
  echo "- steps: $n_ok ok, $n_bad failed, $n_skip skipped"
  echo "- ctest -L gpu: $CTEST_SUMMARY"
  for l in ${SANITIZER_SUMMARY[@]+"${SANITIZER_SUMMARY[@]}"}; do echo "- $l"; done
  echo
  echo "| step | result | seconds |"
  echo "|---|---|---|"
  for i in "${!STEP_NAMES[@]}"; do echo "| ${STEP_NAMES[$i]} | ${STEP_RESULTS[$i]} | ${STEP_SECS[$i]} |"; done
  if [ ${#NOTES[@]} -gt 0 ]; then
    echo
    echo "Notes:"
    for n in "${NOTES[@]}"; do echo "- $n"; done
  fi
  if [ -f "$OUTD/ctest.log" ]; then
    failed=$(sed -n '/The following tests FAILED/,$p' "$OUTD/ctest.log" | grep -E '^\s+[0-9]+ - ' || true)
    if [ -n "$failed" ]; then
      echo
      echo "Failed GPU tests:"
      echo '```'
      echo "$failed"
      echo '```'
    fi
  fi
} >"$SUM"
if [ -f "$OUTD/bench_cuda.json" ] && command -v python3 >/dev/null 2>&1; then
  python3 - "$OUTD/bench_cuda.json" >>"$SUM" 2>>"$LOG" <<'PYEOF'
import json, re, statistics, sys
def load_json(path):
    """The benchmark JSON; a run cut short (the budget's timeout) leaves it unterminated: then the
    benchmarks up to the last complete one, and a note saying so."""
    text = open(path, errors="replace").read()
    try:
        return json.loads(text), ""
    except Exception as e:
        first = e
    start = text.find('"benchmarks": [')
    if start < 0:
        raise first
    cut = len(text)
    for _ in range(2000):  # from the end, the last '}' after which the array can be closed
        cut = text.rfind("}", start, cut)
        if cut < 0:
            break
        try:
            d = json.loads(text[:cut + 1] + "]}")
            return d, f" (the run was cut short: the {len(d.get('benchmarks', []))} benchmarks that finished)"
        except Exception:
            pass
    raise first
try:
    d, cut_note = load_json(sys.argv[1])
except Exception as e:
    print(f"\n(bench_cuda.json unreadable: {e})")
    sys.exit(0)
bs = [b for b in d.get("benchmarks", []) if b.get("run_type", "iteration") == "iteration"]
for b in bs:  # Google Benchmark appends /manual_time, /min_time:..., /iterations:N to names
    b["name"] = re.sub(r"/(manual_time|real_time|min_time:[^/]*|iterations:\d+|repeats:\d+)", "", b.get("name", ""))
errs = [b for b in bs if b.get("error_occurred")]
ok = [b for b in bs if not b.get("error_occurred")]
print(f"\n## genlm_bench_cuda ({len(ok)} benchmarks, {len(errs)} failed){cut_note}\n")
ctx = d.get("context", {})
if "cuda_device" in ctx:
    print(f"Device: {ctx['cuda_device']}\n")
peaks = {b["name"].split("/", 1)[1]: b.get("TFLOPS", 0) for b in ok if b["name"].startswith("cublas_peak/")}
if peaks:
    print("cuBLAS's own 8192^3 GEMM rate (the reference of % of peak): " +
          ", ".join(f"{k} {v:.1f} TFLOP/s" for k, v in peaks.items()) + "\n")
models = [b for b in ok if b["name"].startswith("model/")]
if models:
    print("| model | precision | B | workload | ms | genes/s | TFLOP/s | % cuBLAS peak | GPU peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b in models:
        _, cfg, p, B, wl = b["name"].split("/")[:5]
        ms = b["real_time"] * {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b.get("time_unit", "ns")]
        print(f"| {cfg} | {p} | {B[1:]} | {wl} | {ms:.2f} | {b.get('genes/s', 0):.0f} | {b.get('TFLOPS', 0):.1f} | "
              f"{b.get('pct_of_cublas_peak', 0):.0f}% | {b.get('gpu_peak_MB', 0):.0f} |")
def table(prefix, title, header, row):
    """A markdown table of the benchmarks named prefix/...: row(b) gives its cells."""
    sel = [b for b in ok if b["name"].startswith(prefix + "/")]
    if not sel:
        return
    print(f"\n{title}:\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for b in sel:
        print("| " + " | ".join(row(b)) + " |")
def us(b):
    return b["real_time"] * {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
layers = {}
for b in ok:
    m = re.match(r"layer/([^/]+)/([^/]+)/B(\d+)/(.+)_(fwd|bwd)$", b["name"])
    if m:
        layers.setdefault(m.groups()[:4], {})[m.group(5)] = us(b)
if layers:
    print("\nLayers (forward in training mode / backward, GPU time per call):\n")
    print("| precision | config | B | layer | fwd us | bwd us |")
    print("|---|---|---|---|---|---|")
    for (p, cfg, B, name), t in layers.items():
        print(f"| {p} | {cfg} | {B} | {name} | {t.get('fwd', float('nan')):.1f} | {t.get('bwd', float('nan')):.1f} |")
table("loss", "Masked-gene loss ops on the device (float32, paper-shaped outputs)",
      ["op", "B", "masked genes", "us per call"],
      lambda b: [b["name"].split("/")[1], b["name"].split("/")[2][1:], f"{b.get('masked', 0):.0f}",
                 f"{b.get('us_per_call', 0):.1f}"])
table("colsum", "Column sums of a training step (float32; compare GB/s with the device's memory bandwidth)",
      ["op", "B", "us", "GB/s"],
      lambda b: [b["name"].split("/")[1], b["name"].split("/")[2][1:], f"{us(b):.1f}", f"{b.get('GB_per_s', 0):.0f}"])
gemms = {}
for b in ok:
    m = re.match(r"gemm/([^/]+)/B(\d+)/(.+)", b["name"])
    if m:
        gemms.setdefault((m.group(1), int(m.group(2))), []).append((m.group(3), b.get("pct_of_cublas_peak", 0),
                                                                     b.get("TFLOPS", 0)))
if gemms:
    print("\nGEMM shapes of configs::paper, % of cuBLAS's own peak in the same precision:\n")
    print("| precision | B | median % | lowest (shape) | linear-layer products (fwd, dW, dx) median % |")
    print("|---|---|---|---|---|")
    for (p, B), v in gemms.items():
        lo = min(v, key=lambda t: t[1])
        lin = [t[1] for t in v if not t[0].startswith("attn_")]
        print(f"| {p} | {B} | {statistics.median(t[1] for t in v):.0f}% | {lo[1]:.0f}% ({lo[0]}) | "
              f"{statistics.median(lin) if lin else float('nan'):.0f}% |")
if errs:
    print("\nFailed benchmarks:\n")
    for b in errs:
        print(f"- {b['name']}: {b.get('error_message', '')[:300]}")
PYEOF
fi
if [ -f "$OUTD/compare_pytorch.txt" ]; then
  {
    echo
    echo "## PyTorch comparison (scripts/compare_pytorch.py --device cuda)"
    echo
    grep -E '^\{"check"|^# ' "$OUTD/compare_pytorch.txt" | sed 's/^/    /'
    echo
    grep -E '^\|' "$OUTD/compare_pytorch.txt" || echo "(no table: see compare_pytorch.txt)"
  } >>"$SUM"
fi
echo
cat "$SUM"
if [ "$n_bad" -gt 0 ]; then exit 1; fi
if [ "$HAVE_GPU" -eq 0 ] && [ "$BUILD_ONLY" -eq 0 ]; then exit 3; fi
exit 0
