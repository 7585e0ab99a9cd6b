#!/usr/bin/env bash
# Step time of each train.recompute mode against none, one process, the same
# threads: rounds that run every mode once (so drift hits them alike), STEPS
# steps each with the first a warm-up; per round the median step time of each
# mode and its ratio to none; reported: the median over rounds of both.
#
#   bash bench/bench_recompute.sh [ROUNDS] [STEPS] [key=value]...
# (configs/small.yaml with the overrides; needs build/attnres and data/pystdlib)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
steps=${2:-5}
shift $(($# < 2 ? $# : 2))
sets=()
for s in "$@"; do sets+=(--set "$s"); done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
modes=(none selective block full)
for ((r = 0; r < rounds; r++)); do
  for mode in "${modes[@]}"; do
    build/attnres train --config configs/small.yaml --set "train.steps=$steps" --set train.eval_every=0 \
      --set "train.recompute=$mode" "${sets[@]}" --metrics "$out/$mode.$r.jsonl" >/dev/null
  done
done
python3 - "$out" "$rounds" "${modes[@]}" <<'PY'
import json, statistics, sys
out, rounds, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def per_token_s(path):  # median over the steps after the warm-up
    rows = [json.loads(l) for l in open(path)][1:]
    return statistics.median(1 / r["tokens_per_s"] for r in rows)
t = {m: [per_token_s(f"{out}/{m}.{r}.jsonl") for r in range(rounds)] for m in modes}
print("| recompute | step time per token (median of rounds) | ratio to none (median of per-round ratios, range) |")
print("|---|---|---|")
for m in modes:
    ratios = [a / b for a, b in zip(t[m], t["none"])]
    print(f"| {m} | {statistics.median(t[m]) * 1e6:.1f} us/token | {statistics.median(ratios):.3f} "
          f"({min(ratios):.3f}-{max(ratios):.3f}) |")
PY
