#!/usr/bin/env bash
# The memory plan against what the ranks really hold: for each configuration,
# `attnres plan`'s "cpu rss" of every rank (executor + AdamW + token files +
# the binary's code and libraries) beside the peak resident set of that rank
# in a short training run, as the run prints it at its end (VmHWM), and the
# process's maximum resident set including its exit (/usr/bin/time -f %M, one
# file per rank): while the process exits, freeing and the CUDA libraries'
# destructors fault pages in again (~60 MiB; perf: libc's _int_free and
# libcublasLt under __cxa_finalize), which shows only where training itself
# held less. Also the median step time (4096 tokens).
# configs/small.yaml with overrides; 4 steps, no evaluation.
#
#   bash bench/bench_memory.sh [STEPS]     (needs build/attnres and data/pystdlib)
#   ONLY=REGEX bash bench/bench_memory.sh  runs only the configurations whose name matches
set -euo pipefail
cd "$(dirname "$0")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
steps=${1:-4}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

mib() {  # "377.31 MiB" / "1.20 GiB" -> MiB
  awk -v n="$1" -v u="$2" 'BEGIN { f = u == "GiB" ? 1024 : u == "KiB" ? 1 / 1024 : 1; printf "%.1f", n * f }'
}

run() {  # name ranks sets...
  local name=$1 np=$2
  shift 2
  [[ $name =~ ${ONLY:-.} ]] || return 0
  local sets=()
  for s in "$@"; do sets+=(--set "$s"); done
  build/attnres plan --config configs/small.yaml "${sets[@]}" >"$out/$name.plan"
  mpirun -np "$np" --oversubscribe bash -c \
    '/usr/bin/time -f "%M" -o "$0.rss.$OMPI_COMM_WORLD_RANK" "${@}"' "$out/$name" \
    build/attnres train --config configs/small.yaml --set "train.steps=$steps" --set train.eval_every=0 \
    --metrics "$out/$name.jsonl" "${sets[@]}" >"$out/$name.log" 2>&1
  local step_ms
  step_ms=$(python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][1:]  # the first step is a warm-up
print(round(statistics.median(4096 / r["tokens_per_s"] for r in rows) * 1000))' "$out/$name.jsonl")
  # Plan rows: "rank chunks ... cpu-rss-value unit"; world rank w is stage w / (dp * tp).
  local per_stage=$((np / $(awk '/^pipeline/{for (i = 1; i <= NF; i++) if ($i ~ /^pp=/) {sub("pp=", "", $i); print $i}}' "$out/$name.plan" | sed 's/[^0-9].*//')))
  for ((w = 0; w < np; w++)); do
    local stage=$((w / per_stage))
    local plan
    plan=$(awk -v s="$stage" '/^rank chunks/{t = 1; next} t && $1 == s {print $(NF-1), $NF; exit}' "$out/$name.plan")
    local planned measured at_exit
    planned=$(mib $plan)
    measured=$(grep '^memory: peak resident' "$out/$name.log" | awk -v r="r$w" '{for (i = 1; i < NF; i++) if ($i == r) print $(i + 1)}')
    at_exit=$(awk '{printf "%.1f", $1 / 1024}' "$out/$name.rss.$w")
    printf "| %s | %d | %s | %s | %s | %+.1f %% | %s |\n" "$name" "$w" "$step_ms ms" "$planned" "$measured" \
      "$(awk -v p="$planned" -v m="$measured" 'BEGIN { print (p - m) / m * 100 }')" "$at_exit"
  done
}

echo "| configuration | rank | step (median) | plan cpu rss (MiB) | peak RSS in training (MiB) | plan - measured | max RSS with exit (MiB) |"
echo "|---|---|---|---|---|---|---|"
run block_none 1
run block_selective 1 train.recompute=selective
run block_full_pp2 2 train.recompute=full parallel.pp=2
run block_none_pp2 2 parallel.pp=2
run standard_pp2_il 2 residual.mode=standard parallel.pp=2 parallel.schedule=interleaved \
  parallel.virtual_stages=2
run fullattnres_pp2_il_full 2 residual.num_blocks=16 train.recompute=full parallel.pp=2 \
  parallel.schedule=interleaved parallel.virtual_stages=2
run block_dp2 2 parallel.dp=2
run block_dp2_zero1 2 parallel.dp=2 train.zero=1
run block_tp2_sp 2 parallel.tp=2 parallel.sequence_parallel=true

# Full against Block AttnRes (and standard) under each recompute setting, at
# pp = 2 (1F1B keeps two microbatches live on rank 0; with one live
# microbatch, full recomputation would save nothing).
echo
echo "| configuration | rank | step (median) | plan cpu rss (MiB) | peak RSS in training (MiB) | plan - measured | max RSS with exit (MiB) |"
echo "|---|---|---|---|---|---|---|"
for mode in "standard residual.mode=standard" "full_attnres residual.num_blocks=16" "block_attnres residual.num_blocks=8"; do
  set -- $mode
  for r in none selective block full; do
    [[ $1 == standard && $r == block ]] && continue  # the standard residual has no blocks
    run "${1}_${r}_pp2" 2 "$2" "train.recompute=$r" parallel.pp=2
  done
done
