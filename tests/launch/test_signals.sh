#!/usr/bin/env bash
# The signals of a run and of launch/supervise.sh (README, "Surviving
# crashes"): SIGHUP saves and exits 75 like a preemption, SIGUSR2 is ignored
# by the ranks and by the supervisor, and the supervisor refuses a config it
# could never resume.
#
#   test_signals.sh ATTNRES SOURCE_DIR WORK_DIR
source "$(dirname "$0")/script_test.sh"
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

"$A" data prepare --input "$src/runtime" --glob '*.cpp' --out d > /dev/null || exit 1
sed "s#data/pystdlib#$work/d#" "$src/configs/tiny.yaml" > t.yaml
long=(--config t.yaml --set train.steps=1000000 --set train.eval_every=0 --set train.log_every=1
      --set checkpoint.every=1000000)

# Waits until LOG shows a trained step (60 s at most).
wait_step() {
  for _ in $(seq 600); do grep -q '^step ' "$1" 2>/dev/null && return 0; sleep 0.1; done
  bad "no step in $1 within 60 s"
}
# Waits for PID (60 s at most); its exit status in $st.
reap() {
  local pid=$1
  for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; bad "pid $pid did not end within 60 s"; }
  wait "$pid"
  st=$?
}
# expect_saved NAME STATUS LOG DIR: exit 75, and DIR holds a committed checkpoint.
expect_saved() {
  [ "$2" = 75 ] || { bad "$1: exit $2, expected 75"; tail -5 "$3"; }
  ls "$4"/step_*/COMMITTED > /dev/null 2>&1 || bad "$1: no committed checkpoint in $4"
}

# A plain run: SIGHUP is a preemption.
"$A" train "${long[@]}" --set checkpoint.dir=ck_hup > hup.log 2>&1 &
pid=$!
wait_step hup.log
kill -HUP "$pid"
reap "$pid"
expect_saved "SIGHUP to a run" "$st" hup.log ck_hup

# SIGUSR2 does not end a run: it goes on until a SIGUSR1.
"$A" train "${long[@]}" --set checkpoint.dir=ck_usr2 > usr2.log 2>&1 &
pid=$!
wait_step usr2.log
kill -USR2 "$pid"
sleep 1
kill -0 "$pid" 2>/dev/null || bad "SIGUSR2 ended the run"
kill -USR1 "$pid"
reap "$pid"
expect_saved "SIGUSR2 then SIGUSR1 to a run" "$st" usr2.log ck_usr2

# The supervisor: SIGUSR2 is logged and ignored, SIGHUP stops it with a save.
bash "$src/launch/supervise.sh" --attnres "$A" -- "${long[@]}" --set checkpoint.dir=ck_sup > sup.log 2>&1 &
pid=$!
wait_step sup.log
kill -USR2 "$pid"
sleep 1
kill -HUP "$pid"
reap "$pid"
expect_saved "SIGUSR2 then SIGHUP to the supervisor" "$st" sup.log ck_sup
grep -q 'got SIGUSR2: it means nothing to a run; ignored' sup.log || bad "the supervisor did not log SIGUSR2"

# A signal while the run starts (here: while it reads its config from a
# pipe) is kept for the first step boundary, not the default death (143).
(sleep 1; cat t.yaml) | "$A" train --config /dev/stdin "${long[@]:2}" --set checkpoint.dir=ck_early > early.log 2>&1 &
pid=$!
sleep 0.5
kill -TERM "$pid"
reap "$pid"
expect_saved "SIGTERM while starting" "$st" early.log ck_early

# mpirun passes SIGUSR1 on and exits with the ranks' 75 (README, "Save on signal").
mpirun -np 1 --oversubscribe "$A" train "${long[@]}" --set checkpoint.dir=ck_mpi > mpi.log 2>&1 &
pid=$!
wait_step mpi.log
kill -USR1 "$pid"
reap "$pid"
expect_saved "SIGUSR1 to mpirun" "$st" mpi.log ck_mpi

# The supervisor refuses what could never resume.
rc=0
bash "$src/launch/supervise.sh" --attnres "$A" -- --config t.yaml > nodir.log 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q 'sets no checkpoint.dir' nodir.log || { bad "no checkpoint.dir: exit $rc"; cat nodir.log; }
rc=0
bash "$src/launch/supervise.sh" --attnres "$A" -- --config t.yaml --set train.steps=0 > badcfg.log 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q 'train.steps: 0 must be >= 1' badcfg.log || { bad "a bad config: exit $rc"; cat badcfg.log; }

[ "$failed" = 0 ] && echo "every signal handled as documented"
exit "$failed"
