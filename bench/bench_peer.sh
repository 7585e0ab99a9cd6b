#!/usr/bin/env bash
# The peer benchmark (issues #10, #26): the same model trained by PyTorch
# (bench/peer_pytorch.py, Debian's python3-torch) and by attnres, standard
# residual and Block AttnRes (8 blocks), in fp32 and in bf16 (PyTorch's
# autocast against train.precision: bf16), 32 sequences of 128 tokens per
# step, the same thread count, one after the other in each of R rounds.
# Prints tokens/s per round and a markdown table of medians and ratios.
#
# usage: bench/bench_peer.sh [threads] [rounds]     (from the repository root,
#        after building build/attnres and `attnres data prepare`)
set -euo pipefail
threads=${1:-2}
rounds=${2:-3}
python=/usr/bin/python3
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "bench_peer: PyTorch is missing; install Debian's python3-torch (a benchmark dependency only)" >&2
  exit 1
fi
[ -x build/attnres ] || { echo "bench_peer: build/attnres is missing; build first" >&2; exit 1; }

attnres_rate() {  # the summary's median tokens/s of 6 steps (the first is a warm-up)
  build/attnres train --config configs/small.yaml --peak-gflops 1e6 --set train.steps=6 \
    --set train.eval_every=0 --set "train.threads=$threads" --set train.micro_batch_size=4 \
    --set train.grad_accum=8 "$@" | sed -n 's/^summary:.*| \([0-9]*\) tok\/s.*/\1/p'
}

declare -A rates
for r in $(seq "$rounds"); do
  for prec in fp32 bf16; do
    for mode in standard block; do
      pt=$("$python" bench/peer_pytorch.py "$mode" "$threads" 6 "$prec" | awk '{print $2}')
      set_mode=(); [ "$mode" = standard ] && set_mode=(--set residual.mode=standard)
      at=$(attnres_rate "${set_mode[@]}" --set "train.precision=$prec")
      echo "round $r $prec $mode: pytorch $pt tok/s, attnres $at tok/s"
      rates[$prec,$mode,pt]+="$pt "
      rates[$prec,$mode,at]+="$at "
    done
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "| precision | mode | PyTorch tok/s | attnres tok/s | attnres / PyTorch |"
echo "|---|---|---|---|---|"
for prec in fp32 bf16; do
  for mode in standard block; do
    pt=$(echo "${rates[$prec,$mode,pt]}" | median)
    at=$(echo "${rates[$prec,$mode,at]}" | median)
    echo "| $prec | $mode | $pt | $at | $(awk -v a="$at" -v p="$pt" 'BEGIN {printf "%.2f", a / p}') |"
  done
done
