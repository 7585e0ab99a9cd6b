#!/usr/bin/env bash
# Tensor parallelism on configs/small.yaml, one thread per rank: step time,
# bytes per step (hops and tp collectives, as the runtime counts them) and
# per-rank memory (the plan's executor bytes, and the measured peak resident
# set of each rank) at tp = 1 and tp = 2, with sequence parallelism off and on.
# Then `attnres plan` of configs/kimi-linear-48b-plan.yaml at tp = 1, 2, 4, 8.
#
#   bash bench/bench_tp.sh [STEPS]      (needs build/attnres and data/pystdlib)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
steps=${1:-8}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() {  # name np sets...
  local name=$1 np=$2
  shift 2
  # One file per rank: mpirun does not expand %q{} in a program's arguments.
  mpirun -np "$np" --oversubscribe bash -c '/usr/bin/time -f "rss_kb %M" -o "$0.rss.$OMPI_COMM_WORLD_RANK" "$@"' \
    "$out/$name" build/attnres train --config configs/small.yaml --set train.threads=1 --set "train.steps=$steps" \
    --set train.warmup_steps=1 --set train.eval_every=0 --peak-gflops 1000 --metrics "$out/$name.jsonl" "$@" \
    > "$out/$name.log" 2>&1
  python3 - "$out" "$name" "$np" <<'PY'
import glob, json, statistics, sys
out, name, np = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(l) for l in open(f"{out}/{name}.jsonl")][1:]  # the first step is a warm-up
step_s = statistics.median(4096 / r["tokens_per_s"] for r in rows)
hop = sum(rows[-1].get("hop_bytes", [])) / 1e6
tp = rows[-1].get("tp_bytes", [0.0])
rss = [int(open(f).read().split()[1]) / 1024 for f in sorted(glob.glob(f"{out}/{name}.rss.*"))]
print(f"| {name} | {np} | {step_s * 1000:.0f} ms | {4096 / step_s:.0f} | {hop:.2f} | {max(tp) / 1e6:.2f} | "
      f"{max(rss):.0f} MiB |")
PY
}

echo "| run | ranks | step time (median) | tokens/s | hop MB/step | tp MB/step/rank | peak RSS/rank |"
echo "|---|---|---|---|---|---|---|"
run tp1 1
run tp2 2 --set parallel.tp=2
run tp2_sp 2 --set parallel.tp=2 --set parallel.sequence_parallel=true
run pp2 2 --set parallel.pp=2
run tp2_pp2_sp 4 --set parallel.tp=2 --set parallel.pp=2 --set parallel.sequence_parallel=true

echo
echo "executor memory per rank from attnres plan (small.yaml, pp = 1)"
for set in "parallel.tp=1" "parallel.tp=2" "parallel.tp=2 parallel.sequence_parallel=true"; do
  args=()
  for s in $set; do args+=(--set "$s"); done
  total=$(build/attnres plan --config configs/small.yaml "${args[@]}" |
    awk '/^rank chunks/{table=1; next} table && /^0 /{print $(NF-5), $(NF-4), "/", $(NF-3), $(NF-2), "/", $(NF-1), $NF; exit}')
  echo "  $set: executor / total with AdamW / cpu rss: $total"
done

echo
echo "configs/kimi-linear-48b-plan.yaml (pp = 4 x 2 virtual stages, interleaved, cache on), per rank"
for t in 1 2 4 8; do
  sp=$([ "$t" -gt 1 ] && echo true || echo false)  # sequence parallelism needs tp > 1
  echo "--- tp = $t, sequence parallel $sp"
  build/attnres plan --config configs/kimi-linear-48b-plan.yaml --set "parallel.tp=$t" \
    --set parallel.sequence_parallel=$sp | sed -n '/^rank chunks/,/^$/p;/^communication per step, sent/,$p'
done
