#!/usr/bin/env bash
# For the ThreadSanitizer build (launch/test.sh): a short training run whose
# checkpoints are written by the background writer while the next steps
# train, then resumed. Fails if the sanitizer reports anything (it halts the
# process) or the checkpoints are not committed.
#
#   async_checkpoint.sh ATTNRES_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
[ $# = 3 ] || { echo "usage: $0 ATTNRES_BINARY SOURCE_DIR WORK_DIR" >&2; exit 2; }
attnres="$1" src="$2" work="$3"
rm -rf "$work"
mkdir -p "$work"
"$attnres" data prepare --input "$src/tests" --glob '*.cpp' --out "$work/corpus" --val-fraction 0.2 > /dev/null
args=(--config "$src/configs/tiny.yaml" --peak-gflops 1 --set "data.dir=$work/corpus" --set train.threads=1
      --set train.eval_every=3 --set train.warmup_steps=2 --set checkpoint.dir="$work/ckpt" --set checkpoint.every=2
      --set checkpoint.async=true --set checkpoint.keep_last=2)
"$attnres" train "${args[@]}" --set train.steps=6
"$attnres" train "${args[@]}" --set train.steps=8 --resume auto
for s in 6 8; do
  [ -f "$work/ckpt/step_0000000$s/COMMITTED" ] || { echo "FAIL: step $s not committed"; exit 1; }
done
echo "PASS: asynchronous checkpoints committed and resumed under the sanitizer"
