# A cluster of hosts on this machine, made of Linux network namespaces:
# sourced by the multi-host and SLURM tests (docs/CLUSTER.md).
#
#   cluster_require               exit 77 (CTest: skipped) with the reason
#                                 when namespaces cannot be made here
#   cluster_up N                  hosts h0..h(N-1) at 10.77.0.1..N, and a head
#                                 host at 10.77.0.254 (where mpirun runs, as on
#                                 a login node), all on one bridge
#   cluster_exec HOST CMD...      run CMD on host `head` or 0..N-1
#   cluster_counters              bytes and packets each host sent to each other
#                                 host, and anything it tried to send elsewhere
#   cluster_down                  remove all of it (idempotent)
#
# Each host has its own network namespace (only `lo` and `eth0`, an address in
# 10.77.0.0/24, no default route, IPv6 off) and its own UTS namespace (its own
# hostname). Nothing is addressed outside 10.77.0.0/24: the bridge has no
# address and no uplink, and an nftables table in every host counts, per
# destination, what the host sends and drops and counts anything else.
# Commands enter a host with `nsenter --net --uts`, not `ip netns exec`, which
# remounts /sys (slurmd then fails on cgroups).
#
# Names carry the creating shell's pid (amh<pid>...), so concurrent tests do
# not collide and cluster_up removes what a killed run (pid gone) left behind.
# The caller must `trap cluster_down EXIT` (and INT TERM) itself.

CLUSTER_SUBNET=10.77.0.0/24
CLUSTER_HEAD_IP=10.77.0.254
CLUSTER_RUN_DIR=/run/attnres-multihost
CLUSTER_ID=""
CLUSTER_N=0

cluster_skip() {
  echo "SKIPPED: $*"
  exit 77
}

cluster_require() {
  [ "$(id -u)" = 0 ] || cluster_skip "network namespaces need root (uid is $(id -u))"
  local c
  for c in ip nsenter unshare umount nft sysctl ps; do
    command -v "$c" >/dev/null || cluster_skip "'$c' is not installed (launch/install_deps.sh installs it)"
  done
  local probe="amhprobe$$"
  ip netns add "$probe" 2>/dev/null || cluster_skip "cannot create a network namespace here (ip netns add failed)"
  local ok=1
  nsenter --net="/run/netns/$probe" nft add table inet probe 2>/dev/null || ok=0
  ip netns del "$probe"
  [ "$ok" = 1 ] || cluster_skip "nftables does not work inside a network namespace here"
}

cluster_ip() {  # host index or `head` -> address
  if [ "$1" = head ]; then echo "$CLUSTER_HEAD_IP"; else echo "10.77.0.$(($1 + 1))"; fi
}

cluster_hostname() {
  if [ "$1" = head ]; then echo "amh-head"; else echo "amh-h$1"; fi
}

# Removes what an earlier run left when it was killed without its trap.
cluster_sweep_stale() {
  local d pid
  for d in "$CLUSTER_RUN_DIR"/*; do
    [ -d "$d" ] || continue
    pid="${d##*/}"
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    case "$(ps -o stat= -p "$pid" 2>/dev/null)" in ""|Z*) ;; *) continue ;; esac  # alive, not a zombie
    CLUSTER_ID="$pid" cluster_down_id "$pid"
  done
}

cluster_up() {
  local n="$1" h
  cluster_sweep_stale
  cluster_down_id $$  # left by an earlier process with this pid
  CLUSTER_ID=$$
  CLUSTER_N=$n
  local dir="$CLUSTER_RUN_DIR/$CLUSTER_ID" br="amh${CLUSTER_ID}b"
  mkdir -p "$dir"
  ip link add "$br" type bridge
  sysctl -qw "net.ipv6.conf.$br.disable_ipv6=1"
  ip link set "$br" up
  for h in head $(seq 0 $((n - 1))); do
    cluster_add_host "$h" "$dir" "$br"
  done
}

cluster_add_host() {
  local h="$1" dir="$2" br="$3"
  local tag="$h"; [ "$h" = head ] && tag=x
  local ns="amh${CLUSTER_ID}-$tag" peer="amh${CLUSTER_ID}p$tag" inner="amh${CLUSTER_ID}i$tag"
  local f="$dir/$(cluster_ip "$h")"  # files named by address, as hostfiles name hosts
  ip netns add "$ns"
  ln -sfn "/run/netns/$ns" "$f.net"
  touch "$f.uts"
  unshare --uts="$f.uts" hostname "$(cluster_hostname "$h")"
  local enter=(nsenter --net="$f.net")
  "${enter[@]}" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip link add "$peer" type veth peer name "$inner"
  sysctl -qw "net.ipv6.conf.$peer.disable_ipv6=1"
  ip link set "$peer" master "$br" up
  ip link set "$inner" netns "$ns"
  "${enter[@]}" ip link set "$inner" name eth0
  "${enter[@]}" ip addr add "$(cluster_ip "$h")/24" dev eth0
  "${enter[@]}" ip link set lo up
  "${enter[@]}" ip link set eth0 up
  cluster_firewall "$h" | "${enter[@]}" nft -f -
}

# Per-destination counters of what the host sends on eth0; anything not
# addressed to another host of the cluster is counted and dropped.
cluster_firewall() {
  local self="$1" h ip
  echo "table inet attnres_mh {"
  for h in head $(seq 0 $((CLUSTER_N - 1))); do
    [ "$h" = "$self" ] || echo "  counter to_$h { }"
  done
  echo "  counter stray_out { }"
  echo "  counter stray_in { }"
  echo "  chain output { type filter hook output priority 0; policy accept;"
  echo "    oifname \"lo\" accept"
  for h in head $(seq 0 $((CLUSTER_N - 1))); do
    [ "$h" = "$self" ] && continue
    ip="$(cluster_ip "$h")"
    echo "    oifname \"eth0\" ip daddr $ip counter name to_$h accept"
  done
  echo "    counter name stray_out drop"
  echo "  }"
  echo "  chain input { type filter hook input priority 0; policy accept;"
  echo "    iifname \"lo\" accept"
  echo "    iifname \"eth0\" ip saddr $CLUSTER_SUBNET ip daddr $(cluster_ip "$self") accept"
  echo "    counter name stray_in drop"
  echo "  }"
  echo "}"
}

cluster_exec() {
  local h="$1"; shift
  local f="$CLUSTER_RUN_DIR/$CLUSTER_ID/$(cluster_ip "$h")"
  nsenter --net="$f.net" --uts="$f.uts" -- "$@"
}

# One line per counter: "<host> <counter> <packets> <bytes>", e.g. "0 to_1 812 1046230".
# Bytes are IPv4 packet lengths (IP and TCP headers included, no Ethernet header).
cluster_counters() {
  local h
  for h in head $(seq 0 $((CLUSTER_N - 1))); do
    cluster_exec "$h" nft list counters table inet attnres_mh |
      awk -v h="$h" '$1 == "counter" { name = $2 } $1 == "packets" { print h, name, $2, $4 }'
  done
}

# eth0 counters of a host from its own /proc/net/dev: "<rx_bytes> <rx_packets> <tx_bytes> <tx_packets>".
cluster_link_counters() {
  cluster_exec "$1" cat /proc/net/dev | awk '$1 == "eth0:" { print $2, $3, $10, $11 }'
}

# Ends the processes in one namespace: TERM, then KILL after 2 s.
cluster_kill_ns() {
  local pids i
  pids="$(ip netns pids "$1" 2>/dev/null || true)"
  if [ -z "$pids" ]; then return 0; fi
  kill -TERM $pids 2>/dev/null || true
  for i in 1 2 3 4 5 6 7 8 9 10; do
    pids="$(ip netns pids "$1" 2>/dev/null || true)"
    if [ -z "$pids" ]; then return 0; fi
    sleep 0.2
  done
  kill -KILL $pids 2>/dev/null || true
}

# Ends what runs in the namespaces (processes this cluster started), the head
# first so that mpirun can stop its daemons, then removes namespaces, links,
# bind mounts and the run directory. Found by name, so that a cluster_up cut
# short leaves nothing behind either.
cluster_down_id() {
  local id="$1" dir="$CLUSTER_RUN_DIR/$1" ns link f
  local all
  all="$(ip netns list 2>/dev/null | awk -v p="amh$id-" 'index($1, p) == 1 { print $1 }' | sort -r)"  # -x (head) first
  for ns in $all; do cluster_kill_ns "$ns"; done
  for ns in $all; do ip netns del "$ns" 2>/dev/null || true; done
  for link in $(ip -o link show 2>/dev/null | awk -v id="$id" -F': ' '{ sub(/@.*/, "", $2) } $2 ~ "^amh" id "(b|[pi]([0-9]+|x))$" { print $2 }'); do
    ip link del "$link" 2>/dev/null || true  # the bridge, and veths not yet moved into a namespace
  done
  for f in "$dir"/*.uts; do
    if [ -e "$f" ]; then umount "$f" 2>/dev/null || true; fi
  done
  rm -rf "$dir"
}

cluster_down() {
  [ -n "$CLUSTER_ID" ] || return 0
  trap '' INT TERM  # a second signal must not cut the clean-up short
  cluster_down_id "$CLUSTER_ID"
  CLUSTER_ID=""
}
