# A local SLURM cluster on the namespace hosts of netns_cluster.sh, from
# Debian's packages (docs/CLUSTER.md). Sourced after netns_cluster.sh.
#
#   slurm_require                  exit 77 (skipped) with the reason if a
#                                  daemon or client is missing
#   slurm_up DIR N                 munged and slurmctld on the head host, one
#                                  slurmd per host h0..h(N-1), each with its own
#                                  node name (slurmd -N), spool, TmpFS and log;
#                                  waits until the nodes are idle
#   slurm_cmd CMD...               a SLURM client command, run on the head host
#                                  (the login node) against this cluster
#   slurm_down                     stop the daemons (cluster_down removes the rest)
#
# No cgroup plugin is used (proctrack/linuxproc, task/none, no accounting), and
# every daemon is entered with `nsenter --net --uts`: `ip netns exec` remounts
# /sys, where slurmd then fails on cgroups. munged listens on a socket of its own
# in DIR, not the system's. Daemons run in the cluster's namespaces, so
# cluster_down ends anything left.

SLURM_DIR=""

slurm_require() {
  local c
  for c in munged mungekey slurmctld slurmd slurmstepd sbatch srun squeue sinfo scontrol scancel; do
    command -v "$c" >/dev/null || cluster_skip "'$c' is not installed (launch/install_deps.sh installs munge, slurmctld, slurmd, slurm-client)"
  done
  [ -n "$(find /usr/lib -path '*slurm*' -name mpi_pmix.so 2>/dev/null | head -n 1)" ] ||
    cluster_skip "SLURM's PMIx plugin (mpi_pmix.so) is not installed"
}

# slurm.conf for nodes amh-h0..; %n in paths is the node name.
slurm_conf() {
  local n="$1" h
  cat <<EOF
ClusterName=amh
SlurmctldHost=$(cluster_hostname head)($CLUSTER_HEAD_IP)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SLURM_DIR/munge.socket
StateSaveLocation=$SLURM_DIR/ctld
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmctldLogFile=$SLURM_DIR/slurmctld.log
SlurmdSpoolDir=$SLURM_DIR/spool/%n
SlurmdPidFile=$SLURM_DIR/spool/%n/slurmd.pid
SlurmdLogFile=$SLURM_DIR/spool/%n/slurmd.log
TmpFS=$SLURM_DIR/tmp/%n
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
EOF
  for ((h = 0; h < n; ++h)); do
    echo "NodeName=$(cluster_hostname "$h") NodeAddr=$(cluster_ip "$h") CPUs=1 State=UNKNOWN"
  done
  echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
}

slurm_cmd() {
  SLURM_CONF="$SLURM_DIR/slurm.conf" cluster_exec head "$@"
}

slurm_up() {
  SLURM_DIR="$1"
  local n="$2" h i
  mkdir -p "$SLURM_DIR/ctld"
  chmod 700 "$SLURM_DIR"
  for ((h = 0; h < n; ++h)); do
    mkdir -p "$SLURM_DIR/spool/$(cluster_hostname "$h")" "$SLURM_DIR/tmp/$(cluster_hostname "$h")"
  done
  slurm_conf "$n" > "$SLURM_DIR/slurm.conf"
  mungekey -c -k "$SLURM_DIR/munge.key" 2>/dev/null || dd if=/dev/urandom of="$SLURM_DIR/munge.key" bs=1024 count=1 status=none
  chmod 400 "$SLURM_DIR/munge.key"
  cluster_exec head munged --force --socket="$SLURM_DIR/munge.socket" --key-file="$SLURM_DIR/munge.key" \
    --pid-file="$SLURM_DIR/munged.pid" --log-file="$SLURM_DIR/munged.log" --seed-file="$SLURM_DIR/munged.seed" \
    --origin="$CLUSTER_HEAD_IP"
  SLURM_CONF="$SLURM_DIR/slurm.conf" cluster_exec head slurmctld
  for ((h = 0; h < n; ++h)); do
    SLURM_CONF="$SLURM_DIR/slurm.conf" cluster_exec "$h" slurmd -N "$(cluster_hostname "$h")"
  done
  for ((i = 0; i < 120; ++i)); do
    [ "$(slurm_cmd sinfo -h -o '%T' -N 2>/dev/null | grep -c '^idle$')" = "$n" ] && return 0
    sleep 0.5
  done
  echo "slurm: the nodes did not become idle in 60 s:"
  slurm_cmd sinfo -N 2>&1 || true
  tail -n 20 "$SLURM_DIR/slurmctld.log" "$SLURM_DIR"/spool/*/slurmd.log 2>/dev/null || true
  return 1
}

slurm_down() {
  [ -n "$SLURM_DIR" ] || return 0
  local f
  for f in "$SLURM_DIR"/spool/*/slurmd.pid "$SLURM_DIR/slurmctld.pid" "$SLURM_DIR/munged.pid"; do
    if [ -f "$f" ]; then kill -TERM "$(cat "$f")" 2>/dev/null || true; fi
  done
  SLURM_DIR=""
}
