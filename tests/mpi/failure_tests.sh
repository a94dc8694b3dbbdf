#!/usr/bin/env bash
# Failure behaviour of data-parallel training (docs/DISTRIBUTED.md), driven through train_mpi.
#   failure_tests.sh SCENARIO TRAIN_MPI WORKDIR MPIEXEC NUMPROC_FLAG [MPIEXEC_FLAGS...]
# SCENARIO: config_mismatch | killed_rank | hung_rank | resume_seed | bad_options
set -u
scenario=$1 bin=$2 dir=$3 mpiexec=$4 np=$5
shift 5
flags=("$@")
mkdir -p "$dir"
log=$dir/log.txt
fail() { echo "FAILED ($scenario): $*"; echo "----- output -----"; cat "$log"; exit 1; }
common=(--config tiny --simulate 60 --dropout 0 --batch 8 --log-every 1 --threads 1)

case $scenario in
config_mismatch)
  # rank 0 runs the tiny model, rank 1 the small one: every rank must report the mismatch
  start=$(date +%s)
  timeout 100 "$mpiexec" "${flags[@]}" "$np" 1 "$bin" --config tiny --simulate 40 --steps 2 --timeout 30 \
    : "$np" 1 "$bin" --config small --simulate 40 --steps 2 --timeout 30 >"$log" 2>&1
  rc=$? elapsed=$(( $(date +%s) - start ))
  [ $rc -ne 0 ] || fail "exit status 0"
  [ $rc -ne 124 ] || fail "did not end within 100 s"
  for r in 0 1; do
    grep -q "genlm\[rank $r/2\]: error: configuration mismatch" "$log" || fail "rank $r did not report the mismatch"
  done
  grep -q "rank 0 has {layers=2 hidden=32" "$log" || fail "rank 0's config is not named"
  grep -q "rank 1 has {layers=4 hidden=128" "$log" || fail "rank 1's config is not named"
  echo "config mismatch: exit status $rc after ${elapsed} s, reported on both ranks"
  ;;
killed_rank|hung_rank)
  ck=$dir/ckpt.safetensors
  rm -f "$ck" "$ck".tmp.*
  if [ $scenario = killed_rank ]; then mode=kill timeout=10; else mode=hang timeout=3; fi
  start=$(date +%s)
  timeout 100 "$mpiexec" "${flags[@]}" "$np" 2 "$bin" "${common[@]}" --steps 40 --save-every 2 --out "$ck" \
    --fail-rank 1 --fail-at-step 5 --fail-mode $mode --timeout $timeout >"$log" 2>&1
  rc=$? elapsed=$(( $(date +%s) - start ))
  [ $rc -ne 0 ] || fail "exit status 0"
  [ $rc -ne 124 ] || fail "job did not end within 100 s"
  [ $elapsed -le $((timeout + 30)) ] || fail "job took ${elapsed} s (bound: timeout $timeout s + 30 s)"
  grep -q "injected failure '$mode' after step 5" "$log" || fail "the failure was not injected"
  grep -q "genlm\[rank 0/2\]: error: " "$log" || fail "rank 0 printed no error"
  if [ $scenario = hung_rank ]; then
    grep -q "did not complete within $timeout s" "$log" || fail "no watchdog message"
    grep -q "genlm\[rank 1/2\]: error: terminated by signal" "$log" || fail "rank 1 printed no error"
  fi
  grep -q "step 4: wrote checkpoint" "$log" || fail "the step-4 checkpoint was not written"
  # the last checkpoint is intact and resumable (with a different number of ranks)
  timeout 60 "$mpiexec" "${flags[@]}" "$np" 1 "$bin" "${common[@]}" --steps 6 --resume "$ck" --out "$dir/resumed.safetensors" \
    >"$dir/resume.txt" 2>&1 || { cat "$dir/resume.txt" >>"$log"; fail "resuming from the checkpoint failed"; }
  grep -q "resumed '$ck' at step 4 (written by 2 rank(s)) with 1 rank(s)" "$dir/resume.txt" ||
    { cat "$dir/resume.txt" >>"$log"; fail "resume did not start at step 4"; }
  echo "$scenario: exit status $rc after ${elapsed} s; checkpoint of step 4 intact and resumed"
  grep "genlm\[rank" "$log"
  ;;
resume_seed)
  # a resumed run continues the checkpoint's run: its seed when --seed is not given (the same state
  # as the uninterrupted run), a different --seed and --steps not beyond the checkpoint refused
  run2() { timeout 60 "$mpiexec" "${flags[@]}" "$np" 2 "$bin" "${common[@]}" --print-hash "$@"; }
  run2 --seed 5 --steps 4 >"$log" 2>&1 || fail "the uninterrupted run failed"
  full=$(grep -o "final state hash [0-9a-f]*" "$log")
  run2 --seed 5 --steps 2 --out "$dir/half.safetensors" >>"$log" 2>&1 || fail "the first half failed"
  run2 --steps 4 --resume "$dir/half.safetensors" >"$dir/resume.txt" 2>&1 ||
    { cat "$dir/resume.txt" >>"$log"; fail "resuming without --seed failed"; }
  [ -n "$full" ] && [ "$(grep -o "final state hash [0-9a-f]*" "$dir/resume.txt")" = "$full" ] ||
    { cat "$dir/resume.txt" >>"$log"; fail "resumed without --seed: not the uninterrupted run's state ($full)"; }
  run2 --seed 6 --steps 4 --resume "$dir/half.safetensors" >"$dir/seed6.txt" 2>&1 && fail "--seed 6 accepted"
  grep -q "seed 6 differs from the seed 5 of checkpoint" "$dir/seed6.txt" ||
    { cat "$dir/seed6.txt" >>"$log"; fail "no message for --seed 6"; }
  run2 --steps 2 --resume "$dir/half.safetensors" >"$dir/steps2.txt" 2>&1 && fail "--steps 2 accepted"
  grep -q "steps 2 is not beyond the step 2 of checkpoint" "$dir/steps2.txt" ||
    { cat "$dir/steps2.txt" >>"$log"; fail "no message for --steps 2"; }
  echo "resume_seed: resumed without --seed = uninterrupted ($full); --seed 6 and --steps 2 refused"
  ;;
bad_options)
  # one rank's bad command line stops the whole job at once with its message (the peers used to wait
  # in their first collective, which has no timeout); options that every rank gets wrong end the job
  # cleanly (status 2) with the message on every rank; ranks that would write different checkpoints
  # are a configuration mismatch
  start=$(date +%s)
  timeout 60 "$mpiexec" "${flags[@]}" "$np" 1 "$bin" --timeout 5 : "$np" 1 "$bin" --timeout 5 --steps abc >"$log" 2>&1
  rc=$? elapsed=$(( $(date +%s) - start ))
  [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "a bad --steps on rank 1: exit status $rc"
  [ $elapsed -le 30 ] || fail "a bad --steps on rank 1: the job took ${elapsed} s"
  grep -q "^--steps: " "$log" || fail "rank 1's message about --steps is missing"
  grep -q "genlm\[rank 0/2\]: error: rank 1 stopped at its start-up checks" "$log" || fail "rank 0 does not name rank 1"
  timeout 60 "$mpiexec" "${flags[@]}" "$np" 2 "$bin" --window 31 >"$dir/window.txt" 2>&1
  rc=$?
  cat "$dir/window.txt" >>"$log"
  [ $rc -eq 2 ] || fail "--window 31: exit status $rc, expected 2"
  for r in 0 1; do
    grep -q "genlm\[rank $r/2\]: error: --window 31 exceeds the largest window of --config tiny, 30 genes" \
      "$dir/window.txt" || fail "--window 31: no message on rank $r"
  done
  timeout 60 "$mpiexec" "${flags[@]}" "$np" 2 "$bin" --simulate 40 --contigs "$dir/none.tsv" >"$dir/both.txt" 2>&1
  [ $? -eq 2 ] && grep -q "give one of the two" "$dir/both.txt" || { cat "$dir/both.txt" >>"$log"; fail "--simulate with --contigs"; }
  # contradictory options, each refused on every rank before any work
  : >"$dir/t.tsv"
  for case in "--embeddings $dir/e.safetensors:without --contigs" \
              "--contigs $dir/t.tsv --embeddings $dir/e.safetensors --ids $dir/ids.txt:is not a .npy file" \
              "--contigs $dir/t.tsv --contigs $dir/./t.tsv --embeddings $dir/e.npy:is given twice" \
              "--loss-scale 5:sets the initial scale of loss scaling, which is auto" \
              "--fail-rank 5 --fail-at-step 1:is not a rank of this job (2 ranks)"; do
    read -r -a args <<<"${case%%:*}"
    timeout 60 "$mpiexec" "${flags[@]}" "$np" 2 "$bin" "${args[@]}" >"$dir/case.txt" 2>&1
    rc=$?
    [ $rc -eq 2 ] && grep -q -- "${case#*:}" "$dir/case.txt" ||
      { cat "$dir/case.txt" >>"$log"; fail "'${case%%:*}': exit status $rc, expected 2 and '${case#*:}'"; }
  done
  timeout 60 "$mpiexec" "${flags[@]}" "$np" 1 "$bin" "${common[@]}" --steps 2 --out "$dir/a.safetensors" : \
    "$np" 1 "$bin" "${common[@]}" --steps 2 --out "$dir/b.safetensors" >"$dir/out.txt" 2>&1
  [ $? -eq 2 ] && grep -q "configuration mismatch" "$dir/out.txt" && grep -q "b.safetensors every 0 steps" "$dir/out.txt" ||
    { cat "$dir/out.txt" >>"$log"; fail "two --out paths were not a configuration mismatch"; }
  echo "bad_options: rank 1's bad --steps ended the job in ${elapsed} s; --window 31, --simulate with --contigs and two --out paths refused on every rank"
  ;;
*) echo "unknown scenario $scenario"; exit 2 ;;
esac
exit 0
