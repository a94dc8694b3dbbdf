#!/usr/bin/env bash
# nccl_emu_test.sh TRAIN_NCCL_EMU TRAIN_MPI MPIEXEC NUMPROC_FLAG [MPIEXEC_FLAGS...]
# train_nccl built against the CUDA host emulator and the fake NCCL (tests/mpi/CMakeLists.txt),
# two emulated GPUs in one process (GENLM_CUDA_EMU_DEVICES=2), against train_mpi on 2 CPU ranks
# with the same settings (dropout on: the backends draw the same Philox masks):
#   --backend cpu : the final state hashes must be equal (the same arithmetic; the fake all-reduce
#                   adds the 2 ranks' gradients as MPI does)
#   --backend cuda: every step's loss and the final loss within 1e-5 relative (other rounding)
set -u
nccl=$1 mpi=$2 mpiexec=$3 np=$4
shift 4
flags=("$@")
args=(--config tiny --simulate 60 --steps 4 --dropout 0.1 --print-hash --log-every 1)
export GENLM_CUDA_EMU_DEVICES=2
ref=$("$mpiexec" "${flags[@]}" "$np" 2 "$mpi" "${args[@]}" 2>&1) || { echo "$ref"; echo "FAILED: train_mpi -n 2"; exit 1; }
cpu=$("$mpiexec" "${flags[@]}" "$np" 1 "$nccl" --gpus 2 --backend cpu "${args[@]}" 2>&1) || {
  echo "$cpu"; echo "FAILED: train_nccl --gpus 2 --backend cpu"; exit 1; }
gpu=$("$mpiexec" "${flags[@]}" "$np" 1 "$nccl" --gpus 2 --backend cuda "${args[@]}" 2>&1) || {
  echo "$gpu"; echo "FAILED: train_nccl --gpus 2 --backend cuda"; exit 1; }
echo "== train_mpi -n 2";                        echo "$ref"
echo "== train_nccl --gpus 2 --backend cpu";     echo "$cpu"
echo "== train_nccl --gpus 2 --backend cuda";    echo "$gpu"
hash() { echo "$1" | grep -o "final state hash [0-9a-f]*"; }
[ -n "$(hash "$ref")" ] && [ "$(hash "$cpu")" = "$(hash "$ref")" ] || {
  echo "FAILED: cpu backend '$(hash "$cpu")' vs train_mpi '$(hash "$ref")'"; exit 1; }
losses() { echo "$1" | grep -oE "^step [0-9]+/[0-9]+  loss [0-9.eE+-]+" | awk '{print $4}'; echo "$1" | grep -oE "\(loss [0-9.eE+-]+\)" | tr -d '()' | awk '{print $2}'; }
a=$(losses "$gpu") b=$(losses "$ref")
[ "$(echo "$b" | wc -l)" -ge 5 ] && [ "$(echo "$a" | wc -l)" = "$(echo "$b" | wc -l)" ] || {
  echo "FAILED: loss lines differ in number:"; echo "$a"; echo "--"; echo "$b"; exit 1; }
paste <(echo "$a") <(echo "$b") | awk '{ d = $1 - $2; if (d < 0) d = -d; s = $2 < 0 ? -$2 : $2;
  if (d > 1e-5 * s) { printf "FAILED: cuda backend loss %s vs train_mpi %s\n", $1, $2; bad = 1 } } END { exit bad }' || exit 1
echo "cpu backend: identical to train_mpi ($(hash "$ref")); cuda backend (emulated): $(echo "$a" | wc -l) losses within 1e-5"
