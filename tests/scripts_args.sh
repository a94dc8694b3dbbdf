#!/usr/bin/env bash
# The scripts check their arguments and settings before installing, configuring or building
# anything: each bad one below must end at once with status 2 and a message naming it.
# Usage: scripts_args.sh SOURCE_DIR
set -uo pipefail
src=$1
fail=0
# expect NAME REGEX CMD...: status 2 within 20 s, REGEX in the output
expect() {
  local name=$1 re=$2
  shift 2
  local out rc
  out=$(cd "$src" && timeout 20 "$@" 2>&1)
  rc=$?
  if [ $rc -eq 2 ] && grep -Eq -e "$re" <<<"$out"; then echo "ok: $name"; else echo "FAILED: $name (rc $rc): $out"; fail=1; fi
}
expect "demo.sh: an argument" "unknown argument 'foo'" bash scripts/demo.sh foo
expect "demo.sh: STEPS" "STEPS='abc' is not a whole number" env STEPS=abc bash scripts/demo.sh
expect "demo.sh: GENOMES" "GENOMES='nosuch': expected all" env GENOMES=nosuch bash scripts/demo.sh
expect "bench.sh: a benchmark" "unknown benchmark 'foo'" bash scripts/bench.sh foo
expect "install-deps.sh: an option" "unknown option '--mip'" bash scripts/install-deps.sh --mip
expect "gpu-check.sh: an argument" "unknown argument '--bogus'" bash scripts/gpu-check.sh --bogus
expect "gpu-check.sh: GPU_CHECK_BUDGET_S" "GPU_CHECK_BUDGET_S='abc' is not a whole number" \
  env GPU_CHECK_BUDGET_S=abc bash scripts/gpu-check.sh
expect "gpu-check.sh: GPU_CHECK_SANITIZE" "GPU_CHECK_SANITIZE='yes': expected 0 or 1" \
  env GPU_CHECK_SANITIZE=yes bash scripts/gpu-check.sh
out=$(cd "$src" && timeout 20 bash scripts/test.sh --help 2>&1) && grep -q "The test command" <<<"$out" \
  && echo "ok: test.sh --help" || { echo "FAILED: test.sh --help: $out"; fail=1; }
[ $fail -eq 0 ] && echo "all script argument checks passed"
exit $fail
