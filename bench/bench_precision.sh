#!/usr/bin/env bash
# bf16 against fp32 in training quality (issue #26): configs/small.yaml for
# 300 steps on 3 seeds, standard residual and Block AttnRes, in each
# precision; prints each run's final validation loss and a markdown table of
# the bf16 / fp32 ratio per seed. Results depend on no timing, so runs go two
# at a time, one thread each.
#
# usage: bench/bench_precision.sh [steps] [seeds...]   (from the repository
#        root, after building build/attnres and `attnres data prepare`)
set -euo pipefail
steps=${1:-300}
shift || true
seeds=("${@:-1 2 3}")
[ -x build/attnres ] || { echo "bench_precision: build/attnres is missing; build first" >&2; exit 1; }
out=runs/bench_precision
mkdir -p "$out"

run() {  # seed mode precision: the last val_loss of the run
  local seed=$1 mode=$2 prec=$3 log="$out/$1_$2_$3.log"
  build/attnres train --config configs/small.yaml --peak-gflops 1e6 --set "train.steps=$steps" \
    --set "train.eval_every=$steps" --set train.threads=1 --set "train.seed=$seed" \
    --set "residual.mode=$mode" --set "train.precision=$prec" > "$log" 2>&1
  sed -n 's/.*val_loss \([0-9.]*\).*/\1/p' "$log" | tail -1 > "$out/$1_$2_$3.val"
}
export -f run
export out steps

for seed in ${seeds[*]}; do for mode in standard attnres; do for prec in fp32 bf16; do
  echo "$seed $mode $prec"; done; done; done | xargs -P 2 -L 1 bash -c 'run "$0" "$1" "$2"'

echo "| seed | mode | fp32 val loss | bf16 val loss | bf16 / fp32 |"
echo "|---|---|---|---|---|"
for seed in ${seeds[*]}; do for mode in standard attnres; do
  f=$(cat "$out/${seed}_${mode}_fp32.val") b=$(cat "$out/${seed}_${mode}_bf16.val")
  echo "| $seed | $mode | $f | $b | $(awk -v b="$b" -v f="$f" 'BEGIN {printf "%.4f", b / f}') |"
done; done
