#!/usr/bin/env bash
# End-to-end checks of the genlm CLI: train -> resume -> embed -> predict on a real E. coli excerpt,
# and clear errors for bad input. Usage: cli_smoke.sh GENLM_BINARY FIXTURE_DIR
set -uo pipefail
genlm=$1
fx=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok: $1"; }
bad() { echo "FAILED: $1"; fail=1; }
# expect_error NAME REGEX CMD...: the command must fail with exit 1 and print REGEX
expect_error() {
  local name=$1 re=$2
  shift 2
  local out
  out=$("$@" 2>&1)
  local rc=$?
  if [ $rc -eq 1 ] && grep -Eq -e "$re" <<<"$out"; then ok "$name"; else bad "$name (rc $rc): $out"; fi
}
gbk=$fx/data/ecoli_excerpt.gbk

"$genlm" --help | grep -q "genomic language model" && ok "help" || bad "help"
"$genlm" train -g "$gbk" --config tiny -w 10 --overlap 5 --steps 6 -b 4 --save-every 3 -o "$tmp/m.safetensors" \
  > "$tmp/train.out" 2> "$tmp/train.err" && ok "train" || { bad "train"; cat "$tmp/train.err"; }
grep -q "context-free baseline" "$tmp/train.out" && ok "train prints baseline" || bad "train prints baseline"
# resume: 3 steps from the step-3 checkpoint must equal the 6-step run bit for bit
"$genlm" train -g "$gbk" --config tiny -w 10 --overlap 5 --steps 3 -b 4 -o "$tmp/half.safetensors" > /dev/null 2>&1
"$genlm" train -g "$gbk" --config tiny -w 10 --overlap 5 --steps 6 -b 4 --resume "$tmp/half.safetensors" \
  -o "$tmp/resumed.safetensors" > /dev/null 2>&1 && ok "resume" || bad "resume"
cmp -s "$tmp/m.safetensors" "$tmp/resumed.safetensors" && ok "resume is bit-identical" || bad "resume is bit-identical"

"$genlm" embed -m "$tmp/m.safetensors" -g "$gbk" -w 10 --overlap 5 -o "$tmp/e.npy" --attention "$tmp/a.safetensors" \
  2> "$tmp/embed.err" && ok "embed" || { bad "embed"; cat "$tmp/embed.err"; }
[ -s "$tmp/e.npy" ] && [ -s "$tmp/a.safetensors" ] && [ "$(wc -l < "$tmp/e.genes.tsv")" -eq 31 ] \
  && ok "embed outputs (30 genes)" || bad "embed outputs"
"$genlm" embed -m "$tmp/m.safetensors" -g "$gbk" -o "$tmp/e.safetensors" 2> /dev/null && ok "embed safetensors" \
  || bad "embed safetensors"
# the bf16 precision policy: train and embed run and say which products they use; the embeddings of
# the same checkpoint have the float32 file's size and other values (closeness: tests/test_cpu_bf16)
"$genlm" train -g "$gbk" --config tiny -w 10 --overlap 5 --steps 3 -b 4 --precision bf16 -o "$tmp/b.safetensors" \
  > /dev/null 2> "$tmp/train_bf16.err" && grep -q "products: bf16" "$tmp/train_bf16.err" && ok "train --precision bf16" \
  || { bad "train --precision bf16"; cat "$tmp/train_bf16.err"; }
"$genlm" embed -m "$tmp/m.safetensors" -g "$gbk" -w 10 --overlap 5 --precision bf16 -o "$tmp/eb.npy" \
  2> "$tmp/embed_bf16.err" && ok "embed --precision bf16" || { bad "embed --precision bf16"; cat "$tmp/embed_bf16.err"; }
[ "$(stat -c %s "$tmp/eb.npy")" = "$(stat -c %s "$tmp/e.npy")" ] && ! cmp -s "$tmp/eb.npy" "$tmp/e.npy" \
  && ok "bf16 embeddings: same size, other values" || bad "bf16 embeddings: same size, other values"
out=$("$genlm" train -g "$gbk" --config tiny --precision fp16 2>&1)  # a CLI11 usage error (its own exit code)
[ $? -ne 0 ] && grep -q "precision: fp16 not in {fp32,bf16}" <<<"$out" && ok "unknown precision" \
  || bad "unknown precision: $out"
"$genlm" predict -m "$tmp/m.safetensors" -g "$gbk" -w 10 -o "$tmp/p.tsv" > "$tmp/p.out" 2>&1 && ok "predict" \
  || { bad "predict"; cat "$tmp/p.out"; }
[ "$(wc -l < "$tmp/p.tsv")" -eq 31 ] && ok "predict: one row per gene" || bad "predict rows"

# bad input
expect_error "unknown gene id" "--gene 'nosuchgene' is not a gene" \
  "$genlm" predict -m "$tmp/m.safetensors" -g "$gbk" --gene nosuchgene -o "$tmp/x.tsv"
: > "$tmp/empty.tsv"
printf 'x\n' > "$tmp/ids.txt"
expect_error "empty contig table" "empty" "$genlm" train -c "$tmp/empty.tsv" -e "$tmp/a.safetensors" --config tiny
head -c 100 "$tmp/m.safetensors" > "$tmp/trunc.safetensors"
expect_error "truncated checkpoint" "trunc.safetensors" "$genlm" embed -m "$tmp/trunc.safetensors" -g "$gbk" -o "$tmp/x.npy"
printf 'c1\t+b0001;-nosuchprotein\n' > "$tmp/contigs.tsv"
python_free_npy() {  # a 2 x 3 float32 .npy written by hand (no Python needed)
  printf '\x93NUMPY\x01\x00\x76\x00'
  printf "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
  printf '%*s\n' $((118 - 60)) ''
  head -c 24 /dev/zero
}
python_free_npy > "$tmp/emb.npy"
printf 'b0001\nb0002\n' > "$tmp/emb_ids.txt"
expect_error "wrong embedding dimension" "3 dimensions but the model expects plm_dim 32" \
  "$genlm" train -c "$tmp/contigs.tsv" -e "$tmp/emb.npy" --ids "$tmp/emb_ids.txt" --config tiny
head -c 150 "$tmp/emb.npy" > "$tmp/trunc.npy"
expect_error "truncated npy" "trunc.npy" "$genlm" train -c "$tmp/contigs.tsv" -e "$tmp/trunc.npy" --ids "$tmp/emb_ids.txt" --config tiny
expect_error "checkpoint of another model type" "layers=2 hidden=32.*layers=4 hidden=128" \
  "$genlm" train -g "$gbk" --config small --steps 1 --resume "$tmp/m.safetensors" -o "$tmp/y.safetensors"
expect_error "too few proteins for the PCA" "n_components = 99 must be between 1 and .*= 30" \
  "$genlm" train -g "$gbk" --config small --steps 1 -o "$tmp/y.safetensors"

# inputs and outputs are checked before any work; nothing is overwritten by a failing run
expect_error "same genome twice" "contig id 'NC_000913' appears twice: '.*ecoli_excerpt.gbk' is given twice" \
  "$genlm" embed -m "$tmp/m.safetensors" -g "$gbk" -g "$gbk" -o "$tmp/x.npy"
cp "$gbk" "$tmp/g.gbk"
expect_error "one contig in two files" "contig id 'NC_000913' appears twice: in '.*ecoli_excerpt.gbk' and in '.*g.gbk'" \
  "$genlm" embed -m "$tmp/m.safetensors" -g "$gbk" -g "$tmp/g.gbk" -o "$tmp/x.npy"
expect_error "--ids without a .npy" "--ids '.*' names the rows of a .npy --embeddings file" \
  "$genlm" embed -m "$tmp/m.safetensors" -g "$gbk" --ids "$tmp/emb_ids.txt" -o "$tmp/x.npy"
expect_error "output is an input" "--out '.*g.gbk' is also the input --genome" \
  "$genlm" train -g "$tmp/g.gbk" --config tiny --steps 2 -o "$tmp/g.gbk"
cmp -s "$gbk" "$tmp/g.gbk" && ok "the input is untouched" || bad "the input is untouched"
expect_error "output is the model" "is also the input --model" \
  "$genlm" predict -m "$tmp/m.safetensors" -g "$gbk" -o "$tmp/m.safetensors"
expect_error "two outputs, one path" "--attention '.*same.safetensors' is also the output --out" \
  "$genlm" embed -m "$tmp/m.safetensors" -g "$gbk" -o "$tmp/same.safetensors" --attention "$tmp/same.safetensors"
out=$("$genlm" train -g "$gbk" --config tiny --steps 3 -o "$tmp/nodir/x.safetensors" 2>&1)
[ $? -eq 1 ] && grep -q "directory '.*nodir' does not exist" <<<"$out" && ! grep -q "train \[" <<<"$out" \
  && ok "missing output directory: refused before training" || bad "missing output directory: $out"
# CLI11 usage errors (its own exit codes): NaN and signed values where they make no sense
for args in "--clip nan:not a finite number" "--lr inf:not a finite number" "--mask-prob 0:not a finite number in (0, 1)" \
            "--seed -1:not a non-negative integer" "--seed 18446744073709551616:larger than 2^64 - 1"; do
  out=$("$genlm" train -g "$gbk" --config tiny --steps 1 -o "$tmp/y.safetensors" ${args%%:*} 2>&1)
  [ $? -ne 0 ] && grep -q "${args#*:}" <<<"$out" && ok "train ${args%%:*} refused" || bad "train ${args%%:*}: $out"
done
echo OLD > "$tmp/op.tsv"
expect_error "heatmap options without --svg" "--layer chooses the attention heatmap" \
  "$genlm" operons -m "$tmp/m.safetensors" -g "$gbk" -w 10 --overlap 5 -o "$tmp/op.tsv" --layer 1
expect_error "heatmap layer out of range" "--layer 9 / --head 0: the model has 2 layers" \
  "$genlm" operons -m "$tmp/m.safetensors" -g "$gbk" -w 10 --overlap 5 -o "$tmp/op.tsv" --svg "$tmp/h.svg" --layer 9
expect_error "unknown heatmap window" "--heatmap-window 'nosuchgene' is neither" \
  "$genlm" operons -m "$tmp/m.safetensors" -g "$gbk" -w 10 --overlap 5 -o "$tmp/op.tsv" --svg "$tmp/h.svg" \
  --heatmap-window nosuchgene
[ "$(cat "$tmp/op.tsv")" = OLD ] && [ ! -e "$tmp/h.svg" ] && ok "failed runs left the old output" \
  || bad "failed runs left the old output"
# a model trained on external protein embeddings (simulated ones)
"$genlm" simulate -o "$tmp/sim" --contigs 20 > /dev/null
"$genlm" train -c "$tmp/sim/contigs.tsv" -e "$tmp/sim/proteins.safetensors" --config tiny -w 10 --overlap 5 --steps 2 -b 4 \
  -o "$tmp/ext.safetensors" > /dev/null 2>&1 && ok "train on external embeddings" || bad "train on external embeddings"
# a contig named like another contig's window would overwrite that window's attention maps
awk -F'\t' 'NR == 1 { print "X\t" $2 } NR == 2 { split($2, g, ";"); print "X:1-10\t" g[1] ";" g[2] ";" g[3] }' \
  "$tmp/sim/contigs.tsv" > "$tmp/clash.tsv"
expect_error "window id clash" "two windows have the id 'X:1-10'" \
  "$genlm" embed -m "$tmp/ext.safetensors" -c "$tmp/clash.tsv" -e "$tmp/sim/proteins.safetensors" -w 10 --overlap 0 \
  -o "$tmp/x.npy" --attention "$tmp/clash.safetensors"
# a model sees the kind of protein features it was trained on (metadata genlm.features)
expect_error "built-in model, external embeddings" "trained on genlm's built-in protein features .* gives protein embeddings given with --embeddings" \
  "$genlm" embed -m "$tmp/m.safetensors" -c "$tmp/sim/contigs.tsv" -e "$tmp/sim/proteins.safetensors" -o "$tmp/x.npy"
expect_error "external model, built-in features" "trained on protein embeddings given with --embeddings .* gives genlm's built-in" \
  "$genlm" predict -m "$tmp/ext.safetensors" -g "$gbk" -o "$tmp/x.tsv"
expect_error "resume on other features" "trained on genlm's built-in protein features" \
  "$genlm" train -c "$tmp/sim/contigs.tsv" -e "$tmp/sim/proteins.safetensors" --config tiny --steps 9 \
  --resume "$tmp/m.safetensors" -o "$tmp/y.safetensors"
# a resumed run continues the checkpoint's run: its seed unless told otherwise, steps beyond its own
"$genlm" train -g "$gbk" --config tiny -w 10 --overlap 5 --steps 4 -b 4 --seed 5 -o "$tmp/s5.safetensors" > /dev/null 2>&1
"$genlm" train -g "$gbk" --config tiny -w 10 --overlap 5 --steps 2 -b 4 --seed 5 -o "$tmp/s5half.safetensors" \
  > /dev/null 2>&1
"$genlm" train -g "$gbk" --config tiny -w 10 --overlap 5 --steps 4 -b 4 --resume "$tmp/s5half.safetensors" \
  -o "$tmp/s5resumed.safetensors" > /dev/null 2>&1 && cmp -s "$tmp/s5.safetensors" "$tmp/s5resumed.safetensors" \
  && ok "resume takes the checkpoint's seed: bit-identical" || bad "resume takes the checkpoint's seed"
expect_error "resume with another seed" "--seed 6 differs from the seed 5 of checkpoint" \
  "$genlm" train -g "$gbk" --config tiny -w 10 --overlap 5 --steps 4 -b 4 --seed 6 --resume "$tmp/s5half.safetensors" \
  -o "$tmp/y.safetensors"
expect_error "resume with no steps left" "--steps 2 is not beyond the step 2 of checkpoint" \
  "$genlm" train -g "$gbk" --config tiny -w 10 --overlap 5 --steps 2 -b 4 --resume "$tmp/s5half.safetensors" \
  -o "$tmp/y.safetensors"
# truth tables may cover more genes than the input: what is left out is said, with an example
{ cat "$tmp/sim/operon_pairs.tsv"; printf 'nosuch\tp1\t1\np0\tp2\t0\n'; } > "$tmp/labels.tsv"
"$genlm" operons -m "$tmp/ext.safetensors" -c "$tmp/sim/contigs.tsv" -e "$tmp/sim/proteins.safetensors" -w 10 \
  --overlap 5 --labels "$tmp/labels.tsv" --folds 2 --block 5 -o "$tmp/op2.tsv" > /dev/null 2> "$tmp/op2.err" \
  && grep -q "left out 1 of .* rows of --labels '.*labels.tsv' naming a gene that is not in the input (e.g. 'nosuch')" \
    "$tmp/op2.err" \
  && grep -q "left out 1 of .* pairing genes that are not adjacent in the input .*'p0' / 'p2'" "$tmp/op2.err" \
  && ok "operons: unknown and non-adjacent label pairs are reported" || { bad "operons label report"; cat "$tmp/op2.err"; }
printf 'p3\tp3\t1\n' >> "$tmp/labels.tsv"
expect_error "operons: a gene paired with itself" "labels.tsv:[0-9]+.*two different gene ids" \
  "$genlm" operons -m "$tmp/ext.safetensors" -c "$tmp/sim/contigs.tsv" -e "$tmp/sim/proteins.safetensors" -w 10 \
  --overlap 5 --labels "$tmp/labels.tsv" -o "$tmp/op2.tsv"
{ cat "$tmp/sim/functions.tsv"; printf 'Xp0\tF1\n'; } > "$tmp/classes.tsv"
"$genlm" probe -m "$tmp/ext.safetensors" -c "$tmp/sim/contigs.tsv" -e "$tmp/sim/proteins.safetensors" -w 10 \
  --classes "$tmp/classes.tsv" --min-class 2 --folds 2 -o "$tmp/pr.tsv" > /dev/null 2> "$tmp/pr.err"
grep -q "probe: left out 1 of .* rows of --classes '.*classes.tsv' naming a gene that is not in the input (e.g. 'Xp0')" \
  "$tmp/pr.err" && ok "probe: unknown class genes are reported" || { bad "probe class report"; cat "$tmp/pr.err"; }
{ cat "$tmp/sim/paralog_pairs.tsv"; printf 'p8\tp8\tA0\n'; } > "$tmp/selfpair.tsv"
expect_error "paralogs: a gene paired with itself" "selfpair.tsv:[0-9]+.*another gene, its interacting partner" \
  "$genlm" paralogs -m "$tmp/ext.safetensors" -c "$tmp/sim/contigs.tsv" -e "$tmp/sim/proteins.safetensors" \
  --pairs "$tmp/selfpair.tsv" -o "$tmp/pl.tsv"
{ cat "$tmp/sim/paralog_pairs.tsv"; printf 'p10\tnosuch\tA0\n'; } > "$tmp/partner.tsv"
"$genlm" paralogs -m "$tmp/ext.safetensors" -c "$tmp/sim/contigs.tsv" -e "$tmp/sim/proteins.safetensors" \
  --pairs "$tmp/partner.tsv" -o "$tmp/pl.tsv" > /dev/null 2> "$tmp/pl.err"
grep -q "the partner of 1 of .* pairs is not a gene of the input, e.g. 'nosuch' (partner of 'p10')" "$tmp/pl.err" \
  && ok "paralogs: an unknown partner is reported" || { bad "paralogs partner report"; cat "$tmp/pl.err"; }
expect_error "embed: an output extension that is no format" "--out '.*e.txt': its extension chooses the format" \
  "$genlm" embed -m "$tmp/m.safetensors" -g "$gbk" -o "$tmp/e.txt"
# a gene id used twice for the same protein (a CDS listed twice): the second occurrence is renamed
awk '/^     CDS             190\.\.255/ { grab = 1 } grab && /^     gene / && n > 0 { for (i = 1; i <= n; i++) print blk[i];
       grab = 0 } grab { l = $0; sub(/190\.\.255/, "300..365", l); blk[++n] = l } { print }' "$gbk" > "$tmp/dup.gbk"
"$genlm" embed -m "$tmp/m.safetensors" -g "$tmp/dup.gbk" -w 10 --overlap 5 -o "$tmp/dup.npy" 2> "$tmp/dup.err" \
  && grep -q "gene id 'b0001' is used again .* for the same protein; this occurrence is named 'b0001#2'" "$tmp/dup.err" \
  && [ "$(cut -f1 "$tmp/dup.genes.tsv" | sort | uniq -d | wc -l)" -eq 0 ] && grep -q "b0001#2" "$tmp/dup.genes.tsv" \
  && ok "a reused gene id: renamed, one row per gene" || { bad "a reused gene id"; cat "$tmp/dup.err"; }
[ $fail -eq 0 ] && echo "all CLI checks passed"
exit $fail
