#!/usr/bin/env bash
# launch/slurm/attnres.sbatch on a real, local SLURM cluster (docs/CLUSTER.md):
# 2 namespace hosts (tests/multihost/netns_cluster.sh), each running a slurmd
# under its own node name, slurmctld and munged on the head host.
#
#   test_slurm.sh ATTNRES_BINARY SOURCE_DIR WORK_DIR
#
# Checks:
#  1. training at pp = 2 on 2 nodes, submitted with sbatch in each of its
#     forms (mpirun inside the allocation, srun --mpi=pmix, and mpirun under
#     the restart supervisor, which here restarts it after a rank is killed),
#     gives the losses of the same run started by plain mpirun, bit for bit;
#  2. preemption: SIGUSR1 sent to the batch shell alone (scancel --batch, what
#     `#SBATCH --signal=B:USR1@...` does before the time limit) reaches every
#     rank, on both nodes, in all three forms (a probe in place of the binary,
#     signal_probe.sh, records it); the ranks save the step they are at and
#     exit 75, and the job submitted again resumes from that checkpoint and
#     ends with the uninterrupted run's losses, bit for bit.
# Exit 77 (CTest: skipped) with the reason where the cluster cannot start.
set -euo pipefail

[ $# = 3 ] || { echo "usage: $0 ATTNRES_BINARY SOURCE_DIR WORK_DIR" >&2; exit 2; }
attnres="$1" src="$2" work="$3"
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../multihost/netns_cluster.sh"
source "$here/slurm_cluster.sh"

cluster_require
slurm_require
trap 'trap "" INT TERM; slurm_down; cluster_down' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "FAIL: $*"; exit 1; }
t_start=$SECONDS
rm -rf "$work"
mkdir -p "$work"
"$attnres" data prepare --input "$src/tests" --glob '*.cpp' --out "$work/corpus" --val-fraction 0.2 > "$work/data.log"

cluster_up 2
export ATTNRES_CLUSTER_DIR="$CLUSTER_RUN_DIR/$CLUSTER_ID"
t0=$SECONDS
slurm_up "$work/slurm" 2 || fail "the SLURM cluster did not start"
echo "slurm: 2 nodes idle $((SECONDS - t0)) s after starting the daemons"

# Every launch: TCP only, on the cluster's subnet (the jobs inherit this
# environment from sbatch); one thread per rank.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# A session directory of its own: Open MPI's shared /tmp/ompi.<host>.<uid>
# races with other tests' mpiruns (tests/e2e/mpi_session_dir.cpp).
mkdir -p "$work/ompi"
export OMPI_MCA_orte_tmpdir_base="$work/ompi"
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=tcp,self
export OMPI_MCA_btl_tcp_if_include="$CLUSTER_SUBNET" OMPI_MCA_oob_tcp_if_include="$CLUSTER_SUBNET"
train_args() {  # NAME STEPS: tiny.yaml at pp = 2, metrics in NAME.jsonl
  echo --config "$src/configs/tiny.yaml" --peak-gflops 1 --set "data.dir=$work/corpus" --set train.threads=1 \
    --set parallel.pp=2 --set "train.steps=$2" --metrics "$work/$1.jsonl"
}
losses() { grep -o '"loss":[^,}]*' "$work/$1.jsonl" | cut -d: -f2; }

# 1. The plain mpirun run, then both sbatch forms.
printf '%s slots=1\n' "$(cluster_ip 0)" "$(cluster_ip 1)" > "$work/hostfile"
# shellcheck disable=SC2046  # train_args' words are meant to split (no spaces in the paths)
cluster_exec head timeout -k 10 120 mpirun -np 2 --hostfile "$work/hostfile" --mca plm_rsh_agent "$here/../multihost/rsh_agent.sh" \
  -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS "$attnres" train $(train_args plain 30) > "$work/plain.log" 2>&1 ||
  { tail -n 20 "$work/plain.log"; fail "plain mpirun run failed"; }
[ "$(losses plain | wc -l)" = 30 ] || fail "plain.jsonl has $(losses plain | wc -l) losses, expected 30"

# submit NAME [script options]: sbatch on 2 nodes; prints the job id.
submit() {
  local name="$1"
  shift
  slurm_cmd sbatch --parsable -N 2 --ntasks-per-node=1 --chdir="$work" --output="$work/$name.out" \
    "$src/launch/slurm/attnres.sbatch" --repo "$src" "$@"
}
# wait_job ID SECONDS: until the job has left the queue.
wait_job() {
  local i
  for ((i = 0; i < $2 * 4; ++i)); do
    [ -z "$(slurm_cmd squeue -h -j "$1" 2>/dev/null)" ] && return 0
    sleep 0.25
  done
  slurm_cmd scancel "$1" || true
  return 1
}

# The three forms of the script: FORM -> its options, and the program the
# batch shell runs (and forwards the warning signal to).
declare -A opts=([mpirun]="--launcher mpirun" [srun]="--launcher srun" [supervise]="--launcher mpirun --supervise")
declare -A runs=([mpirun]=mpirun [srun]=srun [supervise]=supervise.sh)
forms=(mpirun srun supervise)

for form in "${forms[@]}"; do
  t0=$SECONDS
  name="sbatch_$form"
  fault="" more=()
  if [ "$form" = supervise ]; then
    # Rank 1 is killed after step 15; the supervisor restarts the job, which
    # resumes from the step-10 checkpoint and must still match bit for bit.
    fault="rank=1,step=15,at=step,once=$work/fault.marker"
    more=(--max-restarts 1 --backoff 0)
  fi
  # shellcheck disable=SC2046,SC2086
  id=$(ATTNRES_FAULT="$fault" submit "$name" ${opts[$form]} "${more[@]}" --attnres "$attnres" -- $(train_args "$name" 30) \
       --set "checkpoint.dir=$work/ckpt_$form" --set checkpoint.every=10)
  wait_job "$id" 120 || { cat "$work/$name.out"; fail "sbatch ($form): job $id did not end in 120 s"; }
  grep -q "exited with status 0" "$work/$name.out" || { tail -n 30 "$work/$name.out"; fail "sbatch ($form): the job failed"; }
  [ "$(losses plain)" = "$(losses "$name")" ] ||
    { diff <(losses plain) <(losses "$name") | head; fail "sbatch ($form): losses differ from plain mpirun's"; }
  if [ "$form" = supervise ]; then
    grep -q "attempt 1 failed (exit 137: a rank died of signal 9)" "$work/$name.out" &&
      grep -q "^resume: loaded .*step_00000010 (step 10)" "$work/$name.out" &&
      grep -q "attempt 2 finished cleanly" "$work/$name.out" ||
      { grep supervisor "$work/$name.out"; fail "sbatch ($form): no restart after the injected fault"; }
    echo "sbatch ($form): rank 1 killed after step 15, restarted from the step-10 checkpoint"
  fi
  echo "sbatch ($form): job $id, 30 losses equal plain mpirun's bit for bit ($((SECONDS - t0)) s)"
done

# 2. Preemption: the warning signal reaches the ranks, which save the step
# they are at and exit 75; the same form submitted again with --resume auto
# (the supervisor adds it itself) ends with the uninterrupted run's losses,
# bit for bit. small.yaml with 2 microbatches a step: steps slow enough
# (about 0.4 s) for the signal to land mid-run.
slow_args() {  # NAME: 15 steps, metrics in NAME.jsonl
  echo --config "$src/configs/small.yaml" --peak-gflops 1 --set "data.dir=$work/corpus" --set train.threads=1 \
    --set parallel.pp=2 --set train.steps=15 --set train.grad_accum=2 --set train.warmup_steps=2 \
    --set train.eval_every=0 --metrics "$work/$1.jsonl"
}
# shellcheck disable=SC2046
cluster_exec head timeout -k 10 120 mpirun -np 2 --hostfile "$work/hostfile" --mca plm_rsh_agent "$here/../multihost/rsh_agent.sh" \
  -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS "$attnres" train $(slow_args slow_plain) > "$work/slow_plain.log" 2>&1 ||
  { tail -n 20 "$work/slow_plain.log"; fail "plain mpirun run (small.yaml) failed"; }
newest_committed() {  # DIR: the newest committed step, 0 if none
  local d best=0
  for d in "$1"/step_*/COMMITTED; do [ -f "$d" ] && best=$((10#$(basename "$(dirname "$d")" | cut -d_ -f2))); done
  echo "$best"
}
for form in "${forms[@]}"; do
  t0=$SECONDS
  name="preempt_$form"
  ckpt="$work/ckpt_$name"
  export ATTNRES_REAL="$attnres" ATTNRES_SIGNAL_LOG="$work/$name.signals"
  # shellcheck disable=SC2046,SC2086
  id=$(submit "$name" ${opts[$form]} --attnres "$here/signal_probe.sh" -- $(slow_args "$name") --set "checkpoint.dir=$ckpt")
  for ((i = 0; i < 240; ++i)); do  # until both ranks train: a first step is logged
    [ -s "$work/$name.jsonl" ] && break
    sleep 0.25
  done
  [ -s "$work/$name.jsonl" ] || { cat "$work/$name.out"; slurm_cmd scancel "$id" || true; fail "$name: no step in 60 s"; }
  slurm_cmd scancel --batch --signal=USR1 "$id"
  wait_job "$id" 60 || { cat "$work/$name.out"; fail "$name: job $id did not end within 60 s of SIGUSR1"; }
  grep -q "got SIGUSR1; forwarding it to ${runs[$form]}" "$work/$name.out" ||
    { cat "$work/$name.out"; fail "$name: the batch shell did not forward SIGUSR1"; }
  for r in 0 1; do
    grep -qx "amh-h$r rank $r USR1" "$ATTNRES_SIGNAL_LOG" ||
      { cat "$ATTNRES_SIGNAL_LOG" "$work/$name.out"; fail "$name: rank $r (on amh-h$r) did not receive SIGUSR1"; }
    grep -qx "amh-h$r rank $r exit 75" "$ATTNRES_SIGNAL_LOG" ||
      { cat "$ATTNRES_SIGNAL_LOG" "$work/$name.out"; fail "$name: rank $r did not save and exit 75"; }
  done
  grep -q "exited with status 75" "$work/$name.out" || { tail -n 30 "$work/$name.out"; fail "$name: the job did not end with status 75"; }
  stop=$(newest_committed "$ckpt")
  [ "$stop" -ge 1 ] && [ "$stop" -lt 15 ] || { tail -n 30 "$work/$name.out"; fail "$name: no checkpoint of a step before the end (newest: $stop)"; }
  resume=(--resume auto)
  [ "$form" = supervise ] && resume=()
  # shellcheck disable=SC2046,SC2086
  id=$(submit "${name}_resumed" ${opts[$form]} --attnres "$attnres" -- $(slow_args "$name") --set "checkpoint.dir=$ckpt" "${resume[@]}")
  wait_job "$id" 120 || { cat "$work/${name}_resumed.out"; fail "$name: the resumed job $id did not end in 120 s"; }
  grep -q "exited with status 0" "$work/${name}_resumed.out" || { tail -n 30 "$work/${name}_resumed.out"; fail "$name: the resumed job failed"; }
  [ "$(losses slow_plain)" = "$(losses "$name")" ] ||
    { diff <(losses slow_plain) <(losses "$name") | head; fail "$name: losses after the resume differ from the uninterrupted run's"; }
  echo "preemption ($form): SIGUSR1 to the batch shell reached rank 0 on amh-h0 and rank 1 on amh-h1, both saved step $stop" \
       "and exited 75; resumed, the 15 losses equal the uninterrupted run's bit for bit ($((SECONDS - t0)) s)"
done
echo "PASS in $((SECONDS - t_start)) s"
