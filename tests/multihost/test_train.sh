#!/usr/bin/env bash
# Multi-host training over TCP (docs/CLUSTER.md): `attnres train` at pp × dp on
# pp·dp namespace hosts (netns_cluster.sh), one rank per host, started by
# mpirun on a head host through rsh_agent.sh, TCP only, on 10.77.0.0/24.
#
#   test_train.sh PP DP ATTNRES_BINARY SOURCE_DIR WORK_DIR
#
# Checks:
#  1. losses (and the validation loss) equal the single-process run's: bit for
#     bit when dp = 1, within 1e-5 relative when dp > 1 (the dp all-reduce sums
#     gradients in another order);
#  2. the bytes the hosts' interfaces counted agree with the runtime's hop
#     counts (`hop_bytes` in --metrics). Two runs, of 30 and 10 steps, each with
#     one evaluation at its end, are subtracted: the difference is 20 training
#     steps, with MPI's wire-up, the end-of-run collectives and the evaluation
#     cancelled. Per pipeline, the TCP payload the two stage hosts sent each
#     other in those 20 steps (IP bytes less 52 header bytes per packet) must
#     be at most 3 % above the runtime's count, never below (what remains is
#     MPI's message headers and the per-step loss/norm/statistics
#     all-reduces), and with the Ethernet header added, within 10 %;
#  3. nothing left the private subnet: each host's firewall dropped no packet
#     to or from anywhere else, and the bytes and packets its eth0 sent are
#     exactly its per-destination counts to cluster hosts, and ARP.
# Exit 77 (CTest: skipped) with the reason where namespaces cannot be made.
set -euo pipefail

[ $# = 5 ] || { echo "usage: $0 PP DP ATTNRES_BINARY SOURCE_DIR WORK_DIR" >&2; exit 2; }
pp="$1" dp="$2" attnres="$3" src="$4" work="$5"
hosts=$((pp * dp))
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=netns_cluster.sh
source "$here/netns_cluster.sh"

cluster_require
trap cluster_down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "FAIL: $*"; exit 1; }
t_start=$SECONDS
rm -rf "$work"
mkdir -p "$work"
"$attnres" data prepare --input "$src/tests" --glob '*.cpp' --out "$work/corpus" --val-fraction 0.2 > "$work/data.log"

cluster_up "$hosts"
export ATTNRES_CLUSTER_DIR="$CLUSTER_RUN_DIR/$CLUSTER_ID"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# A session directory of its own: Open MPI's shared /tmp/ompi.<host>.<uid>
# races with other tests' mpiruns (tests/e2e/mpi_session_dir.cpp).
mkdir -p "$work/ompi"
export OMPI_MCA_orte_tmpdir_base="$work/ompi"
for ((h = 0; h < hosts; ++h)); do echo "$(cluster_ip "$h") slots=1"; done > "$work/hostfile"
# TCP only (no shared memory, no other fabric), on the cluster's subnet only.
mpi_net=(--mca pml ob1 --mca btl tcp,self
         --mca btl_tcp_if_include "$CLUSTER_SUBNET" --mca oob_tcp_if_include "$CLUSTER_SUBNET")

# train NAME NP STEPS [--set ...]: one run from the head host, metrics in NAME.jsonl.
# In the background, so that INT/TERM reach the traps at once (cluster_down
# then ends mpirun and the ranks); bounded well inside CTest's timeout.
train() {
  local name="$1" np="$2" steps="$3"
  shift 3
  local hostfile=()
  [ "$np" -gt 1 ] && hostfile=(--hostfile "$work/hostfile" --mca plm_rsh_agent "$here/rsh_agent.sh")
  cluster_exec head timeout -k 10 120 mpirun -np "$np" "${hostfile[@]}" "${mpi_net[@]}" \
    -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS \
    "$attnres" train --config "$src/configs/tiny.yaml" --peak-gflops 1 \
    --set "data.dir=$work/corpus" --set train.threads=1 \
    --set "train.steps=$steps" --set "train.eval_every=$steps" "$@" \
    --metrics "$work/$name.jsonl" > "$work/$name.log" 2>&1 &
  wait $! || { tail -n 30 "$work/$name.log"; fail "$name: mpirun exited non-zero (log: $work/$name.log)"; }
}

# field NAME KEY: the KEY values of NAME.jsonl, one per line, as written.
field() { grep -o "\"$2\":[^,}]*" "$work/$1.jsonl" | cut -d: -f2; }

snapshot() {  # counters of every host -> NAME.counters, NAME.links
  cluster_counters > "$work/$1.counters"
  for h in head $(seq 0 $((hosts - 1))); do echo "$h $(cluster_link_counters "$h")"; done > "$work/$1.links"
}

layout=(--set "parallel.pp=$pp" --set "parallel.dp=$dp")
train ref 1 30
snapshot s0
t0=$SECONDS
train long "$hosts" 30 "${layout[@]}"
t_long=$((SECONDS - t0))
snapshot s1
train short "$hosts" 10 "${layout[@]}"
snapshot s2
echo "hosts $hosts (pp $pp x dp $dp): the 30-step run took ${t_long} s"
grep -h "^step .*30/30\|hop (chunk)\|->" "$work/long.log" || true

# 1. Losses.
tol=0
[ "$dp" -gt 1 ] && tol=1e-5
[ "$(field ref loss | wc -l)" = 30 ] || fail "ref.jsonl has $(field ref loss | wc -l) losses, expected 30"
for key in loss val_loss; do
  [ "$(field ref "$key" | wc -l)" = "$(field long "$key" | wc -l)" ] || fail "$key: the runs logged different numbers of values"
  paste <(field ref "$key") <(field long "$key") |
    awk -v tol="$tol" -v key="$key" '
      { d = $1 - $2; if (d < 0) d = -d; r = $1 < 0 ? -$1 : $1
        if ((tol == 0 && ($1 "") != ($2 "")) || (tol > 0 && d > tol * r)) { printf "%s %d: %s vs %s\n", key, NR, $1, $2; bad = 1 } }
      END { exit bad }' || fail "$key differs from the single-process run"
done
if [ "$tol" = 0 ]; then
  echo "losses: 30 steps and the validation loss equal the single-process run's bit for bit"
else
  echo "losses: 30 steps and the validation loss within $tol relative of the single-process run's"
fi

# 2. Bytes. Per pipeline (dp index p) the hosts of stages 0 and 1, which
# carry hop 0 -> 1: world rank = pp_idx * dp + dp_idx, one rank per host.
hop_sum() { field "$1" hop_bytes | tr -d '[]' | awk -F, '{ s += $1 } END { printf "%d\n", s }'; }
hop=$(($(hop_sum long) - $(hop_sum short)))
[ "$hop" -gt 0 ] || fail "no hop bytes in the metrics"
# exchanged A B -> "packets bytes" hosts A and B sent each other (both ways)
# in the long run less the short run: (s1 - s0) - (s2 - s1).
exchanged() {
  awk -v a="$1" -v b="$2" 'FNR == 1 { f++ }
    ($1 == a && $2 == "to_" b) || ($1 == b && $2 == "to_" a) { w = f == 2 ? 2 : -1; pk += w * $3; by += w * $4; n++ }
    END { if (n != 6) exit 1; print pk, by }' "$work/s0.counters" "$work/s1.counters" "$work/s2.counters"
}
for ((p = 0; p < dp; ++p)); do
  a=$p b=$((dp + p))
  counts=$(exchanged "$a" "$b") || fail "no counters between hosts $a and $b"
  read -r pk by <<< "$counts"
  awk -v p="$p" -v a="$a" -v b="$b" -v hop="$hop" -v pay=$((by - 52 * pk)) -v link=$((by + 14 * pk)) -v pk="$pk" 'BEGIN {
    printf "bytes, pipeline %d (hosts %d <-> %d), 20 steps: runtime hop bytes %d, TCP payload %d (%+.2f%%), on eth0 %d in %d packets (%+.2f%%)\n",
           p, a, b, hop, pay, 100 * (pay / hop - 1), link, pk, 100 * (link / hop - 1)
    exit !(pay >= hop && pay <= 1.03 * hop && link <= 1.10 * hop) }' ||
    fail "pipeline $p: the bytes on the wire do not agree with the runtime's hop bytes"
done

# 3. Nothing left the subnet: no packet was dropped, and what each host's eth0
# sent is exactly what its firewall counted to cluster hosts (plus 14 bytes of
# Ethernet header per packet), and ARP (42-byte frames).
stray=$(awk '$2 ~ /^stray_/ && $3 != 0' "$work/s2.counters")
[ -z "$stray" ] || fail "packets to or from outside $CLUSTER_SUBNET were dropped: $stray"
for h in head $(seq 0 $((hosts - 1))); do
  read -r pk by <<< "$(awk -v h="$h" '$1 == h && $2 ~ /^to_/ { p += $3; b += $4 } END { print p + 0, b + 0 }' "$work/s2.counters")"
  read -r _ _ _ tx_by tx_pk <<< "$(grep "^$h " "$work/s2.links")"
  arp=$((tx_pk - pk)) arp_by=$((tx_by - by - 14 * pk))
  [ "$arp" -ge 0 ] && [ "$arp" -le 16 ] && [ "$arp_by" = $((42 * arp)) ] ||
    fail "host $h: eth0 sent $tx_pk packets, $tx_by bytes; the firewall counted $pk packets, $by bytes to cluster hosts"
done
echo "subnet: no packet to or from outside $CLUSTER_SUBNET; every host's eth0 bytes are its counted traffic to cluster hosts (and ARP)"
echo "PASS in $((SECONDS - t_start)) s"
