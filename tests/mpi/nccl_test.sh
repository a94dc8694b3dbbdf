#!/usr/bin/env bash
# nccl_test.sh TRAIN_NCCL TRAIN_MPI MPIEXEC NUMPROC_FLAG [MPIEXEC_FLAGS...]
# Runs train_nccl on one GPU and train_mpi on one CPU rank with the same settings and compares
# the final state hashes (one rank: NCCL's all-reduce is the identity, so they must be equal).
# Exit 77 (ctest: skipped) when train_nccl finds no usable GPU.
set -u
nccl=$1 mpi=$2 mpiexec=$3 np=$4
shift 4
flags=("$@")
args=(--config tiny --simulate 60 --steps 4 --dropout 0 --print-hash --log-every 1)
out=$("$mpiexec" "${flags[@]}" "$np" 1 "$nccl" --gpus 1 "${args[@]}" 2>&1)
rc=$?
echo "$out"
[ $rc -eq 77 ] && exit 77
[ $rc -eq 0 ] || { echo "FAILED: train_nccl exit status $rc"; exit 1; }
ref=$("$mpiexec" "${flags[@]}" "$np" 1 "$mpi" "${args[@]}" 2>&1) || { echo "$ref"; echo "FAILED: train_mpi"; exit 1; }
h1=$(echo "$out" | grep -o "final state hash [0-9a-f]*")
h2=$(echo "$ref" | grep -o "final state hash [0-9a-f]*")
[ -n "$h1" ] && [ "$h1" = "$h2" ] || { echo "$ref"; echo "FAILED: NCCL '$h1' vs MPI '$h2'"; exit 1; }
echo "NCCL and MPI runs agree: $h1"
# With two or more GPUs also run the single-process multi-GPU mode (informational comparison).
if nvidia-smi -L 2>/dev/null | grep -q "GPU 1"; then
  out2=$("$mpiexec" "${flags[@]}" "$np" 1 "$nccl" --gpus 2 "${args[@]}" 2>&1) || { echo "$out2"; echo "FAILED: train_nccl --gpus 2"; exit 1; }
  ref2=$("$mpiexec" "${flags[@]}" "$np" 2 "$mpi" "${args[@]}" 2>&1) || { echo "$ref2"; echo "FAILED: train_mpi -n 2"; exit 1; }
  echo "2 GPUs (one process): $(echo "$out2" | grep -o "final state hash.*")"
  echo "2 MPI ranks (CPU):    $(echo "$ref2" | grep -o "final state hash.*")"
fi
