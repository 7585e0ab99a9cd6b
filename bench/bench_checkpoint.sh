#!/usr/bin/env bash
# Step-time stall of checkpointing, sync vs async (docs/BENCHMARKS.md, "Checkpoint stall").
#
#   bench/bench_checkpoint.sh [BUILD_DIR] [STEPS] [EVERY] [THREADS]
#
# Trains configs/small.yaml on one process, saving every EVERY steps, once with
# checkpoint.async=false and once with true. A step's wall time is its compute
# time (from the metrics' tokens_per_s) plus the time the training thread spent
# in the checkpointer after it (the "checkpoint: step N: X ms" log line).
# Reported (medians, ms): wall time of non-checkpoint steps, of checkpoint
# steps (stall = the difference) and of the step after a checkpoint (async: the
# background writer runs beside it and the commit follows it); and the time
# the training thread itself spent in the checkpointer at those two steps.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
steps=${2:-40}
every=${3:-5}
threads=${4:-1}
data=${ATTNRES_DATA:-$here/data/pystdlib}
[ -f "$data/train.bin" ] || { echo "no $data/train.bin: run launch/quickstart.sh or set ATTNRES_DATA" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for mode in false true; do
  "$build/attnres" train --config "$here/configs/small.yaml" --peak-gflops 1 \
    --set data.dir="$data" --set train.steps="$steps" --set train.warmup_steps=2 --set train.eval_every=0 \
    --set train.log_every=1000 --set train.threads="$threads" \
    --set checkpoint.dir="$work/ckpt_$mode" --set checkpoint.every="$every" --set checkpoint.keep_last=2 \
    --set checkpoint.async="$mode" --metrics "$work/m_$mode.jsonl" > "$work/log_$mode.txt"
done
bytes=$(du -sb "$work/ckpt_true/$(ls "$work/ckpt_true" | tail -1)" | cut -f1)

python3 - "$work" "$every" "$steps" "$bytes" <<'EOF'
import json, re, statistics, sys
work, every, steps, nbytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tokens = 1024  # small.yaml: micro_batch_size 1 x grad_accum 8 x seq_len 128
print(f"checkpoint size {nbytes / 1e6:.1f} MB, every {every} steps, {steps} steps")
print(f"{'mode':6} {'plain step':>11} {'ckpt step':>10} {'stall':>7} {'next step':>10} | {'in checkpointer: ckpt step':>27} {'next step':>10}   (ms, medians)")
for mode in ("false", "true"):
    comp = {}
    for line in open(f"{work}/m_{mode}.jsonl"):
        j = json.loads(line)
        comp[j["step"]] = 1e3 * tokens / j["tokens_per_s"]
    ck = {int(s): float(ms) for s, ms in
          re.findall(r"checkpoint: step (\d+): ([\d.]+) ms on the training thread", open(f"{work}/log_{mode}.txt").read())}
    wall = {s: comp[s] + ck.get(s, 0.0) for s in comp}
    # Step 1 warms up; the last step's save is waited for at the end of the run.
    saves = [s for s in wall if s % every == 0 and s != steps]
    after = [s + 1 for s in saves]
    plain = [s for s in wall if s > 1 and s not in saves and s not in after and s != steps]
    med = lambda xs, d: statistics.median(d.get(s, 0.0) for s in xs)
    p, c, a = med(plain, wall), med(saves, wall), med(after, wall)
    print(f"{'async' if mode == 'true' else 'sync':6} {p:11.1f} {c:10.1f} {c - p:7.1f} {a:10.1f} | {med(saves, ck):27.1f} {med(after, ck):10.1f}")
EOF
