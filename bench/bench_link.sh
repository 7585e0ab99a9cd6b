#!/usr/bin/env bash
# The shaped-link benchmark (docs/BENCHMARKS.md): configs/small.yaml at pp = 2
# on 2 namespace hosts (tests/multihost/netns_cluster.sh), one rank and one
# thread per host, TCP only, with the link between the hosts shaped by an htb
# qdisc on each host's eth0 (both directions) at unlimited, 10 Gbit/s,
# 1 Gbit/s, 300 Mbit/s and 100 Mbit/s, for standard, Block (S = 2) and Full
# (S = 1) AttnRes. Per run: median tokens/s and step time over steps 2..N, and
# the step `attnres plan --link-gbps` predicts from the unshaped step time of
# the same mode (--compute-ms). The model's β is measured on each shaped link
# as a pipeline loads it: the payload rate each direction gets while both
# carry data (iperf3 --bidir, 4 s, the mean of the two directions).
#
#   bench/bench_link.sh ATTNRES_BINARY OUT_DIR [STEPS]
#   MODES="full" LINKS="unlimited 100mbit" bench/bench_link.sh ...   (a subset;
#   LINKS must start with unlimited, the base of the predictions)
#   TRACE=1 bench/bench_link.sh ...   (also a Chrome trace per rank of each run,
#   OUT_DIR/MODE-LINK.rank<r>.json: where each rank computes and waits)
#   PRECISION=fp32 bench/bench_link.sh ...   (train.precision; default bf16)
#   SCHEDULE=zb-h1 bench/bench_link.sh ...   (parallel.schedule; default small.yaml's 1f1b)
#   SETS="train.micro_batch_size=2 train.grad_accum=16" bench/bench_link.sh ...   (more --set)
#
# Writes OUT_DIR/link.tsv (mode, link, tokens/s, measured s, predicted s, β in
# Gbit/s) and prints it. Run it as root, alone on the machine (under the CPU
# lock); needs iperf3.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 ATTNRES_BINARY OUT_DIR [STEPS]" >&2; exit 2; }
attnres="$(realpath "$1")" out="$(realpath -m "$2")" steps="${3:-6}"
src="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../tests/multihost/netns_cluster.sh
source "$src/tests/multihost/netns_cluster.sh"
cluster_require
command -v iperf3 >/dev/null || { echo "iperf3 is not installed (apt-get install iperf3)" >&2; exit 2; }
trap cluster_down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$out"
cluster_up 2
export ATTNRES_CLUSTER_DIR="$CLUSTER_RUN_DIR/$CLUSTER_ID"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
printf '%s slots=1\n' "$(cluster_ip 0)" "$(cluster_ip 1)" > "$out/hostfile"

shape() {  # shape RATE|unlimited: the same egress limit on both hosts
  local h
  for h in 0 1; do
    cluster_exec "$h" tc qdisc del dev eth0 root 2>/dev/null || true
    [ "$1" = unlimited ] && continue
    cluster_exec "$h" tc qdisc add dev eth0 root handle 1: htb default 1
    cluster_exec "$h" tc class add dev eth0 parent 1: classid 1:1 htb rate "$1" ceil "$1"
  done
}

# The link's payload rate per direction with both directions loaded, Gbit/s.
bidir_gbps() {
  cluster_exec 1 iperf3 -s -1 -B "$(cluster_ip 1)" >/dev/null 2>&1 &
  local server=$! try
  for try in 1 2 3 4 5 6 7 8 9 10; do  # until the server listens
    sleep 0.5
    cluster_exec 0 iperf3 -c "$(cluster_ip 1)" --bidir -t 4 -J > "$out/iperf.json" && break
    [ "$try" -lt 10 ] || { cat "$out/iperf.json" >&2; exit 1; }
  done
  wait "$server"
  python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))["end"]
rates = [e[k]["bits_per_second"] for k in ("sum_received", "sum_received_bidir_reverse")]
print("%.4f" % (sum(rates) / 2e9))' \
    "$out/iperf.json"
}

run() {  # run NAME [--set ...]
  local name="$1" s; shift
  for s in ${SETS:-}; do set -- "$@" --set "$s"; done
  cluster_exec head timeout -k 10 600 mpirun -np 2 --hostfile "$out/hostfile" \
    --mca plm_rsh_agent "$src/tests/multihost/rsh_agent.sh" --mca pml ob1 --mca btl tcp,self \
    --mca btl_tcp_if_include "$CLUSTER_SUBNET" --mca oob_tcp_if_include "$CLUSTER_SUBNET" \
    -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS \
    "$attnres" train --config "$src/configs/small.yaml" --peak-gflops 1 \
    --set "data.dir=$src/data/pystdlib" --set train.threads=1 --set parallel.pp=2 \
    --set "train.steps=$steps" --set train.warmup_steps=1 --set train.eval_every=0 \
    --set "train.precision=${PRECISION:-bf16}" --set "parallel.schedule=${SCHEDULE:-1f1b}" "$@" \
    ${TRACE:+--trace "$out/$name.json"} --metrics "$out/$name.jsonl" > "$out/$name.log" 2>&1 &
  wait $! || { tail -n 20 "$out/$name.log"; echo "FAIL: $name"; exit 1; }
}

# median tokens/s of steps 2..N (step 1 includes the warm-up of buffers and links)
median_tps() {
  grep '"tokens_per_s"' "$out/$1.jsonl" | grep -o '"tokens_per_s":[^,}]*' | cut -d: -f2 | tail -n +2 |
    sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

tokens=$((4 * 128 * 8))  # micro_batch x seq_len x grad_accum of small.yaml
declare -A mode_set=([standard]="residual.mode=standard" [block]="residual.num_blocks=8" [full]="residual.num_blocks=16")
declare -A plan_row=([standard]="standard" [block]="block S=2" [full]="full S=1")
declare -A gbps=()  # measured once per shaped link
echo -e "mode\tlink\ttokens_per_s\tstep_s\tpredicted_s\tbidir_gbps" > "$out/link.tsv"
for mode in ${MODES:-standard block full}; do
  base_ms=""
  for link in ${LINKS:-unlimited 10gbit 1gbit 300mbit 100mbit}; do
    shape "$link"
    [ "$link" = unlimited ] || [ -n "${gbps[$link]:-}" ] || gbps[$link]=$(bidir_gbps)
    run "$mode-$link" --set "${mode_set[$mode]}"
    tps=$(median_tps "$mode-$link")
    step=$(awk -v t="$tps" -v n="$tokens" 'BEGIN { printf "%.3f", n / t }')
    pred="-"
    if [ "$link" = unlimited ]; then
      base_ms=$(awk -v s="$step" 'BEGIN { printf "%.1f", 1000 * s }')
    else
      # shellcheck disable=SC2046
      pred=$("$attnres" plan --config "$src/configs/small.yaml" --set parallel.pp=2 $(printf -- '--set %s ' ${SETS:-}) \
               --set "train.precision=${PRECISION:-bf16}" --set "parallel.schedule=${SCHEDULE:-1f1b}" \
               --set "${mode_set[$mode]}" --link-gbps "${gbps[$link]}" --compute-ms "$base_ms" |
             awk -v row="${plan_row[$mode]}" '/^network/ { net = 1 } net && !done && index($0, row " ") == 1 { printf "%.3f", $(NF - 1); done = 1 }')
    fi
    echo -e "$mode\t$link\t$tps\t$step\t$pred\t${gbps[$link]:--}" | tee -a "$out/link.tsv"
  done
done
shape unlimited
